"""Worker backends: what runs a run's workers, behind the one interface the training loop talks to.

:class:`WorkerBackend` is that interface; :class:`~distral_tf.training.trainer.Trainer` (the loop:
progress, checkpoint cadence, final evaluation, status) uses nothing else of the workers.
Two backends implement it:

* :class:`LocalBackend` (here): the workers (one environment and LSTM state each),
  driven in lockstep by a few actor threads (:class:`~distral_tf.training.actors.ActorGroup`,
  environments from :mod:`distral_tf.training.worker_envs`): every step, one batched network
  call gives the actions of all the workers of a group, whose environments step in a
  pool of processes. Each group acts with its own snapshot of the shared parameters
  (:class:`~distral_tf.model.agent.Replica`, A3C's theta'), taken at the start of every
  rollout, and its gradients are computed at that snapshot: on-policy, whatever the
  other groups apply meanwhile. The learner (:mod:`distral_tf.training.learners`) is ``hogwild``
  (the paper's A3C scheme, each worker's own update without locks) or ``batched`` (one
  update per group's rollouts); a worker only acts again once its update is applied.
* :class:`~distral_tf.training.distributed.RayBackend`: task learners on a Ray cluster, each a
  :class:`LocalBackend` of its tasks, and the shared parameters in a Ray actor.

A backend is made from a :class:`WorkerContext`: the run's configuration, suite,
spaces, agent, counters, monitor, the event that stops the run, and the start-up reporter.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from distral_tf.envs.suites import Suite
from distral_tf.training.actors import ActorGroup
from distral_tf.training.config import TrainConfig
from distral_tf.training.learners import Learner, make_learner
from distral_tf.training.progress import StartupReporter
from distral_tf.training.run_counters import RunState
from distral_tf.training.run_setup import EnvSpaces, TrainingError
from distral_tf.training.run_summaries import RunSummaries
from distral_tf.training.worker_envs import layout, make_groups
from distral_tf.training.worker_threads import PauseGate, Timings, WorkerThreads


@dataclasses.dataclass
class WorkerContext:
    """What a backend works with: the run's parts it reads and writes, and the event that stops it.

    ``tasks``: the tasks whose workers the backend runs (all of them, except in a
    learner of a Ray run). ``monitor``: the run's monitor, or a recorder standing in for it.
    """

    config: TrainConfig
    suite: Suite
    spaces: EnvSpaces
    agent: object  # distral_tf.model.agent.Agent
    state: RunState
    monitor: object  # distral_tf.training.monitoring.Monitor or an object with its episode/task_scalars/run_scalars
    stop: threading.Event
    startup: StartupReporter | None = None
    tasks: list[int] | None = None

    @property
    def worker_tasks(self) -> list[int]:
        return list(range(self.suite.num_tasks)) if self.tasks is None else list(self.tasks)

    def phase(self, text: str):
        """Reports a phase of the start-up (nothing once it is over)."""
        if self.startup is not None:
            self.startup.phase(text)

    def started(self):
        """Ends the start-up report: the first rollouts are in."""
        if self.startup is not None:
            self.startup.done()


class WorkerBackend(Protocol):
    """The workers of a run, as the training loop drives them.

    The loop calls :meth:`prepare` (environments, learners: may take minutes), then
    :meth:`start`; while :attr:`running` it shows progress and checkpoints between
    :meth:`pause` and :meth:`resume`. Once the run's stop event is set it calls
    :meth:`join`, reads :attr:`error`, brings the agent up to date for the final
    evaluation (:meth:`sync_agent`), takes the last checkpoint, then :meth:`close_workers`
    and, whatever happened, :meth:`close`.
    """

    timings: Timings

    def prepare(self) -> None:
        """Starts what the workers need (environments, learners); returns once they can run."""

    def start(self) -> None:
        """Starts the workers' rounds in threads."""

    @property
    def running(self) -> bool:
        """Whether a worker still runs (False once every task's budget is spent, or on stop)."""

    @property
    def error(self) -> BaseException | None:
        """The error that stopped the workers, if one did."""

    def join(self, timeout: float = 60.0) -> None:
        """Waits for the workers' threads to end (the run's stop event is set)."""

    def pause(self) -> None:
        """Parks every worker between rollouts; the agent and counters then hold the whole run's state."""

    def resume(self) -> None:
        """Lets parked workers go on."""

    def restarts_per_task(self) -> np.ndarray:
        """Environment restarts per task in this attempt."""

    def sync_agent(self) -> None:
        """Brings the agent's pi_0 up to date (before the final evaluation)."""

    def summary_extras(self) -> dict:
        """Figures the backend adds to the run's summary and ``status.json``."""

    def close_workers(self) -> None:
        """Closes the workers' environments (after the last checkpoint)."""

    def close(self) -> None:
        """Releases everything the backend holds (also after a failed start)."""


BackendFactory = Callable[[WorkerContext], WorkerBackend]


class RolloutRecorder:
    """Counts finished rollouts and logs the episodes they finished in one step, so that each task's
    episodes reach ``metrics.jsonl`` and TensorBoard in the order of the task steps they are logged at
    (a worker that completed its rollout first also logs first)."""

    def __init__(self, state: RunState, monitor):
        self.state = state
        self.monitor = monitor
        self._lock = threading.Lock()

    def record(self, task_ids, episodes) -> np.ndarray:
        """Records the rollouts of ``task_ids`` and their finished ``episodes``; returns the new task steps."""
        with self._lock:
            steps = self.state.complete(task_ids, [ep.task_index for ep in episodes])
            for ep in episodes:
                self.monitor.episode(ep.task_index, int(steps[ep.task_index]), ep.episode_return, ep.length)
        return steps


class LocalBackend:
    """The workers of ``context.worker_tasks`` in this process: actor groups in threads of their own, their
    learner, and a pause gate (see the module's docstring)."""

    def __init__(self, context: WorkerContext):
        self.context = context
        self.summaries = RunSummaries(context.config, context.monitor)
        self.recorder = RolloutRecorder(context.state, context.monitor)
        self.timings = Timings()
        self.gate = PauseGate()
        self.threads = WorkerThreads(context.stop, self.gate)
        self.learner: Learner | None = None
        self.actor_groups: list[ActorGroup] = []
        self.replicas: list = []

    def layout(self) -> list[tuple[int, int, int]]:
        """``(lo, hi, processes)`` of each actor group (:func:`distral_tf.training.worker_envs.layout`)."""
        return layout(self.context.config, len(self.context.worker_tasks))

    def prepare(self):
        """Prepares the learner, each group's snapshot (replica) and the actor groups with their environments."""
        ctx, cfg = self.context, self.context.config
        ctx.phase("preparing the acting and update functions")
        self.replicas = [ctx.agent.make_replica(i) for i in range(len(self.layout()))]
        self.learner = make_learner(cfg.update_mode, cfg.learner_threads, cfg.rollouts_per_call,
                                    cfg.workers_per_task)
        self.learner.warm_up(ctx.agent, self.replicas)
        self.timings = Timings()
        self.actor_groups = self._make_actor_groups()

    def _make_actor_groups(self) -> list[ActorGroup]:
        """The workers (task-major) in ``actor_threads`` groups of contiguous workers, with their environments."""
        ctx, cfg = self.context, self.context.config
        total, num_groups = len(ctx.worker_tasks) * cfg.workers_per_task, len(self.layout())
        ctx.phase(f"starting {total} environments in {num_groups} groups")

        def ready(groups: int, workers: int, seconds: float):
            ctx.phase(f"starting environments: {workers}/{total} ready ({groups} of {num_groups} groups "
                      f"in {seconds:.0f} s)")

        return [ActorGroup(tasks, envs, ctx.agent, cfg.unroll_length, cfg.reward_clipping, ctx.suite.reward_scale)
                for tasks, envs in make_groups(ctx.suite, cfg, ctx.spaces.observation_space, ctx.state.generation,
                                               on_group_ready=ready, only_tasks=ctx.worker_tasks)]

    def start(self):
        self.threads.start([self._round_of(group, replica)
                            for group, replica in zip(self.actor_groups, self.replicas, strict=True)])

    def _round_of(self, group: ActorGroup, replica) -> Callable[[int, float], bool]:
        return lambda rounds, start: self.actor_round(group, replica, rounds, start)

    def actor_round(self, group: ActorGroup, replica, rounds: int, start: float) -> bool:
        """One rollout of ``group`` and its update (``start``: when the round began, pause included);
        False when the group's tasks have no budget left."""
        ctx, cfg = self.context, self.context.config
        timer = time.perf_counter
        active = ctx.state.reserve(group.tasks)
        if not active.any():
            return False
        env_s, inference_s = group.env_seconds, group.inference_seconds
        collect_start = timer()
        replica.sync()  # the snapshot this rollout acts with and is differentiated at
        rollout, episodes = group.collect(active, replica)
        learn_start = timer()
        per_rollout = self.learner.learn(replica, rollout)
        end = timer()
        self.timings.add(env=group.env_seconds - env_s, inference=group.inference_seconds - inference_s,
                         learning=end - learn_start,
                         waiting=(collect_start - start) + (learn_start - collect_start)
                         - (group.env_seconds - env_s) - (group.inference_seconds - inference_s))
        task_ids = rollout.task_ids
        steps = self.recorder.record(task_ids, episodes)
        ctx.started()
        if self.summaries.due(rounds):
            self.summaries.update(task_ids, per_rollout, steps)
        if ctx.agent.optimizer.consecutive_skipped.numpy() >= cfg.max_consecutive_nonfinite:
            raise TrainingError(
                f"{cfg.max_consecutive_nonfinite} consecutive updates had non-finite gradients; "
                "stopping. The last checkpoint was written before them and is intact.")
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
        self.gate.pause()

    def resume(self):
        self.gate.resume()

    def restarts_per_task(self) -> np.ndarray:
        num_tasks = self.context.suite.num_tasks
        counts = np.zeros(num_tasks, np.int64)
        for group in self.actor_groups:
            counts += group.restarts_per_task(num_tasks)
        return counts

    def sync_agent(self):
        """The agent is the one the workers update: nothing to bring here."""

    def summary_extras(self) -> dict:
        return {}

    def close_workers(self):
        for group in self.actor_groups:
            group.close()

    def close(self):
        if self.learner is not None:
            self.learner.close()
