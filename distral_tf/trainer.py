"""The asynchronous trainer: ``workers_per_task`` workers per task updating shared parameters.

Workers (one environment and LSTM state each) are driven in lockstep by a few
actor threads (:class:`~distral_tf.actors.ActorGroup`): every step, one batched
network call gives the actions of all the workers of a group, whose
environments step in a pool of processes. Each group acts with its own snapshot
of the shared parameters (:class:`~distral_tf.agent.Replica`, A3C's theta'),
taken at the start of every rollout, and its gradients are computed at that
snapshot: on-policy, whatever the other groups apply meanwhile. In
``update_mode="hogwild"`` (the paper's A3C scheme) each worker's own gradient is
applied to the shared parameters through the shared RMSProp without locks, by a
few learner threads; in ``"batched"`` the rollouts of the group are combined
into one step. A worker only acts again once its update is applied. The main
thread logs progress and checkpoints; another thread evaluates pi_0.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time

import numpy as np
import tensorflow as tf
from absl import logging

import distral_tf
from distral_tf import algorithms, rundir, summaries, tensorflow_setup, transfer
from distral_tf.actors import ActorGroup, close_quietly, split_rollout
from distral_tf.agent import Agent, Replica, Rollout
from distral_tf.algorithm_spec import Architecture
from distral_tf.checkpointing import Checkpointer
from distral_tf.config import TrainConfig
from distral_tf.env_pool import group_layout, make_envs, resolve_num_processes
from distral_tf.envs.suites import Suite
from distral_tf.monitoring import Monitor
from distral_tf.rundir import CONFIG_FILE, STATUS_FILE, RunLock, write_json_atomically

CLIP_STEPS = 100  # agent steps of each TensorBoard clip (--eval_clip_every)


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


class _HogwildLearners:
    """Threads applying the gradients of single-worker rollouts through the shared RMSProp, without locks."""

    def __init__(self, num_threads: int):
        self._queue: queue.Queue = queue.Queue()
        self._threads = [threading.Thread(target=self._serve, name=f"learner-{i}", daemon=True)
                         for i in range(max(1, num_threads))]
        for t in self._threads:
            t.start()

    def learn_all(self, replica: Replica, rollouts: list[Rollout]) -> list[dict[str, float]]:
        """Applies each rollout's own update, its gradient taken at ``replica`` (concurrently with
        others); returns when all are applied."""
        slots = [{"done": threading.Event()} for _ in rollouts]
        for rollout, slot in zip(rollouts, slots, strict=True):
            self._queue.put((replica, rollout, slot))
        for slot in slots:
            slot["done"].wait()
        for slot in slots:
            if "error" in slot:
                raise slot["error"]
        return [slot["terms"] for slot in slots]

    def _serve(self):
        while True:
            item = self._queue.get()
            if item is None:
                return
            replica, rollout, slot = item
            try:
                slot["terms"] = replica.train_step(rollout)
            except Exception as e:
                slot["error"] = e
            slot["done"].set()

    def close(self):
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout=10)


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

    The program calls :func:`~distral_tf.tensorflow_setup.configure_tensorflow` (with the
    config's thread counts) before the first run: the trainer changes no process-wide setting.
    """

    def __init__(self, config: TrainConfig, suite: Suite):
        self.config = config
        self.suite = suite
        self.algorithm = algorithms.get(config.algo)
        self.coeffs = self.algorithm.coefficients(config.entropy_cost, config.alpha, config.value_cost,
                                                  config.discount)
        n = suite.num_tasks
        per_task = math.ceil(config.total_env_steps / n)
        # Rollouts have a fixed length: each task's budget is rounded up to whole rollouts.
        self.steps_per_task = math.ceil(per_task / config.unroll_length) * config.unroll_length
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._gate = _PauseGate()
        self.timings = Timings()

    # ------------------------------------------------------------------------------------------ #

    def request_stop(self):
        """Asks the run to stop; it writes a final checkpoint before ``run()`` returns."""
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
            "observation_shape": [int(d) for d in self._obs_space.shape],
            "num_actions": int(self._act_space.n),
            "coefficients": {"alpha": self.coeffs.alpha, "beta": self.coeffs.beta,
                             "entropy_bonus": self.coeffs.entropy_bonus,
                             "c_kl": self.coeffs.c_kl, "c_ent": self.coeffs.c_ent},
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

    def _build(self):
        cfg = self.config
        obs_space, act_space = self._obs_space, self._act_space
        self.agent = Agent(self.algorithm, self.coeffs, self.suite.num_tasks, obs_space.shape, act_space.n,
                           unroll_length=cfg.unroll_length, learning_rate=cfg.learning_rate,
                           total_env_steps=self.steps_per_task * self.suite.num_tasks,
                           rmsprop_decay=cfg.rmsprop_decay, rmsprop_epsilon=cfg.rmsprop_epsilon,
                           max_grad_norm=cfg.max_grad_norm, seed=cfg.seed, torso_dtype=cfg.torso_dtype,
                           two_column_scaling=cfg.two_column_scaling, train_distilled=not cfg.freeze_distilled)
        n = self.suite.num_tasks
        self._task_steps_var = tf.Variable(np.zeros(n, np.int64), name="task_steps")
        self._task_episodes_var = tf.Variable(np.zeros(n, np.int64), name="task_episodes")
        self._env_restarts_var = tf.Variable(np.zeros(n, np.int64), name="env_restarts")
        self._metrics_offset_var = tf.Variable(0, dtype=tf.int64, name="metrics_offset")
        self._next_eval_var = tf.Variable(0, dtype=tf.int64, name="next_eval")
        self._generation_var = tf.Variable(0, dtype=tf.int64, name="generation")
        self.checkpointer = Checkpointer(
            os.path.join(cfg.logdir, "checkpoints"), keep=cfg.keep_checkpoints, agent=self.agent,
            optimizer=self.agent.optimizer, rng=self.agent.rng, env_steps=self.agent.env_steps,
            task_steps=self._task_steps_var, task_episodes=self._task_episodes_var,
            env_restarts=self._env_restarts_var, metrics_offset=self._metrics_offset_var,
            next_eval=self._next_eval_var, generation=self._generation_var)
        restored = self.checkpointer.restore()
        if restored:
            logging.info("Resuming from %s at %s agent steps.", restored, f"{int(self.agent.env_steps.numpy()):,}")
        elif cfg.init_from:
            step = transfer.load_distilled(self.agent, cfg.init_from)
            logging.info("pi_0 starts from %s at %s agent steps.", cfg.init_from, f"{step:,}")
        self._generation_var.assign_add(1)
        self.task_steps = self._task_steps_var.numpy().copy()
        self.task_episodes = self._task_episodes_var.numpy().copy()
        self.env_restarts_base = self._env_restarts_var.numpy().copy()
        self._reserved = self.task_steps.copy()
        self.monitor = Monitor(cfg.logdir, self.suite.task_names, self.suite.frames_per_step,
                               self.steps_per_task * n, cfg.log_every_secs,
                               metrics_offset=int(self._metrics_offset_var.numpy()) if restored else None,
                               resume_task_steps=self.task_steps if restored else None)
        self.resumed_from = restored

    def _layout(self) -> list[tuple[int, int, int]]:
        """``(lo, hi, processes)`` of each actor group over the task-major list of workers."""
        cfg = self.config
        return group_layout(self.suite.num_tasks * cfg.workers_per_task, cfg.actor_threads,
                            resolve_num_processes(cfg.num_env_processes))

    def _make_actor_groups(self) -> list[ActorGroup]:
        """Splits the workers (task-major) into ``actor_threads`` groups of contiguous workers."""
        cfg = self.config
        generation = int(self._generation_var.numpy())
        tasks, seeds = [], []
        for task in range(self.suite.num_tasks):
            for w in range(cfg.workers_per_task):
                tasks.append(task)
                seeds.append(int(np.random.SeedSequence([cfg.seed, task, w, generation]).generate_state(1)[0]))
        groups = []
        try:
            for lo, hi, processes in self._layout():
                envs = make_envs(self.suite.env_factory(in_pool=processes > 0), tasks[lo:hi], seeds[lo:hi],
                                 self._obs_space.shape, self._obs_space.dtype, num_processes=processes,
                                 timeout_s=cfg.env_timeout_secs)
                groups.append(ActorGroup(tasks[lo:hi], envs, self.agent, cfg.unroll_length, cfg.reward_clipping))
        except BaseException:
            for group in groups:
                group.close()
            raise
        return groups

    # ------------------------------------------------------------------------------------------ #

    def _reserve(self, task: int) -> bool:
        with self._lock:
            if self._reserved[task] + self.config.unroll_length > self.steps_per_task:
                return False
            self._reserved[task] += self.config.unroll_length
            return True

    def _actor_loop(self, group: ActorGroup, replica: Replica, learners):
        cfg = self.config
        rounds = 0
        timer = time.perf_counter
        self._gate.enter()
        try:
            while not self._stop.is_set():
                start = timer()
                self._gate.wait_if_paused()
                if self._stop.is_set():
                    break
                active = np.array([self._reserve(int(task)) for task in group.tasks], bool)
                if not active.any():
                    break
                env_s, inference_s = group.env_seconds, group.inference_seconds
                collect_start = timer()
                replica.sync()  # the snapshot this rollout acts with and is differentiated at
                rollout, episodes = group.collect(active, replica)
                learn_start = timer()
                if learners is None:  # batched: the group's rollouts make one update
                    terms = replica.train_step(rollout)
                    per_rollout = [terms] * len(rollout.task_ids)
                else:  # hogwild: each worker's own update
                    per_rollout = learners.learn_all(replica, split_rollout(rollout))
                end = timer()
                self.timings.add(env=group.env_seconds - env_s, inference=group.inference_seconds - inference_s,
                                 learning=end - learn_start,
                                 waiting=(collect_start - start) + (learn_start - collect_start)
                                 - (group.env_seconds - env_s) - (group.inference_seconds - inference_s))
                task_ids = rollout.task_ids
                with self._lock:
                    np.add.at(self.task_steps, task_ids, cfg.unroll_length)
                    for ep in episodes:
                        self.task_episodes[ep.task_index] += 1
                    steps = self.task_steps.copy()
                for ep in episodes:
                    self.monitor.episode(ep.task_index, int(steps[ep.task_index]), ep.episode_return, ep.length)
                rounds += 1
                if rounds % cfg.summary_every_updates == 1 or cfg.summary_every_updates == 1:
                    for task in np.unique(task_ids):
                        of_task = np.flatnonzero(task_ids == task)
                        terms = per_rollout[int(of_task[0])]
                        staleness = [per_rollout[int(k)]["staleness"] for k in of_task]
                        task, task_steps = int(task), int(steps[task])
                        self.monitor.task_scalars(task, task_steps, {
                            k: v for k, v in terms.items()
                            if k in ("kl_task_distilled", "entropy_task", "entropy_distilled", "grad_norm")})
                        self.monitor.task_scalars(task, task_steps, {
                            "mean": float(np.mean(staleness)), "max": float(np.max(staleness))}, prefix="staleness")
                        self.monitor.task_scalars(task, task_steps, {
                            k: terms[k] for k in ("total", "policy_gradient", "value", "entropy_bonus",
                                                  "distillation")}, prefix="loss")
                    self.monitor.run_scalars(int(steps.sum()), {"learning_rate": per_rollout[-1]["learning_rate"]})
                if self.agent.optimizer.consecutive_skipped.numpy() >= cfg.max_consecutive_nonfinite:
                    raise TrainingError(
                        f"{cfg.max_consecutive_nonfinite} consecutive updates had non-finite gradients; "
                        "stopping. The last checkpoint was written before them and is intact.")
        except BaseException as e:
            if self._error is None:
                self._error = e
            self._stop.set()
        finally:
            self._gate.leave()

    # ------------------------------------------------------------------------------------------ #
    # Evaluation of the distilled policy (pi_0) on every task, with dedicated environments.

    def _eval_interval(self) -> int:
        cfg = self.config
        if cfg.eval_episodes <= 0:
            return 0
        if cfg.eval_every_env_steps > 0:
            return cfg.eval_every_env_steps
        return max(self.steps_per_task // 10, cfg.unroll_length)

    def _evaluate_distilled(self, envs, rng: np.random.Generator):
        """Runs pi_0 for ``eval_episodes`` episodes on every task (tasks batched together)."""
        n = len(envs)
        at_steps = [int(s) for s in self.task_steps]
        returns = [[] for _ in range(n)]
        lengths = [[] for _ in range(n)]
        obs = [np.asarray(env.reset(seed=int(rng.integers(2**31 - 1)))[0]) for env in envs]
        first = np.ones(n, bool)
        state = self.agent.initial_state(n)[0]
        ep_ret, ep_len = np.zeros(n), np.zeros(n, np.int64)
        active = np.ones(n, bool)
        while active.any() and not self._stop.is_set():
            actions, state = self.agent.act_distilled(np.stack(obs), first, state, self.config.eval_greedy)
            for i in np.flatnonzero(active):
                o, r, term, trunc, _ = envs[i].step(int(actions[i]))
                ep_ret[i] += r
                ep_len[i] += 1
                first[i] = False
                if term or trunc:
                    returns[i].append(ep_ret[i])
                    lengths[i].append(ep_len[i])
                    ep_ret[i], ep_len[i] = 0.0, 0
                    first[i] = True
                    if len(returns[i]) >= self.config.eval_episodes:
                        active[i] = False
                        continue
                    o = envs[i].reset(seed=int(rng.integers(2**31 - 1)))[0]
                obs[i] = np.asarray(o)
        if self._stop.is_set() and active.any():
            return False
        for i in range(n):
            for r, length in zip(returns[i], lengths[i], strict=True):
                self.monitor.episode(i, at_steps[i], r, length, policy="distilled")
        return True

    def _write_clips(self, envs, seed: int):
        """A short clip of pi_0 on every task, as an animated image summary."""
        from distral_tf import evaluation, videos

        runner = evaluation.PolicyRunner(self.agent, "distilled")
        clips = evaluation.watch(envs, range(len(envs)), runner, CLIP_STEPS, greedy=self.config.eval_greedy, seed=seed)
        for task, frames in enumerate(clips):
            frames = [videos.scale_up(f, 128) for f in frames]
            self.monitor.clip(task, int(self.task_steps[task]), videos.gif_bytes(frames, envs[task].metadata.get(
                "render_fps", 10)), frames[0].shape[1], frames[0].shape[0])

    def _eval_loop(self):
        interval = self._eval_interval()
        rng = np.random.default_rng([self.config.seed, 7, int(self._generation_var.numpy())])
        envs, evaluations = [], 0
        try:
            envs = [self.suite.make_env(i, seed=int(rng.integers(2**31 - 1))) for i in range(self.suite.num_tasks)]
            while not self._stop.is_set():
                next_eval = int(self._next_eval_var.numpy())
                if int(self.task_steps.min()) >= next_eval:
                    if not self._evaluate_distilled(envs, rng):
                        break
                    evaluations += 1
                    if self.config.eval_clip_every and evaluations % self.config.eval_clip_every == 0:
                        self._write_clips(envs, int(rng.integers(2**31 - 1)))
                    self._next_eval_var.assign(next_eval + interval)
                elif int(self.task_steps.min()) >= self.steps_per_task:
                    break
                else:
                    self._stop.wait(0.5)
        except BaseException as e:
            logging.exception("Evaluation of the distilled policy failed: %s", e)
        finally:
            for env in envs:
                close_quietly(env)

    # ------------------------------------------------------------------------------------------ #

    def _save_checkpoint(self, workers):
        """Parks the workers, saves a consistent checkpoint, lets them go on."""
        start = time.perf_counter()
        self._gate.pause()
        parked = time.perf_counter()
        try:
            restarts = self.env_restarts_base + self._restarts_per_task(workers)
            self._task_steps_var.assign(self.task_steps)
            self._task_episodes_var.assign(self.task_episodes)
            self._env_restarts_var.assign(restarts)
            self._metrics_offset_var.assign(self.monitor.flush())
            path = self.checkpointer.save(int(self.task_steps.sum()))
            end = time.perf_counter()
            logging.info("Saved checkpoint %s in %.2f s (%.2f s parking the workers, %.2f s writing).", path,
                         end - start, parked - start, end - parked)
            return path
        finally:
            self._gate.resume()

    def _restarts_per_task(self, workers) -> np.ndarray:
        counts = np.zeros(self.suite.num_tasks, np.int64)
        for group in workers:
            counts += group.restarts_per_task(self.suite.num_tasks)
        return counts

    def run(self) -> dict:
        """Trains until every task's budget is spent (or ``request_stop``); returns the final status.

        The run directory is locked for the whole run. A run whose budget is already
        spent returns its recorded status (with ``already_finished``) and writes nothing.
        """
        self._probe_environment()  # before anything is written: a missing engine leaves no run directory
        if self.config.init_from:  # likewise a source run that cannot start this one
            transfer.check_source(self.config.init_from, self.config.algo, self._obs_space.shape, self._act_space.n)
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

    def _run_locked(self) -> dict:
        cfg = self.config
        if not tensorflow_setup.is_configured():
            logging.warning("TensorFlow is not configured for concurrent training (Grappler is on): call "
                            "distral_tf.tensorflow_setup.configure_tensorflow() at the program's start.")
        self._build()
        if int(self.task_steps.min()) >= self.steps_per_task:
            logging.info("The run in %s is already complete.", cfg.logdir)
            self._write_status("finished")
            self.monitor.close()
            return {"state": "finished", "env_steps": int(self.task_steps.sum())}
        self._write_status("running")
        summaries.write_custom_scalars_layout(
            cfg.logdir, self.suite.task_names,
            ["episode_return", "episode_length", "kl_task_distilled", "entropy_task", "entropy_distilled"])
        summaries.write_hparams(cfg.logdir, {**cfg.to_json(), "suite": self.suite.name},
                                [summaries.per_task_tag("task", t, "episode_return") for t in self.suite.task_names])
        replicas = [self.agent.make_replica(i) for i in range(len(self._layout()))]  # one snapshot per group
        self.agent.warm_up(replicas, single_task_updates=cfg.update_mode == "hogwild",
                           batched_updates=cfg.update_mode == "batched")
        self.timings = Timings()
        workers = self._groups = self._make_actor_groups()
        num_actors = len(workers)
        learner = None
        if cfg.update_mode == "hogwild":
            learner = _HogwildLearners(cfg.learner_threads)
        threads = [threading.Thread(target=self._actor_loop, args=(group, replica, learner),
                                    name=f"actor-{i}", daemon=True)
                   for i, (group, replica) in enumerate(zip(workers, replicas, strict=True))]
        if self._eval_interval() > 0:
            threads.append(threading.Thread(target=self._eval_loop, name="eval", daemon=True))
        start_steps = int(self.task_steps.sum())
        start_time = time.time()
        last_checkpoint = time.time()
        for t in threads:
            t.start()
        state = "failed"
        try:
            while any(t.is_alive() for t in threads[:num_actors]):
                time.sleep(0.2)
                if self.monitor.progress(int(self.task_steps.sum()), self.task_steps):
                    restarts = self.env_restarts_base + self._restarts_per_task(workers)
                    for task, count in enumerate(restarts):
                        self.monitor.task_scalars(task, int(self.task_steps[task]), {"env_restarts": float(count)})
                    self._heartbeat()
                if time.time() - last_checkpoint >= cfg.checkpoint_every_secs and not self._stop.is_set():
                    self._save_checkpoint(workers)
                    last_checkpoint = time.time()
            self._stop.set()
            for t in threads:
                t.join(timeout=60)
            if self._error is not None:
                raise self._error
            complete = int(self.task_steps.min()) >= self.steps_per_task
            state = "finished" if complete else "interrupted"
        finally:
            self._stop.set()
            if learner is not None:
                learner.close()
            save_error = None
            if state != "failed":
                try:
                    self._save_checkpoint(workers)
                except Exception as e:  # reported after the cleanup below, which must still happen
                    save_error, state = e, "failed"
                    if self._error is None:
                        self._error = e
            restarts = self.env_restarts_base + self._restarts_per_task(workers)
            for w in workers:
                w.close()
            self.monitor.progress(int(self.task_steps.sum()), self.task_steps, force=True)
            elapsed = max(time.time() - start_time, 1e-9)
            steps_done = int(self.task_steps.sum()) - start_steps
            summary = {
                "state": state,
                "env_steps": int(self.task_steps.sum()),
                "agent_steps_per_second": steps_done / elapsed,
                "env_frames_per_second": steps_done * self.suite.frames_per_step / elapsed,
                "env_restarts_per_task": [int(r) for r in restarts],
                "time_split_seconds": self.timings.snapshot(),
                "skipped_updates": int(self.agent.optimizer.num_skipped.numpy()),
                "mean_recent_return_per_task": self.monitor.mean_recent_returns(),
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
