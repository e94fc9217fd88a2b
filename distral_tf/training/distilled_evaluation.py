"""Periodic evaluation of the distilled policy pi_0 on every task, during training.

Every ``interval`` agent steps per task, :class:`Evaluator` runs pi_0 for
``--eval_episodes`` episodes on each task and records them as ``distilled``
episodes (``distilled/<task>/episode_return``, ``metrics.jsonl``). It acts
through the machinery the workers use: an :class:`~distral_tf.training.actors.ActorGroup`
with one environment per task, stepped one agent step at a time so that a task
stops at the end of its last episode and its next evaluation starts a fresh one.
A faulty environment is restarted by the environment pool (its episode is cut and
not counted); an evaluation that fails altogether is logged and retried with new
environments, and after :data:`MAX_ATTEMPTS` failures that evaluation is skipped,
never the later ones.

:meth:`Evaluator.final_evaluation` runs once when the budget is spent: pi_0 at the run's
last step, over ``--final_eval_episodes`` episodes per task (spread over several
environments per task, each with a fixed quota so that short episodes are not favoured),
recorded with ``"final": true`` in ``metrics.jsonl``; reports rank pi_0 by it.
"""

from __future__ import annotations

import threading

import numpy as np
from absl import logging

from distral_tf.envs.pool import make_envs
from distral_tf.training import policy_runner as evaluation
from distral_tf.training import videos
from distral_tf.training.actors import ActorGroup, close_quietly

CLIP_STEPS = 100  # agent steps of each TensorBoard clip (--eval_clip_every)
MAX_ATTEMPTS = 3  # failed attempts after which one evaluation is skipped
FINAL_ENVS_PER_TASK = 8  # environments per task of the final evaluation


class DistilledPolicy:
    """pi_0 as a policy of an :class:`ActorGroup`: its actions; the task columns' state passes through."""

    def __init__(self, agent, greedy: bool):
        self.agent = agent
        self.greedy = greedy

    def act(self, task_ids, observations, first, distilled_state, task_state):
        actions, distilled_state = self.agent.act_distilled(observations, first, distilled_state, self.greedy)
        return actions, None, distilled_state, task_state


class Evaluator:
    """Evaluates pi_0 whenever every task has reached the run's next evaluation step.

    Args:
      agent, suite, monitor: of the run; ``observation_space`` of its environments.
      state: the run's :class:`~distral_tf.training.run_counters.RunState` (task steps, next evaluation step).
      stop: set when the run stops; an evaluation under way is then abandoned.
      interval: agent steps per task between evaluations.
      episodes: episodes per task and evaluation.
      greedy: act with pi_0's most probable action instead of sampling.
      clip_every: every this many evaluations, also a short clip of pi_0 per task (0: none).
      seed: seeds the environments (with the run's attempt number).
    """

    def __init__(self, agent, suite, observation_space, monitor, state, stop: threading.Event, *, interval: int,
                 episodes: int, greedy: bool = False, clip_every: int = 0, seed: int = 0):
        self.agent = agent
        self.suite = suite
        self.observation_space = observation_space
        self.monitor = monitor
        self.state = state
        self.interval = interval
        self.episodes = episodes
        self.greedy = greedy
        self.clip_every = clip_every
        self.evaluations = 0
        self.failures = 0
        self._stop = stop
        self._rng = np.random.default_rng([seed, 7, state.generation])
        self._policy = DistilledPolicy(agent, greedy)
        self._group: ActorGroup | None = None

    def _make_group(self) -> ActorGroup:
        n, space = self.suite.num_tasks, self.observation_space
        envs = make_envs(self.suite.env_factory(in_pool=False), list(range(n)),
                         [int(s) for s in self._rng.integers(2**31 - 1, size=n)], space.shape, space.dtype,
                         num_processes=0)
        return ActorGroup(list(range(n)), envs, self.agent, unroll_length=1)

    def evaluate(self) -> bool:
        """Runs pi_0 for ``episodes`` episodes on every task; False if the run stopped first."""
        if self._group is None:
            self._group = self._make_group()
        group, n = self._group, self.suite.num_tasks
        at_steps = self.state.task_steps
        results: list[list[tuple[float, int]]] = [[] for _ in range(n)]
        active = np.ones(n, bool)
        while active.any():
            if self._stop.is_set():
                return False
            _, finished = group.collect(active, self._policy)
            for ep in finished:
                results[ep.task_index].append((ep.episode_return, ep.length))
                if len(results[ep.task_index]) >= self.episodes:
                    active[ep.task_index] = False
        for task, episodes in enumerate(results):
            for episode_return, length in episodes:
                self.monitor.episode(task, int(at_steps[task]), episode_return, length, policy="distilled")
        return True

    def final_evaluation(self, episodes: int, stop: threading.Event,
                         envs_per_task: int = FINAL_ENVS_PER_TASK) -> list[list[float]]:
        """Runs pi_0 for exactly ``episodes`` episodes per task and records them as final; returns the returns.

        Each task's episodes are spread over ``min(episodes, envs_per_task)`` fresh
        environments, each running a fixed number of whole episodes. Raises if ``stop``
        is set first (nothing is then recorded).
        """
        n = self.suite.num_tasks
        k = max(1, min(episodes, envs_per_task))
        tasks = [t for t in range(n) for _ in range(k)]
        quota = np.array([episodes // k + (j < episodes % k) for _ in range(n) for j in range(k)])
        space = self.observation_space
        envs = make_envs(self.suite.env_factory(in_pool=False), tasks,
                         [int(s) for s in self._rng.integers(2**31 - 1, size=len(tasks))], space.shape, space.dtype,
                         num_processes=0)
        group = ActorGroup(tasks, envs, self.agent, unroll_length=1)
        at_steps = self.state.task_steps
        results: list[list[tuple[float, int]]] = [[] for _ in range(n)]
        done = np.zeros(len(tasks), np.int64)
        try:
            while (done < quota).any():
                if stop.is_set():
                    raise RuntimeError("the run stopped during the final evaluation of pi_0")
                _, finished = group.collect(done < quota, self._policy)
                for ep in finished:
                    done[ep.worker] += 1
                    results[ep.task_index].append((ep.episode_return, ep.length))
        finally:
            group.close()
        for task, task_episodes in enumerate(results):
            for episode_return, length in task_episodes:
                self.monitor.episode(task, int(at_steps[task]), episode_return, length, policy="distilled",
                                     final=True)
        return [[r for r, _ in task_episodes] for task_episodes in results]

    def write_clips(self, envs, seed: int):
        """A short clip of pi_0 on every task (``envs[i]`` of task ``i``), as an animated image summary."""
        runner = evaluation.PolicyRunner(self.agent, "distilled")
        clips = evaluation.watch(envs, range(len(envs)), runner, CLIP_STEPS, greedy=self.greedy, seed=seed)
        at_steps = self.state.task_steps
        for task, frames in enumerate(clips):
            frames = [videos.scale_up(f, 128) for f in frames]
            self.monitor.clip(task, int(at_steps[task]), videos.gif_bytes(frames, envs[task].metadata.get(
                "render_fps", 10)), frames[0].shape[1], frames[0].shape[0])

    def _clips(self):
        envs = []
        try:
            envs = [self.suite.make_env(i, seed=int(self._rng.integers(2**31 - 1)))
                    for i in range(self.suite.num_tasks)]
            self.write_clips(envs, int(self._rng.integers(2**31 - 1)))
        except Exception as e:
            logging.warning("Could not write the clips of pi_0: %s: %s", type(e).__name__, e)
        finally:
            for env in envs:
                close_quietly(env)

    def _discard_group(self):
        if self._group is not None:
            self._group.close()
            self._group = None

    def run(self):
        """Evaluates at every ``interval`` until the run stops or every task's budget is spent."""
        attempts = 0
        try:
            while not self._stop.is_set():
                next_eval, reached = self.state.next_eval, int(self.state.task_steps.min())
                if reached < next_eval:
                    if reached >= self.state.steps_per_task:
                        return
                    self._stop.wait(0.5)
                    continue
                try:
                    if not self.evaluate():
                        return
                except Exception as e:
                    attempts += 1
                    self.failures += 1
                    self._discard_group()
                    skip = attempts >= MAX_ATTEMPTS
                    logging.warning("Evaluation of pi_0 at %s agent steps per task failed (%s: %s); %s.",
                                    f"{next_eval:,}", type(e).__name__, e,
                                    "skipping it" if skip else "retrying with new environments")
                    if not skip:
                        continue
                else:
                    self.evaluations += 1
                    if self.clip_every and self.evaluations % self.clip_every == 0:
                        self._clips()
                attempts = 0
                self.state.next_eval = next_eval + self.interval
        finally:
            self._discard_group()


def final_evaluation_figures(evaluator: Evaluator, episodes: int, stop: threading.Event) -> dict:
    """:meth:`Evaluator.final_evaluation` of ``episodes`` per task, retried up to :data:`MAX_ATTEMPTS` times;
    the figures of pi_0 for ``status.json`` (mean return and standard error per task), ``{}`` if ``stop``
    is set first or every attempt fails."""
    logging.info("Final evaluation of pi_0: %d episodes per task.", episodes)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        if stop.is_set():
            return {}
        try:
            returns = evaluator.final_evaluation(episodes, stop)
            break
        except Exception as e:
            logging.warning("The final evaluation of pi_0 failed (attempt %d of %d: %s: %s).", attempt,
                            MAX_ATTEMPTS, type(e).__name__, e)
    else:
        return {}
    means = [float(np.mean(r)) for r in returns]
    errors = [float(np.std(r, ddof=1) / np.sqrt(len(r))) if len(r) > 1 else 0.0 for r in returns]
    logging.info("Final return of pi_0 (mean ± standard error): %s.", ", ".join(
        f"{name} {m:.2f} ± {e:.2f}" for name, m, e in zip(evaluator.suite.task_names, means, errors, strict=True)))
    return {"final_distilled_return_per_task": means, "final_distilled_stderr_per_task": errors,
            "final_distilled_episodes": episodes}
