"""Prints the README's table of finished runs from the committed records.

    python docs/results/two_rooms_small/table.py [RUNS_TAR ...]

Each run's ``status.json``: the final evaluation of pi_0 (``final_distilled_return_per_task``, with its
standard error) and the task policies' mean return over their last 20 episodes per task
(``mean_recent_return_per_task``). a3c has no pi_0 (its evaluation is of an untrained column).
In the order algorithm, learning rate, entropy cost, seed.
"""

import json
import re
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALGORITHMS = ("kl_2col", "klent_2col", "kl_1col", "klent_1col", "a3c", "a3c_2col", "a3c_multitask")


def finished_runs(path):
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            if member.name.endswith("/status.json"):
                status = json.load(tar.extractfile(member))
                if status.get("state") == "finished":
                    yield member.name.split("/")[-2], status


def sort_key(name):
    algo, lr, ent, seed = re.fullmatch(r"(.+)-lr(.+)-ent(.+)-s(\d+)", name).groups()
    return ALGORITHMS.index(algo) if algo in ALGORITHMS else 99, float(lr), float(ent), int(seed)


def main(paths):
    print("| run | pi_0 final evaluation (30 episodes per task, +- standard error) "
          "| task policies, last 20 episodes per task |")
    print("|---|---|---|")
    for path in paths:
        label = "" if Path(path).name == "runs.tar.gz" else "TF1 initialisation: "
        runs = dict(finished_runs(path))
        for name in sorted(runs, key=sort_key):
            status = runs[name]
            finals = zip(status["final_distilled_return_per_task"], status["final_distilled_stderr_per_task"],
                         strict=True)
            pi0 = ("none (a3c has no pi_0)" if name.startswith("a3c-")
                   else ", ".join(f"{r:.2f} +- {e:.2f}" for r, e in finals))
            task = ", ".join(f"{r:.2f}" for r in status["mean_recent_return_per_task"])
            print(f"| {label}{name} | {pi0} | {task} |")
        print(f"\n{len(runs)} finished runs in {Path(path).name}\n")


if __name__ == "__main__":
    main(sys.argv[1:] or [HERE / "runs.tar.gz", HERE / "tf1_rmsprop_runs.tar.gz"])
