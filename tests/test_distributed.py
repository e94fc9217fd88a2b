"""One run spread over a Ray cluster (``--backend=ray``): the split update, and real two-node runs."""

import collections
import dataclasses
import functools
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import SMALL_AGENT, complete_metrics_rows, random_rollout, tensorboard_episode_events
from ray_cluster import REPO, XDIST_GROUP, two_node_cluster  # noqa: F401 (XDIST_GROUP: read by conftest)

from distral_tf import algorithms
from distral_tf.model.agent import Agent
from distral_tf.training import distributed
from distral_tf.training.config import TrainConfig

SUITE, TASKS = "two_rooms_small", 3


def _agent(name, max_grad_norm=40.0):
    algorithm = algorithms.get(name)
    return Agent(algorithm, algorithm.coefficients(0.05), SMALL_AGENT["num_tasks"], SMALL_AGENT["observation_shape"],
                 SMALL_AGENT["num_actions"], unroll_length=SMALL_AGENT["unroll_length"], learning_rate=1e-2,
                 total_env_steps=10_000, max_grad_norm=max_grad_norm, seed=0)


@pytest.mark.parametrize("name,max_grad_norm", [("kl_2col", 40.0), ("kl_2col", 0.05), ("a3c_multitask", 40.0),
                                                ("a3c", 40.0)])
def test_split_update_equals_the_local_update(name, max_grad_norm):
    """A learner applies its task columns' share of the clipped gradient and pushes the shared share to
    the shared parameters: after two updates, every parameter and RMSProp statistic is the local run's."""
    local, learner, holder = (_agent(name, max_grad_norm) for _ in range(3))
    shared = distributed.SharedParameters(holder)
    pushed = []

    def sink(grads, count, agent_steps, version):
        pushed.append((count, agent_steps))
        _, _, lag = shared.push([(grads, count, agent_steps, version)])
        learner.shared_version, values, _ = shared.pull()
        for i, value in zip(shared.indices, values, strict=True):
            learner.trainable[i].assign(value)
        return lag

    learner.shared_sink = sink
    for step, task_ids in enumerate([[0, 1], [1]]):
        rollout = random_rollout(task_ids, seed=step)
        local_terms = local.train_step(rollout)
        split_terms = learner.train_step(rollout)
        np.testing.assert_allclose(split_terms["grad_norm"], local_terms["grad_norm"], rtol=1e-5)
        assert split_terms["shared_lag"] == 0
    assert pushed == [(1, 2 * SMALL_AGENT["unroll_length"]), (1, SMALL_AGENT["unroll_length"])]
    assert shared.version == 2 and int(holder.env_steps.numpy()) == int(local.env_steps.numpy())
    # Which variables the holder keeps: every shared one (all for a3c_multitask, none for a3c).
    kinds = local.variable_tasks
    assert [kinds[i] for i in shared.indices] == [None] * len(shared.indices)
    assert (len(shared.indices) == 0) == (name == "a3c") and (len(shared.indices) == len(kinds)) == (
        name == "a3c_multitask")
    for i, v in enumerate(local.trainable):
        owner = holder if kinds[i] is None else learner
        np.testing.assert_allclose(owner.trainable[i].numpy(), v.numpy(), rtol=1e-5, atol=1e-7, err_msg=v.name)
        np.testing.assert_allclose(owner.optimizer.mean_squares[i].numpy(), local.optimizer.mean_squares[i].numpy(),
                                   rtol=1e-5, atol=1e-9, err_msg=v.name)


def test_shared_parameters_count_versions_and_the_lag_of_a_gradient():
    holder = _agent("kl_2col")
    shared = distributed.SharedParameters(holder)
    zeros = [np.zeros((1, *holder.trainable[i].shape), np.float32) for i in shared.indices]
    assert shared.push([(zeros, 1, 6, 0)])[0] == 1
    assert shared.push([(zeros, 1, 6, 0)])[2] == 1  # computed at version 0, applied after version 1
    assert shared.push([(zeros, 1, 6, 2)]) == (3, 18, 0)
    assert shared.push([(zeros, 1, 6, 0), (zeros, 1, 6, 3)]) == (5, 30, 1)  # the lag of the push's last gradient
    two = [np.concatenate([z, z]) for z in zeros]
    assert shared.push([(two, 2, 6, 4)]) == (7, 42, 2)  # a chunk of two updates: two versions, two steps' worth
    version, values, env_steps = shared.pull()
    assert (version, env_steps) == (7, 42) and len(values) == len(shared.indices)


@pytest.mark.parametrize("gradients_per_push,chunks", [(3, [3]), (3, [1, 2]), (8, [3])])
def test_a_push_of_several_gradients_applies_each_as_its_own_step(gradients_per_push, chunks):
    """Gradients sent together are applied one RMSProp step each, in order, with the learning rate
    annealed between them: the parameters and statistics are those of one push per gradient, whether
    the push is one compiled sequence (3 gradients, the usual size, in one chunk or two) or a step per
    gradient (8)."""
    rng = np.random.default_rng(0)
    one_by_one, together = (distributed.SharedParameters(_agent("kl_2col"), gradients_per_push) for _ in range(2))
    gradients = [[rng.normal(size=v.shape).astype(np.float32) for v in one_by_one.variables] for _ in range(3)]
    for grads in gradients:
        one_by_one.push([([g[None] for g in grads], 1, 4000, 0)])
    version, _, env_steps = one_by_one.pull()
    batch, start = [], 0
    for count in chunks:
        part = gradients[start:start + count]
        batch.append(distributed.GradientChunk([np.stack(g) for g in zip(*part, strict=True)], count, 4000, 0))
        start += count
    assert together.push(batch) == (version, env_steps, 2)
    opt_a, opt_b = one_by_one.agent.optimizer, together.agent.optimizer
    assert int(opt_a.num_updates.numpy()) == int(opt_b.num_updates.numpy()) == 3
    # A step per gradient is the same computation: equal exactly. The compiled sequence rounds differently.
    close = np.testing.assert_array_equal if gradients_per_push == 8 else functools.partial(
        np.testing.assert_allclose, rtol=1e-5, atol=1e-7)
    for i, (a, b) in enumerate(zip(one_by_one.variables, together.variables, strict=True)):
        close(b.numpy(), a.numpy(), err_msg=a.name)
        k = one_by_one.indices[i]
        close(opt_b.mean_squares[k].numpy(), opt_a.mean_squares[k].numpy(), err_msg=a.name)
    # What it is not: one step with the summed gradient.
    summed = distributed.SharedParameters(_agent("kl_2col"))
    summed.push([([sum(g)[None] for g in zip(*gradients, strict=True)], 1, 12000, 0)])
    assert not np.allclose(summed.variables[0].numpy(), together.variables[0].numpy())


def test_a_learner_pushes_its_updates_in_order_in_pushes_of_gradients_per_push():
    """The learner queues each call's stacked gradients and sends pushes of exactly
    ``gradients_per_push`` gradients (splitting a call's stack where needed) in the order of the
    updates; a non-finite update is dropped and counted as skipped; what is left goes with the next pull."""
    import threading
    from types import SimpleNamespace

    pushes = []
    learner = distributed.TaskLearner.__new__(distributed.TaskLearner)
    learner.config = dataclasses.replace(TrainConfig(), gradients_per_push=8)
    learner.agent = _agent("kl_2col")
    learner._own_indices = []
    learner._lock = threading.Lock()
    learner._outbox, learner._pending = [], []
    learner._traffic = dict.fromkeys(distributed.TRAFFIC_FIELDS, 0.0)
    learner._shared = SimpleNamespace(push=SimpleNamespace(remote=lambda batch: pushes.append(batch) or len(pushes)))
    learner._collect = lambda limit: 0

    def call(first, count, version):  # gradients numbered first, first + 1, ... in two shared variables
        ids = np.arange(first, first + count, dtype=np.float32)
        return [ids[:, None] * np.ones((count, 3), np.float32), ids[:, None, None] * np.ones((count, 2, 2), np.float32)]

    learner._push(call(0, 16, 0), 16, 20, 0)
    broken = call(16, 4, 1)
    broken[1][2, 0, 0] = np.nan  # update 18
    learner._push(broken, 4, 20, 1)
    learner._push(call(20, 7, 2), 7, 20, 2)
    learner._send()
    sent = [[(int(g[0]), chunk.version) for chunk in batch for g in chunk.grads[0]] for batch in pushes]
    ids = [[i for i, _ in push] for push in sent]
    assert ids == [list(range(0, 8)), list(range(8, 16)), [16, 17, 19, 20, 21, 22, 23, 24], [25, 26]]
    assert [v for _, v in sent[2]] == [1, 1, 1, 2, 2, 2, 2, 2]
    for batch in pushes:  # both variables of a chunk hold the same updates
        for chunk in batch:
            assert chunk.count == len(chunk.grads[0]) == len(chunk.grads[1])
            np.testing.assert_array_equal(chunk.grads[1][:, 0, 0], chunk.grads[0][:, 0])
    assert int(learner.agent.optimizer.num_skipped.numpy()) == 1
    assert learner._traffic["pushes"] == 4 and learner._traffic["gradients"] == 26


def test_a_snapshot_pulls_the_newest_shared_parameters_first():
    """Spread over machines, the shared parameters come to a learner when an actor group takes a
    snapshot: the snapshot acts with the values pulled, and records their version."""
    learner = _agent("kl_2col")
    indices = distributed.shared_indices(learner)
    pulled = [learner.trainable[i].numpy() + 1.0 for i in indices]
    calls = []

    def source():
        calls.append(1)
        for i, value in zip(indices, pulled, strict=True):
            learner.trainable[i].assign(value)
        learner.shared_version = 7

    replica = learner.make_replica(0)
    learner.shared_source = source
    replica.sync()
    assert len(calls) == 1 and replica.shared_version == 7
    expected = {id(learner.trainable[i]): value for i, value in zip(indices, pulled, strict=True)}
    copies = [(copy, expected[id(held)]) for copy, held in zip(replica._network.synced, learner._synced, strict=True)
              if id(held) in expected]
    assert len(copies) == len(indices)
    for copy, value in copies:
        np.testing.assert_array_equal(copy.numpy(), value)


def test_tasks_are_split_into_contiguous_groups_and_the_demand_adds_up():
    assert distributed.partition_tasks(3, 0) == [[0], [1], [2]]
    assert distributed.partition_tasks(5, 2) == [[0, 1, 2], [3, 4]]
    assert distributed.partition_tasks(2, 8) == [[0], [1]]
    config = TrainConfig(suite=SUITE, learners=2, cpus_per_learner=1.5, ray_resources='{"doom": 1}')
    assert distributed.cluster_demand(config, TASKS) == {"CPU": 3.0, "doom": 2.0}
    for bad in ("doom", '["doom"]', '{"doom": -1}', '{"doom": 0}', '{"CPU": 2}'):
        with pytest.raises(ValueError, match="--ray_resources"):
            distributed.cluster_demand(dataclasses.replace(config, ray_resources=bad), TASKS)


def test_a_run_and_a_sweep_read_ray_resources_by_one_rule():
    from distral_tf import sweep
    from distral_tf.training import ray_runs

    assert distributed.parse_resources is sweep.parse_resources is ray_runs.parse_resources
    assert ray_runs.parse_resources("") == ray_runs.parse_resources("  ") == {}
    assert ray_runs.parse_resources('{"doom": 1, "big_memory": 0.5}') == {"doom": 1.0, "big_memory": 0.5}
    # An amount of 0 reserves nothing: a mistake, refused; CPUs, GPUs and memory have their own flags.
    for bad in ("doom", '["doom"]', '{"doom": 0}', '{"doom": -1}', '{"doom": true}', '{"doom": "1"}', '{"CPU": 2}',
                '{"GPU": 1}', '{"memory": 1e9}', "{\"doom\": 1"):
        with pytest.raises(ValueError, match="--ray_resources"):
            ray_runs.parse_resources(bad)


def _run_cli(logdir, *extra):
    return [sys.executable, "-m", "distral_tf.run", "--backend=ray", "--algo=kl_2col", f"--suite={SUITE}",
            "--workers_per_task=1", "--num_env_processes=0", "--eval_episodes=0", "--log_every_secs=5",
            f"--logdir={logdir}", *extra]


def test_without_ray_the_backend_is_a_one_line_error(tmp_path):
    (tmp_path / "ray").mkdir()  # a `ray` package that fails to import stands in for a missing Ray
    (tmp_path / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), REPO])}
    result = subprocess.run(_run_cli(tmp_path / "run"), capture_output=True, text=True, timeout=300, cwd=REPO,
                            env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        'error: --backend=ray needs Ray, which is not installed: pip install ray (or pip install -e ".[ray]")')
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def cluster():
    with two_node_cluster() as (local, nodes):
        yield local, nodes


def _checkpoint_steps(logdir):
    folder = os.path.join(logdir, "checkpoints")
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return [int(m.group(1)) for m in map(re.compile(r"ckpt-(\d+)\.index").fullmatch, names) if m]


def test_run_across_two_nodes_survives_the_loss_of_one_and_counts_no_step_twice(tmp_path, cluster):
    """kl_2col with two learners, one per node (each node has one CPU). Once a checkpoint exists and
    episodes were logged after it, a node is killed and a new one joins: the run starts again from the
    checkpoint on the nodes it has, finishes its budget, and its metrics rows are TensorBoard's episode
    events, none twice."""
    local, nodes = cluster
    logdir, budget = tmp_path / "run", 6000
    log = open(tmp_path / "run.log", "w")
    proc = subprocess.Popen(_run_cli(logdir, f"--address={local.address}", "--learners=2", "--cpus_per_learner=1",
                                     f"--total_env_steps={budget}", "--checkpoint_every_secs=2"),
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
    killed = None
    try:
        deadline = time.time() + 600
        while killed is None and proc.poll() is None and time.time() < deadline:
            saved = _checkpoint_steps(logdir)
            logged = sum(r["length"] for r in complete_metrics_rows(logdir / "metrics.jsonl") if r["policy"] == "task")
            if saved and max(saved) < logged < budget * 0.6:
                killed = nodes[0]
                local.remove_node(killed, allow_graceful=False)
                local.add_node(num_cpus=1, resources={"node_c": 1})
            time.sleep(0.2)
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = (tmp_path / "run.log").read_text()
    assert killed is not None, "the run finished before a node could be killed:\n" + output[-3000:]
    assert proc.returncode == 0, output[-5000:]

    # The first attempt had a learner on each node; the second runs on the nodes left.
    placements = re.findall(r"Learner of tasks (.+?) runs on node (\w+)\.", output)
    assert len(placements) == 4, output[-5000:]
    assert {node for _, node in placements[:2]} == {n.node_id[:12] for n in nodes}
    assert killed.node_id[:12] not in {node for _, node in placements[2:]}
    assert "starting again from the last checkpoint (restart 1 of 3)" in output
    status = json.loads((logdir / "status.json").read_text())
    assert status["state"] == "finished" and status["env_steps"] >= budget

    rows = [json.loads(r) for r in open(logdir / "metrics.jsonl")]
    task_rows = [(r["task"], r["env_steps"], round(r["return"], 4)) for r in rows if r["policy"] == "task"]
    for task in {t for t, _, _ in task_rows}:  # one worker per task: strictly increasing, once each
        steps = [s for t, s, _ in task_rows if t == task]
        assert steps == sorted(set(steps)), task
    assert collections.Counter(task_rows) == collections.Counter(tensorboard_episode_events(logdir))
    assert sum(status["env_steps_per_task"]) == status["env_steps"] <= budget + TASKS * 20


def test_the_local_and_the_ray_backend_implement_the_one_worker_interface():
    from distral_tf.training.backends import LocalBackend, WorkerBackend

    methods = [n for n, v in vars(WorkerBackend).items() if not n.startswith("_") and (callable(v) or
                                                                                      isinstance(v, property))]
    assert {"prepare", "start", "running", "error", "join", "pause", "resume", "restarts_per_task", "sync_agent",
            "summary_extras", "close_workers", "close"} <= set(methods)
    for backend in (LocalBackend, distributed.RayBackend):
        for name in methods:
            assert isinstance(getattr(backend, name), type(getattr(WorkerBackend, name))), (backend, name)
