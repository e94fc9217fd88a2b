"""Finding and loading run directories.

A run directory holds ``config.json``, ``metrics.jsonl`` and ``status.json``
beside its TensorBoard event files. Runs without ``metrics.jsonl`` are rebuilt
from the event files' ``task/<task>/episode_return`` and
``distilled/<task>/episode_return`` scalars; their hyperparameters come from
``config.json``, else from the run's HParams summary, else from a sweep-style run
id (``kl_2col-lr5e-4-ent1e-2-s0``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections import defaultdict

import numpy as np

from distral_tf.training import run_files
from distral_tf.training.run_directory import saved_settings

POLICIES = run_files.POLICIES


@dataclasses.dataclass
class Episodes:
    """Episodes of one policy on one task, sorted by environment steps."""

    steps: np.ndarray
    returns: np.ndarray


@dataclasses.dataclass
class Run:
    """One training run: its identity, hyperparameters and episodes.

    Attributes:
      run_id: path of the run directory relative to the directory searched.
      path: the run directory.
      algo, suite, learning_rate, entropy_cost, seed: the swept values (None if unknown).
      flags: every flag value the run recorded.
      task_names: the suite's tasks in task-index order.
      state: "running", "finished", "interrupted", "failed", "crashed" (its status says running but its
        process is gone) or "unknown" (no status.json).
      source: "metrics.jsonl" or "events".
      episodes: ``(policy, task) -> Episodes``, policy being "task" or "distilled".
      git_commit: the commit of the code that made the run (``config.json``), with "+changes" if its
        checkout had uncommitted changes; None if not recorded.
      final_evaluation: ``(policy, task) -> returns`` of the episodes of the run's final evaluation
        (metrics rows marked ``"final": true``, played at its last step); empty for runs without one.
        These episodes are also in ``episodes``.
    """

    run_id: str
    path: str
    algo: str
    suite: str
    learning_rate: float | None
    entropy_cost: float | None
    seed: int | None
    flags: dict
    task_names: list[str]
    state: str
    source: str
    episodes: dict[tuple[str, str], Episodes]
    git_commit: str | None = None
    final_evaluation: dict[tuple[str, str], np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def hparams(self) -> tuple[float | None, float | None]:
        """The hyperparameter setting the report selects over: (learning rate, entropy cost)."""
        return (self.learning_rate, self.entropy_cost)

    def has(self, policy: str) -> bool:
        return any(p == policy and len(e.steps) for (p, _), e in self.episodes.items())


def find_run_dirs(root: str) -> list[str]:
    """Run directories under ``root`` (``root`` itself if it is one), sorted.

    A directory is a run if it holds ``config.json`` or ``metrics.jsonl``, or,
    failing that, event files of its own; directories below a run are part of it.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"--runs directory {root!r} does not exist.")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        if (run_files.CONFIG_FILE in filenames or run_files.METRICS_FILE in filenames
                or any(run_files.is_scalar_event_file(f) for f in filenames)):
            found.append(dirpath)
            dirnames[:] = []
        else:
            dirnames.sort()
    return sorted(found)


_unreadable: list[str] = []  # files of the runs being loaded that could not be read


def _read_json(path: str) -> dict:
    """The JSON object in ``path``; ``{}`` if there is none, with a warning naming an unreadable file."""
    if not os.path.exists(path):
        return {}
    try:
        return run_files.read_json_object(path)
    except run_files.RunDirError as e:
        logging.warning("skipping %s", e)
        _unreadable.append(path)
        return {}


def _settings(config: dict, path: str) -> dict:
    """The run's settings in its ``config.json`` (:func:`~distral_tf.training.run_directory.saved_settings`); ``{}``
    if there are none, with a warning naming a file whose settings are not an object."""
    try:
        return saved_settings(config, path) or {}
    except run_files.RunDirError as e:
        logging.warning("skipping %s", e)
        return {}


def _read_metrics(path: str) -> list[dict]:
    rows = []
    try:
        with open(path, encoding="utf-8", errors="strict") as f:
            lines = f.readlines()
    except (OSError, UnicodeDecodeError) as e:
        logging.warning("skipping %s: cannot read it (%s)", path, getattr(e, "strerror", None) or e)
        _unreadable.append(path)
        return rows
    for line_no, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except ValueError:  # e.g. a line cut short by a crash
            logging.warning("%s:%d: skipping unreadable line", path, line_no)
            continue
        if isinstance(row, dict) and run_files.METRICS_ROW_KEYS <= row.keys():
            rows.append(row)
    return rows


def _event_files(run_dir: str) -> list[str]:
    files = []
    for dirpath, dirnames, filenames in os.walk(run_dir):
        dirnames.sort()
        files += [os.path.join(dirpath, f) for f in sorted(filenames) if run_files.is_scalar_event_file(f)]
    return files


def _hparams_files(run_dir: str) -> list[str]:
    return [os.path.join(run_dir, f) for f in sorted(os.listdir(run_dir))
            if run_files.is_event_file(f) and f.endswith(run_files.HPARAMS_SUFFIX)]


def _iter_events(path: str):
    from tensorboard.backend.event_processing import event_file_loader

    try:
        yield from event_file_loader.EventFileLoader(path).Load()
    except Exception as e:  # a truncated record at the end of a file being written
        logging.warning("%s: stopped reading events: %s", path, e)


def _scalar_value(value) -> float | None:
    from tensorboard.util import tensor_util

    if value.HasField("tensor"):
        return float(np.asarray(tensor_util.make_ndarray(value.tensor)).reshape(-1)[0])
    if value.HasField("simple_value"):
        return float(value.simple_value)
    return None


def iter_scalars(run_dir: str, keep=None):
    """``(tag, step, wall_time, value)`` of every scalar in the event files of ``run_dir`` (and its
    subdirectories), in file order; ``keep(tag)``, if given, selects the tags read."""
    for path in _event_files(run_dir):
        for event in _iter_events(path):
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                if keep is not None and not keep(value.tag):
                    continue
                scalar = _scalar_value(value)
                if scalar is not None:
                    yield value.tag, event.step, event.wall_time, scalar


def _rows_from_events(run_dir: str) -> list[dict]:
    """Rebuilds metrics rows from ``<policy>/<task>/episode_return`` scalars (one row per value)."""
    rows, lengths = [], {}
    for tag, step, wall_time, scalar in iter_scalars(run_dir, keep=run_files.parse_episode_tag):
        policy, task, metric = run_files.parse_episode_tag(tag)
        if metric == run_files.EPISODE_LENGTH:
            lengths[(policy, task, step)] = scalar
        else:
            rows.append({"policy": policy, "task": task, "env_steps": step, "return": scalar,
                         "wall_time": wall_time})
    for row in rows:
        row["length"] = lengths.get((row["policy"], row["task"], row["env_steps"]))
    return rows


def _hparams_from_events(run_dir: str) -> dict:
    from tensorboard.plugins.hparams import metadata

    hparams = {}
    for path in _hparams_files(run_dir):
        for event in _iter_events(path):
            for value in event.summary.value if event.HasField("summary") else ():
                if value.tag != metadata.SESSION_START_INFO_TAG:
                    continue
                info = metadata.parse_session_start_info_plugin_data(value.metadata.plugin_data.content)
                for name, v in info.hparams.items():
                    kind = v.WhichOneof("kind")
                    hparams[name] = getattr(v, kind) if kind else None
    return hparams


def _float(value) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _int(value) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def load_run(run_dir: str, root: str) -> Run:
    """Loads one run directory (see the module docstring for the sources used)."""
    config = _read_json(os.path.join(run_dir, run_files.CONFIG_FILE))
    status = _read_json(os.path.join(run_dir, run_files.STATUS_FILE))
    flags = dict(_settings(config, os.path.join(run_dir, run_files.CONFIG_FILE)))
    run_id = os.path.relpath(run_dir, root)
    if run_id == ".":
        run_id = os.path.basename(os.path.abspath(run_dir))
    metrics_path = os.path.join(run_dir, run_files.METRICS_FILE)
    if os.path.exists(metrics_path):
        rows, source = _read_metrics(metrics_path), run_files.METRICS_FILE
    else:
        rows, source = _rows_from_events(run_dir), "events"
        if not flags:
            flags = _hparams_from_events(run_dir)
    if not flags:
        flags = run_files.parse_run_id(os.path.basename(run_dir)) or {}

    task_names = [str(t) for t in config.get("task_names") or []]
    for row in rows:
        if str(row["task"]) not in task_names:
            task_names.append(str(row["task"]))

    grouped: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    final: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in rows:
        policy, ret, step = row["policy"], _float(row["return"]), _float(row["env_steps"])
        if policy in POLICIES and ret is not None and step is not None and np.isfinite(ret):
            grouped[(policy, str(row["task"]))].append((step, ret))
            if row.get("final") is True:
                final[(policy, str(row["task"]))].append(ret)
    episodes = {}
    for key, pairs in grouped.items():
        pairs.sort(key=lambda p: p[0])
        arr = np.asarray(pairs, dtype=np.float64)
        episodes[key] = Episodes(steps=arr[:, 0], returns=arr[:, 1])

    return Run(
        run_id=run_id,
        path=run_dir,
        algo=str(config.get("algo") or flags.get("algo") or "unknown"),
        suite=str(config.get("suite") or flags.get("suite") or "unknown"),
        learning_rate=_float(flags.get("learning_rate")),
        entropy_cost=_float(flags.get("entropy_cost")),
        seed=_int(flags.get("seed")),
        flags=flags,
        task_names=task_names,
        state=run_files.effective_state(status) if status else "unknown",
        source=source,
        episodes=episodes,
        git_commit=(f"{config['git_commit']}{'+changes' if config.get('git_dirty') else ''}"
                    if isinstance(config.get("git_commit"), str) else None),
        final_evaluation={key: np.asarray(rets) for key, rets in final.items()},
    )


def load_runs(root: str) -> list[Run]:
    """Loads every run under ``root``.

    Raises:
      FileNotFoundError: ``root`` does not exist.
      ValueError: ``root`` holds no run directory, or no episode could be read and some of its
        files were unreadable (they are named).
    """
    dirs = find_run_dirs(root)
    if not dirs:
        raise ValueError(
            f"No runs found under {root!r}: expected directories with config.json, "
            "metrics.jsonl or TensorBoard event files.")
    del _unreadable[:]
    runs = [load_run(d, root) for d in dirs]
    if _unreadable and not any(run.episodes for run in runs):
        raise ValueError(f"No episodes could be read under {root!r}; unreadable: {', '.join(_unreadable)}.")
    return runs
