"""Kill -9 / resume cycles of one small run, then checks that nothing was lost or counted twice.

    python drills/kill_resume.py --cycles=10 --logdir=/tmp/kill_resume
    python drills/kill_resume.py --kill_at=random --min_kill_secs=5 --max_kill_secs=90 \\
        --checkpoint_every_secs=20 --total_env_steps=200000

With ``--kill_at=after_checkpoint`` each cycle starts ``python -m distral_tf.run``,
waits for a new checkpoint, kills the process with SIGKILL at a random moment after
it, and checks that the trainer's own restore path gives exactly the parameters of
the latest checkpoint. With ``--kill_at=random`` it kills at a moment drawn
uniformly from ``[--min_kill_secs, --max_kill_secs]`` after the start, which
includes kills before an attempt's first checkpoint. A second run
on the same directory is attempted while the first one holds it
(``--concurrent_attempts``, every other cycle, so that the other cycles' kill times stay
exact): it must be refused with a one-line error. After each
kill the run's status must read "crashed". A last run completes the budget. Then
it checks: the final per-task step counters equal the budget, no task's steps go
backwards in ``metrics.jsonl``, no step is counted twice (the logged episodes of a
task span at most its budget) and TensorBoard holds exactly the episodes of
``metrics.jsonl``; and prints a summary.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
from absl import flags

from flags import cli

_CYCLES = flags.DEFINE_integer("cycles", 10, "Kill -9 / resume cycles.")
_LOGDIR = flags.DEFINE_string("logdir", "/tmp/distral_kill_resume", "Run directory (emptied first).")
_ALGO = flags.DEFINE_string("algo", "kl_2col", "Algorithm of the run.")
_STEPS = flags.DEFINE_integer("total_env_steps", 6000, "Budget of the run (all tasks).")
_VERIFY = flags.DEFINE_bool("verify_restore", True, "Check the restored parameters after each kill.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the kill times.")
_KILL_AT = flags.DEFINE_enum("kill_at", "after_checkpoint", ["after_checkpoint", "random"],
                             "When each cycle kills: shortly after a new checkpoint, or at a random moment.")
_MIN_KILL = flags.DEFINE_float("min_kill_secs", 5.0, "--kill_at=random: earliest kill, seconds after the start.")
_MAX_KILL = flags.DEFINE_float("max_kill_secs", 90.0, "--kill_at=random: latest kill, seconds after the start.")
_CHECKPOINT_EVERY = flags.DEFINE_float("checkpoint_every_secs", 1.0, "Passed to the runs.")
_CONCURRENT = flags.DEFINE_bool("concurrent_attempts", True,
                                "In each cycle, try a second run on the same directory while the first holds it.")


def run_args(logdir):
    return [sys.executable, "-m", "distral_tf.run", f"--algo={_ALGO.value}", "--suite=two_rooms_small",
            f"--total_env_steps={_STEPS.value}", "--workers_per_task=2", f"--logdir={logdir}",
            f"--checkpoint_every_secs={_CHECKPOINT_EVERY.value}", "--log_every_secs=5", "--eval_episodes=1",
            "--eval_every_env_steps=400"]


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
    from distral_tf.envs import make_suite
    from distral_tf.training.config import TrainConfig
    from distral_tf.training.trainer import Trainer

    config = TrainConfig(algo=_ALGO.value, suite="two_rooms_small", total_env_steps=_STEPS.value, workers_per_task=2,
                         logdir=logdir, eval_episodes=1, eval_every_env_steps=400)
    trainer = Trainer(config, make_suite("two_rooms_small"))
    trainer.build()
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


def lock_holder_pid(logdir):
    try:
        with open(os.path.join(logdir, "run.lock")) as f:
            return json.loads(f.read() or "{}").get("pid")
    except (OSError, ValueError, AttributeError):
        return None


def start_concurrent_attempt(logdir, proc, env, timeout=120):
    """Starts a second run on ``logdir`` once ``proc`` holds its lock (its pid is in ``run.lock``)."""
    deadline = time.time() + timeout
    while lock_holder_pid(logdir) != proc.pid:
        if proc.poll() is not None or time.time() > deadline:
            return None
        time.sleep(0.1)
    return subprocess.Popen(run_args(logdir), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def concurrent_attempt_refused(second, proc):
    """True if the second run ended with a one-line "in use by another run" error; None if untested."""
    try:
        _, stderr = second.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        second.kill()
        second.communicate()
        return False
    if proc.poll() is not None:
        return None  # the first run ended meanwhile: no concurrency was tested
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    return (second.returncode != 0 and "Traceback" not in stderr and last.startswith("error: ")
            and "in use by another run" in last)


def checkpoint_numbers(logdir):
    from distral_tf.training import run_files

    return run_files.checkpoint_numbers(os.path.join(logdir, "checkpoints"))


def status_after_kill_is_right(logdir):
    """A killed run reads "crashed" (or has no status yet), or "finished" when the kill landed
    after it had spent its whole budget and written its final status (while it was exiting)."""
    from distral_tf.training import run_files

    state = run_files.read_state(logdir)
    if state == "finished":
        status = json.loads(open(os.path.join(logdir, "status.json")).read())
        return all(steps >= status["budget_per_task"] for steps in status["env_steps_per_task"])
    return state in ("crashed", None)


def steps_going_backwards(rows, task_names):
    backwards = 0
    for task in task_names:
        steps = [r["env_steps"] for r in rows if r["task"] == task and r["policy"] == "task"]
        backwards += sum(b < a for a, b in zip(steps, steps[1:], strict=False))
    return backwards


def main(argv):
    cli.refuse_positional(argv)
    from distral_tf.training import run_files

    logdir = _LOGDIR.value
    shutil.rmtree(logdir, ignore_errors=True)
    rng = np.random.default_rng(_SEED.value)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    previous = None
    kills = kills_before_first_checkpoint = 0
    restore_checks, concurrency_checks, crashed_checks = [], [], []
    for cycle in range(_CYCLES.value):
        before = checkpoint_numbers(logdir)
        start = time.time()
        proc = subprocess.Popen(run_args(logdir), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        planned = float(rng.uniform(_MIN_KILL.value, _MAX_KILL.value))
        # In odd cycles a concurrent attempt starts once the run holds its lock; a kill planned
        # before the attempt has ended waits for its end (even cycles keep their kill times exact).
        second = start_concurrent_attempt(logdir, proc, env) if _CONCURRENT.value and cycle % 2 else None
        refused = concurrent_attempt_refused(second, proc) if second is not None else None
        if refused is not None:
            concurrency_checks.append(refused)
        if _KILL_AT.value == "random":
            kill_at = start + planned
        else:
            latest = wait_for_new_checkpoint(logdir, previous, proc)
            kill_at = time.time() + float(rng.uniform(0.0, 1.5)) if latest else time.time()
        while proc.poll() is None and time.time() < kill_at:
            time.sleep(0.05)
        if proc.poll() is not None:
            print(f"cycle {cycle}: the run ended (exit {proc.returncode}) before it could be killed", flush=True)
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        after = checkpoint_numbers(logdir)
        first = not after or after == before == []
        new_checkpoint = after and after[-1] not in before
        if not new_checkpoint:
            kills_before_first_checkpoint += 1
        crashed_checks.append(status_after_kill_is_right(logdir))
        previous = latest_checkpoint(logdir)
        line = (f"cycle {cycle}: killed -9 {time.time() - start:.1f} s after the start, "
                + (f"after checkpoint ckpt-{after[-1]}" if new_checkpoint else
                   "before this attempt's first checkpoint" + (" (none on disk)" if first else ""))
                + f"; status reads {run_files.read_state(logdir)}"
                + (f"; a concurrent run was refused: {refused}" if refused is not None else ""))
        if _VERIFY.value and previous:
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
    rerun = subprocess.run(run_args(logdir), env=env, capture_output=True, text=True)

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
    backwards = steps_going_backwards(rows, config["task_names"])
    already_finished = rerun.returncode == 0 and "already finished" in rerun.stdout
    ok = (final.returncode == 0 and status["state"] == "finished"
          and status["env_steps_per_task"] == [budget] * len(config["task_names"])
          and not steps_counted_twice and backwards == 0 and rows_per_task == events_per_task
          and all(restore_checks) and all(concurrency_checks) and all(crashed_checks) and already_finished)
    attempts_dir = os.path.join(logdir, run_files.ATTEMPTS_DIR)
    print(json.dumps({
        "kills": kills, "kills_before_an_attempts_first_checkpoint": kills_before_first_checkpoint,
        "attempts_moved_aside": len(os.listdir(attempts_dir)) if os.path.isdir(attempts_dir) else 0,
        "final_exit_code": final.returncode, "state": status["state"],
        "env_steps_per_task": status["env_steps_per_task"], "budget_per_task": budget,
        "episode_steps_logged_per_task": logged_steps, "steps_going_backwards": backwards,
        "episodes_in_metrics_file": rows_per_task, "episodes_in_tensorboard": events_per_task,
        "restored_parameters_equal_checkpoint": f"{sum(restore_checks)}/{len(restore_checks)}",
        "concurrent_runs_refused": f"{sum(concurrency_checks)}/{len(concurrency_checks)}",
        "killed_runs_read_crashed": f"{sum(crashed_checks)}/{len(crashed_checks)}",
        "rerun_says_already_finished": already_finished,
        "ok": ok}, indent=1))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    cli.run(main)
