"""One run's directory as its runs use it: the lock, ``config.json``, ``status.json`` and the attempts.

:class:`RunDirectory` is the only writer of ``config.json`` and ``status.json``, and
:func:`saved_settings` the only reader of the settings in ``config.json`` (the trainer,
:mod:`distral_tf.training.preflight`, :mod:`distral_tf.training.trained_run` for evaluation, export and
transfer, and the report all go through it). File names and low-level helpers are
:mod:`distral_tf.training.run_files`'s. Plain file handling: nothing here imports TensorFlow.

``config.json`` holds the run's settings (every :class:`~distral_tf.training.config.TrainConfig`
field) under ``"config"``, with the suite, its task names, the spaces, the algorithm's
coefficients, the package version and the code's provenance. Run directories written
before held the same settings twice, under ``"config"`` and ``"flags"``; they are read
as before (``"flags"`` alone, as some hand-written or older directories have, too).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from absl import logging

import distral_tf
from distral_tf.training import provenance, run_files
from distral_tf.training.run_files import CHECKPOINT_DIR, CONFIG_FILE, STATUS_FILE, RunDirError, RunLock

# The key of the settings in ``config.json``, and the key older run directories also (or only) have.
SETTINGS_KEY = "config"
LEGACY_SETTINGS_KEY = "flags"


class ConfigMismatchError(RunDirError):
    """The run directory holds a run whose model-defining settings differ from the ones given."""


def saved_settings(meta: dict, path: str = CONFIG_FILE) -> dict | None:
    """The run's settings in ``meta`` (a ``config.json`` object): ``"config"``, else the ``"flags"`` of older
    run directories; None if it has neither. ``RunDirError`` naming ``path`` if the entry is not an object."""
    for key in (SETTINGS_KEY, LEGACY_SETTINGS_KEY):
        if key in meta:
            value = meta[key]
            if not isinstance(value, dict):
                raise RunDirError(f"{path}: its \"{key}\" entry is not an object")
            return value
    return None


def config_record(config, suite, observation_shape: Sequence[int], num_actions: int,
                  coefficients: dict) -> dict:
    """What ``config.json`` holds for a run of ``config`` on ``suite`` (see the module's docstring)."""
    return {
        "version": distral_tf.__version__,
        SETTINGS_KEY: config.to_json(),
        "algo": config.algo,
        "suite": suite.name,
        "task_names": list(suite.task_names),
        "frames_per_step": suite.frames_per_step,
        "reward_scale": suite.reward_scale,
        "observation_shape": [int(d) for d in observation_shape],
        "num_actions": int(num_actions),
        "coefficients": coefficients,
        **provenance.git_provenance(),
    }


def budget_per_task(config, num_tasks: int) -> int:
    """Agent steps per task of a run of ``config``: its budget rounded up to whole rollouts per task."""
    from distral_tf.training.progress import steps_per_task

    return steps_per_task(config.total_env_steps, num_tasks, config.unroll_length)


class RunDirectory:
    """The run directory ``logdir``: its lock, ``config.json``, ``status.json`` and its attempts."""

    def __init__(self, logdir: str):
        self.logdir = logdir
        self.config_path = os.path.join(logdir, CONFIG_FILE)
        self.status_path = os.path.join(logdir, STATUS_FILE)
        self.checkpoint_dir = os.path.join(logdir, CHECKPOINT_DIR)

    # -- the lock -------------------------------------------------------------------------------- #

    def make_writable(self):
        """Creates the directory if needed; ``RunDirError`` if it is not a writable directory."""
        try:
            os.makedirs(self.logdir, exist_ok=True)
            probe = os.path.join(self.logdir, f".write_test.{os.getpid()}")
            with open(probe, "w") as f:
                f.write("ok")
            os.remove(probe)
        except OSError as e:
            raise RunDirError(f"--logdir={self.logdir} is not a writable directory ({e.strerror}).") from None

    def lock(self) -> RunLock:
        """Locks the directory against other runs (``RunDirError`` naming the holder if another run has it)."""
        return RunLock(self.logdir).acquire()

    # -- config.json ----------------------------------------------------------------------------- #

    def read_config(self) -> dict | None:
        """The whole ``config.json`` (None if there is none); ``RunDirError`` naming it if unreadable."""
        if not os.path.exists(self.config_path):
            return None
        return run_files.read_json_object(self.config_path)

    def settings(self) -> dict | None:
        """The saved settings (:func:`saved_settings`), None without ``config.json`` or settings in it."""
        meta = self.read_config()
        return None if meta is None else saved_settings(meta, self.config_path)

    def write_config(self, record: dict):
        """Writes ``config.json`` (a :func:`config_record`)."""
        os.makedirs(self.logdir, exist_ok=True)
        run_files.write_json_atomically(self.config_path, record)

    def check_saved_config(self, config):
        """``ConfigMismatchError`` if the directory holds a run whose model-defining settings differ from
        ``config``'s (unless ``config.force``); ``RunDirError`` if ``config.json`` cannot be read."""
        from distral_tf import algorithms
        from distral_tf.model.algorithm_spec import Architecture
        from distral_tf.training.config import LEGACY_VALUES
        from distral_tf.training.observation_statistics import resolve

        saved = self.settings()
        if saved is None:
            return
        # The two-column scaling only defines the model of the two-column algorithms.
        two_column = algorithms.get(config.algo).architecture is Architecture.TWO_COLUMN
        ignore = ("observation_normalization",) + (() if two_column else ("two_column_scaling",))
        diffs = config.model_differences(saved, ignore=ignore)
        # "suite" and the suite's own choice are the same model.
        saved_choice = saved.get("observation_normalization", LEGACY_VALUES["observation_normalization"])
        if resolve(saved_choice, config.suite) != resolve(config.observation_normalization, config.suite):
            diffs.append(f"observation_normalization: saved {saved_choice!r}, now {config.observation_normalization!r}")
        if diffs and not config.force:
            raise ConfigMismatchError(
                f"{self.logdir} holds a run with a different configuration ({'; '.join(diffs)}); "
                "use another --logdir, or --force to resume it with the new values.")

    # -- status.json ----------------------------------------------------------------------------- #

    def read_status(self) -> dict | None:
        """The recorded status, or None if there is none or it cannot be read."""
        if not os.path.exists(self.status_path):
            return None
        try:
            return run_files.read_json_object(self.status_path)
        except RunDirError:
            return None

    def write_status(self, state: str, task_steps: Sequence[int], budget_per_task: int, **extra):
        """Writes ``status.json``: ``state``, the agent steps (in all and per task), the budget per task,
        the time (also as the heartbeat), this process and host, and ``extra``."""
        now = time.time()
        run_files.write_json_atomically(self.status_path, {
            "state": state,
            "env_steps": int(sum(int(s) for s in task_steps)),
            "env_steps_per_task": [int(s) for s in task_steps],
            "budget_per_task": budget_per_task,
            "time": now,
            "heartbeat": now,
            "pid": os.getpid(),
            "host": run_files.hostname(),
            **extra,
        })

    def heartbeat(self, task_steps: Sequence[int], budget_per_task: int):
        """Rewrites ``status.json`` ("running", current steps); a failed write is only logged."""
        try:
            self.write_status("running", task_steps, budget_per_task)
        except OSError as e:
            logging.warning("%s", e)

    # -- attempts -------------------------------------------------------------------------------- #

    def finished_status(self, num_tasks: int, budget_per_task: int) -> dict | None:
        """The status of an earlier attempt that already spent this budget, else None."""
        status = self.read_status()
        if status is None:
            return None
        steps = status.get("env_steps_per_task")
        if (status.get("state") == "finished" and isinstance(steps, list) and len(steps) == num_tasks
                and status.get("budget_per_task") == budget_per_task
                and all(isinstance(s, int) and s >= budget_per_task for s in steps)):
            return status
        return None

    def set_aside_attempt_without_checkpoint(self) -> str | None:
        """An earlier attempt that left data but no checkpoint: its files go to ``previous_attempts/<n>/``
        and the run starts clean; returns where they went (None if there was nothing to move)."""
        if run_files.checkpoint_numbers(self.checkpoint_dir):
            return None
        moved = run_files.move_attempt_aside(self.logdir)
        if moved:
            logging.warning("An earlier attempt in %s stopped before its first checkpoint; moved its files to %s "
                            "and starting from step 0.", self.logdir, moved)
        return moved

    def has_final_evaluation(self) -> bool:
        """Whether ``metrics.jsonl`` holds episodes of a final evaluation of pi_0."""
        return run_files.has_final_evaluation(self.logdir)
