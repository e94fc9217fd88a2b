"""Workers: each owns one environment of one task and collects ``unroll_length``-step rollouts.

A worker asks an *action source* for its actions, so that the actions of many
workers can be computed in one network call (:class:`BatchedActionSource`) and
environments can live in other processes. Environment faults (exceptions,
non-finite rewards) restart the environment instead of ending the run.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable

import numpy as np
from absl import logging

from distral_tf.agent import Agent, Rollout
from distral_tf.config import REWARD_CLIPPING


def clip_reward(reward: float, mode: str) -> float:
    """``none``; ``abs_one``: clip to [-1, 1] (A3C on Atari); ``soft_asymmetric``: IMPALA's DMLab squashing."""
    if mode == "none":
        return reward
    if mode == "abs_one":
        return float(np.clip(reward, -1.0, 1.0))
    if mode == "soft_asymmetric":
        squeezed = np.tanh(reward / 5.0)
        return float(0.3 * min(squeezed, 0.0) + max(squeezed, 0.0)) * 5.0
    raise ValueError(f"Unknown reward clipping {mode!r}; choose one of {', '.join(REWARD_CLIPPING)}.")


@dataclasses.dataclass
class Episode:
    task_index: int
    episode_return: float
    length: int


class DirectActionSource:
    """Calls the agent once per request (batch of one worker)."""

    def __init__(self, agent: Agent):
        self._agent = agent

    def act(self, task_ids, observations, first, distilled_state, task_state):
        return self._agent.act(task_ids, observations, first, distilled_state, task_state)

    def close(self):
        pass


class _Request:
    __slots__ = ("args", "result", "done", "error")

    def __init__(self, args):
        self.args = args
        self.result = None
        self.error = None
        self.done = threading.Event()


class BatchedActionSource:
    """Dynamic batching: all requests waiting within ``timeout_s`` are answered by one agent call.

    Every worker still acts with the current shared parameters; only the number
    of network calls changes. A batch is dispatched as soon as ``max_batch``
    requests are waiting or the oldest has waited ``timeout_s``.
    """

    def __init__(self, agent: Agent, max_batch: int, timeout_s: float = 0.002):
        self._agent = agent
        self._max_batch = max(1, int(max_batch))
        self._timeout_s = timeout_s
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._closed = False
        self.batch_sizes: list[int] = []
        self._thread = threading.Thread(target=self._serve, name="batched-actions", daemon=True)
        self._thread.start()

    def act(self, task_ids, observations, first, distilled_state, task_state):
        if self._closed:
            raise RuntimeError("The action source is closed.")
        request = _Request((task_ids, observations, first, distilled_state, task_state))
        self._queue.put(request)
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    def set_max_batch(self, max_batch: int):
        self._max_batch = max(1, int(max_batch))

    def _gather(self) -> list[_Request]:
        first = self._queue.get()
        if first is None:
            return []
        batch = [first]
        deadline = time.monotonic() + self._timeout_s
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                break
            if item is None:  # closing: answer this batch, then stop
                self._queue.put(None)
                break
            batch.append(item)
        return batch

    def _serve(self):
        while True:
            batch = self._gather()
            if not batch:
                return
            sizes = [len(r.args[0]) for r in batch]
            try:
                args = [np.concatenate([r.args[i] for r in batch]) for i in range(3)]
                d_state = tuple(np.concatenate([r.args[3][k] for r in batch]) for k in range(2))
                t_state = tuple(np.concatenate([r.args[4][k] for r in batch]) for k in range(2))
                actions, logits, d_state, t_state = self._agent.act(*args, d_state, t_state)
            except Exception as e:  # hand the error to every waiting worker
                for r in batch:
                    r.error = e
                    r.done.set()
                continue
            self.batch_sizes.append(len(batch))
            start = 0
            for r, n in zip(batch, sizes, strict=True):
                sl = slice(start, start + n)
                r.result = (actions[sl], logits[sl], (d_state[0][sl], d_state[1][sl]),
                            (t_state[0][sl], t_state[1][sl]))
                r.done.set()
                start += n

    def close(self):
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=5)


class Worker:
    """One environment of one task, with its LSTM states and the episode in progress."""

    def __init__(self, task_index: int, make_env: Callable[[int], object], unroll_length: int, seed: int,
                 agent: Agent, reward_clipping: str = "none"):
        self.task_index = task_index
        self.unroll_length = unroll_length
        self.reward_clipping = reward_clipping
        self.restarts = 0
        self._make_env = make_env
        self._rng = np.random.default_rng(seed)
        self._agent = agent
        self.env = None
        self._start_new_env()

    def _next_seed(self) -> int:
        return int(self._rng.integers(0, 2**31 - 1))

    def _start_new_env(self):
        self.env = self._make_env(self._next_seed())
        self._reset()

    def _reset(self):
        obs, _ = self.env.reset(seed=self._next_seed())
        self.obs = np.asarray(obs)
        self.first = True
        self.episode_return = 0.0
        self.episode_length = 0
        self.distilled_state, self.task_state = self._agent.initial_state(1)

    def _restart_after_fault(self, error: BaseException):
        self.restarts += 1
        logging.warning("Task %d: environment fault (%s: %s); restarting it (restart %d).",
                        self.task_index, type(error).__name__, error, self.restarts)
        close_quietly(self.env)
        self._start_new_env()

    def collect(self, action_source) -> tuple[Rollout, list[Episode]]:
        """Runs ``unroll_length`` steps; returns the rollout (batch of one) and the episodes it finished."""
        t_max = self.unroll_length
        obs = np.empty((t_max + 1, 1, *self.obs.shape), self.obs.dtype)
        first = np.empty((t_max + 1, 1), bool)
        actions = np.empty((t_max, 1), np.int32)
        rewards = np.empty((t_max, 1), np.float32)
        dones = np.empty((t_max, 1), bool)
        d0, t0 = self.distilled_state, self.task_state
        task_ids = np.array([self.task_index], np.int32)
        episodes = []
        for t in range(t_max):
            obs[t, 0] = self.obs
            first[t, 0] = self.first
            action, _, self.distilled_state, self.task_state = action_source.act(
                task_ids, self.obs[None], np.array([self.first]), self.distilled_state, self.task_state)
            actions[t, 0] = action[0]
            try:
                next_obs, reward, terminated, truncated, _ = self.env.step(int(action[0]))
                if not np.isfinite(reward):
                    raise FloatingPointError(f"non-finite reward {reward}")
            except Exception as e:  # the episode is cut; the environment starts afresh
                rewards[t, 0] = 0.0
                dones[t, 0] = True
                self._restart_after_fault(e)
                continue
            self.episode_return += float(reward)
            self.episode_length += 1
            rewards[t, 0] = clip_reward(float(reward), self.reward_clipping)
            # Fixed-length episodes end by truncation; as in A3C, the time limit ends the return.
            dones[t, 0] = terminated or truncated
            if dones[t, 0]:
                episodes.append(Episode(self.task_index, self.episode_return, self.episode_length))
                self._reset()
            else:
                self.obs = np.asarray(next_obs)
                self.first = False
        obs[t_max, 0] = self.obs
        first[t_max, 0] = self.first
        rollout = Rollout(task_ids=task_ids, observations=obs, first=first, actions=actions, rewards=rewards,
                          dones=dones, distilled_state=d0, task_state=t0)
        return rollout, episodes

    def close(self):
        close_quietly(self.env)


def close_quietly(env):
    """Closes ``env``, logging instead of raising if its engine fails while shutting down."""
    if env is None:
        return
    try:
        env.close()
    except Exception as e:
        logging.warning("Ignoring an error while closing an environment: %s", e)
