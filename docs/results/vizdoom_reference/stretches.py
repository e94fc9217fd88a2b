"""The tables of this directory's README, from the records in runs.tar.gz (task-policy episodes only).

    python docs/results/vizdoom_reference/stretches.py RUNS_DIR   # RUNS_DIR: runs/ of the unpacked runs.tar.gz

Per run: its settings apart from the defaults, the agent steps it ran, and for its first and last 100,000 agent
steps the mean return (raw rewards) and the share of episodes that end before the time-out (on basic: a kill).
"""

import json
import pathlib
import sys

DEFAULTS = {"rmsprop_epsilon": 0.1, "learning_rate": 1e-3, "rmsprop_initial_mean_square": 0.0,
            "update_mode": "hogwild"}
STRETCH = 100_000


def stretch(episodes, lo, hi, timeout):
    chosen = [e for e in episodes if lo <= e["env_steps"] < hi]
    if not chosen:
        return "-"
    mean = sum(e["return"] for e in chosen) / len(chosen)
    early = sum(e["length"] < timeout for e in chosen) / len(chosen)
    return f"{mean:.1f} ({100 * early:.0f}% end early, {len(chosen)} episodes)"


def main(runs_dir):
    print("| run | settings apart from the defaults | agent steps | first 100k | last 100k |")
    print("|---|---|---|---|---|")
    for run in sorted(pathlib.Path(runs_dir).iterdir()):
        config = json.loads((run / "config.json").read_text())
        settings = config.get("config") or config.get("flags")
        status = json.loads((run / "status.json").read_text())
        episodes = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        episodes = [e for e in episodes if e.get("policy") == "task" and "return" in e and not e.get("final")]
        timeout = max(e["length"] for e in episodes)
        steps = status["env_steps"]
        changed = ", ".join(f"{k}={settings[k]}" for k, v in DEFAULTS.items() if settings.get(k, v) != v)
        changed += f"{', ' if changed else ''}reward_scale={config.get('reward_scale', 1.0)}"
        print(f"| {run.name} | {changed} | {steps:,} ({status['state']}) | {stretch(episodes, 0, STRETCH, timeout)} "
              f"| {stretch(episodes, steps - STRETCH, steps + 1, timeout)} |")


if __name__ == "__main__":
    main(sys.argv[1])
