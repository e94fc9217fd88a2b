"""The two-room experiment: a reduced command-line run and a short learning check."""

import json
import subprocess
import sys

import numpy as np

from distral_tf.experiments.two_rooms import run_experiment


def test_reduced_command_line_run_writes_the_report(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "distral_tf.experiments.two_rooms", f"--out={out}", "--num_tasks=3",
           "--num_seeds=2", "--env_steps=600", "--extra_baseline_betas=25"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    for name in ("learning_curves.png", "corridor_policy.png", "summary.json", "report.md"):
        assert (out / name).stat().st_size > 0
    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    s = json.loads((out / "summary.json").read_text())
    assert {"config", "goals", "num_episodes", "agents", "comparison", "corridor", "wall_time_s"} <= set(s)
    assert set(s["agents"]) == {"distral", "single_task", "single_task_beta25"}
    assert s["num_episodes"] == 600 // 50 and s["config"]["env_steps_per_task"] == 600
    for agent in s["agents"].values():
        assert {"auc_per_seed", "final_return_per_seed", "auc_mean", "final_return_mean"} <= set(agent)
        assert len(agent["auc_per_seed"]) == 2
        assert np.mean(agent["auc_per_seed"]) == agent["auc_mean"] > 0
    assert set(s["comparison"]) == {"seeds_distral_auc_higher", "num_seeds", "final_return_difference",
                                    "best_baseline", "seeds_distral_auc_higher_than_best_baseline"}
    baselines = {n: a["auc_mean"] for n, a in s["agents"].items() if not a["distral"]}
    assert s["comparison"]["best_baseline"] == max(baselines, key=baselines.get)
    for key in ("prev_left", "prev_right"):
        c = s["corridor"][key]
        assert 0 <= c["continue"] <= 1 and 0 <= c["up_down"] <= 1
        assert abs(c["continue"] + c["reverse"] + c["up_down"] - 1) < 1e-9
    assert len(np.array(s["goals"])) == 2 and all(len(set(g)) == 3 for g in s["goals"])
    report = (out / "report.md").read_text()
    assert "| agent | beta | AUC | final return |" in report and "corridor" in report
    assert ("python -m distral_tf.experiments.two_rooms --out=DIR --num_tasks=3 --num_seeds=2 --env_steps=600 "
            "--beta=15 --extra_baseline_betas=25 ") in report


def test_distral_learns_faster_and_keeps_direction_in_the_corridor(tmp_path):
    s = run_experiment(str(tmp_path), num_tasks=8, num_seeds=3, env_steps=20_000, extra_baseline_betas=(),
                       log_every_s=1e9)
    d, b = s["agents"]["distral"], s["agents"]["single_task"]
    assert all(x > y for x, y in zip(d["auc_per_seed"], b["auc_per_seed"], strict=True))
    assert d["final_return_mean"] > b["final_return_mean"]
    assert s["corridor"]["continue_mean"] > 0.6 and s["corridor"]["up_down_mean"] < 0.25
