"""Transfer: a run whose pi_0 starts from a trained run's, its checks, and the transfer experiment's numbers."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from distral_tf.envs import make_suite
from distral_tf.experiments import transfer as experiment
from distral_tf.training import warm_start as transfer
from distral_tf.training.config import TrainConfig
from distral_tf.training.trained_run import RunLoadError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELD_OUT = "two_rooms_small_goal9"


@pytest.mark.parametrize("algo,suite,expected", [
    ("a3c", "two_rooms_small", "does not use pi_0"),
    ("kl_1col", "two_rooms", "observations (40, 40, 3) with 4 actions, but this suite has observations (84, 84, 3)"),
])
def test_check_source_rejects_what_cannot_transfer(tiny_kl_2col_run, algo, suite, expected):
    from distral_tf.training.trained_run import probe_spaces

    shape, actions = probe_spaces(make_suite(suite))
    with pytest.raises(RunLoadError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        transfer.check_source(str(tiny_kl_2col_run), algo, shape, actions)
    assert transfer.check_source(str(tiny_kl_2col_run), "kl_1col", (40, 40, 3), 4) == 120


def test_command_line_with_a_mismatched_source_is_one_line_and_writes_nothing(tiny_kl_2col_run, tmp_path):
    logdir = tmp_path / "new"
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-m", "distral_tf.run", "--algo=kl_2col", "--suite=two_rooms",
                             f"--init_from={tiny_kl_2col_run}", f"--logdir={logdir}", "--total_env_steps=100"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "(84, 84, 3)" in last and "(40, 40, 3)" in last
    assert not logdir.exists()


def test_freeze_without_init_from_is_a_flag_error():
    from absl import flags as absl_flags

    from flags import training  # noqa: F401  (defines the flags)

    values = absl_flags.FLAGS
    values.unparse_flags()
    try:
        with pytest.raises(absl_flags.Error, match="needs --init_from"):
            values(["run", "--freeze_distilled"])
    finally:
        values.unparse_flags()


def test_new_run_starts_with_the_source_pi0_and_fresh_task_columns(tiny_kl_2col_run, tmp_path):
    from distral_tf.training import trained_run
    from distral_tf.training.trainer import Trainer

    config = TrainConfig(algo="kl_2col", suite=HELD_OUT, logdir=str(tmp_path / "target"), total_env_steps=40,
                         workers_per_task=1, entropy_cost=0.05, eval_episodes=0, num_env_processes=0,
                         init_from=str(tiny_kl_2col_run), seed=1)
    trainer = Trainer(config, make_suite(HELD_OUT))
    trainer.build()
    source = trained_run.load(str(tiny_kl_2col_run)).agent
    for new, old in zip(trainer.agent.distilled.variables, source.distilled.variables, strict=True):
        np.testing.assert_array_equal(new.numpy(), old.numpy())
    # The new task column is not any of the source's task columns.
    new_kernel = trainer.agent.task_columns[0].conv1.kernel.numpy()
    assert all(not np.array_equal(new_kernel, c.conv1.kernel.numpy()) for c in source.task_columns)
    assert json.loads((tmp_path / "target" / "config.json").read_text())["config"]["init_from"] == str(
        tiny_kl_2col_run)


def test_binned_curve_and_area_under_it():
    steps = np.array([5, 15, 15, 35])
    returns = np.array([1.0, 2.0, 4.0, 8.0])
    curve = experiment.binned_curve(steps, returns, budget=40, bins=4)
    np.testing.assert_array_equal(curve[[0, 1, 3]], [1.0, 3.0, 8.0])
    assert np.isnan(curve[2])
    assert experiment.area_under_curve(curve) == pytest.approx(4.0)


def test_summary_pairs_each_arm_with_scratch_by_seed():
    curves = {"transfer": {0: np.array([2.0, 4.0]), 1: np.array([1.0, 1.0])},
              "scratch": {0: np.array([1.0, 1.0]), 1: np.array([2.0, 2.0])}}
    summary = experiment.summarize(curves)
    assert summary["transfer"]["auc"] == [3.0, 1.0]
    assert summary["transfer"]["auc_minus_scratch"] == [2.0, -1.0]
    assert summary["transfer"]["seeds_above_scratch"] == 1
    assert summary["transfer"]["final"] == [4.0, 1.0]  # the last 20% of two bins is the last bin
    assert "auc_minus_scratch" not in summary["scratch"]


def test_experiment_commands_start_target_runs_from_their_seed_source():
    source_tasks, held = experiment.source_tasks_and_held_out(make_suite("two_rooms_small").task_names, -1)
    assert held == HELD_OUT and HELD_OUT not in source_tasks and len(source_tasks) == 2
    commands = experiment.run_commands("runs", "kl_2col", source_tasks, held, [0, 1], 100, 50, ["--x=1"])
    by_name = {c["name"]: c for c in commands}
    assert set(by_name) == {f"{a}-s{s}" for a in ("source", *experiment.ARMS) for s in (0, 1)}
    assert f"--init_from={by_name['source-s1']['logdir']}" in by_name["transfer-s1"]["argv"]
    assert "--freeze_distilled" in by_name["transfer_frozen-s0"]["argv"]
    assert not any(a.startswith("--init_from") for a in by_name["scratch-s0"]["argv"])
    scratch = by_name["scratch-s0"]["argv"]
    assert f"--suite={held}" in scratch and "--total_env_steps=50" in scratch
    with pytest.raises(ValueError, match="not a task index"):
        experiment.source_tasks_and_held_out(["a", "b"], 2)


def test_frozen_pi0_stays_the_source_while_the_task_column_learns(tiny_kl_2col_run, tmp_path):
    from distral_tf.training import trained_run
    from distral_tf.training.trainer import Trainer

    config = TrainConfig(algo="kl_2col", suite=HELD_OUT, logdir=str(tmp_path / "frozen"), total_env_steps=40,
                         workers_per_task=1, entropy_cost=0.05, eval_episodes=0, num_env_processes=0,
                         actor_threads=1, init_from=str(tiny_kl_2col_run), freeze_distilled=True)
    trainer = Trainer(config, make_suite(HELD_OUT))
    assert trainer.run()["state"] == "finished"
    agent = trainer.agent
    assert int(agent.optimizer.num_updates.numpy()) == 2  # two rollouts of 20 steps
    assert not any(v is w for v in agent.trainable for w in agent.distilled.variables)
    source = trained_run.load(str(tiny_kl_2col_run)).agent
    for new, old in zip(agent.distilled.variables, source.distilled.variables, strict=True):
        np.testing.assert_array_equal(new.numpy(), old.numpy())
    assert np.abs(agent.task_columns[0].policy_head.kernel.numpy()).max() > 0  # started at zero, then learnt
    # The frozen run's checkpoint reads back (its agent is rebuilt with the same frozen layout).
    restored = trained_run.load(str(tmp_path / "frozen")).agent
    np.testing.assert_array_equal(restored.distilled.variables[0].numpy(), source.distilled.variables[0].numpy())
