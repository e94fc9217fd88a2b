"""What a run prints: its first lines, start-up lines and progress lines."""

import math
import os
import time

from distral_tf.envs import make_suite
from distral_tf.training import budgets
from distral_tf.training.config import TrainConfig
from distral_tf.training.progress import ProgressReporter, StartupReporter, run_header


def test_first_lines_name_the_run_directory_the_run_its_budget_and_tensorboard(tmp_path):
    suite = make_suite("two_rooms_small")
    config = TrainConfig(algo="kl_2col", suite=suite.name, logdir=str(tmp_path / "run"), total_env_steps=30_000,
                         workers_per_task=8)
    text = "\n".join(run_header(config, suite, budgets.longest_episode_steps(suite)))
    assert f"Run directory: {tmp_path / 'run'}" in text
    assert "kl_2col on two_rooms_small: 3 tasks x 8 workers" in text
    assert "30,000 agent steps (10,000 per task, 1,250 per worker: 31.2 episodes of 40 steps" in text
    assert f"tensorboard --logdir={tmp_path / 'run'}" in text
    assert "Warning" not in text


def test_a_budget_shorter_than_one_episode_per_worker_is_pointed_out(tmp_path):
    suite = make_suite("doom_mazes")  # read from the task definitions: no engine starts
    config = TrainConfig(suite=suite.name, logdir=str(tmp_path), total_env_steps=100_000, workers_per_task=32)
    lines = run_header(config, suite, budgets.longest_episode_steps(suite))
    assert any(line.startswith("Warning: each worker gets 390 steps, fewer than one 1,350-step episode")
               for line in lines)


def test_before_any_episode_the_line_says_when_the_first_ones_end_instead_of_nan():
    progress = ProgressReporter(["a", "b"], total_steps=100_000, frames_per_step=4, workers_per_task=10,
                                episode_steps=[100, 200])
    progress.update(0.0, 0)
    rate = progress.update(10.0, 400)  # 40 steps/s, 20 per task
    line = progress.line(400, [200, 200], [math.nan, math.nan], rate)
    assert "nan" not in line
    # Agent steps and frames (4 per step) are labelled as such.
    assert line.startswith("agent steps 400/100,000 (0%) | 40 agent steps/s (160 frames/s) | ")
    # task b's first episodes end at 200 x 10 = 2,000 steps per task: 1,800 more at 20 steps/s per task.
    assert "first episodes end at 2,000 steps per task (200 per worker), in about 0:01:30" in line
    line = progress.line(400, [200, 200], [1.5, math.nan], rate)
    assert "a=1.50 b=-" in line and "nan" not in line
    # Without an action repeat, frames are agent steps: one figure.
    single = ProgressReporter(["a"], total_steps=1_000, frames_per_step=1, workers_per_task=1, episode_steps=[10])
    line = single.line(400, [400], [1.0], 40.0)
    assert " | 40 agent steps/s | " in line and "frames" not in line


def test_eta_is_smoothed_over_lumpy_progress():
    # Steps arrive in lumps (a whole group's rollouts at once): 0 or 2,000 steps per 30 s window.
    progress = ProgressReporter(["a"], total_steps=10_000_000, frames_per_step=1, workers_per_task=1,
                                episode_steps=[10], smoothing_secs=300.0)
    now, steps, etas = 0.0, 0, []
    progress.update(now, steps)
    for window in range(40):
        now += 30.0
        steps += 2_000 if window % 2 else 0
        progress.update(now, steps)
        if window >= 20:
            etas.append(progress.eta_seconds(steps))
    # The windows' own speeds give an ETA that is infinite every other window; the smoothed one moves little.
    assert all(math.isfinite(e) for e in etas)
    assert max(etas) / min(etas) < 1.25


def test_startup_lines_come_every_few_seconds_until_the_run_has_started():
    lines = []
    reporter = StartupReporter(every_secs=0.05, log=lines.append)
    reporter.phase("starting environments: 0/256 ready")
    time.sleep(0.3)
    reporter.done()
    count = len(lines)
    time.sleep(0.15)
    assert lines[0].startswith("Starting (0 s): starting environments")
    assert any("still starting environments" in line for line in lines)
    assert lines[-1].startswith("Started in") and len(lines) == count


def test_run_header_is_printed_before_tensorflow_is_imported():
    import subprocess
    import sys

    code = ("import sys; from distral_tf.training import budgets, progress; "
            "from distral_tf.training.config import TrainConfig; from distral_tf.envs import make_suite; "
            "s = make_suite('two_rooms_small'); progress.run_header(TrainConfig(suite=s.name), s, "
            "budgets.longest_episode_steps(s)); print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.stdout.strip() == "False", out.stderr
