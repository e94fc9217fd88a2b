"""Kills environment processes of a running training run many times; the run must still finish.

    python drills/env_crashes.py --crashes=100 --logdir=/tmp/env_crashes

Trains in this process with ``--num_env_processes`` environment processes while a
second thread sends SIGKILL to one of them (picked at random) every ``--interval``
seconds until ``--crashes`` kills were made. Prints the final status: state,
per-task steps against the budget and the environment restarts logged per task.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time

import numpy as np
from absl import flags

from flags import cli

_CRASHES = flags.DEFINE_integer("crashes", 100, "Environment processes to kill.")
_INTERVAL = flags.DEFINE_float("interval", 0.5, "Seconds between kills.")
_MIN_AGE = flags.DEFINE_float("min_age", 3.0, "Only kill processes alive for at least this many seconds.")
_LOGDIR = flags.DEFINE_string("logdir", "/tmp/distral_env_crashes", "Run directory (emptied first).")
_SUITE = flags.DEFINE_string("suite", "two_rooms_small", "Suite of the run.")
_STEPS = flags.DEFINE_integer("total_env_steps", 150_000, "Budget of the run (all tasks).")
_PROCESSES = flags.DEFINE_integer("num_env_processes", 2, "Environment processes.")


def main(argv):
    cli.refuse_positional(argv)
    from distral_tf.envs import make_suite
    from distral_tf.training.config import TrainConfig
    from distral_tf.training.tensorflow_setup import configure_tensorflow
    from distral_tf.training.trainer import Trainer

    configure_tensorflow()
    shutil.rmtree(_LOGDIR.value, ignore_errors=True)
    config = TrainConfig(algo="a3c", suite=_SUITE.value, logdir=_LOGDIR.value, total_env_steps=_STEPS.value,
                         workers_per_task=8, update_mode="batched", num_env_processes=_PROCESSES.value,
                         eval_episodes=0, log_every_secs=10.0)
    trainer = Trainer(config, make_suite(_SUITE.value))
    rng = np.random.default_rng(0)
    kills = []

    first_seen = {}

    def killer():
        while len(kills) < _CRASHES.value and not trainer.stop_requested:
            time.sleep(_INTERVAL.value)
            now = time.time()
            for p in multiprocessing.active_children():
                first_seen.setdefault(p.pid, now)
            # Only processes that had time to start their environments: a process killed
            # again and again while starting is a broken environment, which ends the run.
            children = [p for p in multiprocessing.active_children()
                        if p.is_alive() and now - first_seen[p.pid] >= _MIN_AGE.value]
            if not children:
                continue
            victim = children[int(rng.integers(len(children)))]
            try:
                os.kill(victim.pid, signal.SIGKILL)
                kills.append(victim.pid)
            except ProcessLookupError:
                pass

    thread = threading.Thread(target=killer, daemon=True)
    start = time.time()
    thread.start()
    summary = trainer.run()
    status = json.loads(open(os.path.join(_LOGDIR.value, "status.json")).read())
    report = {
        "processes_killed": len(kills),
        "state": summary["state"],
        "env_steps_per_task": status["env_steps_per_task"],
        "budget_per_task": status["budget_per_task"],
        "env_restarts_per_task": summary["env_restarts_per_task"],
        "seconds": round(time.time() - start, 1),
    }
    print(json.dumps(report, indent=1))
    ok = (summary["state"] == "finished" and len(kills) >= _CRASHES.value
          and status["env_steps_per_task"] == [status["budget_per_task"]] * len(status["env_steps_per_task"])
          and sum(summary["env_restarts_per_task"]) >= len(kills))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    cli.run(main)
