"""Transfer of the distilled policy to a held-out task, against learning it from scratch.

    python -m distral_tf.experiments.transfer --out=docs/results/transfer --runs=runs/transfer

For each seed: a source run learns all tasks of ``--suite`` but the held-out one
(``--algo``, ``--source_steps`` agent steps); then the held-out task is learnt for
``--target_steps`` agent steps in three ways: ``transfer`` (pi_0 starts from the
source run's and keeps learning: ``--init_from``), ``transfer_frozen`` (the same, pi_0
fixed: ``--freeze_distilled``) and ``scratch`` (everything starts fresh). Every run
is a ``python -m distral_tf.run`` command (written into the report), so rerunning
the experiment resumes where it stopped; finished runs are not run again.

Writes into ``--out``: ``learning_curves.png`` (the held-out task's episode return
against its agent steps, mean and standard deviation over seeds), ``summary.json``
(binned curves, per-seed areas under the curve, the final returns) and
``report.md``. The area under the curve is the mean over the bins of the binned
mean return: the average return over the whole budget.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags, logging  # noqa: E402

from distral_tf.training import run_files  # noqa: E402
from flags import cli  # noqa: E402

ARMS = ("transfer", "transfer_frozen", "scratch")
ARM_LABELS = {"transfer": "transfer (pi_0 from the source run, keeps learning)",
              "transfer_frozen": "transfer, pi_0 frozen", "scratch": "from scratch"}
ARM_COLOURS = {"transfer": "tab:blue", "transfer_frozen": "tab:green", "scratch": "tab:red"}
FINAL_FRACTION = 0.2  # the final return: the mean over the last 20% of the budget's bins


def define_flags():
    """Defines the command-line flags (only when run as a program, so importing defines none)."""
    flags.DEFINE_string("out", None, "Directory for the figure, summary.json and report.md.", required=True)
    flags.DEFINE_string("runs", "runs/transfer", "Directory for the run directories.")
    flags.DEFINE_string("suite", "two_rooms_small",
                        "Suite whose tasks are split into the source tasks and the held-out one.")
    flags.DEFINE_integer("held_out", -1, "Index of the held-out task in the suite (negative: from the end).")
    flags.DEFINE_string("algo", "kl_2col", "Algorithm of every run.")
    flags.DEFINE_integer("num_seeds", 3, "Seeds (a source run and the three target runs each).", lower_bound=1)
    flags.DEFINE_integer("source_steps", 60_000, "Agent steps of each source run (over its tasks).", lower_bound=1)
    flags.DEFINE_integer("target_steps", 20_000, "Agent steps of each run on the held-out task.", lower_bound=1)
    flags.DEFINE_list("arms", list(ARMS), f"Which target runs ({', '.join(ARMS)}).")
    flags.DEFINE_integer("bins", 10, "Bins of the learning curves.", lower_bound=2)
    flags.DEFINE_integer("jobs", 2, "Runs trained at the same time.", lower_bound=1)
    flags.DEFINE_list("run_flags", ["--workers_per_task=4", "--entropy_cost=0.05", "--learning_rate=0.001",
                                    "--num_env_processes=0", "--eval_episodes=0", "--log_every_secs=60"],
                      "Flags passed to every run (besides algo, suite, seed, budget and logdir).")


def source_tasks_and_held_out(task_names, held_out: int) -> tuple[list[str], str]:
    """The suite's tasks without the held-out one, and the held-out one."""
    names = list(task_names)
    if not -len(names) <= held_out < len(names):
        raise ValueError(f"--held_out={held_out} is not a task index of a suite of {len(names)} tasks.")
    held = names.pop(held_out)
    return names, held


def run_commands(runs: str, algo: str, source_tasks, held_out_task: str, seeds, source_steps: int,
                 target_steps: int, run_flags, arms=ARMS) -> list[dict]:
    """The ``python -m distral_tf.run`` commands, source runs first: ``{"name", "logdir", "argv", "after"}``."""
    commands = []
    for seed in seeds:
        source = os.path.join(runs, f"source-s{seed}")
        commands.append({"name": f"source-s{seed}", "logdir": source, "after": None, "argv": [
            "-m", "distral_tf.run", f"--algo={algo}", f"--suite={','.join(source_tasks)}", f"--seed={seed}",
            f"--total_env_steps={source_steps}", f"--logdir={source}", *run_flags]})
        for arm in arms:
            logdir = os.path.join(runs, f"{arm}-s{seed}")
            extra = {"transfer": [f"--init_from={source}"],
                     "transfer_frozen": [f"--init_from={source}", "--freeze_distilled"], "scratch": []}[arm]
            commands.append({"name": f"{arm}-s{seed}", "logdir": logdir, "after": None if arm == "scratch" else source,
                             "argv": ["-m", "distral_tf.run", f"--algo={algo}", f"--suite={held_out_task}",
                                      f"--seed={seed}", f"--total_env_steps={target_steps}", f"--logdir={logdir}",
                                      *extra, *run_flags]})
    return commands


def _finished(logdir: str) -> bool:
    return run_files.read_state(logdir) == "finished"


def execute(commands: list[dict], jobs: int) -> dict[str, float]:
    """Runs the commands not yet finished (a command waits for the source run it starts from); returns seconds."""
    done, seconds = {c["logdir"] for c in commands if _finished(c["logdir"])}, {}
    pending = [c for c in commands if c["logdir"] not in done]

    def run_one(command):
        start = time.time()
        logging.info("Running %s", command["name"])
        result = subprocess.run([sys.executable, *command["argv"]], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{command['name']} failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
        seconds[command["name"]] = time.time() - start
        return command["logdir"]

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        running = {}
        while pending or running:
            for command in [c for c in pending if c["after"] is None or c["after"] in done]:
                if len(running) >= jobs:
                    break
                pending.remove(command)
                running[pool.submit(run_one, command)] = command
            if not running:
                raise RuntimeError("Some runs wait for source runs that never finish.")
            finished = [f for f in running if f.done()]
            for future in finished:
                running.pop(future)
                done.add(future.result())
            if not finished:
                time.sleep(1.0)
    return seconds


def read_returns(logdir: str, policy: str = "task") -> tuple[np.ndarray, np.ndarray]:
    """``(agent steps, returns)`` of the episodes of ``policy`` in the run's ``metrics.jsonl``."""
    steps, returns = [], []
    with open(os.path.join(logdir, run_files.METRICS_FILE)) as f:
        for line in f:
            row = json.loads(line)
            if row["policy"] == policy:
                steps.append(row["env_steps"])
                returns.append(row["return"])
    return np.asarray(steps, float), np.asarray(returns, float)


def binned_curve(steps: np.ndarray, returns: np.ndarray, budget: int, bins: int) -> np.ndarray:
    """Mean return of the episodes ending in each of ``bins`` equal step intervals of ``[0, budget]`` (NaN if none)."""
    edges = np.linspace(0, budget, bins + 1)
    which = np.clip(np.searchsorted(edges, steps, side="left") - 1, 0, bins - 1)
    curve = np.full(bins, np.nan)
    for b in range(bins):
        if (which == b).any():
            curve[b] = returns[which == b].mean()
    return curve


def area_under_curve(curve: np.ndarray) -> float:
    """The average of a binned curve (its area divided by the budget), ignoring empty bins."""
    return float(np.nanmean(curve))


def summarize(curves: dict[str, dict[int, np.ndarray]]) -> dict:
    """Per arm: per-seed AUC and final return, their mean and std; paired differences with ``scratch``."""
    out = {}
    for arm, per_seed in curves.items():
        seeds = sorted(per_seed)
        auc = [area_under_curve(per_seed[s]) for s in seeds]
        tail = max(1, int(round(FINAL_FRACTION * len(per_seed[seeds[0]]))))
        final = [float(np.nanmean(per_seed[s][-tail:])) for s in seeds]
        stacked = np.stack([per_seed[s] for s in seeds])
        out[arm] = {"seeds": seeds, "auc": auc, "auc_mean": float(np.mean(auc)), "auc_std": float(np.std(auc)),
                    "final": final, "final_mean": float(np.mean(final)), "final_std": float(np.std(final)),
                    "curve_mean": np.nanmean(stacked, 0).tolist(), "curve_std": np.nanstd(stacked, 0).tolist()}
    if "scratch" in out:
        for arm in out:
            if arm == "scratch":
                continue
            arm_auc = dict(zip(out[arm]["seeds"], out[arm]["auc"], strict=True))
            scratch_auc = dict(zip(out["scratch"]["seeds"], out["scratch"]["auc"], strict=True))
            diff = [arm_auc[s] - scratch_auc[s] for s in arm_auc if s in scratch_auc]
            out[arm]["auc_minus_scratch"] = diff
            out[arm]["auc_minus_scratch_mean"] = float(np.mean(diff))
            out[arm]["auc_minus_scratch_std"] = float(np.std(diff))
            out[arm]["seeds_above_scratch"] = int(sum(d > 0 for d in diff))
    return out


def plot(path: str, summary: dict, budget: int, bins: int, title: str):
    centres = (np.arange(bins) + 0.5) * budget / bins
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for arm, s in summary.items():
        mean, std = np.asarray(s["curve_mean"]), np.asarray(s["curve_std"])
        ax.plot(centres, mean, color=ARM_COLOURS.get(arm), label=f"{ARM_LABELS.get(arm, arm)} "
                f"(AUC {s['auc_mean']:.2f} ± {s['auc_std']:.2f})")
        ax.fill_between(centres, mean - std, mean + std, color=ARM_COLOURS.get(arm), alpha=0.15)
    ax.set_xlabel("agent steps on the held-out task")
    ax.set_ylabel("episode return (mean over seeds)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(path: str, summary: dict, info: dict, commands: list[dict]):
    lines = [
        "# Transfer of pi_0 to a held-out task",
        "",
        f"Suite `{info['suite']}`: source runs learn {', '.join(f'`{t}`' for t in info['source_tasks'])} "
        f"with `{info['algo']}` ({info['source_steps']:,} agent steps); the held-out task `{info['held_out']}` is "
        f"then learnt for {info['target_steps']:,} agent steps, {info['num_seeds']} seeds per arm.",
        "",
        "![learning curves](learning_curves.png)",
        "",
        "| arm | AUC (mean return over the budget) | final return (last "
        f"{int(FINAL_FRACTION * 100)}%) | AUC - scratch (paired) | seeds above scratch |",
        "| --- | --- | --- | --- | --- |",
    ]
    for arm, s in summary.items():
        diff = (f"{s['auc_minus_scratch_mean']:+.2f} ± {s['auc_minus_scratch_std']:.2f}"
                if "auc_minus_scratch_mean" in s else "-")
        above = f"{s['seeds_above_scratch']}/{len(s['auc_minus_scratch'])}" if "seeds_above_scratch" in s else "-"
        lines.append(f"| {arm} | {s['auc_mean']:.2f} ± {s['auc_std']:.2f} | {s['final_mean']:.2f} ± "
                     f"{s['final_std']:.2f} | {diff} | {above} |")
    lines += ["", "Per seed (AUC): " + "; ".join(
        f"{arm}: " + ", ".join(f"s{seed} {a:.2f}" for seed, a in zip(s["seeds"], s["auc"], strict=True))
        for arm, s in summary.items()), "",
        "± is the standard deviation over seeds. The area under the curve (AUC) is the mean of the binned "
        f"learning curve ({info['bins']} bins of the budget): the average episode return over the whole budget.",
        "", "## Commands", "", "```sh",
        " ".join(shlex.quote(a) for a in info["argv"]),
        "```", "", "which runs, in this order (source runs before the runs that start from them):", "", "```sh"]
    lines += ["python " + " ".join(shlex.quote(a) for a in c["argv"]) for c in commands]
    lines += ["```", ""]
    if info.get("notes"):
        lines += ["## Outcome", "", info["notes"], ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv):
    cli.refuse_positional(argv)
    from distral_tf.envs import make_suite

    values = flags.FLAGS
    unknown = [a for a in values.arms if a not in ARMS]
    if unknown:
        cli.fail(f"unknown --arms {', '.join(unknown)}; choose from {', '.join(ARMS)}.")
    try:
        suite = make_suite(values.suite)
        source_tasks, held_out = source_tasks_and_held_out(suite.task_names, values.held_out)
    except ValueError as e:
        cli.fail(str(e))
    seeds = list(range(values.num_seeds))
    commands = run_commands(values.runs, values.algo, source_tasks, held_out, seeds, values.source_steps,
                            values.target_steps, values.run_flags, values.arms)
    start = time.time()
    try:
        seconds = execute(commands, values.jobs)
    except RuntimeError as e:
        sys.exit(f"error: {e}")
    curves = {arm: {} for arm in values.arms}
    for command in commands:
        arm, _, seed = command["name"].rpartition("-s")
        if arm in curves:
            steps, returns = read_returns(command["logdir"])
            curves[arm][int(seed)] = binned_curve(steps, returns, values.target_steps, values.bins)
    summary = summarize(curves)
    os.makedirs(values.out, exist_ok=True)
    info = {"suite": values.suite, "source_tasks": source_tasks, "held_out": held_out, "algo": values.algo,
            "source_steps": values.source_steps, "target_steps": values.target_steps, "num_seeds": values.num_seeds,
            "bins": values.bins, "run_flags": values.run_flags, "wall_seconds": time.time() - start,
            "run_seconds": seconds, "argv": ["python", "-m", "distral_tf.experiments.transfer", *sys.argv[1:]]}
    plot(os.path.join(values.out, "learning_curves.png"), summary, values.target_steps, values.bins,
         f"{values.algo}: held-out {held_out} after {', '.join(source_tasks)}")
    with open(os.path.join(values.out, "summary.json"), "w") as f:
        json.dump({"info": info, "arms": summary}, f, indent=2)
    write_report(os.path.join(values.out, "report.md"), summary, info, commands)
    for arm, s in summary.items():
        print(f"{arm:16s} AUC {s['auc_mean']:.2f} ± {s['auc_std']:.2f}  final {s['final_mean']:.2f} ± "
              f"{s['final_std']:.2f}" + (f"  AUC - scratch {s['auc_minus_scratch_mean']:+.2f} ± "
                                         f"{s['auc_minus_scratch_std']:.2f}" if "auc_minus_scratch_mean" in s else ""))


if __name__ == "__main__":
    define_flags()
    cli.run(main)
