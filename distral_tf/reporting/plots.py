"""The report's figures: the panels of the paper's Figure 4 and per-task curves."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from distral_tf.reporting import style  # noqa: E402
from distral_tf.reporting.metrics import AlgoSummary, Grid  # noqa: E402

_DPI = 110


def _label(algo: str, policy: str) -> str:
    return style.policy_label(algo, policy)


def _steps_axis(ax, grid: Grid):
    ax.set_xlim(0, grid.horizon)
    ax.set_xlabel("environment steps per task")
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 3))
    ax.grid(True, alpha=0.3)


def _empty(ax, message: str):
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")


def draw_curves(ax, summaries: list[AlgoSummary], grid: Grid, title: str):
    """Panel A1/B1: best-setting mean curve per algorithm, band = mean std over tasks."""
    x = grid.centers
    drawn = 0
    for s in summaries:
        if s.mean_curve is None:
            continue
        c = style.color(s.algo)
        ok = ~np.isnan(s.mean_curve)
        ax.plot(x[ok], s.mean_curve[ok], color=c, ls=style.linestyle(s.algo), lw=2,
                label=_label(s.algo, s.policy))
        band = np.nan_to_num(s.band, nan=0.0)
        ax.fill_between(x[ok], (s.mean_curve - band)[ok], (s.mean_curve + band)[ok], color=c, alpha=0.15,
                        lw=0)
        drawn += 1
    if not drawn:
        _empty(ax, "no episodes")
    _steps_axis(ax, grid)
    ax.set_ylabel("average return")
    ax.set_title(title)


def draw_sorted_finals(ax, summaries: list[AlgoSummary], title: str):
    """Panel A2/B2: final return of every run of each algorithm, best to worst."""
    most = 0
    for s in summaries:
        finals = [f for _, f in s.sorted_finals()]
        if not finals:
            continue
        ranks = np.arange(1, len(finals) + 1)
        ax.plot(ranks, finals, color=style.color(s.algo), ls=style.linestyle(s.algo), lw=2,
                marker="o", ms=3, label=_label(s.algo, s.policy))
        most = max(most, len(finals))
    if not most:
        _empty(ax, "no episodes")
    else:
        ax.set_xlim(0.5, most + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("runs, best to worst")
    ax.set_ylabel("final average return")
    ax.grid(True, alpha=0.3)
    ax.set_title(title)


def _save(fig, path: str):
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    plt.close(fig)


def _legend_below(fig, axes):
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if labels:
        fig.legend([handles[lab] for lab in labels], labels, loc="lower center",
                   ncol=min(len(labels), 7), frameon=False, bbox_to_anchor=(0.5, -0.02))


def curves_figure(path: str, summaries: list[AlgoSummary], grid: Grid, title: str):
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    draw_curves(ax, summaries, grid, title)
    ax.legend(fontsize=8, loc="best")
    _save(fig, path)


def sorted_finals_figure(path: str, summaries: list[AlgoSummary], title: str):
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    draw_sorted_finals(ax, summaries, title)
    ax.legend(fontsize=8, loc="best")
    _save(fig, path)


def figure4(path: str, task: list[AlgoSummary], distilled: list[AlgoSummary], grid: Grid, experiment: str):
    """The four panels side by side, as one row of the paper's Figure 4."""
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.6))
    draw_curves(axes[0], task, grid, "A1: task policies (best hyperparameters)")
    draw_sorted_finals(axes[1], task, "A2: task policies, every run")
    draw_curves(axes[2], distilled, grid, "B1: distilled policy (best hyperparameters)")
    draw_sorted_finals(axes[3], distilled, "B2: distilled policy, every run")
    fig.suptitle(experiment, fontsize=14)
    fig.tight_layout(rect=(0, 0.07, 1, 0.97))
    _legend_below(fig, axes)
    _save(fig, path)


def per_task_figure(path: str, summaries: list[AlgoSummary], grid: Grid, task_names: list[str], title: str):
    """One panel per task: best-setting mean over runs per algorithm, band = std over runs."""
    n = max(len(task_names), 1)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows + 0.6), squeeze=False)
    x = grid.centers
    for i, ax in enumerate(axes.flat):
        if i >= len(task_names):
            ax.axis("off")
            continue
        task = task_names[i]
        drawn = 0
        for s in summaries:
            mean = s.per_task_mean.get(task)
            if mean is None:
                continue
            std = np.nan_to_num(s.per_task_std[task], nan=0.0)
            ok = ~np.isnan(mean)
            c = style.color(s.algo)
            ax.plot(x[ok], mean[ok], color=c, ls=style.linestyle(s.algo), lw=1.6,
                    label=_label(s.algo, s.policy))
            ax.fill_between(x[ok], (mean - std)[ok], (mean + std)[ok], color=c, alpha=0.12, lw=0)
            drawn += 1
        if not drawn:
            _empty(ax, "no episodes")
        _steps_axis(ax, grid)
        ax.set_title(task, fontsize=10)
        if i % cols == 0:
            ax.set_ylabel("average return")
    fig.suptitle(title, fontsize=13)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    _legend_below(fig, list(axes.flat))
    _save(fig, path)
