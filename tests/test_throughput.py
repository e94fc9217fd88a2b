"""The trainer with environment processes: both update modes, and an environment process killed mid-run."""

import json
import os
import signal
import threading
import time

import pytest

from distral_tf.envs import make_suite
from distral_tf.training.config import TrainConfig
from distral_tf.training.trainer import Trainer

SUITE = "two_rooms_small"


def config(logdir, **overrides):
    values = dict(algo="kl_2col", suite=SUITE, logdir=str(logdir), total_env_steps=3 * 4 * 60, workers_per_task=4,
                  entropy_cost=0.05, eval_episodes=0, num_env_processes=2, actor_threads=2,
                  checkpoint_every_secs=1000.0, log_every_secs=100.0)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.mark.parametrize("mode", ["hogwild", "batched"])
def test_training_with_environment_processes_spends_the_exact_budget(tmp_path, mode):
    summary = Trainer(config(tmp_path, update_mode=mode), make_suite(SUITE)).run()
    assert summary["state"] == "finished"
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["env_steps_per_task"] == [240] * 3
    assert set(summary["time_split_seconds"]) == {"env", "inference", "learning", "waiting"}
    assert summary["env_restarts_per_task"] == [0, 0, 0]


@pytest.mark.faults
def test_killed_environment_process_does_not_end_the_run(tmp_path):
    trainer = Trainer(config(tmp_path, total_env_steps=3 * 4 * 400, update_mode="batched"), make_suite(SUITE))
    killed = []

    def kill_one_pool_process():
        while trainer.state.total_steps < 200:
            time.sleep(0.05)
        pid = trainer.backend.actor_groups[0].envs.process_ids()[0]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    threading.Thread(target=kill_one_pool_process, daemon=True).start()
    summary = trainer.run()
    assert killed and summary["state"] == "finished"
    assert json.loads((tmp_path / "status.json").read_text())["env_steps_per_task"] == [1600] * 3
    # The killed process held the first group's environments: 4 workers of task 0, 2 of task 1.
    assert summary["env_restarts_per_task"] == [4, 2, 0]
