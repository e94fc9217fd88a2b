"""The distilled policy's final evaluation: its episodes give B1/B2's final returns and end B1's curves."""

import json
import math
import os

import numpy as np
import pytest

from distral_tf import report
from distral_tf.reporting import metrics
from distral_tf.reporting.runs import load_runs

SUITE = "synthetic_rooms"
TASKS = ["t0", "t1", "t2"]
LAST = 30_000
EVAL_STEPS = np.arange(3_000, 27_001, 3_000)  # periodic evaluations: two episodes each, the last near 90%
FINAL_EPISODES = 30


def _rows(seed, final):
    rng = np.random.default_rng(seed)
    rows = []
    for i, task in enumerate(TASKS):
        row = {"task": task, "task_index": i, "length": 40}
        for s in range(1_000, LAST + 1, 1_000):
            rows.append({**row, "policy": "task", "env_steps": s, "return": 5.0 + i, "wall_time": 1.7e9 + s})
        for s in EVAL_STEPS:
            for _ in range(2):
                rows.append({**row, "policy": "distilled", "env_steps": int(s), "return": float(rng.integers(0, 4)),
                             "wall_time": 1.7e9 + s})
        if final:  # many more episodes at the last step, at a level the periodic ones never reach
            for _ in range(FINAL_EPISODES + i):
                rows.append({**row, "policy": "distilled", "env_steps": LAST, "return": float(rng.integers(8, 13)),
                             "wall_time": 1.7e9 + LAST, "final": True})
    return rows


def _write(root, name, algo, seed, rows):
    path = os.path.join(root, name)
    os.makedirs(path)
    flags = {"algo": algo, "suite": SUITE, "learning_rate": 1e-3, "entropy_cost": 0.01, "seed": seed}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({"flags": flags, "algo": algo, "suite": SUITE, "task_names": TASKS}, f)
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with open(os.path.join(path, "status.json"), "w") as f:
        json.dump({"state": "finished"}, f)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("runs"))
    rows = {"new-s0": _rows(0, final=True), "new-s1": _rows(1, final=True), "old-s0": _rows(2, final=False)}
    for name, r in rows.items():
        _write(root, name, "kl_2col" if name.startswith("new") else "kl_1col", int(name[-1]), r)
    out = str(tmp_path_factory.mktemp("report"))
    return root, rows, out, report.build_report(root, out, report.Options(num_bins=10, random_episodes=0))


def _by_task(rows, policy, final=None):
    out = {}
    for r in rows:
        if r["policy"] == policy and (final is None or r.get("final", False) == final):
            out.setdefault(r["task"], []).append((r["env_steps"], r["return"]))
    return out


def test_final_returns_come_from_the_final_evaluation_with_their_standard_error(sweep):
    root, rows, out, summary = sweep
    policies = summary["experiments"][SUITE]["policies"]["distilled"]
    for name in ("new-s0", "new-s1"):
        final = _by_task(rows[name], "distilled", final=True)
        per_task = [np.mean([r for _, r in final[t]]) for t in TASKS]
        se = math.sqrt(sum(np.var([r for _, r in final[t]], ddof=1) / len(final[t]) for t in TASKS)) / len(TASKS)
        assert dict(policies["kl_2col"]["sorted_finals"])[name] == pytest.approx(np.mean(per_task))
        assert policies["kl_2col"]["final_standard_errors"][name] == pytest.approx(se)
        assert 8 <= np.mean(per_task) <= 12  # the final episodes' level, not the periodic ones'
    md = open(os.path.join(out, "report.md")).read()
    assert f"(final evaluation, ≥{FINAL_EPISODES} per task)" in md


def test_a_run_without_a_final_evaluation_keeps_the_last_fraction_rule(sweep):
    root, rows, _, summary = sweep
    (old_final,) = [f for run_id, f in summary["experiments"][SUITE]["policies"]["distilled"]["kl_1col"]
                    ["sorted_finals"] if run_id == "old-s0"]
    per_task = []
    for pts in _by_task(rows["old-s0"], "distilled").values():
        last = max(s for s, _ in pts)
        per_task.append(np.mean([r for s, r in pts if s >= 0.9 * last]))
    assert old_final == pytest.approx(np.mean(per_task))
    assert "old-s0" not in summary["experiments"][SUITE]["policies"]["distilled"]["kl_1col"]["final_standard_errors"]
    run = next(r for r in load_runs(root) if r.run_id == "old-s0")
    se, episodes = metrics.final_evaluation_stats(run, "distilled")
    assert run.final_evaluation == {} and math.isnan(se) and episodes == 0


def test_the_final_evaluation_is_the_last_point_of_the_curves(sweep):
    root, rows, _, _ = sweep
    runs = {r.run_id: r for r in load_runs(root)}
    grid = metrics.make_grid(list(runs.values()), 10)
    assert grid.horizon == LAST
    for name in ("new-s0", "new-s1"):
        curve = metrics.run_curve(runs[name], "distilled", grid)
        # The last bin holds the final evaluation's episodes only (the periodic ones stop at 90%).
        last_bin = [np.mean([r for s, r in pts if grid.bin_of([s])[0] == grid.num_bins - 1])
                    for pts in _by_task(rows[name], "distilled").values()]
        assert curve[-1] == pytest.approx(np.mean(last_bin)) and curve[-1] > np.nanmax(curve[:-1])
        # Every periodic evaluation is a point of the curve as well (one per bin).
        assert np.sum(~np.isnan(curve)) == grid.num_bins
    old = metrics.run_curve(runs["old-s0"], "distilled", grid)
    assert np.isnan(old[-1])  # no episode after the last periodic evaluation


def test_b2_draws_the_standard_errors_of_final_evaluations(sweep):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from distral_tf.reporting import plots

    root, *_ = sweep
    runs = load_runs(root)
    grid = metrics.make_grid(runs, 10)
    summaries = [metrics.summarize(runs, a, "distilled", grid, 0.1) for a in ("kl_2col", "kl_1col")]
    fig, ax = plt.subplots()
    plots.draw_sorted_finals(ax, summaries, "B2")
    (bars,) = ax.collections  # one set of error bars: kl_2col's two runs; kl_1col's run has none
    segments = bars.get_segments()
    expected = sorted(se for se, _ in summaries[0].final_stats.values())
    assert sorted((seg[1][1] - seg[0][1]) / 2 for seg in segments) == pytest.approx(expected)
    plt.close(fig)
