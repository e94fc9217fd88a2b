"""Experiment tracking: a run's scalars, settings and final figures mirrored to Weights & Biases or MLflow.

``python -m distral_tf.run --track=wandb`` (or ``mlflow``) sends, besides what goes to
TensorBoard, every scalar the run's monitor writes (the same tags and steps:
``task/<task>/episode_return`` at that task's agent steps, ``train/...`` at the run's),
every setting of the run (``config.json``'s), and at the end the figures of its final
status under ``final/...`` (per task: ``final/<figure>/<task>``), with the run's state.

* W&B: project ``--track_project``, group ``--track_group``, the run named after its
  directory, W&B's files in ``<logdir>/wandb``; ``agent_steps`` is every chart's x axis.
  ``WANDB_MODE=offline`` records without an account (``wandb sync`` uploads later).
* MLflow: the store of ``MLFLOW_TRACKING_URI`` (MLflow's default otherwise), the experiment
  ``--track_group`` (a sweep's name) or else ``--track_project``, the run named after its
  directory and tagged with its group.

A resumed run continues the same tracked run (its id is kept in ``<logdir>/tracking.json``).
Scalars are buffered and handed to the tracker by a thread of their own every few seconds,
so that no training thread waits for it. The trackers are optional extras, imported only
when asked for; :func:`check_available` tells early that one is missing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import shutil
import threading
import time

from absl import logging

from distral_tf.training import run_files

TRACKERS = ("wandb", "mlflow")
TRACKING_FILE = "tracking.json"
FINAL_PREFIX = "final"


class TrackingUnavailableError(RuntimeError):
    """The tracker asked for is not installed, or cannot start."""


def check_available(kind: str):
    """Raises :class:`TrackingUnavailableError` with the install command if ``kind``'s package is missing."""
    if kind in ("", "none"):
        return
    if kind not in TRACKERS:
        raise TrackingUnavailableError(f"--track={kind} is not a tracker; choose from none, {', '.join(TRACKERS)}.")
    try:
        found = importlib.util.find_spec(kind) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise TrackingUnavailableError(f"--track={kind} needs the {kind} package, which is not installed: "
                                       f"pip install 'distral_tf[{kind}]'.")


def final_figures(summary: dict, task_names) -> dict[str, float]:
    """The numbers of a run's final status as ``final/<key>`` (per-task lists: ``final/<key>/<task>``)."""
    figures = {}
    for key, value in summary.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            figures[f"{FINAL_PREFIX}/{key}"] = float(value)
        elif isinstance(value, list | tuple) and len(value) == len(task_names) and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            figures.update({f"{FINAL_PREFIX}/{key}/{task}": float(v)
                            for task, v in zip(task_names, value, strict=True)})
    return figures


class Tracker:
    """Buffers scalars and hands them to the tracker (:meth:`_send`) from a thread, every ``flush_secs``."""

    def __init__(self, flush_secs: float = 5.0):
        self._lock = threading.Lock()
        self._pending: list[tuple[int, dict[str, float]]] = []
        self._closed = threading.Event()
        self._flush_secs = flush_secs
        self._thread = threading.Thread(target=self._loop, name="tracking", daemon=True)
        self._thread.start()

    def log_scalars(self, step: int, values: dict):
        """Queues ``values`` (tag -> number) at ``step``; non-finite values are left out."""
        finite = {tag: float(v) for tag, v in values.items() if math.isfinite(float(v))}
        if finite:
            with self._lock:
                self._pending.append((int(step), finite))

    def flush(self):
        with self._lock:
            batch, self._pending = self._pending, []
        if batch:
            self._send(batch)

    def _loop(self):
        while not self._closed.wait(self._flush_secs):
            try:
                self.flush()
            except Exception as e:  # a tracker's failure must not stop the run
                logging.warning("The experiment tracker did not take the latest scalars: %s: %s",
                                type(e).__name__, e)

    def close(self, state: str, figures: dict[str, float] | None = None, step: int = 0):
        """Sends what is buffered and ``figures`` (the final ones, at ``step``) and ends the tracked run."""
        self._closed.set()
        self._thread.join()
        self.flush()
        self._finish(state, figures or {}, step)

    def log_params(self, params: dict):
        raise NotImplementedError

    def _send(self, batch: list[tuple[int, dict[str, float]]]):
        raise NotImplementedError

    def _finish(self, state: str, figures: dict[str, float], step: int):
        raise NotImplementedError


class WandbTracker(Tracker):
    """Weights & Biases (see the module docstring)."""

    def __init__(self, logdir: str, name: str, project: str, group: str, run_id: str | None = None, **kwargs):
        import wandb

        self.run = wandb.init(project=project, group=group or None, name=name, dir=logdir, id=run_id,
                              resume="allow" if run_id else None, job_type="train")
        self.run.define_metric("agent_steps")
        self.run.define_metric("*", step_metric="agent_steps")
        self.id = self.run.id
        super().__init__(**kwargs)

    def log_params(self, params: dict):
        self.run.config.update(params, allow_val_change=True)

    def _send(self, batch):
        for step, values in batch:
            self.run.log({**values, "agent_steps": step})

    def _finish(self, state, figures, step):
        self.run.summary.update({**figures, "state": state})
        self.run.finish(exit_code=0 if state == "finished" else 1)


class MlflowTracker(Tracker):
    """MLflow (see the module docstring)."""

    _STATES = {"finished": "FINISHED", "interrupted": "KILLED"}

    def __init__(self, logdir: str, name: str, project: str, group: str, run_id: str | None = None, **kwargs):
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient()
        self._new = True
        if run_id is not None:
            try:
                self.client.update_run(run_id, status="RUNNING")
                self._new = False
            except MlflowException:  # not in this store (MLFLOW_TRACKING_URI changed): a new run
                pass
        if self._new:
            experiment_name = group or project
            experiment = self.client.get_experiment_by_name(experiment_name)
            experiment_id = (experiment.experiment_id if experiment is not None
                             else self.client.create_experiment(experiment_name))
            tags = {"distral_tf.logdir": os.path.abspath(logdir)}
            if group:
                tags["distral_tf.group"] = group
            run_id = self.client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
        self.id = run_id
        super().__init__(**kwargs)

    def log_params(self, params: dict):
        if not self._new:  # MLflow keeps a run's parameters as first logged
            return
        from mlflow.entities import Param

        items = [Param(str(k), str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.id, params=items[i:i + 100])

    def _log_metrics(self, rows: list[tuple[int, str, float]]):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(tag, value, now, step) for step, tag, value in rows]
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(self.id, metrics=metrics[i:i + 1000])

    def _send(self, batch):
        self._log_metrics([(step, tag, value) for step, values in batch for tag, value in values.items()])

    def _finish(self, state, figures, step):
        self._log_metrics([(step, tag, value) for tag, value in figures.items()])
        self.client.set_tag(self.id, "distral_tf.state", state)
        self.client.set_terminated(self.id, status=self._STATES.get(state, "FAILED"))


_CLASSES = {"wandb": WandbTracker, "mlflow": MlflowTracker}
_HINTS = {"wandb": " (WANDB_MODE=offline records without an account)",
          "mlflow": " (MLFLOW_TRACKING_URI says where runs go, e.g. sqlite:///mlflow.db)"}


def _saved_ids(logdir: str) -> dict:
    try:
        return run_files.read_json_object(os.path.join(logdir, TRACKING_FILE))
    except run_files.RunDirError:
        return {}


def start(config, flush_secs: float = 5.0) -> Tracker | None:
    """The tracker of ``config.track`` for the run in ``config.logdir`` (None for ``none``), with the run's settings.

    A run directory that was tracked before continues its tracked run. A tracker that is
    missing or cannot start (W&B without an account and not offline, say) raises
    :class:`TrackingUnavailableError` with one line saying why.
    """
    kind = config.track
    if kind in ("", "none"):
        return None
    check_available(kind)
    logdir = config.logdir
    created = not os.path.exists(logdir)
    os.makedirs(logdir, exist_ok=True)
    saved = _saved_ids(logdir)
    name = os.path.basename(os.path.normpath(os.path.abspath(logdir)))
    try:
        tracker = _CLASSES[kind](logdir, name, config.track_project, config.track_group, run_id=saved.get(kind),
                                 flush_secs=flush_secs)
        tracker.log_params(config.to_json())
    except Exception as e:  # the trackers' own errors (no account, an unreachable server) have no common type
        if created:
            shutil.rmtree(logdir, ignore_errors=True)
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise TrackingUnavailableError(f"--track={kind} could not start: {first_line}{_HINTS[kind]}") from None
    run_files.write_json_atomically(os.path.join(logdir, TRACKING_FILE), {**saved, kind: tracker.id})
    return tracker


@contextlib.contextmanager
def tracked(tracker: Tracker | None, task_names):
    """While in the block, the scalars of this process's monitors go to ``tracker`` as well (if not None).

    Yields a function ``finish(summary)`` to call with the run's final status (``Trainer.run()``'s
    result): at the end of the block its figures are sent and the tracked run ends in its
    state. Leaving the block without it ends the tracked run as failed.
    """
    if tracker is None:
        yield lambda summary: None
        return
    from distral_tf.training import monitoring

    outcome = {}
    try:
        with monitoring.mirrored_to(tracker):
            yield outcome.update
    finally:
        state = str(outcome.get("state", "failed"))
        try:
            tracker.close(state, final_figures(outcome, task_names), int(outcome.get("env_steps", 0)))
        except Exception as e:  # the run's own result matters more
            logging.warning("Could not end the tracked run: %s: %s", type(e).__name__, e)
