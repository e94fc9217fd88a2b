"""Two-room grid world: tabular Distral vs. single-task soft Q learning (the paper's Figure 3).

    python -m distral_tf.experiments.two_rooms --out=DIR

Each seed draws ``num_tasks`` distinct goal cells; on those tasks it runs Distral
(KL only, alpha = 1: soft Q learning with prior pi0, eqs. 2-4, alternating with the
distillation of eq. 5 after every rollout of 10 steps) and the single-task baseline
(the same soft Q learning with a uniform prior, no distillation), each at every
inverse temperature of ``--betas``. Each agent is compared at its best beta by AUC,
as the paper picks each algorithm's best hyperparameters. All runs are vectorised in
one batch.

Writes into DIR: ``run.npz`` (the per-task episode returns, the final Q tables and
pi0, and snapshots of pi0 during training), and from it ``learning_curves.png``,
``corridor_policy.png``, ``summary.json`` and ``report.md``; ``--report_only``
rebuilds the last four from ``run.npz``.
"""

from __future__ import annotations

import json
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags, logging  # noqa: E402
from matplotlib.patches import FancyArrow, Rectangle  # noqa: E402

from distral_tf.envs.two_rooms import (  # noqa: E402
    ACTION_NAMES,
    DOWN,
    LEFT,
    NUM_ACTIONS,
    RIGHT,
    UP,
    draw_goals,
    get_layout,
    optimal_return,  # noqa: E402
)
from distral_tf.experiments.tabular import SoftQConfig, TabularLearners, discounted_visitation  # noqa: E402
from flags import cli  # noqa: E402


def define_flags():
    """Defines the command-line flags (only when run as a program, so importing defines none)."""
    flags.DEFINE_string("out", None, "Output directory.")
    flags.DEFINE_integer("num_tasks", 8, "Tasks (goal cells) per seed.")
    flags.DEFINE_integer("num_seeds", 10, "Independent seeds (each with its own goals).")
    flags.DEFINE_integer("env_steps", 60_000, "Environment steps per task.")
    flags.DEFINE_list("betas", ["15", "20", "30"], "Inverse temperatures; Distral and the baseline run at each.")
    flags.DEFINE_float("learning_rate", 0.2, "Soft Q learning step size.")
    flags.DEFINE_float("gamma", 0.95, "Discount.")
    flags.DEFINE_integer("episode_length", 50, "Steps per episode.")
    flags.DEFINE_integer("rollout_length", 10, "Steps per task between distillations.")
    flags.DEFINE_float("distill_rate", 0.01, "Step of each refit of pi0 towards the mixture of eq. 5 "
                       "(1: pi0 becomes the mixture of the current task policies).")
    flags.DEFINE_enum("layout", "paper", ["paper", "small"], "Grid layout.")
    flags.DEFINE_integer("seed", 0, "Base seed (goals and sampling).")
    flags.DEFINE_integer("snapshots", 6, "Snapshots of Distral's pi0 kept in run.npz, evenly spaced in steps.")
    flags.DEFINE_bool("report_only", False, "Rebuild the figures, summary.json and report.md from DIR/run.npz.")


FINAL_FRACTION = 0.1  # the final return is the mean over the last 10% of episodes


def _arms(betas):
    """Distral then the baseline, each at every beta."""
    arms = [dict(name=f"distral_beta{b:g}", label=f"Distral (KL, beta={b:g})", distral=True, beta=float(b))
            for b in betas]
    arms += [dict(name=f"single_task_beta{b:g}", label=f"Single-task soft Q (beta={b:g})", distral=False,
                  beta=float(b)) for b in betas]
    return arms


def corridor_policy(layout, log_pi0):
    """``pi0`` in the corridor for previous action left / right, previous reward 0.

    Args:
      log_pi0: ``[seeds, S, A]``.

    Returns:
      dict direction -> ``[seeds, corridor cells, A]`` probabilities.
    """
    return {name: np.exp(log_pi0[:, layout.state_index(layout.corridor, a, 0)])
            for name, a in (("left", LEFT), ("right", RIGHT))}


def corridor_stats(probs):
    """Mean probability of continuing, reversing and of up + down, per direction and overall."""
    stats = {}
    for name, p in probs.items():
        same, back = (LEFT, RIGHT) if name == "left" else (RIGHT, LEFT)
        per_seed_continue = p[..., same].mean(-1)
        per_seed_up_down = (p[..., UP] + p[..., DOWN]).mean(-1)
        stats[f"prev_{name}"] = {
            "continue": float(per_seed_continue.mean()),
            "reverse": float(p[..., back].mean()),
            "up_down": float(per_seed_up_down.mean()),
            "continue_per_seed": per_seed_continue.tolist(),
            "up_down_per_seed": per_seed_up_down.tolist(),
            "mean_policy_per_cell": {a: p[..., i].mean(0).tolist() for i, a in enumerate(ACTION_NAMES)},
        }
    stats["continue_mean"] = float(np.mean([stats[f"prev_{n}"]["continue"] for n in probs]))
    stats["up_down_mean"] = float(np.mean([stats[f"prev_{n}"]["up_down"] for n in probs]))
    return stats


def best_arm(agents, distral):
    """Name of the Distral (or baseline) arm with the highest mean AUC (the first one on ties)."""
    names = [name for name, a in agents.items() if a["distral"] == distral]
    return max(names, key=lambda name: agents[name]["auc_mean"])


def paired_difference(x, y):
    """Per-seed ``x - y``: mean, standard error over seeds and the number of seeds where ``x > y``."""
    d = np.asarray(x, np.float64) - np.asarray(y, np.float64)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return {"mean": float(d.mean()), "se": se, "seeds_higher": int((d > 0).sum()), "num_seeds": len(d)}


def plot_learning_curves(path, steps, curves, arms, title, best, optimum=None):
    """Mean return per episode vs. environment steps per task.

    The arms named in ``best`` (each agent at its best beta) are drawn thick with a
    band of +- std over seeds; the other betas thin and dashed; ``optimum`` (the best
    achievable return) as a horizontal line.
    """
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    colours = {True: plt.get_cmap("Blues"), False: plt.get_cmap("Reds")}
    betas = sorted({a["beta"] for a in arms})
    for arm in arms:
        c = curves[arm["name"]]  # [bins, seeds]
        mean, std = c.mean(1), c.std(1)
        shade = 0.45 + 0.5 * (betas.index(arm["beta"]) / max(1, len(betas) - 1))
        colour = colours[arm["distral"]](shade)
        if arm["name"] in best:
            ax.plot(steps, mean, color=colour, lw=2.2, label=arm["label"] + ", best beta by AUC")
            ax.fill_between(steps, mean - std, mean + std, color=colour, alpha=0.15)
        else:
            ax.plot(steps, mean, color=colour, lw=1.0, linestyle="--", label=arm["label"])
    ax.set_xlabel("environment steps per task")
    ax.set_ylabel("return per episode (mean over tasks)")
    if optimum is not None:
        ax.axhline(optimum, color="tab:green", ls=(0, (2, 2)), lw=1.4, label="best achievable return")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_corridor_policy(path, layout, probs):
    """Figure 3 (right): arrows sized by pi0's action probabilities in the corridor cells."""
    cells = layout.cells[layout.corridor]
    row = int(cells[0, 0])
    c0, c1 = int(cells[:, 1].min()) - 1, int(cells[:, 1].max()) + 1
    fig, axes = plt.subplots(2, 1, figsize=(1.1 * (c1 - c0 + 1) + 0.6, 4.6))
    offsets = {UP: (0, 1), DOWN: (0, -1), LEFT: (-1, 0), RIGHT: (1, 0)}
    for ax, (name, p) in zip(axes, probs.items(), strict=True):
        mean = p.mean(0)  # [cells, A], averaged over seeds
        for r in (row - 1, row, row + 1):
            for c in range(c0, c1 + 1):
                wall = layout.grid[r][c] == "#"
                ax.add_patch(Rectangle((c - 0.5, -(r - row) - 0.5), 1, 1, facecolor="0.55" if wall else "white",
                                       edgecolor="0.8"))
        for (_, c), pa in zip(cells, mean, strict=True):
            for a, (dx, dy) in offsets.items():
                length = 0.45 * pa[a]
                if length < 0.01:
                    continue
                ax.add_patch(FancyArrow(c, 0, dx * length, dy * length, width=0.02 + 0.1 * pa[a],
                                        head_width=0.05 + 0.2 * pa[a], head_length=min(0.15, length),
                                        length_includes_head=True, color="tab:blue"))
        ax.set_xlim(c0 - 0.5, c1 + 0.5)
        ax.set_ylim(-1.5, 1.5)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        same = LEFT if name == "left" else RIGHT
        ax.set_title(f"pi0 in the corridor if previous action was: {name}  "
                     f"(P[{name}] = {mean[:, same].mean():.2f}, P[up]+P[down] = "
                     f"{(mean[:, UP] + mean[:, DOWN]).mean():.2f})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _bin_curves(returns, bin_episodes):
    """``[E, seeds]`` -> ``[E // bin_episodes, seeds]`` means over consecutive episodes."""
    e = returns.shape[0] // bin_episodes * bin_episodes
    return returns[:e].reshape(-1, bin_episodes, returns.shape[1]).mean(1)


def run_experiment(out, num_tasks=8, num_seeds=10, env_steps=60_000, betas=(15.0, 20.0, 30.0), learning_rate=0.2,
                   gamma=0.95, episode_length=50, rollout_length=10, layout_name="paper", seed=0, log_every_s=5.0,
                   distill_rate=0.01, num_snapshots=6):
    """Runs every agent on every seed's tasks, saves ``run.npz`` and writes the report from it into ``out``."""
    start = time.time()
    os.makedirs(out, exist_ok=True)
    layout = get_layout(layout_name)
    betas = [float(b) for b in betas]
    config = SoftQConfig(alpha=1.0, beta=betas[0], gamma=gamma, learning_rate=learning_rate,
                         rollout_length=rollout_length, episode_length=episode_length, distill_rate=distill_rate)
    arms = _arms(betas)
    goals = np.stack([draw_goals(layout, num_tasks, seed=10_000 * seed + s) for s in range(num_seeds)])
    learners = TabularLearners(
        layout, goals=np.concatenate([goals] * len(arms)),
        distral=np.repeat([a["distral"] for a in arms], num_seeds),
        config=config, seed=seed, beta=np.repeat([a["beta"] for a in arms], num_seeds))
    num_distral = sum(a["distral"] for a in arms) * num_seeds  # Distral's runs come first
    logging.info("Two rooms: %d seeds x %d tasks, %d agents, %d env steps per task.",
                 num_seeds, num_tasks, len(arms), env_steps)
    snapshot_steps = [int(round(env_steps * (k + 1) / num_snapshots)) for k in range(num_snapshots)]
    returns, snapshots, taken, last_log = [], [], [], time.time()
    while learners.env_steps < env_steps:
        finished = learners.iteration()
        if len(finished):
            returns.append(finished)  # [E, runs, tasks]
        while len(taken) < len(snapshot_steps) and learners.env_steps >= snapshot_steps[len(taken)]:
            taken.append(learners.env_steps)
            snapshots.append(learners.log_pi0[:num_distral].astype(np.float32))
        if time.time() - last_log > log_every_s and returns:
            last_log = time.time()
            recent = returns[-1][-1].mean(-1).reshape(len(arms), num_seeds).mean(1)
            logging.info("%d/%d steps per task; last episode's return: %s", learners.env_steps, env_steps,
                         ", ".join(f"{a['name']} {r:.2f}" for a, r in zip(arms, recent, strict=True)))
    if not returns:
        raise ValueError(f"env_steps={env_steps} is shorter than one episode ({episode_length} steps).")
    returns = np.concatenate(returns).reshape(-1, len(arms), num_seeds, num_tasks)  # [E, arms, seeds, tasks]
    cfg = {"num_tasks": num_tasks, "num_seeds": num_seeds, "env_steps_per_task": int(learners.env_steps),
           "episode_length": episode_length, "rollout_length": rollout_length, "alpha": 1.0, "betas": betas,
           "gamma": gamma, "learning_rate": learning_rate, "layout": layout_name, "seed": seed,
           "distill_rate": distill_rate, "snapshots": num_snapshots, "final_fraction": FINAL_FRACTION}
    shape = (len(arms), num_seeds)
    np.savez_compressed(
        os.path.join(out, "run.npz"), config=json.dumps(cfg), arms=json.dumps(arms), goals=goals,
        returns=returns.astype(np.int16), wall_time_s=time.time() - start,
        q=learners.q.reshape(*shape, *learners.q.shape[1:]).astype(np.float32),
        log_pi0=learners.log_pi0[:num_distral].reshape(-1, num_seeds, *learners.log_pi0.shape[1:]).astype(np.float32),
        snapshot_steps=np.array(taken, np.int64),
        log_pi0_snapshots=np.stack(snapshots).reshape(len(taken), -1, num_seeds, *learners.log_pi0.shape[1:]))
    return write_report(out)


def load_run(out):
    """The arrays and settings that :func:`run_experiment` saved in ``out/run.npz``."""
    with np.load(os.path.join(out, "run.npz")) as f:
        run = {k: f[k] for k in f.files}
    run["config"], run["arms"] = json.loads(str(run["config"])), json.loads(str(run["arms"]))
    run["wall_time_s"] = float(run["wall_time_s"])
    return run


def goal_sides(layout, goals):
    """``-1`` (left room), ``0`` (corridor) or ``1`` (right room) for each goal cell."""
    cols = layout.cells[np.asarray(goals), 1]
    corridor = layout.cells[layout.corridor, 1]
    return np.where(cols < corridor.min(), -1, np.where(cols > corridor.max(), 1, 0))


def corridor_direction(layout, log_pi0):
    """``P(left | previous left)`` and ``P(right | previous right)`` of pi0, mean over the corridor cells.

    Args:
      log_pi0: ``[..., S, A]``.

    Returns:
      two ``[...]`` arrays.
    """
    p = np.exp(np.asarray(log_pi0, np.float64))
    left = p[..., layout.state_index(layout.corridor, LEFT, 0), LEFT].mean(-1)
    right = p[..., layout.state_index(layout.corridor, RIGHT, 0), RIGHT].mean(-1)
    return left, right


def shortest_path_actions(layout, goal):
    """``[C, A]``: whether each action moves along a shortest path to ``goal`` (the optimal actions).

    Reaching the goal as often as possible in a fixed number of steps means going to it by a
    shortest path from every start (see :func:`distral_tf.envs.two_rooms.optimal_values`).
    """
    dist = np.full(layout.num_cells, np.inf)
    dist[goal] = 0.0
    for _ in range(layout.num_cells):
        dist = np.minimum(dist, 1.0 + dist[layout.next_cell].min(-1))
    return dist[layout.next_cell] == dist[:, None] - 1


def optimal_action_mass(layout, goals, log_probs, weights):
    """Weighted mean over states of the probability a policy gives the optimal actions of each task.

    Args:
      goals: ``[seeds, tasks]``; log_probs: ``[seeds, tasks, S, A]`` (or ``[seeds, 1, S, A]`` for pi0);
      weights: ``[seeds, tasks, S]`` state weights (e.g. the task's discounted visitation).

    Returns:
      ``[seeds, tasks]``.
    """
    cell_of_state = layout.decode_state(np.arange(layout.num_states))[0]
    optimal = np.stack([np.stack([shortest_path_actions(layout, g)[cell_of_state] for g in row]) for row in goals])
    mass = (np.exp(log_probs) * optimal).sum(-1)  # [seeds, tasks, S]
    return (weights * mass).sum(-1) / weights.sum(-1)


def write_report(out):
    """Writes ``summary.json``, the figures and ``report.md`` into ``out`` from ``out/run.npz``; returns the summary."""
    run = load_run(out)
    cfg, arms, goals = run["config"], run["arms"], run["goals"]
    layout = get_layout(cfg["layout"])
    returns = run["returns"].astype(np.float64)  # [E, arms, seeds, tasks]
    num_episodes, num_seeds = returns.shape[0], cfg["num_seeds"]
    num_final = max(1, int(round(cfg["final_fraction"] * num_episodes)))

    agents = {}
    for k, arm in enumerate(arms):
        per_task_auc, per_task_final = returns[:, k].mean(0), returns[-num_final:, k].mean(0)  # [seeds, tasks]
        auc, final = per_task_auc.mean(-1), per_task_final.mean(-1)
        agents[arm["name"]] = {
            "label": arm["label"], "beta": arm["beta"], "distral": arm["distral"],
            "auc_per_seed": auc.tolist(), "final_return_per_seed": final.tolist(),
            "early_auc_per_seed": returns[:max(1, num_episodes // 4), k].mean((0, -1)).tolist(),
            "final_return_per_task": per_task_final.tolist(),
            "auc_mean": float(auc.mean()), "auc_std": float(auc.std()),
            "final_return_mean": float(final.mean()), "final_return_std": float(final.std()),
        }
    best_d, best_b = best_arm(agents, True), best_arm(agents, False)
    d, b = agents[best_d], agents[best_b]
    comparison = {
        "best_distral": best_d, "best_baseline": best_b, "num_seeds": num_seeds,
        "auc": paired_difference(d["auc_per_seed"], b["auc_per_seed"]),
        "final_return": paired_difference(d["final_return_per_seed"], b["final_return_per_seed"]),
        "early_auc": paired_difference(d["early_auc_per_seed"], b["early_auc_per_seed"]),
        "same_beta": {f"{beta:g}": {
            "auc": paired_difference(agents[f"distral_beta{beta:g}"]["auc_per_seed"],
                                     agents[f"single_task_beta{beta:g}"]["auc_per_seed"]),
            "final_return": paired_difference(agents[f"distral_beta{beta:g}"]["final_return_per_seed"],
                                              agents[f"single_task_beta{beta:g}"]["final_return_per_seed"])}
            for beta in cfg["betas"]},
    }
    comparison["faster"] = comparison["auc"]["mean"] > 0
    comparison["better"] = comparison["final_return"]["mean"] > 0

    distral_index = [a["name"] for a in arms if a["distral"]]
    k_best = distral_index.index(best_d)
    log_pi0 = run["log_pi0"].astype(np.float64)  # [distral arms, seeds, S, A]
    probs = corridor_policy(layout, log_pi0[k_best])
    corridor = corridor_stats(probs)
    diagnosis = diagnose(layout, goals, run, agents, arms, cfg)

    bin_episodes = max(1, num_episodes // 60)
    curves = {a["name"]: _bin_curves(returns[:, k].mean(-1), bin_episodes) for k, a in enumerate(arms)}
    steps = (np.arange(1, num_episodes // bin_episodes + 1) * bin_episodes * cfg["episode_length"])
    optimum = np.array([[optimal_return(layout, g, cfg["episode_length"]) for g in row] for row in goals])
    plot_learning_curves(os.path.join(out, "learning_curves.png"), steps, curves, arms,
                         f"Two-room grid world: {cfg['num_tasks']} tasks, mean over {num_seeds} seeds "
                         "(bands: std over seeds)", {best_d, best_b}, optimum.mean())
    plot_corridor_policy(os.path.join(out, "corridor_policy.png"), layout, probs)

    summary = {"config": cfg, "goals": goals.tolist(), "num_episodes": num_episodes, "agents": agents,
               "comparison": comparison, "corridor": corridor, "diagnosis": diagnosis,
               "optimal_return_per_task": optimum.tolist(), "optimal_return_mean": float(optimum.mean()),
               "wall_time_s": run["wall_time_s"]}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(_report(summary, layout))
    logging.info("Distral at its best beta (%s) vs the baseline at its best (%s): AUC %+.2f (higher on %d/%d "
                 "seeds), final return %+.2f. Wrote %s.", best_d, best_b, comparison["auc"]["mean"],
                 comparison["auc"]["seeds_higher"], num_seeds, comparison["final_return"]["mean"], out)
    return summary


def far_door(layout, goals, log_probs, q):
    """pi0 (or a policy) and the task's Q at the door of the room that does not hold the goal.

    A task whose goal is in one room must, from a start in the other, pass that room's door
    (the cell next to the corridor) with a move into the corridor.

    Args:
      goals: ``[seeds, tasks]``; log_probs: ``[seeds, S, A]`` (pi0); q: ``[seeds, tasks, S, A]``.

    Returns:
      ``[seeds, tasks]`` arrays, NaN for goals in the corridor: the probability of the move into
      the corridor at that door, mean over the previous actions (previous reward 0), and the
      spread ``max_a Q - min_a Q`` of the task's Q values there, mean over the same states.
    """
    corridor = layout.cells[layout.corridor]
    row, first, last = corridor[0, 0], corridor[:, 1].min(), corridor[:, 1].max()
    door = {-1: int(np.flatnonzero((layout.cells == (row, last + 1)).all(-1))[0]),  # goal left: right door
            1: int(np.flatnonzero((layout.cells == (row, first - 1)).all(-1))[0])}
    sides = goal_sides(layout, goals)
    prob, spread = np.full(sides.shape, np.nan), np.full(sides.shape, np.nan)
    for (i, t), side in np.ndenumerate(sides):
        if side == 0:
            continue
        states = layout.state_index(door[side], np.arange(NUM_ACTIONS + 1), 0)
        prob[i, t] = np.exp(log_probs[i, states, LEFT if side == -1 else RIGHT]).mean()
        spread[i, t] = np.ptp(q[i, t, states], axis=-1).mean()
    return prob, spread


STALL_FRACTION = 0.5  # a task stalls under Distral if its final return is below this fraction of the baseline's


def diagnose(layout, goals, run, agents, arms, cfg):
    """Per Distral beta: which tasks stall, and how pi0 and the task policies treat their optimal actions.

    A task *stalls* when Distral's final return on it is below ``STALL_FRACTION`` times the
    baseline's (same beta, same goal). For every task, with weights the discounted
    visitation of the task's own final policy (eq. 5's weights): the probability that
    pi0, the Distral task policy and the baseline's task policy give the task's optimal
    (shortest-path) actions; the same for pi0 at each snapshot (final visitation
    weights); pi0 and the task's Q at the door it must pass (:func:`far_door`); and the
    entropy of pi0.
    """
    from distral_tf.experiments.tabular import soft_policy_log_probs

    names = [a["name"] for a in arms]
    q = run["q"].astype(np.float64)  # [arms, seeds, tasks, S, A]
    uniform = np.full(q.shape[-2:], -np.log(q.shape[-1]))
    out = {"goal_side": goal_sides(layout, goals).tolist(), "snapshot_steps": run["snapshot_steps"].tolist(),
           "stall_fraction": STALL_FRACTION, "by_beta": {}}
    for k, arm in enumerate(a for a in arms if a["distral"]):
        beta, name_b = arm["beta"], f"single_task_beta{arm['beta']:g}"
        log_pi0 = run["log_pi0"][k].astype(np.float64)[:, None]  # [seeds, 1, S, A]
        log_pi = soft_policy_log_probs(q[names.index(arm["name"])], log_pi0, 1.0, beta)
        log_pi_b = soft_policy_log_probs(q[names.index(name_b)], uniform, 1.0, beta)
        visits = discounted_visitation(layout, goals, log_pi, cfg["gamma"], cfg["episode_length"])
        visits_b = discounted_visitation(layout, goals, log_pi_b, cfg["gamma"], cfg["episode_length"])
        w0 = visits.sum(1) / visits.sum((1, 2))[:, None]  # [seeds, S]: all tasks' visitation
        h0 = -(np.exp(log_pi0[:, 0]) * log_pi0[:, 0]).sum(-1)
        final_d = np.array(agents[arm["name"]]["final_return_per_task"])
        final_b = np.array(agents[name_b]["final_return_per_task"])
        snapshots = run["log_pi0_snapshots"][:, k].astype(np.float64)  # [snapshots, seeds, S, A]
        left, right = corridor_direction(layout, snapshots)
        door_pi0, door_spread = far_door(layout, goals, log_pi0[:, 0], q[names.index(arm["name"])])
        out["by_beta"][f"{beta:g}"] = {
            "stalled": (final_d < STALL_FRACTION * final_b).tolist(),
            "far_door_pi0": np.where(np.isnan(door_pi0), None, door_pi0).tolist(),
            "far_door_q_spread": np.where(np.isnan(door_spread), None, door_spread).tolist(),
            "pi0_optimal": optimal_action_mass(layout, goals, log_pi0, visits).tolist(),
            "task_optimal": optimal_action_mass(layout, goals, log_pi, visits).tolist(),
            "baseline_optimal": optimal_action_mass(layout, goals, log_pi_b, visits_b).tolist(),
            "pi0_optimal_snapshots": [optimal_action_mass(layout, goals, p[:, None], visits).tolist()
                                      for p in snapshots],
            "pi0_entropy": (w0 * h0).sum(-1).tolist(),
            "corridor_continue_left": left.T.tolist(), "corridor_continue_right": right.T.tolist(),
        }
    return out


def command_line(cfg, out="DIR"):
    """The command that reruns the experiment of ``cfg`` (a summary's ``config``), every flag explicit."""
    flags_ = {"num_tasks": cfg["num_tasks"], "num_seeds": cfg["num_seeds"], "env_steps": cfg["env_steps_per_task"],
              "betas": ",".join(f"{b:g}" for b in cfg["betas"]),
              "learning_rate": f"{cfg['learning_rate']:g}", "gamma": f"{cfg['gamma']:g}",
              "episode_length": cfg["episode_length"], "rollout_length": cfg["rollout_length"],
              "distill_rate": f"{cfg['distill_rate']:g}", "layout": cfg["layout"], "seed": cfg["seed"],
              "snapshots": cfg["snapshots"]}
    return " ".join(["python -m distral_tf.experiments.two_rooms", f"--out={out}",
                     *(f"--{k}={v}" for k, v in flags_.items())])


def _pm(d):
    return f"{d['mean']:+.2f} +- {d['se']:.2f}"


def _report(s, layout):
    cfg, agents, cmp_, cor = s["config"], s["agents"], s["comparison"], s["corridor"]
    d, b = agents[cmp_["best_distral"]], agents[cmp_["best_baseline"]]
    n = cmp_["num_seeds"]
    lines = [
        "# Two-room grid world: tabular Distral vs. single-task soft Q learning",
        "",
        "Made by (the defaults, written out; `--report_only` rebuilds this report from `run.npz`):",
        "",
        "```",
        command_line(cfg),
        "```",
        "",
        "Reproduces Figure 3 of Teh et al. (2017), section 4.1. Grid:",
        "",
        "```",
        *layout.grid,
        "```",
        "",
        f"{cfg['num_seeds']} seeds; each seed draws {cfg['num_tasks']} distinct goal cells (one per task) and runs "
        f"every agent on them for {cfg['env_steps_per_task']} environment steps per task "
        f"({s['num_episodes']} episodes of {cfg['episode_length']} steps; reward 1 at the goal, then a new "
        "random start). Distral: KL only (alpha = 1), soft Q learning with prior pi0 (eqs. 2-4) alternating "
        f"with the distillation of pi0 after every rollout of {cfg['rollout_length']} steps per task: a step "
        f"of size {cfg['distill_rate']:g} towards the visitation-weighted mixture of the current task policies "
        "(eq. 5). Baseline: the same soft Q learning with a uniform prior and no distillation. Both run at "
        f"beta = {', '.join(f'{x:g}' for x in cfg['betas'])}; gamma = {cfg['gamma']}, learning rate = "
        f"{cfg['learning_rate']}. Wall time {s['wall_time_s']:.0f} s.",
        "",
        "AUC is the mean return per episode over the whole run (area under the learning curve divided by "
        f"its length); the final return is the mean over the last {100 * cfg['final_fraction']:.0f}% of "
        "episodes. Returns are per episode, averaged over the tasks of a seed; +- is the std over seeds. "
        f"The best achievable return (by dynamic programming over the layout, goals, restarts and episode "
        f"length: `optimal_return` in `distral_tf/envs/two_rooms.py`) is {s['optimal_return_mean']:.2f} per "
        "episode, mean over seeds and tasks; the last column gives the final return as a percentage of it.",
        "",
        "| agent | beta | AUC | final return | % of best achievable |",
        "|---|---|---|---|---|",
    ]
    for name, a in agents.items():
        star = " (best beta)" if name in (cmp_["best_distral"], cmp_["best_baseline"]) else ""
        lines.append(f"| {a['label']}{star} | {a['beta']:g} | {a['auc_mean']:.2f} +- {a['auc_std']:.2f} | "
                     f"{a['final_return_mean']:.2f} +- {a['final_return_std']:.2f} | "
                     f"{100 * a['final_return_mean'] / s['optimal_return_mean']:.0f}% |")
    lines += [
        "",
        f"## Each agent at its best beta: Distral (beta = {d['beta']:g}) vs. the baseline (beta = {b['beta']:g})",
        "",
        "Differences are Distral minus baseline, per seed (both see the same goals), mean +- standard error "
        "over seeds.",
        "",
        "| | difference | seeds where Distral is higher |",
        "|---|---|---|",
        f"| AUC (\"faster\") | {_pm(cmp_['auc'])} | {cmp_['auc']['seeds_higher']} of {n} |",
        f"| AUC over the first quarter of the run | {_pm(cmp_['early_auc'])} | "
        f"{cmp_['early_auc']['seeds_higher']} of {n} |",
        f"| final return (\"better\") | {_pm(cmp_['final_return'])} | "
        f"{cmp_['final_return']['seeds_higher']} of {n} |",
        "",
        f"\"Faster\" (higher AUC) {'holds' if cmp_['faster'] else 'does not hold'}; \"better\" (higher final "
        f"return) {'holds' if cmp_['better'] else 'does not hold'}. Over the first quarter of the run Distral's "
        f"mean return is {'higher' if cmp_['early_auc']['mean'] > 0 else 'not higher'}.",
        "",
        "At the same beta:",
        "",
        "| beta | AUC difference | seeds higher | final return difference | seeds higher |",
        "|---|---|---|---|---|",
    ]
    for beta, c in cmp_["same_beta"].items():
        lines.append(f"| {beta} | {_pm(c['auc'])} | {c['auc']['seeds_higher']} of {n} | "
                     f"{_pm(c['final_return'])} | {c['final_return']['seeds_higher']} of {n} |")
    lines += [
        "",
        "| seed | " + " | ".join(f"AUC {a['label']}" for a in agents.values()) + " |",
        "|---|" + "---|" * len(agents),
    ]
    for i in range(n):
        lines.append(f"| {i} | " + " | ".join(f"{a['auc_per_seed'][i]:.2f}" for a in agents.values()) + " |")
    lines += _diagnosis_lines(s, layout)
    lines += [
        "",
        f"## The distilled policy in the corridor (Distral at beta = {d['beta']:g})",
        "",
        "pi0 at the corridor cells with previous reward 0, averaged over cells and seeds:",
        "",
        "| previous action | P(continue) | P(reverse) | P(up) + P(down) |",
        "|---|---|---|---|",
    ]
    for m in ("left", "right"):
        c = cor[f"prev_{m}"]
        lines.append(f"| {m} | {c['continue']:.3f} | {c['reverse']:.3f} | {c['up_down']:.3f} |")
    lines += [
        "",
        f"On average pi0 continues in the direction of travel with probability {cor['continue_mean']:.3f}; "
        f"up and down together have probability {cor['up_down_mean']:.3f}.",
        "",
        "![learning curves](learning_curves.png)",
        "",
        "![distilled policy in the corridor](corridor_policy.png)",
        "",
    ]
    return "\n".join(lines)


def _diagnosis_lines(s, layout):
    """The report's section on the tasks Distral stalls on (see :func:`diagnose`)."""
    cfg, agents, diag = s["config"], s["agents"], s["diagnosis"]
    steps = diag["snapshot_steps"]
    lines = [
        "",
        "## Where Distral stalls",
        "",
        f"A task *stalls* when Distral's final return on it is below {diag['stall_fraction']:g} times the "
        "baseline's at the same beta (same goal). The columns give, for stalled and other tasks, the "
        "probability that a policy takes the task's optimal (shortest-path) actions, averaged over the "
        "states the task's final policy visits (discounted visitation, eq. 5's weights): pi0 (at the "
        f"first snapshot, {steps[0]} steps per task, and at the end), Distral's task policy and the "
        "baseline's task policy (over its own visitation). The last two columns look at the door of the "
        "room without the task's goal (the cell next to the corridor; tasks with a goal in the corridor "
        "left out): pi0's probability of the move into the corridor, mean over the previous actions, and "
        "the spread max - min of the task's Q values there. Where that spread is 0, eq. 4 makes the task "
        "policy equal to pi0.",
        "",
        "| beta | tasks | stalled | final Distral | final baseline | pi0 optimal, first snapshot | "
        "pi0 optimal, end | task policy optimal | baseline optimal | pi0's move through the far door | "
        "task's Q spread there |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for beta, b in diag["by_beta"].items():
        stalled = np.array(b["stalled"])
        fd = np.array(agents[f"distral_beta{beta}"]["final_return_per_task"])
        fb = np.array(agents[f"single_task_beta{beta}"]["final_return_per_task"])
        cols = [fd, fb, np.array(b["pi0_optimal_snapshots"][0]), np.array(b["pi0_optimal"]),
                np.array(b["task_optimal"]), np.array(b["baseline_optimal"])]
        door = [np.array(b[k], dtype=np.float64) for k in ("far_door_pi0", "far_door_q_spread")]
        for label, mask in (("stalled", stalled), ("others", ~stalled)):
            if not mask.any():
                continue
            lines.append(f"| {beta} | {label} | {int(mask.sum())} of {mask.size} | "
                         + " | ".join(f"{c[mask].mean():.2f}" for c in cols) + " | "
                         + " | ".join(f"{np.nanmean(c[mask]):.3g}" for c in door) + " |")
    best = agents[s["comparison"]["best_distral"]]
    b = diag["by_beta"][f"{best['beta']:g}"]
    base = agents[f"single_task_beta{best['beta']:g}"]
    sides = {-1: "left", 0: "corridor", 1: "right"}
    lines += [
        "",
        f"Per seed, Distral at beta = {best['beta']:g} (its best). Goals: how many tasks have their goal in the "
        "left room / corridor / right room; stalled tasks by goal place; pi0's probability of continuing "
        "along the corridor in the direction of the previous move (left, right) at the first snapshot and "
        "at the end; pi0's entropy (nats, over all tasks' visitation; ln 4 = 1.39 is uniform).",
        "",
        "| seed | AUC Distral | AUC baseline | goals L/C/R | stalled tasks (goal place) | corridor left, right: "
        "first -> end | pi0 entropy |",
        "|---|---|---|---|---|---|---|",
    ]
    for i in range(cfg["num_seeds"]):
        side = diag["goal_side"][i]
        counts = "/".join(str(side.count(v)) for v in (-1, 0, 1))
        stalled = [f"{t} ({sides[side[t]]})" for t, x in enumerate(b["stalled"][i]) if x]
        left, right = b["corridor_continue_left"][i], b["corridor_continue_right"][i]
        lines.append(f"| {i} | {best['auc_per_seed'][i]:.2f} | {base['auc_per_seed'][i]:.2f} | {counts} | "
                     f"{', '.join(stalled) or '-'} | {left[0]:.2f}, {right[0]:.2f} -> {left[-1]:.2f}, "
                     f"{right[-1]:.2f} | {b['pi0_entropy'][i]:.2f} |")
    return lines


def main(argv):
    cli.refuse_positional(argv)
    values = flags.FLAGS
    if not values.out:
        cli.fail("--out is required.")
    if values.report_only:
        write_report(values.out)
        return
    run_experiment(values.out, num_tasks=values.num_tasks, num_seeds=values.num_seeds, env_steps=values.env_steps,
                   betas=[float(b) for b in values.betas], learning_rate=values.learning_rate, gamma=values.gamma,
                   episode_length=values.episode_length, rollout_length=values.rollout_length,
                   layout_name=values.layout, seed=values.seed, distill_rate=values.distill_rate,
                   num_snapshots=values.snapshots)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
