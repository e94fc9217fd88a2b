"""The README's learning curves of the finished runs, from the committed records.

    python docs/results/doom_mazes_small/curves.py [RUNS_TAR] [--stretch=AGENT_STEPS_PER_TASK]

Per run: the task policies' mean return (raw rewards: +1 an apple, +10 the goal) over the episodes that
ended in each stretch of agent steps per task (50,000 by default), averaged over the 8 tasks, with its
multiple of the random policy's mean return (``random_policy.json``); then each task's mean return
over the run's last stretch, with its multiple of the random policy's return on that task; and, from
``status.json``, the final evaluation of pi_0 and the run's env frames/s. Last, one table of every run's
last stretch: the mean return over the tasks, the mean and median over the tasks of the per-task multiple
of random (each maze weighted equally, so that one maze with a large return does not dominate), and
pi_0's final evaluation.
"""

import json
import statistics
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def runs(path):
    """(name, config, status, task-policy episodes) of every run in the archive."""
    with tarfile.open(path) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if member.name.endswith("/metrics.jsonl"):
                config, status = (json.load(tar.extractfile(member.name.replace("metrics.jsonl", name)))
                                  for name in ("config.json", "status.json"))
                episodes = [json.loads(line) for line in tar.extractfile(member).read().decode().splitlines()]
                episodes = [e for e in episodes if "return" in e and e.get("policy", "task") == "task"]
                yield member.name.split("/")[-2], config.get("config", config), status, episodes


def random_returns():
    """The random policy's mean return per task, from random_policy.json."""
    per_task = json.loads((HERE / "random_policy.json").read_text())["doom_mazes_small"]["tasks"]
    return {task: r["mean"] for task, r in per_task.items()}


def main(argv):
    stretch = next((int(a.split("=", 1)[1]) for a in argv if a.startswith("--stretch=")), 50_000)
    paths = [a for a in argv if not a.startswith("--")] or [HERE / "runs.tar.gz"]
    random_per_task = random_returns()
    random = sum(random_per_task.values()) / len(random_per_task)
    print(f"random policy: {random:.2f} per episode (mean over the tasks)")
    rows = []
    for path in paths:
        for name, config, status, episodes in runs(path):
            tasks = sorted({e["task"] for e in episodes})
            last = max(e["env_steps"] for e in episodes)
            print(f"\n{name} ({config['algo']}, {config['workers_per_task']} workers per task, "
                  f"{config['update_mode']}, learning rate {config['learning_rate']:g}, "
                  f"entropy cost {config['entropy_cost']:g}; "
                  f"{status.get('state')}, {status.get('env_steps', 0):,} agent steps)")
            print("| agent steps per task | episodes | mean return over the tasks | x random |")
            print("|---|---|---|---|")
            final, stretch_means = {}, []
            for lo in range(0, last + 1, stretch):
                chosen = [e for e in episodes if lo <= e["env_steps"] < lo + stretch]
                per_task = {t: [e["return"] for e in chosen if e["task"] == t] for t in tasks}
                if all(per_task.values()):
                    mean = sum(sum(r) / len(r) for r in per_task.values()) / len(tasks)
                    print(f"| {lo:,}-{lo + stretch:,} | {len(chosen)} | {mean:.2f} | {mean / random:.1f} |")
                    final = {t: sum(r) / len(r) for t, r in per_task.items()}
                    stretch_means.append(mean)
            print("last stretch per task (x random): " + ", ".join(
                f"{t.rsplit('_', 1)[-1]} {r:.1f} ({r / random_per_task[t]:.1f})" for t, r in final.items()))
            distilled = status.get("final_distilled_return_per_task")
            pi0 = sum(distilled) / len(distilled) if distilled else None
            if distilled:
                print(f"final evaluation of pi_0 ({status.get('final_distilled_episodes')} episodes per task): "
                      f"{pi0:.2f} on average (" + ", ".join(f"{r:.1f}" for r in distilled) + ")")
            print(f"env frames/s over the running time: {status.get('env_frames_per_second', 0):,.0f}")
            multiples = [r / random_per_task[t] for t, r in final.items()]
            rows.append((name, config["algo"], statistics.fmean(final.values()), statistics.fmean(multiples),
                         statistics.median(multiples), pi0, statistics.fmean(stretch_means)))
    print("\n| run | last stretch: mean return | mean of the per-task x random | median x random | pi_0 final |")
    print("|---|---|---|---|---|")
    for name, _, mean, normalised, median, distilled, _ in rows:
        pi0 = f"{distilled:.2f}" if distilled is not None else ""
        print(f"| {name} | {mean:.2f} | {normalised:.2f} | {median:.2f} | {pi0} |")
    print_per_algorithm(rows)


def print_per_algorithm(rows):
    """Per algorithm, the mean over its seeds (each seed in brackets) of the last stretch's mean return,
    of the per-task multiple of random, and of the area under the curve (the mean of the stretches'
    mean returns: the whole run, as the paper's AUC)."""
    print("\n| algorithm | seeds | last stretch: mean return | mean of the per-task x random | "
          "area under the curve (mean over the stretches) | pi_0 final |")
    print("|---|---|---|---|---|---|")
    by_algo = {}
    for row in rows:
        by_algo.setdefault(row[1], []).append(row)
    order = sorted(by_algo, key=lambda a: -statistics.fmean(r[2] for r in by_algo[a]))
    for algo in order:
        runs_ = by_algo[algo]

        def cell(column, runs_=runs_):
            values = [r[column] for r in runs_]
            return f"{statistics.fmean(values):.2f} (" + ", ".join(f"{v:.2f}" for v in values) + ")"

        pi0 = cell(5) if all(r[5] is not None for r in runs_) else ""
        print(f"| {algo} | {len(runs_)} | {cell(2)} | {cell(3)} | {cell(6)} | {pi0} |")


if __name__ == "__main__":
    main(sys.argv[1:])
