"""The four Distral algorithms of Table 1 (regularised rewards plus distillation of pi_0)."""

from distral_tf.model.algorithm_spec import Algorithm, Architecture, DistilledPolicy

KL_1COL = Algorithm(
    name="kl_1col",
    label="KL 1col",
    architecture=Architecture.ONE_COLUMN,
    kl=True,
    default_alpha=1.0,
    distilled_policy=DistilledPolicy.TRAINED,
    description="Separate task networks h_thetai and a separate pi_0 trained by distillation; KL only.",
    color="#9467bd",  # purple
)

KL_2COL = Algorithm(
    name="kl_2col",
    label="KL 2col",
    architecture=Architecture.TWO_COLUMN,
    kl=True,
    default_alpha=1.0,
    distilled_policy=DistilledPolicy.TRAINED,
    description="Two-column task policies softmax(alpha h_theta0 + beta f_thetai); KL only.",
    color="#d62728",  # red
)

KLENT_1COL = Algorithm(
    name="klent_1col",
    label="KL+ent 1col",
    architecture=Architecture.ONE_COLUMN,
    kl=True,
    default_alpha=0.5,
    distilled_policy=DistilledPolicy.TRAINED,
    description="As kl_1col with an extra entropy term (alpha = 0.5).",
    color="#17becf",  # cyan
)

KLENT_2COL = Algorithm(
    name="klent_2col",
    label="KL+ent 2col",
    architecture=Architecture.TWO_COLUMN,
    kl=True,
    default_alpha=0.5,
    distilled_policy=DistilledPolicy.TRAINED,
    description="As kl_2col with an extra entropy term (alpha = 0.5).",
    color="#2ca02c",  # green
)

ALGORITHMS = (KL_1COL, KL_2COL, KLENT_1COL, KLENT_2COL)
