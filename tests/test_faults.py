"""Fault injection: kill -9 and resume, corrupt checkpoints, non-finite updates, signals, a full disk."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from distral_tf.envs import make_suite
from distral_tf.envs.suites import Suite
from distral_tf.training.checkpointing import CheckpointError
from distral_tf.training.config import TrainConfig
from distral_tf.training.trainer import Trainer, TrainingError

pytestmark = pytest.mark.faults
ROOT = Path(__file__).resolve().parents[1]
SUITE = "two_rooms_small"


def config(logdir, **overrides):
    values = dict(algo="kl_1col", suite=SUITE, logdir=str(logdir), total_env_steps=3 * 100, workers_per_task=1,
                  entropy_cost=0.05, eval_episodes=0, log_every_secs=5.0, checkpoint_every_secs=1000.0)
    values.update(overrides)
    return TrainConfig(**values)


def test_kill_9_resume_cycles_lose_and_repeat_nothing(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "drills" / "kill_resume.py"), "--cycles=1", "--total_env_steps=2400",
         f"--logdir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    summary = json.loads(result.stdout[result.stdout.index("{"):])
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert summary["kills"] == 1 and summary["ok"]
    assert summary["env_steps_per_task"] == [summary["budget_per_task"]] * 3
    assert all(steps <= summary["budget_per_task"] for steps in summary["episode_steps_logged_per_task"])
    assert summary["episodes_in_metrics_file"] == summary["episodes_in_tensorboard"]
    assert summary["restored_parameters_equal_checkpoint"] == "1/1"


@pytest.fixture(scope="module")
def two_checkpoints_template(tmp_path_factory):
    """A run directory with two checkpoints (made once, copied by each test)."""
    logdir = tmp_path_factory.mktemp("two_checkpoints")
    suite = make_suite(SUITE)
    Trainer(config(logdir, total_env_steps=3 * 40), suite).run()
    Trainer(config(logdir, total_env_steps=3 * 80, force=True), suite).run()
    return logdir


def _two_checkpoints(template, tmp_path):
    shutil.copytree(template, tmp_path, dirs_exist_ok=True)
    state = tf.train.get_checkpoint_state(str(tmp_path / "checkpoints"))
    ckpts = [str(tmp_path / "checkpoints" / os.path.basename(p)) for p in state.all_model_checkpoint_paths]
    assert len(ckpts) == 2
    return make_suite(SUITE), ckpts


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(two_checkpoints_template, tmp_path, caplog):
    suite, (older, latest) = _two_checkpoints(two_checkpoints_template, tmp_path)
    data = Path(latest + ".data-00000-of-00001")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])  # truncated, as by a crash
    trainer = Trainer(config(tmp_path, total_env_steps=3 * 120, force=True), suite)
    summary = trainer.run()
    assert trainer.resumed_from == older
    assert "unreadable" in caplog.text
    assert summary["state"] == "finished"
    assert json.loads((tmp_path / "status.json").read_text())["env_steps_per_task"] == [120] * 3


def test_no_readable_checkpoint_is_a_clear_error(two_checkpoints_template, tmp_path):
    suite, paths = _two_checkpoints(two_checkpoints_template, tmp_path)
    for path in paths:
        Path(path + ".index").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="No checkpoint in .* could be restored"):
        Trainer(config(tmp_path, total_env_steps=3 * 120, force=True), suite).run()


class ExplodingRewardEnv(gym.Env):
    """A small image task whose rewards are so large that every gradient overflows."""

    observation_space = gym.spaces.Box(0, 255, (36, 36, 3), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 3e38, False, False, {}


gym.register("distral_tf_test/ExplodingReward-v0", entry_point=ExplodingRewardEnv)
EXPLODING = Suite(name="exploding", task_names=("boom",), env_ids=("distral_tf_test/ExplodingReward-v0",),
                  env_kwargs=({},))


def test_repeated_non_finite_updates_stop_the_run_and_keep_the_last_checkpoint(tmp_path):
    cfg = config(tmp_path, suite="exploding", algo="a3c", entropy_cost=0.01, total_env_steps=2000,
                 max_consecutive_nonfinite=5, num_env_processes=0)  # a test env: in-process
    with pytest.raises(TrainingError, match="5 consecutive updates had non-finite gradients"):
        Trainer(cfg, EXPLODING).run()
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "failed" and status["skipped_updates"] >= 5
    assert not (tmp_path / "checkpoints" / "checkpoint").exists()  # no checkpoint of a broken state


def test_full_disk_at_checkpoint_time_is_a_clear_error(tmp_path, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tf.train.CheckpointManager, "save", no_space)
    with pytest.raises(CheckpointError, match="No space left on device. The previous checkpoints are intact"):
        Trainer(config(tmp_path, total_env_steps=3 * 20), make_suite(SUITE)).run()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_writes_a_final_checkpoint_and_exits_promptly(tmp_path, signum):
    logdir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "distral_tf.run", "--algo=a3c", f"--suite={SUITE}", "--total_env_steps=1000000",
         "--workers_per_task=2", f"--logdir={logdir}", "--log_every_secs=1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        deadline = time.time() + 240
        metrics = logdir / "metrics.jsonl"
        while time.time() < deadline and not (metrics.exists() and metrics.stat().st_size > 0):
            time.sleep(0.5)
        sent = time.time()
        proc.send_signal(signum)
        proc.wait(timeout=60)
        took = time.time() - sent
    finally:
        proc.kill()
    status = json.loads((logdir / "status.json").read_text())
    assert status["state"] == "interrupted"
    assert proc.returncode == 130
    assert took < 15
    assert tf.train.latest_checkpoint(str(logdir / "checkpoints")).endswith(f"ckpt-{status['env_steps']}")
