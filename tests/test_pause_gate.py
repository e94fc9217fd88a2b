"""The pause gate: the main thread parks every worker between rollouts for a consistent checkpoint."""

import threading
import time

from distral_tf.training.worker_threads import PauseGate

JOIN_S = 10.0  # never reached unless the gate deadlocks


class Worker(threading.Thread):
    """Counts rounds, checking the gate between them as an actor thread does between rollouts."""

    def __init__(self, gate: PauseGate):
        super().__init__(daemon=True)
        self.gate, self.rounds, self.stop = gate, 0, threading.Event()
        self.in_round = threading.Event()

    def run(self):
        self.gate.enter()
        try:
            while not self.stop.is_set():
                self.gate.wait_if_paused()
                self.in_round.set()
                self.rounds += 1
                time.sleep(0.002)
                self.in_round.clear()
        finally:
            self.gate.leave()


def start_workers(gate, n):
    workers = [Worker(gate) for _ in range(n)]
    for w in workers:
        w.start()
    deadline = time.monotonic() + JOIN_S
    while any(w.rounds == 0 for w in workers) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(w.rounds > 0 for w in workers)
    return workers


def stop_workers(workers):
    for w in workers:
        w.stop.set()
    for w in workers:
        w.join(JOIN_S)
        assert not w.is_alive()


def pause_within_deadline(gate):
    """``gate.pause()`` in a thread: a gate that never parks its workers fails the test instead of hanging it."""
    pausing = threading.Thread(target=gate.pause, daemon=True)
    pausing.start()
    pausing.join(JOIN_S)
    assert not pausing.is_alive(), "pause() did not return"


def test_pause_returns_once_every_worker_is_parked_and_resume_lets_them_go_on():
    gate = PauseGate()
    workers = start_workers(gate, 3)
    try:
        pause_within_deadline(gate)
        assert not any(w.in_round.is_set() for w in workers)  # all are between rounds
        parked = [w.rounds for w in workers]
        time.sleep(0.1)
        assert [w.rounds for w in workers] == parked  # nobody moves while paused
        gate.resume()
        deadline = time.monotonic() + JOIN_S
        while any(w.rounds == p for w, p in zip(workers, parked, strict=True)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert all(w.rounds > p for w, p in zip(workers, parked, strict=True))
    finally:
        gate.resume()
        stop_workers(workers)


def test_pause_does_not_wait_for_workers_that_left():
    gate = PauseGate()
    workers = start_workers(gate, 2)
    stop_workers(workers[1:])  # one worker has finished its budget and left the gate
    try:
        pause_within_deadline(gate)
    finally:
        gate.resume()
        stop_workers(workers[:1])


def test_a_worker_leaving_while_the_gate_waits_releases_the_pause():
    gate = PauseGate()
    gate.enter()  # a worker busy in a long rollout: not parked yet
    paused = threading.Thread(target=gate.pause, daemon=True)
    paused.start()
    time.sleep(0.1)
    assert paused.is_alive()  # the pause waits for it
    gate.leave()  # it stops instead of parking
    paused.join(JOIN_S)
    assert not paused.is_alive()
    gate.resume()
