"""The three A3C baselines of Table 1 (no KL term, explicit entropy bonus, beta = 1)."""

from distral_tf.model.algorithm_spec import Algorithm, Architecture, DistilledPolicy

A3C = Algorithm(
    name="a3c",
    label="A3C",
    architecture=Architecture.ONE_COLUMN,
    kl=False,
    default_alpha=0.0,
    distilled_policy=DistilledPolicy.UNTRAINED,
    description="An independent A3C agent per task (own network and value).",
    color="#1f77b4",  # blue
)

A3C_MULTITASK = Algorithm(
    name="a3c_multitask",
    label="A3C multitask",
    architecture=Architecture.MULTITASK,
    kl=False,
    default_alpha=0.0,
    distilled_policy=DistilledPolicy.SHARED,
    description="One network (policy and value) shared by all tasks, trained by A3C on every task.",
    color="#ff7f0e",  # orange
)

A3C_2COL = Algorithm(
    name="a3c_2col",
    label="A3C 2col",
    architecture=Architecture.TWO_COLUMN,
    kl=False,
    default_alpha=1.0,  # logits h_theta0 + f_thetai: eq. 8 with alpha = beta = 1
    distilled_policy=DistilledPolicy.COLUMN_H0,
    description="Two-column logits h_theta0 + f_thetai without any KL term; h_theta0 learns by policy gradient.",
    color="#8c564b",  # brown
)

ALGORITHMS = (A3C, A3C_MULTITASK, A3C_2COL)
