"""The asynchronous trainer: ``workers_per_task`` workers per task updating shared parameters.

:class:`Trainer` is the runner that wires the parts of a run together:

* the run directory (lock, ``config.json``, ``status.json``, :mod:`distral_tf.rundir`);
* the counters, checkpointed with the parameters (:class:`~distral_tf.run_state.RunState`);
* the workers (one environment and LSTM state each), driven in lockstep by a few actor
  threads (:class:`~distral_tf.actors.ActorGroup`, environments from
  :mod:`distral_tf.worker_envs`): every step, one batched network call gives the actions
  of all the workers of a group, whose environments step in a pool of processes. Each
  group acts with its own snapshot of the shared parameters
  (:class:`~distral_tf.agent.Replica`, A3C's theta'), taken at the start of every
  rollout, and its gradients are computed at that snapshot: on-policy, whatever the other
  groups apply meanwhile;
* the learner (:mod:`distral_tf.learners`): ``hogwild`` (the paper's A3C scheme, each
  worker's own update without locks) or ``batched`` (one update per group's rollouts).
  A worker only acts again once its update is applied;
* the evaluation of pi_0 in a thread of its own (:class:`~distral_tf.evaluator.Evaluator`);
* progress output (:mod:`distral_tf.progress`) and checkpoints, from the main thread.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
from absl import logging

import distral_tf
from distral_tf import algorithms, budgets, provenance, rundir, summaries, tensorflow_setup, transfer
from distral_tf.actors import ActorGroup, close_quietly
from distral_tf.agent import Agent, Replica, check_device
from distral_tf.algorithm_spec import Architecture
from distral_tf.checkpointing import Checkpointer
from distral_tf.config import TrainConfig
from distral_tf.envs.suites import Suite
from distral_tf.evaluator import CLIP_STEPS, MAX_ATTEMPTS, Evaluator
from distral_tf.learners import Learner, make_learner
from distral_tf.monitoring import Monitor
from distral_tf.progress import ProgressReporter, StartupReporter, steps_per_task
from distral_tf.run_state import RunState
from distral_tf.rundir import CONFIG_FILE, STATUS_FILE, RunLock, write_json_atomically
from distral_tf.trained_run import build_agent
from distral_tf.worker_envs import layout, make_groups

__all__ = ["CLIP_STEPS", "Timings", "Trainer", "TrainingError"]


class TrainingError(RuntimeError):
    """A run cannot continue (bad configuration on resume, repeated non-finite updates, ...)."""


class _PauseGate:
    """Lets the main thread park every worker between rollouts (for consistent checkpoints)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._paused = False
        self._parked = 0
        self._running = 0

    def enter(self):
        with self._cond:
            self._running += 1

    def leave(self):
        with self._cond:
            self._running -= 1
            self._cond.notify_all()

    def wait_if_paused(self):
        with self._cond:
            if not self._paused:
                return
            self._parked += 1
            self._cond.notify_all()
            while self._paused:
                self._cond.wait()
            self._parked -= 1

    def pause(self):
        with self._cond:
            self._paused = True
            while self._parked < self._running:
                self._cond.wait(timeout=0.5)

    def resume(self):
        with self._cond:
            self._paused = False
            self._cond.notify_all()


class Timings:
    """Seconds spent by the actor threads acting, stepping environments, learning and waiting (summed)."""

    FIELDS = ("env", "inference", "learning", "waiting")

    def __init__(self):
        self._lock = threading.Lock()
        self.seconds = dict.fromkeys(self.FIELDS, 0.0)

    def add(self, **seconds):
        with self._lock:
            for k, v in seconds.items():
                self.seconds[k] += v

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self.seconds)


class Trainer:
    """Trains one algorithm on one suite as configured; ``run()`` returns when the budget is spent or on stop.

    Everything a run holds exists from construction: ``state`` (the counters, zero until
    :meth:`build` restores them), ``actor_groups`` (empty until the workers start),
    ``agent``, ``checkpointer``, ``monitor`` and ``evaluator`` (None until :meth:`build`).

    The program calls :func:`~distral_tf.tensorflow_setup.configure_tensorflow` (with the
    config's thread counts) before the first run: the trainer changes no process-wide setting.
    """

    def __init__(self, config: TrainConfig, suite: Suite):
        self.config = config
        self.suite = suite
        self.algorithm = algorithms.get(config.algo)
        self.coeffs = self.algorithm.coefficients(config.entropy_cost, config.alpha, config.value_cost,
                                                  config.discount)
        # Rollouts have a fixed length: each task's budget is rounded up to whole rollouts.
        self.steps_per_task = steps_per_task(config.total_env_steps, suite.num_tasks, config.unroll_length)
        self.state = RunState(suite.num_tasks, self.steps_per_task, config.unroll_length)
        self.timings = Timings()
        self.agent: Agent | None = None
        self.checkpointer: Checkpointer | None = None
        self.monitor: Monitor | None = None
        self.evaluator: Evaluator | None = None
        self.learner: Learner | None = None
        self.resumed_from: str | None = None
        self.actor_groups: list[ActorGroup] = []
        # The tasks whose workers this trainer runs: all of them, except in a learner of a run spread
        # over machines (distral_tf/distributed.py).
        self.worker_tasks: list[int] = list(range(suite.num_tasks))
        self._obs_space = self._act_space = None
        self._stop = threading.Event()  # the workers stop (budget spent, an error, or a request)
        self._abort = threading.Event()  # a request to stop: also cuts the final evaluation short
        self._error: BaseException | None = None
        self._gate = _PauseGate()
        self._startup: StartupReporter | None = None

    @property
    def task_steps(self) -> np.ndarray:
        """Agent steps done per task (a copy)."""
        return self.state.task_steps

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def request_stop(self):
        """Asks the run to stop; it writes a final checkpoint before ``run()`` returns."""
        self._abort.set()
        self._stop.set()

    def _open_logdir(self) -> RunLock:
        """Creates the run directory if needed and locks it against other runs."""
        logdir = self.config.logdir
        try:
            os.makedirs(logdir, exist_ok=True)
            probe = os.path.join(logdir, f".write_test.{os.getpid()}")
            with open(probe, "w") as f:
                f.write("ok")
            os.remove(probe)
        except OSError as e:
            raise TrainingError(f"--logdir={logdir} is not a writable directory ({e.strerror}).") from None
        return RunLock(logdir).acquire()

    def _check_saved_config(self):
        """Refuses to resume a run whose saved model-defining configuration differs (unless ``--force``)."""
        logdir = self.config.logdir
        path = os.path.join(logdir, CONFIG_FILE)
        if os.path.exists(path):
            saved = rundir.read_json_object(path).get("config", {})
            if not isinstance(saved, dict):
                raise rundir.RunDirError(f"{path}: its \"config\" entry is not an object")
            # The two-column scaling only defines the model of the two-column algorithms.
            ignore = () if self.algorithm.architecture is Architecture.TWO_COLUMN else ("two_column_scaling",)
            diffs = self.config.model_differences(saved, ignore=ignore)
            if diffs and not self.config.force:
                raise TrainingError(
                    f"{logdir} holds a run with a different configuration ({'; '.join(diffs)}); "
                    "use another --logdir, or --force to resume it with the new values.")

    def _finished_status(self) -> dict | None:
        """The status of an earlier attempt that already spent this run's budget, else None."""
        path = os.path.join(self.config.logdir, STATUS_FILE)
        if not os.path.exists(path):
            return None
        try:
            status = rundir.read_json_object(path)
        except rundir.RunDirError:
            return None
        steps = status.get("env_steps_per_task")
        if (status.get("state") == "finished" and isinstance(steps, list)
                and len(steps) == self.suite.num_tasks and status.get("budget_per_task") == self.steps_per_task
                and all(isinstance(s, int) and s >= self.steps_per_task for s in steps)):
            return status
        return None

    def _set_aside_attempt_without_checkpoint(self):
        """An earlier attempt that left data but no checkpoint: its files go aside, the run starts clean."""
        if rundir.checkpoint_numbers(os.path.join(self.config.logdir, "checkpoints")):
            return
        moved = rundir.move_attempt_aside(self.config.logdir)
        if moved:
            logging.warning("An earlier attempt in %s stopped before its first checkpoint; moved its files to %s "
                            "and starting from step 0.", self.config.logdir, moved)

    def _prepare_logdir(self):
        path = os.path.join(self.config.logdir, CONFIG_FILE)
        write_json_atomically(path, {
            "version": distral_tf.__version__,
            "config": self.config.to_json(),
            "flags": self.config.to_json(),
            "algo": self.config.algo,
            "suite": self.suite.name,
            "task_names": list(self.suite.task_names),
            "frames_per_step": self.suite.frames_per_step,
            "reward_scale": self.suite.reward_scale,
            "observation_shape": [int(d) for d in self._obs_space.shape],
            "num_actions": int(self._act_space.n),
            "coefficients": self.algorithm.terms(self.coeffs),
            **provenance.git_provenance(),
        })

    def _write_status(self, state: str, **extra):
        write_json_atomically(os.path.join(self.config.logdir, STATUS_FILE), {
            "state": state,
            "env_steps": int(self.task_steps.sum()),
            "env_steps_per_task": [int(s) for s in self.task_steps],
            "budget_per_task": self.steps_per_task,
            "time": time.time(),
            "heartbeat": time.time(),
            "pid": os.getpid(),
            "host": rundir.hostname(),
            **extra,
        })

    def _heartbeat(self):
        """Rewrites ``status.json`` ("running", current steps); a failed write is only logged."""
        try:
            self._write_status("running")
        except OSError as e:
            logging.warning("%s", e)

    def _probe_environment(self):
        """Reads the observation and action spaces from task 0 (raising if the environment cannot start)."""
        probe = self.suite.make_env(0)
        self._obs_space, self._act_space = probe.observation_space, probe.action_space
        close_quietly(probe)
        if len(self._obs_space.shape) != 3:
            raise TrainingError(f"Suite {self.suite.name!r}: observations must be images [H, W, C], "
                                f"got shape {self._obs_space.shape}.")

    def build(self):
        """Probes the environment, writes ``config.json`` and builds the agent, counters, checkpointer,
        monitor and evaluator, restored from the newest checkpoint if there is one.

        ``run()`` calls it once the run directory is locked; tools that inspect a run
        directory (checkpoint costs, parameter fingerprints) call it directly.
        """
        if self._obs_space is None:
            self._probe_environment()
        os.makedirs(self.config.logdir, exist_ok=True)
        self._prepare_logdir()
        self._build()

    def make_agent(self) -> Agent:
        """A new agent of this run's configuration (its initial parameters follow from the seed)."""
        if self._obs_space is None:
            self._probe_environment()
        return build_agent(self.config, self.suite.num_tasks, self._obs_space.shape, self._act_space.n)

    def _build(self):
        cfg = self.config
        self.agent = self.make_agent()
        self.checkpointer = Checkpointer(
            os.path.join(cfg.logdir, "checkpoints"), keep=cfg.keep_checkpoints, agent=self.agent,
            optimizer=self.agent.optimizer, rng=self.agent.rng, env_steps=self.agent.env_steps,
            **self.state.checkpoint_variables())
        restored = self.checkpointer.restore()
        if restored:
            logging.info("Resuming from %s at %s agent steps.", restored, f"{int(self.agent.env_steps.numpy()):,}")
        elif cfg.init_from:
            step = transfer.load_distilled(self.agent, cfg.init_from)
            logging.info("pi_0 starts from %s at %s agent steps.", cfg.init_from, f"{step:,}")
        self.state.start_attempt()
        self.monitor = Monitor(cfg.logdir, self.suite.task_names, self.suite.frames_per_step,
                               self.steps_per_task * self.suite.num_tasks, cfg.log_every_secs,
                               metrics_offset=self.state.metrics_offset if restored else None,
                               resume_task_steps=self.state.task_steps if restored else None)
        self.resumed_from = restored
        self.evaluator = Evaluator(self.agent, self.suite, self._obs_space, self.monitor, self.state, self._stop,
                                   interval=self._eval_interval(), episodes=cfg.eval_episodes,
                                   greedy=cfg.eval_greedy, clip_every=cfg.eval_clip_every, seed=cfg.seed)

    def _eval_interval(self) -> int:
        cfg = self.config
        if cfg.eval_episodes <= 0:
            return 0
        if cfg.eval_every_env_steps > 0:
            return cfg.eval_every_env_steps
        return max(self.steps_per_task // 10, cfg.unroll_length)

    def _make_actor_groups(self) -> list[ActorGroup]:
        """The workers (task-major) in ``actor_threads`` groups of contiguous workers, with their environments."""
        cfg = self.config
        total, num_groups = len(self.worker_tasks) * cfg.workers_per_task, len(self.actor_group_layout())
        self._startup_phase(f"starting {total} environments in {num_groups} groups")

        def ready(groups: int, workers: int, seconds: float):
            self._startup_phase(f"starting environments: {workers}/{total} ready ({groups} of {num_groups} groups "
                                f"in {seconds:.0f} s)")

        return [ActorGroup(tasks, envs, self.agent, cfg.unroll_length, cfg.reward_clipping, self.suite.reward_scale)
                for tasks, envs in make_groups(self.suite, cfg, self._obs_space, self.state.generation,
                                               on_group_ready=ready, only_tasks=self.worker_tasks)]

    def _startup_phase(self, text: str):
        if self._startup is not None:
            self._startup.phase(text)

    # ------------------------------------------------------------------------------------------ #

    def _actor_loop(self, group: ActorGroup, replica: Replica):
        """Rounds of :meth:`_actor_round` until the budget is spent or the run stops; an error stops the run."""
        rounds = 0
        self._gate.enter()
        try:
            while not self._stop.is_set():
                start = time.perf_counter()
                self._gate.wait_if_paused()
                if self._stop.is_set() or not self._actor_round(group, replica, rounds, start):
                    break
                rounds += 1
        except BaseException as e:
            if self._error is None:
                self._error = e
            self._stop.set()
        finally:
            self._gate.leave()

    def _actor_round(self, group: ActorGroup, replica: Replica, rounds: int, start: float) -> bool:
        """One rollout of ``group`` and its update (``start``: when the round began, pause included);
        False when the group's tasks have no budget left."""
        cfg = self.config
        timer = time.perf_counter
        active = self.state.reserve(group.tasks)
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
        steps = self.state.complete(task_ids, [ep.task_index for ep in episodes])
        if self._startup is not None:
            self._startup.done()
        for ep in episodes:
            self.monitor.episode(ep.task_index, int(steps[ep.task_index]), ep.episode_return, ep.length)
        if (rounds + 1) % cfg.summary_every_updates == 1 or cfg.summary_every_updates == 1:
            self._write_update_summaries(task_ids, per_rollout, steps)
        if self.agent.optimizer.consecutive_skipped.numpy() >= cfg.max_consecutive_nonfinite:
            raise TrainingError(
                f"{cfg.max_consecutive_nonfinite} consecutive updates had non-finite gradients; "
                "stopping. The last checkpoint was written before them and is intact.")
        return True

    def _write_update_summaries(self, task_ids: np.ndarray, per_rollout: list[dict[str, float]], steps: np.ndarray):
        for task in np.unique(task_ids):
            of_task = np.flatnonzero(task_ids == task)
            terms = per_rollout[int(of_task[0])]
            staleness = [per_rollout[int(k)]["staleness"] for k in of_task]
            task, task_steps = int(task), int(steps[task])
            self.monitor.task_scalars(task, task_steps, {
                k: v for k, v in terms.items()
                if k in summaries.UPDATE_DIAGNOSTICS})
            self.monitor.task_scalars(task, task_steps, {
                "mean": float(np.mean(staleness)), "max": float(np.max(staleness))}, prefix="staleness")
            self.monitor.task_scalars(task, task_steps, {
                k: terms[k] for k in self.algorithm.loss_term_names(self.coeffs)}, prefix="loss")
        self.monitor.run_scalars(int(steps.sum()), {"learning_rate": per_rollout[-1]["learning_rate"]})

    # ------------------------------------------------------------------------------------------ #

    def _save_checkpoint(self):
        """Parks the workers, saves a consistent checkpoint, lets them go on."""
        start = time.perf_counter()
        self._gate.pause()
        parked = time.perf_counter()
        try:
            self.state.record_for_checkpoint(self._restarts_this_attempt(), self.monitor.flush())
            path = self.checkpointer.save(self.state.total_steps)
            end = time.perf_counter()
            logging.info("Saved checkpoint %s in %.2f s (%.2f s parking the workers, %.2f s writing).", path,
                         end - start, parked - start, end - parked)
            return path
        finally:
            self._gate.resume()

    def _restarts_this_attempt(self) -> np.ndarray:
        counts = np.zeros(self.suite.num_tasks, np.int64)
        for group in self.actor_groups:
            counts += group.restarts_per_task(self.suite.num_tasks)
        return counts

    def run(self) -> dict:
        """Trains until every task's budget is spent (or ``request_stop``); returns the final status.

        The run directory is locked for the whole run. A run whose budget is already
        spent returns its recorded status (with ``already_finished``) and writes nothing.
        """
        self._startup = StartupReporter()
        try:
            self._startup_phase(f"starting one environment of {self.suite.name} to read its spaces")
            try:  # a device this machine lacks, before anything starts
                check_device(self.config.device)
            except ValueError as e:
                raise TrainingError(str(e)) from None
            self._probe_environment()  # before anything is written: a missing engine leaves no run directory
            if self.config.init_from:  # likewise a source run that cannot start this one
                transfer.check_source(self.config.init_from, self.config.algo, self._obs_space.shape,
                                      self._act_space.n)
            lock = self._open_logdir()
            try:
                self._check_saved_config()
                finished = self._finished_status()
                if finished is not None:
                    logging.info("The run in %s is already finished; nothing to do.", self.config.logdir)
                    return {**finished, "already_finished": True}
                self._prepare_logdir()
                self._set_aside_attempt_without_checkpoint()
                return self._run_locked()
            finally:
                lock.release()
        finally:
            self._startup.done(started=False)

    def _run_locked(self) -> dict:
        cfg = self.config
        if not tensorflow_setup.is_configured():
            logging.warning("TensorFlow is not configured for concurrent training (Grappler is on): call "
                            "distral_tf.tensorflow_setup.configure_tensorflow() at the program's start.")
        self._startup_phase("building the agent and restoring the newest checkpoint")
        self._build()
        if self.state.budget_spent:
            logging.info("The run in %s is already complete.", cfg.logdir)
            extras = {}
            if not rundir.has_final_evaluation(cfg.logdir):  # stopped during its final evaluation
                extras = self._final_evaluation()
                if extras:
                    self._save_checkpoint()
            self._write_status("finished", **extras)
            self.monitor.close()
            return {"state": "finished", "env_steps": self.state.total_steps, **extras}
        self._write_status("running")
        summaries.write_custom_scalars_layout(
            cfg.logdir, self.suite.task_names,
            summaries.logged_metrics(self.algorithm, self.coeffs, evaluates_distilled=self.evaluator.interval > 0))
        summaries.write_hparams(cfg.logdir, {**cfg.to_json(), "suite": self.suite.name},
                                [summaries.per_task_tag("task", t, "episode_return") for t in self.suite.task_names])
        try:
            replicas = self._start_workers()
            self._startup_phase("waiting for the first rollouts")
            return self._train(replicas)
        finally:
            self._stop_workers()

    def _start_workers(self) -> list:
        """Prepares the learner and the actor groups; returns each group's replica."""
        self._startup_phase("preparing the acting and update functions")
        replicas = [self.agent.make_replica(i) for i in range(len(self.actor_group_layout()))]
        self.learner = make_learner(self.config.update_mode, self.config.learner_threads,
                                    self.config.rollouts_per_call, self.config.workers_per_task)
        self.learner.warm_up(self.agent, replicas)
        self.timings = Timings()
        self.actor_groups = self._make_actor_groups()
        return replicas

    def _stop_workers(self):
        if self.learner is not None:
            self.learner.close()

    def actor_group_layout(self) -> list[tuple[int, int, int]]:
        """``(lo, hi, processes)`` of each actor group (:func:`distral_tf.worker_envs.layout`)."""
        return layout(self.config, len(self.worker_tasks))

    def _train(self, replicas: list[Replica]) -> dict:
        cfg = self.config
        workers = self.actor_groups
        num_actors = len(workers)
        threads = [threading.Thread(target=self._actor_loop, args=(group, replica), name=f"actor-{i}", daemon=True)
                   for i, (group, replica) in enumerate(zip(workers, replicas, strict=True))]
        if self.evaluator.interval > 0:
            threads.append(threading.Thread(target=self.evaluator.run, name="eval", daemon=True))
        progress = ProgressReporter(self.suite.task_names, self.steps_per_task * self.suite.num_tasks,
                                    self.suite.frames_per_step, cfg.workers_per_task,
                                    [budgets.task_episode_steps(self.suite, t) for t in range(self.suite.num_tasks)])
        start_steps = self.state.total_steps
        start_time = time.time()
        last_checkpoint = last_progress = time.time()
        progress.update(time.monotonic(), start_steps)
        for t in threads:
            t.start()
        state = "failed"
        final_extras: dict = {}
        try:
            while any(t.is_alive() for t in threads[:num_actors]):
                time.sleep(0.2)
                if time.time() - last_progress >= cfg.log_every_secs:
                    last_progress = time.time()
                    self._log_progress(progress)
                if time.time() - last_checkpoint >= cfg.checkpoint_every_secs and not self._stop.is_set():
                    self._save_checkpoint()
                    last_checkpoint = time.time()
            self._stop.set()
            for t in threads:
                t.join(timeout=60)
            if self._error is not None:
                raise self._error
            state = "finished" if self.state.budget_spent else "interrupted"
            if state == "finished":
                final_extras = self._final_evaluation()
                if self._abort.is_set() and not final_extras:
                    state = "interrupted"  # the next start evaluates pi_0 and finishes
        finally:
            self._stop.set()
            save_error = None
            if state != "failed":
                try:
                    self._save_checkpoint()
                except Exception as e:  # reported after the cleanup below, which must still happen
                    save_error, state = e, "failed"
                    if self._error is None:
                        self._error = e
            restarts = self.state.env_restarts(self._restarts_this_attempt())
            for w in workers:
                w.close()
            self._log_progress(progress)
            elapsed = max(time.time() - start_time, 1e-9)
            steps_done = self.state.total_steps - start_steps
            summary = {
                "state": state,
                "env_steps": self.state.total_steps,
                "agent_steps_per_second": steps_done / elapsed,
                "env_frames_per_second": steps_done * self.suite.frames_per_step / elapsed,
                "env_restarts_per_task": [int(r) for r in restarts],
                "time_split_seconds": self.timings.snapshot(),
                "skipped_updates": int(self.agent.optimizer.num_skipped.numpy()),
                "mean_recent_return_per_task": self.monitor.mean_recent_returns(),
                **final_extras,
                **self._summary_extras(),
            }
            if self._error is not None:
                summary["error"] = f"{type(self._error).__name__}: {self._error}"
            try:
                self._write_status(state, **{k: v for k, v in summary.items() if k not in ("state", "env_steps")})
            except OSError as e:  # a full disk: the error that stopped the run matters more
                logging.error("%s", e)
            try:
                self.monitor.close()
            except OSError as e:
                logging.error("Could not flush the metrics of %s: %s", cfg.logdir, e)
            if save_error is not None:
                raise save_error
        return summary

    def _final_evaluation(self) -> dict:
        """pi_0 at the last step over ``final_eval_episodes`` per task (:meth:`Evaluator.final_evaluation`);
        its figures for ``status.json``, or ``{}`` if disabled, stopped or failing."""
        episodes = self.config.final_eval_episodes
        if episodes <= 0 or self.evaluator is None:
            return {}
        self._prepare_final_evaluation()
        logging.info("Final evaluation of pi_0: %d episodes per task.", episodes)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if self._abort.is_set():
                return {}
            try:
                returns = self.evaluator.final_evaluation(episodes, self._abort)
                break
            except Exception as e:
                logging.warning("The final evaluation of pi_0 failed (attempt %d of %d: %s: %s).", attempt,
                                MAX_ATTEMPTS, type(e).__name__, e)
        else:
            return {}
        means = [float(np.mean(r)) for r in returns]
        errors = [float(np.std(r, ddof=1) / np.sqrt(len(r))) if len(r) > 1 else 0.0 for r in returns]
        logging.info("Final return of pi_0 (mean ± standard error): %s.", ", ".join(
            f"{name} {m:.2f} ± {e:.2f}" for name, m, e in zip(self.suite.task_names, means, errors, strict=True)))
        return {"final_distilled_return_per_task": means, "final_distilled_stderr_per_task": errors,
                "final_distilled_episodes": episodes}

    def _prepare_final_evaluation(self):
        """Brings the agent's pi_0 up to date before the final evaluation (a distributed driver pulls it)."""

    def _summary_extras(self) -> dict:
        """Figures a kind of trainer adds to the summary of ``run()`` and to ``status.json``."""
        return {}

    def _log_progress(self, progress: ProgressReporter):
        """The progress line, the speed and restart scalars and the status heartbeat."""
        task_steps = self.state.task_steps
        total = int(task_steps.sum())
        steps_per_second = progress.update(time.monotonic(), total)
        logging.info(progress.line(total, task_steps, self.monitor.mean_recent_returns(), steps_per_second))
        self.monitor.run_scalars(total, {"env_frames_per_second": steps_per_second * self.suite.frames_per_step})
        for task, count in enumerate(self.state.env_restarts(self._restarts_this_attempt())):
            self.monitor.task_scalars(task, int(task_steps[task]), {"env_restarts": float(count)})
        self._heartbeat()
