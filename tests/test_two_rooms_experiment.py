"""The two-room experiment: a reduced command-line run and a short learning check."""

import json
import subprocess
import sys

import numpy as np
import pytest

from distral_tf.envs import two_rooms as tr
from distral_tf.experiments.two_rooms import run_experiment, shortest_path_actions


def test_reduced_command_line_run_writes_the_report(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "distral_tf.experiments.two_rooms", f"--out={out}", "--num_tasks=3",
           "--num_seeds=2", "--env_steps=600", "--betas=15,25", "--snapshots=3"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    for name in ("learning_curves.png", "corridor_policy.png", "summary.json", "report.md", "run.npz"):
        assert (out / name).stat().st_size > 0
    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    s = json.loads((out / "summary.json").read_text())
    assert {"config", "goals", "num_episodes", "agents", "comparison", "corridor", "diagnosis", "wall_time_s"} <= set(s)
    assert set(s["agents"]) == {"distral_beta15", "distral_beta25", "single_task_beta15", "single_task_beta25"}
    assert s["num_episodes"] == 600 // 50 and s["config"]["env_steps_per_task"] == 600
    for agent in s["agents"].values():
        assert {"auc_per_seed", "final_return_per_seed", "auc_mean", "final_return_mean"} <= set(agent)
        assert len(agent["auc_per_seed"]) == 2 and np.array(agent["final_return_per_task"]).shape == (2, 3)
        assert np.mean(agent["auc_per_seed"]) == agent["auc_mean"] > 0
        assert np.mean(agent["final_return_per_task"], -1).tolist() == agent["final_return_per_seed"]
    c = s["comparison"]
    for distral in (True, False):
        mine = {n: a["auc_mean"] for n, a in s["agents"].items() if a["distral"] == distral}
        assert c["best_distral" if distral else "best_baseline"] == max(mine, key=mine.get)
    d, b = s["agents"][c["best_distral"]], s["agents"][c["best_baseline"]]
    diff = np.subtract(d["auc_per_seed"], b["auc_per_seed"])
    assert c["auc"]["mean"] == np.mean(diff) and c["auc"]["seeds_higher"] == int((diff > 0).sum())
    assert c["auc"]["se"] == np.std(diff, ddof=1) / np.sqrt(2)
    assert c["faster"] == (c["auc"]["mean"] > 0) and c["better"] == (c["final_return"]["mean"] > 0)
    early = np.subtract(d["early_auc_per_seed"], b["early_auc_per_seed"])
    assert c["early_auc"]["mean"] == pytest.approx(np.mean(early)) and len(early) == 2
    assert set(c["same_beta"]) == {"15", "25"}
    diag = s["diagnosis"]
    assert len(diag["snapshot_steps"]) == 3 and diag["snapshot_steps"][-1] == 600
    for beta in ("15", "25"):
        b = diag["by_beta"][beta]
        for key in ("pi0_optimal", "task_optimal", "baseline_optimal"):
            assert np.all((0 <= np.array(b[key])) & (np.array(b[key]) <= 1)) and np.array(b[key]).shape == (2, 3)
        final_d = np.array(s["agents"][f"distral_beta{beta}"]["final_return_per_task"])
        final_b = np.array(s["agents"][f"single_task_beta{beta}"]["final_return_per_task"])
        assert b["stalled"] == (final_d < 0.5 * final_b).tolist()
    for key in ("prev_left", "prev_right"):
        c = s["corridor"][key]
        assert 0 <= c["continue"] <= 1 and 0 <= c["up_down"] <= 1
        assert abs(c["continue"] + c["reverse"] + c["up_down"] - 1) < 1e-6  # pi0 is kept in float32
    assert len(np.array(s["goals"])) == 2 and all(len(set(g)) == 3 for g in s["goals"])
    report = (out / "report.md").read_text()
    assert "| agent | beta | AUC | final return |" in report and "corridor" in report
    assert "Where Distral stalls" in report
    assert ("python -m distral_tf.experiments.two_rooms --out=DIR --num_tasks=3 --num_seeds=2 --env_steps=600 "
            "--betas=15,25 ") in report
    # The report rebuilds from run.npz alone.
    for name in ("summary.json", "report.md", "learning_curves.png"):
        (out / name).unlink()
    subprocess.run([sys.executable, "-m", "distral_tf.experiments.two_rooms", f"--out={out}", "--report_only"],
                   check=True, capture_output=True, timeout=120)
    assert (out / "report.md").read_text() == report
    assert json.loads((out / "summary.json").read_text()) == s


def test_distral_learns_faster_and_keeps_direction_in_the_corridor(tmp_path):
    s = run_experiment(str(tmp_path), num_tasks=8, num_seeds=3, env_steps=20_000, betas=(15,), log_every_s=1e9)
    d, b = s["agents"]["distral_beta15"], s["agents"]["single_task_beta15"]
    assert all(x > y for x, y in zip(d["auc_per_seed"], b["auc_per_seed"], strict=True))
    assert d["final_return_mean"] > b["final_return_mean"]
    assert s["corridor"]["continue_mean"] > 0.6 and s["corridor"]["up_down_mean"] < 0.25


@pytest.mark.parametrize("layout_name", ["paper", "small"])
def test_shortest_path_actions_are_the_dynamic_programs_optimal_actions(layout_name):
    layout = tr.get_layout(layout_name)
    for goal in range(0, layout.num_cells, 3):
        values = tr.optimal_values(layout, goal, 60)
        starts = np.arange(layout.num_cells) != goal
        q = np.where(layout.next_cell == goal, 1.0 + values[1, starts].mean(), values[1][layout.next_cell])
        best = np.isclose(q, q.max(-1, keepdims=True))
        optimal = shortest_path_actions(layout, goal)
        assert np.array_equal(optimal[starts], best[starts])
        assert optimal[starts].any(-1).all()


def test_far_door_and_optimal_action_mass_by_hand():
    from distral_tf.experiments.two_rooms import far_door, optimal_action_mass

    layout = tr.get_layout("paper")
    corridor = layout.cells[layout.corridor]
    cell = {tuple(rc): i for i, rc in enumerate(layout.cells.tolist())}
    row, last = int(corridor[0, 0]), int(corridor[:, 1].max())
    left_goal, right_goal, corridor_goal = cell[(1, 1)], cell[(5, 15)], int(layout.corridor[2])
    goals = np.array([[left_goal, right_goal, corridor_goal]])
    S, A = layout.num_states, tr.NUM_ACTIONS
    log_pi0 = np.full((1, S, A), -np.log(A))
    right_door = layout.state_index(cell[(row, last + 1)], np.arange(5), 0)
    log_pi0[0, right_door] = np.log([0.1, 0.1, 0.05, 0.75])  # the right room's door rarely lets one go left
    q = np.zeros((1, 3, S, A))
    q[0, 0, right_door] = [0.0, 0.0, 2.0, 0.5]
    prob, spread = far_door(layout, goals, log_pi0, q)
    assert prob[0, 0] == pytest.approx(0.05) and spread[0, 0] == pytest.approx(2.0)
    assert prob[0, 1] == pytest.approx(0.25) and spread[0, 1] == 0  # its door is the left room's
    assert np.isnan(prob[0, 2]) and np.isnan(spread[0, 2])
    # A uniform policy gives the optimal actions their share of the four; a shortest-path one all of it.
    optimal = shortest_path_actions(layout, left_goal)
    cell_of_state = layout.decode_state(np.arange(S))[0]
    weights = np.ones((1, 1, S))
    uniform = np.full((1, 1, S, A), -np.log(A))
    expected = optimal[cell_of_state].sum(-1).mean() / A
    assert optimal_action_mass(layout, goals[:, :1], uniform, weights)[0, 0] == pytest.approx(expected)
    moves = optimal[cell_of_state]
    counts = moves.sum(-1, keepdims=True)  # 0 at the goal, where the agent never is
    with np.errstate(divide="ignore", invalid="ignore"):
        greedy = np.log(np.where(counts > 0, moves / counts, 1 / A))[None, None]
    weights[0, 0, layout.state_index(left_goal, np.arange(5), np.arange(2)[:, None]).ravel()] = 0
    assert optimal_action_mass(layout, goals[:, :1], greedy, weights)[0, 0] == pytest.approx(1.0)
