"""Per-task metrics: TensorBoard scalars, the run's ``metrics.jsonl`` and a terminal progress line.

Every scalar a :class:`Monitor` writes also goes to the sinks registered with
:func:`mirrored_to` (an experiment tracker, ``distral_tf/training/tracking.py``).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time

import numpy as np
import tensorflow as tf
from absl import logging

from distral_tf.training import run_files
from distral_tf.training.run_files import METRICS_FILE

PER_TASK_PREFIXES = tuple(f"{prefix}/" for prefix in (*run_files.POLICIES, "loss"))


def rewind_event_files(logdir: str, task_steps: dict[str, int], run_steps: int) -> int:
    """Drops events written after a checkpoint from the event files of ``logdir``; returns how many.

    A run killed after its last checkpoint repeats the steps since then when it
    resumes. Without this, TensorBoard would show those steps twice. A per-task
    scalar (``task/<t>/...``, ``loss/<t>/...``, ``distilled/<t>/...``) is kept up to
    that task's checkpointed step, a ``train/...`` scalar up to ``run_steps``. Each
    file is rewritten under a temporary name and renamed over the original.
    """
    from tensorboard.compat.proto import event_pb2

    def limit(tag: str) -> int | None:
        for prefix in PER_TASK_PREFIXES:
            if tag.startswith(prefix):
                return task_steps.get(tag[len(prefix):].split("/")[0])
        return run_steps if tag.startswith("train/") else None

    dropped = 0
    for name in sorted(os.listdir(logdir)):
        path = os.path.join(logdir, name)
        if not name.startswith(run_files.EVENT_FILE_PREFIX) or not os.path.isfile(path):
            continue
        kept, removed = [], 0
        try:
            for record in tf.data.TFRecordDataset(path):
                event = event_pb2.Event.FromString(record.numpy())
                tags = [v.tag for v in event.summary.value]
                limits = [limit(t) for t in tags]
                if any(lim is not None and event.step > lim for lim in limits):
                    removed += 1
                else:
                    kept.append(record.numpy())
        except tf.errors.DataLossError:  # a record cut short by the crash: keep what precedes it
            removed += 1
        if removed:
            tmp = path + ".rewind"
            with tf.io.TFRecordWriter(tmp) as writer:
                for record in kept:
                    writer.write(record)
            os.replace(tmp, path)
            dropped += removed
    return dropped


_MIRRORS: list = []


@contextlib.contextmanager
def mirrored_to(sink):
    """While in the block, ``sink.log_scalars(step, {tag: value})`` receives every scalar of this process's monitors."""
    _MIRRORS.append(sink)
    try:
        yield sink
    finally:
        _MIRRORS.remove(sink)


def _mirror(step: int, values: dict):
    for sink in _MIRRORS:
        sink.log_scalars(int(step), values)


def _format_duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Monitor:
    """Thread-safe writer of every metric of a run, each tagged with its task.

    TensorBoard tags: ``task/<task>/<metric>`` for the task policies,
    ``distilled/<task>/<metric>`` for evaluations of pi_0 and ``train/<metric>``
    for run-wide values; the step of a per-task scalar is that task's agent steps.
    """

    def __init__(self, logdir: str, task_names, frames_per_step: int, total_env_steps: int,
                 log_every_secs: float = 30.0, metrics_offset: int | None = None, resume_task_steps=None):
        self.task_names = list(task_names)
        self.frames_per_step = frames_per_step
        self.total_env_steps = total_env_steps
        self.log_every_secs = log_every_secs
        self._lock = threading.Lock()
        path = os.path.join(logdir, METRICS_FILE)
        # Steps at or before which scalars were already written by the attempt that made the restored
        # checkpoint: progress scalars at those steps are not written again.
        self._resume_task_steps = None
        self._resume_total_steps = -1
        if resume_task_steps is not None:
            # Everything written after the restored checkpoint is repeated by the resumed run: it is cut.
            steps = {n: int(s) for n, s in zip(self.task_names, resume_task_steps, strict=True)}
            self._resume_task_steps = [int(s) for s in resume_task_steps]
            self._resume_total_steps = int(sum(steps.values()))
            rows, partial = run_files.rewind_metrics(path, int(metrics_offset or 0))
            events = rewind_event_files(logdir, steps, self._resume_total_steps)
            log = logging.warning if rows or events else logging.info
            log("Resuming at %s agent steps: dropped %d metrics.jsonl rows%s and %d TensorBoard events written "
                "after the checkpoint.", f"{self._resume_total_steps:,}", rows,
                " (the last one cut short)" if partial else "", events)
        elif run_files.drop_partial_last_line(path):
            logging.warning("Dropped a line cut short at the end of %s.", path)
        self._writer = tf.summary.create_file_writer(logdir, flush_millis=10_000)
        self._metrics = open(path, "a", buffering=1)
        self._recent_returns = [[] for _ in self.task_names]
        self._start_time = time.time()
        self._start_steps = None
        self._last_print = 0.0

    def episode(self, task_index: int, env_steps: int, episode_return: float, length: int,
                policy: str = "task", final: bool = False):
        """Records one finished episode of the task policy (or, ``policy="distilled"``, of pi_0;
        ``final``: of its final evaluation)."""
        name = self.task_names[task_index]
        row = run_files.metrics_row(name, task_index, policy, env_steps, episode_return, length, time.time(), final)
        with self._lock:
            self._metrics.write(json.dumps(row) + "\n")
            with self._writer.as_default():
                tf.summary.scalar(run_files.per_task_tag(policy, name, run_files.EPISODE_RETURN), episode_return,
                                  step=env_steps)
                tf.summary.scalar(run_files.per_task_tag(policy, name, run_files.EPISODE_LENGTH), length,
                                  step=env_steps)
            _mirror(env_steps, {run_files.per_task_tag(policy, name, run_files.EPISODE_RETURN): episode_return,
                                run_files.per_task_tag(policy, name, run_files.EPISODE_LENGTH): length})
            if policy == "task":
                recent = self._recent_returns[task_index]
                recent.append(float(episode_return))
                del recent[:-20]

    def clip(self, task_index: int, env_steps: int, gif: bytes, width: int, height: int, policy: str = "distilled"):
        """An animated GIF as an image summary ``<policy>/<task>/clip`` (TensorBoard's image dashboard animates it)."""
        from tensorboard.plugins.image import metadata as image_metadata

        name = self.task_names[task_index]
        tensor = tf.stack([tf.as_string(width), tf.as_string(height), tf.constant(gif)])
        with self._lock, self._writer.as_default():
            tf.summary.write(f"{policy}/{name}/clip", tensor, step=env_steps,
                             metadata=image_metadata.create_summary_metadata(f"{name} ({policy})", ""))

    def task_scalars(self, task_index: int, env_steps: int, values: dict[str, float], prefix: str = "task"):
        if self._resume_task_steps is not None and env_steps <= self._resume_task_steps[task_index]:
            return  # this step's scalars were written before the restored checkpoint
        name = self.task_names[task_index]
        with self._lock, self._writer.as_default():
            for key, value in values.items():
                tf.summary.scalar(f"{prefix}/{name}/{key}", value, step=env_steps)
            _mirror(env_steps, {f"{prefix}/{name}/{key}": value for key, value in values.items()})

    def run_scalars(self, env_steps: int, values: dict[str, float]):
        if env_steps <= self._resume_total_steps:
            return  # this step's scalars were written before the restored checkpoint
        with self._lock, self._writer.as_default():
            for key, value in values.items():
                tf.summary.scalar(f"train/{key}", value, step=env_steps)
            _mirror(env_steps, {f"train/{key}": value for key, value in values.items()})

    def mean_recent_returns(self) -> list[float]:
        with self._lock:
            return [float(np.mean(r)) if r else float("nan") for r in self._recent_returns]

    def progress(self, total_steps: int, task_steps, force: bool = False) -> str | None:
        """Logs a progress line if ``log_every_secs`` passed; returns it."""
        now = time.time()
        if not force and now - self._last_print < self.log_every_secs:
            return None
        if self._start_steps is None:  # the first call only starts the clock
            self._start_steps, self._start_time = total_steps, now
        window_steps, window_secs = total_steps - self._start_steps, max(now - self._start_time, 1e-6)
        self._start_steps, self._start_time = total_steps, now
        self._last_print = now
        steps_per_sec = window_steps / window_secs
        fps = steps_per_sec * self.frames_per_step
        eta = (self.total_env_steps - total_steps) / steps_per_sec if steps_per_sec > 0 else float("inf")
        returns = " ".join(f"{n}={r:.2f}" for n, r in zip(self.task_names, self.mean_recent_returns(),
                                                              strict=True))
        line = (f"steps {total_steps:,}/{self.total_env_steps:,} ({100 * total_steps / self.total_env_steps:.0f}%)"
                f" | {fps:,.0f} frames/s | return {returns} | ETA {_format_duration(eta)}")
        logging.info(line)
        self.run_scalars(total_steps, {"env_frames_per_second": fps})
        return line

    def flush(self) -> int:
        """Flushes everything; returns the metrics file's size (its resume position)."""
        with self._lock:
            self._writer.flush()
            self._metrics.flush()
            os.fsync(self._metrics.fileno())
            return self._metrics.tell()

    def close(self):
        self.flush()
        with self._lock:
            self._writer.close()
            self._metrics.close()
