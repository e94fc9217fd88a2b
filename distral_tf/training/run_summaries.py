"""What a training run writes to its monitor besides episodes: per-update scalars, run metadata, progress.

:class:`RunSummaries` is the one writer of a run's training scalars: the TensorBoard
layout and HParams at the start (:mod:`distral_tf.training.tensorboard_metadata`), each task's terms,
staleness and loss terms every ``--summary_every_updates`` updates, the learning rate,
and with each progress line the speed and the environment restarts per task. The
monitor it writes to is the run's :class:`~distral_tf.training.monitoring.Monitor`, or in a
learner of a Ray run the recorder whose events the driver writes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from distral_tf.training import tensorboard_metadata
from distral_tf.training.trained_run import algorithm_of

# The per-task terms of an update written under ``task/<task>/``.
TASK_TERMS = ("kl_task_distilled", "entropy_task", "entropy_distilled", "grad_norm")


class RunSummaries:
    """The training scalars of a run of ``config`` written to ``monitor``."""

    def __init__(self, config, monitor):
        self.config = config
        self.monitor = monitor
        self.algorithm, self.coeffs = algorithm_of(config)

    def write_run_metadata(self, suite, evaluates_distilled: bool):
        """The TensorBoard layout of the run's charts and its hyperparameters (HParams)."""
        cfg = self.config
        tensorboard_metadata.write_custom_scalars_layout(
            cfg.logdir, suite.task_names,
            tensorboard_metadata.logged_metrics(self.algorithm, self.coeffs, evaluates_distilled=evaluates_distilled))
        tensorboard_metadata.write_hparams(
            cfg.logdir, {**cfg.to_json(), "suite": suite.name},
            [tensorboard_metadata.per_task_tag("task", t, "episode_return") for t in suite.task_names])

    def due(self, rounds: int) -> bool:
        """Whether an actor group's update after ``rounds`` earlier ones is summarised."""
        every = self.config.summary_every_updates
        return (rounds + 1) % every == 1 or every == 1

    def update(self, task_ids: np.ndarray, per_rollout: list[dict[str, float]], steps: np.ndarray):
        """One update's figures, per task of its rollouts (at ``steps``, agent steps per task)."""
        monitor = self.monitor
        for task in np.unique(task_ids):
            of_task = np.flatnonzero(task_ids == task)
            terms = per_rollout[int(of_task[0])]
            staleness = [per_rollout[int(k)]["staleness"] for k in of_task]
            task, task_steps = int(task), int(steps[task])
            monitor.task_scalars(task, task_steps, {k: v for k, v in terms.items() if k in TASK_TERMS})
            monitor.task_scalars(task, task_steps, {
                "mean": float(np.mean(staleness)), "max": float(np.max(staleness))}, prefix="staleness")
            monitor.task_scalars(task, task_steps, {
                k: terms[k] for k in self.algorithm.loss_term_names(self.coeffs)}, prefix="loss")
        monitor.run_scalars(int(steps.sum()), {"learning_rate": per_rollout[-1]["learning_rate"]})

    def progress(self, task_steps: np.ndarray, frames_per_second: float, env_restarts: Sequence[int]):
        """The speed and the environment restarts per task, with each progress line."""
        self.monitor.run_scalars(int(task_steps.sum()), {"env_frames_per_second": frames_per_second})
        for task, count in enumerate(env_restarts):
            self.monitor.task_scalars(task, int(task_steps[task]), {"env_restarts": float(count)})
