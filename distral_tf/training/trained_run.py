"""A finished (or running) run directory, read back: its configuration, checkpoints and agent.

Loading never writes into the run directory: the agent is rebuilt from the run's
``config.json`` and its parameters are read from a checkpoint with
``tf.train.Checkpoint.read`` (no save counter, no index update). Bad input (no
run there, no checkpoint, an unknown step, another observation or action space)
raises :class:`RunLoadError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import json
import os

from distral_tf.envs.suites import Suite
from distral_tf.training import run_files
from distral_tf.training.config import LEGACY_VALUES, TrainConfig
from distral_tf.training.run_directory import budget_per_task, saved_settings
from distral_tf.training.run_files import CHECKPOINT_DIR, CONFIG_FILE


class RunLoadError(ValueError):
    """A run directory cannot be read back (the message is one line)."""


def read_config(logdir: str) -> tuple[TrainConfig, dict]:
    """The run's :class:`TrainConfig` and the whole ``config.json`` (suite, task names, ...)."""
    path = os.path.join(logdir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise RunLoadError(f"{logdir} is not a run directory (no {CONFIG_FILE}).")
    try:
        with open(path) as f:
            meta = json.load(f)
        saved = saved_settings(meta, path) if isinstance(meta, dict) else None
    except (OSError, ValueError) as e:
        raise RunLoadError(f"{path} cannot be read ({type(e).__name__}: {e}).") from None
    except run_files.RunDirError as e:
        raise RunLoadError(f"{e}.") from None
    if saved is None:
        raise RunLoadError(f"{path} holds no settings (no \"config\" entry).")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    saved = {**LEGACY_VALUES, **saved}  # runs written before a model-defining field existed
    return TrainConfig(**{k: v for k, v in saved.items() if k in fields}), meta


def checkpoint_steps(logdir: str) -> dict[int, str]:
    """Agent step -> checkpoint prefix, for every checkpoint in ``logdir/checkpoints`` (any order)."""
    directory = os.path.join(logdir, CHECKPOINT_DIR)
    return {n: os.path.join(directory, f"ckpt-{n}") for n in run_files.checkpoint_numbers(directory)}


def select_checkpoint(logdir: str, step: int | None = None) -> tuple[int, str]:
    """``(step, prefix)`` of the checkpoint at ``step`` (the newest when ``None``)."""
    steps = checkpoint_steps(logdir)
    if not steps:
        raise RunLoadError(f"{logdir} has no checkpoint (nothing in {os.path.join(logdir, CHECKPOINT_DIR)}).")
    if step is None:
        step = max(steps)
    if step not in steps:
        raise RunLoadError(f"{logdir} has no checkpoint at step {step}; its checkpoints are at steps "
                           f"{', '.join(str(s) for s in sorted(steps))}.")
    return step, steps[step]


def probe_spaces(suite: Suite) -> tuple[tuple[int, ...], int]:
    """``(observation shape, number of actions)`` of the suite (from its task 0)."""
    env = suite.make_env(0)
    try:
        return tuple(int(d) for d in env.observation_space.shape), int(env.action_space.n)
    finally:
        try:
            env.close()
        except Exception:  # an engine failing while it shuts down changes nothing here
            pass


def run_spaces(meta: dict, suite: Suite | None = None) -> tuple[tuple[int, ...], int]:
    """The run's observation shape and action count: from ``config.json``, else from its suite."""
    if "observation_shape" in meta and "num_actions" in meta:
        return tuple(int(d) for d in meta["observation_shape"]), int(meta["num_actions"])
    if suite is None:
        from distral_tf.envs import make_suite

        suite = make_suite((saved_settings(meta) or {})["suite"])
    return probe_spaces(suite)


def check_same_spaces(suite: Suite, observation_shape, num_actions: int, what: str):
    """Raises :class:`RunLoadError` unless ``suite`` has these observation and action spaces."""
    shape, actions = probe_spaces(suite)
    if shape != tuple(observation_shape) or actions != int(num_actions):
        raise RunLoadError(
            f"Suite {suite.name!r} has observations {shape} and {actions} actions, but {what} has observations "
            f"{tuple(observation_shape)} and {int(num_actions)} actions.")


@dataclasses.dataclass(frozen=True)
class Spaces:
    """What an agent's shape takes from its run besides the configuration: tasks, observations, actions."""

    num_tasks: int
    observation_shape: tuple[int, ...]
    num_actions: int

    @classmethod
    def of(cls, num_tasks: int, observation_space, action_space) -> Spaces:
        """The spaces of environments with these (gym) observation and action spaces."""
        return cls(int(num_tasks), tuple(int(d) for d in observation_space.shape), int(action_space.n))


def algorithm_of(config: TrainConfig):
    """``(algorithm, coefficients)`` of a run of ``config`` (:mod:`distral_tf.algorithms`)."""
    from distral_tf import algorithms

    algorithm = algorithms.get(config.algo)
    return algorithm, algorithm.coefficients(config.entropy_cost, config.alpha, config.value_cost, config.discount)


def build_agent(config: TrainConfig, spaces: Spaces, suite=None):
    """An agent of ``config``'s run on ``spaces`` (fresh parameters, following from the seed): the one way
    training, its Ray actors, evaluation, export and transfer build one.

    Its learning rate anneals over the run's budget rounded up to whole rollouts per task
    (:func:`~distral_tf.training.run_directory.budget_per_task`), as trained. With per-pixel observation
    normalisation its statistics are the identity until set (by the run's start, or a checkpoint).
    ``suite``: the run's :class:`~distral_tf.envs.suites.Suite`, where the caller has it (otherwise looked up by
    name, for ``--observation_normalization=suite``).
    """
    from distral_tf.model.agent import Agent
    from distral_tf.training.observation_statistics import normalization_of

    algorithm, coeffs = algorithm_of(config)
    budget = budget_per_task(config, spaces.num_tasks) * spaces.num_tasks
    kwargs = dict(unroll_length=config.unroll_length, learning_rate=config.learning_rate,
                  total_env_steps=budget, rmsprop_decay=config.rmsprop_decay,
                  rmsprop_epsilon=config.rmsprop_epsilon, max_grad_norm=config.max_grad_norm, seed=config.seed,
                  torso_dtype=config.torso_dtype, two_column_scaling=config.two_column_scaling,
                  train_distilled=not config.freeze_distilled,
                  rmsprop_initial_mean_square=config.rmsprop_initial_mean_square, device=config.device,
                  rmsprop_kernel=config.rmsprop_kernel,
                  normalize_observations=normalization_of(config, suite) == "per_pixel")
    return Agent(algorithm, coeffs, spaces.num_tasks, spaces.observation_shape, spaces.num_actions, **kwargs)


def restore_agent(agent, prefix: str):
    """Reads the agent's variables from checkpoint ``prefix`` (nothing is written)."""
    import tensorflow as tf

    try:
        tf.train.Checkpoint(agent=agent).read(prefix).expect_partial().assert_existing_objects_matched()
    except (tf.errors.OpError, ValueError, AssertionError) as e:
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise RunLoadError(f"Checkpoint {prefix} cannot be restored into a {agent.algorithm.name} agent: "
                           f"{first_line}") from None


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """A run's agent restored from one of its checkpoints."""

    logdir: str
    config: TrainConfig
    task_names: tuple[str, ...]
    suite_name: str
    step: int
    checkpoint: str
    observation_shape: tuple[int, ...]
    num_actions: int
    agent: object  # distral_tf.model.agent.Agent


def load(logdir: str, step: int | None = None, suite: Suite | None = None) -> TrainedRun:
    """Rebuilds the agent of the run in ``logdir`` and restores checkpoint ``step`` (default: the newest).

    ``suite``, when given, is the run's own suite (spares building it again to read the spaces).
    """
    if not os.path.isdir(logdir):
        raise RunLoadError(f"{logdir} is not a directory.")
    config, meta = read_config(logdir)
    step, prefix = select_checkpoint(logdir, step)
    task_names = tuple(meta.get("task_names") or ())
    if not task_names:
        raise RunLoadError(f"{os.path.join(logdir, CONFIG_FILE)} lists no task names.")
    observation_shape, num_actions = run_spaces(meta, suite)
    agent = build_agent(config, Spaces(len(task_names), observation_shape, num_actions))
    restore_agent(agent, prefix)
    return TrainedRun(logdir=logdir, config=config, task_names=task_names, suite_name=meta.get("suite", config.suite),
                      step=step, checkpoint=prefix, observation_shape=observation_shape, num_actions=num_actions,
                      agent=agent)
