"""Hogwild and batched learners behind one interface."""

import numpy as np
import pytest

from distral_tf.model.agent import Rollout
from distral_tf.training.learners import BatchedLearner, HogwildLearner, make_learner


class RecordingReplica:
    """Stands in for a Replica: records the batches it is asked to learn from."""

    def __init__(self, fail_on_task=None):
        self.batches = []
        self.fail_on_task = fail_on_task

    def train_step(self, rollout):
        task_ids = [int(t) for t in rollout.task_ids]
        if self.fail_on_task in task_ids:
            raise FloatingPointError("bad update")
        self.batches.append(task_ids)
        return {"total": float(sum(task_ids)), "staleness": 0}

    def train_each(self, rollout):
        task_ids = [int(t) for t in rollout.task_ids]
        if self.fail_on_task in task_ids:
            raise FloatingPointError("bad update")
        self.batches.append(task_ids)
        return [{"total": float(t), "staleness": k} for k, t in enumerate(task_ids)]


def rollout(task_ids, t=3):
    b = len(task_ids)
    state = (np.zeros((b, 4), np.float32), np.zeros((b, 4), np.float32))
    return Rollout(task_ids=np.asarray(task_ids, np.int32), observations=np.zeros((t + 1, b, 2, 2, 1), np.uint8),
                   first=np.zeros((t + 1, b), bool), actions=np.zeros((t, b), np.int32),
                   rewards=np.zeros((t, b), np.float32), dones=np.zeros((t, b), bool), distilled_state=state,
                   task_state=state)


def test_batched_learner_makes_one_update_for_the_group():
    replica = RecordingReplica()
    terms = BatchedLearner().learn(replica, rollout([0, 1, 1]))
    assert replica.batches == [[0, 1, 1]]
    assert [t["total"] for t in terms] == [2.0, 2.0, 2.0]


def test_hogwild_learner_updates_each_worker_in_calls_of_one_task_and_reports_errors():
    learner = make_learner("hogwild", learner_threads=2, rollouts_per_call=2)
    try:
        replica = RecordingReplica()
        terms = learner.learn(replica, rollout([0, 2, 1, 2, 2, 0]))
        # A call per task and at most two rollouts, in the workers' order within a task.
        assert sorted(replica.batches) == [[0, 0], [1], [2], [2, 2]]
        assert [t["total"] for t in terms] == [0.0, 2.0, 1.0, 2.0, 2.0, 0.0]  # in the order of the workers
        assert [t["staleness"] for t in terms] == [0, 0, 0, 1, 0, 1]
        with pytest.raises(FloatingPointError):
            learner.learn(RecordingReplica(fail_on_task=2), rollout([0, 2]))
    finally:
        learner.close()
    assert isinstance(learner, HogwildLearner)


def test_unknown_update_mode_is_refused():
    with pytest.raises(ValueError, match="hogwild or batched"):
        make_learner("sometimes", 1)
