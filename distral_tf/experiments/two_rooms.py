"""Two-room grid world: tabular Distral vs. single-task soft Q learning (the paper's Figure 3).

    python -m distral_tf.experiments.two_rooms --out=DIR

Each seed draws ``num_tasks`` distinct goal cells; on those tasks it runs Distral
(KL only, alpha = 1: soft Q learning with prior pi0, eqs. 2-4, alternating with the
distillation of eq. 5 after every rollout of 10 steps) and the single-task baseline
(the same soft Q learning with a uniform prior, no distillation) at the same
inverse temperature beta. The baseline is also run at the inverse temperatures of
``--extra_baseline_betas``; the figure shows it at Distral's beta and at its best
beta by AUC. All runs are vectorised in one batch.

Writes into DIR: ``learning_curves.png``, ``corridor_policy.png``, ``summary.json``
and ``report.md``.
"""

from __future__ import annotations

import json
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from matplotlib.patches import FancyArrow, Rectangle  # noqa: E402

from distral_tf.envs.two_rooms import ACTION_NAMES, DOWN, LEFT, RIGHT, UP, draw_goals, get_layout  # noqa: E402
from distral_tf.tabular import SoftQConfig, TabularLearners  # noqa: E402


def define_flags():
    """Defines the command-line flags (only when run as a program, so importing defines none)."""
    flags.DEFINE_string("out", None, "Output directory.")
    flags.DEFINE_integer("num_tasks", 8, "Tasks (goal cells) per seed.")
    flags.DEFINE_integer("num_seeds", 10, "Independent seeds (each with its own goals).")
    flags.DEFINE_integer("env_steps", 60_000, "Environment steps per task.")
    flags.DEFINE_float("beta", 15.0, "Inverse temperature of Distral and of the baseline.")
    flags.DEFINE_list("extra_baseline_betas", ["20", "30"],
                      "Further inverse temperatures of the baseline (reported in the table).")
    flags.DEFINE_float("learning_rate", 0.2, "Soft Q learning step size.")
    flags.DEFINE_float("gamma", 0.95, "Discount.")
    flags.DEFINE_integer("episode_length", 50, "Steps per episode.")
    flags.DEFINE_integer("rollout_length", 10, "Steps per task between distillations.")
    flags.DEFINE_float("distill_rate", 0.01, "Step of each refit of pi0 towards the mixture of eq. 5 "
                       "(1: pi0 becomes the mixture of the current task policies).")
    flags.DEFINE_enum("layout", "paper", ["paper", "small"], "Grid layout.")
    flags.DEFINE_integer("seed", 0, "Base seed (goals and sampling).")


FINAL_FRACTION = 0.1  # the final return is the mean over the last 10% of episodes


def _arms(beta, extra_betas):
    arms = [dict(name="distral", label=f"Distral (KL, beta={beta:g})", distral=True, beta=beta),
            dict(name="single_task", label=f"Single-task soft Q (beta={beta:g})", distral=False, beta=beta)]
    for b in extra_betas:
        arms.append(dict(name=f"single_task_beta{b:g}", label=f"Single-task soft Q (beta={b:g})",
                         distral=False, beta=b))
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


def best_baseline(agents):
    """Name of the baseline arm with the highest mean AUC (the first one on ties)."""
    baselines = [name for name, a in agents.items() if not a["distral"]]
    return max(baselines, key=lambda name: agents[name]["auc_mean"])


def plot_learning_curves(path, steps, curves, arms, title, best):
    """Mean return per episode vs. environment steps per task; band = std over seeds.

    Draws Distral, the baseline at Distral's beta and, if another beta was better, the
    baseline at ``best`` (the arm with the best AUC).
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    styles = {"distral": ("tab:blue", "-", ""), "single_task": ("tab:red", "-", "")}
    if best != "single_task":
        styles[best] = ("tab:green", "--", ", best AUC of the baselines")
    for arm in arms:
        if arm["name"] not in styles:
            continue
        colour, line, suffix = styles[arm["name"]]
        c = curves[arm["name"]]  # [bins, seeds]
        mean, std = c.mean(1), c.std(1)
        ax.plot(steps, mean, color=colour, linestyle=line, label=arm["label"] + suffix)
        ax.fill_between(steps, mean - std, mean + std, color=colour, alpha=0.15)
    ax.set_xlabel("environment steps per task")
    ax.set_ylabel("return per episode (mean over tasks)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
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


def run_experiment(out, num_tasks=8, num_seeds=10, env_steps=60_000, beta=15.0, extra_baseline_betas=(20.0, 30.0),
                   learning_rate=0.2, gamma=0.95, episode_length=50, rollout_length=10, layout_name="paper",
                   seed=0, log_every_s=5.0, distill_rate=0.01):
    """Runs every agent on every seed's tasks and writes the figures and the report into ``out``."""
    start = time.time()
    os.makedirs(out, exist_ok=True)
    layout = get_layout(layout_name)
    config = SoftQConfig(alpha=1.0, beta=beta, gamma=gamma, learning_rate=learning_rate,
                         rollout_length=rollout_length, episode_length=episode_length, distill_rate=distill_rate)
    arms = _arms(beta, [float(b) for b in extra_baseline_betas])
    goals = np.stack([draw_goals(layout, num_tasks, seed=10_000 * seed + s) for s in range(num_seeds)])
    learners = TabularLearners(
        layout, goals=np.concatenate([goals] * len(arms)),
        distral=np.repeat([a["distral"] for a in arms], num_seeds),
        config=config, seed=seed, beta=np.repeat([a["beta"] for a in arms], num_seeds))
    logging.info("Two rooms: %d seeds x %d tasks, %d agents, %d env steps per task.",
                 num_seeds, num_tasks, len(arms), env_steps)
    returns, last_log = [], time.time()
    while learners.env_steps < env_steps:
        finished = learners.iteration()
        if len(finished):
            returns.append(finished.mean(-1))  # mean over tasks: [E, runs]
        if time.time() - last_log > log_every_s and returns:
            last_log = time.time()
            recent = returns[-1][-1].reshape(len(arms), num_seeds).mean(1)
            logging.info("%d/%d steps per task; last episode's return: %s", learners.env_steps, env_steps,
                         ", ".join(f"{a['name']} {r:.2f}" for a, r in zip(arms, recent, strict=True)))
    if not returns:
        raise ValueError(f"env_steps={env_steps} is shorter than one episode ({episode_length} steps).")
    returns = np.concatenate(returns).reshape(-1, len(arms), num_seeds)  # [E, arms, seeds]
    num_episodes = returns.shape[0]
    num_final = max(1, int(round(FINAL_FRACTION * num_episodes)))

    agents = {}
    for k, arm in enumerate(arms):
        auc, final = returns[:, k].mean(0), returns[-num_final:, k].mean(0)
        agents[arm["name"]] = {
            "label": arm["label"], "beta": arm["beta"], "distral": arm["distral"],
            "auc_per_seed": auc.tolist(), "final_return_per_seed": final.tolist(),
            "auc_mean": float(auc.mean()), "auc_std": float(auc.std()),
            "final_return_mean": float(final.mean()), "final_return_std": float(final.std()),
        }
    d_auc, b_auc = np.array(agents["distral"]["auc_per_seed"]), np.array(agents["single_task"]["auc_per_seed"])
    best = best_baseline(agents)
    comparison = {
        "seeds_distral_auc_higher": int((d_auc > b_auc).sum()),
        "num_seeds": num_seeds,
        "final_return_difference": agents["distral"]["final_return_mean"] - agents["single_task"]["final_return_mean"],
        "best_baseline": best,
        "seeds_distral_auc_higher_than_best_baseline": int((d_auc > np.array(agents[best]["auc_per_seed"])).sum()),
    }
    probs = corridor_policy(layout, learners.log_pi0[:num_seeds])
    corridor = corridor_stats(probs)

    bin_episodes = max(1, num_episodes // 60)
    curves = {a["name"]: _bin_curves(returns[:, k], bin_episodes) for k, a in enumerate(arms)}
    steps = (np.arange(1, num_episodes // bin_episodes + 1) * bin_episodes * episode_length)
    plot_learning_curves(os.path.join(out, "learning_curves.png"), steps, curves, arms,
                         f"Two-room grid world: {num_tasks} tasks, mean +- std over {num_seeds} seeds", best)
    plot_corridor_policy(os.path.join(out, "corridor_policy.png"), layout, probs)

    summary = {
        "config": {"num_tasks": num_tasks, "num_seeds": num_seeds, "env_steps_per_task": int(learners.env_steps),
                   "episode_length": episode_length, "rollout_length": rollout_length, "alpha": 1.0,
                   "beta": beta, "extra_baseline_betas": [float(b) for b in extra_baseline_betas],
                   "gamma": gamma, "learning_rate": learning_rate, "layout": layout_name, "seed": seed,
                   "distill_rate": distill_rate,
                   "final_fraction": FINAL_FRACTION},
        "goals": goals.tolist(),
        "num_episodes": num_episodes,
        "agents": agents,
        "comparison": comparison,
        "corridor": corridor,
        "wall_time_s": time.time() - start,
    }
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write(_report(summary, layout))
    logging.info("Done in %.1f s: Distral AUC higher on %d/%d seeds; final return %.2f vs %.2f; corridor "
                 "continue %.2f, up+down %.3f. Wrote %s.", summary["wall_time_s"],
                 comparison["seeds_distral_auc_higher"], num_seeds, agents["distral"]["final_return_mean"],
                 agents["single_task"]["final_return_mean"], corridor["continue_mean"],
                 corridor["up_down_mean"], out)
    return summary


def command_line(cfg, out="DIR"):
    """The command that reruns the experiment of ``cfg`` (a summary's ``config``), every flag explicit."""
    flags_ = {"num_tasks": cfg["num_tasks"], "num_seeds": cfg["num_seeds"], "env_steps": cfg["env_steps_per_task"],
              "beta": f"{cfg['beta']:g}",
              "extra_baseline_betas": ",".join(f"{b:g}" for b in cfg["extra_baseline_betas"]),
              "learning_rate": f"{cfg['learning_rate']:g}", "gamma": f"{cfg['gamma']:g}",
              "episode_length": cfg["episode_length"], "rollout_length": cfg["rollout_length"],
              "distill_rate": f"{cfg['distill_rate']:g}", "layout": cfg["layout"], "seed": cfg["seed"]}
    return " ".join(["python -m distral_tf.experiments.two_rooms", f"--out={out}",
                     *(f"--{k}={v}" for k, v in flags_.items())])


def _report(s, layout):
    cfg, agents, cmp_, cor = s["config"], s["agents"], s["comparison"], s["corridor"]
    lines = [
        "# Two-room grid world: tabular Distral vs. single-task soft Q learning",
        "",
        "Made by (the defaults, written out):",
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
        "(eq. 5). Baseline: the same soft Q learning with a uniform prior and no distillation. "
        f"gamma = {cfg['gamma']}, learning rate = {cfg['learning_rate']}. Wall time {s['wall_time_s']:.1f} s.",
        "",
        "AUC is the mean return per episode over the whole run (area under the learning curve divided by "
        f"its length); the final return is the mean over the last {100 * cfg['final_fraction']:.0f}% of "
        "episodes. Returns are per episode, averaged over the tasks of a seed; +- is the std over seeds.",
        "",
        "| agent | beta | AUC | final return |",
        "|---|---|---|---|",
    ]
    for a in agents.values():
        lines.append(f"| {a['label']} | {a['beta']:g} | {a['auc_mean']:.2f} +- {a['auc_std']:.2f} | "
                     f"{a['final_return_mean']:.2f} +- {a['final_return_std']:.2f} |")
    lines += [
        "",
        f"Distral's AUC is higher than the single-task baseline's (same beta) on "
        f"**{cmp_['seeds_distral_auc_higher']} of {cmp_['num_seeds']} seeds**; its mean final return differs by "
        f"{cmp_['final_return_difference']:+.2f}.",
    ]
    best = agents[cmp_["best_baseline"]]
    if sum(not a["distral"] for a in agents.values()) > 1:
        lines += [
            "",
            f"Against the baseline's best inverse temperature among those run (by AUC: beta = {best['beta']:g}), "
            f"Distral's mean AUC differs by {agents['distral']['auc_mean'] - best['auc_mean']:+.2f} (higher on "
            f"{cmp_['seeds_distral_auc_higher_than_best_baseline']} of {cmp_['num_seeds']} seeds) and its mean "
            f"final return by {agents['distral']['final_return_mean'] - best['final_return_mean']:+.2f}.",
        ]
    lines += [
        "",
        "| seed | AUC Distral | AUC single-task | final Distral | final single-task |",
        "|---|---|---|---|---|",
    ]
    d, b = agents["distral"], agents["single_task"]
    for i in range(cfg["num_seeds"]):
        lines.append(f"| {i} | {d['auc_per_seed'][i]:.2f} | {b['auc_per_seed'][i]:.2f} | "
                     f"{d['final_return_per_seed'][i]:.2f} | {b['final_return_per_seed'][i]:.2f} |")
    lines += [
        "",
        "## The distilled policy in the corridor",
        "",
        "pi0 at the corridor cells with previous reward 0, averaged over cells and seeds:",
        "",
        "| previous action | P(continue) | P(reverse) | P(up) + P(down) |",
        "|---|---|---|---|",
    ]
    for n in ("left", "right"):
        c = cor[f"prev_{n}"]
        lines.append(f"| {n} | {c['continue']:.3f} | {c['reverse']:.3f} | {c['up_down']:.3f} |")
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


def main(argv):
    del argv
    values = flags.FLAGS
    if not values.out:
        raise app.UsageError("--out is required.")
    run_experiment(values.out, num_tasks=values.num_tasks, num_seeds=values.num_seeds, env_steps=values.env_steps,
                   beta=values.beta, extra_baseline_betas=[float(b) for b in values.extra_baseline_betas],
                   learning_rate=values.learning_rate, gamma=values.gamma, episode_length=values.episode_length,
                   rollout_length=values.rollout_length, layout_name=values.layout, seed=values.seed,
                   distill_rate=values.distill_rate)


if __name__ == "__main__":
    define_flags()
    app.run(main)
