"""Actor groups: which workers act and step, how the policy's batch maps to workers, cut episodes, reward clipping."""

import inspect

import gymnasium as gym
import numpy as np
import pytest

from distral_tf.envs.pool import LocalEnvs
from distral_tf.model.agent import Agent, Replica
from distral_tf.training.actors import ActingPolicy, ActorGroup, Episode, clip_rewards, select_rollouts
from distral_tf.training.config import REWARD_CLIPPING

EPISODE_LENGTH = 3
STATE_SIZE = 2


class CountingEnv(gym.Env):
    """Observation ``16 * task + t`` (``t``: steps into the episode), reward ``action + 1``, episodes of 3 steps.

    With ``crash_at``, the environment raises on that step of its episode (an engine fault).
    """

    def __init__(self, task, log, crash_at=None):
        self.task, self.log, self.crash_at = task, log, crash_at
        self.observation_space = gym.spaces.Box(0, 255, (2, 2, 1), np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self._t = 0

    def _obs(self):
        return np.full((2, 2, 1), 16 * self.task + self._t, np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._obs(), {}

    def step(self, action):
        self._t += 1
        self.log.append((self.task, int(action)))
        if self._t == self.crash_at:
            raise RuntimeError("the engine crashed")
        return self._obs(), float(action + 1), False, self._t >= EPISODE_LENGTH, {}


class CountingFactory:
    """``make_env(task, seed)``: the first environment made for ``crash_task`` crashes on its 2nd step."""

    def __init__(self, crash_task=None):
        self.crash_task, self.log, self.made = crash_task, [], []

    def __call__(self, task, seed):
        crash_at = 2 if task == self.crash_task and task not in self.made else None
        self.made.append(task)
        return CountingEnv(task, self.log, crash_at)


class ZeroStates:
    """Stands in for the agent where the group only needs initial LSTM states."""

    def initial_state(self, n):
        zeros = lambda: np.zeros((n, STATE_SIZE), np.float32)
        return (zeros(), zeros()), (zeros(), zeros())


class ScriptedPolicy:
    """Acts ``(task + call) % 3`` and adds one to every LSTM state entry per step (the task state also the task),
    recording what it was given."""

    def __init__(self):
        self.calls = []

    def act(self, task_ids, observations, first, distilled_state, task_state):
        self.calls.append((task_ids.copy(), observations.copy(), first.copy()))
        actions = ((task_ids + len(self.calls) - 1) % 3).astype(np.int32)
        logits = np.zeros((len(task_ids), 3), np.float32)
        d = tuple(s + 1 for s in distilled_state)
        t = tuple(s + 1 + task_ids[:, None] for s in task_state)
        return actions, logits, d, t


def make_group(tasks, unroll_length=4, reward_clipping="none", crash_task=None):
    factory = CountingFactory(crash_task)
    envs = LocalEnvs(factory, tasks, list(range(len(tasks))), (2, 2, 1))
    return ActorGroup(tasks, envs, ZeroStates(), unroll_length, reward_clipping), factory


def test_only_active_workers_act_and_step_and_the_batch_keeps_worker_order():
    group, factory = make_group([0, 1, 2, 3])
    policy = ScriptedPolicy()
    rollout, _ = group.collect(np.array([True, False, True, True]), policy)
    np.testing.assert_array_equal(rollout.task_ids, [0, 2, 3])
    assert len(policy.calls) == 4
    for t, (task_ids, obs, _) in enumerate(policy.calls):
        np.testing.assert_array_equal(task_ids, [0, 2, 3])
        # Each row of the batch is the observation of that worker's own environment.
        np.testing.assert_array_equal(obs[:, 0, 0, 0], 16 * np.array([0, 2, 3]) + t % EPISODE_LENGTH)
        np.testing.assert_array_equal(rollout.observations[t], obs)
    np.testing.assert_array_equal(rollout.observations[4, :, 0, 0, 0], 16 * np.array([0, 2, 3]) + 1)
    # Each action reached its own worker's environment; the inactive worker's environment never stepped.
    stepped = {task: [a for k, a in factory.log if k == task] for task in range(4)}
    assert stepped[1] == []
    for column, task in enumerate([0, 2, 3]):
        assert stepped[task] == [int(a) for a in rollout.actions[:, column]]
    np.testing.assert_array_equal(rollout.actions, [[(k + c) % 3 for k in (0, 2, 3)] for c in range(4)])
    np.testing.assert_array_equal(rollout.rewards, rollout.actions + 1)


def test_lstm_state_carries_over_between_rollouts_and_inactive_workers_keep_theirs():
    group, _ = make_group([0, 1, 2])
    policy = ScriptedPolicy()
    first_rollout, _ = group.collect(np.array([True, False, True]), policy)
    for state in (*first_rollout.distilled_state, *first_rollout.task_state):
        np.testing.assert_array_equal(state, 0)  # the state before the rollout's first step
    rollout, _ = group.collect(np.ones(3, bool), policy)
    np.testing.assert_array_equal(rollout.distilled_state[0][:, 0], [4, 0, 4])
    np.testing.assert_array_equal(rollout.distilled_state[1][:, 0], [4, 0, 4])
    np.testing.assert_array_equal(rollout.task_state[0][:, 0], [4, 0, 12])
    # The worker left out had not started: its first observation still opens an episode.
    np.testing.assert_array_equal(rollout.first[0], [False, True, False])


def test_episode_ends_and_returns_use_raw_rewards_while_the_rollout_has_clipped_ones():
    group, _ = make_group([0, 1], unroll_length=4, reward_clipping="abs_one")
    policy = ScriptedPolicy()
    rollout, episodes = group.collect(np.ones(2, bool), policy)
    raw = rollout.actions[:EPISODE_LENGTH] + 1
    assert (raw > 1).any()  # the clipping is visible
    np.testing.assert_array_equal(rollout.rewards, np.clip(rollout.actions + 1, -1, 1))
    assert sorted(episodes, key=lambda e: e.task_index) == [
        Episode(0, float(raw[:, 0].sum()), EPISODE_LENGTH), Episode(1, float(raw[:, 1].sum()), EPISODE_LENGTH)]
    np.testing.assert_array_equal(rollout.dones[:, 0], [False, False, True, False])
    np.testing.assert_array_equal(rollout.first[:, 0], [True, False, False, True, False])
    np.testing.assert_array_equal(group.episode_length, [1, 1])
    np.testing.assert_array_equal(group.episode_return, rollout.actions[EPISODE_LENGTH] + 1)


def test_an_episode_cut_by_a_fault_ends_the_rollout_episode_but_is_not_reported():
    group, factory = make_group([0, 1], unroll_length=4, crash_task=1)
    policy = ScriptedPolicy()
    rollout, episodes = group.collect(np.ones(2, bool), policy)
    # Worker 1's environment crashed on its second step: the step ends its episode with no reward.
    np.testing.assert_array_equal(rollout.dones[:, 1], [False, True, False, False])
    assert rollout.rewards[1, 1] == 0
    np.testing.assert_array_equal(rollout.first[:, 1], [True, False, True, False, False])
    assert factory.made.count(1) == 2 and group.restarts_per_task(2).tolist() == [0, 1]
    assert [e.task_index for e in episodes] == [0]
    # The next episode of worker 1 counts from the fresh environment only.
    rollout2, episodes2 = group.collect(np.ones(2, bool), policy)
    assert [e.task_index for e in episodes2] == [1, 0, 1]  # worker 1 restarted a step after worker 0's reset
    after_cut = np.concatenate([rollout.actions[2:, 1], rollout2.actions[:1, 1]]) + 1
    assert episodes2[0] == Episode(1, float(after_cut.sum()), EPISODE_LENGTH)


def test_bad_masks_and_mismatched_environments_are_refused():
    group, _ = make_group([0, 1])
    for mask in (np.ones(3, bool), np.ones(2, int), [[True, True]]):
        with pytest.raises(ValueError, match="boolean mask of 2 workers"):
            group.collect(mask, ScriptedPolicy())
    envs = LocalEnvs(CountingFactory(), [0, 1, 2], [0, 1, 2])
    with pytest.raises(ValueError, match="2 workers needs as many environments, not 3"):
        ActorGroup([0, 1], envs, ZeroStates(), 4)


def test_select_rollouts_gives_each_worker_its_own_column():
    group, _ = make_group([0, 1, 2], unroll_length=5)
    group.collect(np.ones(3, bool), ScriptedPolicy())  # nonzero states and episode ends
    rollout, _ = group.collect(np.ones(3, bool), ScriptedPolicy())
    parts = [select_rollouts(rollout, slice(i, i + 1)) for i in range(3)]
    assert [int(p.task_ids[0]) for p in parts] == [0, 1, 2]
    picked = select_rollouts(rollout, np.array([2, 0]))  # positions as task_chunks gives them
    np.testing.assert_array_equal(picked.observations, rollout.observations[:, [2, 0]])
    np.testing.assert_array_equal(picked.task_state[1], rollout.task_state[1][[2, 0]])
    for name in ("observations", "first", "actions", "rewards", "dones"):
        whole = getattr(rollout, name)
        assert all(getattr(p, name).shape == (whole.shape[0], 1, *whole.shape[2:]) for p in parts), name
        np.testing.assert_array_equal(np.concatenate([getattr(p, name) for p in parts], axis=1), whole)
    for name in ("distilled_state", "task_state"):
        for k in range(2):
            np.testing.assert_array_equal(np.concatenate([getattr(p, name)[k] for p in parts]),
                                          getattr(rollout, name)[k])
    assert np.unique(rollout.task_state[0][:, 0]).size == 3  # the states differ per worker


def test_agent_and_replica_act_as_the_policy_seam_says():
    expected = inspect.signature(ActingPolicy.act)
    for cls in (Agent, Replica):
        assert list(inspect.signature(cls.act).parameters) == list(expected.parameters), cls.__name__
    assert isinstance(ScriptedPolicy(), ActingPolicy)
    assert not isinstance(ZeroStates(), ActingPolicy)


# ------------------------------------------------------------------------------------------------ #
# Reward clipping.

def test_every_listed_reward_clipping_is_implemented():
    rewards = np.array([-7.0, -0.5, 0.0, 0.25, 3.0])
    for mode in REWARD_CLIPPING:
        out = clip_rewards(rewards, mode)
        assert out.dtype == np.float32 and out.shape == rewards.shape, mode
        assert out[2] == 0 and np.all(np.diff(out) >= 0), mode  # zero stays zero; order is kept


def test_no_clipping_and_clipping_to_one():
    rewards = np.array([-7.0, -1.0, -0.5, 0.0, 0.25, 1.0, 3.0])
    np.testing.assert_array_equal(clip_rewards(rewards, "none"), rewards.astype(np.float32))
    clipped = clip_rewards(rewards, "abs_one")
    np.testing.assert_array_equal(clipped, [-1.0, -1.0, -0.5, 0.0, 0.25, 1.0, 1.0])


def test_soft_asymmetric_squashing():
    """IMPALA's DMLab squashing: ``5 tanh(r / 5)`` for gains, 0.3 times that for losses."""
    r = np.linspace(0.01, 10.0, 200)
    gains, losses = clip_rewards(r, "soft_asymmetric"), clip_rewards(-r, "soft_asymmetric")
    np.testing.assert_allclose(losses, -0.3 * gains, rtol=1e-6)
    assert np.all(np.diff(gains) > 0) and np.all(gains < r) and np.all(gains < 5.0)
    assert clip_rewards(np.array([1e4]), "soft_asymmetric")[0] == pytest.approx(5.0)  # saturates at 5
    small = r[r < 0.2]
    np.testing.assert_allclose(clip_rewards(small, "soft_asymmetric"), small, rtol=2e-3)  # near identity


def test_unknown_reward_clipping_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="Unknown reward clipping 'sign'.*abs_one"):
        clip_rewards(np.zeros(2), "sign")
