"""Experiment tracking: a tiny run's scalars, settings and final figures reach W&B (offline) and MLflow (a local
store), as they reach metrics.jsonl; sweeps group their runs."""

import glob
import json
import os

import pytest
from conftest import train_tiny_run

from distral_tf import sweep
from distral_tf.envs import make_suite
from distral_tf.training import tracking
from distral_tf.training.config import TrainConfig

SUITE = "two_rooms_small"
TINY = dict(algo="kl_2col", suite=SUITE, total_env_steps=120, workers_per_task=1, unroll_length=20,
            entropy_cost=0.05, eval_episodes=0, num_env_processes=0, actor_threads=1, log_every_secs=60.0,
            checkpoint_every_secs=1000.0)


def _tracked_tiny_run(logdir, track, group="sweep_a"):
    """Trains a tiny run tracked by ``track`` as ``python -m distral_tf.run`` does; returns its summary."""
    config = TrainConfig(logdir=str(logdir), track=track, track_project="tests", track_group=group, **TINY)
    task_names = make_suite(SUITE).task_names
    tracker = tracking.start(config, flush_secs=0.2)
    with tracking.tracked(tracker, task_names) as finish:
        train_tiny_run(logdir, **{k: v for k, v in TINY.items() if k not in ("algo", "suite")},
                       track=track, track_project="tests", track_group=group)
        summary = json.loads((logdir / "status.json").read_text())
        finish(summary)
    return summary, task_names


def _episode_rows(logdir):
    """(tag, step, return) of every task-policy episode in metrics.jsonl."""
    rows = [json.loads(line) for line in (logdir / "metrics.jsonl").read_text().splitlines()]
    return sorted((f"task/{r['task']}/episode_return", r["env_steps"], round(r["return"], 4)) for r in rows
                  if r["policy"] == "task")


def _wandb_records(path):
    """The records of a W&B run file (a LevelDB-style log of ``Record`` protos after a 7-byte header)."""
    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # the rest of a block is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if kind == 0:
            pos += block - pos % block
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last part of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def test_wandb_offline_records_the_runs_scalars_settings_and_final_figures(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    logdir = tmp_path / "kl_2col-run"
    summary, task_names = _tracked_tiny_run(logdir, "wandb")
    import wandb

    wandb.teardown()  # W&B's service writes the run file out when it stops (at the exit of a run's process)
    [path] = glob.glob(str(logdir / "wandb" / "offline-run-*" / "run-*.wandb"))
    history, config, final, run = [], {}, {}, None
    for record in _wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append({_key(item): json.loads(item.value_json) for item in record.history.item})
        elif kind == "config":
            config.update({_key(item): json.loads(item.value_json) for item in record.config.update})
        elif kind == "summary":
            final.update({_key(item): json.loads(item.value_json) for item in record.summary.update})
        elif kind == "run":
            run = record.run
    episodes = sorted((tag, row["agent_steps"], round(value, 4)) for row in history for tag, value in row.items()
                      if tag.startswith("task/") and tag.endswith("/episode_return"))
    assert episodes == _episode_rows(logdir) and len(episodes) == 3
    assert any("loss/" + task_names[0] + "/total" in row for row in history)
    assert (config["algo"], config["learning_rate"], config["total_env_steps"]) == ("kl_2col", 1e-3, 120)
    assert (run.run_group, run.project, run.display_name) == ("sweep_a", "tests", "kl_2col-run")
    assert final["state"] == "finished" and final["final/env_steps"] == 120
    for task, value in zip(task_names, summary["mean_recent_return_per_task"], strict=True):
        assert final[f"final/mean_recent_return_per_task/{task}"] == pytest.approx(value)


def test_mlflow_local_store_records_the_runs_scalars_settings_and_final_figures(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    logdir = tmp_path / "kl_2col-run"
    summary, task_names = _tracked_tiny_run(logdir, "mlflow")
    client = MlflowClient()
    run_id = json.loads((logdir / tracking.TRACKING_FILE).read_text())["mlflow"]
    run = client.get_run(run_id)
    assert client.get_experiment(run.info.experiment_id).name == "sweep_a"
    assert (run.info.status, run.info.run_name, run.data.tags["distral_tf.group"]) == ("FINISHED", "kl_2col-run",
                                                                                       "sweep_a")
    assert (run.data.params["algo"], run.data.params["total_env_steps"]) == ("kl_2col", "120")
    episodes = sorted((f"task/{task}/episode_return", m.step, round(m.value, 4)) for task in task_names
                      for m in client.get_metric_history(run_id, f"task/{task}/episode_return"))
    assert episodes == _episode_rows(logdir) and len(episodes) == 3
    assert client.get_metric_history(run_id, f"loss/{task_names[0]}/total")
    assert run.data.metrics["final/env_steps"] == 120
    for task, value in zip(task_names, summary["mean_recent_return_per_task"], strict=True):
        assert run.data.metrics[f"final/mean_recent_return_per_task/{task}"] == pytest.approx(value)
    # Started again on the same run directory (a resumed run), the same tracked run continues.
    config = TrainConfig(logdir=str(logdir), track="mlflow", track_group="sweep_a", **TINY)
    again = tracking.start(config, flush_secs=0.2)
    again.close("interrupted")
    assert again.id == run_id and client.get_run(run_id).info.status == "KILLED"


def test_a_missing_tracker_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(tracking.TrackingUnavailableError, match=r"pip install 'distral_tf\[wandb\]'"):
        tracking.check_available("wandb")
    tracking.check_available("none")


def test_final_figures_name_each_tasks_figure():
    figures = tracking.final_figures({"state": "finished", "env_steps": 120, "already_finished": True,
                                      "mean_recent_return_per_task": [1.0, 2.5], "time_split_seconds": {"env": 1.0},
                                      "env_restarts_per_task": [0, 1, 2]}, ["a", "b"])
    assert figures == {"final/env_steps": 120.0, "final/mean_recent_return_per_task/a": 1.0,
                       "final/mean_recent_return_per_task/b": 2.5}


def test_a_sweep_tracks_its_runs_as_one_group_named_after_it(tmp_path):
    out = tmp_path / "mazes_sweep"
    args = sweep.tracking_args("mlflow", str(out), "distral")
    assert args == ["--track=mlflow", "--track_group=mazes_sweep", "--track_project=distral"]
    spec = sweep.expand_grid(SUITE, ["a3c"], [0.01], [1e-3], 2)
    commands = [sweep.run_command(s, os.path.join(out, "runs", s.run_id), extra_args=args) for s in spec]
    assert all("--track_group=mazes_sweep" in c for c in commands)
    assert sweep.tracking_args("none", str(out), None) == []
