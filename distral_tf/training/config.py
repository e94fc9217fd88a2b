"""The configuration of one training run as a frozen dataclass: the single source of its settings.

Each field's metadata holds what ``flags/training.py`` turns into a command-line flag:
its help text, its choices and the bounds of the values it accepts. A field added here
is a flag of ``python -m distral_tf.run`` and reaches the run's config without more code.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from distral_tf.model.options import RMSPROP_KERNELS, TORSO_DTYPES, TWO_COLUMN_SCALINGS

REWARD_CLIPPING = ("none", "abs_one", "soft_asymmetric")
UPDATE_MODES = ("hogwild", "batched")
OBSERVATION_NORMALIZATIONS = ("suite", "none", "per_pixel")
BACKENDS = ("local", "ray")
TRACKERS = ("none", "wandb", "mlflow")

# Fields that define the model and its training problem: a run may only resume
# with the same values (other fields, e.g. logging intervals, may change).
MODEL_FIELDS = ("algo", "suite", "alpha", "entropy_cost", "learning_rate", "unroll_length", "discount",
                "value_cost", "total_env_steps", "workers_per_task", "reward_clipping", "update_mode",
                "two_column_scaling", "freeze_distilled", "rmsprop_initial_mean_square", "observation_normalization")
# The value a model-defining field had in run directories written before it existed.
LEGACY_VALUES = {"two_column_scaling": "literal", "rmsprop_initial_mean_square": 0.0,
                 "observation_normalization": "none"}

# Upper bounds: far beyond any sensible run, low enough that a typo (an extra zero or
# exponent) is caught before it overflows a timer or a buffer, or hangs the start.
MAX_TOTAL_ENV_STEPS = 10**12
MAX_WORKERS_PER_TASK = 4096


@dataclasses.dataclass(frozen=True)
class UpTo:
    """Accepts a finite number > 0 (``strict``) or >= 0, at most ``limit``."""

    limit: int | float
    strict: bool = True


@dataclasses.dataclass(frozen=True)
class Interval:
    """Accepts a number in ``[low, high]`` (``[low, high)`` with ``open_high``); ``note`` ends the error message."""

    low: int | float
    high: int | float
    open_high: bool = False
    note: str = ""

    def contains(self, value) -> bool:
        return self.low <= value and (value < self.high if self.open_high else value <= self.high)

    def describe(self) -> str:
        return f"[{self.low:g}, {self.high:g}{')' if self.open_high else ']'}" + (f" {self.note}" if self.note else "")


def _algorithm_names() -> tuple[str, ...]:
    from distral_tf import algorithms

    return algorithms.NAMES


def _alpha_help() -> str:
    from distral_tf import algorithms

    defaults = ", ".join(f"{algorithms.get(name).default_alpha:g} for {name}" for name in algorithms.with_kl())
    return f"Override of alpha for the Distral algorithms (default: {defaults})."


def _suite_help() -> str:
    from distral_tf.envs import suites

    return f"Task suite ({', '.join(suites.suite_names())}) or comma-separated task names."


def _preset_help() -> str:
    from distral_tf.training import presets

    return presets.help_text()


def _preset_names() -> tuple[str, ...]:
    from distral_tf.training import presets

    return tuple(presets.PRESETS)


def setting(default: Any, help_text: str | Callable[[], str], *, choices: tuple | Callable[[], tuple] | None = None,
            bound: UpTo | Interval | None = None, flag_default: Any = dataclasses.MISSING) -> Any:
    """A field of :class:`TrainConfig` with its flag's help text, choices (an enum flag) and bound.

    ``help_text`` and ``choices`` may be functions, called when the flags are defined (for
    values that need imports the configuration itself does not). ``flag_default`` is the
    flag's default where it differs from the field's (``None``: computed from other flags).
    """
    metadata = {"help": help_text, "choices": choices, "bound": bound}
    if flag_default is not dataclasses.MISSING:
        metadata["flag_default"] = flag_default
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs; each field's help is in its metadata (``--help`` of ``distral_tf.run``).

    ``total_env_steps`` (like every ``env_steps`` of the package) counts agent steps: actions
    taken, summed over tasks and workers; one agent step may be several environment frames.
    """

    algo: str = setting("kl_2col", "Which algorithm (the paper's Table 1).", choices=_algorithm_names)
    suite: str = setting("doom_mazes_small", _suite_help)
    logdir: str = setting(
        "runs/default", "Run directory (TensorBoard events, metrics, checkpoints). Rerunning with the same "
        "directory resumes. Default: runs/<algo>-<suite>-s<seed>.", flag_default=None)
    total_env_steps: int = setting(
        4_000_000, "Agent steps over all tasks (each task gets an equal share, rounded up to whole rollouts). The "
        "default is the committed 3D maze evidence's budget (docs/results/doom_mazes_small); the paper's is "
        "--preset=paper.",
        bound=UpTo(MAX_TOTAL_ENV_STEPS))
    workers_per_task: int = setting(32, "Asynchronous workers (environments) per task.",
                                    bound=UpTo(MAX_WORKERS_PER_TASK))
    unroll_length: int = setting(20, "Rollout length t_max.", bound=UpTo(10_000))
    learning_rate: float = setting(1e-3, "Initial RMSProp learning rate (annealed linearly to 0).", bound=UpTo(1.0))
    entropy_cost: float = setting(
        0.01, "The swept entropy cost: 1/beta for the Distral algorithms, the entropy bonus beta_ent for A3C.",
        bound=UpTo(1e3, strict=False))
    alpha: float | None = setting(None, _alpha_help, bound=Interval(0.0, 1.0))
    discount: float = setting(0.99, "Discount gamma.", bound=Interval(0.0, 1.0))
    value_cost: float = setting(0.5, "Weight of the value loss.", bound=UpTo(1e6, strict=False))
    max_grad_norm: float = setting(40.0, "Global-norm gradient clipping.", bound=UpTo(1e9))
    rmsprop_decay: float = setting(0.99, "Shared RMSProp decay rho.", bound=Interval(0.0, 1.0, open_high=True))
    rmsprop_epsilon: float = setting(0.1, "Shared RMSProp epsilon.", bound=UpTo(1e3))
    rmsprop_initial_mean_square: float = setting(
        0.0, "Initial value of the shared RMSProp's mean squares: 0 (Keras) or 1 (TF1's tf.train.RMSPropOptimizer, "
        "whose first steps are smaller; docs/fidelity.md).", bound=UpTo(1e6, strict=False))
    reward_clipping: str = setting("none", "Reward clipping applied for learning (returns are logged unclipped).",
                                   choices=REWARD_CLIPPING)
    observation_normalization: str = setting(
        "suite", "Frames in [0, 1] (none), or centred and scaled per pixel by the statistics of frames of a random "
        "policy, taken when a run starts (per_pixel); suite: the suite's own choice (per_pixel for the Doom suites, "
        "whose rooms fill most of every frame; none elsewhere).", choices=OBSERVATION_NORMALIZATIONS)
    seed: int = setting(0, "Random seed.", bound=UpTo(2**31 - 1, strict=False))
    update_mode: str = setting(
        "hogwild", "hogwild: each worker applies its own gradient asynchronously (the paper); batched: the rollouts "
        "of the workers waiting together are combined into one update.", choices=UPDATE_MODES)
    checkpoint_every_secs: float = setting(300.0, "Seconds between checkpoints.", bound=UpTo(7 * 86_400.0))
    keep_checkpoints: int = setting(3, "Checkpoints kept.", bound=UpTo(1000))
    log_every_secs: float = setting(30.0, "Seconds between progress lines.", bound=UpTo(86_400.0))
    summary_every_updates: int = setting(20, "Per-task loss summaries every this many updates of a worker.",
                                         bound=UpTo(10**9))
    eval_every_env_steps: int = setting(
        0, "Evaluate pi_0 on every task each time this many agent steps per task pass (0: ten times per run).",
        bound=UpTo(MAX_TOTAL_ENV_STEPS, strict=False))
    eval_episodes: int = setting(2, "Episodes per task of each pi_0 evaluation (0 disables evaluation).",
                                 bound=UpTo(10_000, strict=False))
    eval_greedy: bool = setting(False, "Evaluate pi_0 greedily instead of sampling.")
    final_eval_episodes: int = setting(
        30, "Episodes per task of the final evaluation of pi_0 at the run's last step, which reports rank pi_0 by "
        "(0: none).", bound=UpTo(100_000, strict=False))
    eval_clip_every: int = setting(
        0, "Every this many evaluations of pi_0, a clip of pi_0 on every task (an animated image in TensorBoard's "
        "images tab, distilled/<task>/clip); 0 writes none.", bound=UpTo(10**6, strict=False))
    max_consecutive_nonfinite: int = setting(
        100, "Stop after this many consecutive updates with non-finite gradients.", bound=UpTo(10**9))
    env_timeout_secs: float = setting(
        60.0, "An environment process that does not answer a step within this many seconds is restarted.",
        bound=UpTo(86_400.0))
    num_env_processes: int = setting(
        -1, "Processes stepping the environments (observations in shared memory); 0 steps them in the actor "
        "threads, -1 uses one process per core.", bound=Interval(-1, 1024, note="(-1: one per core, 0: in-process)"))
    actor_threads: int = setting(
        2, "Threads driving the workers in lockstep groups (one batched network call per group and step); while "
        "one group computes its actions or learns, the environments of the others step.", bound=UpTo(256))
    learner_threads: int = setting(
        3, "Threads applying the workers' own gradients concurrently in --update_mode=hogwild.", bound=UpTo(256))
    rollouts_per_call: int = setting(
        16, "--update_mode=hogwild: rollouts of one task whose gradients come from one batched pass (each still "
        "applied as its own RMSProp step, in order); more is faster per rollout and holds more memory.",
        bound=UpTo(4096))
    tf_inter_op_threads: int = setting(0, "TensorFlow inter-op threads (0: TensorFlow's default).",
                                       bound=UpTo(1024, strict=False))
    tf_intra_op_threads: int = setting(
        1, "TensorFlow intra-op threads (0: TensorFlow's default). 1 (the default) leaves the cores to the "
        "concurrent actor and learner threads and the environments; see docs/throughput.md.",
        bound=UpTo(1024, strict=False))
    device: str = setting(
        "", "TensorFlow device of acting and the updates, e.g. /GPU:0 (the shared parameters stay in host memory); "
        "empty: TensorFlow's placement (on a CPU-only machine, the CPU).")
    rmsprop_kernel: str = setting(
        "auto", "How the RMSProp steps of --update_mode=hogwild are applied (the same values either way): cpp, a "
        "C++ TensorFlow op compiled at first use with g++ (about 20 s, cached in ~/.cache/distral_tf/kernels); "
        "xla, an XLA program; auto: cpp where it builds and the updates run on the CPU, else xla. See "
        "docs/throughput.md.", choices=RMSPROP_KERNELS)
    torso_dtype: str = setting(
        "float32", "Compute dtype of the convolutional torso (variables stay float32; LSTM, heads and losses run in "
        "float32). bfloat16 is faster on CPUs with bfloat16 instructions.", choices=TORSO_DTYPES)
    two_column_scaling: str = setting(
        "unit", "Two-column task policies softmax(alpha h0 + beta f) (eq. 8): 'unit' divides f's policy layer by "
        "beta inside the column, so that beta*f is a unit-scaled network whatever beta is; 'literal' keeps f a "
        "plain policy layer, so that each learning step moves the logits about beta times further. See "
        "docs/fidelity.md.", choices=TWO_COLUMN_SCALINGS)
    init_from: str = setting(
        "", "Run directory whose distilled policy pi_0 (h0 in 2col) starts this run (its newest checkpoint); the "
        "task columns start fresh. Observation and action spaces must match. Applies when the run starts, not on "
        "resume.")
    freeze_distilled: bool = setting(
        False, "Keep pi_0 (h0 in 2col) fixed: only the task columns learn. Needs --init_from.")
    force: bool = setting(False, "Resume a run even if model-defining flags changed.")
    backend: str = setting(
        "local", "local: the whole run in this process and its environment processes; ray: the tasks' learners "
        "spread over a Ray cluster, pi_0/h0 held by a shared-parameter actor (docs/cluster.md; needs "
        "pip install ray).", choices=BACKENDS)
    address: str = setting(
        "", "--backend=ray: the cluster to join ('auto' or HOST:PORT); empty starts Ray on this machine alone.")
    learners: int = setting(
        0, "--backend=ray: task learners (Ray actors), each with a contiguous share of the tasks, their workers "
        "and task columns; 0: one per task.", bound=UpTo(4096, strict=False))
    cpus_per_learner: float = setting(
        1.0, "--backend=ray: CPUs each task learner reserves (with --num_env_processes=-1 its environments take "
        "one process per reserved CPU).", bound=UpTo(1024.0))
    gradients_per_push: int = setting(
        8, "--backend=ray: shared-column gradients (one per update: per rollout with --update_mode=hogwild) a "
        "learner sends to the shared parameters in one call; each is still applied as its own RMSProp step, in "
        "order. A learner sends all it holds before each snapshot, so only the order in which its gradients and "
        "other learners' are applied changes (docs/cluster.md).", bound=UpTo(1024))
    ray_resources: str = setting(
        "", "--backend=ray: custom Ray resources each task learner reserves, as JSON, e.g. '{\"doom\": 1}'.")
    max_restarts: int = setting(
        3, "--backend=ray: times the run starts again from its last checkpoint after a node (or an actor) of the "
        "cluster is lost.", bound=UpTo(1000, strict=False))

    preset: str | None = setting(None, _preset_help, choices=_preset_names)
    track: str = setting(
        "none", "Mirror the run's scalars, hyperparameters and final figures to an experiment tracker as well as "
        "TensorBoard: wandb (Weights & Biases; pip install 'distral_tf[wandb]') or mlflow (pip install "
        "'distral_tf[mlflow]'; MLFLOW_TRACKING_URI says where).", choices=TRACKERS)
    track_project: str = setting("distral_tf", "--track: the W&B project, or the MLflow experiment of a run "
                                 "outside a sweep.")
    track_group: str = setting("", "--track: the group of runs this run belongs to (a sweep sets its name): the "
                               "W&B group, the MLflow experiment.")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def model_differences(self, saved: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
        """Model-defining fields (except ``ignore``) whose saved value differs from this config's."""
        saved = {**LEGACY_VALUES, **saved}
        return [f"{k}: saved {saved[k]!r}, now {getattr(self, k)!r}" for k in MODEL_FIELDS
                if k in saved and k not in ignore and json.loads(json.dumps(getattr(self, k))) != saved[k]]
