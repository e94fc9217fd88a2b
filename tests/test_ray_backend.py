"""Sweeps with --backend=ray on a real two-node local Ray cluster (one cluster for the whole module)."""

import collections
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import complete_metrics_rows, tensorboard_episode_events
from ray_cluster import REPO, XDIST_GROUP, two_node_cluster  # noqa: F401 (XDIST_GROUP: read by conftest)

from distral_tf import sweep
from distral_tf.training import ray_runs

SUITE = "two_rooms_small"
# Small runs: one worker per task, environments stepped in one process, no evaluation.
RUN_FLAGS = "--eval_episodes=0 --log_every_secs=5"


def _sweep_cli(out, address, *extra):
    return [sys.executable, "-m", "distral_tf.sweep", f"--experiment={SUITE}", "--algos=kl_2col",
            "--entropy_costs=1e-2", "--learning_rates=5e-4", "--seeds=2", "--total_env_steps=300",
            "--workers_per_task=1", f"--run_flags={RUN_FLAGS}", f"--out={out}", "--backend=ray",
            f"--address={address}", "--cpus_per_run=1", "--progress_every_secs=5", *extra]


def test_without_ray_the_backend_is_a_one_line_error(tmp_path):
    # A `ray` package that fails to import, first on the path, stands in for a missing Ray.
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), REPO])}
    result = subprocess.run(_sweep_cli(tmp_path / "sweep", "auto"), capture_output=True, text=True,
                            timeout=300, cwd=REPO, env=env)
    assert result.returncode == 2  # bad input, as every entry point
    assert result.stderr.strip().splitlines() == [
        f"error: --backend=ray needs Ray, which is not installed: {ray_runs.INSTALL_HINT}"]
    assert not (tmp_path / "sweep").exists()


def test_an_address_where_nothing_listens_is_a_one_line_error(tmp_path):
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = subprocess.run(_sweep_cli(tmp_path / "sweep", f"127.0.0.1:{port}"), capture_output=True,
                            text=True, timeout=600, cwd=REPO)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: --backend=ray could not join a Ray cluster at --address=127.0.0.1:{port}: "
                           "nothing answers")


def test_flags_of_the_ray_backend():
    assert sweep.parse_resources("") == {}
    assert sweep.parse_resources('{"doom": 1, "big_memory": 0.5}') == {"doom": 1, "big_memory": 0.5}
    for bad in ("doom", '{"doom": 0}', '["doom"]', '{"CPU": 2}', '{"doom": true}'):
        with pytest.raises(ValueError, match="--ray_resources"):
            sweep.parse_resources(bad)
    assert sweep.ray_run_args(4, []) == ["--num_env_processes=4", "--tf_inter_op_threads=4"]
    assert sweep.ray_run_args(4, ["--num_env_processes=0"]) == ["--tf_inter_op_threads=4"]
    # Runs per node: the scarcest of the resources a run reserves decides.
    demand = {"CPU": 2.0, "doom": 1.0}
    assert ray_runs.runs_per_node({"CPU": 7.0, "doom": 8.0}, demand) == 3
    assert ray_runs.runs_per_node({"CPU": 16.0, "doom": 2.0}, demand) == 2
    assert ray_runs.runs_per_node({"CPU": 16.0}, demand) == 0


# Stands in for `python -m distral_tf.run`: with --mode=hang it waits until SIGINT, records the signal,
# writes status "interrupted" and exits 130; otherwise it finishes at once.
FAKE_RUN = textwrap.dedent('''
    import json, os, signal, sys, time
    args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
    logdir = args["logdir"]
    os.makedirs(logdir, exist_ok=True)
    def status(state):
        with open(os.path.join(logdir, "status.json"), "w") as f:
            json.dump({"state": state}, f)
    def on_sigint(signum, frame):
        with open(os.path.join(logdir, "signals.txt"), "a") as f:
            f.write(signal.Signals(signum).name + "\\n")
        status("interrupted")
        sys.exit(130)
    if args.get("mode") == "hang":
        signal.signal(signal.SIGINT, on_sigint)
        status("running")
        time.sleep(120)
        sys.exit(5)
    status("finished")
''')


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The two-node cluster of ``ray_cluster``, whose Ray processes also import ``fake_ray_run``."""
    fake_dir = tmp_path_factory.mktemp("fake_run")
    (fake_dir / "fake_ray_run.py").write_text(FAKE_RUN)
    with two_node_cluster(str(fake_dir)) as (local, nodes):
        yield local, nodes


def _nodes_of(log_path):
    return re.findall(r"on node (\w+) ", open(log_path).read())


def test_two_run_sweep_runs_on_both_nodes_and_resumes(tmp_path, cluster):
    local, nodes = cluster
    out = tmp_path / "sweep"
    result = subprocess.run(_sweep_cli(out, local.address), capture_output=True, text=True, timeout=900,
                            cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "as many as the cluster holds at a time (1 CPUs each; the cluster has 2 CPUs on 3 nodes now)" \
        in result.stdout
    entries = json.loads((out / "manifest.json").read_text())
    assert entries["backend"] == "ray" and entries["counts"] == {"finished": 2}
    run_nodes = set()
    for entry in entries["runs"]:
        assert entry["state"] == "finished" and entry["returncode"] == 0
        status = json.loads((out / "runs" / entry["id"] / "status.json").read_text())
        assert status["state"] == "finished" and status["env_steps"] >= 300
        assert "--num_env_processes=1" in entry["command"] and "--tf_inter_op_threads=1" in entry["command"]
        (node,) = _nodes_of(entry["log"])
        run_nodes.add(node)
    # Each run reserved the only CPU of its node, so the two ran side by side on the two nodes.
    assert run_nodes == {n.node_id[:12] for n in nodes}

    again = subprocess.run(_sweep_cli(out, local.address), capture_output=True, text=True, timeout=600,
                           cwd=REPO)
    assert again.returncode == 0 and "2/2 runs already finished" in again.stdout
    assert all(len(_nodes_of(e["log"])) == 1 for e in entries["runs"])


def test_sigint_reaches_the_runs_on_the_cluster_and_rerun_completes(tmp_path, cluster):
    local, _ = cluster
    out = tmp_path / "sweep"
    cli = [*_sweep_cli(out, local.address, "--run_module=fake_ray_run", "--grace_secs=30")]
    proc = subprocess.Popen([a for a in cli if not a.startswith("--run_flags")] + ["--run_flags=--mode=hang"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    statuses = [out / "runs" / f"kl_2col-lr5e-4-ent1e-2-s{seed}" / "status.json" for seed in (0, 1)]
    deadline = time.time() + 600
    while not all(p.exists() for p in statuses) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    if not all(p.exists() for p in statuses):
        proc.kill()
        pytest.fail(f"the runs did not start: {proc.communicate()[0][-3000:]}")
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, output
    entries = json.loads((out / "manifest.json").read_text())["runs"]
    for entry in entries:
        assert (entry["state"], entry["returncode"]) == ("interrupted", 130), output
        # Each run got exactly one SIGINT, forwarded by its actor, and could checkpoint.
        assert (out / "runs" / entry["id"] / "signals.txt").read_text().split() == ["SIGINT"]

    result = subprocess.run(cli, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    entries = json.loads((out / "manifest.json").read_text())["runs"]
    assert [(e["state"], e["attempts"]) for e in entries] == [("finished", 2), ("finished", 2)]


def test_run_of_a_lost_node_restarts_elsewhere_and_counts_no_step_twice(tmp_path, cluster):
    """Kills the node of a running run after a checkpoint; Ray restarts the run on the other node, which
    resumes from the checkpoint and drops the rows and events written after it."""
    local, nodes = cluster
    out = str(tmp_path / "sweep")
    budget = 4500  # long enough for a checkpoint and episodes after it, on a fast host too
    (spec,) = sweep.expand_grid(SUITE, ["kl_2col"], [1e-2], [5e-4], 1, total_env_steps=budget,
                                extra_flags={"workers_per_task": 1})
    extra = [*RUN_FLAGS.split(), "--checkpoint_every_secs=2", *sweep.ray_run_args(1, [])]
    lines = []
    job = sweep.Sweep([spec], out, command_fn=lambda s, logdir: sweep.run_command(s, logdir, extra_args=extra),
                      launcher=ray_runs.RayLauncher(cpus_per_run=1), progress_every_secs=5, log=lines.append)
    logdir = job.logdir(spec)
    log_path = job.entries[spec.run_id]["log"]
    killed = {}

    def kill_the_node_of_the_run():
        """Once the run has a checkpoint and has logged episodes after it, its node goes."""
        while not finished.is_set():
            checkpoints = os.path.join(logdir, "checkpoints")
            saved = [int(m.group(1)) for m in map(re.compile(r"ckpt-(\d+)\.index").fullmatch,
                                                  os.listdir(checkpoints) if os.path.isdir(checkpoints) else [])
                     if m]
            rows = complete_metrics_rows(os.path.join(logdir, "metrics.jsonl"))
            logged = sum(_max_steps(rows).values())
            if saved and max(saved) < logged < budget * 0.6:
                (node,) = [n for n in nodes if n.node_id[:12] == _nodes_of(log_path)[0]]
                killed.update(node=node.node_id[:12], checkpoint=max(saved), rows=len(rows))
                local.remove_node(node, allow_graceful=False)
                return
            time.sleep(0.2)

    finished = threading.Event()
    killer = threading.Thread(target=kill_the_node_of_the_run, daemon=True)
    killer.start()
    try:
        assert job.run() == 0, "\n".join(lines) + open(log_path).read()[-3000:]
    finally:
        finished.set()
        killer.join()
    assert killed, "the run finished before it could be interrupted"

    log = open(log_path).read()
    first, second = _nodes_of(log_path)
    assert first == killed["node"] and second != first
    assert "restarted after its node was lost" in log
    assert json.loads(open(os.path.join(logdir, "status.json")).read())["state"] == "finished"
    rows = [json.loads(r) for r in open(os.path.join(logdir, "metrics.jsonl"))]
    task_rows = [(r["task"], r["env_steps"], round(r["return"], 4)) for r in rows if r["policy"] == "task"]
    # One worker per task: each task's episodes end at strictly increasing step counts, once each.
    for task in {t for t, _, _ in task_rows}:
        steps = [s for t, s, _ in task_rows if t == task]
        assert steps == sorted(set(steps)), task
    # The metrics rows and TensorBoard's episode events are the same episodes, none twice.
    assert collections.Counter(task_rows) == collections.Counter(tensorboard_episode_events(logdir))
    assert sum(_max_steps(rows).values()) <= budget + 3 * 20


def _max_steps(rows):
    steps = collections.defaultdict(int)
    for r in rows:
        steps[r["task"]] = max(steps[r["task"]], r["env_steps"])
    return steps
