"""No process of a run outlives it: kill -9 of the trainer takes its environment processes and engines along."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.faults


def _processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, command name) of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(entry)] = (int(fields[1]), fields[0], name)
    return table


def _descendants(pid: int) -> dict[int, str]:
    table = _processes()
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, _, name) in table.items():
            if ppid == parent and child not in found:
                found[child] = name
                frontier.append(child)
    return found


def _alive(pids) -> list[int]:
    table = _processes()
    return [p for p in pids if p in table and table[p][1] != "Z"]


def test_kill_9_of_the_trainer_leaves_no_engine_alive(tmp_path):
    pytest.importorskip("vizdoom")
    proc = subprocess.Popen(
        [sys.executable, "-m", "distral_tf.run", "--algo=a3c", "--suite=doom_maze_01,doom_maze_02",
         "--workers_per_task=2", "--num_env_processes=2", "--eval_episodes=1", "--eval_every_env_steps=20",
         "--total_env_steps=1000000", f"--logdir={tmp_path / 'run'}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        deadline = time.monotonic() + 240
        engines = {}
        while time.monotonic() < deadline and proc.poll() is None:
            tree = _descendants(proc.pid)
            engines = {p: n for p, n in tree.items() if "vizdoom" in n}
            if len(engines) >= 5:  # 4 in the pool processes, 2 for the evaluation (one each at least)
                break
            time.sleep(0.5)
        assert len(engines) >= 5, f"the run did not start its engines: {tree}"
        tree = _descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _alive(tree):
            time.sleep(0.2)
        survivors = {p: tree[p] for p in _alive(tree)}
        assert not survivors, f"alive 5 s after kill -9 of the trainer: {survivors}"
    finally:
        proc.kill()
