"""Acting: groups of workers (one environment each) stepped in lockstep with batched actions.

An :class:`ActorGroup` drives the environments of many workers (of any tasks)
through an environment pool (:mod:`distral_tf.envs.pool`: processes with shared
memory, or in-process) and asks a *policy* (an :class:`~distral_tf.model.agent.Agent`
or a group's :class:`~distral_tf.model.agent.Replica`) for the actions of all of them
in one network call per step. Environment faults restart the environment
(in the pool) and cut the episode instead of ending the run.

The seams: the environments are an :class:`~distral_tf.envs.pool.EnvPoolInterface`,
the policy an :class:`ActingPolicy`, and ``collect`` returns a
:class:`~distral_tf.model.agent.Rollout` for the learners.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from absl import logging

from distral_tf.envs.pool import EnvPoolInterface
from distral_tf.model.agent import ActResult, Agent, LSTMState, Rollout
from distral_tf.training.config import REWARD_CLIPPING


def clip_rewards(rewards: np.ndarray, mode: str) -> np.ndarray:
    """Rewards for learning (float32): ``none``; ``abs_one``: clipped to [-1, 1] (A3C on Atari);
    ``soft_asymmetric``: IMPALA's DMLab squashing."""
    rewards = np.asarray(rewards, np.float32)
    if mode == "none":
        return rewards
    if mode == "abs_one":
        return np.clip(rewards, -1.0, 1.0)
    if mode == "soft_asymmetric":
        squeezed = np.tanh(rewards / 5.0)
        return ((0.3 * np.minimum(squeezed, 0.0) + np.maximum(squeezed, 0.0)) * 5.0).astype(np.float32)
    raise ValueError(f"Unknown reward clipping {mode!r}; choose one of {', '.join(REWARD_CLIPPING)}.")


@runtime_checkable
class ActingPolicy(Protocol):
    """What gives an actor group its actions: an :class:`~distral_tf.model.agent.Agent` or a
    :class:`~distral_tf.model.agent.Replica`.

    ``act`` takes a batch of workers (any tasks): their task ids ``[B]``, observations
    ``[B, H, W, C]``, episode-start flags ``[B]`` and LSTM states, and returns
    ``(actions [B], logits [B, A], distilled state, task state)``.
    """

    def act(self, task_ids: np.ndarray, observations: np.ndarray, first: np.ndarray, distilled_state: LSTMState,
            task_state: LSTMState) -> ActResult: ...


@dataclasses.dataclass
class Episode:
    """An episode a worker finished (episodes cut by an environment fault are not reported)."""

    task_index: int
    episode_return: float
    length: int
    worker: int = dataclasses.field(default=-1, compare=False)  # the worker's index in its group


class ActorGroup:
    """The workers of several tasks (one environment each, task ``tasks[k]`` for worker ``k``), in lockstep.

    Every step, the actions of all the group's active workers come from one
    batched call of the policy, then every environment steps (in the pool's
    processes, one command per process). ``collect`` returns one rollout per
    active worker, joined along the batch axis. ``agent`` gives the workers' initial
    LSTM states; the policy that acts is passed to each ``collect``.
    """

    def __init__(self, tasks: Sequence[int], envs: EnvPoolInterface, agent: Agent, unroll_length: int,
                 reward_clipping: str = "none", reward_scale: float = 1.0):
        if len(tasks) != envs.num_envs:
            raise ValueError(f"An actor group of {len(tasks)} workers needs as many environments, "
                             f"not {envs.num_envs}.")
        self.tasks = np.asarray(tasks, np.int32)
        self.envs = envs
        self.unroll_length = unroll_length
        self.reward_clipping = reward_clipping
        self.reward_scale = float(reward_scale)
        n = len(self.tasks)
        self._agent = agent
        self.first = np.ones(n, bool)
        (self._d_h, self._d_c), (self._t_h, self._t_c) = agent.initial_state(n)
        self.episode_return = np.zeros(n)
        self.episode_length = np.zeros(n, np.int64)
        self.env_seconds = 0.0
        self.inference_seconds = 0.0

    @property
    def num_workers(self) -> int:
        return len(self.tasks)

    def restarts_per_task(self, num_tasks: int) -> np.ndarray:
        """Environment restarts after faults, summed per task (``[num_tasks]``)."""
        return self.envs.restarts_per_task(num_tasks)

    def collect(self, active: np.ndarray, policy: ActingPolicy) -> tuple[Rollout, list[Episode]]:
        """Runs ``unroll_length`` steps of the ``active`` workers; returns their rollouts and finished episodes.

        ``active`` is a boolean mask over the group's workers. ``policy.act`` gives the
        actions of the active workers only (batch ``B`` = their number, in worker order);
        the rollout's batch axis follows the same order. Inactive workers (their task's
        budget is spent) do not step and keep their LSTM state and episode statistics.
        """
        active = np.asarray(active)
        if active.shape != (self.num_workers,) or active.dtype != bool:
            raise ValueError(f"collect needs a boolean mask of {self.num_workers} workers, "
                             f"got {active.dtype} of shape {active.shape}.")
        idx = np.flatnonzero(active)
        everyone = len(idx) == self.num_workers
        b, t_max = len(idx), self.unroll_length
        source_obs = self.envs.observations
        obs = np.empty((t_max + 1, b, *source_obs.shape[1:]), source_obs.dtype)
        first = np.empty((t_max + 1, b), bool)
        actions = np.empty((t_max, b), np.int32)
        rewards = np.empty((t_max, b), np.float32)
        dones = np.empty((t_max, b), bool)
        task_ids = self.tasks[idx]
        state = [s if everyone else s[idx] for s in (self._d_h, self._d_c, self._t_h, self._t_c)]
        d0, t0 = (state[0].copy(), state[1].copy()), (state[2].copy(), state[3].copy())
        full_actions = np.full(self.num_workers, -1, np.int32)
        episode_return, episode_length = self.episode_return[idx], self.episode_length[idx]
        episodes = []
        timer = time.perf_counter
        for t in range(t_max):
            if everyone:
                obs[t] = source_obs
            else:
                np.take(source_obs, idx, axis=0, out=obs[t])
            first[t] = self.first[idx]
            start = timer()
            a, _, (state[0], state[1]), (state[2], state[3]) = policy.act(
                task_ids, obs[t], first[t], (state[0], state[1]), (state[2], state[3]))
            mid = timer()
            actions[t] = a
            full_actions[idx] = a
            result = self.envs.step(full_actions)
            self.env_seconds += timer() - mid
            self.inference_seconds += mid - start
            raw = result.rewards[idx]
            done = result.done[idx]
            cut = result.cut[idx]
            rewards[t] = clip_rewards(raw * self.reward_scale if self.reward_scale != 1.0 else raw,
                                      self.reward_clipping)
            dones[t] = done
            live = ~cut
            episode_return[live] += raw[live]
            episode_length[live] += 1
            for j in np.flatnonzero(done):
                if not cut[j]:  # an episode cut by an environment fault is not a finished episode
                    episodes.append(Episode(int(task_ids[j]), float(episode_return[j]), int(episode_length[j]),
                                            worker=int(idx[j])))
                episode_return[j], episode_length[j] = 0.0, 0  # the columns reset the LSTM on `first`
            self.first[idx] = done
        obs[t_max] = source_obs if everyone else source_obs[idx]
        first[t_max] = self.first[idx]
        self.episode_return[idx], self.episode_length[idx] = episode_return, episode_length
        for full, part in zip((self._d_h, self._d_c, self._t_h, self._t_c), state, strict=True):
            full[idx] = part
        rollout = Rollout(task_ids=task_ids, observations=obs, first=first, actions=actions, rewards=rewards,
                          dones=dones, distilled_state=d0, task_state=t0)
        return rollout, episodes

    def close(self) -> None:
        """Closes the environments, logging instead of raising."""
        try:
            self.envs.close()
        except Exception as e:
            logging.warning("Ignoring an error while closing environments: %s", e)


def select_rollouts(rollout: Rollout, index) -> Rollout:
    """The rollouts ``index`` (an array of positions along the batch axis) of a batch."""
    return Rollout(
        task_ids=rollout.task_ids[index], observations=rollout.observations[:, index], first=rollout.first[:, index],
        actions=rollout.actions[:, index], rewards=rollout.rewards[:, index], dones=rollout.dones[:, index],
        distilled_state=(rollout.distilled_state[0][index], rollout.distilled_state[1][index]),
        task_state=(rollout.task_state[0][index], rollout.task_state[1][index]))


def task_chunks(task_ids: np.ndarray, size: int) -> list[np.ndarray]:
    """Positions of the rollouts of each task, in order, cut into pieces of at most ``size``."""
    chunks = []
    for task in dict.fromkeys(np.asarray(task_ids).tolist()):
        positions = np.flatnonzero(task_ids == task)
        chunks.extend(positions[i:i + size] for i in range(0, len(positions), size))
    return chunks


def close_quietly(env: object | None) -> None:
    """Closes ``env``, logging instead of raising if its engine fails while shutting down."""
    if env is None:
        return
    try:
        env.close()
    except Exception as e:
        logging.warning("Ignoring an error while closing an environment: %s", e)
