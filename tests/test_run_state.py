"""The run's counters: checkpoints of the earlier layout restore into them, and reservations respect budgets."""

import numpy as np
import tensorflow as tf

from distral_tf.training.run_counters import RunState


def test_checkpoint_of_the_earlier_layout_restores_into_run_state(tmp_path):
    # Before RunState, the trainer handed six plain variables to its checkpoint under these names.
    earlier = tf.train.Checkpoint(
        task_steps=tf.Variable(np.array([40, 60], np.int64)), task_episodes=tf.Variable(np.array([1, 2], np.int64)),
        env_restarts=tf.Variable(np.array([0, 3], np.int64)), metrics_offset=tf.Variable(1234, dtype=tf.int64),
        next_eval=tf.Variable(80, dtype=tf.int64), generation=tf.Variable(2, dtype=tf.int64))
    path = earlier.save(str(tmp_path / "ckpt"))

    state = RunState(num_tasks=2, steps_per_task=100, unroll_length=20)
    tf.train.Checkpoint(**state.checkpoint_variables()).restore(path).assert_existing_objects_matched()
    state.start_attempt()

    np.testing.assert_array_equal(state.task_steps, [40, 60])
    np.testing.assert_array_equal(state.task_episodes, [1, 2])
    assert state.metrics_offset == 1234 and state.next_eval == 80 and state.generation == 3
    np.testing.assert_array_equal(state.env_restarts(np.array([2, 0])), [2, 3])


def test_run_state_writes_the_variable_names_of_the_earlier_layout(tmp_path):
    state = RunState(num_tasks=3, steps_per_task=60, unroll_length=20)
    path = tf.train.Checkpoint(**state.checkpoint_variables()).save(str(tmp_path / "ckpt"))
    names = {name.split("/")[0] for name, _ in tf.train.list_variables(path)}
    assert {"task_steps", "task_episodes", "env_restarts", "metrics_offset", "next_eval", "generation"} <= names


def test_reservations_never_exceed_a_task_budget():
    state = RunState(num_tasks=2, steps_per_task=60, unroll_length=20)
    np.testing.assert_array_equal(state.reserve([0, 0, 1]), [True, True, True])
    np.testing.assert_array_equal(state.reserve([0, 0]), [True, False])  # 60 steps of task 0 in flight
    steps = state.complete([0, 0, 1], episode_tasks=[1])
    np.testing.assert_array_equal(steps, [40, 20])
    np.testing.assert_array_equal(state.task_episodes, [0, 1])
    assert not state.reserve([0]).any()  # 40 done + 20 in flight
    state.complete([0])
    np.testing.assert_array_equal(state.reserve([0, 1, 1]), [False, True, True])
    state.complete([1, 1])
    assert state.budget_spent and state.total_steps == 120


def test_a_new_attempt_drops_the_reservations_of_the_previous_one():
    state = RunState(num_tasks=1, steps_per_task=40, unroll_length=20)
    state.reserve([0, 0])
    state.start_attempt()  # the attempt holding them is gone
    np.testing.assert_array_equal(state.reserve([0, 0]), [True, True])


def test_episodes_are_logged_in_the_order_of_their_task_steps_whatever_the_threads_do():
    import random
    import threading
    import time
    from types import SimpleNamespace

    from distral_tf.training.backends import RolloutRecorder

    class SlowToReturn(RunState):
        def complete(self, task_ids, episode_tasks=()):
            steps = super().complete(task_ids, episode_tasks)
            time.sleep(random.uniform(0.0, 0.002))  # the thread is descheduled after counting
            return steps

    class Rows:
        def __init__(self):
            self.rows = []

        def episode(self, task_index, env_steps, episode_return, length):
            self.rows.append((task_index, env_steps))

    state, monitor = SlowToReturn(num_tasks=2, steps_per_task=10**6, unroll_length=20), Rows()
    recorder = RolloutRecorder(state, monitor)

    def worker(task):
        for _ in range(40):
            state.reserve([task])
            recorder.record([task], [SimpleNamespace(task_index=task, episode_return=1.0, length=20)])

    threads = [threading.Thread(target=worker, args=(k % 2,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for task in (0, 1):
        steps = [s for k, s in monitor.rows if k == task]
        assert steps == list(range(20, 20 * 160 + 1, 20))  # every rollout once, never backwards
