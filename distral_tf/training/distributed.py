"""One run spread over a Ray cluster (``--backend=ray``): task learners, a shared-parameter actor, the driver.

Distral's structure decides the split: the task columns are private to their tasks,
and only the variables every task uses are shared (pi_0, h0 in the 2col variants, the
whole network of a3c_multitask).

The run is the local run's parts wired differently: the same training loop
(:class:`~distral_tf.training.trainer.Trainer`) with another worker backend, and in each learner
the same local backend.

* :class:`TaskLearner` (a Ray actor per group of tasks, on whichever node Ray places
  it): its tasks' workers (environment processes, actor threads, snapshots) and the
  updates of its task columns, a :class:`~distral_tf.training.backends.LocalBackend` of its
  tasks exactly as in a local run. Frames never leave its node.
* :class:`SharedParameters` (a Ray actor): the shared variables, their shared RMSProp
  statistics and a version counter (one version per applied gradient). A learner
  sends each update's clipped gradient of the shared variables, computed at the
  snapshot its workers acted with, in pushes of ``--gradients_per_push`` gradients (fewer
  remote calls; the actor applies each gradient as its own RMSProp step, in order), and
  pulls the newest parameters when one of its actor
  groups takes a snapshot (once per group rollout, not per update); the lag of a
  gradient (versions applied between its snapshot and itself) is logged as
  ``staleness/<task>/{mean,max}``.
* :class:`RayBackend` (the driver's workers, a :class:`~distral_tf.training.backends.WorkerBackend`):
  starts the actors and polls the learners; the driver's trainer writes the run
  directory as a local run does (``config.json``, ``status.json``, ``metrics.jsonl``,
  TensorBoard, checkpoints of the whole state) and evaluates pi_0, and it checkpoints
  by parking every learner and gathering parameters, optimiser statistics and
  counters into one standard checkpoint.

A learner does not wait for its pushes (at most ``MAX_PUSHES_IN_FLIGHT`` unanswered), and
sends what it holds before each snapshot's pull; parking it for a checkpoint sends the rest
and waits for every answer, so a checkpoint has every counted
rollout's update, shared part included, and is exact. If an actor or its node is lost, the
attempt stops without a checkpoint (:class:`NodeLostError`) and :class:`DistributedRun`
starts it again from the last checkpoint, dropping the metrics rows and TensorBoard events
written after it: no step is counted twice.
"""

from __future__ import annotations

import dataclasses
import json
import logging as std_logging
import math
import os
import threading
import time
from typing import NamedTuple

# In the Ray workers that unpickle the actors below, before TensorFlow loads: its start-up notices
# would otherwise be forwarded to the driver's log by every actor.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import logging  # noqa: E402

from distral_tf.envs.suites import Suite  # noqa: E402
from distral_tf.training.backends import LocalBackend, WorkerContext  # noqa: E402
from distral_tf.training.config import TrainConfig  # noqa: E402
from distral_tf.training.ray_runs import import_ray, parse_resources  # noqa: E402
from distral_tf.training.run_directory import budget_per_task  # noqa: E402
from distral_tf.training.run_setup import EnvSpaces, TrainingError  # noqa: E402
from distral_tf.training.trained_run import build_agent  # noqa: E402
from distral_tf.training.trainer import Trainer  # noqa: E402
from distral_tf.training.worker_threads import PauseGate, Timings, WorkerThreads  # noqa: E402

POLL_SECS = 0.5
# How often the driver refreshes its copy of the shared parameters (for evaluating pi_0).
REFRESH_SECS = 5.0
# What a learner counts of its exchanges with the shared parameters.
TRAFFIC_FIELDS = ("pushes", "gradients", "pulls", "wait_seconds", "bytes")
# Pushes a learner may have unanswered before its next update waits for the oldest: overlaps the
# exchange with the learner's next rollouts, and bounds the lag it adds.
MAX_PUSHES_IN_FLIGHT = 4
# How long a run whose actor is lost waits for Ray to mark the actor's node dead (Ray's health checks
# take up to about 30 s) before it starts again.
NODE_DEATH_TIMEOUT_SECS = 45.0
# How long learners may wait for the cluster to have room for them.
PLACEMENT_TIMEOUT_SECS = 600.0


class NodeLostError(RuntimeError):
    """An actor of the run (or the node it ran on) is gone: the attempt cannot continue exactly."""


def _is_ray_loss(error: BaseException) -> bool:
    """Whether ``error`` says that a Ray actor, worker or node is gone."""
    try:
        from ray import exceptions
    except ImportError:
        return False
    lost = tuple(getattr(exceptions, name) for name in ("RayActorError", "ActorDiedError", "ActorUnavailableError",
                                                        "NodeDiedError", "WorkerCrashedError",
                                                        "OwnerDiedError", "ObjectLostError")
                 if hasattr(exceptions, name))
    return isinstance(error, lost)


def partition_tasks(num_tasks: int, learners: int) -> list[list[int]]:
    """Contiguous groups of tasks, one per learner (``learners`` 0: one per task)."""
    count = num_tasks if learners <= 0 else min(learners, num_tasks)
    return [[int(t) for t in chunk] for chunk in np.array_split(np.arange(num_tasks), count)]


def cluster_demand(config: TrainConfig, num_tasks: int) -> dict[str, float]:
    """The Ray resources all the learners of a run reserve together (the shared actor reserves none)."""
    learners = len(partition_tasks(num_tasks, config.learners))
    demand = {"CPU": learners * config.cpus_per_learner}
    for name, amount in parse_resources(config.ray_resources).items():
        demand[name] = demand.get(name, 0.0) + learners * amount
    return demand


# ---------------------------------------------------------------------------------------------- #
# Moving an agent's state between processes: parameters, RMSProp statistics, counters.


def shared_indices(agent) -> list[int]:
    """Indices in ``agent.trainable`` of the variables every task uses."""
    return [i for i, task in enumerate(agent.variable_tasks) if task is None]


def task_indices(agent, tasks) -> list[int]:
    """Indices in ``agent.trainable`` of the columns of ``tasks``."""
    tasks = set(tasks)
    return [i for i, task in enumerate(agent.variable_tasks) if task is not None and task in tasks]


def full_state(agent) -> dict:
    """Everything of ``agent`` a learner or the shared actor starts from (numpy arrays)."""
    return {"parameters": [v.numpy() for v in agent.parameters],
            "mean_squares": [v.numpy() for v in agent.optimizer.mean_squares],
            "env_steps": int(agent.env_steps.numpy())}


def load_full_state(agent, state: dict):
    for v, value in zip(agent.parameters, state["parameters"], strict=True):
        v.assign(value)
    for v, value in zip(agent.optimizer.mean_squares, state["mean_squares"], strict=True):
        v.assign(value)
    agent.env_steps.assign(state["env_steps"])


def part_state(agent, indices: list[int]) -> dict:
    """The trainable variables at ``indices`` and their RMSProp statistics, with the update counters."""
    opt = agent.optimizer
    return {"indices": list(indices), "values": [agent.trainable[i].numpy() for i in indices],
            "mean_squares": [opt.mean_squares[i].numpy() for i in indices],
            "num_updates": int(opt.num_updates.numpy()), "num_skipped": int(opt.num_skipped.numpy())}


def load_part_state(agent, part: dict):
    for i, value, ms in zip(part["indices"], part["values"], part["mean_squares"], strict=True):
        agent.trainable[i].assign(value)
        agent.optimizer.mean_squares[i].assign(ms)


def _configured(config: dict) -> TrainConfig:
    """The run's configuration in an actor, with TensorFlow configured as it says (Ray sets OMP_NUM_THREADS
    only)."""
    from distral_tf.training.tensorflow_setup import configure_tensorflow

    cfg = TrainConfig(**config)
    configure_tensorflow(cfg.tf_inter_op_threads, cfg.tf_intra_op_threads)
    return cfg


def _new_agent(config: TrainConfig, spaces: EnvSpaces):
    """A new agent of the run (:func:`~distral_tf.training.trained_run.build_agent`), as the driver builds it."""
    from distral_tf.envs import make_suite

    return build_agent(config, spaces.for_agent(make_suite(config.suite).num_tasks))


# ---------------------------------------------------------------------------------------------- #
# The actors.


class GradientChunk(NamedTuple):
    """The shared variables' clipped gradients of ``count`` consecutive updates of one learner.

    ``grads``: one array [count, *shape] per shared variable (the updates in order); ``agent_steps``:
    the agent steps of each update; ``version``: the version of the shared parameters they were
    computed at.
    """

    grads: list[np.ndarray]
    count: int
    agent_steps: int
    version: int

    def split(self, count: int) -> tuple[GradientChunk, GradientChunk]:
        """The first ``count`` updates and the rest (views, not copies)."""
        return (self._replace(grads=[g[:count] for g in self.grads], count=count),
                self._replace(grads=[g[count:] for g in self.grads], count=self.count - count))


class SharedParameters:
    """The variables of ``agent`` every task uses, their shared RMSProp statistics and a version counter
    (held by a Ray actor, :class:`SharedParametersActor`)."""

    def __init__(self, agent, gradients_per_push: int = 8):
        import tensorflow as tf

        from distral_tf.model.optim import linear_annealing

        self.agent = agent
        # Pushes of this many gradients (the learners' usual ones) are applied by one compiled program
        # (SharedRMSProp.apply_sequence, compiled at the first such push); others one traced step each.
        self.gradients_per_push = int(gradients_per_push)
        self.indices = shared_indices(agent)
        self.variables = [agent.trainable[i] for i in self.indices]
        self.version = 0
        self._apply = None
        if self.variables:
            specs = [tf.TensorSpec(v.shape, v.dtype) for v in self.variables]

            @tf.function(autograph=False, input_signature=[specs])
            def apply(grads):
                lr = linear_annealing(agent.learning_rate, agent.env_steps, agent.total_env_steps)
                norm = agent.optimizer.apply(grads, self.variables, lr, clip=False)  # clipped by the learner
                return tf.math.is_finite(norm)

            self._apply = apply

    def load(self, state: dict) -> str:
        """Starts from ``state`` at version 0; returns the Ray node this runs on."""
        load_full_state(self.agent, state)
        self.version = 0
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""

    def push(self, batch: list[GradientChunk]):
        """Applies the gradients of ``batch``, chunks of updates in order, one RMSProp step each, in order;
        returns ``(version, agent steps, lag)``, the lag being the versions applied between the last
        gradient's version and itself."""
        batch = [GradientChunk(*chunk) for chunk in batch]
        lag = 0
        steps = {chunk.agent_steps for chunk in batch}
        count = sum(chunk.count for chunk in batch)
        together = self._apply is not None and count == self.gradients_per_push > 1 and len(steps) == 1
        if together:  # learners push finite gradients only (they skip the others), clipped already: norms 0
            agent = self.agent
            stacked = batch[0].grads if len(batch) == 1 else [
                np.concatenate(g) for g in zip(*(chunk.grads for chunk in batch), strict=True)]
            agent.optimizer.apply_sequence(stacked, self.variables, np.zeros(count, np.float32),
                                           agent.env_steps, steps.pop(), agent.learning_rate, agent.total_env_steps)
        for chunk in batch:
            for k in range(chunk.count):
                lag = self.version - chunk.version
                if not together:
                    if self._apply is not None:
                        self._apply([g[k] for g in chunk.grads])
                    self.agent.env_steps.assign_add(chunk.agent_steps)
                self.version += 1
        return self.version, int(self.agent.env_steps.numpy()), lag

    def pull(self):
        """``(version, parameters, agent steps)``."""
        return self.version, [v.numpy() for v in self.variables], int(self.agent.env_steps.numpy())

    def state(self) -> dict:
        return {**part_state(self.agent, self.indices), "env_steps": int(self.agent.env_steps.numpy())}


class SharedParametersActor(SharedParameters):
    """Ray actor: :class:`SharedParameters` of a new agent of the run's configuration."""

    def __init__(self, config: dict, spaces: EnvSpaces):
        configured = _configured(config)
        super().__init__(_new_agent(configured, spaces), configured.gradients_per_push)


class RecordingMonitor:
    """Stands in for the run's monitor in a learner: records what the driver's monitor is to write."""

    def __init__(self):
        self._lock = threading.Lock()
        self._events: list[tuple[str, tuple, dict]] = []

    def episode(self, *args, **kwargs):
        with self._lock:
            self._events.append(("episode", args, kwargs))

    def task_scalars(self, *args, **kwargs):
        with self._lock:
            self._events.append(("task_scalars", args, kwargs))

    def run_scalars(self, *args, **kwargs):
        """Run-wide scalars are the driver's (their step is the whole run's)."""

    def drain(self) -> list[tuple[str, tuple, dict]]:
        with self._lock:
            events, self._events = self._events, []
        return events


class TaskLearner:
    """Ray actor: the workers and task columns of ``tasks``; the shared gradients go to ``shared``.

    Its workers are a :class:`~distral_tf.training.backends.LocalBackend` of its tasks, as a local run
    has, with its own agent and counters; what they write to the run's monitor is recorded
    (:class:`RecordingMonitor`) for the driver to write.
    """

    def __init__(self, config: dict, spaces: EnvSpaces, tasks: list[int], shared):
        from distral_tf.envs import make_suite
        from distral_tf.training import observation_statistics
        from distral_tf.training.run_counters import RunState

        self.tasks = list(tasks)
        cfg = _configured(config)
        if cfg.num_env_processes == -1:  # one environment process per CPU the learner reserves
            cfg = dataclasses.replace(cfg, num_env_processes=max(1, round(cfg.cpus_per_learner)))
        self.config = cfg
        suite = make_suite(cfg.suite)
        self.agent = agent = build_agent(cfg, spaces.for_agent(suite.num_tasks), suite)
        if agent.normalize_observations:  # the driver's statistics, from the run directory (or taken alike)
            agent.set_observation_statistics(*observation_statistics.load_or_take(cfg, suite))
        self.state = RunState(suite.num_tasks, budget_per_task(cfg, suite.num_tasks), cfg.unroll_length)
        self.monitor = RecordingMonitor()
        self._stop = threading.Event()
        self.workers = LocalBackend(WorkerContext(cfg, suite, spaces, agent, self.state, self.monitor, self._stop,
                                                  tasks=self.tasks))
        self._shared = shared
        self._shared_indices = shared_indices(agent)
        self._own_indices = task_indices(agent, self.tasks)
        self._lock = threading.Lock()
        agent.shared_sink = self._push  # before any update function is traced
        agent.shared_source = self._pull
        self._timings_sent = dict.fromkeys(Timings.FIELDS, 0.0)
        self._traffic = dict.fromkeys(TRAFFIC_FIELDS, 0.0)
        self._pending: list = []  # pushes not yet answered, oldest first
        self._outbox: list[GradientChunk] = []  # gradients not yet sent, oldest first
        self._collect_lock = threading.Lock()
        self._pull_lock = threading.Lock()
        self._last_lag = 0

    def start(self, state: dict, counters: dict, shared_version: int):
        """Loads the run's state, starts the environments and the workers; returns once they run."""
        load_full_state(self.agent, state)
        self.agent.shared_version = shared_version
        self.state.load(counters)
        self.workers.prepare()
        self.workers.start()
        import ray

        return ray.get_runtime_context().get_node_id()

    def _push(self, grads: list[np.ndarray], count: int, agent_steps: int, version: int) -> int:
        """Queues ``count`` updates' shared gradients (each [count, *shape], computed at ``version``), sends
        pushes of ``gradients_per_push`` while the queue holds that many, and waits only if
        ``MAX_PUSHES_IN_FLIGHT`` pushes are unanswered. Returns the lag of the last gradient known applied."""
        agent = self.agent
        finite = np.ones(count, bool)
        for g in grads:
            finite &= np.isfinite(g.reshape(count, -1)).all(axis=1)
        if not finite.all():  # the local optimiser skipped these updates too
            if not self._own_indices:
                skipped = int(count - finite.sum())
                agent.optimizer.num_skipped.assign_add(skipped)
                agent.optimizer.consecutive_skipped.assign_add(skipped)
            grads, count = [g[finite] for g in grads], int(finite.sum())
            if not count:
                return 0
        with self._lock:  # submitted and listed in one order: the actor's
            self._outbox.append(GradientChunk(grads, count, agent_steps, version))
            while self._queued() >= self.config.gradients_per_push:
                self._submit(self._take(self.config.gradients_per_push))
        return self._collect(MAX_PUSHES_IN_FLIGHT)

    def _take(self, count: int) -> list[GradientChunk]:
        """The first ``count`` queued gradients, as chunks (the last one split if need be); holds the lock."""
        batch, need = [], count
        while need:
            chunk = self._outbox.pop(0)
            if chunk.count > need:
                chunk, rest = chunk.split(need)
                self._outbox.insert(0, rest)
            batch.append(chunk)
            need -= chunk.count
        return batch

    def _queued(self) -> int:
        """Gradients in the queue (a few chunks at most); holds the lock."""
        return sum(chunk.count for chunk in self._outbox)

    def _submit(self, batch: list[GradientChunk]):
        """Sends ``batch`` in one push (the actor applies its gradients one by one, in order); holds the lock."""
        self._pending.append(self._shared.push.remote(batch))
        self._traffic["pushes"] += 1
        self._traffic["gradients"] += sum(chunk.count for chunk in batch)
        self._traffic["bytes"] += sum(g.nbytes for chunk in batch for g in chunk.grads)

    def _send(self):
        """Sends every queued gradient in one push."""
        with self._lock:
            if self._outbox:
                self._submit(self._take(self._queued()))

    def _collect(self, limit: int) -> int:
        """Waits until at most ``limit`` pushes are unanswered, takes the answers that are in (the run's
        agent-step count and each gradient's lag) and returns the last lag received."""
        import ray

        with self._collect_lock:
            with self._lock:
                pending = list(self._pending)
            waited = max(len(pending) - limit, 0)  # the actor answers a learner's pushes in order
            start = time.perf_counter()
            answers = ray.get(pending[:waited]) if waited else []
            seconds = time.perf_counter() - start
            rest = pending[waited:]
            if rest:
                ready, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                ready = set(ready)
                done = waited + next((i for i, r in enumerate(rest) if r not in ready), len(rest))
                answers += ray.get(pending[waited:done])
            with self._lock:
                del self._pending[:len(answers)]
                self._traffic["wait_seconds"] += seconds
                if answers:
                    _, env_steps, self._last_lag = answers[-1]
                    self._advance_env_steps(env_steps)
                return self._last_lag

    def _advance_env_steps(self, env_steps: int):
        """Takes the run's agent-step count from an answer; answers taken by different threads may
        arrive out of order, so the count held here never goes back."""
        steps = self.agent.env_steps
        steps.assign(max(env_steps, int(steps.numpy())))

    def _pull(self):
        """Brings the newest shared parameters here (before an actor group's snapshot). The actor
        answers a learner's calls in order, so they include every update this learner pushed."""
        import ray

        agent = self.agent
        self._send()
        with self._pull_lock:
            start = time.perf_counter()
            version, parameters, env_steps = ray.get(self._shared.pull.remote())
            seconds = time.perf_counter() - start
            if version > agent.shared_version:
                for i, value in zip(self._shared_indices, parameters, strict=True):
                    agent.trainable[i].assign(value)
                agent.shared_version = version
            self._advance_env_steps(env_steps)
            with self._lock:
                self._traffic["pulls"] += 1
                self._traffic["wait_seconds"] += seconds
                self._traffic["bytes"] += sum(p.nbytes for p in parameters)

    def poll(self) -> dict:
        """What happened since the last poll: episodes and scalars to write, counters, errors."""
        workers = self.workers
        error = workers.error
        timings = workers.timings.snapshot()
        delta = {k: timings[k] - self._timings_sent[k] for k in timings}
        self._timings_sent = timings
        with self._lock:
            traffic, self._traffic = self._traffic, dict.fromkeys(TRAFFIC_FIELDS, 0.0)
        return {"traffic": traffic, "events": self.monitor.drain(), "task_steps": self.state.task_steps,
                "task_episodes": self.state.task_episodes, "restarts": workers.restarts_per_task(),
                "done": not workers.running,
                "timings": delta,
                "error": None if error is None else f"{type(error).__name__}: {error}",
                "error_is_loss": error is not None and _is_ray_loss(error)}

    def pause(self):
        """Parks the workers between rollouts and waits for their pushes: every update applied,
        shared part included."""
        self.workers.pause()
        self._send()
        self._collect(0)
        return True

    def resume(self):
        self.workers.resume()
        return True

    def part(self) -> dict:
        """This learner's task columns, their RMSProp statistics and its update counters."""
        return part_state(self.agent, self._own_indices)

    def close(self):
        """Stops the workers (at most 60 s each) and closes their environments and learner."""
        self._stop.set()
        self.workers.resume()
        self.workers.join(timeout=60)
        self.workers.close_workers()
        self.workers.close()
        return True


# ---------------------------------------------------------------------------------------------- #
# The driver.


class LearnerHandle:
    """The driver's handle on one task learner: calls it, and writes what it reports into the run."""

    def __init__(self, backend: RayBackend, handle, tasks: list[int]):
        self.backend = backend
        self.handle = handle
        self.tasks = tasks
        self._restarts = np.zeros(backend.context.suite.num_tasks, np.int64)
        self._lock = threading.Lock()
        self._closed = False

    def call(self, method: str, *args):
        """``handle.method(*args)``, waited for; a lost actor raises :class:`NodeLostError`."""
        import ray

        try:
            return ray.get(getattr(self.handle, method).remote(*args))
        except Exception as e:
            if _is_ray_loss(e):
                raise NodeLostError(f"the learner of tasks {self.task_names()} is lost "
                                    f"({type(e).__name__})") from e
            raise

    def task_names(self) -> str:
        return ", ".join(self.backend.context.suite.task_names[t] for t in self.tasks)

    def poll(self) -> bool:
        """Writes what the learner reports; returns whether its workers have finished."""
        context = self.backend.context
        with self._lock:
            report = self.call("poll")
            for kind, args, kwargs in report["events"]:
                getattr(context.monitor, kind)(*args, **kwargs)
            context.state.update_tasks(self.tasks, report["task_steps"], report["task_episodes"])
            self._restarts = np.asarray(report["restarts"], np.int64)
            self.backend.timings.add(**report["timings"])
            self.backend.add_traffic(report["traffic"])
        if report["error"] is not None:
            if report["error_is_loss"]:
                raise NodeLostError(f"the learner of tasks {self.task_names()} lost the shared parameters: "
                                    f"{report['error']}")
            raise TrainingError(f"the learner of tasks {self.task_names()} failed: {report['error']}")
        return report["done"]

    def restarts_per_task(self) -> np.ndarray:
        """Environment restarts per task (of the whole run's tasks) of this learner's workers."""
        return self._restarts.copy()

    def close(self):
        """Stops the learner's workers and environment processes (at most 60 s), then the actor."""
        import ray

        if self._closed:
            return
        self._closed = True
        try:
            ray.get(self.handle.close.remote(), timeout=60)
        except Exception as e:  # lost, or stuck: killing the actor is all that is left
            logging.info("Learner of tasks %s did not close: %s", self.task_names(), type(e).__name__)
        try:
            ray.kill(self.handle)
        except Exception as e:  # already gone
            logging.info("Learner of tasks %s: %s", self.task_names(), e)


class RayBackend:
    """The workers of one attempt of a run spread over a Ray cluster, as the driver's
    :class:`~distral_tf.training.trainer.Trainer` drives them (a :class:`~distral_tf.training.backends.WorkerBackend`).

    It starts the shared parameters and the task learners, and polls each learner from a
    thread of its own (a round: one poll, then ``POLL_SECS``), writing what it reports into
    the run's monitor and counters. Pausing parks the polling threads and every learner and
    gathers the whole state into the driver's agent, so that the trainer's checkpoint is exact.
    """

    def __init__(self, context: WorkerContext):
        self.context = context
        self.ray = import_ray()
        cfg = context.config
        self.partition = partition_tasks(context.suite.num_tasks, cfg.learners)
        self.resources = parse_resources(cfg.ray_resources)
        self.shared = None
        self.learners: list[LearnerHandle] = []
        self.timings = Timings()
        self.gate = PauseGate()
        self.threads = WorkerThreads(context.stop, self.gate)
        self._last_refresh = 0.0
        self._traffic_lock = threading.Lock()
        self.traffic = dict.fromkeys(TRAFFIC_FIELDS, 0.0)
        self.actor_nodes: set[str] = set()  # the Ray nodes of this attempt's actors

    def add_traffic(self, traffic: dict[str, float]):
        with self._traffic_lock:
            for k, v in traffic.items():
                self.traffic[k] += v

    def summary_extras(self) -> dict:
        """The learners' exchanges with the shared parameters in this attempt: pushes (calls sending
        gradients), gradients sent, pulls (parameters received, one per snapshot), seconds the
        learners' threads waited for answers, bytes both ways."""
        with self._traffic_lock:
            t = dict(self.traffic)
        return {"shared_pushes": int(t["pushes"]), "shared_gradients": int(t["gradients"]),
                "shared_pulls": int(t["pulls"]),
                "shared_wait_seconds": t["wait_seconds"], "shared_bytes": int(t["bytes"])}

    def prepare(self):
        """Starts the shared parameters and the learners, with the driver's agent and counters."""
        ray, ctx, cfg = self.ray, self.context, self.context.config
        config, spaces = cfg.to_json(), ctx.spaces
        ctx.phase(f"starting {len(self.partition)} learners and the shared parameters on the Ray cluster")
        self.shared = ray.remote(num_cpus=0, max_restarts=0)(SharedParametersActor).remote(config, spaces)
        learner_class = ray.remote(TaskLearner)
        handles = [learner_class.options(num_cpus=cfg.cpus_per_learner, resources=self.resources or None,
                                         scheduling_strategy="SPREAD", max_restarts=0,
                                         name=None).remote(config, spaces, tasks, self.shared)
                   for tasks in self.partition]
        self.learners = [LearnerHandle(self, h, tasks) for h, tasks in zip(handles, self.partition, strict=True)]
        state = full_state(ctx.agent)
        counters = ctx.state.export()
        ctx.phase("waiting for the shared parameters to start")
        loaded = self.shared.load.remote(state)
        self._wait(loaded, "the shared parameters")
        self.actor_nodes.add(ray.get(loaded))
        ctx.phase(f"waiting for {len(handles)} learners to start")
        starts = [h.start.remote(state, counters, 0) for h in handles]
        self._wait(starts, f"{len(handles)} learners")
        for learner, node in zip(self.learners, ray.get(starts), strict=True):
            self.actor_nodes.add(node)
            logging.info("Learner of tasks %s runs on node %s.", learner.task_names(), node[:12])

    def _wait(self, refs, what: str):
        ray = self.ray
        pending = refs if isinstance(refs, list) else [refs]
        deadline = time.monotonic() + PLACEMENT_TIMEOUT_SECS
        reported = len(pending)
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=2.0)
            if pending and self.context.stop.is_set():
                raise TrainingError(f"stopped while waiting for {what} to start; nothing was trained in this "
                                    "attempt (rerun the same command to resume)")
            if pending and time.monotonic() > deadline:
                raise TrainingError(
                    f"{what} did not start within {PLACEMENT_TIMEOUT_SECS:.0f} s: does the cluster have room for "
                    f"{len(self.partition)} learners of {self.context.config.cpus_per_learner:g} CPUs"
                    f"{' and ' + json.dumps(self.resources) if self.resources else ''}? (ray status)")
            if pending and len(pending) != reported:  # the start-up reporter repeats the phase meanwhile
                reported = len(pending)
                self.context.phase(f"waiting for {what} to start ({len(pending)} not ready)")
        try:
            ray.get(refs)
        except Exception as e:
            if _is_ray_loss(e):
                raise NodeLostError(f"{what} could not start ({type(e).__name__}: {e})") from e
            raise

    def start(self):
        self.threads.start([self._round_of(learner) for learner in self.learners])

    def _round_of(self, learner: LearnerHandle):
        return lambda _rounds, _start: self.poll_round(learner)

    def poll_round(self, learner: LearnerHandle) -> bool:
        """Writes what ``learner`` reports, then waits ``POLL_SECS``; False once its workers have finished."""
        done = learner.poll()
        if self.context.state.total_steps > 0:
            self.context.started()
        if learner is self.learners[0]:
            self.refresh_shared()
        if done:
            return False
        self.context.stop.wait(POLL_SECS)
        return True

    @property
    def running(self) -> bool:
        return self.threads.running

    @property
    def error(self) -> BaseException | None:
        return self.threads.error

    def join(self, timeout: float = 60.0):
        self.threads.join(timeout)

    def pause(self):
        """Parks the polling threads and every learner (each sends its pending gradients and waits for
        them to be applied), takes what they did before parking and gathers the whole state."""
        self.gate.pause()
        try:
            for learner in self.learners:
                learner.call("pause")
            for learner in self.learners:
                learner.poll()  # what they did before parking
            self.gather_state()
        except BaseException:
            self.gate.resume()
            raise

    def resume(self):
        for learner in self.learners:
            try:
                learner.call("resume")
            except NodeLostError as e:  # noticed by its polling thread
                logging.warning("%s", e)
        self.gate.resume()

    def restarts_per_task(self) -> np.ndarray:
        counts = np.zeros(self.context.suite.num_tasks, np.int64)
        for learner in self.learners:
            counts += learner.restarts_per_task()
        return counts

    def sync_agent(self):
        self.refresh_shared(force=True)

    def refresh_shared(self, force: bool = False):
        """Copies the newest shared parameters into the driver's agent (for evaluating pi_0)."""
        if not force and time.monotonic() - self._last_refresh < REFRESH_SECS:
            return
        self._last_refresh = time.monotonic()
        agent = self.context.agent
        try:
            _, parameters, env_steps = self.ray.get(self.shared.pull.remote())
        except Exception as e:
            if _is_ray_loss(e):
                raise NodeLostError(f"the shared parameters are lost ({type(e).__name__})") from e
            raise
        for i, value in zip(shared_indices(agent), parameters, strict=True):
            agent.trainable[i].assign(value)
        agent.env_steps.assign(env_steps)

    def gather_state(self):
        """Copies every learner's task columns and the shared parameters, with their RMSProp statistics
        and update counters, into the driver's agent (the learners are parked)."""
        agent = self.context.agent
        parts = [learner.call("part") for learner in self.learners]
        try:
            shared = self.ray.get(self.shared.state.remote())
        except Exception as e:
            if _is_ray_loss(e):
                raise NodeLostError(f"the shared parameters are lost ({type(e).__name__})") from e
            raise
        for part in [*parts, shared]:
            load_part_state(agent, part)
        opt = agent.optimizer
        opt.num_updates.assign(sum(p["num_updates"] for p in parts) + shared["num_updates"])
        opt.num_skipped.assign(sum(p["num_skipped"] for p in parts) + shared["num_skipped"])
        agent.env_steps.assign(shared["env_steps"])

    def close_workers(self):
        for learner in self.learners:
            learner.close()

    def close(self):
        self.close_workers()  # closed already after training; not if the start failed
        if self.shared is not None:
            self.ray.kill(self.shared)
            self.shared = None


class DistributedRun:
    """A run spread over a Ray cluster, started again from its last checkpoint when a node is lost.

    Each attempt is a :class:`~distral_tf.training.trainer.Trainer` whose workers are a
    :class:`RayBackend`. ``run()`` and ``request_stop()`` as the trainer's; Ray is
    joined (``--address``) or started on this machine before the first attempt.
    """

    def __init__(self, config: TrainConfig, suite: Suite):
        self.config = config
        self.suite = suite
        self.ray = import_ray()
        parse_resources(config.ray_resources)  # a bad value stops the run before anything starts
        self._stop = threading.Event()
        self._trainer: Trainer | None = None
        self.attempts = 0
        self._connect()

    @property
    def trainer(self) -> Trainer | None:
        """The driver of the current attempt (None before the first)."""
        return self._trainer

    def request_stop(self):
        self._stop.set()
        if self._trainer is not None:
            self._trainer.request_stop()

    def _connect(self):
        from distral_tf.training.ray_runs import check_reachable

        if self.ray.is_initialized():
            return
        cfg = self.config
        address = cfg.address or None
        check_reachable(address)
        demand = cluster_demand(cfg, self.suite.num_tasks)
        # Ray alone on this machine: room for every learner, whatever the number of cores (the
        # learners' threads then share them, as a local run's do).
        local_cpus = None if address else max(os.cpu_count() or 1, math.ceil(demand.get("CPU", 0.0)))
        local_resources = None if address else {k: v for k, v in demand.items() if k != "CPU"} or None
        if not address:  # Ray starts its workers at niceness 15; the learners are this run's main work
            os.environ.setdefault("RAY_worker_niceness", "0")
        # "local": a new Ray of this run's own, even where this machine belongs to a cluster already.
        self.ray.init(address=address or "local", num_cpus=local_cpus, resources=local_resources,
                      include_dashboard=False, logging_level=std_logging.WARNING, configure_logging=True,
                      log_to_driver=True)
        total = self.ray.cluster_resources()
        short = {k: (v, total.get(k, 0.0)) for k, v in demand.items() if total.get(k, 0.0) + 1e-9 < v}
        if short:
            logging.warning(
                "The cluster has %s, and the run's %d learners need %s: they wait up to %.0f s for nodes to "
                "join (ray status shows the cluster).",
                ", ".join(f"{have:g} {k}" for k, (_, have) in short.items()), len(partition_tasks(
                    self.suite.num_tasks, cfg.learners)),
                ", ".join(f"{need:g} {k}" for k, (need, _) in short.items()), PLACEMENT_TIMEOUT_SECS)

    def run(self) -> dict:
        restarts = self.config.max_restarts
        for attempt in range(restarts + 1):
            self.attempts = attempt + 1
            self._trainer = Trainer(self.config, self.suite, backend=RayBackend)
            if self._stop.is_set():
                self._trainer.request_stop()
            try:
                return self._trainer.run()
            except NodeLostError as e:
                if attempt == restarts or self._stop.is_set():
                    raise TrainingError(
                        f"{e}; the run stopped (restarts used: {attempt} of --max_restarts={restarts}). Rerun the "
                        "same command to resume from its last checkpoint.") from e
                logging.warning("%s: starting again from the last checkpoint (restart %d of %d).", e, attempt + 1,
                                restarts)
                backend = self._trainer.backend
                self._wait_for_lost_nodes(backend.actor_nodes if backend is not None else set())
        raise AssertionError("unreachable")

    def _wait_for_lost_nodes(self, nodes: set[str], timeout: float = NODE_DEATH_TIMEOUT_SECS):
        """Waits until Ray marks one of ``nodes`` (those of the failed attempt's actors) dead, so that the
        next attempt is not placed on a node that is gone but not yet known to be (at most ``timeout``: an
        actor may also be lost on a node that lives)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            alive = {n["NodeID"] for n in self.ray.nodes() if n.get("Alive")}
            if nodes - alive:
                return
            self._stop.wait(1.0)
