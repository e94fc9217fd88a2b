"""End-to-end training of every algorithm on the small task family, TensorBoard output and resume."""

import dataclasses
import json
import os
import re
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from distral_tf import algorithms
from distral_tf.envs import make_suite
from distral_tf.training import provenance
from distral_tf.training import tensorboard_metadata as summaries
from distral_tf.training.config import TrainConfig
from distral_tf.training.trainer import Trainer, TrainingError

SUITE = "two_rooms_small"


def small_config(logdir, algo, **overrides):
    values = dict(algo=algo, suite=SUITE, logdir=str(logdir), total_env_steps=3 * 2 * 60, workers_per_task=2,
                  unroll_length=20, entropy_cost=0.05 if algorithms.get(algo).kl else 0.01, eval_episodes=1,
                  eval_every_env_steps=60, log_every_secs=1.0, checkpoint_every_secs=1000.0, final_eval_episodes=1)
    values.update(overrides)
    return TrainConfig(**values)


def read_scalars(logdir):
    acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    return {tag: [(e.step, float(np.asarray(e.tensor_proto.float_val or [0])[0])) for e in acc.Tensors(tag)]
            for tag in acc.Tags()["tensors"]}


@pytest.mark.parametrize("algo", algorithms.NAMES)
def test_every_algorithm_trains_to_completion_with_per_task_summaries(tmp_path, algo):
    suite = make_suite(SUITE)
    summary = Trainer(small_config(tmp_path, algo), suite).run()

    assert summary["state"] == "finished"
    per_task = 120
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "finished"
    assert status["env_steps_per_task"] == [per_task] * suite.num_tasks

    scalars = read_scalars(tmp_path)
    for task in suite.task_names:
        returns = scalars[f"task/{task}/episode_return"]
        assert returns and all(0 < step <= per_task for step, _ in returns)
        assert f"task/{task}/entropy_task" in scalars
        assert f"loss/{task}/policy_gradient" in scalars
        assert f"distilled/{task}/episode_return" in scalars
        if algorithms.get(algo).kl:
            assert f"task/{task}/kl_task_distilled" in scalars
            assert f"loss/{task}/distillation" in scalars

    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {r["task"] for r in rows if r["policy"] == "task"} == set(suite.task_names)
    assert {r["task"] for r in rows if r["policy"] == "distilled"} == set(suite.task_names)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["config"]["algo"] == algo and config["task_names"] == list(suite.task_names)
    assert "flags" not in config  # the settings once
    assert config.get("git_commit") == provenance.git_provenance().get("git_commit")

    # Only the loss terms the algorithm has are logged, and every chart of the layout has data.
    spec = algorithms.get(algo)
    terms = set(spec.loss_term_names(spec.coefficients(small_config(tmp_path, algo).entropy_cost)))
    for task in suite.task_names:
        assert {t.rsplit("/", 1)[1] for t in scalars if t.startswith(f"loss/{task}/")} == terms
    (layout_file,) = [f for f in os.listdir(tmp_path) if f.endswith(summaries.LAYOUT_SUFFIX)]
    layout = summaries._read_layout(str(tmp_path / layout_file))
    for chart in (c for category in layout.category for c in category.chart):
        assert any(re.match(chart.multiline.tag[0], tag) for tag in scalars), chart.title


def test_rerun_of_a_finished_run_returns_at_once(tmp_path):
    suite = make_suite(SUITE)
    cfg = small_config(tmp_path, "a3c", total_env_steps=3 * 40, workers_per_task=1, eval_episodes=0)
    Trainer(cfg, suite).run()
    lines_before = (tmp_path / "metrics.jsonl").read_text()
    summary = Trainer(cfg, suite).run()
    assert summary["state"] == "finished" and summary["env_steps"] == 120 and summary["already_finished"]
    assert (tmp_path / "metrics.jsonl").read_text() == lines_before


def final_rows(logdir):
    rows = [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("final")]


@pytest.mark.parametrize("algo", ["a3c", "a3c_2col", "klent_2col"])
def test_a_finished_run_ends_with_a_final_evaluation_of_pi0_over_exactly_n_episodes(tmp_path, algo):
    suite = make_suite(SUITE)
    cfg = small_config(tmp_path, algo, total_env_steps=3 * 40, workers_per_task=1, eval_episodes=0,
                       final_eval_episodes=11)
    summary = Trainer(cfg, suite).run()
    rows = final_rows(tmp_path)
    assert [sum(r["task_index"] == t for r in rows) for t in range(suite.num_tasks)] == [11] * suite.num_tasks
    assert all(r["policy"] == "distilled" and r["env_steps"] == 40 and r["length"] == 40 for r in rows)
    status = json.loads((tmp_path / "status.json").read_text())
    for task in range(suite.num_tasks):
        returns = [r["return"] for r in rows if r["task_index"] == task]
        np.testing.assert_allclose(status["final_distilled_return_per_task"][task], np.mean(returns))
        np.testing.assert_allclose(summary["final_distilled_stderr_per_task"][task],
                                   np.std(returns, ddof=1) / np.sqrt(11))
    # config.json records only the coefficients of the terms the algorithm has.
    terms = json.loads((tmp_path / "config.json").read_text())["coefficients"]
    assert set(terms) == {"a3c": {"entropy_bonus"}, "a3c_2col": {"entropy_bonus", "alpha"},
                          "klent_2col": {"alpha", "beta", "c_kl", "c_ent"}}[algo]


def test_a_run_stopped_before_its_final_evaluation_evaluates_pi0_when_started_again(tmp_path):
    suite = make_suite(SUITE)
    cfg = small_config(tmp_path, "kl_2col", total_env_steps=3 * 40, workers_per_task=1, eval_episodes=0,
                       final_eval_episodes=0)
    assert Trainer(cfg, suite).run()["state"] == "finished"
    assert not final_rows(tmp_path)
    status = json.loads((tmp_path / "status.json").read_text())
    (tmp_path / "status.json").write_text(json.dumps({**status, "state": "interrupted"}))
    summary = Trainer(dataclasses.replace(cfg, final_eval_episodes=2), suite).run()
    assert summary["state"] == "finished" and len(final_rows(tmp_path)) == 2 * suite.num_tasks
    assert json.loads((tmp_path / "status.json").read_text())["final_distilled_episodes"] == 2
    assert Trainer(dataclasses.replace(cfg, final_eval_episodes=2), suite).run()["already_finished"]
    assert len(final_rows(tmp_path)) == 2 * suite.num_tasks


def test_interrupted_run_resumes_without_repeating_steps(tmp_path):
    suite = make_suite(SUITE)
    cfg = small_config(tmp_path, "kl_1col", total_env_steps=3 * 200, workers_per_task=2, eval_episodes=0)
    trainer = Trainer(cfg, suite)

    def stop_after_a_few_rollouts():
        while trainer.state.total_steps < 120 and not trainer.stop_requested:
            time.sleep(0.005)
        trainer.request_stop()

    threading.Thread(target=stop_after_a_few_rollouts, daemon=True).start()
    first = trainer.run()
    assert first["state"] == "interrupted"
    steps_at_stop = json.loads((tmp_path / "status.json").read_text())["env_steps_per_task"]
    assert 0 < sum(steps_at_stop) < 600

    resumed = Trainer(cfg, suite)
    second = resumed.run()
    assert second["state"] == "finished"
    assert resumed.resumed_from is not None
    assert json.loads((tmp_path / "status.json").read_text())["env_steps_per_task"] == [200] * 3
    assert int(resumed.agent.env_steps.numpy()) == 600
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for task in suite.task_names:
        task_rows = [r for r in rows if r["task"] == task and r["policy"] == "task"]
        assert sum(r["length"] for r in task_rows) <= 200, "steps counted twice after resume"
        assert max(r["env_steps"] for r in task_rows) <= 200


def test_resume_with_a_different_model_configuration_is_refused(tmp_path):
    suite = make_suite(SUITE)
    cfg = small_config(tmp_path, "a3c", total_env_steps=3 * 20, workers_per_task=1, eval_episodes=0)
    Trainer(cfg, suite).run()
    changed = small_config(tmp_path, "a3c", total_env_steps=3 * 20, workers_per_task=1, eval_episodes=0,
                           learning_rate=1e-2)
    with pytest.raises(TrainingError, match="learning_rate"):
        Trainer(changed, suite).run()
    forced = small_config(tmp_path, "a3c", total_env_steps=3 * 40, workers_per_task=1, eval_episodes=0,
                          learning_rate=1e-2, force=True)
    assert Trainer(forced, suite).run()["state"] == "finished"


def test_a_c_plus_plus_rmsprop_kernel_that_cannot_be_built_stops_the_run_before_it_writes(tmp_path, monkeypatch):
    from distral_tf.model import kernels

    monkeypatch.setenv("DISTRAL_TF_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    kernels.rmsprop_sequence.cache_clear()
    try:
        cfg = small_config(tmp_path / "run", "a3c", total_env_steps=3 * 20, workers_per_task=1, eval_episodes=0,
                           rmsprop_kernel="cpp")
        with pytest.raises(TrainingError, match="--rmsprop_kernel=cpp: running the compiler .*falls back to XLA"):
            Trainer(cfg, make_suite(SUITE)).run()
        assert not (tmp_path / "run").exists()
        auto = dataclasses.replace(cfg, rmsprop_kernel="auto")  # the same machine: XLA, with a warning
        assert Trainer(auto, make_suite(SUITE)).run()["state"] == "finished"
    finally:
        kernels.rmsprop_sequence.cache_clear()
