"""The normalised runs' curves in this directory's README, from the records in runs_normalised.tar.gz.

    python docs/results/vizdoom_reference/curves.py [RUNS_TAR] [--stretch=AGENT_STEPS] [--decimals=N]

Per run and per stretch of agent steps (50,000 by default: 200,000 frames): the task policy's mean return
(raw rewards) over the episodes that ended in it, and the share of those episodes that ended before the
time-out (on basic: a kill).
"""

import json
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def runs(path):
    with tarfile.open(path) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if member.name.endswith("/metrics.jsonl"):
                config = json.load(tar.extractfile(member.name.replace("metrics.jsonl", "config.json")))
                episodes = [json.loads(line) for line in tar.extractfile(member).read().decode().splitlines()
                            if '"return"' in line]
                yield member.name.split("/")[-2], config.get("config", config), episodes


def main(argv):
    stretch = next((int(a.split("=", 1)[1]) for a in argv if a.startswith("--stretch=")), 50_000)
    decimals = next((int(a.split("=", 1)[1]) for a in argv if a.startswith("--decimals=")), 1)
    paths = [a for a in argv if not a.startswith("--")] or [HERE / "runs_normalised.tar.gz"]
    for path in paths:
        for name, config, episodes in runs(path):
            episodes = [e for e in episodes if e.get("policy", "task") == "task"]
            timeout = max(e["length"] for e in episodes)
            print(f"\n{name} (unroll {config['unroll_length']}, {config['workers_per_task']} workers, "
                  f"{config['update_mode']}, observation normalisation {config.get('observation_normalization')})")
            print("| agent steps | frames | episodes | mean return | ended before the time-out |")
            print("|---|---|---|---|---|")
            last = max(e["env_steps"] for e in episodes)
            for lo in range(0, last + 1, stretch):
                chosen = [e for e in episodes if lo <= e["env_steps"] < lo + stretch]
                if chosen:
                    mean = sum(e["return"] for e in chosen) / len(chosen)
                    early = sum(e["length"] < timeout for e in chosen) / len(chosen)
                    print(f"| {lo:,}-{lo + stretch:,} | {4 * lo / 1e6:.1f}-{4 * (lo + stretch) / 1e6:.1f}M | "
                          f"{len(chosen)} | {mean:.{decimals}f} | {100 * early:.0f}% |")


if __name__ == "__main__":
    main(sys.argv[1:])
