"""Environments stepping in a pool of worker processes, with observations in shared memory.

An :class:`EnvPool` holds ``N`` environments split into contiguous groups, one
group per process. ``step(actions)`` writes the actions into shared memory and
sends one small command per process; each process steps its whole group and
writes observations, rewards and end flags back into shared memory, so frames
are never pickled. Episodes reset automatically: an environment whose episode
ended reports ``done`` and its slot already holds the first observation of the
next episode. Only an environment's first reset is seeded (Gymnasium's convention):
its seed fixes every later episode.

Faults never end a run: a process that dies (a segfaulting engine, ``kill -9``;
noticed at once through its process sentinel, not by a timeout), does not answer
within ``timeout_s``, raises, or returns a non-finite reward or
observation is killed (with its process group, so engine subprocesses go too)
and started afresh; its environments are recreated, their episodes are cut
(``done`` and ``cut`` set, reward 0) and ``restarts`` counts one restart per
recreated environment. Each process leads its own process group (its engines
included) and ends that group when the pool's owner dies
(:func:`distral_tf.envs.process_guard.die_with_parent`).

:class:`LocalEnvs` offers the same interface with the environments stepped in
the calling thread (``--num_env_processes=0``; fast for small tests). Both
satisfy :class:`EnvPoolInterface`, the seam the actor groups use.

This module does not import TensorFlow: the processes are started with the
``spawn`` method and only import what stepping needs.
"""

from __future__ import annotations

import ctypes
import dataclasses
import multiprocessing as mp
import os
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait as wait_connections
from typing import Any, Protocol, runtime_checkable

import numpy as np
from absl import logging
from numpy.typing import DTypeLike

from distral_tf.envs import process_guard

_MAX_START_ATTEMPTS = 5

EnvFactory = Callable[[int, int | None], Any]
"""``make_env(task, seed) -> gymnasium.Env`` (picklable for :class:`EnvPool`); ``seed`` may be ``None``."""


def default_num_processes() -> int:
    """One process per core: the engines then use every core while TensorFlow computes."""
    return max(1, os.cpu_count() or 1)


def resolve_num_processes(value: int) -> int:
    """``--num_env_processes``: ``-1`` picks :func:`default_num_processes`, ``0`` steps environments in-process."""
    return default_num_processes() if value < 0 else int(value)


def group_layout(num_envs: int, num_groups: int, num_processes: int) -> list[tuple[int, int, int]]:
    """Splits ``num_envs`` environments into contiguous groups: ``(lo, hi, processes)`` for each.

    Each group gets its share of the processes (at least one when processes are
    used; none when ``num_processes`` is 0).
    """
    if num_envs < 1:
        raise ValueError(f"There must be at least one environment to split into groups, not {num_envs}.")
    if num_processes < 0:
        raise ValueError(f"The number of environment processes cannot be negative ({num_processes}).")
    num_groups = max(1, min(num_groups, num_envs))
    bounds = np.linspace(0, num_envs, num_groups + 1).round().astype(int)
    proc_bounds = np.linspace(0, num_processes, num_groups + 1).round().astype(int)
    return [(int(bounds[g]), int(bounds[g + 1]),
             max(1, int(proc_bounds[g + 1] - proc_bounds[g])) if num_processes > 0 else 0)
            for g in range(num_groups)]


@dataclasses.dataclass
class StepResult:
    """What one step of every environment returned (arrays of length ``N``).

    ``observations`` is a view of the pool's shared memory: valid until the next
    ``step``. For an environment whose episode ended (``done``), it holds the
    first observation of the next episode. ``cut`` marks episodes ended by a
    fault (the environment was recreated). Skipped environments (action ``-1``)
    keep their observation and report ``done = False``.
    """

    observations: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    cut: np.ndarray

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated | self.cut


@runtime_checkable
class EnvPoolInterface(Protocol):
    """``N`` environments (one per worker) stepped together: :class:`EnvPool` and :class:`LocalEnvs`.

    ``step`` takes one action per environment (``-1`` skips it) and returns a
    :class:`StepResult`; episodes reset automatically and faults cut them.
    """

    num_envs: int
    tasks: np.ndarray  # [N] int64, the task of each environment
    observations: np.ndarray  # [N, H, W, C], the current observation of each environment
    restarts: np.ndarray  # [N] int64, restarts after faults, per environment
    process_restarts: int
    env_seconds: float  # seconds spent stepping environments

    @property
    def num_processes(self) -> int: ...

    def step(self, actions: np.ndarray) -> StepResult: ...

    def restarts_per_task(self, num_tasks: int) -> np.ndarray: ...

    def close(self, timeout_s: float = 5.0) -> None: ...


class EnvFault(RuntimeError):
    """An environment misbehaved (used inside the pool and by :class:`LocalEnvs`)."""


def _check_finite(reward, obs):
    if not np.isfinite(reward):
        raise EnvFault(f"non-finite reward {reward}")
    if np.issubdtype(obs.dtype, np.floating) and not np.isfinite(obs).all():
        raise EnvFault("non-finite observation")


class _EnvSlots:
    """The environments of one group and their seeds (shared by the processes and LocalEnvs)."""

    def __init__(self, make_env, tasks, seeds):
        self.envs = []
        self.rngs = [np.random.default_rng(s) for s in seeds]
        self.seeded = [False] * len(seeds)
        try:
            for task in tasks:
                self.envs.append(make_env(int(task), None))  # seeded by the first reset
        except BaseException:
            self.close()
            raise

    def reset(self, i):
        """The first observation of env ``i``'s next episode. Only its first reset is seeded (Gymnasium's
        convention): the seed fixes every later episode, which continues the environment's own random
        stream. (Seeding every episode would also cost a Doom environment a new engine per episode.)"""
        seed = None
        if not self.seeded[i]:
            seed, self.seeded[i] = int(self.rngs[i].integers(2**31 - 1)), True
        obs, _ = self.envs[i].reset(seed=seed)
        obs = np.asarray(obs)
        _check_finite(0.0, obs)
        return obs

    def step(self, i, action):
        """Steps env ``i``; on an episode end returns the first observation of the next one."""
        obs, reward, terminated, truncated, _ = self.envs[i].step(int(action))
        obs = np.asarray(obs)
        _check_finite(reward, obs)
        if terminated or truncated:
            obs = self.reset(i)
        return obs, float(reward), bool(terminated), bool(truncated)

    def close(self):
        for env in self.envs:
            try:
                env.close()
            except Exception:
                pass
        self.envs = []


def _as_array(raw, dtype, shape):
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _process_main(conn, make_env, tasks, seeds, lo, buffers, obs_dtype, obs_shape, parent_pid):
    """The loop of one pool process: steps environments ``lo:lo+len(tasks)`` on each command."""
    try:
        os.setpgrp()  # the parent can kill this process with its engine subprocesses
    except OSError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle
    process_guard.close_inherited_descriptors()
    process_guard.die_with_parent(parent_pid)
    n_total = len(buffers["actions"]) // 4
    obs = _as_array(buffers["obs"], obs_dtype, (n_total, *obs_shape))
    actions = _as_array(buffers["actions"], np.int32, (n_total,))
    rewards = _as_array(buffers["rewards"], np.float64, (n_total,))
    terminated = _as_array(buffers["terminated"], np.bool_, (n_total,))
    truncated = _as_array(buffers["truncated"], np.bool_, (n_total,))
    hi = lo + len(tasks)
    slots = None
    try:
        slots = _EnvSlots(make_env, tasks, seeds)
        for i in range(len(tasks)):
            obs[lo + i] = slots.reset(i)
        conn.send(("ready", None))
        while True:
            command = conn.recv()
            if command == "step":
                start = time.perf_counter()
                for i in range(lo, hi):
                    a = actions[i]
                    if a < 0:
                        terminated[i] = truncated[i] = False
                        rewards[i] = 0.0
                        continue
                    obs[i], rewards[i], terminated[i], truncated[i] = slots.step(i - lo, a)
                conn.send(("ok", time.perf_counter() - start))
            elif command == "close":
                break
    except (EOFError, OSError, KeyboardInterrupt):
        process_guard.end_process_group()  # the parent went away: no engine of ours may outlive it
    except BaseException as e:
        try:
            conn.send(("fault", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"))
        except Exception:
            pass
    finally:
        if slots is not None:
            slots.close()
        conn.close()
        os._exit(0)


@dataclasses.dataclass
class _Proc:
    lo: int
    hi: int
    process: mp.process.BaseProcess | None = None
    conn: object = None
    generation: int = 0


class EnvPool:
    """``len(tasks)`` environments in ``num_processes`` processes; see the module docstring.

    Args:
      make_env: picklable ``make_env(task, seed) -> gymnasium.Env`` (e.g. ``Suite.make_env``); the pool passes
        ``seed=None`` and seeds each environment with its first ``reset``.
      tasks, seeds: one task index and one seed per environment.
      observation_shape, observation_dtype: of every environment's observations.
      num_processes: processes (at most one per environment).
      timeout_s: a step (or a start) not answered within this many seconds is a hung process.
    """

    def __init__(self, make_env: EnvFactory, tasks: Sequence[int], seeds: Sequence[int],
                 observation_shape: Sequence[int], observation_dtype: DTypeLike = np.uint8,
                 num_processes: int = 1, timeout_s: float = 60.0, start_method: str = "spawn"):
        n = len(tasks)
        if n == 0 or len(seeds) != n:
            raise ValueError("EnvPool needs one seed per environment and at least one environment.")
        self.num_envs = n
        self.tasks = np.asarray(tasks, np.int64)
        self._seeds = [int(s) for s in seeds]
        self._make_env = make_env
        self._timeout_s = float(timeout_s)
        self._obs_shape = tuple(int(d) for d in observation_shape)
        self._obs_dtype = np.dtype(observation_dtype)
        self._ctx = mp.get_context(start_method)
        obs_bytes = n * int(np.prod(self._obs_shape)) * self._obs_dtype.itemsize
        self._buffers = {
            "obs": self._ctx.RawArray(ctypes.c_uint8, obs_bytes),
            "actions": self._ctx.RawArray(ctypes.c_uint8, 4 * n),
            "rewards": self._ctx.RawArray(ctypes.c_uint8, 8 * n),
            "terminated": self._ctx.RawArray(ctypes.c_uint8, n),
            "truncated": self._ctx.RawArray(ctypes.c_uint8, n),
        }
        self.observations = _as_array(self._buffers["obs"], self._obs_dtype, (n, *self._obs_shape))
        self._actions = _as_array(self._buffers["actions"], np.int32, (n,))
        self._rewards = _as_array(self._buffers["rewards"], np.float64, (n,))
        self._terminated = _as_array(self._buffers["terminated"], np.bool_, (n,))
        self._truncated = _as_array(self._buffers["truncated"], np.bool_, (n,))
        self._cut = np.zeros(n, bool)
        self.restarts = np.zeros(n, np.int64)  # per environment
        self.process_restarts = 0
        self.env_seconds = 0.0  # time the processes spent stepping (summed over processes)
        self._closed = False
        p = max(1, min(int(num_processes), n))
        bounds = np.linspace(0, n, p + 1).round().astype(int)
        self._procs = [_Proc(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
        try:
            for proc in self._procs:
                self._launch(proc)
            for proc in self._procs:
                try:
                    self._await_ready(proc, first=True)
                except EnvFault as e:  # a process that dies while starting is started again
                    self._restart(proc, str(e))
        except BaseException:
            self.close()
            raise

    @property
    def num_processes(self) -> int:
        return len(self._procs)

    def process_ids(self) -> list[int]:
        return [proc.process.pid for proc in self._procs if proc.process is not None]

    def restarts_per_task(self, num_tasks: int) -> np.ndarray:
        return np.bincount(self.tasks, weights=self.restarts, minlength=num_tasks).astype(np.int64)

    # ------------------------------------------------------------------------------------------ #

    def _launch(self, proc: _Proc):
        seeds = [int(np.random.SeedSequence([s, proc.generation]).generate_state(1)[0])
                 for s in self._seeds[proc.lo:proc.hi]]
        parent_conn, child_conn = self._ctx.Pipe()
        process = self._ctx.Process(
            target=_process_main, name=f"env-pool-{proc.lo}-{proc.hi}", daemon=True,
            args=(child_conn, self._make_env, [int(t) for t in self.tasks[proc.lo:proc.hi]], seeds, proc.lo,
                  self._buffers, self._obs_dtype, self._obs_shape, os.getpid()))
        process.start()
        child_conn.close()
        proc.process, proc.conn = process, parent_conn

    def _await_ready(self, proc: _Proc, first: bool = False):
        # Starting an engine can be slow: the first start gets a generous allowance.
        message = self._receive(proc, max(self._timeout_s, 120.0 if first else 30.0))
        if message[0] != "ready":
            raise EnvFault(message[1])

    def _receive(self, proc: _Proc, timeout: float):
        """The process's next message; ``EnvFault`` if it dies first (seen at once) or ``timeout`` passes."""
        try:
            if not proc.conn.poll(0):
                ready = wait_connections([proc.conn, proc.process.sentinel], timeout=timeout)
                if not ready:
                    raise EnvFault(f"no answer within {timeout:.0f} s")
                if proc.conn not in ready:
                    raise EOFError("the process exited")
            return proc.conn.recv()
        except (EOFError, OSError) as e:
            code = proc.process.exitcode if proc.process is not None else None
            if code is None and proc.process is not None:
                proc.process.join(timeout=1.0)
                code = proc.process.exitcode
            raise EnvFault(f"the process died (exit code {code})") from e

    def _kill(self, proc: _Proc):
        process = proc.process
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            try:
                process.kill()
            except Exception:
                pass
        process.join(timeout=5.0)
        try:
            proc.conn.close()
        except Exception:
            pass
        proc.process = proc.conn = None

    def _restart(self, proc: _Proc, reason: str):
        tasks = sorted(set(int(t) for t in self.tasks[proc.lo:proc.hi]))
        logging.warning("Environment process for environments %d-%d (tasks %s) failed: %s; restarting it.",
                        proc.lo, proc.hi - 1, tasks, reason.strip().splitlines()[0] if reason.strip() else reason)
        self._kill(proc)
        self.process_restarts += 1
        for attempt in range(_MAX_START_ATTEMPTS):
            proc.generation += 1
            try:
                self._launch(proc)
                self._await_ready(proc)
                break
            except EnvFault as e:
                self._kill(proc)
                if attempt == _MAX_START_ATTEMPTS - 1:
                    raise EnvFault(f"could not restart the environments of tasks {tasks} "
                                   f"after {_MAX_START_ATTEMPTS} attempts: {e}") from None
                time.sleep(0.5 * (attempt + 1))
        self.restarts[proc.lo:proc.hi] += 1
        self._rewards[proc.lo:proc.hi] = 0.0
        self._terminated[proc.lo:proc.hi] = False
        self._truncated[proc.lo:proc.hi] = False
        self._cut[proc.lo:proc.hi] = True

    # ------------------------------------------------------------------------------------------ #

    def step(self, actions: np.ndarray) -> StepResult:
        """Steps every environment whose action is ``>= 0``; one command per process."""
        if self._closed:
            raise RuntimeError("The environment pool is closed.")
        self._actions[:] = actions
        self._cut[:] = False
        pending = {}
        for proc in self._procs:
            if not (self._actions[proc.lo:proc.hi] >= 0).any():
                self._terminated[proc.lo:proc.hi] = self._truncated[proc.lo:proc.hi] = False
                self._rewards[proc.lo:proc.hi] = 0.0
                continue
            try:
                proc.conn.send("step")
                pending[proc.conn] = proc
            except (OSError, ValueError, AttributeError) as e:
                self._restart(proc, f"could not send a command ({e})")
        deadline = time.monotonic() + self._timeout_s
        while pending:
            # A process's sentinel is ready once it has exited: a death is seen at once, not at the timeout.
            sentinels = {proc.process.sentinel: conn for conn, proc in pending.items()}
            ready = wait_connections([*pending, *sentinels], timeout=max(deadline - time.monotonic(), 0.0))
            if not ready:
                for proc in list(pending.values()):
                    self._restart(proc, f"no answer within {self._timeout_s:g} s (--env_timeout_secs)")
                break
            for conn in {sentinels.get(r, r) for r in ready}:
                if conn not in pending:
                    continue
                proc = pending.pop(conn)
                try:
                    message = self._receive(proc, 0.0)
                except EnvFault as e:
                    self._restart(proc, str(e))
                    continue
                if message[0] == "ok":
                    self.env_seconds += message[1]
                else:
                    self._restart(proc, str(message[1]))
        return StepResult(self.observations, self._rewards, self._terminated, self._truncated, self._cut)

    def kill_process(self, index: int, sig: int = signal.SIGKILL):
        """Sends ``sig`` to pool process ``index`` (for fault tests)."""
        os.kill(self._procs[index].process.pid, sig)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stops every process; never raises and never waits more than about ``timeout_s``."""
        if self._closed:
            return
        self._closed = True
        for proc in self._procs:
            try:
                if proc.conn is not None:
                    proc.conn.send("close")
            except Exception:
                pass
        deadline = time.monotonic() + timeout_s
        for proc in self._procs:
            if proc.process is not None:
                proc.process.join(timeout=max(deadline - time.monotonic(), 0.0))
            self._kill(proc)  # also ends engine subprocesses left in its process group

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close(timeout_s=1.0)
        except Exception:
            pass


class LocalEnvs:
    """The :class:`EnvPool` interface with the environments stepped in the calling thread."""

    def __init__(self, make_env: EnvFactory, tasks: Sequence[int], seeds: Sequence[int],
                 observation_shape: Sequence[int] | None = None, observation_dtype: DTypeLike = np.uint8,
                 **_unused: object):
        if len(tasks) == 0 or len(seeds) != len(tasks):
            raise ValueError("LocalEnvs needs one seed per environment and at least one environment.")
        self.num_envs = len(tasks)
        self.tasks = np.asarray(tasks, np.int64)
        self._make_env = make_env
        self._seeds = [int(s) for s in seeds]
        self._generation = np.zeros(self.num_envs, np.int64)
        self.restarts = np.zeros(self.num_envs, np.int64)
        self.process_restarts = 0
        self.env_seconds = 0.0
        self._slots = [self._new_slot(i) for i in range(self.num_envs)]
        first = [s.reset(0) for s in self._slots]
        self.observations = np.stack(first)
        self._rewards = np.zeros(self.num_envs)
        self._terminated = np.zeros(self.num_envs, bool)
        self._truncated = np.zeros(self.num_envs, bool)
        self._cut = np.zeros(self.num_envs, bool)

    num_processes = 0  # steps in the calling thread

    def _new_slot(self, i):
        seed = int(np.random.SeedSequence([self._seeds[i], int(self._generation[i])]).generate_state(1)[0])
        return _EnvSlots(self._make_env, [self.tasks[i]], [seed])

    def restarts_per_task(self, num_tasks: int) -> np.ndarray:
        return np.bincount(self.tasks, weights=self.restarts, minlength=num_tasks).astype(np.int64)

    def step(self, actions: np.ndarray) -> StepResult:
        """Steps every environment whose action is ``>= 0``, in turn; a fault recreates the environment."""
        start = time.perf_counter()
        self._cut[:] = False
        for i, a in enumerate(np.asarray(actions)):
            if a < 0:
                self._rewards[i], self._terminated[i], self._truncated[i] = 0.0, False, False
                continue
            try:
                self.observations[i], self._rewards[i], self._terminated[i], self._truncated[i] = \
                    self._slots[i].step(0, a)
            except Exception as e:  # the episode is cut; the environment starts afresh
                logging.warning("Task %d: environment fault (%s: %s); restarting it.", self.tasks[i],
                                type(e).__name__, e)
                self._slots[i].close()
                self._generation[i] += 1
                self.restarts[i] += 1
                self._slots[i] = self._new_slot(i)
                self.observations[i] = self._slots[i].reset(0)
                self._rewards[i], self._terminated[i], self._truncated[i] = 0.0, False, False
                self._cut[i] = True
        self.env_seconds += time.perf_counter() - start
        return StepResult(self.observations, self._rewards, self._terminated, self._truncated, self._cut)

    def close(self, timeout_s: float = 5.0) -> None:
        """Closes the environments (``timeout_s`` is unused: nothing runs elsewhere)."""
        for slot in self._slots:
            slot.close()
        self._slots = []


def make_envs(make_env: EnvFactory, tasks: Sequence[int], seeds: Sequence[int], observation_shape: Sequence[int],
              observation_dtype: DTypeLike = np.uint8, num_processes: int = 0,
              timeout_s: float = 60.0) -> EnvPoolInterface:
    """An :class:`EnvPool` with ``num_processes`` processes, or :class:`LocalEnvs` when it is 0."""
    if num_processes <= 0:
        return LocalEnvs(make_env, tasks, seeds, observation_shape, observation_dtype)
    return EnvPool(make_env, tasks, seeds, observation_shape, observation_dtype, num_processes=num_processes,
                   timeout_s=timeout_s)
