"""Flags of ``python -m distral_tf.run`` and their validators.

Each invalid value stops the program before anything is written, with one line
naming the flag and what is allowed.
"""

from __future__ import annotations

import math
import os

from absl import flags

from distral_tf import algorithms
from distral_tf.config import REWARD_CLIPPING, TORSO_DTYPES, TWO_COLUMN_SCALINGS, UPDATE_MODES, TrainConfig
from distral_tf.envs import suites

_D = TrainConfig()

ALGO = flags.DEFINE_enum("algo", _D.algo, algorithms.NAMES, "Which of the paper's seven algorithms (Table 1).")
SUITE = flags.DEFINE_string(
    "suite", _D.suite, f"Task suite ({', '.join(suites.suite_names())}) or comma-separated task names.")
LOGDIR = flags.DEFINE_string(
    "logdir", None, "Run directory (TensorBoard events, metrics, checkpoints). Rerunning with the same "
    "directory resumes. Default: runs/<algo>-<suite>-s<seed>.")
TOTAL_ENV_STEPS = flags.DEFINE_integer(
    "total_env_steps", _D.total_env_steps,
    "Agent steps over all tasks (each task gets an equal share, rounded up to whole rollouts).")
WORKERS_PER_TASK = flags.DEFINE_integer("workers_per_task", _D.workers_per_task,
                                        "Asynchronous workers (environments) per task.")
UNROLL_LENGTH = flags.DEFINE_integer("unroll_length", _D.unroll_length, "Rollout length t_max.")
LEARNING_RATE = flags.DEFINE_float("learning_rate", _D.learning_rate,
                                   "Initial RMSProp learning rate (annealed linearly to 0).")
ENTROPY_COST = flags.DEFINE_float(
    "entropy_cost", _D.entropy_cost,
    "The swept entropy cost: 1/beta for the Distral algorithms, the entropy bonus beta_ent for A3C.")
ALPHA = flags.DEFINE_float("alpha", None, "Override of alpha for the Distral algorithms "
                           "(default: 1 for kl_*, 0.5 for klent_*).")
DISCOUNT = flags.DEFINE_float("discount", _D.discount, "Discount gamma.")
VALUE_COST = flags.DEFINE_float("value_cost", _D.value_cost, "Weight of the value loss.")
MAX_GRAD_NORM = flags.DEFINE_float("max_grad_norm", _D.max_grad_norm, "Global-norm gradient clipping.")
RMSPROP_DECAY = flags.DEFINE_float("rmsprop_decay", _D.rmsprop_decay, "Shared RMSProp decay rho.")
RMSPROP_EPSILON = flags.DEFINE_float("rmsprop_epsilon", _D.rmsprop_epsilon, "Shared RMSProp epsilon.")
REWARD_CLIP = flags.DEFINE_enum("reward_clipping", _D.reward_clipping, REWARD_CLIPPING,
                                "Reward clipping applied for learning (returns are logged unclipped).")
SEED = flags.DEFINE_integer("seed", _D.seed, "Random seed.")
UPDATE_MODE = flags.DEFINE_enum(
    "update_mode", _D.update_mode, UPDATE_MODES,
    "hogwild: each worker applies its own gradient asynchronously (the paper); batched: the rollouts of "
    "the workers waiting together are combined into one update.")
CHECKPOINT_EVERY_SECS = flags.DEFINE_float("checkpoint_every_secs", _D.checkpoint_every_secs,
                                           "Seconds between checkpoints.")
KEEP_CHECKPOINTS = flags.DEFINE_integer("keep_checkpoints", _D.keep_checkpoints, "Checkpoints kept.")
LOG_EVERY_SECS = flags.DEFINE_float("log_every_secs", _D.log_every_secs, "Seconds between progress lines.")
SUMMARY_EVERY_UPDATES = flags.DEFINE_integer("summary_every_updates", _D.summary_every_updates,
                                             "Per-task loss summaries every this many updates of a worker.")
EVAL_EVERY_ENV_STEPS = flags.DEFINE_integer(
    "eval_every_env_steps", _D.eval_every_env_steps,
    "Evaluate pi_0 on every task each time this many agent steps per task pass (0: ten times per run).")
EVAL_EPISODES = flags.DEFINE_integer("eval_episodes", _D.eval_episodes,
                                     "Episodes per task of each pi_0 evaluation (0 disables evaluation).")
EVAL_GREEDY = flags.DEFINE_bool("eval_greedy", _D.eval_greedy, "Evaluate pi_0 greedily instead of sampling.")
EVAL_CLIP_EVERY = flags.DEFINE_integer(
    "eval_clip_every", _D.eval_clip_every,
    "Every this many evaluations of pi_0, a clip of pi_0 on every task (an animated image in TensorBoard's "
    "images tab, distilled/<task>/clip); 0 writes none.")
MAX_CONSECUTIVE_NONFINITE = flags.DEFINE_integer(
    "max_consecutive_nonfinite", _D.max_consecutive_nonfinite,
    "Stop after this many consecutive updates with non-finite gradients.")
NUM_ENV_PROCESSES = flags.DEFINE_integer(
    "num_env_processes", _D.num_env_processes,
    "Processes stepping the environments (observations in shared memory); 0 steps them in the actor threads, "
    "-1 uses one process per core.")
ACTOR_THREADS = flags.DEFINE_integer(
    "actor_threads", _D.actor_threads,
    "Threads driving the workers in lockstep groups (one batched network call per group and step); while one "
    "group computes its actions or learns, the environments of the others step.")
LEARNER_THREADS = flags.DEFINE_integer(
    "learner_threads", _D.learner_threads,
    "Threads applying the workers' own gradients concurrently in --update_mode=hogwild.")
ENV_TIMEOUT_SECS = flags.DEFINE_float(
    "env_timeout_secs", _D.env_timeout_secs,
    "An environment process that does not answer a step within this many seconds is restarted.")
TF_INTER_OP_THREADS = flags.DEFINE_integer(
    "tf_inter_op_threads", _D.tf_inter_op_threads, "TensorFlow inter-op threads (0: TensorFlow's default).")
TF_INTRA_OP_THREADS = flags.DEFINE_integer(
    "tf_intra_op_threads", _D.tf_intra_op_threads,
    "TensorFlow intra-op threads (0: TensorFlow's default). 1 (the default) leaves the cores to the concurrent "
    "actor and learner threads and the environments; see docs/throughput.md.")
TORSO_DTYPE = flags.DEFINE_enum(
    "torso_dtype", _D.torso_dtype, TORSO_DTYPES,
    "Compute dtype of the convolutional torso (variables stay float32; LSTM, heads and losses run in float32). "
    "bfloat16 is faster on CPUs with bfloat16 instructions.")
TWO_COLUMN_SCALING = flags.DEFINE_enum(
    "two_column_scaling", _D.two_column_scaling, TWO_COLUMN_SCALINGS,
    "Two-column task policies softmax(alpha h0 + beta f) (eq. 8): 'unit' divides f's policy layer by beta "
    "inside the column, so that beta*f is a unit-scaled network whatever beta is; 'literal' keeps f a plain "
    "policy layer, so that each learning step moves the logits about beta times further. See docs/fidelity.md.")
INIT_FROM = flags.DEFINE_string(
    "init_from", _D.init_from,
    "Run directory whose distilled policy pi_0 (h0 in 2col) starts this run (its newest checkpoint); the task "
    "columns start fresh. Observation and action spaces must match. Applies when the run starts, not on resume.")
FREEZE_DISTILLED = flags.DEFINE_bool(
    "freeze_distilled", _D.freeze_distilled,
    "Keep pi_0 (h0 in 2col) fixed: only the task columns learn. Needs --init_from.")
FORCE = flags.DEFINE_bool("force", _D.force, "Resume a run even if model-defining flags changed.")


# Upper bounds: far beyond any sensible run, low enough that a typo (an extra zero or
# exponent) is caught before it overflows a timer or a buffer, or hangs the start.
MAX_TOTAL_ENV_STEPS = 10**12
MAX_WORKERS_PER_TASK = 4096
_POSITIVE = {  # flag -> largest value allowed
    "total_env_steps": MAX_TOTAL_ENV_STEPS, "workers_per_task": MAX_WORKERS_PER_TASK, "unroll_length": 10_000,
    "learning_rate": 1.0, "max_grad_norm": 1e9, "rmsprop_epsilon": 1e3, "keep_checkpoints": 1000,
    "log_every_secs": 86_400.0, "checkpoint_every_secs": 7 * 86_400.0, "summary_every_updates": 10**9,
    "max_consecutive_nonfinite": 10**9, "actor_threads": 256, "learner_threads": 256,
    "env_timeout_secs": 86_400.0,
}
_NON_NEGATIVE = {
    "entropy_cost": 1e3, "value_cost": 1e6, "seed": 2**31 - 1,
    "eval_every_env_steps": MAX_TOTAL_ENV_STEPS, "eval_episodes": 10_000, "tf_inter_op_threads": 1024,
    "tf_intra_op_threads": 1024, "eval_clip_every": 10**6,
}

# Memory one environment takes, all included (engine, its process's share, the worker's
# rollout and network state), by suite family. Doom: from the 8 x 32 throughput runs
# (under 6 GiB PSS for 256 environments, docs/throughput.md); rounded up.
MEMORY_PER_ENV_BYTES = {"doom": 24 << 20, "dmlab": 64 << 20, "two_rooms": 2 << 20}


def _number(value) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,g}"


def _bounded(name: str, upper: float, strict: bool):
    sign = ">" if strict else ">="

    def check(value):
        if value is None:
            raise flags.ValidationError(f"--{name} is required.")
        if isinstance(value, float) and not math.isfinite(value):
            raise flags.ValidationError(f"--{name} must be a finite number {sign} 0, got {value}.")
        if not (value > 0 if strict else value >= 0):
            raise flags.ValidationError(f"--{name} must be {sign} 0, got {value:g}.")
        if value > upper:
            raise flags.ValidationError(f"--{name}={_number(value)} is above its limit of {_number(upper)}.")
        return True

    flags.register_validator(name, check)


for _name, _upper in _POSITIVE.items():
    _bounded(_name, _upper, strict=True)
for _name, _upper in _NON_NEGATIVE.items():
    _bounded(_name, _upper, strict=False)
flags.register_validator("num_env_processes", lambda v: v is not None and -1 <= v <= 1024,
                         "--num_env_processes must be in [-1, 1024] (-1: one per core, 0: in-process).")
flags.register_validator("discount", lambda v: v is not None and 0.0 <= v <= 1.0, "--discount must be in [0, 1].")
flags.register_validator("rmsprop_decay", lambda v: v is not None and 0.0 <= v < 1.0,
                         "--rmsprop_decay must be in [0, 1).")
flags.register_validator("alpha", lambda v: v is None or 0.0 <= v <= 1.0, "--alpha must be in [0, 1].")


@flags.multi_flags_validator(["algo", "alpha"], message="--alpha applies only to the Distral algorithms "
                             "(kl_1col, kl_2col, klent_1col, klent_2col); A3C baselines have no KL term.")
def _alpha_only_for_distral(values):
    return values["alpha"] is None or algorithms.get(values["algo"]).kl


@flags.multi_flags_validator(["algo", "entropy_cost"], message="--entropy_cost is 1/beta for the Distral "
                             "algorithms and must be > 0.")
def _distral_entropy_cost(values):
    return not algorithms.get(values["algo"]).kl or values["entropy_cost"] > 0


@flags.multi_flags_validator(["init_from", "freeze_distilled"],
                             message="--freeze_distilled keeps a trained pi_0 fixed and needs --init_from=RUN.")
def _freeze_needs_init(values):
    return not values["freeze_distilled"] or bool(values["init_from"])


def _validate_suite(value):
    if not value or not value.strip():
        raise flags.ValidationError("--suite must name a suite or tasks, got an empty value.")
    names = [t.strip() for t in value.split(",")]
    if "" in names and len(names) > 1:
        raise flags.ValidationError(f"--suite={value} has an empty task name.")
    repeated = sorted({t for t in names if names.count(t) > 1})
    if repeated:
        raise flags.ValidationError(f"--suite={value} names {', '.join(repeated)} more than once; "
                                    "each task may appear once.")
    try:
        suites.make_suite(value)
    except ValueError as e:
        raise flags.ValidationError(str(e)) from None
    except ImportError as e:
        raise flags.ValidationError(f"--suite={value} needs a module that is not installed: {e}") from None
    return True


flags.register_validator("suite", _validate_suite)


def _validate_logdir(value):
    if value is None:
        return True
    if not value.strip():
        raise flags.ValidationError("--logdir is empty; give a directory, or leave the flag out for the default.")
    if "\0" in value:
        raise flags.ValidationError("--logdir contains a NUL character.")
    parent = os.path.abspath(value)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or (not os.path.isdir(value) and not os.access(parent, os.W_OK)) or (
            os.path.isdir(value) and not os.access(value, os.W_OK)):
        raise flags.ValidationError(f"--logdir={value} is not a writable directory.")
    return True


flags.register_validator("logdir", _validate_logdir)


def memory_per_env_bytes(suite_name: str) -> int:
    """Estimated memory of one environment of ``suite_name`` (see ``MEMORY_PER_ENV_BYTES``)."""
    suite = suites.make_suite(suite_name)
    family = suite.name if suite.name in MEMORY_PER_ENV_BYTES else suite.env_ids[0]
    for prefix, size in MEMORY_PER_ENV_BYTES.items():
        if prefix in family.lower() or prefix in suite_name.lower():
            return size
    return max(MEMORY_PER_ENV_BYTES.values())


def machine_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 1 << 62


@flags.multi_flags_validator(["suite", "workers_per_task"])
def _workers_fit_in_memory(values):
    workers, suite_name = values["workers_per_task"], values["suite"]
    if not workers or workers <= 0 or workers > MAX_WORKERS_PER_TASK:
        return True  # reported by the flag's own validator
    try:
        num_tasks = suites.make_suite(suite_name).num_tasks
        per_env = memory_per_env_bytes(suite_name)
    except (ValueError, ImportError):
        return True  # reported by --suite's validator
    need, have = num_tasks * workers * per_env, machine_memory_bytes()
    if need > have:
        raise flags.ValidationError(
            f"--workers_per_task={workers}: {num_tasks} tasks x {workers} environments need about "
            f"{need / 2**30:,.1f} GiB ({per_env >> 20} MiB each), more than this machine's "
            f"{have / 2**30:,.1f} GiB; at most {have // (num_tasks * per_env):,} workers per task fit.")
    return True


def config_from_flags() -> TrainConfig:
    """The run's configuration from the parsed flags."""
    logdir = LOGDIR.value or os.path.join("runs", f"{ALGO.value}-{SUITE.value.replace(',', '+')}-s{SEED.value}")
    return TrainConfig(
        algo=ALGO.value, suite=SUITE.value, logdir=logdir, total_env_steps=TOTAL_ENV_STEPS.value,
        workers_per_task=WORKERS_PER_TASK.value, unroll_length=UNROLL_LENGTH.value,
        learning_rate=LEARNING_RATE.value, entropy_cost=ENTROPY_COST.value, alpha=ALPHA.value,
        discount=DISCOUNT.value, value_cost=VALUE_COST.value, max_grad_norm=MAX_GRAD_NORM.value,
        rmsprop_decay=RMSPROP_DECAY.value, rmsprop_epsilon=RMSPROP_EPSILON.value,
        reward_clipping=REWARD_CLIP.value, seed=SEED.value, update_mode=UPDATE_MODE.value,
        checkpoint_every_secs=CHECKPOINT_EVERY_SECS.value,
        keep_checkpoints=KEEP_CHECKPOINTS.value, log_every_secs=LOG_EVERY_SECS.value,
        summary_every_updates=SUMMARY_EVERY_UPDATES.value, eval_every_env_steps=EVAL_EVERY_ENV_STEPS.value,
        eval_episodes=EVAL_EPISODES.value, eval_greedy=EVAL_GREEDY.value, eval_clip_every=EVAL_CLIP_EVERY.value,
        max_consecutive_nonfinite=MAX_CONSECUTIVE_NONFINITE.value, force=FORCE.value,
        num_env_processes=NUM_ENV_PROCESSES.value, actor_threads=ACTOR_THREADS.value,
        learner_threads=LEARNER_THREADS.value,
        env_timeout_secs=ENV_TIMEOUT_SECS.value, tf_inter_op_threads=TF_INTER_OP_THREADS.value,
        tf_intra_op_threads=TF_INTRA_OP_THREADS.value, torso_dtype=TORSO_DTYPE.value,
        two_column_scaling=TWO_COLUMN_SCALING.value,
        init_from=INIT_FROM.value, freeze_distilled=FREEZE_DISTILLED.value,
    )
