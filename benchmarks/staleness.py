"""Staleness of the asynchronous updates of finished runs, read back from their TensorBoard events.

The staleness of an update is the number of updates the shared parameters received
between the snapshot its rollout acted with and the update itself (logged per task as
``staleness/<task>/mean`` and ``staleness/<task>/max`` by the trainer).
Usage: ``python benchmarks/staleness.py RUN_DIR [RUN_DIR ...]``: per run, the mean of the
logged means and the largest logged maximum, over all tasks and over each task.
"""

import collections
import re

import numpy as np

from distral_tf.reporting.runs import iter_scalars
from flags import cli

_TAG = re.compile(r"^staleness/(.+)/(mean|max)$")


def staleness(run_dir: str) -> dict[str, dict[str, list[float]]]:
    """``{task: {"mean": [...], "max": [...]}}`` of every logged staleness value."""
    out = collections.defaultdict(lambda: {"mean": [], "max": []})
    for tag, _, _, scalar in iter_scalars(run_dir, keep=_TAG.match):
        task, statistic = _TAG.match(tag).groups()
        out[task][statistic].append(scalar)
    return dict(out)


def main(argv):
    if len(argv) < 2:
        cli.fail("no run directory given; usage: python benchmarks/staleness.py RUN_DIR [RUN_DIR ...]")
    for run_dir in argv[1:]:
        per_task = staleness(run_dir)
        if not per_task:
            print(f"{run_dir}: no staleness summaries")
            continue
        means = [v for t in per_task.values() for v in t["mean"]]
        maxima = [v for t in per_task.values() for v in t["max"]]
        print(f"{run_dir}: staleness mean {np.mean(means):.1f}, max {np.max(maxima):.0f} "
              f"({len(means)} summaries)")
        for task, values in sorted(per_task.items()):
            print(f"  {task}: mean {np.mean(values['mean']):.1f}, max {np.max(values['max']):.0f}")


if __name__ == "__main__":
    cli.run(main)
