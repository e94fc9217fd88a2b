"""Learning curves on a common step grid, AUC, final return and best hyperparameters.

Definitions (repeated in every report):

- **Step grid.** For one experiment (suite), ``[0, H]`` is cut into ``num_bins``
  equal bins, ``H`` the most environment steps per task that any run reached.
  An episode belongs to the bin containing the per-task step count at which it
  ended.
- **Curve of a task.** The mean return of the episodes in each bin; empty bins
  between a task's first and last episode take the previous bin's value; bins
  before the first or after the last episode are missing.
- **Curve of a run.** The mean over tasks, per bin, of its task curves.
- **AUC of a run.** The mean of its curve over the bins it covers: the area under
  the curve divided by the steps covered, in units of return.
- **AUC of a hyperparameter setting** (learning rate, entropy cost): the mean AUC
  of its runs (seeds). The best setting of an algorithm has the highest AUC; task
  and distilled policies are selected separately, each on its own curves.
- **Final return of a run.** For each task, the mean return of the episodes in the
  last ``final_fraction`` of the steps that task reached; then the mean over tasks.
  Where a run ends with a final evaluation of a policy (rows marked final, at its
  last step), that task's final return is instead the mean over those episodes, and
  the run's final return has a standard error: ``sqrt(sum_i s_i^2 / n_i) / N`` over
  its ``N`` tasks, ``s_i`` the sample standard deviation of task ``i``'s ``n_i``
  episodes. The final evaluation's episodes are part of the curves too.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

import numpy as np

from distral_tf.reporting.runs import Run


@dataclasses.dataclass(frozen=True)
class Grid:
    """``num_bins`` equal bins over ``[0, horizon]`` environment steps per task."""

    horizon: float
    num_bins: int

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(0.0, self.horizon, self.num_bins + 1)

    @property
    def centers(self) -> np.ndarray:
        e = self.edges
        return 0.5 * (e[:-1] + e[1:])

    def bin_of(self, steps: np.ndarray) -> np.ndarray:
        """Bin index of each step count (steps of 0 go to the first bin)."""
        idx = np.ceil(np.asarray(steps, dtype=np.float64) / self.horizon * self.num_bins).astype(int) - 1
        return np.clip(idx, 0, self.num_bins - 1)


def make_grid(runs: list[Run], num_bins: int) -> Grid:
    """The step grid shared by ``runs`` (one experiment)."""
    horizon = max((float(e.steps[-1]) for r in runs for e in r.episodes.values() if len(e.steps)),
                  default=1.0)
    return Grid(horizon=max(horizon, 1.0), num_bins=num_bins)


def binned_curve(steps: np.ndarray, returns: np.ndarray, grid: Grid) -> np.ndarray:
    """One task's curve on ``grid`` (see the module docstring); NaN where missing."""
    curve = np.full(grid.num_bins, np.nan)
    if len(steps) == 0:
        return curve
    bins = grid.bin_of(steps)
    sums = np.bincount(bins, weights=returns, minlength=grid.num_bins)
    counts = np.bincount(bins, minlength=grid.num_bins)
    filled = counts > 0
    curve[filled] = sums[filled] / counts[filled]
    first, last = bins.min(), bins.max()
    for b in range(first + 1, last + 1):
        if not filled[b]:
            curve[b] = curve[b - 1]
    return curve


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    counts = np.sum(~np.isnan(x), axis=axis)
    sums = np.nansum(x, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _nanstd(x: np.ndarray, axis: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    mean = _nanmean(x, axis)
    dev = (x - np.expand_dims(mean, axis)) ** 2
    return np.sqrt(_nanmean(dev, axis))


def task_curves(run: Run, policy: str, grid: Grid) -> dict[str, np.ndarray]:
    """``task name -> curve`` for the tasks on which ``policy`` has episodes."""
    return {task: binned_curve(e.steps, e.returns, grid)
            for (p, task), e in run.episodes.items() if p == policy and len(e.steps)}


def run_curve(run: Run, policy: str, grid: Grid) -> np.ndarray:
    """Mean over tasks of the task curves; all-NaN if the run has no such episodes."""
    curves = task_curves(run, policy, grid)
    if not curves:
        return np.full(grid.num_bins, np.nan)
    return _nanmean(np.stack(list(curves.values())), axis=0)


def run_task_std(run: Run, policy: str, grid: Grid) -> np.ndarray:
    """Standard deviation over tasks, per bin, of the task curves."""
    curves = task_curves(run, policy, grid)
    if not curves:
        return np.full(grid.num_bins, np.nan)
    return _nanstd(np.stack(list(curves.values())), axis=0)


def auc(curve: np.ndarray) -> float:
    """Mean of ``curve`` over the bins it covers (NaN if it covers none)."""
    covered = curve[~np.isnan(curve)]
    return float(covered.mean()) if covered.size else math.nan


def final_return(run: Run, policy: str, final_fraction: float) -> float:
    """Mean over tasks of each task's final return (see the module docstring).

    A task's final return is the mean over its final evaluation's episodes where the run
    has them, else the mean return in the last ``final_fraction`` of the task's steps.
    """
    per_task = []
    for (p, task), e in run.episodes.items():
        if p != policy or not len(e.steps):
            continue
        final = run.final_evaluation.get((p, task))
        if final is not None and len(final):
            per_task.append(float(np.mean(final)))
            continue
        cutoff = (1.0 - final_fraction) * e.steps[-1]
        per_task.append(float(e.returns[e.steps >= cutoff].mean()))
    return float(np.mean(per_task)) if per_task else math.nan


def final_evaluation_stats(run: Run, policy: str) -> tuple[float, int]:
    """``(standard error of the final return, fewest final episodes of a task)`` from the final evaluation.

    ``(nan, 0)`` unless every task on which ``policy`` has episodes has at least two final ones.
    """
    tasks = [task for (p, task), e in run.episodes.items() if p == policy and len(e.steps)]
    finals = [run.final_evaluation.get((policy, task), np.empty(0)) for task in tasks]
    if not finals or min(len(f) for f in finals) < 2:
        return math.nan, 0
    variance = sum(float(np.var(f, ddof=1)) / len(f) for f in finals)
    return math.sqrt(variance) / len(finals), min(len(f) for f in finals)


@dataclasses.dataclass
class SettingSummary:
    """One hyperparameter setting of one algorithm, for one policy kind."""

    hparams: tuple[float | None, float | None]
    runs: list[Run]
    aucs: list[float]
    finals: list[float]

    @property
    def auc(self) -> float:
        vals = [a for a in self.aucs if not math.isnan(a)]
        return float(np.mean(vals)) if vals else math.nan


@dataclasses.dataclass
class AlgoSummary:
    """Everything the report shows about one algorithm and one policy kind."""

    algo: str
    policy: str
    settings: list[SettingSummary]
    best: SettingSummary | None
    finals: dict[str, float]  # run id -> final return, every run with data
    mean_curve: np.ndarray | None  # best setting: mean over runs of the run curves
    band: np.ndarray | None  # best setting: mean over runs of the std over tasks
    per_task_mean: dict[str, np.ndarray]  # best setting, per task: mean over runs
    per_task_std: dict[str, np.ndarray]  # best setting, per task: std over runs
    num_runs: int  # every run of the algorithm, with data or not
    # run id -> (standard error, fewest episodes of a task) of the final return, for runs whose final
    # return comes from a final evaluation (see final_evaluation_stats)
    final_stats: dict[str, tuple[float, int]] = dataclasses.field(default_factory=dict)

    def sorted_finals(self) -> list[tuple[str, float]]:
        """(run id, final return) of every run with data, best first (ties by run id)."""
        return sorted(self.finals.items(), key=lambda kv: (-kv[1], kv[0]))


def _hparams_key(h: tuple[float | None, float | None]) -> tuple:
    return tuple(math.inf if v is None else v for v in h)


def summarize(runs: list[Run], algo: str, policy: str, grid: Grid, final_fraction: float) -> AlgoSummary:
    """Summarises ``algo``'s runs for ``policy`` ("task" or "distilled")."""
    mine = [r for r in runs if r.algo == algo]
    by_setting: dict[tuple, list[Run]] = defaultdict(list)
    for r in mine:
        if r.has(policy):
            by_setting[r.hparams].append(r)
    settings = []
    for hparams in sorted(by_setting, key=_hparams_key):
        group = sorted(by_setting[hparams], key=lambda r: r.run_id)
        settings.append(SettingSummary(
            hparams=hparams,
            runs=group,
            aucs=[auc(run_curve(r, policy, grid)) for r in group],
            finals=[final_return(r, policy, final_fraction) for r in group],
        ))
    scored = [s for s in settings if not math.isnan(s.auc)]
    # Highest AUC; ties go to the first setting in (learning rate, entropy cost) order.
    best = max(scored, key=lambda s: s.auc) if scored else None
    finals = {r.run_id: f for s in settings for r, f in zip(s.runs, s.finals, strict=True)
              if not math.isnan(f)}
    final_stats = {r.run_id: stats for s in settings for r in s.runs
                   if r.run_id in finals and (stats := final_evaluation_stats(r, policy))[1]}
    mean_curve = band = None
    per_task_mean, per_task_std = {}, {}
    if best is not None:
        mean_curve = _nanmean(np.stack([run_curve(r, policy, grid) for r in best.runs]), axis=0)
        band = _nanmean(np.stack([run_task_std(r, policy, grid) for r in best.runs]), axis=0)
        by_task: dict[str, list[np.ndarray]] = defaultdict(list)
        for r in best.runs:
            for task, c in task_curves(r, policy, grid).items():
                by_task[task].append(c)
        for task, cs in by_task.items():
            per_task_mean[task] = _nanmean(np.stack(cs), axis=0)
            per_task_std[task] = _nanstd(np.stack(cs), axis=0)
    return AlgoSummary(algo=algo, policy=policy, settings=settings, best=best, finals=finals,
                       mean_curve=mean_curve, band=band, per_task_mean=per_task_mean,
                       per_task_std=per_task_std, num_runs=len(mine), final_stats=final_stats)


def fraction_reaching(summary: AlgoSummary, threshold: float) -> float:
    """Fraction of the algorithm's runs whose final return is at least ``threshold``.

    Runs without episodes of this policy count as not reaching it.
    """
    if summary.num_runs == 0:
        return math.nan
    return sum(f >= threshold for f in summary.finals.values()) / summary.num_runs
