"""Run-directory files: the lock, strict atomic JSON, metrics rewinding, crashed-run detection."""

import json
import os
import subprocess
import sys
import time

import pytest

from distral_tf.training import run_files as rundir


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_second_lock_on_a_run_directory_is_refused_naming_the_holder(tmp_path):
    with rundir.RunLock(str(tmp_path)):
        info = json.loads((tmp_path / rundir.LOCK_FILE).read_text())
        assert info["pid"] == os.getpid() and info["host"] == rundir.hostname() and info["started"] <= time.time()
        with pytest.raises(rundir.RunDirError, match=f"in use by another run \\(pid {os.getpid()} on host "):
            rundir.RunLock(str(tmp_path)).acquire()
    assert not (tmp_path / rundir.LOCK_FILE).exists()
    rundir.RunLock(str(tmp_path)).acquire().release()  # free again


def test_lock_held_by_another_process_is_refused(tmp_path):
    code = (f"import sys, time; sys.path.insert(0, {os.getcwd()!r}); "
            "from distral_tf.training import run_files as rundir; "
            f"rundir.RunLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); time.sleep(30)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(rundir.RunDirError, match=f"pid {holder.pid}"):
            rundir.RunLock(str(tmp_path)).acquire()
    finally:
        holder.kill()
        holder.wait()
    # The kernel released the dead holder's lock: its file is taken over.
    lock = rundir.RunLock(str(tmp_path)).acquire()
    assert json.loads((tmp_path / rundir.LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()


def test_stale_lock_file_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
    pid = _dead_pid()
    (tmp_path / rundir.LOCK_FILE).write_text(json.dumps({"pid": pid, "host": "elsewhere", "started": 1.0}))
    with caplog.at_level("WARNING"):
        lock = rundir.RunLock(str(tmp_path)).acquire()
    assert f"pid {pid} on host elsewhere" in caplog.text and "Taking over" in caplog.text
    lock.release()


def test_status_json_is_strict_and_a_failed_write_names_the_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = str(tmp_path / "status.json")
    rundir.write_json_atomically(path, {"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": -float("inf")}})
    text = (tmp_path / "status.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": {"d": None}}

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match=f"could not write {path}: No space left on device"):
        rundir.write_json_atomically(path, {"a": 2})
    assert json.loads((tmp_path / "status.json").read_text())["a"] is None  # previous content kept
    assert sorted(os.listdir(tmp_path)) == ["status.json"]


@pytest.mark.parametrize("content,message", [
    ("", "is empty"), ("{not json", "is not valid JSON"), ("[1, 2]", "holds a JSON list, not an object"),
    ("\"text\"", "holds a JSON str"),
])
def test_unreadable_json_names_the_file(tmp_path, content, message):
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(rundir.RunDirError, match=message) as error:
        rundir.read_json_object(str(path))
    assert str(path) in str(error.value)


def test_rewind_metrics_cuts_back_to_the_checkpoint_and_drops_a_partial_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [json.dumps({"i": i}) + "\n" for i in range(5)]
    offset = len("".join(rows[:3]))
    path.write_text("".join(rows) + '{"i": 5, "cut')
    dropped, partial = rundir.rewind_metrics(str(path), offset)
    assert (dropped, partial) == (3, True)
    assert path.read_text() == "".join(rows[:3])


def test_metrics_shorter_than_the_checkpoint_offset_is_an_error(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"i": 0}\n')
    with pytest.raises(rundir.RunDirError, match="has 9 bytes but the restored checkpoint recorded 100"):
        rundir.rewind_metrics(str(path), 100)
    with pytest.raises(rundir.RunDirError, match="not at a line end"):
        rundir.rewind_metrics(str(path), 4)


def test_drop_partial_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"i": 0}\n{"i": 1')
    assert rundir.drop_partial_last_line(str(path))
    assert path.read_text() == '{"i": 0}\n'
    assert not rundir.drop_partial_last_line(str(path))


def test_a_running_status_of_a_dead_process_reads_crashed(tmp_path):
    status = {"state": "running", "pid": _dead_pid(), "host": rundir.hostname(), "heartbeat": time.time()}
    assert rundir.effective_state(status) == "crashed"
    assert rundir.effective_state({**status, "pid": os.getpid()}) == "running"
    remote = {"state": "running", "pid": 1, "host": "elsewhere", "heartbeat": time.time()}
    assert rundir.effective_state(remote) == "running"
    assert rundir.effective_state({**remote, "heartbeat": time.time() - 2 * rundir.STALE_HEARTBEAT_SECS}) == "crashed"
    assert rundir.effective_state({**status, "state": "finished"}) == "finished"
    (tmp_path / "status.json").write_text(json.dumps(status))
    assert rundir.read_state(str(tmp_path)) == "crashed"


def test_checkpoint_discovery_scans_index_files_and_removes_temporaries(tmp_path):
    for name in ("ckpt-20.index", "ckpt-3.index", "ckpt-100.index", "ckpt-100.data-00000-of-00001", "checkpoint",
                 "ckpt-7.index.tmp"):
        (tmp_path / name).write_text("x")
    (tmp_path / "ckpt-120_temp").mkdir()
    (tmp_path / "ckpt-120_temp" / "part-00000").write_text("x")
    assert rundir.checkpoint_numbers(str(tmp_path)) == [3, 20, 100]
    assert rundir.remove_temporary_checkpoints(str(tmp_path)) == ["ckpt-120_temp"]
    assert not (tmp_path / "ckpt-120_temp").exists()


def test_attempt_without_checkpoint_is_moved_aside(tmp_path):
    for name in ("metrics.jsonl", "status.json", "events.out.tfevents.1.host", "config.json"):
        (tmp_path / name).write_text(name)
    target = rundir.move_attempt_aside(str(tmp_path))
    assert target == str(tmp_path / rundir.ATTEMPTS_DIR / "1")
    assert sorted(os.listdir(target)) == ["events.out.tfevents.1.host", "metrics.jsonl", "status.json"]
    assert (tmp_path / "config.json").exists() and not (tmp_path / "metrics.jsonl").exists()
    assert rundir.move_attempt_aside(str(tmp_path)) is None


# ---------------------------------------------------------------------------------------------- #
# The format's names: every writer and reader of a run directory goes through them.


@pytest.mark.parametrize("learning_rate, entropy_cost, seed", [(5e-4, 0.01, 0), (2.5e-4, 3e-2, 11), (1.0, 0.0, 3)])
def test_run_ids_of_every_algorithm_parse_back(learning_rate, entropy_cost, seed):
    from distral_tf import algorithms

    for algo in algorithms.NAMES:
        parsed = rundir.parse_run_id(rundir.run_id(algo, learning_rate, entropy_cost, seed))
        assert parsed["algo"] == algo and int(parsed["seed"]) == seed
        assert float(parsed["learning_rate"]) == learning_rate and float(parsed["entropy_cost"]) == entropy_cost
    assert rundir.parse_run_id("my_run") is None
    assert rundir.parse_run_id("kl_2col-lr5e-4-ent1e-2") is None


def test_episode_tags_parse_back_and_other_tags_do_not():
    for policy in rundir.POLICIES:
        for metric in (rundir.EPISODE_RETURN, rundir.EPISODE_LENGTH):
            assert rundir.parse_episode_tag(rundir.per_task_tag(policy, "maze/0", metric)) == (policy, "maze/0", metric)
    assert rundir.parse_episode_tag("loss/maze_0/episode_return") is None
    assert rundir.parse_episode_tag("task/maze_0/kl") is None
    assert rundir.policy_title("distilled") == "distilled policy" and rundir.policy_title("other") == "other"


def test_tensorboard_layout_charts_the_tags_a_run_writes(tmp_path):
    import re

    from distral_tf.training import tensorboard_metadata as summaries

    layout = summaries.custom_scalars_layout(["maze_0", "maze_1"], [rundir.EPISODE_RETURN])
    regexes = [re.compile(tag) for c in layout.category for chart in c.chart for tag in chart.multiline.tag]
    titles = [chart.title for c in layout.category for chart in c.chart]
    for policy in rundir.POLICIES:
        assert any(rundir.policy_title(policy) in t for t in titles)
        tag = rundir.per_task_tag(policy, "maze_1", rundir.EPISODE_RETURN)
        assert sum(bool(r.match(tag)) for r in regexes) == 2  # its policy's chart and its task's chart
    layout_file = os.path.basename(summaries.write_custom_scalars_layout(str(tmp_path), ["maze_0"]))
    assert rundir.is_event_file(layout_file) and not rundir.is_scalar_event_file(layout_file)
    assert rundir.run_data_files(str(tmp_path)) == [layout_file]


def test_what_the_monitor_writes_the_report_reads_back(tmp_path):
    from distral_tf.reporting.runs import load_run
    from distral_tf.training.monitoring import Monitor

    run_dir = tmp_path / rundir.run_id("klent_1col", 3e-4, 1e-2, 2)
    monitor = Monitor(str(run_dir), ["a", "b"], frames_per_step=1, total_env_steps=100)
    monitor.episode(0, 10, 1.5, 7)
    monitor.episode(1, 12, -2.0, 9, policy="distilled")
    monitor.close()
    rows = [json.loads(line) for line in (run_dir / rundir.METRICS_FILE).read_text().splitlines()]
    assert all(rundir.METRICS_ROW_KEYS <= row.keys() for row in rows) and len(rows) == 2
    for source in (rundir.METRICS_FILE, "events"):
        if source == "events":
            os.remove(run_dir / rundir.METRICS_FILE)
        run = load_run(str(run_dir), str(tmp_path))
        assert run.source == source
        assert (run.algo, run.learning_rate, run.entropy_cost, run.seed) == ("klent_1col", 3e-4, 1e-2, 2)
        assert sorted(run.episodes) == [("distilled", "b"), ("task", "a")]
        assert run.episodes[("task", "a")].returns.tolist() == [1.5]
        assert run.episodes[("distilled", "b")].steps.tolist() == [12.0]


# ---------------------------------------------------------------------------------------------- #
# RunDirectory: config.json's schema, status.json and the attempts of one run directory.


def _small_config(logdir, **overrides):
    from distral_tf.training.config import TrainConfig

    return TrainConfig(**{"algo": "kl_2col", "suite": "two_rooms_small", "logdir": str(logdir),
                          "total_env_steps": 120, "unroll_length": 20, **overrides})


def test_config_json_holds_the_settings_once_and_every_reader_takes_them_from_it(tmp_path):
    from distral_tf.envs import make_suite
    from distral_tf.reporting import runs
    from distral_tf.training import trained_run
    from distral_tf.training.run_directory import RunDirectory, config_record

    config, suite = _small_config(tmp_path), make_suite("two_rooms_small")
    run_dir = RunDirectory(str(tmp_path))
    run_dir.write_config(config_record(config, suite, (36, 36, 3), 3, {"alpha": 0.5}))
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["config"] == config.to_json() and "flags" not in meta
    assert meta["task_names"] == list(suite.task_names) and meta["observation_shape"] == [36, 36, 3]
    assert run_dir.settings() == config.to_json()
    assert trained_run.read_config(str(tmp_path))[0] == config
    assert runs.load_run(str(tmp_path), str(tmp_path)).flags["algo"] == "kl_2col"
    run_dir.check_saved_config(config)  # the same settings: accepted


@pytest.mark.parametrize("keys", [("config", "flags"), ("flags",)])
def test_older_config_json_with_its_settings_under_flags_is_still_read(tmp_path, keys):
    from distral_tf.reporting import runs
    from distral_tf.training import preflight, trained_run
    from distral_tf.training.run_directory import ConfigMismatchError, RunDirectory

    config = _small_config(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**{k: config.to_json() for k in keys},
                                                      "task_names": ["a", "b", "c"], "suite": "two_rooms_small"}))
    assert RunDirectory(str(tmp_path)).settings() == config.to_json()
    assert trained_run.read_config(str(tmp_path))[0] == config
    assert runs.load_run(str(tmp_path), str(tmp_path)).flags["total_env_steps"] == 120
    preflight.check_saved_config(config)
    with pytest.raises(ConfigMismatchError, match="learning_rate"):
        preflight.check_saved_config(_small_config(tmp_path, learning_rate=0.5))


def test_settings_that_are_not_an_object_name_the_file(tmp_path):
    from distral_tf.training import trained_run
    from distral_tf.training.run_directory import RunDirectory

    (tmp_path / "config.json").write_text(json.dumps({"config": 3}))
    with pytest.raises(rundir.RunDirError, match="config.json: its \"config\" entry is not an object"):
        RunDirectory(str(tmp_path)).check_saved_config(_small_config(tmp_path))
    with pytest.raises(trained_run.RunLoadError, match="is not an object"):
        trained_run.read_config(str(tmp_path))


def test_status_records_the_steps_and_a_finished_run_is_recognised_by_its_budget(tmp_path):
    from distral_tf.training import preflight
    from distral_tf.training.run_directory import RunDirectory

    run_dir = RunDirectory(str(tmp_path))
    assert run_dir.finished_status(3, 40) is None
    run_dir.write_status("finished", [40, 40, 40], 40, skipped_updates=0)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["env_steps"] == 120 and status["env_steps_per_task"] == [40, 40, 40]
    assert status["pid"] == os.getpid() and status["heartbeat"] == status["time"] and status["skipped_updates"] == 0
    assert run_dir.finished_status(3, 40)["state"] == "finished"
    assert run_dir.finished_status(3, 60) is None  # another budget
    assert preflight.finished_status(_small_config(tmp_path), 3)["env_steps"] == 120  # 120 over 3 tasks: 40 each
    run_dir.heartbeat([10, 0, 0], 40)
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "running"
    assert run_dir.finished_status(3, 40) is None


def test_an_attempt_without_checkpoint_is_set_aside(tmp_path):
    from distral_tf.training.run_directory import RunDirectory

    (tmp_path / "metrics.jsonl").write_text("{}\n")
    run_dir = RunDirectory(str(tmp_path))
    moved = run_dir.set_aside_attempt_without_checkpoint()
    assert moved == str(tmp_path / "previous_attempts" / "1") and os.listdir(moved) == ["metrics.jsonl"]
    assert run_dir.set_aside_attempt_without_checkpoint() is None
