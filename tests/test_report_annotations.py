"""What the report adds for its reader: the random-policy line and its error, axes, run states, one-run spreads,
pi_0 styles."""

import dataclasses
import json
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from distral_tf import report  # noqa: E402
from distral_tf.envs import make_suite  # noqa: E402
from distral_tf.reporting import metrics, plots, random_policy  # noqa: E402
from distral_tf.reporting.runs import load_runs  # noqa: E402
from distral_tf.training import provenance  # noqa: E402

SUITE = "two_rooms_small"  # a real suite, so that the random policy can be measured (40-step episodes)
STEPS = np.arange(100, 5001, 100)


def _rows(tasks, seed, policies=("task", "distilled")):
    rows = []
    for i, task in enumerate(tasks):
        for policy in policies:
            for s in STEPS:
                ret = (0.3 if policy == "distilled" else 1.0) * (1 - np.exp(-s / 2000)) + 0.1 * i + 0.05 * seed
                rows.append({"task": task, "task_index": i, "policy": policy, "env_steps": int(s),
                             "return": float(ret), "length": 40, "wall_time": 1.7e9 + s})
    return rows


def _write_run(root, name, algo, seed, tasks, status, config_extra=None):
    path = os.path.join(root, name)
    os.makedirs(path)
    flags = {"algo": algo, "suite": SUITE, "learning_rate": 1e-3, "entropy_cost": 0.01, "seed": seed}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({"flags": flags, "algo": algo, "suite": SUITE, "task_names": list(tasks),
                   **(config_extra or {})}, f)
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in _rows(tasks, seed))
    with open(os.path.join(path, "status.json"), "w") as f:
        json.dump(status, f)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tasks = make_suite(SUITE).task_names
    root = str(tmp_path_factory.mktemp("runs"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_run(root, "a3c-s0", "a3c", 0, tasks, {"state": "finished"},
               {"git_commit": "0123456789abcdef0123456789abcdef01234567", "git_dirty": True})
    # Says running, but its process is gone: crashed.
    _write_run(root, "a3c-s1", "a3c", 1, tasks, {"state": "running", "pid": dead.pid, "host": os.uname().nodename})
    _write_run(root, "kl_2col-s0", "kl_2col", 0, tasks, {"state": "interrupted"})
    out = str(tmp_path_factory.mktemp("report"))
    options = report.Options(num_bins=10, random_episodes=3)
    return root, out, options, report.build_report(root, out, options)


def test_random_policy_is_measured_once_and_reused(sweep):
    root, out, options, summary = sweep
    measured = summary["experiments"][SUITE]["random_policy"]
    tasks = make_suite(SUITE).task_names
    assert sorted(measured["returns"]) == sorted(tasks) and set(measured["episodes"].values()) == {3}
    # Seeded: measuring again gives the same numbers.
    again = random_policy.measure(make_suite(SUITE), 3, options.random_seed)
    assert {t: r.mean for t, r in again.items()} == measured["returns"]
    assert measured["mean"] == pytest.approx(np.mean(list(measured["returns"].values())))
    errors = list(measured["standard_errors"].values())
    assert measured["standard_error"] == pytest.approx(np.sqrt(np.sum(np.square(errors))) / len(errors))
    md = open(os.path.join(out, "report.md")).read()
    assert "Random policy (the line on every return plot, in a band of ±1 standard error)" in md
    assert "measured now" in md and "(3 episodes)" in md
    reference = random_policy.RandomReturn(measured["mean"], measured["standard_error"], 9)
    assert f"mean over tasks {reference.text()} (mean ± standard error)" in md

    # A second report in the same directory reads the kept values instead of measuring.
    cache_path = os.path.join(out, random_policy.CACHE_FILE)
    cache = json.load(open(cache_path))
    for entry in cache[SUITE]["tasks"].values():
        entry["mean"] = 123.0
    json.dump(cache, open(cache_path, "w"))
    again = report.build_report(root, out, options)["experiments"][SUITE]["random_policy"]
    assert again["mean"] == 123.0
    assert "cached in" in open(os.path.join(out, "report.md")).read()
    # Other settings are measured anew rather than read from a measurement made with fewer episodes.
    more = dataclasses.replace(options, random_episodes=4)
    assert set(report.build_report(root, out, more)["experiments"][SUITE]["random_policy"]["episodes"].values()) \
        == {4}


def test_random_policy_standard_error_and_time_budget():
    suite = make_suite(SUITE)
    full = random_policy.measure(suite, 6, seed=3)
    for r in full.values():
        assert r.episodes == 6 and r.stderr > 0
    # A budget spent after the first episode still plays MIN_EPISODES, the first episodes of the same stream.
    cut = random_policy.measure(suite, 6, seed=3, seconds=1e-9)
    assert cut == random_policy.measure(suite, random_policy.MIN_EPISODES, seed=3)
    assert {r.episodes for r in cut.values()} == {random_policy.MIN_EPISODES}
    # Standard error of the mean: sample standard deviation / sqrt(n).
    r = random_policy.of_episodes([1.0, 2.0, 6.0])
    assert (r.mean, r.episodes) == (3.0, 3) and r.stderr == pytest.approx(np.sqrt(7.0 / 3.0))
    assert np.isnan(random_policy.of_episodes([2.0]).stderr)
    assert random_policy.RandomReturn(1.2345, 0.041, 300).text() == "1.234 ± 0.041"
    assert random_policy.RandomReturn(15.0, 1.3, 30).text() == "15.0 ± 1.3"


def test_unknown_suite_gets_no_line_and_a_reason(tmp_path):
    returns, reason = random_policy.reference_returns("no_such_suite", str(tmp_path), 2, 0)
    assert returns is None and reason.startswith("not measured (ValueError")
    assert random_policy.reference_returns(SUITE, str(tmp_path), 0, 0)[0] is None


def _summaries(root, policy, grid_bins=10):
    runs = load_runs(root)
    grid = metrics.make_grid(runs, grid_bins)
    return [metrics.summarize(runs, a, policy, grid, 0.1) for a in ("a3c", "kl_2col")], grid


REFERENCE = random_policy.RandomReturn(0.25, 0.04, 300)


def test_every_return_plot_draws_the_reference_line_in_its_standard_error_band(sweep):
    root, *_ = sweep
    task, grid = _summaries(root, "task")
    fig, axes = plt.subplots(1, 2)
    plots.draw_curves(axes[0], task, grid, "A1", reference=REFERENCE)
    plots.draw_sorted_finals(axes[1], task, "A2", reference=REFERENCE)
    for ax in axes:
        (line,) = [ln for ln in ax.get_lines() if ln.get_label() == plots.reference_label(REFERENCE)]
        assert list(line.get_ydata()) == [0.25, 0.25]
        assert "0.250 ± 0.040" in line.get_label()
        bands = [p for p in ax.patches if p.get_y() == pytest.approx(0.21)]
        assert len(bands) == 1 and bands[0].get_height() == pytest.approx(0.08)
    plt.close(fig)


def _one_run_root(tmp_path):
    root = str(tmp_path / "runs")
    _write_run(root, "a3c-s0", "a3c", 0, make_suite(SUITE).task_names, {"state": "finished"})
    return root


def test_a_single_run_plot_shows_zero_and_the_random_line_and_integer_ranks(tmp_path):
    task, grid = _summaries(_one_run_root(tmp_path), "task")
    (final,) = [f for s in task for _, f in s.sorted_finals()]
    reference = random_policy.RandomReturn(final - 0.1, 0.01, 300)  # just below the run
    fig, axes = plt.subplots(1, 2)
    plots.draw_curves(axes[0], task, grid, "A1", reference=reference)
    plots.draw_sorted_finals(axes[1], task, "A2", reference=reference)
    fig.canvas.draw()
    for ax in axes:
        low, high = ax.get_ylim()
        # Zero is in view, so 0.1 above random is 0.1 of a range of more than the run's return.
        assert low <= 0 < reference.mean < final < high
        assert high - low > final
    lo, hi = axes[1].get_xlim()
    ranks = [t for t in axes[1].get_xticks() if lo <= t <= hi]
    assert ranks == [1.0]
    plt.close(fig)


def test_per_task_panels_name_each_tasks_random_return(sweep, monkeypatch):
    root, *_ = sweep
    task, grid = _summaries(root, "task")
    names = make_suite(SUITE).task_names
    references = {t: random_policy.RandomReturn(0.1 * i, 0.01, 50) for i, t in enumerate(names)}
    saved = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: saved.append(fig))
    plots.per_task_figure("unused.png", task, grid, names, "per task", references)
    (fig,) = saved
    titles = [ax.get_title() for ax in fig.axes[:len(names)]]
    assert titles == [f"{t}\nrandom policy {references[t].text()}" for t in names]
    plt.close(fig)


def test_untrained_pi0_is_drawn_unlike_the_task_policies(sweep):
    root, *_ = sweep
    task, grid = _summaries(root, "task")
    distilled, _ = _summaries(root, "distilled")
    fig, ax = plt.subplots()
    plots.draw_curves(ax, task + distilled, grid, "both")
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    a3c, untrained, kl = lines["A3C"], lines["A3C (untrained net)"], lines["KL 2col"]
    assert a3c.get_color() == untrained.get_color()  # same algorithm, same colour
    assert (a3c.get_linestyle(), a3c.get_marker()) != (untrained.get_linestyle(), untrained.get_marker())
    assert untrained.get_marker() not in ("None", "", None)
    # A trained pi_0 is drawn like its algorithm's task policies.
    assert kl.get_linestyle() == "-"
    plt.close(fig)


def test_unfinished_runs_are_marked(sweep):
    root, out, _, summary = sweep
    assert summary["experiments"][SUITE]["unfinished_runs"] == ["a3c-s1", "kl_2col-s0"]
    md = open(os.path.join(out, "report.md")).read()
    assert "`a3c-s1` (crashed)" in md and "`kl_2col-s0` (interrupted)" in md
    assert "`a3c-s0` (" not in md  # a finished run carries no mark
    task, _ = _summaries(root, "task")
    fig, ax = plt.subplots()
    plots.draw_sorted_finals(ax, task, "A2", unfinished=frozenset({"a3c-s1", "kl_2col-s0"}))
    circled = [ln for ln in ax.get_lines() if ln.get_label() == plots.UNFINISHED_LABEL]
    assert sum(len(ln.get_xdata()) for ln in circled) == 2
    plt.close(fig)


def test_a_single_run_has_no_spread(sweep):
    _, out, _, _ = sweep
    md = open(os.path.join(out, "report.md")).read()
    assert "± 0.0000" not in md
    assert "(1 run)" in md  # kl_2col has one run
    assert "± " in md  # a3c has two


def test_the_runs_table_shows_the_recorded_commit(sweep):
    _, out, _, _ = sweep
    md = open(os.path.join(out, "report.md")).read()
    assert "`0123456789ab+changes`" in md and "not recorded" in md


def test_git_commit_is_read_from_a_checkout_only(tmp_path):
    assert provenance.git_provenance(str(tmp_path)) == {}
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b", "GIT_COMMITTER_NAME": "a",
           "GIT_COMMITTER_EMAIL": "a@b"}
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert provenance.git_provenance(str(repo)) == {"git_commit": sha, "git_dirty": False}


def test_the_best_achievable_return_is_drawn_and_every_final_is_given_as_a_fraction_of_it(sweep):
    root, out, _, summary = sweep
    suite = make_suite(SUITE)
    expected = suite.optimal_returns()
    best = summary["experiments"][SUITE]["optimal_return"]
    assert best["returns"] == expected and best["mean"] == pytest.approx(np.mean(list(expected.values())))
    # Every final return of the report, with the percentage of the optimum that it is.
    md = open(os.path.join(out, "report.md")).read()
    finals = summary["experiments"][SUITE]["policies"]
    for policy in ("task", "distilled"):
        for s in finals[policy].values():
            fractions = dict(s["sorted_finals_fraction_of_optimum"])
            for run_id, final in s["sorted_finals"]:
                assert fractions[run_id] == pytest.approx(final / best["mean"])
                assert f"{final:.4f} ({100 * final / best['mean']:.1f}%)" in md
    task, grid = _summaries(root, "task")
    fig, axes = plt.subplots(1, 2)
    plots.draw_curves(axes[0], task, grid, "A1", optimum=best["mean"])
    plots.draw_sorted_finals(axes[1], task, "A2", optimum=best["mean"])
    for ax in axes:
        (line,) = [ln for ln in ax.get_lines() if ln.get_label() == plots.OPTIMUM_LABEL]
        assert list(line.get_ydata()) == [best["mean"]] * 2
    plt.close(fig)
    # A random policy is far below it.
    assert summary["experiments"][SUITE]["random_policy"]["mean"] < best["mean"] / 2


def test_a_suite_that_cannot_compute_the_optimum_gets_no_line(tmp_path):
    from distral_tf.reporting import optimum

    returns, reason = optimum.optimal_returns("no_such_suite")
    assert returns is None and reason.startswith("unknown (ValueError")
    plain = dataclasses.replace(make_suite(SUITE), optimal_return=None)
    returns, reason = optimum.optimal_returns(SUITE, make_suite=lambda name: plain)
    assert returns is None and "cannot compute" in reason
    fig, ax = plt.subplots()
    plots.draw_curves(ax, [], metrics.Grid(100.0, 4), "A1", optimum=None)
    assert not [ln for ln in ax.get_lines() if ln.get_label() == plots.OPTIMUM_LABEL]
    plt.close(fig)


def test_return_axes_hold_the_random_band_the_best_achievable_return_and_zero(sweep, monkeypatch):
    root, _, _, summary = sweep
    task, grid = _summaries(root, "task")
    best = summary["experiments"][SUITE]["optimal_return"]
    highest = max(f for s in task for _, f in s.sorted_finals())
    assert best["mean"] > highest  # only the optimum's line reaches that high
    fig, axes = plt.subplots(1, 2)
    plots.draw_curves(axes[0], task, grid, "A1", reference=REFERENCE, optimum=best["mean"])
    plots.draw_sorted_finals(axes[1], task, "A2", reference=REFERENCE, optimum=best["mean"])
    for ax in axes:
        labels = [ln.get_label() for ln in ax.get_lines()]
        assert plots.reference_label(REFERENCE) in labels and plots.OPTIMUM_LABEL in labels
        low, high = ax.get_ylim()
        assert low <= 0 < REFERENCE.mean - REFERENCE.stderr and best["mean"] < high
    plt.close(fig)
    # The per-task panels likewise, each with its own task's lines.
    names = make_suite(SUITE).task_names
    references = {t: random_policy.RandomReturn(0.2, 0.02, 300) for t in names}
    saved = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: saved.append(fig))
    plots.per_task_figure("unused.png", task, grid, names, "per task", references, best["returns"])
    (fig,) = saved
    for ax, t in zip(fig.axes[:len(names)], names, strict=True):
        optimum = [ln for ln in ax.get_lines() if ln.get_label() == plots.OPTIMUM_LABEL]
        assert [list(ln.get_ydata()) for ln in optimum] == [[best["returns"][t]] * 2]
        assert plots.REFERENCE_LABEL in [ln.get_label() for ln in ax.get_lines()]
        assert ax.get_ylim()[0] <= 0 and best["returns"][t] < ax.get_ylim()[1]
    plt.close(fig)
