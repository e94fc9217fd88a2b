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
from distral_tf.reporting.random_policy import RandomReturn  # noqa: E402

_DPI = 110


def _label(algo: str, policy: str) -> str:
    return style.policy_label(algo, policy)


def _untrained(algo: str, policy: str) -> bool:
    """Whether ``algo``'s ``policy`` curves are those of an untrained network (a3c's pi_0)."""
    from distral_tf import algorithms
    from distral_tf.model.algorithm_spec import DistilledPolicy

    known = algorithms.ALGORITHMS.get(algo)
    return policy == "distilled" and known is not None and known.distilled_policy is DistilledPolicy.UNTRAINED


def _line_style(algo: str, policy: str) -> dict:
    """Colour, line style and marker of ``algo``'s ``policy`` curves.

    An untrained pi_0 (a3c's) is drawn dotted, thin and with open square markers,
    so that its legend entry differs from the algorithm's task policies (dashed).
    """
    if _untrained(algo, policy):
        return {"color": style.color(algo), "ls": ":", "lw": 1.3, "marker": "s", "mfc": "none", "ms": 4,
                "markevery": 0.1}
    return {"color": style.color(algo), "ls": style.linestyle(algo), "lw": 2}


REFERENCE_LABEL = "random policy (band: ±1 standard error)"  # where one legend serves several references


def reference_label(reference: RandomReturn) -> str:
    return f"random policy: {reference.text()} (band: ±1 standard error)"


def _reference_line(ax, reference: RandomReturn | None, label: str | None = None):
    """The random policy's return as a horizontal line in a band of ±1 standard error (nothing if not measured)."""
    if reference is None or not math.isfinite(reference.mean):
        return
    grey = {"color": "0.3", "zorder": 1}
    if math.isfinite(reference.stderr) and reference.stderr > 0:
        ax.axhspan(reference.mean - reference.stderr, reference.mean + reference.stderr, alpha=0.2, lw=0, **grey)
    ax.axhline(reference.mean, ls=(0, (6, 2, 1, 2)), lw=1.2, label=label or reference_label(reference), **grey)


RETURN_MARGIN = 0.05  # of the y-range, above and below


def _return_axis(ax):
    """y-limits that hold everything drawn (curves, bands, the random policy's band, the best achievable
    return's line) and zero, with margins.

    Zero is kept in view so that a small range (one run, or runs close together) is not
    stretched over the whole height, which would make a run a little above random look far above it.
    """
    lo, hi = ax.dataLim.intervaly
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        return
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    margin = RETURN_MARGIN * (hi - lo) if hi > lo else 1.0
    ax.set_ylim(lo - margin, hi + margin)


OPTIMUM_LABEL = "best achievable return"


def _optimum_line(ax, value: float | None):
    """The best achievable return as a labelled horizontal line (nothing where the suite cannot compute it)."""
    if value is None or not math.isfinite(value):
        return
    ax.axhline(value, color="tab:green", ls=(0, (2, 2)), lw=1.4, label=OPTIMUM_LABEL, zorder=1)


def _steps_axis(ax, grid: Grid):
    ax.set_xlim(0, grid.horizon)
    ax.set_xlabel("environment steps per task")
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 3))
    ax.grid(True, alpha=0.3)


def _empty(ax, message: str):
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")


def draw_curves(ax, summaries: list[AlgoSummary], grid: Grid, title: str, reference: RandomReturn | None = None,
                optimum: float | None = None):
    """Panel A1/B1: best-setting mean curve per algorithm, band = mean std over tasks.

    ``reference``: the random policy's return (mean over tasks), drawn as a horizontal line
    in its band of ±1 standard error; ``optimum``: the best achievable return (mean over
    tasks), a horizontal line too. The y-axis holds both lines and zero (see :func:`_return_axis`).
    """
    x = grid.centers
    drawn = 0
    for s in summaries:
        if s.mean_curve is None:
            continue
        c = style.color(s.algo)
        ok = ~np.isnan(s.mean_curve)
        ax.plot(x[ok], s.mean_curve[ok], **_line_style(s.algo, s.policy), label=_label(s.algo, s.policy))
        band = np.nan_to_num(s.band, nan=0.0)
        ax.fill_between(x[ok], (s.mean_curve - band)[ok], (s.mean_curve + band)[ok], color=c, alpha=0.15,
                        lw=0)
        drawn += 1
    if not drawn:
        _empty(ax, "no episodes")
    _reference_line(ax, reference)
    _optimum_line(ax, optimum)
    _steps_axis(ax, grid)
    _return_axis(ax)
    ax.set_ylabel("average return")
    ax.set_title(title)


UNFINISHED_LABEL = "run interrupted or crashed"


def draw_sorted_finals(ax, summaries: list[AlgoSummary], title: str, reference: RandomReturn | None = None,
                       unfinished: frozenset[str] = frozenset(), optimum: float | None = None):
    """Panel A2/B2: final return of every run of each algorithm, best to worst.

    Finals from a final evaluation carry their standard error as an error bar.
    ``reference``: the random policy's return (in its band of ±1 standard error), and
    ``optimum``: the best achievable return, horizontal lines; runs in ``unfinished``
    (interrupted or crashed, by run id) are circled in black. The y-axis holds both lines and zero.
    """
    most = 0
    for s in summaries:
        ranked = s.sorted_finals()
        if not ranked:
            continue
        finals = [f for _, f in ranked]
        ranks = np.arange(1, len(finals) + 1)
        line = {**_line_style(s.algo, s.policy), "marker": "o", "ms": 3, "markevery": None}
        if _untrained(s.algo, s.policy):
            line.update(marker="s", ms=4)
        ax.plot(ranks, finals, **line, label=_label(s.algo, s.policy))
        errors = [(rank, f, s.final_stats[run_id][0]) for rank, (run_id, f) in zip(ranks, ranked, strict=True)
                  if run_id in s.final_stats]
        if errors:  # standard errors of the finals that come from a final evaluation
            x, y, err = zip(*errors, strict=True)
            ax.errorbar(x, y, yerr=err, fmt="none", ecolor=line["color"], elinewidth=1, capsize=2)
        cut = [(rank, f) for rank, (run_id, f) in zip(ranks, ranked, strict=True) if run_id in unfinished]
        if cut:
            ax.plot(*zip(*cut, strict=True), ls="none", marker="o", ms=9, mfc="none", mec="k", mew=1.2,
                    label=UNFINISHED_LABEL)
        most = max(most, len(finals))
    if not most:
        _empty(ax, "no episodes")
    else:
        ax.set_xlim(0.5, most + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # ranks only, even for one run
    _reference_line(ax, reference)
    _optimum_line(ax, optimum)
    _return_axis(ax)
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


def curves_figure(path: str, summaries: list[AlgoSummary], grid: Grid, title: str,
                  reference: RandomReturn | None = None, optimum: float | None = None):
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    draw_curves(ax, summaries, grid, title, reference, optimum)
    ax.legend(fontsize=8, loc="best")
    _save(fig, path)


def sorted_finals_figure(path: str, summaries: list[AlgoSummary], title: str, reference: RandomReturn | None = None,
                         unfinished: frozenset[str] = frozenset(), optimum: float | None = None):
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    draw_sorted_finals(ax, summaries, title, reference, unfinished, optimum)
    ax.legend(fontsize=8, loc="best")
    _save(fig, path)


def figure4(path: str, task: list[AlgoSummary], distilled: list[AlgoSummary], grid: Grid, experiment: str,
            reference: RandomReturn | None = None, unfinished: frozenset[str] = frozenset(),
            optimum: float | None = None):
    """The four panels side by side, as one row of the paper's Figure 4 (``reference``, ``unfinished``,
    ``optimum``: see :func:`draw_sorted_finals`)."""
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.6))
    draw_curves(axes[0], task, grid, "A1: task policies (best hyperparameters)", reference, optimum)
    draw_sorted_finals(axes[1], task, "A2: task policies, every run", reference, unfinished, optimum)
    draw_curves(axes[2], distilled, grid, "B1: distilled policy (best hyperparameters)", reference, optimum)
    draw_sorted_finals(axes[3], distilled, "B2: distilled policy, every run", reference, unfinished, optimum)
    fig.suptitle(experiment, fontsize=14)
    fig.tight_layout(rect=(0, 0.07, 1, 0.97))
    _legend_below(fig, axes)
    _save(fig, path)


def per_task_figure(path: str, summaries: list[AlgoSummary], grid: Grid, task_names: list[str], title: str,
                    references: dict[str, RandomReturn] | None = None, optima: dict[str, float] | None = None):
    """One panel per task: best-setting mean over runs per algorithm, band = std over runs.

    ``references``: task -> the random policy's return, drawn as a horizontal line in its
    band of ±1 standard error (its value in the panel's title, since the panels share one
    legend), and ``optima``: task -> the best achievable return, a horizontal line too.
    """
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
            line = _line_style(s.algo, s.policy)
            ax.plot(x[ok], mean[ok], **{**line, "lw": min(line["lw"], 1.6)}, label=_label(s.algo, s.policy))
            ax.fill_between(x[ok], (mean - std)[ok], (mean + std)[ok], color=c, alpha=0.12, lw=0)
            drawn += 1
        if not drawn:
            _empty(ax, "no episodes")
        reference = (references or {}).get(task)
        _reference_line(ax, reference, REFERENCE_LABEL)
        _optimum_line(ax, (optima or {}).get(task))
        _steps_axis(ax, grid)
        _return_axis(ax)
        ax.set_title(task if reference is None else f"{task}\nrandom policy {reference.text()}", fontsize=10)
        if i % cols == 0:
            ax.set_ylabel("average return")
    fig.suptitle(title, fontsize=13)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    _legend_below(fig, list(axes.flat))
    _save(fig, path)
