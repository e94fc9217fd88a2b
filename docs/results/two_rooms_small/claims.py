"""The numbers of the README's claims table, from the committed records.

    python docs/results/two_rooms_small/claims.py [RUNS_TAR]

Uses the report's own definitions (``distral_tf.report.Options``: 50 bins over 100,000 steps per
task, AUC the mean of a run's curve, final return over the last 10% of the steps, or pi_0's final
evaluation of 30 episodes per task). Prints, per algorithm: its best setting by AUC (mean over the
seeds) for the task policies and for pi_0, with each seed's AUC and final return; the best AUC at
each learning rate, with every entropy cost's AUC on each seed; the steps per task at which the
best setting's mean curve first reaches half and nine tenths of the best achievable return; how
many of its runs end at least at 50% and at 90% of it; and the spread between seeds. Last, the
running time of the runs (``status.json``: agent steps over agent steps per second).

Given ``tf1_rmsprop_runs.tar.gz``, it prints the same of the RMSProp initialisation comparison.
"""

import json
import math
import statistics
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from distral_tf import report
from distral_tf.reporting import metrics, optimum
from distral_tf.reporting import runs as runs_lib

HERE = Path(__file__).resolve().parent
ALGOS = ("a3c", "a3c_multitask", "a3c_2col", "kl_1col", "kl_2col", "klent_1col", "klent_2col")
OPTIONS = report.Options()  # the report's bins and final fraction, so that the numbers are report.md's


def first_step_reaching(curve, grid, level):
    """Steps per task at the first bin whose value is at least ``level``; None if none is."""
    hits = np.flatnonzero(np.nan_to_num(curve, nan=-math.inf) >= level)
    return None if hits.size == 0 else float(grid.centers[hits[0]])


def describe(summary, grid, best_return):
    """Lines about one algorithm's summary for one policy kind."""
    lines = []
    best = summary.best
    lines.append(f"  best setting: lr {best.hparams[0]:g}, entropy cost {best.hparams[1]:g}: AUC {best.auc:.2f} "
                 f"(seeds: " + ", ".join(f"{a:.2f}" for a in best.aucs) + "), final "
                 f"{statistics.fmean(best.finals):.2f} = {statistics.fmean(best.finals) / best_return:.0%} "
                 f"(seeds: " + ", ".join(f"{f:.2f}" for f in best.finals) + ")")
    for lr in sorted({s.hparams[0] for s in summary.settings}):
        at_lr = [s for s in summary.settings if s.hparams[0] == lr]
        top = max(at_lr, key=lambda s: s.auc)
        lines.append(f"  lr {lr:g}: best AUC {top.auc:.2f} at entropy cost {top.hparams[1]:g}, final "
                     f"{statistics.fmean(top.finals):.2f}; AUCs over the entropy costs (seeds) "
                     + ", ".join(f"{s.auc:.2f} (" + ", ".join(f"{a:.2f}" for a in s.aucs) + ")" for s in at_lr))
    reach = [first_step_reaching(summary.mean_curve, grid, f * best_return) for f in (0.5, 0.9)]
    lines.append("  best setting's mean curve first at 50% / 90% of the optimum: "
                 + " / ".join("never" if r is None else f"{r:,.0f} steps per task" for r in reach))
    finals = list(summary.finals.values())
    lines.append(f"  all {len(finals)} runs: mean final {statistics.fmean(finals):.2f}, median "
                 f"{statistics.median(finals):.2f}; at least 50% of the optimum: "
                 f"{sum(f >= 0.5 * best_return for f in finals)}, at least 90%: "
                 f"{sum(f >= 0.9 * best_return for f in finals)}")
    gaps = [abs(s.finals[0] - s.finals[1]) for s in summary.settings if len(s.finals) == 2]
    if gaps:
        lines.append(f"  |seed 0 - seed 1| of the final return, over the {len(gaps)} settings: mean "
                     f"{statistics.fmean(gaps):.2f}, largest {max(gaps):.2f}")
    return lines


def main(argv):
    path = Path(argv[0]) if argv else HERE / "runs.tar.gz"
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(path) as tar:
            tar.extractall(tmp, filter="data")
        runs = runs_lib.load_runs(tmp)
        statuses = {r.algo: [] for r in runs}
        for r in runs:
            status = json.loads((Path(r.path) / "status.json").read_text())
            statuses[r.algo].append((r.seed, status["env_steps"] / status["agent_steps_per_second"] / 60))
    grid = metrics.make_grid(runs, OPTIONS.num_bins)
    returns, _ = optimum.optimal_returns(runs[0].suite)
    best_return = statistics.fmean(returns.values())
    print(f"{len(runs)} runs; best achievable return {best_return:.2f} (mean over the tasks)")
    for algo in ALGOS:
        mine = [r for r in runs if r.algo == algo]
        if not mine:
            continue
        print(f"\n{algo} ({len(mine)} runs)")
        for policy in ("task", "distilled"):
            summary = metrics.summarize(runs, algo, policy, grid, OPTIONS.final_fraction)
            if summary.best is None:
                continue
            print(f" {policy} policies:" if policy == "task" else " pi_0:")
            print("\n".join(describe(summary, grid, best_return)))
    print("\nrunning time per run, minutes (min, median, max; the median on each seed):")
    for algo, timed in statuses.items():
        minutes = [m for _, m in timed]
        per_seed = ", ".join(f"seed {seed} {statistics.median(m for s, m in timed if s == seed):.1f}"
                             for seed in sorted({s for s, _ in timed}))
        print(f"  {algo}: {min(minutes):.1f}, {statistics.median(minutes):.1f}, {max(minutes):.1f}; {per_seed}")
    total = sum(m for timed in statuses.values() for _, m in timed)
    print(f"  all {sum(map(len, statuses.values()))} runs: {total / 60:.1f} h of running time")


if __name__ == "__main__":
    main(sys.argv[1:])
