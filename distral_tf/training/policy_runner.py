"""Running a trained agent's policies for whole episodes, outside training, and summarising them.

A :class:`PolicyRunner` gives the logits of the task policies pi_i (eq. 8's mixture
in 2col) or of the distilled policy pi_0 for a batch of observations; actions are
the argmax (``greedy``) or drawn from the softmax with a seeded generator.
:func:`run_episodes` steps one environment per task in lockstep (one network
call per step for all of them) and can record each task's first episode: its
frames, rewards and, where the environment has a position (the Doom tasks), the
player's trajectory.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from distral_tf.model.networks import LSTM_SIZE
from distral_tf.training.run_files import POLICIES


class PolicyRunner:
    """Logits of one of the agent's policies; ``which`` is ``"task"`` (pi_i) or ``"distilled"`` (pi_0)."""

    def __init__(self, agent, which: str):
        if which not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {which!r}.")
        self.agent = agent
        self.which = which
        if which == "distilled":
            column = agent.distilled_column()
            spec = tf.TensorSpec([None, LSTM_SIZE], tf.float32)

            @tf.function(autograph=False, input_signature=[
                tf.TensorSpec([None, *agent.observation_shape], tf.uint8), tf.TensorSpec([None], tf.bool), spec, spec])
            def distilled_step(obs, first, h, c):
                logits, _, (h, c) = column.step(obs, first, (h, c))
                return logits, h, c

            self._distilled_step = distilled_step

    def initial_state(self, batch_size: int):
        d_state, t_state = self.agent.initial_state(batch_size)
        return (*d_state, *t_state)

    def logits(self, task_ids, observations, first, state):
        """``(logits [B, A], new state)``; ``state`` is a tuple of four ``[B, 256]`` arrays."""
        if self.which == "task":
            _, logits, d_state, t_state = self.agent.act(task_ids, observations, first, state[:2], state[2:])
            return logits, (*d_state, *t_state)
        logits, h, c = self._distilled_step(observations, np.asarray(first, bool), state[0], state[1])
        return logits.numpy(), (h.numpy(), c.numpy(), state[2], state[3])


def choose_actions(logits: np.ndarray, greedy: bool, rng: np.random.Generator) -> np.ndarray:
    """Argmax of ``logits`` (greedy) or one draw from each row's softmax."""
    logits = np.asarray(logits, np.float64)
    if greedy:
        return logits.argmax(-1).astype(np.int32)
    gumbel = -np.log(-np.log(rng.uniform(1e-12, 1.0, logits.shape)))
    return (logits + gumbel).argmax(-1).astype(np.int32)


@dataclasses.dataclass
class Recording:
    """One episode as watched: frames ``[T+1, H, W, C]``, rewards ``[T]`` and, if known, positions ``[T+1, 2]``."""

    frames: list
    rewards: list
    positions: list | None
    scene: object = None  # the Doom scene the episode ended in (for its top-down map)


@dataclasses.dataclass
class TaskEpisodes:
    """The episodes of one task: returns, lengths, successes (``None`` where the task defines none)."""

    returns: list = dataclasses.field(default_factory=list)
    lengths: list = dataclasses.field(default_factory=list)
    successes: list | None = None
    recording: Recording | None = None


def _position(env):
    position = getattr(env.unwrapped, "position", None)
    return None if position is None or getattr(env.unwrapped, "scene", None) is None else tuple(position)


def run_episodes(envs, task_ids, runner: PolicyRunner, episodes: int, *, greedy: bool, seed: int = 0,
                 record: bool = False) -> list[TaskEpisodes]:
    """Runs ``episodes`` episodes in each of ``envs`` (``envs[i]`` acted on by policy of task ``task_ids[i]``).

    With ``record``, each environment's first episode is kept as a :class:`Recording`.
    """
    n = len(envs)
    rng = np.random.default_rng([seed, 11])
    task_ids = np.asarray(task_ids, np.int32)
    results = [TaskEpisodes() for _ in range(n)]
    success_keys = [getattr(env.unwrapped, "success_key", None) for env in envs]
    for result, key in zip(results, success_keys, strict=True):
        result.successes = [] if key is not None else None
    obs = []
    for i, env in enumerate(envs):
        o, _ = env.reset(seed=int(rng.integers(2**31 - 1)))
        obs.append(np.asarray(o))
        if record:
            position = _position(env)
            results[i].recording = Recording([obs[i].copy()], [], [position] if position is not None else None)
    state = list(runner.initial_state(n))
    first = np.ones(n, bool)
    ep_return, ep_length = np.zeros(n), np.zeros(n, np.int64)
    active = np.ones(n, bool)
    while active.any():
        idx = np.flatnonzero(active)
        logits, new_state = runner.logits(task_ids[idx], np.stack([obs[i] for i in idx]), first[idx],
                                          tuple(s[idx] for s in state))
        for s, part in zip(state, new_state, strict=True):
            s[idx] = part
        actions = choose_actions(logits, greedy, rng)
        for j, i in enumerate(idx):
            o, reward, terminated, truncated, info = envs[i].step(int(actions[j]))
            obs[i] = np.asarray(o)
            ep_return[i] += reward
            ep_length[i] += 1
            first[i] = False
            recording = results[i].recording
            if recording is not None and not results[i].returns:  # still in the first episode
                recording.frames.append(obs[i].copy())
                recording.rewards.append(float(reward))
                if recording.positions is not None:
                    recording.positions.append(_position(envs[i]))
                if terminated or truncated:
                    recording.scene = getattr(envs[i].unwrapped, "scene", None)
            if not (terminated or truncated):
                continue
            results[i].returns.append(float(ep_return[i]))
            results[i].lengths.append(int(ep_length[i]))
            if success_keys[i] is not None:
                results[i].successes.append(bool(info.get(success_keys[i], 0) > 0))
            ep_return[i], ep_length[i], first[i] = 0.0, 0, True
            if len(results[i].returns) >= episodes:
                active[i] = False
            else:
                obs[i] = np.asarray(envs[i].reset(seed=int(rng.integers(2**31 - 1)))[0])
    return results


def watch(envs, task_ids, runner: PolicyRunner, steps: int, *, greedy: bool, seed: int = 0) -> list[list]:
    """The frames of ``steps`` steps in each of ``envs`` from a reset (a finished episode starts the next)."""
    rng = np.random.default_rng([seed, 13])
    task_ids = np.asarray(list(task_ids), np.int32)
    obs = [np.asarray(env.reset(seed=int(rng.integers(2**31 - 1)))[0]) for env in envs]
    frames = [[o.copy()] for o in obs]
    state, first = runner.initial_state(len(envs)), np.ones(len(envs), bool)
    for _ in range(steps):
        logits, state = runner.logits(task_ids, np.stack(obs), first, state)
        for i, action in enumerate(choose_actions(logits, greedy, rng)):
            o, _, terminated, truncated, _ = envs[i].step(int(action))
            first[i] = terminated or truncated
            obs[i] = np.asarray(envs[i].reset(seed=int(rng.integers(2**31 - 1)))[0] if first[i] else o)
            frames[i].append(obs[i].copy())
    return frames


def summarize(episodes: TaskEpisodes) -> dict:
    """Mean and standard deviation of the returns and lengths, and the success rate (``None`` if undefined)."""
    returns, lengths = np.asarray(episodes.returns, float), np.asarray(episodes.lengths, float)
    return {
        "episodes": len(returns),
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "mean_length": float(lengths.mean()),
        "std_length": float(lengths.std()),
        "success_rate": None if episodes.successes is None else float(np.mean(episodes.successes)),
        "returns": [float(r) for r in returns],
    }
