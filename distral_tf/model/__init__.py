"""The paper's math and networks: what defines one of Table 1's algorithms, the losses (eqs. 2-10), the conv+LSTM
columns, the shared RMSProp, per-rollout gradients and the agent that holds them."""
