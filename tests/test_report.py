"""The report on a synthetic sweep with known learning curves."""

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from distral_tf import report
from distral_tf.reporting import runs as runs_lib

SUITE = "synthetic_mazes"
TASKS = ["t0", "t1", "t2"]
LRS = [1e-4, 5e-4]
ENTS = [1e-3, 1e-2]
SEEDS = [0, 1]
STEPS = np.arange(1000, 100_001, 1000)  # task-policy episodes end every 1000 steps
EVAL_STEPS = np.arange(10_000, 100_001, 10_000)  # distilled evaluations
SETTINGS = [(lr, ent) for lr in LRS for ent in ENTS]
# The setting each algorithm learns best with (task policies, distilled policy).
BEST = {
    "a3c": ((5e-4, 1e-2), None),  # a3c has no distilled rows in this sweep
    "a3c_multitask": ((1e-4, 1e-2), (5e-4, 1e-3)),
    "kl_2col": ((1e-4, 1e-3), (1e-4, 1e-3)),
}
BASE = {"a3c": 4.0, "a3c_multitask": 3.0, "kl_2col": 6.0}
TASK_OFFSET = {"t0": 0.0, "t1": 1.0, "t2": -0.5}


def run_id(algo, lr, ent, seed):
    return f"{algo}-lr{lr:g}-ent{ent:g}-s{seed}"


def level(algo, setting, best):
    """Asymptotic return: the best setting is clearly above the others."""
    return BASE[algo] * (1.0 if setting == best else 0.3 + 0.1 * SETTINGS.index(setting))


def curve(steps, lvl, task, seed):
    jitter = 0.2 * np.sin(steps / 700.0 + seed)
    return lvl * (1 - np.exp(-steps / 30_000.0)) + TASK_OFFSET[task] + 0.1 * seed + jitter


def synthetic_rows(algo, lr, ent, seed):
    best_task, best_distilled = BEST[algo]
    rows = []
    for i, task in enumerate(TASKS):
        for s, r in zip(STEPS, curve(STEPS, level(algo, (lr, ent), best_task), task, seed), strict=True):
            rows.append({"task": task, "task_index": i, "policy": "task", "env_steps": int(s),
                         "return": float(r), "length": 100, "wall_time": 1.7e9 + s})
        if best_distilled is not None:
            lvl = 0.5 * level(algo, (lr, ent), best_distilled)
            for s, r in zip(EVAL_STEPS, curve(EVAL_STEPS, lvl, task, seed), strict=True):
                for k in range(2):  # two evaluation episodes per evaluation
                    rows.append({"task": task, "task_index": i, "policy": "distilled", "env_steps": int(s),
                                 "return": float(r) + 0.01 * k, "length": 100, "wall_time": 1.7e9 + s})
    return rows


def write_run(root, algo, lr, ent, seed, rows, state="finished"):
    path = os.path.join(root, run_id(algo, lr, ent, seed))
    os.makedirs(path)
    flags_ = {"algo": algo, "suite": SUITE, "learning_rate": lr, "entropy_cost": ent, "seed": seed,
              "total_env_steps": int(STEPS[-1]) * len(TASKS), "workers_per_task": 2}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({"version": "0.1.0", "flags": flags_, "task_names": TASKS, "algo": algo, "suite": SUITE}, f)
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with open(os.path.join(path, "status.json"), "w") as f:
        json.dump({"state": state, "env_steps": max([r["env_steps"] for r in rows], default=0)}, f)
    return path


def expected_final(rows, policy, fraction=0.1):
    """Independent final return: per task, mean over the last 10% of its steps; mean over tasks."""
    per_task = []
    for task in TASKS:
        pts = [(r["env_steps"], r["return"]) for r in rows if r["policy"] == policy and r["task"] == task]
        if pts:
            last = max(s for s, _ in pts)
            per_task.append(np.mean([ret for s, ret in pts if s >= (1 - fraction) * last]))
    return float(np.mean(per_task)) if per_task else math.nan


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("sweep") / "runs")
    all_rows = {}
    for algo in BEST:
        for lr, ent in SETTINGS:
            for seed in SEEDS:
                rows = synthetic_rows(algo, lr, ent, seed)
                write_run(root, algo, lr, ent, seed, rows)
                all_rows[(algo, lr, ent, seed)] = rows
    # A run that has started but logged no episode yet.
    write_run(root, "kl_2col", 1e-4, 1e-3, 7, [], state="running")
    with open(os.path.join(root, "kl_2col-lr0.0001-ent0.001-s7", "metrics.jsonl"), "a") as f:
        f.write('{"task": "t0", "policy": "task", "env_st')  # cut short by a crash
    return root, all_rows


@pytest.fixture(scope="module")
def built(sweep, tmp_path_factory):
    root, _ = sweep
    out = str(tmp_path_factory.mktemp("report"))
    return out, report.build_report(root, out)


def _table_after(md, caption_start):
    """Rows (lists of cells) of the Markdown table whose caption starts with ``caption_start``."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"*{caption_start}"))
    rows = []
    for line in lines[start + 3:]:  # caption, blank line, header
        if not line.startswith("|"):
            break
        if set(line) <= set("|-"):
            continue
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows


def _expected_best(all_rows, algo, policy):
    def setting_score(setting):
        per_seed = []
        for seed in SEEDS:
            rets = [r["return"] for r in all_rows[(algo, *setting, seed)] if r["policy"] == policy]
            per_seed.append(np.mean(rets))
        return np.mean(per_seed)

    return max(SETTINGS, key=setting_score)


def test_every_figure_is_a_valid_png(built):
    out, summary = built
    figures = summary["experiments"][SUITE]["figures"]
    assert len(figures) == 7
    html = open(os.path.join(out, "index.html")).read()
    for name in figures.values():
        path = os.path.join(out, name)
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
        with Image.open(path) as im:
            im.load()
            assert im.size[0] > 300 and im.size[1] > 200
        # Not a blank canvas: real drawing in several colours.
        assert len(np.unique(np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3), axis=0)) > 20
        assert f'src="{name}"' in html
        assert f"]({name})" in open(os.path.join(out, "report.md")).read()


@pytest.mark.parametrize("policy,caption", [("task", "Task policies: best"),
                                            ("distilled", "Distilled policy: best")])
def test_best_hyperparameters_by_auc(built, sweep, policy, caption):
    out, _ = built
    _, all_rows = sweep
    md = open(os.path.join(out, "report.md")).read()
    table = {row[0]: row for row in _table_after(md, caption)}
    names = {"a3c": "A3C", "a3c_multitask": "A3C multitask", "kl_2col": "KL 2col"}
    for algo, name in names.items():
        row = table[name]
        if policy == "distilled" and BEST[algo][1] is None:
            assert row[1] == "0/8" and row[4] == "n/a"
            continue
        lr, ent = _expected_best(all_rows, algo, policy)
        assert (float(row[2]), float(row[3])) == (lr, ent), (algo, row)
        assert (lr, ent) == BEST[algo][0 if policy == "task" else 1]
        # The mean ± std of the best setting's final returns.
        finals = [expected_final(all_rows[(algo, lr, ent, s)], policy) for s in SEEDS]
        mean, std = row[5].split(" ± ")
        assert float(mean) == pytest.approx(np.mean(finals), abs=1e-4)
        assert float(std) == pytest.approx(np.std(finals), abs=1e-4)
    # The empty run counts among kl_2col's runs but has no data.
    assert table["KL 2col"][1] == "8/9"


@pytest.mark.parametrize("policy,caption", [("task", "Task policies: final return"),
                                            ("distilled", "Distilled policy: final return")])
def test_sorted_final_returns(built, sweep, policy, caption):
    out, _ = built
    _, all_rows = sweep
    md = open(os.path.join(out, "report.md")).read()
    rows = _table_after(md, caption)
    for algo, name in {"a3c": "A3C", "a3c_multitask": "A3C multitask", "kl_2col": "KL 2col"}.items():
        got = [(r[2].strip("`"), float(r[6])) for r in rows if r[0] == name]
        expected = sorted(
            ((run_id(a, lr, ent, s), expected_final(rs, policy)) for (a, lr, ent, s), rs in all_rows.items()
             if a == algo and any(r["policy"] == policy for r in rs)),
            key=lambda kv: -kv[1])
        assert [g[0] for g in got] == [e[0] for e in expected]
        np.testing.assert_allclose([g[1] for g in got], [e[1] for e in expected], atol=1e-4)
        assert [int(r[1]) for r in rows if r[0] == name] == list(range(1, len(expected) + 1))


def test_threshold_fraction_and_definitions(built, sweep):
    out, summary = built
    _, all_rows = sweep
    md = open(os.path.join(out, "report.md")).read()
    assert "**AUC**" in md and "last 10%" in md
    exp = summary["experiments"][SUITE]
    finals = {k: expected_final(rs, "task") for k, rs in all_rows.items()}
    threshold = min(finals.values()) + 0.5 * (max(finals.values()) - min(finals.values()))
    assert exp["threshold"] == pytest.approx(threshold, abs=1e-9)
    reached = sum(f >= threshold for (a, *_), f in finals.items() if a == "kl_2col")
    assert exp["policies"]["task"]["kl_2col"]["fraction_reaching_threshold"] == pytest.approx(reached / 9)
    assert "No distilled-policy evaluations for: A3C." in md
    assert "kl_2col-lr0.0001-ent0.001-s7" in md


def test_event_files_only_run(tmp_path):
    """A run with only TensorBoard event files gives the same rows as its metrics file."""
    import tensorflow as tf

    from distral_tf.training import tensorboard_metadata as summaries

    root = tmp_path / "runs"
    run_dir = root / "klent_2col-lr0.0005-ent0.01-s3"
    rows = synthetic_rows("kl_2col", 5e-4, 1e-2, 3)
    summaries.write_hparams(str(run_dir), {"algo": "klent_2col", "suite": SUITE, "learning_rate": 5e-4,
                                           "entropy_cost": 1e-2, "seed": 3}, ["task/t0/episode_return"])
    writer = tf.summary.create_file_writer(str(run_dir))
    with writer.as_default():
        for r in rows:
            tf.summary.scalar(f"{r['policy']}/{r['task']}/episode_return", r["return"], step=r["env_steps"])
            tf.summary.scalar(f"{r['policy']}/{r['task']}/episode_length", r["length"], step=r["env_steps"])
    writer.close()

    (run,) = runs_lib.load_runs(str(root))
    assert run.source == "events"
    assert (run.algo, run.suite, run.learning_rate, run.entropy_cost, run.seed) == (
        "klent_2col", SUITE, 5e-4, 1e-2, 3)
    assert sorted(run.task_names) == TASKS
    assert len(run.episodes) == 2 * len(TASKS)
    for (policy, task), eps in run.episodes.items():
        expected = sorted((r["env_steps"], r["return"]) for r in rows
                          if r["policy"] == policy and r["task"] == task)
        got = sorted(zip(eps.steps, eps.returns, strict=True))
        np.testing.assert_array_equal([s for s, _ in got], [s for s, _ in expected])
        np.testing.assert_allclose([v for _, v in got], [v for _, v in expected], rtol=1e-6)

    out = tmp_path / "report"
    result = subprocess.run([sys.executable, "-m", "distral_tf.report", f"--runs={root}", f"--out={out}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    md = (out / "report.md").read_text()
    final = expected_final([r for r in rows if r["policy"] == "task"], "task")
    assert re.search(rf"\| KL\+ent 2col \| 1 \| `klent_2col-lr0.0005-ent0.01-s3` \| .* \| {final:.4f} \|", md)


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_clear_error_without_runs(tmp_path, make):
    runs = tmp_path / "runs"
    if make == "empty":
        (runs / "nothing_here").mkdir(parents=True)
    result = subprocess.run([sys.executable, "-m", "distral_tf.report", f"--runs={runs}",
                             f"--out={tmp_path / 'out'}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert ("does not exist" if make == "missing" else "No runs found") in result.stderr


def test_unreadable_files_are_named(tmp_path):
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "config.json").write_bytes(b"\xff\xfe not json")
    (run / "metrics.jsonl").write_bytes(b"\xff\x00\x01 not text")
    result = subprocess.run([sys.executable, "-m", "distral_tf.report", f"--runs={tmp_path / 'runs'}",
                             f"--out={tmp_path / 'out'}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: No episodes could be read")
    assert str(run / "config.json") in last and str(run / "metrics.jsonl") in last


def test_a_dead_run_that_says_running_is_reported_crashed(tmp_path):
    from distral_tf.reporting.runs import load_run

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "metrics.jsonl").write_text("")
    (tmp_path / "status.json").write_text(json.dumps({"state": "running", "pid": dead.pid,
                                                      "host": os.uname().nodename}))
    assert load_run(str(tmp_path), str(tmp_path)).state == "crashed"
