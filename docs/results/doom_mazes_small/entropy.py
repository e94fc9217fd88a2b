"""The README's entropy tables: the policies' entropy per task over a run, from the finished runs' TensorBoard events.

    python docs/results/doom_mazes_small/entropy.py [EVENTS_TAR]

Per run and task, the logged entropy of the task policy (``task/<task>/entropy_task``, nats; ln 9 = 2.20 is
uniform over the 9 actions) and, where the algorithm has one, of pi_0 (``entropy_distilled``) and
KL(pi_i || pi_0) (``kl_task_distilled``), each the mean of the values logged in a stretch of agent steps
per task.
"""

import collections
import sys
import tarfile
import tempfile
from pathlib import Path

from distral_tf.reporting.runs import iter_scalars

HERE = Path(__file__).resolve().parent
STRETCHES = ((0, 10_000), (10_000, 50_000), (50_000, 150_000), (150_000, 300_000), (300_000, 500_000))
KEYS = ("entropy_task", "entropy_distilled", "kl_task_distilled")


def scalars(run_dir):
    """tag -> [(step, value)] of every scalar in the run's events."""
    series = collections.defaultdict(list)
    for tag, step, _, scalar in iter_scalars(str(run_dir)):
        series[tag].append((step, scalar))
    return series


def main(argv):
    path = argv[0] if argv else HERE / "events.tar.gz"
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(path) as tar:
            tar.extractall(tmp, filter="data")
        for run in sorted(p for p in Path(tmp, "runs").iterdir() if p.is_dir()):
            series = scalars(run)
            tasks = sorted({tag.split("/")[1] for tag in series if tag.endswith("/entropy_task")})
            print(f"\n{run.name}")
            print("| task | quantity | " + " | ".join(f"{lo // 1000}-{hi // 1000}k" for lo, hi in STRETCHES) + " |")
            print("|---|---|" + "---|" * len(STRETCHES))
            for task in tasks:
                for key in KEYS:
                    points = series.get(f"task/{task}/{key}")
                    if not points or (key != "entropy_task" and run.name.startswith("a3c-")):
                        continue  # a3c's pi_0 is an untrained column, not part of its objective
                    cells = []
                    for lo, hi in STRETCHES:
                        chosen = [v for step, v in points if lo <= step < hi]
                        cells.append(f"{sum(chosen) / len(chosen):.3g}" if chosen else "")
                    print(f"| {task.rsplit('_', 1)[-1]} | {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
