"""Turns a directory of runs into the paper's Figure 4 and a report.

Usage::

    python -m distral_tf.report --runs=SWEEP_DIR/runs --out=REPORT_DIR

writes, for every experiment (suite) found, PNG figures (panels A1, A2, B1, B2
of the paper's Figure 4, together and one by one, and per-task curves), and for
all of them one ``index.html``, ``report.md`` and ``summary.json``. The
definitions of the step grid, AUC and final return are those of
:mod:`distral_tf.reporting.metrics` and are printed in the report.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import math
import os
import re

from absl import flags

from distral_tf import algorithms
from distral_tf.model.algorithm_spec import DistilledPolicy
from distral_tf.reporting import document as doc
from distral_tf.reporting import metrics, optimum, random_policy, style
from distral_tf.reporting.runs import Run, load_runs
from distral_tf.training import run_files
from flags import cli

FLAGS = flags.FLAGS


def define_flags():
    """Defines the command-line flags (only when run as a program, so importing defines none)."""
    flags.DEFINE_string("runs", None, "Directory searched (recursively) for run directories.")
    flags.DEFINE_string("out", None, "Directory the report is written to (created if needed).")
    flags.DEFINE_integer("num_bins", 50, "Bins of the common step grid (curves and AUC).", lower_bound=2)
    flags.DEFINE_float("final_fraction", 0.1, "Final return = mean return over this last fraction of steps.",
                       lower_bound=1e-6, upper_bound=1.0)
    flags.DEFINE_float("threshold", None, "Final return a run must reach to count as successful; "
                       "default: --threshold_fraction of the way from the worst to the best final return "
                       "of any task-policy run of the experiment.")
    flags.DEFINE_float("threshold_fraction", 0.5, "See --threshold.", lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_integer("random_episodes", 300, "Episodes per task of a uniformly random policy, measured once per "
                         f"report directory (kept in {random_policy.CACHE_FILE}) for the reference line on every "
                         "return plot, with its standard error; fewer where --random_seconds run out first; "
                         "0: no line.", lower_bound=0)
    flags.DEFINE_float("random_seconds", 60.0, "Time budget per task of the random policy's episodes (at least "
                       f"{random_policy.MIN_EPISODES} are played): the two-room suites play all of "
                       "--random_episodes well within it, a Doom suite as many as fit; 0: no limit.", lower_bound=0.0)
    flags.DEFINE_integer("random_seed", 0, "Seed of the random policy's environments and actions.")


@dataclasses.dataclass(frozen=True)
class Options:
    """How curves are binned and runs scored; the flags of the same names."""

    num_bins: int = 50
    final_fraction: float = 0.1
    threshold: float | None = None
    threshold_fraction: float = 0.5
    random_episodes: int = 300
    random_seed: int = 0
    random_seconds: float = 60.0

POLICIES = run_files.POLICIES
_PANELS = {"task": ("A1", "A2"), "distilled": ("B1", "B2")}


def fmt_hparam(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def fmt(value: float, digits: int = 4) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def of_optimum(value: float | None, best: float | None) -> str:
    """`` (97.6%)``: ``value`` as a percentage of the best achievable return; empty where that is unknown."""
    if best is None or not best or value is None or math.isnan(value):
        return ""
    return f" ({100 * value / best:.1f}%)"


def _pct(best_return: float | None) -> str:
    return "; % of best achievable" if best_return else ""


def _mean_std(values: list[float], best: float | None = None) -> str:
    """"mean ± std" over runs; a single run's value alone, marked as one run (its spread is unknown).

    With ``best`` (the best achievable return), the mean also as a percentage of it.
    """
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return "n/a"
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return f"{mean:.4f}{of_optimum(mean, best)} (1 run)"
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
    return f"{mean:.4f} ± {std:.4f}{of_optimum(mean, best)}"


UNFINISHED_STATES = ("interrupted", "crashed", "failed")


def _run_cell(run: Run) -> str:
    """A run's id, with its state where it did not finish (or is still running)."""
    state = "" if run.state in ("finished", "unknown") else f" ({run.state})"
    return f"`{run.run_id}`{state}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "experiment"


def _policy_title(policy: str) -> str:
    """``policy``'s title at the start of a caption, e.g. "Task policies"."""
    return run_files.policy_title(policy).capitalize()


def _distilled_policy_definition() -> str:
    """What the distilled-policy panels show for each algorithm whose pi_0 is not a distilled column."""
    others = [f"for {algo.label} {algo.distilled_policy.meaning}" for algo in algorithms.ALGORITHMS.values()
              if algo.distilled_policy is not DistilledPolicy.TRAINED]
    return "**Distilled policy**: pi0's evaluation episodes" + "".join(f"; {o}" for o in others) + "."


def definitions(num_bins: int, final_fraction: float) -> list[str]:
    pct = f"{100 * final_fraction:g}%"
    return [
        f"**Step grid**: per experiment, [0, H] environment steps per task cut into {num_bins} equal bins, "
        "H the most steps per task any run reached; an episode counts in the bin of the step at which it "
        "ended.",
        "**Curve of a task**: mean return of the episodes in each bin; empty bins between a task's first and "
        "last episode repeat the previous value. **Curve of a run**: mean over tasks.",
        "**AUC**: mean of a run's curve over the bins it covers (area under the curve divided by the steps "
        "covered, in units of return); a setting's AUC is the mean over its runs (seeds).",
        "**Best hyperparameters**: the (learning rate, entropy cost) setting with the highest AUC, chosen "
        "separately for task policies (A1) and distilled policies (B1).",
        f"**Final return** of a run: per task, the mean return over the last {pct} of the steps that task "
        "reached; then the mean over tasks. Where a run ends with a final evaluation of its distilled policy "
        "(episodes played at its last step), a task's final return is the mean over those episodes instead, "
        "and the run's final return is given ± its standard error (sqrt(sum_i s_i^2 / n_i) / N over the N "
        "tasks, s_i the standard deviation of task i's n_i episodes); these episodes are also the last point "
        "of its curve.",
        "**Best achievable return**: where the suite can compute it from its known dynamics, the expected "
        "return of an optimal policy, mean over tasks; drawn as a line on every return plot, and every final "
        "return is followed by its percentage of it.",
        "**A1/B1**: mean over the best setting's runs of the run curves; shaded band = the runs' mean "
        "standard deviation over tasks. **A2/B2**: final return of every run, sorted best to worst.",
        _distilled_policy_definition(),
    ]


def _threshold(task_summaries: list[metrics.AlgoSummary], options: Options) -> float:
    if options.threshold is not None:
        return options.threshold
    finals = [f for s in task_summaries for f in s.finals.values()]
    if not finals:
        return math.nan
    lo, hi = min(finals), max(finals)
    return lo + options.threshold_fraction * (hi - lo)


def _summary_table(summaries: list[metrics.AlgoSummary], threshold: float, policy: str,
                   best_return: float | None = None) -> doc.Table:
    rows = []
    for s in summaries:
        name = style.display_name(s.algo)
        if not s.finals:
            rows.append([name, f"0/{s.num_runs}", "-", "-", "n/a", "n/a", "n/a", "n/a"])
            continue
        best = s.best
        reach = metrics.fraction_reaching(s, threshold) if not math.isnan(threshold) else math.nan
        reach_text = "n/a" if math.isnan(reach) else (
            f"{reach:.2f} ({round(reach * s.num_runs)}/{s.num_runs})")
        rows.append([
            name,
            f"{len(s.finals)}/{s.num_runs}",
            fmt_hparam(best.hparams[0]) if best else "-",
            fmt_hparam(best.hparams[1]) if best else "-",
            fmt(best.auc) if best else "n/a",
            _mean_std(best.finals, best_return) if best else "n/a",
            _mean_std(list(s.finals.values()), best_return),
            reach_text,
        ])
    return doc.Table(
        header=["algorithm", "runs with data", "best learning rate", "best entropy cost", "AUC (best)",
                f"final return, best setting (mean ± std{_pct(best_return)})",
                f"final return, all runs (mean ± std{_pct(best_return)})",
                "fraction of runs reaching threshold"],
        rows=rows,
        caption=f"{_policy_title(policy)}: best hyperparameters by AUC",
    )


def _final_cell(final: float, stats: tuple[float, int] | None, best_return: float | None) -> str:
    """A run's final return, ± its standard error where a final evaluation gives one."""
    if stats is None:
        return fmt(final) + of_optimum(final, best_return)
    se, episodes = stats
    return f"{fmt(final)} ± {fmt(se)}{of_optimum(final, best_return)} (final evaluation, ≥{episodes} per task)"


def _finals_table(summaries: list[metrics.AlgoSummary], runs_by_id: dict[str, Run], policy: str,
                  best_return: float | None = None) -> doc.Table:
    rows = []
    for s in summaries:
        for rank, (run_id, final) in enumerate(s.sorted_finals(), 1):
            r = runs_by_id[run_id]
            rows.append([style.display_name(s.algo), str(rank), _run_cell(r), fmt_hparam(r.learning_rate),
                         fmt_hparam(r.entropy_cost), "?" if r.seed is None else str(r.seed),
                         _final_cell(final, s.final_stats.get(run_id), best_return)])
    return doc.Table(
        header=["algorithm", "rank", "run", "learning rate", "entropy cost", "seed",
                f"final return{' (' + _pct(best_return)[2:] + ')' if best_return else ''}"],
        rows=rows,
        caption=f"{_policy_title(policy)}: final return of every run, best to worst ({_PANELS[policy][1]})",
    )


def _settings_table(task: list[metrics.AlgoSummary], distilled: list[metrics.AlgoSummary],
                    best_return: float | None = None) -> doc.Table:
    rows = []
    for ts, ds in zip(task, distilled, strict=True):
        dist = {s.hparams: s for s in ds.settings}
        for s in ts.settings:
            d = dist.get(s.hparams)
            mark = " (best)" if ts.best is s else ""
            rows.append([style.display_name(ts.algo), fmt_hparam(s.hparams[0]), fmt_hparam(s.hparams[1]),
                         str(len(s.runs)), fmt(s.auc) + mark, _mean_std(s.finals, best_return),
                         fmt(d.auc) + (" (best)" if d is not None and ds.best is d else "") if d else "n/a",
                         _mean_std(d.finals, best_return) if d else "n/a"])
    return doc.Table(
        header=["algorithm", "learning rate", "entropy cost", "runs", "AUC (task)", "final (task)",
                "AUC (distilled)", "final (distilled)"],
        rows=rows,
        caption="Every hyperparameter setting",
    )


def experiment_section(experiment: str, runs: list[Run], out_dir: str, results: dict,
                       options: Options) -> list[doc.Block]:
    """Figures and tables of one experiment; fills ``results`` with its numbers."""
    from distral_tf.reporting import plots

    grid = metrics.make_grid(runs, options.num_bins)
    algos = sorted({r.algo for r in runs}, key=style.sort_key)
    summaries = {p: [metrics.summarize(runs, a, p, grid, options.final_fraction) for a in algos]
                 for p in POLICIES}
    threshold = _threshold(summaries["task"], options)
    slug = _slug(experiment)
    task_names = []
    for r in runs:
        task_names += [t for t in r.task_names if t not in task_names]

    files = {
        "figure4": f"{slug}_figure4.png",
        "A1": f"{slug}_A1_task_curves.png",
        "A2": f"{slug}_A2_task_final_returns.png",
        "B1": f"{slug}_B1_distilled_curves.png",
        "B2": f"{slug}_B2_distilled_final_returns.png",
        "tasks_task": f"{slug}_per_task_task_policies.png",
        "tasks_distilled": f"{slug}_per_task_distilled.png",
    }
    path = lambda key: os.path.join(out_dir, files[key])
    random_returns, random_source = random_policy.reference_returns(
        experiment, out_dir, options.random_episodes, options.random_seed, options.random_seconds)
    measured = [random_returns[t] for t in task_names if random_returns and t in random_returns]
    reference = random_policy.over_tasks(measured) if measured else None
    optimal_returns, optimum_source = optimum.optimal_returns(experiment)
    known = [optimal_returns[t] for t in task_names if optimal_returns and t in optimal_returns]
    best_return = sum(known) / len(known) if optimal_returns and len(known) == len(task_names) else None
    unfinished = frozenset(r.run_id for r in runs if r.state in UNFINISHED_STATES)
    plots.figure4(path("figure4"), summaries["task"], summaries["distilled"], grid, experiment, reference,
                  unfinished, best_return)
    for policy in POLICIES:
        curves_panel, finals_panel = _PANELS[policy]
        title = run_files.policy_title(policy)
        plots.curves_figure(path(curves_panel), summaries[policy], grid,
                            f"{experiment} {curves_panel}: {title}, best hyperparameters", reference, best_return)
        plots.sorted_finals_figure(path(finals_panel), summaries[policy],
                                   f"{experiment} {finals_panel}: {title}, final return of every run", reference,
                                   unfinished, best_return)
        plots.per_task_figure(path(f"tasks_{policy}"), summaries[policy], grid, task_names,
                              f"{experiment}: {title} per task (best hyperparameters; band = std over runs)",
                              random_returns, optimal_returns)

    states = collections.Counter(r.state for r in runs)
    empty = [r.run_id for r in runs if not r.has("task")]
    blocks: list[doc.Block] = [
        doc.Heading(2, f"Experiment `{experiment}`"),
        doc.Paragraph(
            f"{len(runs)} runs ({', '.join(f'{n} {s}' for s, n in sorted(states.items()))}), "
            f"{len(task_names)} tasks: {', '.join(f'`{t}`' for t in task_names) or 'none'}. "
            f"Step grid: {grid.num_bins} bins over 0 to {grid.horizon:.4g} steps per task. "
            f"Threshold: final return ≥ {fmt(threshold)}."),
    ]
    if empty:
        blocks.append(doc.Paragraph(
            f"Runs without task-policy episodes yet (left out of the figures): "
            f"{', '.join(f'`{r}`' for r in empty)}."))
    if unfinished:
        blocks.append(doc.Paragraph(
            f"Runs that did not finish (their curves stop early; circled in A2 and B2): "
            f"{', '.join(_run_cell(r) for r in runs if r.run_id in unfinished)}."))
    if random_returns and reference is not None:
        per_task = ", ".join(f"`{t}` {random_returns[t].text()} ({random_returns[t].episodes} episodes)"
                             for t in task_names if t in random_returns)
        limit = f" or {options.random_seconds:g} s" if options.random_seconds > 0 else ""
        blocks.append(doc.Paragraph(
            f"Random policy (the line on every return plot, in a band of ±1 standard error): uniformly random "
            f"actions, up to {options.random_episodes} episodes{limit} per task, seed {options.random_seed} "
            f"({random_source}): mean over tasks {reference.text()} (mean ± standard error); per task: "
            f"{per_task}."))
    else:
        blocks.append(doc.Paragraph(f"Random policy: {random_source}; the plots have no reference line."))
    if best_return is not None:
        per_task = ", ".join(f"`{t}` {fmt(optimal_returns[t])}" for t in task_names)
        blocks.append(doc.Paragraph(
            f"Best achievable return (the upper line on every return plot; final returns are followed by "
            f"their percentage of it): {optimum_source}: mean over tasks {fmt(best_return)}; {per_task}."))
    else:
        blocks.append(doc.Paragraph(f"Best achievable return: {optimum_source}; the plots have no line for it."))
    no_distilled = [style.display_name(s.algo) for s in summaries["distilled"] if not s.finals]
    if no_distilled:
        blocks.append(doc.Paragraph(f"No distilled-policy evaluations for: {', '.join(no_distilled)}."))
    blocks += [
        doc.Image(files["figure4"], f"{experiment}: Figure 4 panels A1, A2, B1, B2"),
        doc.Heading(3, "Task policies (A1, A2)"),
        _summary_table(summaries["task"], threshold, "task", best_return),
        doc.Image(files["A1"], "A1"), doc.Image(files["A2"], "A2"),
        doc.Heading(3, "Distilled policy (B1, B2)"),
        _summary_table(summaries["distilled"], threshold, "distilled", best_return),
        doc.Image(files["B1"], "B1"), doc.Image(files["B2"], "B2"),
        doc.Heading(3, "Per-task curves"),
        doc.Image(files["tasks_task"], "task policies per task"),
        doc.Image(files["tasks_distilled"], "distilled policy per task"),
        doc.Heading(3, "Final return of every run"),
    ]
    runs_by_id = {r.run_id: r for r in runs}
    blocks += [_finals_table(summaries[p], runs_by_id, p, best_return) for p in POLICIES]
    blocks += [doc.Heading(3, "Hyperparameter settings"),
               _settings_table(summaries["task"], summaries["distilled"], best_return)]

    results[experiment] = {
        "horizon": grid.horizon,
        "num_bins": grid.num_bins,
        "threshold": None if math.isnan(threshold) else threshold,
        "figures": files,
        "random_policy": None if reference is None else {
            "returns": {t: r.mean for t, r in random_returns.items()},
            "standard_errors": {t: r.stderr for t, r in random_returns.items()},
            "episodes": {t: r.episodes for t, r in random_returns.items()},
            "mean": reference.mean, "standard_error": reference.stderr,
            "max_episodes": options.random_episodes, "seconds": options.random_seconds,
            "seed": options.random_seed},
        "optimal_return": None if best_return is None else {"returns": optimal_returns, "mean": best_return},
        "unfinished_runs": sorted(unfinished),
        "policies": {
            p: {
                s.algo: {
                    "best": None if s.best is None else {
                        "learning_rate": s.best.hparams[0], "entropy_cost": s.best.hparams[1],
                        "auc": s.best.auc, "finals": s.best.finals},
                    "sorted_finals": s.sorted_finals(),
                    "final_standard_errors": {run_id: se for run_id, (se, _) in s.final_stats.items()},
                    "sorted_finals_fraction_of_optimum": None if best_return is None else [
                        (run_id, final / best_return) for run_id, final in s.sorted_finals()],
                    "fraction_reaching_threshold": (
                        None if not s.finals or math.isnan(threshold)
                        else metrics.fraction_reaching(s, threshold)),
                    "num_runs": s.num_runs,
                }
                for s in summaries[p]
            }
            for p in POLICIES
        },
    }
    return blocks


def build_report(runs_dir: str, out_dir: str, options: Options = Options()) -> dict:
    """Writes the report of every run under ``runs_dir`` into ``out_dir``; returns its numbers."""
    runs = load_runs(runs_dir)
    os.makedirs(out_dir, exist_ok=True)
    by_experiment: dict[str, list[Run]] = collections.defaultdict(list)
    for r in runs:
        by_experiment[r.suite].append(r)

    title = "Distral reproduction report"
    blocks: list[doc.Block] = [
        doc.Heading(1, title),
        doc.Paragraph(
            f"Runs from `{runs_dir}`: {len(runs)} runs in {len(by_experiment)} "
            f"experiment(s); generated {datetime.datetime.now().isoformat(timespec='seconds')}. "
            "x-axes: environment steps per task."),
        doc.Heading(2, "Definitions"),
        doc.Bullets(definitions(options.num_bins, options.final_fraction)),
    ]
    results: dict = {}
    for experiment in sorted(by_experiment):
        blocks += experiment_section(experiment, by_experiment[experiment], out_dir, results, options)
    blocks += [
        doc.Heading(2, "Runs"),
        doc.Table(
            header=["run", "algorithm", "experiment", "state", "source", "task episodes",
                    "distilled episodes", "commit"],
            rows=[[f"`{r.run_id}`", style.display_name(r.algo), r.suite, r.state, r.source,
                   str(sum(len(e.steps) for (p, _), e in r.episodes.items() if p == "task")),
                   str(sum(len(e.steps) for (p, _), e in r.episodes.items() if p == "distilled")),
                   f"`{r.git_commit[:12]}{'+changes' if r.git_commit.endswith('+changes') else ''}`"
                   if r.git_commit else "not recorded"]
                  for r in runs]),
    ]
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(doc.to_markdown(blocks))
    with open(os.path.join(out_dir, "index.html"), "w") as f:
        f.write(doc.to_html(blocks, title))
    summary = {"runs_dir": runs_dir, **dataclasses.asdict(options), "experiments": results}
    run_files.write_json_atomically(os.path.join(out_dir, "summary.json"), summary)
    return summary


def main(argv):
    cli.refuse_positional(argv)
    if not FLAGS.runs or not FLAGS.out:
        cli.fail("--runs and --out are required.")
    if FLAGS.threshold is not None and not math.isfinite(FLAGS.threshold):
        cli.fail(f"--threshold must be a finite number, got {FLAGS.threshold}.")
    if not math.isfinite(FLAGS.random_seconds):
        cli.fail(f"--random_seconds must be a finite number >= 0 (0: no limit), got {FLAGS.random_seconds}.")
    try:
        options = Options(FLAGS.num_bins, FLAGS.final_fraction, FLAGS.threshold, FLAGS.threshold_fraction,
                          FLAGS.random_episodes, FLAGS.random_seed, FLAGS.random_seconds)
        summary = build_report(FLAGS.runs, FLAGS.out, options)
    except (OSError, ValueError) as e:
        cli.fail(str(e))
    print(f"Report written to {os.path.join(os.path.abspath(FLAGS.out), 'index.html')} "
          f"({len(summary['experiments'])} experiment(s)).")
    return 0


if __name__ == "__main__":
    define_flags()
    cli.run(main)
