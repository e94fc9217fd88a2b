"""The run-directory format: file names, run ids, policies and tags, the run lock, strict atomic JSON, crash recovery.

A run directory holds ``config.json``, ``status.json``, ``metrics.jsonl``,
TensorBoard event files, ``checkpoints/`` and, while a run is active,
``run.lock``. Its name, in a sweep, is a run id such as ``kl_2col-lr5e-4-ent1e-2-s0``.
Every writer (trainer, monitor, TensorBoard metadata, sweep) and every reader
(report, evaluation, transfer) takes these names from here. Everything here is
plain file handling: it imports neither TensorFlow nor the trainer.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import math
import os
import re
import shutil
import socket
import time

from absl import logging

CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = "run.lock"
CHECKPOINT_DIR = "checkpoints"
ATTEMPTS_DIR = "previous_attempts"

# A run whose status says "running" but whose heartbeat is older than this (on another host,
# where its pid cannot be checked) is reported as crashed.
STALE_HEARTBEAT_SECS = 15 * 60

_CHECKPOINT_INDEX = re.compile(r"^ckpt-(\d+)\.index$")

# ---------------------------------------------------------------------------------------------- #
# What a run records: its policies, per-task scalar tags, metrics rows and event files.

# The policies whose episodes a run records: the task policies pi_i and the distilled policy pi_0.
POLICIES: tuple[str, ...] = ("task", "distilled")
POLICY_TITLES: dict[str, str] = {"task": "task policies", "distilled": "distilled policy"}

EPISODE_RETURN = "episode_return"
EPISODE_LENGTH = "episode_length"
# Keys every row of ``metrics.jsonl`` has (rows also hold ``task_index``, ``length`` and ``wall_time``).
METRICS_ROW_KEYS = frozenset({"task", "policy", "env_steps", "return"})

EVENT_FILE_PREFIX = "events.out.tfevents"
_EVENT_FILE_MARKER = "tfevents"
# Suffixes of the event files that hold run metadata only (TensorBoard layout and HParams), no scalars.
LAYOUT_SUFFIX = ".distral-layout"
HPARAMS_SUFFIX = ".distral-hparams"
HPARAMS_CONFIG_SUFFIX = ".distral-hparams-config"
METADATA_SUFFIXES = (LAYOUT_SUFFIX, HPARAMS_SUFFIX, HPARAMS_CONFIG_SUFFIX)


def policy_title(policy: str) -> str:
    """How figures and TensorBoard charts name ``policy``, e.g. "task policies" (unknown names unchanged)."""
    return POLICY_TITLES.get(policy, policy)


def per_task_tag(policy: str, task_name: str, metric: str) -> str:
    """The scalar tag of ``metric`` for one task, e.g. ``task/maze_0/episode_return``."""
    return f"{policy}/{task_name}/{metric}"


_PER_TASK_EPISODE_TAG = re.compile(
    "^(" + "|".join(map(re.escape, POLICIES)) + f")/(.+)/({EPISODE_RETURN}|{EPISODE_LENGTH})$")


def parse_episode_tag(tag: str) -> tuple[str, str, str] | None:
    """``(policy, task, metric)`` of a per-task episode scalar (return or length), else None."""
    match = _PER_TASK_EPISODE_TAG.match(tag)
    return (match.group(1), match.group(2), match.group(3)) if match else None


def metrics_row(task: str, task_index: int, policy: str, env_steps: int, episode_return: float,
                length: int, wall_time: float, final: bool = False) -> dict:
    """One line of ``metrics.jsonl``: a finished episode of ``policy`` on ``task``.

    ``final`` marks the episodes of the final evaluation of pi_0 at the run's last step
    (key ``"final": true``; absent otherwise).
    """
    row = {"task": task, "task_index": int(task_index), "policy": policy, "env_steps": int(env_steps),
           "return": float(episode_return), "length": int(length), "wall_time": float(wall_time)}
    if final:
        row["final"] = True
    return row


def has_final_evaluation(logdir: str) -> bool:
    """Whether ``metrics.jsonl`` of ``logdir`` holds episodes of a final evaluation of pi_0."""
    path = os.path.join(logdir, METRICS_FILE)
    if not os.path.exists(path):
        return False
    with open(path) as f:
        return any('"final": true' in line for line in f)


def is_event_file(name: str) -> bool:
    """Whether file ``name`` is a TensorBoard event file."""
    return _EVENT_FILE_MARKER in name


def is_scalar_event_file(name: str) -> bool:
    """Whether file ``name`` is an event file that may hold scalars (not one of the metadata files)."""
    return is_event_file(name) and not name.endswith(METADATA_SUFFIXES)


# ---------------------------------------------------------------------------------------------- #
# Run ids: the names of a sweep's run directories.

_RUN_ID = re.compile(r"^(?P<algo>[a-z0-9_]+)-lr(?P<lr>[0-9.e+-]+)-ent(?P<ent>[0-9.e+-]+)-s(?P<seed>\d+)$")


def format_value(x: float) -> str:
    """Compact, stable text of a hyperparameter for run ids: 0.0005 -> '5e-4', 0.01 -> '1e-2'."""
    if x == 0:
        return "0"
    mantissa, exponent = f"{x:.6e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def run_id(algo: str, learning_rate: float, entropy_cost: float, seed: int) -> str:
    """E.g. ``kl_2col-lr5e-4-ent1e-2-s0``."""
    return f"{algo}-lr{format_value(learning_rate)}-ent{format_value(entropy_cost)}-s{seed}"


def parse_run_id(name: str) -> dict[str, str] | None:
    """The flags a run id encodes (``algo``, ``learning_rate``, ``entropy_cost``, ``seed``, as text), else None."""
    match = _RUN_ID.match(name)
    if not match:
        return None
    return {"algo": match["algo"], "learning_rate": match["lr"], "entropy_cost": match["ent"],
            "seed": match["seed"]}


class RunDirError(RuntimeError):
    """The run directory cannot be used as asked (locked, inconsistent, unwritable)."""


def hostname() -> str:
    return socket.gethostname()


def _strict(value):
    """``value`` with every non-finite float replaced by ``None`` (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def write_json_atomically(path: str, payload: dict):
    """Writes ``payload`` as strict JSON to ``path`` via a temporary file and a rename.

    On failure (a full disk, say) the temporary file is removed, ``path`` keeps its
    previous content, and the ``OSError`` raised names ``path``.
    """
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(_strict(payload), f, indent=2, sort_keys=True, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise OSError(e.errno, f"could not write {path}: {e.strerror or e}") from None


def read_json_object(path: str) -> dict:
    """The JSON object in ``path``; a ``RunDirError`` naming the file if it is unreadable or not an object."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise RunDirError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise RunDirError(f"{path} is not a text file") from None
    if not text.strip():
        raise RunDirError(f"{path} is empty")
    try:
        value = json.loads(text)
    except ValueError as e:
        raise RunDirError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise RunDirError(f"{path} holds a JSON {type(value).__name__}, not an object")
    return value


# ---------------------------------------------------------------------------------------------- #
# The run lock.


def process_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _describe_holder(info: dict) -> str:
    started = info.get("started")
    when = (datetime.datetime.fromtimestamp(started).isoformat(timespec="seconds")
            if isinstance(started, int | float) else "?")
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started {when}"


class RunLock:
    """An exclusive lock on a run directory (``run.lock``: pid, host, start time).

    The lock is an ``flock`` on the file, so the kernel releases it when its holder
    dies, however it dies; the file's content names the holder. A lock file left by
    a dead process is taken over with a warning.
    """

    def __init__(self, logdir: str):
        self.path = os.path.join(logdir, LOCK_FILE)
        self._fd: int | None = None

    def acquire(self):
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise RunDirError(f"{os.path.dirname(self.path)} is in use by another run "
                                  f"({_describe_holder(self._read())}); stop it or use another --logdir.") from None
            try:  # the file may have been removed by its previous holder in between
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            previous = self._read()
            if previous.get("pid") is not None:
                logging.warning("Taking over the lock of %s left by a process that is gone (%s).",
                                os.path.dirname(self.path), _describe_holder(previous))
            payload = json.dumps({"pid": os.getpid(), "host": hostname(), "started": time.time()}).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, payload, 0)
            self._fd = fd
            return self
        raise RunDirError(f"could not lock {self.path}")

    def _read(self) -> dict:
        try:
            with open(self.path) as f:
                value = json.loads(f.read() or "{}")
            return value if isinstance(value, dict) else {}
        except (OSError, ValueError):
            return {}

    def release(self):
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.remove(self.path)
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


# ---------------------------------------------------------------------------------------------- #
# Status.


def effective_state(status: dict, now: float | None = None) -> str:
    """A status's ``state``, with "running" turned into "crashed" when its process is gone.

    On this host the recorded pid is checked; for another host (or a status without a
    pid) a heartbeat older than ``STALE_HEARTBEAT_SECS`` means crashed.
    """
    state = str(status.get("state") or "unknown")
    if state != "running":
        return state
    pid, host = status.get("pid"), status.get("host")
    if isinstance(pid, int) and host == hostname():
        return "running" if process_alive(pid) else "crashed"
    heartbeat = status.get("heartbeat", status.get("time"))
    now = time.time() if now is None else now
    if isinstance(heartbeat, int | float) and now - heartbeat > STALE_HEARTBEAT_SECS:
        return "crashed"
    return state


def read_state(logdir: str) -> str | None:
    """The effective state of a run directory (see :func:`effective_state`), or None without status."""
    try:
        return effective_state(read_json_object(os.path.join(logdir, STATUS_FILE)))
    except RunDirError:
        return None


# ---------------------------------------------------------------------------------------------- #
# Checkpoints and the data of earlier attempts.


def checkpoint_numbers(checkpoint_dir: str) -> list[int]:
    """Numbers N of the ``ckpt-N.index`` files in ``checkpoint_dir``, ascending (the index file is not read)."""
    try:
        names = os.listdir(checkpoint_dir)
    except OSError:
        return []
    return sorted(int(m.group(1)) for m in map(_CHECKPOINT_INDEX.match, names) if m)


def remove_temporary_checkpoints(checkpoint_dir: str) -> list[str]:
    """Removes ``*_temp*`` leftovers of interrupted checkpoint writes; returns their names."""
    removed = []
    try:
        names = os.listdir(checkpoint_dir)
    except OSError:
        return removed
    for name in names:
        if "_temp" in name:
            path = os.path.join(checkpoint_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(path)
            removed.append(name)
    return removed


def run_data_files(logdir: str) -> list[str]:
    """Names of files in ``logdir`` that hold data of an attempt (metrics, events, status)."""
    try:
        names = sorted(os.listdir(logdir))
    except OSError:
        return []
    return [n for n in names if n in (METRICS_FILE, STATUS_FILE) or n.startswith(EVENT_FILE_PREFIX)]


def move_attempt_aside(logdir: str) -> str | None:
    """Moves the data of an attempt that left no checkpoint into ``previous_attempts/<n>/``; returns it."""
    names = run_data_files(logdir)
    if not names:
        return None
    root = os.path.join(logdir, ATTEMPTS_DIR)
    os.makedirs(root, exist_ok=True)
    n = 1
    while os.path.exists(os.path.join(root, str(n))):
        n += 1
    target = os.path.join(root, str(n))
    os.makedirs(target)
    for name in names:
        os.replace(os.path.join(logdir, name), os.path.join(target, name))
    checkpoints = os.path.join(logdir, CHECKPOINT_DIR)
    if os.path.isdir(checkpoints):
        os.replace(checkpoints, os.path.join(target, CHECKPOINT_DIR))
    return target


def rewind_metrics(path: str, offset: int) -> tuple[int, bool]:
    """Cuts ``metrics.jsonl`` back to ``offset`` bytes (the restored checkpoint's position).

    Returns (rows dropped, whether a partial last line was dropped). A file shorter
    than ``offset`` lost rows the checkpoint counted: a ``RunDirError``.
    """
    size = os.path.getsize(path) if os.path.exists(path) else 0
    if size < offset:
        raise RunDirError(
            f"{path} has {size:,} bytes but the restored checkpoint recorded {offset:,}: rows it counted are "
            "missing (the file was cut or replaced). Restore the file, or start a new run in another --logdir.")
    with open(path, "rb") as f:
        f.seek(offset)
        tail = f.read()
    if offset > 0:
        with open(path, "rb") as f:
            f.seek(offset - 1)
            if f.read(1) != b"\n":
                raise RunDirError(f"{path}: the restored checkpoint's offset {offset:,} is not at a line end; "
                                  "the file was changed after it was written.")
    partial = bool(tail) and not tail.endswith(b"\n")
    rows = tail.count(b"\n") + int(partial)
    if tail:
        with open(path, "r+b") as f:
            f.truncate(offset)
    return rows, partial


def drop_partial_last_line(path: str) -> bool:
    """Removes a last line cut short (no newline) from ``path``; returns whether one was removed."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return False
    with open(path, "rb") as f:
        data = f.read()
    if data.endswith(b"\n"):
        return False
    with open(path, "r+b") as f:
        f.truncate(data.rfind(b"\n") + 1)
    return True
