"""The paper's math and networks: Table 1's algorithms as rows, the losses (eqs. 2-10), the conv+LSTM
columns, the shared RMSProp, per-rollout gradients and the agent that holds them."""
