"""Threads that run a backend's rounds, and the gate that parks them between rounds for a checkpoint.

Both worker backends (:mod:`distral_tf.training.backends`) run their work as rounds in threads:
a local actor group's round is one rollout and its update, a Ray driver's round is one
poll of a task learner. :class:`WorkerThreads` runs each round function in a thread of
its own until it says it is done, the run stops or a round fails (the first error is
kept and stops the run); between rounds each thread passes a :class:`PauseGate`, which
the main thread closes to take a consistent checkpoint.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

# A round: ``round(rounds_done, start)`` (``start``: when the round began, a pause included);
# False once there is nothing left to do.
Round = Callable[[int, float], bool]


class PauseGate:
    """Lets the main thread park every worker between rollouts (for consistent checkpoints)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._paused = False
        self._parked = 0
        self._running = 0

    def enter(self):
        with self._cond:
            self._running += 1

    def leave(self):
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    def wait_if_paused(self):
        with self._cond:
            if not self._paused:
                return
            self._parked += 1
            self._cond.notify_all()
            while self._paused:
                self._cond.wait()
            self._parked -= 1

    def pause(self):
        with self._cond:
            self._paused = True
            while self._parked < self._running:
                self._cond.wait(timeout=0.5)

    def resume(self):
        with self._cond:
            self._paused = False
            self._cond.notify_all()


class Timings:
    """Seconds spent by the actor threads acting, stepping environments, learning and waiting (summed)."""

    FIELDS = ("env", "inference", "learning", "waiting")

    def __init__(self):
        self._lock = threading.Lock()
        self.seconds = dict.fromkeys(self.FIELDS, 0.0)

    def add(self, **seconds):
        with self._lock:
            for k, v in seconds.items():
                self.seconds[k] += v

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self.seconds)


class WorkerThreads:
    """Runs round functions, each in a daemon thread of its own, passing ``gate`` between rounds.

    A thread ends when its round returns False or ``stop`` is set; a round that raises
    records the error (the first one is kept in :attr:`error`) and sets ``stop``.
    """

    def __init__(self, stop: threading.Event, gate: PauseGate):
        self.stop = stop
        self.gate = gate
        self.error: BaseException | None = None
        self._threads: list[threading.Thread] = []

    def start(self, rounds: Sequence[Round], name: str = "actor"):
        self._threads = [threading.Thread(target=self._loop, args=(fn,), name=f"{name}-{i}", daemon=True)
                         for i, fn in enumerate(rounds)]
        for t in self._threads:
            t.start()

    def _loop(self, round_fn: Round):
        rounds = 0
        self.gate.enter()
        try:
            while not self.stop.is_set():
                start = time.perf_counter()
                self.gate.wait_if_paused()
                if self.stop.is_set() or not round_fn(rounds, start):
                    break
                rounds += 1
        except BaseException as e:
            if self.error is None:
                self.error = e
            self.stop.set()
        finally:
            self.gate.leave()

    @property
    def running(self) -> bool:
        """Whether a thread still runs rounds."""
        return any(t.is_alive() for t in self._threads)

    def join(self, timeout: float = 60.0):
        for t in self._threads:
            t.join(timeout=timeout)
