"""Applying a group's rollouts to the shared parameters: one interface for both update modes.

A learner takes the rollouts of an actor group (joined along the batch axis) and
the group's :class:`~distral_tf.model.agent.Replica`, applies their updates through the
shared RMSProp and returns the loss terms of each worker's rollout.

* :class:`HogwildLearner` (``--update_mode=hogwild``, the paper's A3C scheme): each
  worker's own gradient, applied as its own RMSProp step without locks by a few learner
  threads. All the rollouts of a group are differentiated at the group's snapshot, so
  the gradients of up to ``rollouts_per_call`` rollouts of one task come from one batched
  pass (:mod:`distral_tf.model.per_rollout`) and are applied one after another.
* :class:`BatchedLearner` (``--update_mode=batched``): the group's rollouts make one update.
"""

from __future__ import annotations

import queue
import threading
from typing import Protocol

import numpy as np

from distral_tf.model.agent import Agent, Replica, Rollout
from distral_tf.training.actors import select_rollouts, task_chunks


class Learner(Protocol):
    def warm_up(self, agent: Agent, replicas: list[Replica]):
        """Prepares the update functions this learner uses, before the workers start."""

    def learn(self, replica: Replica, rollout: Rollout) -> list[dict[str, float]]:
        """Applies the updates of ``rollout`` (gradients at ``replica``); the loss terms of each worker."""

    def close(self):
        """Stops the learner's threads, if any."""


class BatchedLearner:
    """One update from all the rollouts of a group."""

    def warm_up(self, agent: Agent, replicas: list[Replica]):
        agent.warm_up(replicas, single_task_updates=False, batched_updates=True)

    def learn(self, replica: Replica, rollout: Rollout) -> list[dict[str, float]]:
        terms = replica.train_step(rollout)
        return [terms] * len(rollout.task_ids)

    def close(self):
        pass


class HogwildLearner:
    """Threads applying each worker's own update through the shared RMSProp, without locks."""

    def __init__(self, num_threads: int, rollouts_per_call: int = 16, workers_per_task: int | None = None):
        if rollouts_per_call < 1:
            raise ValueError(f"rollouts_per_call must be positive, got {rollouts_per_call}.")
        self.rollouts_per_call = int(rollouts_per_call)
        # The calls' usual number of rollouts, prepared before the workers start.
        self._usual_call = min(self.rollouts_per_call, workers_per_task or self.rollouts_per_call)
        self._queue: queue.Queue = queue.Queue()
        self._threads = [threading.Thread(target=self._serve, name=f"learner-{i}", daemon=True)
                         for i in range(max(1, num_threads))]
        for t in self._threads:
            t.start()

    def warm_up(self, agent: Agent, replicas: list[Replica]):
        agent.warm_up(replicas, single_task_updates=True, batched_updates=False, update_batch=self._usual_call)

    def learn(self, replica: Replica, rollout: Rollout) -> list[dict[str, float]]:
        """Applies each worker's update (concurrently with others); returns when all are applied."""
        chunks = task_chunks(rollout.task_ids, self.rollouts_per_call)
        slots = [{"done": threading.Event()} for _ in chunks]
        for chunk, slot in zip(chunks, slots, strict=True):
            self._queue.put((replica, select_rollouts(rollout, chunk), slot))
        for slot in slots:
            slot["done"].wait()
        for slot in slots:
            if "error" in slot:
                raise slot["error"]
        terms: list = [None] * len(rollout.task_ids)
        for chunk, slot in zip(chunks, slots, strict=True):
            for position, entry in zip(np.asarray(chunk), slot["terms"], strict=True):
                terms[position] = entry
        return terms

    def _serve(self):
        while True:
            item = self._queue.get()
            if item is None:
                return
            replica, rollout, slot = item
            try:
                slot["terms"] = replica.train_each(rollout)
            except Exception as e:
                slot["error"] = e
            slot["done"].set()

    def close(self):
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout=10)


def make_learner(update_mode: str, learner_threads: int, rollouts_per_call: int = 16,
                 workers_per_task: int | None = None) -> Learner:
    """The learner of ``--update_mode`` (``hogwild`` with ``learner_threads`` threads, or ``batched``)."""
    if update_mode == "hogwild":
        return HogwildLearner(learner_threads, rollouts_per_call, workers_per_task)
    if update_mode == "batched":
        return BatchedLearner()
    raise ValueError(f"Unknown update mode {update_mode!r}; choose hogwild or batched.")
