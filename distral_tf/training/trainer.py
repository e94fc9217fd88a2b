"""The training loop: one run of one algorithm on one suite, its workers behind a backend.

:class:`Trainer` composes the parts of a run, each of its own module:

* the run directory (lock, ``config.json``, ``status.json``, earlier attempts:
  :class:`~distral_tf.training.run_directory.RunDirectory`);
* the counters, checkpointed with the parameters (:class:`~distral_tf.training.run_counters.RunState`);
* the agent, checkpointer, monitor and evaluation of pi_0 (:mod:`distral_tf.training.run_setup`);
* the workers, behind :class:`~distral_tf.training.backends.WorkerBackend`: actor groups and their
  learner in this process (:class:`~distral_tf.training.backends.LocalBackend`, the default), or
  task learners on a Ray cluster (:class:`~distral_tf.training.distributed.RayBackend`);
* the training scalars (:class:`~distral_tf.training.run_summaries.RunSummaries`).

The loop itself, from the main thread: progress lines and the status heartbeat,
checkpoints every ``--checkpoint_every_secs`` with the workers parked, the final
evaluation of pi_0 and the final status.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from absl import logging

from distral_tf.envs.suites import Suite
from distral_tf.model import kernels
from distral_tf.model.agent import check_device
from distral_tf.training import budgets, tensorflow_setup, warm_start
from distral_tf.training.backends import BackendFactory, LocalBackend, WorkerBackend, WorkerContext
from distral_tf.training.config import TrainConfig
from distral_tf.training.distilled_evaluation import CLIP_STEPS, final_evaluation_figures
from distral_tf.training.progress import ProgressReporter, StartupReporter
from distral_tf.training.run_counters import RunState
from distral_tf.training.run_directory import ConfigMismatchError, RunDirectory, budget_per_task, config_record
from distral_tf.training.run_files import RunDirError
from distral_tf.training.run_setup import BuiltRun, EnvSpaces, TrainingError, build_run, probe_environment
from distral_tf.training.run_summaries import RunSummaries
from distral_tf.training.trained_run import algorithm_of
from distral_tf.training.worker_threads import Timings

__all__ = ["CLIP_STEPS", "Timings", "Trainer", "TrainingError"]


def check_rmsprop_kernel(choice: str) -> None:
    """With ``--rmsprop_kernel=cpp``, compiles (or reads from the cache) the op before anything starts; raises
    TrainingError with the reason where it cannot."""
    if choice != "cpp":
        return
    try:
        kernels.rmsprop_sequence()
    except kernels.KernelUnavailable as e:
        raise TrainingError(f"--rmsprop_kernel=cpp: {e} (--rmsprop_kernel=auto falls back to XLA)") from None


class Trainer:
    """Trains one algorithm on one suite as configured; ``run()`` returns when the budget is spent or on stop.

    ``backend`` makes the workers of an attempt from its :class:`~distral_tf.training.backends.WorkerContext`
    (default: :class:`~distral_tf.training.backends.LocalBackend`). ``state`` (the counters) exists from
    construction, zero until :meth:`build` restores them; ``agent``, ``checkpointer``,
    ``monitor`` and ``evaluator`` are None until then, ``backend`` until the workers start.

    The program calls :func:`~distral_tf.training.tensorflow_setup.configure_tensorflow` (with the
    config's thread counts) before the first run: the trainer changes no process-wide setting.
    """

    def __init__(self, config: TrainConfig, suite: Suite, backend: BackendFactory = LocalBackend):
        self.config = config
        self.suite = suite
        self.run_dir = RunDirectory(config.logdir)
        # Rollouts have a fixed length: each task's budget is rounded up to whole rollouts.
        self.steps_per_task = budget_per_task(config, suite.num_tasks)
        self.state = RunState(suite.num_tasks, self.steps_per_task, config.unroll_length)
        self.spaces: EnvSpaces | None = None
        self.parts: BuiltRun | None = None
        self.backend: WorkerBackend | None = None
        self.summaries: RunSummaries | None = None
        self._make_backend = backend
        self._stop = threading.Event()  # the workers stop (budget spent, an error, or a request)
        self._abort = threading.Event()  # a request to stop: also cuts the final evaluation short
        self._error: BaseException | None = None
        self._startup: StartupReporter | None = None

    # -- what a run holds ------------------------------------------------------------------------ #

    @property
    def agent(self):
        return None if self.parts is None else self.parts.agent

    @property
    def checkpointer(self):
        return None if self.parts is None else self.parts.checkpointer

    @property
    def monitor(self):
        return None if self.parts is None else self.parts.monitor

    @property
    def evaluator(self):
        return None if self.parts is None else self.parts.evaluator

    @property
    def resumed_from(self) -> str | None:
        return None if self.parts is None else self.parts.resumed_from

    @property
    def timings(self) -> Timings:
        """Seconds the workers of this attempt spent acting, stepping environments, learning and waiting."""
        return Timings() if self.backend is None else self.backend.timings

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

    # -- building -------------------------------------------------------------------------------- #

    def _write_config(self):
        algorithm, coeffs = algorithm_of(self.config)
        self.run_dir.write_config(config_record(
            self.config, self.suite, self.spaces.observation_space.shape, self.spaces.action_space.n,
            algorithm.terms(coeffs)))

    def build(self):
        """Probes the environment, writes ``config.json`` and builds the agent, counters, checkpointer,
        monitor and evaluator, restored from the newest checkpoint if there is one.

        ``run()`` builds the same once the run directory is locked; tools that inspect a run
        directory (checkpoint costs, parameter fingerprints) call it directly.
        """
        if self.spaces is None:
            self.spaces = probe_environment(self.suite)
        self._write_config()
        self.parts = build_run(self.config, self.suite, self.spaces, self.state, self._stop)

    def _phase(self, text: str):
        if self._startup is not None:
            self._startup.phase(text)

    # -- the run --------------------------------------------------------------------------------- #

    def run(self) -> dict:
        """Trains until every task's budget is spent (or ``request_stop``); returns the final status.

        The run directory is locked for the whole run. A run whose budget is already
        spent returns its recorded status (with ``already_finished``) and writes nothing.
        """
        self._startup = StartupReporter()
        try:
            self._phase(f"starting one environment of {self.suite.name} to read its spaces")
            try:  # a device this machine lacks, before anything starts
                check_device(self.config.device)
            except ValueError as e:
                raise TrainingError(str(e)) from None
            check_rmsprop_kernel(self.config.rmsprop_kernel)
            # Before anything is written: a missing engine, or a source run that cannot start this one,
            # leaves no run directory.
            self.spaces = probe_environment(self.suite)
            if self.config.init_from:
                warm_start.check_source(self.config.init_from, self.config.algo,
                                      self.spaces.observation_space.shape, self.spaces.action_space.n)
            try:
                self.run_dir.make_writable()
            except RunDirError as e:
                raise TrainingError(str(e)) from None
            lock = self.run_dir.lock()
            try:
                try:
                    self.run_dir.check_saved_config(self.config)
                except ConfigMismatchError as e:
                    raise TrainingError(str(e)) from None
                finished = self.run_dir.finished_status(self.suite.num_tasks, self.steps_per_task)
                if finished is not None:
                    logging.info("The run in %s is already finished; nothing to do.", self.config.logdir)
                    return {**finished, "already_finished": True}
                self._write_config()
                self.run_dir.set_aside_attempt_without_checkpoint()
                return self._run_locked()
            finally:
                lock.release()
        finally:
            self._startup.done(started=False)

    def _write_status(self, state: str, **extra):
        self.run_dir.write_status(state, self.state.task_steps, self.steps_per_task, **extra)

    def _run_locked(self) -> dict:
        cfg = self.config
        if not tensorflow_setup.is_configured():
            logging.warning("TensorFlow is not configured for concurrent training (Grappler is on): call "
                            "distral_tf.training.tensorflow_setup.configure_tensorflow() at the program's start.")
        self._phase("building the agent and restoring the newest checkpoint")
        self.parts = build_run(cfg, self.suite, self.spaces, self.state, self._stop)
        if self.state.budget_spent:
            logging.info("The run in %s is already complete.", cfg.logdir)
            extras = {}
            if not self.run_dir.has_final_evaluation():  # stopped during its final evaluation
                extras = self._final_evaluation()
                if extras:
                    self._save_checkpoint()
            self._write_status("finished", **extras)
            self.monitor.close()
            return {"state": "finished", "env_steps": self.state.total_steps, **extras}
        self._write_status("running")
        self.summaries = RunSummaries(cfg, self.monitor)
        self.summaries.write_run_metadata(self.suite, self.evaluator.interval > 0)
        self.backend = self._make_backend(WorkerContext(cfg, self.suite, self.spaces, self.agent, self.state,
                                                        self.monitor, self._stop, self._startup))
        try:
            self.backend.prepare()
            self._phase("waiting for the first rollouts")
            return self._train()
        finally:
            self.backend.close()

    def _train(self) -> dict:
        cfg, backend = self.config, self.backend
        evaluation = None
        if self.evaluator.interval > 0:
            evaluation = threading.Thread(target=self.evaluator.run, name="eval", daemon=True)
        progress = ProgressReporter(self.suite.task_names, self.steps_per_task * self.suite.num_tasks,
                                    self.suite.frames_per_step, cfg.workers_per_task,
                                    [budgets.task_episode_steps(self.suite, t) for t in range(self.suite.num_tasks)])
        start_steps = self.state.total_steps
        start_time = time.time()
        last_checkpoint = last_progress = time.time()
        progress.update(time.monotonic(), start_steps)
        backend.start()
        if evaluation is not None:
            evaluation.start()
        state = "failed"
        final_extras: dict = {}
        try:
            while backend.running:
                time.sleep(0.2)
                if time.time() - last_progress >= cfg.log_every_secs:
                    last_progress = time.time()
                    self._log_progress(progress)
                if time.time() - last_checkpoint >= cfg.checkpoint_every_secs and not self._stop.is_set():
                    self._save_checkpoint()
                    last_checkpoint = time.time()
            self._stop.set()
            backend.join(timeout=60)
            if evaluation is not None:
                evaluation.join(timeout=60)
            if backend.error is not None:
                self._error = backend.error
                raise self._error
            state = "finished" if self.state.budget_spent else "interrupted"
            if state == "finished":
                final_extras = self._final_evaluation()
                if self._abort.is_set() and not final_extras:
                    state = "interrupted"  # the next start evaluates pi_0 and finishes
        finally:
            self._stop.set()
            if self._error is None:
                self._error = backend.error
            summary, save_error = self._end_attempt(state, final_extras, progress, start_steps, start_time)
            if save_error is not None:
                raise save_error
        return summary

    def _end_attempt(self, state: str, final_extras: dict, progress: ProgressReporter, start_steps: int,
                     start_time: float) -> tuple[dict, BaseException | None]:
        """The last checkpoint (unless the attempt failed), the workers closed, the last progress line and the
        final status; returns the run's summary and the error of the last checkpoint, if it failed."""
        backend, save_error = self.backend, None
        if state != "failed":
            try:
                self._save_checkpoint()
            except Exception as e:  # reported after the cleanup below, which must still happen
                save_error, state = e, "failed"
                if self._error is None:
                    self._error = e
        restarts = self.state.env_restarts(backend.restarts_per_task())
        backend.close_workers()
        self._log_progress(progress)
        elapsed = max(time.time() - start_time, 1e-9)
        steps_done = self.state.total_steps - start_steps
        summary = {
            "state": state,
            "env_steps": self.state.total_steps,
            "agent_steps_per_second": steps_done / elapsed,
            "env_frames_per_second": steps_done * self.suite.frames_per_step / elapsed,
            "env_restarts_per_task": [int(r) for r in restarts],
            "time_split_seconds": backend.timings.snapshot(),
            "skipped_updates": int(self.agent.optimizer.num_skipped.numpy()),
            "mean_recent_return_per_task": self.monitor.mean_recent_returns(),
            **final_extras,
            **backend.summary_extras(),
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
            logging.error("Could not flush the metrics of %s: %s", self.config.logdir, e)
        return summary, save_error

    def _save_checkpoint(self):
        """Parks the workers, saves a consistent checkpoint, lets them go on."""
        start = time.perf_counter()
        backend = self.backend
        if backend is not None:
            backend.pause()
        parked = time.perf_counter()
        try:
            restarts = np.zeros(self.suite.num_tasks, np.int64) if backend is None else backend.restarts_per_task()
            self.state.record_for_checkpoint(restarts, self.monitor.flush())
            path = self.checkpointer.save(self.state.total_steps)
            end = time.perf_counter()
            logging.info("Saved checkpoint %s in %.2f s (%.2f s parking the workers, %.2f s writing).", path,
                         end - start, parked - start, end - parked)
            return path
        finally:
            if backend is not None:
                backend.resume()

    def _final_evaluation(self) -> dict:
        """pi_0 at the last step over ``final_eval_episodes`` per task (:meth:`Evaluator.final_evaluation`);
        its figures for ``status.json``, or ``{}`` if disabled, stopped or failing."""
        episodes = self.config.final_eval_episodes
        if episodes <= 0 or self.evaluator is None:
            return {}
        if self.backend is not None:
            self.backend.sync_agent()
        return final_evaluation_figures(self.evaluator, episodes, self._abort)

    def _log_progress(self, progress: ProgressReporter):
        """The progress line, the speed and restart scalars and the status heartbeat."""
        task_steps = self.state.task_steps
        total = int(task_steps.sum())
        steps_per_second = progress.update(time.monotonic(), total)
        logging.info(progress.line(total, task_steps, self.monitor.mean_recent_returns(), steps_per_second))
        self.summaries.progress(
            task_steps, steps_per_second * self.suite.frames_per_step,
            self.state.env_restarts(self.backend.restarts_per_task()))
        self.run_dir.heartbeat(task_steps, self.steps_per_task)
