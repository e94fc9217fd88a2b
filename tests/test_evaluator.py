"""Evaluation of pi_0 during training: the workers' machinery, restarted environments, no lasting failure."""

import threading

import gymnasium as gym
import numpy as np

from distral_tf.envs.suites import Suite
from distral_tf.training.distilled_evaluation import Evaluator
from distral_tf.training.run_counters import RunState

EPISODE = 5
FAULTS = {"constructions_to_fail": 0, "steps_to_fail": set()}  # shared with the environments (in-process)


class FlakyEnv(gym.Env):
    """5-step episodes of 36x36x3 frames, reward 1 per step; can fail to start or fail at chosen steps."""

    observation_space = gym.spaces.Box(0, 255, (36, 36, 3), np.uint8)
    action_space = gym.spaces.Discrete(3)
    steps_taken = 0  # over all instances

    def __init__(self):
        if FAULTS["constructions_to_fail"] > 0:
            FAULTS["constructions_to_fail"] -= 1
            raise RuntimeError("the engine did not start")
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return np.zeros((36, 36, 3), np.uint8), {}

    def step(self, action):
        FlakyEnv.steps_taken += 1
        if FlakyEnv.steps_taken in FAULTS["steps_to_fail"]:
            raise RuntimeError("the engine crashed")
        self._t += 1
        return np.zeros((36, 36, 3), np.uint8), 1.0, False, self._t >= EPISODE, {}


gym.register(id="distral_tf_test/Flaky-v0", entry_point=FlakyEnv)
SUITE = Suite(name="flaky", task_names=("a", "b"), env_ids=("distral_tf_test/Flaky-v0",) * 2, env_kwargs=({}, {}))


class RecordingMonitor:
    def __init__(self):
        self.episodes = []

    def episode(self, task_index, env_steps, episode_return, length, policy="task"):
        self.episodes.append((policy, task_index, env_steps, episode_return, length))


def make_evaluator(agent, monitor, state, episodes=2):
    return Evaluator(agent, SUITE, FlakyEnv.observation_space, monitor, state, threading.Event(), interval=20,
                     episodes=episodes, seed=0)


def test_a_crashed_environment_is_restarted_and_its_cut_episode_not_counted(make_agent):
    state = RunState(num_tasks=2, steps_per_task=100, unroll_length=20)
    monitor = RecordingMonitor()
    evaluator = make_evaluator(make_agent("kl_1col"), monitor, state)
    FlakyEnv.steps_taken = 0
    FAULTS["steps_to_fail"] = {3}  # during the first episode of one of the two environments
    try:
        assert evaluator.evaluate()
        assert evaluator.evaluate()  # the same environments go on: each evaluation starts fresh episodes
        restarts = evaluator._group.restarts_per_task(2)
    finally:
        FAULTS["steps_to_fail"] = set()
        evaluator._discard_group()
    assert restarts.sum() == 1
    assert len(monitor.episodes) == 8
    assert {(policy, length, ret) for policy, _, _, ret, length in monitor.episodes} == {("distilled", 5, 5.0)}
    assert sorted(task for _, task, *_ in monitor.episodes) == [0] * 4 + [1] * 4


def test_an_evaluation_whose_environments_cannot_start_is_retried_and_later_ones_run(make_agent):
    state = RunState(num_tasks=2, steps_per_task=20, unroll_length=20)
    state.reserve([0, 1])
    state.complete([0, 1])  # both tasks at their budget: evaluations at 0 and 20 steps are due
    monitor = RecordingMonitor()
    evaluator = make_evaluator(make_agent("kl_1col"), monitor, state, episodes=1)
    FAULTS["constructions_to_fail"] = 1
    try:
        evaluator.run()
    finally:
        FAULTS["constructions_to_fail"] = 0
    assert evaluator.failures == 1 and evaluator.evaluations == 2
    assert state.next_eval == 40
    assert len(monitor.episodes) == 4
