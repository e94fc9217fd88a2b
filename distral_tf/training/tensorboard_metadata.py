"""TensorBoard metadata for a run: the custom-scalars layout, and the HParams summary with the same settings as text.

The trainer calls :func:`write_custom_scalars_layout` and :func:`write_hparams`
once at run start. Each writes a small event file of its own into the run's
(local) log directory (TensorBoard merges every event file of a directory into
one run), so they need no summary writer, leave ``tf.summary``'s default writer
alone and do not import TensorFlow.
Both are idempotent: on a resumed run they find their earlier file and write
nothing.

Per-task scalars are expected under ``<policy>/<task name>/<metric>``, e.g.
``task/maze_0/episode_return`` and ``distilled/maze_0/episode_return``.
"""

from __future__ import annotations

import glob
import itertools
import math
import os
import re
import socket
import struct
import time
from collections.abc import Iterable, Mapping, Sequence

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as custom_scalar_metadata

# ``tensorboard.plugins.hparams.api`` re-exports these from ``summary_v2``; importing
# ``summary_v2`` directly builds the same protos without importing TensorFlow.
from tensorboard.plugins.hparams import summary_v2 as hp
from tensorboard.plugins.text import metadata as text_metadata
from tensorboard.summary.writer.record_writer import RecordWriter
from tensorboard.util import tensor_util

from distral_tf.model.algorithm_spec import Algorithm, Coefficients
from distral_tf.training import run_files as rundir
from distral_tf.training.progress import HEADLINE_SETTINGS

# The suffixes of the event files written here (the report skips them when it looks for a
# run's scalars) and the tags are the run-directory format's, named in ``rundir``.
from distral_tf.training.run_files import HPARAMS_CONFIG_SUFFIX, HPARAMS_SUFFIX, LAYOUT_SUFFIX
from distral_tf.training.run_files import per_task_tag as per_task_tag

DEFAULT_POLICIES = rundir.POLICIES
HYPERPARAMETERS_TAG = "hyperparameters"
# The per-task diagnostics of an update logged under ``task/<t>/`` where the update computes them.
UPDATE_DIAGNOSTICS = ("kl_task_distilled", "entropy_task", "entropy_distilled", "grad_norm")


def _alternation(names: Sequence[str]) -> str:
    return "(?:" + "|".join(re.escape(n) for n in names) + ")" if names else ".*"


def logged_metrics(algorithm: Algorithm, coeffs: Coefficients, evaluates_distilled: bool) -> dict[str, tuple[str, ...]]:
    """Tag prefix -> the per-task metrics a run of ``algorithm`` writes under it (the charts worth showing).

    ``task/<t>/...``: episodes and the task policy's entropy, plus pi_0's entropy and
    KL(pi_i || pi_0) where pi_0's logits are computed; ``distilled/<t>/...``: pi_0's
    evaluation episodes, if it is evaluated; ``loss/<t>/...``: the loss terms the algorithm has
    (:meth:`~distral_tf.model.algorithm_spec.Algorithm.loss_term_names`).
    """
    task = ["episode_return", "episode_length", "entropy_task"]
    if algorithm.uses_distilled:  # pi_0 enters the loss (KL term, or eq. 8's two-column logits)
        task += ["entropy_distilled", "kl_task_distilled"]
    metrics = {"task": tuple(task)}
    if evaluates_distilled:
        metrics["distilled"] = ("episode_return", "episode_length")
    metrics["loss"] = algorithm.loss_term_names(coeffs)
    return metrics


def custom_scalars_layout(
    task_names: Sequence[str],
    tags: Sequence[str] | Mapping[str, Sequence[str]],
    policies: Sequence[str] = DEFAULT_POLICIES,
) -> layout_pb2.Layout:
    """Builds the layout: one chart per (prefix, metric) with a line per task, and one
    chart per task comparing the task and distilled policies on each metric both write.

    Args:
      task_names: the suite's task names.
      tags: tag prefix -> metric names written under it (e.g. ``{"task": ["episode_return",
        "kl_task_distilled"], "loss": ["policy_gradient"]}``, see :func:`logged_metrics`);
        or metric names written under each of ``policies``.
      policies: the prefixes of a sequence ``tags``.

    Only charts of written tags are made, so none stays empty.
    """
    by_prefix = dict(tags) if isinstance(tags, Mapping) else {p: tuple(tags) for p in policies}
    tasks_re = _alternation(task_names)
    by_metric = layout_pb2.Category(title="All tasks, one chart per metric")
    order = list(dict.fromkeys(m for metrics in by_prefix.values() for m in metrics))
    for metric in order:
        for prefix, metrics in by_prefix.items():
            if metric not in metrics:
                continue
            regex = f"^{re.escape(prefix)}/{tasks_re}/{re.escape(metric)}$"
            by_metric.chart.add(
                title=f"{metric} ({rundir.policy_title(prefix)})",
                multiline=layout_pb2.MultilineChartContent(tag=[regex]),
            )
    categories = [by_metric]
    compared = [p for p in DEFAULT_POLICIES if p in by_prefix]
    shared = [m for m in order if len(compared) > 1 and all(m in by_prefix[p] for p in compared)]
    if shared:
        policies_re = _alternation(compared)
        by_task = layout_pb2.Category(title="Task vs distilled policy, one chart per task", closed=True)
        for metric in shared:
            for task in task_names:
                regex = f"^{policies_re}/{re.escape(task)}/{re.escape(metric)}$"
                by_task.chart.add(
                    title=f"{task}: {metric}",
                    multiline=layout_pb2.MultilineChartContent(tag=[regex]),
                )
        categories.append(by_task)
    return layout_pb2.Layout(category=categories)


def _existing(logdir: str, suffix: str) -> str | None:
    found = sorted(glob.glob(os.path.join(glob.escape(logdir), f"{rundir.EVENT_FILE_PREFIX}.*{suffix}")))
    return found[-1] if found else None


_file_counter = itertools.count()


def _write_summaries(logdir: str, suffix: str, summaries: Iterable[summary_pb2.Summary]) -> str:
    """Writes ``summaries`` at step 0 into a new event file of ``logdir``; returns its path.

    The file is written under a temporary name and renamed when complete, so a
    reader never sees half of it.
    """
    os.makedirs(logdir, exist_ok=True)
    name = (f"{rundir.EVENT_FILE_PREFIX}.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}."
            f"{next(_file_counter)}{suffix}")
    path = os.path.join(logdir, name)
    tmp = os.path.join(logdir, f".{name.replace('tfevents', 'partial')}")
    with open(tmp, "wb") as f:
        writer = RecordWriter(f)
        writer.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
        for summary in summaries:
            writer.write(event_pb2.Event(wall_time=time.time(), step=0, summary=summary).SerializeToString())
    os.replace(tmp, path)
    return path


def _records(path: str) -> Iterable[bytes]:
    """The records of a TFRecord file (length, its CRC, data, the data's CRC; CRCs not checked)."""
    with open(path, "rb") as f:
        while len(header := f.read(12)) == 12:
            (length,) = struct.unpack("<Q", header[:8])
            data = f.read(length)
            if len(data) < length:
                return
            f.read(4)
            yield data


def _read_layout(path: str) -> layout_pb2.Layout | None:
    """The layout held by the event file ``path``; None if it holds none or cannot be read."""
    try:
        for record in _records(path):
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                if value.tag == custom_scalar_metadata.CONFIG_SUMMARY_TAG:
                    return layout_pb2.Layout.FromString(tensor_util.make_ndarray(value.tensor).item())
    except Exception:  # a damaged file is replaced like an outdated one
        return None
    return None


def write_custom_scalars_layout(
    logdir: str,
    task_names: Sequence[str],
    tags: Sequence[str] | Mapping[str, Sequence[str]] = ("episode_return",),
    policies: Sequence[str] = DEFAULT_POLICIES,
) -> str:
    """Writes the custom-scalars layout of :func:`custom_scalars_layout` into ``logdir``.

    Returns the path of the event file holding it: an existing one if the same layout
    was written before; a layout that differs (e.g. one written by an older version,
    with charts this run never fills) is replaced.
    """
    layout = custom_scalars_layout(task_names, tags, policies)
    existing = _existing(logdir, LAYOUT_SUFFIX)
    if existing:
        if _read_layout(existing) == layout:
            return existing
        os.remove(existing)
    summary = summary_pb2.Summary()
    summary.value.add(
        tag=custom_scalar_metadata.CONFIG_SUMMARY_TAG,
        metadata=custom_scalar_metadata.create_summary_metadata(),
        tensor=tensor_util.make_tensor_proto(layout.SerializeToString()),
    )
    return _write_summaries(logdir, LAYOUT_SUFFIX, [summary])


def _hparam_value(value):
    """Coerces a flag value to a type the HParams plugin accepts (bool, int, float, str)."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if hasattr(value, "item"):  # numpy scalars
        return _hparam_value(value.item())
    if value is None:
        return "None"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def normalize_hparams(hparams: Mapping[str, object]) -> dict[str, bool | int | float | str]:
    """``hparams`` with every value converted to bool, int, float or str."""
    return {str(k): _hparam_value(v) for k, v in hparams.items()}


def _metrics(metric_tags: Sequence[str]) -> list[hp.Metric]:
    return [hp.Metric(tag, display_name=tag) for tag in metric_tags]


def write_hparams(
    logdir: str,
    hparams: Mapping[str, object],
    metric_tags: Sequence[str],
    trial_id: str | None = None,
) -> str:
    """Writes the HParams plugin summary of one run into ``logdir``.

    Writes the session-start record (the run's hyperparameter values) and an
    experiment config naming ``hparams``'s keys and ``metric_tags`` (the scalar tags
    shown as metric columns of the HParams tab, e.g. ``task/maze_0/episode_return``).
    Values that are not bool, int, float or str are converted (None -> "None",
    lists -> comma-joined strings).

    Returns the path of the event file written (an existing one on a resumed run).
    """
    existing = _existing(logdir, HPARAMS_SUFFIX)
    if existing:
        return existing
    values = normalize_hparams(hparams)
    config = hp.hparams_config_pb(
        hparams=[hp.HParam(name) for name in values],
        metrics=_metrics(metric_tags),
    )
    session = hp.hparams_pb(values, trial_id=trial_id or os.path.basename(os.path.normpath(logdir)))
    return _write_summaries(logdir, HPARAMS_SUFFIX, [config, session, hyperparameters_text(values)])


def hyperparameters_text(hparams: Mapping[str, object]) -> summary_pb2.Summary:
    """A text summary (TensorBoard's Text tab, tag ``hyperparameters``) of a run's settings as Markdown tables:
    the headline settings (:data:`distral_tf.training.progress.HEADLINE_SETTINGS`), then every setting."""
    headline = [(title, hparams.get(key, "")) for key, title in HEADLINE_SETTINGS if key in hparams]
    rows = ["| setting | value |", "|---|---|", *(f"| {title} | {value} |" for title, value in headline), "",
            "| flag | value |", "|---|---|", *(f"| --{k} | {v} |" for k, v in sorted(hparams.items()))]
    value = summary_pb2.Summary.Value(
        tag=HYPERPARAMETERS_TAG, tensor=tensor_util.make_tensor_proto("\n".join(rows)),
        metadata=text_metadata.create_summary_metadata(display_name="hyperparameters", description=""))
    return summary_pb2.Summary(value=[value])


def _discrete_values(values: Sequence[object]) -> list:
    """Distinct values of one type (the HParams plugin needs a single dtype per domain)."""
    values = [_hparam_value(v) for v in values]
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        if any(isinstance(v, float) for v in values):
            values = [float(v) for v in values]
    elif len({type(v) for v in values}) > 1:
        values = [str(v) for v in values]
    return sorted(set(values))


def write_hparams_config(
    logdir: str,
    domains: Mapping[str, Sequence[object]],
    metric_tags: Sequence[str],
) -> str:
    """Writes an experiment-level HParams config (for a sweep's root directory).

    Args:
      logdir: the directory that holds the runs of the experiment.
      domains: hyperparameter name -> the values swept (a discrete domain).
      metric_tags: scalar tags shown as metric columns.

    Returns the path of the event file written. Unlike the per-run writers this one
    replaces an earlier config, since a rerun sweep may have a different grid.
    """
    for old in glob.glob(os.path.join(glob.escape(logdir), f"{rundir.EVENT_FILE_PREFIX}.*{HPARAMS_CONFIG_SUFFIX}")):
        os.remove(old)
    params = []
    for name, values in domains.items():
        values = _discrete_values(values)
        params.append(hp.HParam(name, hp.Discrete(values)) if values else hp.HParam(name))
    config = hp.hparams_config_pb(hparams=params, metrics=_metrics(metric_tags))
    return _write_summaries(logdir, HPARAMS_CONFIG_SUFFIX, [config])
