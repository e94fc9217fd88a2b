"""Building a run: its environments' spaces, the agent, the checkpointer, the monitor and the evaluator.

:func:`probe_environment` reads the spaces from task 0 of the suite (before anything is
written: a missing engine leaves no run directory); :func:`build_run` builds the agent
of the run's configuration (:func:`~distral_tf.training.trained_run.build_agent`), restores the
newest checkpoint (or starts pi_0 from ``--init_from``), and makes the monitor and the
evaluation of pi_0 of this attempt. The workers are the backends'
(:mod:`distral_tf.training.backends`); the loop that runs them is :class:`~distral_tf.training.trainer.Trainer`.
"""

from __future__ import annotations

import dataclasses
import os
import threading

from absl import logging

from distral_tf.envs.suites import Suite
from distral_tf.training import observation_statistics, warm_start
from distral_tf.training.actors import close_quietly
from distral_tf.training.checkpointing import Checkpointer
from distral_tf.training.config import TrainConfig
from distral_tf.training.distilled_evaluation import Evaluator
from distral_tf.training.monitoring import Monitor
from distral_tf.training.run_counters import RunState
from distral_tf.training.run_files import CHECKPOINT_DIR
from distral_tf.training.trained_run import Spaces, build_agent


class TrainingError(RuntimeError):
    """A run cannot continue (bad configuration on resume, repeated non-finite updates, ...)."""


@dataclasses.dataclass(frozen=True)
class EnvSpaces:
    """The observation and action spaces of a suite's environments (gym spaces)."""

    observation_space: object
    action_space: object

    def for_agent(self, num_tasks: int) -> Spaces:
        """What an agent of ``num_tasks`` tasks on these environments is shaped by."""
        return Spaces.of(num_tasks, self.observation_space, self.action_space)


def probe_environment(suite: Suite) -> EnvSpaces:
    """The spaces of task 0 of ``suite`` (raising if its environment cannot start, ``TrainingError`` if its
    observations are not images)."""
    probe = suite.make_env(0)
    spaces = EnvSpaces(probe.observation_space, probe.action_space)
    close_quietly(probe)
    if len(spaces.observation_space.shape) != 3:
        raise TrainingError(f"Suite {suite.name!r}: observations must be images [H, W, C], "
                            f"got shape {spaces.observation_space.shape}.")
    return spaces


def eval_interval(config: TrainConfig, steps_per_task: int) -> int:
    """Agent steps per task between evaluations of pi_0 (0: none)."""
    if config.eval_episodes <= 0:
        return 0
    if config.eval_every_env_steps > 0:
        return config.eval_every_env_steps
    return max(steps_per_task // 10, config.unroll_length)


@dataclasses.dataclass
class BuiltRun:
    """The parts of one attempt of a run, restored from its newest checkpoint if there is one."""

    agent: object  # distral_tf.model.agent.Agent
    checkpointer: Checkpointer
    monitor: Monitor
    evaluator: Evaluator
    resumed_from: str | None  # the checkpoint restored, None for a new run


def build_run(config: TrainConfig, suite: Suite, spaces: EnvSpaces, state: RunState,
              stop: threading.Event) -> BuiltRun:
    """Builds the agent, checkpointer, monitor and evaluator of an attempt and restores the newest checkpoint
    into the agent and ``state`` (``stop``: the event that stops the run, and the evaluation with it)."""
    agent = build_agent(config, spaces.for_agent(suite.num_tasks), suite)
    checkpointer = Checkpointer(
        os.path.join(config.logdir, CHECKPOINT_DIR), keep=config.keep_checkpoints, agent=agent,
        optimizer=agent.optimizer, rng=agent.rng, env_steps=agent.env_steps, **state.checkpoint_variables())
    restored = checkpointer.restore()
    if restored:
        logging.info("Resuming from %s at %s agent steps.", restored, f"{int(agent.env_steps.numpy()):,}")
    elif config.init_from:
        step = warm_start.load_distilled(agent, config.init_from)
        logging.info("pi_0 starts from %s at %s agent steps.", config.init_from, f"{step:,}")
    if not restored and agent.normalize_observations:
        agent.set_observation_statistics(*observation_statistics.load_or_take(config, suite))
        logging.info("Observations normalised per pixel by the statistics of %s frames of a random policy.",
                     f"{observation_statistics.FRAMES:,}")
    state.start_attempt()
    monitor = Monitor(config.logdir, suite.task_names, suite.frames_per_step,
                      state.steps_per_task * suite.num_tasks, config.log_every_secs,
                      metrics_offset=state.metrics_offset if restored else None,
                      resume_task_steps=state.task_steps if restored else None)
    evaluator = Evaluator(agent, suite, spaces.observation_space, monitor, state, stop,
                          interval=eval_interval(config, state.steps_per_task), episodes=config.eval_episodes,
                          greedy=config.eval_greedy, clip_every=config.eval_clip_every, seed=config.seed)
    return BuiltRun(agent=agent, checkpointer=checkpointer, monitor=monitor, evaluator=evaluator,
                    resumed_from=restored)
