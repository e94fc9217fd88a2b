"""Kill -9 / resume cycles of one small run, then checks that nothing was lost or counted twice.

    python experiments/kill_resume.py --cycles=10 --logdir=/tmp/kill_resume

Each cycle starts ``python -m distral_tf.run`` (checkpointing every second), waits
for a new checkpoint, kills the process with SIGKILL at a random moment after it,
and checks that the trainer's own restore path gives exactly the parameters of the
latest checkpoint. A last run completes the budget. Then it checks: the final
per-task step counters equal the budget, no step is counted twice (the logged
episodes of a task span at most its budget) and TensorBoard holds exactly the
episodes of ``metrics.jsonl``; and prints a summary.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

_CYCLES = flags.DEFINE_integer("cycles", 10, "Kill -9 / resume cycles.")
_LOGDIR = flags.DEFINE_string("logdir", "/tmp/distral_kill_resume", "Run directory (emptied first).")
_ALGO = flags.DEFINE_string("algo", "kl_2col", "Algorithm of the run.")
_STEPS = flags.DEFINE_integer("total_env_steps", 6000, "Budget of the run (all tasks).")
_VERIFY = flags.DEFINE_bool("verify_restore", True, "Check the restored parameters after each kill.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the kill times.")


def run_args(logdir):
    return [sys.executable, "-m", "distral_tf.run", f"--algo={_ALGO.value}", "--suite=two_rooms_small",
            f"--total_env_steps={_STEPS.value}", "--workers_per_task=2", f"--logdir={logdir}",
            "--checkpoint_every_secs=1", "--log_every_secs=5", "--eval_episodes=1", "--eval_every_env_steps=400"]


def latest_checkpoint(logdir):
    import tensorflow as tf

    return tf.train.latest_checkpoint(os.path.join(logdir, "checkpoints"))


def checkpoint_fingerprint(path):
    """Sorted (shape, sum) of every network parameter saved in the checkpoint ``path``."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(path)
    prints = []
    for key, shape in tf.train.list_variables(path):
        if key.startswith(("agent/parameters/", "agent/trainable/")) and key.endswith("/.ATTRIBUTES/VARIABLE_VALUE"):
            prints.append((tuple(shape), float(np.sum(reader.get_tensor(key), dtype=np.float64))))
    return sorted(prints)


def restored_fingerprint(logdir):
    """The same fingerprint of the parameters the trainer restores when resuming ``logdir``."""
    from distral_tf.config import TrainConfig
    from distral_tf.envs import make_suite
    from distral_tf.trainer import Trainer

    config = TrainConfig(algo=_ALGO.value, suite="two_rooms_small", total_env_steps=_STEPS.value, workers_per_task=2,
                         logdir=logdir, eval_episodes=1, eval_every_env_steps=400)
    trainer = Trainer(config, make_suite("two_rooms_small"))
    trainer._probe_environment()
    trainer._prepare_logdir()
    trainer._build()
    prints = sorted((tuple(v.shape), float(np.sum(v.numpy(), dtype=np.float64)))
                    for v in trainer.agent.parameters)
    trainer.monitor.close()
    return prints, trainer.task_steps.copy()


def wait_for_new_checkpoint(logdir, previous, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            return None
        latest = latest_checkpoint(logdir)
        if latest and latest != previous:
            return latest
        time.sleep(0.2)
    raise TimeoutError("no new checkpoint appeared")


def main(argv):
    del argv
    logdir = _LOGDIR.value
    shutil.rmtree(logdir, ignore_errors=True)
    rng = np.random.default_rng(_SEED.value)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    previous = None
    kills = 0
    restore_checks = []
    for cycle in range(_CYCLES.value):
        proc = subprocess.Popen(run_args(logdir), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        latest = wait_for_new_checkpoint(logdir, previous, proc)
        if latest is None:
            print(f"cycle {cycle}: the run finished before it could be killed")
            break
        time.sleep(float(rng.uniform(0.0, 1.5)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        previous = latest_checkpoint(logdir)
        line = f"cycle {cycle}: killed -9 after checkpoint {os.path.basename(previous)}"
        if _VERIFY.value:
            restored, steps = restored_fingerprint(logdir)
            same = restored == checkpoint_fingerprint(previous)
            restore_checks.append(same)
            line += f"; restored parameters equal the checkpoint's: {same}; task steps {steps.tolist()}"
        print(line, flush=True)
    final = subprocess.run(run_args(logdir), env=env, capture_output=True, text=True)
    status = json.loads(open(os.path.join(logdir, "status.json")).read())
    config = json.loads(open(os.path.join(logdir, "config.json")).read())
    budget = status["budget_per_task"]
    rows = [json.loads(line) for line in open(os.path.join(logdir, "metrics.jsonl"))]

    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(logdir, size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    # Every agent step belongs to at most one logged episode: a step counted twice (episodes
    # logged again after a resume) would make the logged episode lengths add up to more than
    # the task's steps. TensorBoard must hold exactly the episodes of metrics.jsonl.
    logged_steps, rows_per_task, events_per_task = [], [], []
    for task in config["task_names"]:
        task_rows = [r for r in rows if r["task"] == task and r["policy"] == "task"]
        logged_steps.append(sum(r["length"] for r in task_rows))
        rows_per_task.append(len(task_rows))
        events_per_task.append(len(acc.Tensors(f"task/{task}/episode_return")))
    steps_counted_twice = any(logged > budget for logged in logged_steps)
    ok = (final.returncode == 0 and status["state"] == "finished"
          and status["env_steps_per_task"] == [budget] * len(config["task_names"])
          and not steps_counted_twice and rows_per_task == events_per_task and all(restore_checks))
    print(json.dumps({
        "kills": kills, "final_exit_code": final.returncode, "state": status["state"],
        "env_steps_per_task": status["env_steps_per_task"], "budget_per_task": budget,
        "episode_steps_logged_per_task": logged_steps, "episodes_in_metrics_file": rows_per_task,
        "episodes_in_tensorboard": events_per_task,
        "restored_parameters_equal_checkpoint": f"{sum(restore_checks)}/{len(restore_checks)}",
        "ok": ok}, indent=1))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    app.run(main)
