"""Resuming after a crash at any moment: nothing lost, nothing counted twice, finished runs left alone."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

from distral_tf.envs import make_suite
from distral_tf.training import run_files as rundir
from distral_tf.training.checkpointing import Checkpointer
from distral_tf.training.config import TrainConfig
from distral_tf.training.trainer import Trainer

pytestmark = pytest.mark.faults
ROOT = Path(__file__).resolve().parents[1]
SUITE = "two_rooms_small"


def config(logdir, **overrides):
    values = dict(algo="kl_1col", suite=SUITE, logdir=str(logdir), total_env_steps=3 * 40, workers_per_task=1,
                  entropy_cost=0.05, eval_episodes=0, log_every_secs=5.0, checkpoint_every_secs=1000.0,
                  num_env_processes=0)
    values.update(overrides)
    return TrainConfig(**values)


def metrics_rows(logdir):
    return [json.loads(line) for line in (Path(logdir) / "metrics.jsonl").read_text().splitlines()]


def assert_no_step_backwards(logdir):
    last = {}
    for row in metrics_rows(logdir):
        if row["policy"] == "task":
            assert row["env_steps"] >= last.get(row["task"], 0), row
            last[row["task"]] = row["env_steps"]


@pytest.fixture(scope="module")
def finished_template(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("finished")
    Trainer(config(logdir), make_suite(SUITE)).run()
    return logdir


def _copy(template, tmp_path):
    shutil.copytree(template, tmp_path, dirs_exist_ok=True)
    return tmp_path


def _snapshot(logdir):
    return {str(p): (p.stat().st_mtime_ns, p.read_bytes()) for p in Path(logdir).rglob("*") if p.is_file()}


def test_rerunning_a_finished_run_touches_nothing(finished_template, tmp_path):
    logdir = _copy(finished_template, tmp_path)
    before = _snapshot(logdir)
    summary = Trainer(config(logdir), make_suite(SUITE)).run()
    assert summary["already_finished"] and summary["state"] == "finished"
    assert _snapshot(logdir) == before


def test_lost_checkpoint_index_resumes_from_the_newest_checkpoint(finished_template, tmp_path):
    logdir = _copy(finished_template, tmp_path)
    os.remove(logdir / "checkpoints" / "checkpoint")
    (logdir / "status.json").write_text(json.dumps({"state": "running"}))
    trainer = Trainer(config(logdir, total_env_steps=3 * 80, force=True), make_suite(SUITE))
    summary = trainer.run()
    assert trainer.resumed_from.endswith("ckpt-120")
    assert summary["state"] == "finished" and json.loads((logdir / "status.json").read_text())[
        "env_steps_per_task"] == [80] * 3
    assert_no_step_backwards(logdir)
    assert not (logdir / rundir.ATTEMPTS_DIR).exists()


def test_checkpoints_found_without_index_are_pruned_to_keep(tmp_path):
    v = tf.Variable(1.0)
    first = Checkpointer(str(tmp_path), keep=3, v=v)
    for step in range(1, 6):
        first.save(step)
    os.remove(tmp_path / "checkpoint")
    (tmp_path / "ckpt-9_temp").mkdir()
    second = Checkpointer(str(tmp_path), keep=3, v=v)
    assert second.restore().endswith("ckpt-5")
    second.save(6)
    second.save(7)
    assert rundir.checkpoint_numbers(str(tmp_path)) == [5, 6, 7]
    assert not (tmp_path / "ckpt-9_temp").exists()


def test_a_crash_before_the_first_checkpoint_moves_its_files_aside(tmp_path, caplog):
    rows = [{"task": "top_left", "task_index": 0, "policy": "task", "env_steps": 60, "return": 0.0, "length": 60,
             "wall_time": 0.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"task": "to')
    (tmp_path / "status.json").write_text(json.dumps({"state": "running", "pid": 1, "host": "elsewhere"}))
    summary = Trainer(config(tmp_path), make_suite(SUITE)).run()
    assert summary["state"] == "finished"
    assert "before its first checkpoint" in caplog.text
    moved = tmp_path / rundir.ATTEMPTS_DIR / "1"
    assert sorted(os.listdir(moved)) == ["metrics.jsonl", "status.json"]
    assert_no_step_backwards(tmp_path)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["env_steps_per_task"] == [40] * 3
    assert status["pid"] == os.getpid() and status["host"] == rundir.hostname() and "heartbeat" in status


def _unfinished(template, tmp_path):
    """A copy of the finished run whose status says it crashed after its last checkpoint."""
    logdir = _copy(template, tmp_path)
    (logdir / "status.json").write_text(json.dumps({"state": "running"}))
    return logdir


def test_resume_drops_a_cut_last_metrics_line_and_says_so(finished_template, tmp_path, caplog):
    logdir = _unfinished(finished_template, tmp_path)
    kept = len(metrics_rows(logdir))
    with open(logdir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"task": "x", "policy": "task", "env_steps": 1}) + "\n" + '{"task": "y", "pol')
    # One more 40-step episode per task, so that the resumed run appends rows.
    Trainer(config(logdir, total_env_steps=3 * 80, force=True), make_suite(SUITE)).run()
    assert "dropped 2 metrics.jsonl rows (the last one cut short)" in caplog.text
    rows = metrics_rows(logdir)  # every line parses
    assert len(rows) > kept and all(r["task"] != "x" for r in rows)
    assert_no_step_backwards(logdir)


def test_metrics_shorter_than_the_checkpoint_recorded_is_a_clear_error(finished_template, tmp_path):
    logdir = _unfinished(finished_template, tmp_path)
    data = (logdir / "metrics.jsonl").read_bytes()
    (logdir / "metrics.jsonl").write_bytes(data[: len(data) // 3])
    with pytest.raises(rundir.RunDirError, match="metrics.jsonl has .* bytes but the restored checkpoint recorded"):
        Trainer(config(logdir, total_env_steps=3 * 60, force=True), make_suite(SUITE)).run()


def test_command_line_second_run_on_a_locked_logdir_is_a_one_line_error(tmp_path):
    logdir = tmp_path / "run"
    logdir.mkdir()
    with rundir.RunLock(str(logdir)):
        result = subprocess.run(
            [sys.executable, "-m", "distral_tf.run", "--algo=a3c", f"--suite={SUITE}", "--total_env_steps=60",
             f"--logdir={logdir}"], capture_output=True, text=True, timeout=300, cwd=ROOT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        assert sorted(os.listdir(logdir)) == [rundir.LOCK_FILE]  # nothing written by the refused run
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "in use by another run" in last and f"pid {os.getpid()}" in last


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB file system: room for a run's small files, not for a checkpoint (needs root to mount)."""
    mount_point = tmp_path / "small_disk"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {result.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_full_disk_names_the_checkpoint_and_leaves_no_temporary_files(small_disk):
    from distral_tf.training.checkpointing import CheckpointError

    logdir = small_disk / "run"
    with pytest.raises(CheckpointError, match=f"Could not write checkpoint {logdir / 'checkpoints'}/ckpt-60: "):
        Trainer(config(logdir, total_env_steps=3 * 20), make_suite(SUITE)).run()
    leftovers = [str(p) for p in logdir.rglob("*") if "_temp" in p.name or p.name.endswith(".tmp")]
    assert not leftovers
    status = json.loads((logdir / "status.json").read_text())  # strict JSON, complete
    assert status["state"] == "failed" and "No space left on device" in status["error"]
    assert status["env_steps_per_task"] == [20] * 3
    assert not (logdir / rundir.LOCK_FILE).exists()
