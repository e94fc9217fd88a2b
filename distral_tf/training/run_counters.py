"""The counters of a run, checkpointed with it: agent steps and episodes per task, and the rest.

:class:`RunState` is the single place these counters live. Each is a ``tf.Variable``
that the run's ``tf.train.Checkpoint`` saves under the name it has always had
(``task_steps``, ``task_episodes``, ``env_restarts``, ``metrics_offset``,
``next_eval``, ``generation``: see :meth:`RunState.checkpoint_variables`), so run
directories written before this class existed resume unchanged.

Workers reserve a rollout of their task before acting (:meth:`RunState.reserve`)
and record it once its update is applied (:meth:`RunState.complete`): a task's
steps, those done plus those in flight, never exceed its budget.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np
import tensorflow as tf


class RunState:
    """Counters of one run; thread-safe.

    Args:
      num_tasks: tasks of the run.
      steps_per_task: each task's budget of agent steps.
      unroll_length: agent steps of one rollout (what one reservation takes).
    """

    def __init__(self, num_tasks: int, steps_per_task: int, unroll_length: int):
        self.num_tasks = num_tasks
        self.steps_per_task = steps_per_task
        self.unroll_length = unroll_length
        self._lock = threading.Lock()
        self._task_steps = tf.Variable(np.zeros(num_tasks, np.int64), name="task_steps")
        self._task_episodes = tf.Variable(np.zeros(num_tasks, np.int64), name="task_episodes")
        self._env_restarts = tf.Variable(np.zeros(num_tasks, np.int64), name="env_restarts")
        self._metrics_offset = tf.Variable(0, dtype=tf.int64, name="metrics_offset")
        self._next_eval = tf.Variable(0, dtype=tf.int64, name="next_eval")
        self._generation = tf.Variable(0, dtype=tf.int64, name="generation")
        self._in_flight = np.zeros(num_tasks, np.int64)  # reserved rollouts not yet completed
        self._restarts_before = np.zeros(num_tasks, np.int64)  # restarts counted by earlier attempts

    def checkpoint_variables(self) -> dict[str, tf.Variable]:
        """The variables to checkpoint, under the names the run's checkpoints use."""
        return {"task_steps": self._task_steps, "task_episodes": self._task_episodes,
                "env_restarts": self._env_restarts, "metrics_offset": self._metrics_offset,
                "next_eval": self._next_eval, "generation": self._generation}

    def start_attempt(self):
        """Called once the checkpoint (if any) is restored: counts this attempt, clears reservations."""
        with self._lock:
            self._generation.assign_add(1)
            self._in_flight[:] = 0
            self._restarts_before = self._env_restarts.numpy().copy()

    # -- reading ---------------------------------------------------------------------------------

    @property
    def task_steps(self) -> np.ndarray:
        """Agent steps done per task (a copy)."""
        return self._task_steps.numpy().copy()

    @property
    def task_episodes(self) -> np.ndarray:
        """Finished episodes per task (a copy)."""
        return self._task_episodes.numpy().copy()

    @property
    def total_steps(self) -> int:
        return int(self._task_steps.numpy().sum())

    @property
    def generation(self) -> int:
        """How many attempts ran this run (this one included, once started)."""
        return int(self._generation.numpy())

    @property
    def metrics_offset(self) -> int:
        """Size of ``metrics.jsonl`` when the restored checkpoint was written."""
        return int(self._metrics_offset.numpy())

    @property
    def next_eval(self) -> int:
        """Agent steps per task at which pi_0 is next evaluated."""
        return int(self._next_eval.numpy())

    @next_eval.setter
    def next_eval(self, steps: int):
        self._next_eval.assign(steps)

    @property
    def budget_spent(self) -> bool:
        """Whether every task has spent its budget."""
        return int(self._task_steps.numpy().min()) >= self.steps_per_task

    def env_restarts(self, this_attempt: np.ndarray) -> np.ndarray:
        """Environment restarts per task over the whole run, given this attempt's."""
        return self._restarts_before + np.asarray(this_attempt, np.int64)

    # -- updating --------------------------------------------------------------------------------

    def reserve(self, tasks: Iterable[int]) -> np.ndarray:
        """Reserves one rollout for each worker of ``tasks``; whether each got one.

        A worker gets none once its task's budget (steps done and in flight) is spent.
        """
        tasks = [int(t) for t in tasks]
        granted = np.zeros(len(tasks), bool)
        with self._lock:
            steps = self._task_steps.numpy()
            for k, task in enumerate(tasks):
                if steps[task] + (self._in_flight[task] + 1) * self.unroll_length <= self.steps_per_task:
                    self._in_flight[task] += 1
                    granted[k] = True
        return granted

    def complete(self, task_ids, episode_tasks: Iterable[int] = ()) -> np.ndarray:
        """Records reserved rollouts of ``task_ids`` and the episodes they finished; returns the new task steps."""
        rollouts = np.bincount(np.asarray(task_ids, np.int64), minlength=self.num_tasks)
        episodes = np.bincount(np.asarray(list(episode_tasks), np.int64), minlength=self.num_tasks)
        with self._lock:
            self._in_flight -= rollouts
            self._task_episodes.assign_add(episodes)
            return self._task_steps.assign_add(rollouts * self.unroll_length).numpy().copy()

    # -- moving between processes (a run spread over machines) -----------------------------------

    def export(self) -> dict[str, np.ndarray]:
        """Every counter's value, by its checkpoint name."""
        return {name: v.numpy().copy() for name, v in self.checkpoint_variables().items()}

    def load(self, values: dict[str, np.ndarray]):
        """Sets every counter from ``values`` (as :meth:`export` gives them) and starts counting from there,
        as an attempt does once its checkpoint is restored (without counting a new attempt)."""
        variables = self.checkpoint_variables()
        with self._lock:
            for name, value in values.items():
                variables[name].assign(value)
            self._in_flight[:] = 0
            self._restarts_before = self._env_restarts.numpy().copy()

    def update_tasks(self, tasks: Iterable[int], task_steps: np.ndarray, task_episodes: np.ndarray):
        """Takes the steps and episodes of ``tasks`` from arrays over all tasks (counted elsewhere)."""
        index = np.asarray(list(tasks), np.int64)
        with self._lock:
            for variable, source in ((self._task_steps, task_steps), (self._task_episodes, task_episodes)):
                merged = variable.numpy()
                merged[index] = np.asarray(source, np.int64)[index]
                variable.assign(merged)

    def record_for_checkpoint(self, env_restarts_this_attempt: np.ndarray, metrics_offset: int):
        """Sets the counters that are only known when a checkpoint is written."""
        self._env_restarts.assign(self.env_restarts(env_restarts_this_attempt))
        self._metrics_offset.assign(metrics_offset)
