"""What a run tells its user on the terminal: where it goes, how start-up advances, and progress lines.

* :func:`run_header`: the first lines of a run (run directory, algorithm, suite,
  tasks x workers, budget, the resolved hyperparameters, how to watch it in TensorBoard), printed before
  TensorFlow is even imported.
* :class:`StartupReporter`: a line every few seconds while the run starts (building
  the agent, starting hundreds of engines), until the first rollouts are in.
* :class:`ProgressReporter`: the periodic progress line. Its ETA comes from a
  smoothed speed (an exponential moving average over about ``smoothing_secs``), and
  until a task has finished an episode it says when its first ones are expected
  instead of printing a return. Early on, while less than ``smoothing_secs`` has
  passed, the average is that of the whole run so far.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence

from absl import logging


def format_duration(seconds: float) -> str:
    """``H:MM:SS``, or ``?`` when unknown."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def steps_per_task(total_env_steps: int, num_tasks: int, unroll_length: int) -> int:
    """Each task's budget: an equal share of ``total_env_steps``, rounded up to whole rollouts."""
    per_task = math.ceil(total_env_steps / num_tasks)
    return math.ceil(per_task / unroll_length) * unroll_length


# The settings a run states at its start (and in TensorBoard's text tab): field of the config, its name there.
HEADLINE_SETTINGS = (("algo", "algorithm"), ("suite", "suite"), ("total_env_steps", "budget (agent steps)"),
                     ("learning_rate", "learning rate"), ("entropy_cost", "entropy cost"), ("seed", "seed"),
                     ("update_mode", "update mode"), ("preset", "preset"))


def hyperparameters_line(config: dict) -> str:
    """The resolved headline settings of a config (a ``TrainConfig.to_json()``) as flags, and its preset."""
    flags = " ".join(f"--{k}={config[k]:g}" if isinstance(config[k], float) else f"--{k}={config[k]}"
                     for k, _ in HEADLINE_SETTINGS if k != "preset" and k in config)
    preset = config.get("preset")
    return f"Hyperparameters: {flags} ({f'preset {preset}' if preset else 'no preset'})"


def run_header(config, suite, episode_steps: int | None = None) -> list[str]:
    """The first lines of a run of ``config`` on ``suite``; ``episode_steps``: of its longest task, if known."""
    n, workers = suite.num_tasks, config.workers_per_task
    per_task = steps_per_task(config.total_env_steps, n, config.unroll_length)
    logdir = os.path.abspath(config.logdir)
    budget = f"Budget: {per_task * n:,} agent steps ({per_task:,} per task, {per_task // workers:,} per worker"
    if episode_steps:
        budget += f": {per_task / workers / episode_steps:,.1f} episodes of {episode_steps:,} steps"
    budget += f"; {suite.frames_per_step} frames per step)" if suite.frames_per_step > 1 else ")"
    lines = [
        f"Run directory: {logdir} (rerun the same command to resume)",
        f"Training {config.algo} on {suite.name}: {n} tasks x {workers} workers = {n * workers} environments, "
        f"{config.update_mode} updates",
        budget,
        hyperparameters_line(config.to_json()),
        f"Watch it: tensorboard --logdir={logdir}",
    ]
    if episode_steps and per_task < workers * episode_steps:
        lines.append(f"Warning: each worker gets {per_task // workers:,} steps, fewer than one {episode_steps:,}-step "
                     "episode: no episode will finish and no learning curve will appear. Raise --total_env_steps "
                     "or lower --workers_per_task.")
    return lines


class StartupReporter:
    """Logs what the run is doing every ``every_secs`` seconds until :meth:`done` (in a thread of its own)."""

    def __init__(self, every_secs: float = 10.0, log: Callable[[str], None] = logging.info):
        self._every = every_secs
        self._log = log
        self._phase = "starting"
        self._start = time.monotonic()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._reported = False
        self._thread = threading.Thread(target=self._run, name="startup-progress", daemon=True)
        self._thread.start()

    def phase(self, text: str):
        """What the run is doing now (logged at once)."""
        with self._lock:
            self._phase = text
        self._log(f"Starting ({self.elapsed():.0f} s): {text}")

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def done(self, started: bool = True):
        """No more start-up lines; ``started``: the first rollouts are in (logged once)."""
        with self._lock:
            first, self._reported = not self._reported, True
        self._done.set()
        if first and started:
            self._log(f"Started in {self.elapsed():.0f} s: the first rollouts are in.")

    def _run(self):
        while not self._done.wait(self._every):
            with self._lock:
                phase = self._phase
            self._log(f"Starting ({self.elapsed():.0f} s): still {phase}")


class ProgressReporter:
    """The periodic progress line of a run.

    Args:
      task_names: of the suite.
      total_steps: the run's budget (all tasks).
      frames_per_step: the action repeat (frames/s = agent steps/s x this).
      workers_per_task: workers of each task.
      episode_steps: per task, agent steps of one episode (None where unknown).
      smoothing_secs: time constant of the speed's moving average behind the ETA.
    """

    def __init__(self, task_names: Sequence[str], total_steps: int, frames_per_step: int, workers_per_task: int,
                 episode_steps: Sequence[int | None], smoothing_secs: float = 300.0):
        self.task_names = list(task_names)
        self.total_steps = total_steps
        self.frames_per_step = frames_per_step
        self.workers_per_task = workers_per_task
        self.episode_steps = list(episode_steps)
        self.smoothing_secs = smoothing_secs
        self.smoothed_steps_per_second: float | None = None
        self._average = 0.0  # moving average of the speed, started at zero ...
        self._weight = 0.0  # ... and the weight it has gathered (dividing by it removes the start's bias)
        self._last: tuple[float, int] | None = None

    def update(self, now: float, total_steps: int) -> float:
        """Takes the step count at ``now``; returns the speed (agent steps/s) since the previous update."""
        if self._last is None:
            self._last = (now, total_steps)
            return 0.0
        then, before = self._last
        dt = max(now - then, 1e-6)
        rate = (total_steps - before) / dt
        self._last = (now, total_steps)
        weight = 1.0 - math.exp(-dt / self.smoothing_secs)
        self._average += weight * (rate - self._average)
        self._weight += weight * (1.0 - self._weight)
        self.smoothed_steps_per_second = self._average / self._weight
        return rate

    def eta_seconds(self, total_steps: int) -> float:
        speed = self.smoothed_steps_per_second
        if not speed or speed <= 0:
            return math.inf
        return max(self.total_steps - total_steps, 0) / speed

    def first_episodes_in(self, task: int, task_steps: int) -> tuple[int, float] | None:
        """When the first episodes of ``task`` end: (steps per task, seconds from now), if known."""
        length = self.episode_steps[task]
        if not length:
            return None
        at = length * self.workers_per_task
        speed = self.smoothed_steps_per_second
        per_task_speed = speed / len(self.task_names) if speed else 0.0
        seconds = (at - task_steps) / per_task_speed if per_task_speed > 0 else math.inf
        return at, max(seconds, 0.0)

    def line(self, total_steps: int, task_steps: Sequence[int], recent_returns: Sequence[float],
             steps_per_second: float) -> str:
        """The progress line; ``recent_returns``: per task, NaN where no episode has finished yet."""
        returns = []
        waiting = []
        for task, (name, r) in enumerate(zip(self.task_names, recent_returns, strict=True)):
            if math.isfinite(r):
                returns.append(f"{name}={r:.2f}")
            else:
                returns.append(f"{name}=-")
                waiting.append(task)
        parts = [f"agent steps {total_steps:,}/{self.total_steps:,} ({100 * total_steps / self.total_steps:.0f}%)",
                 self.speed(steps_per_second)]
        if len(waiting) == len(self.task_names):
            parts.append("return: " + self._first_episodes_note(waiting, task_steps))
        else:
            note = f" (no episode yet: {self._first_episodes_note(waiting, task_steps)})" if waiting else ""
            parts.append("return " + " ".join(returns) + note)
        parts.append(f"ETA {format_duration(self.eta_seconds(total_steps))}")
        return " | ".join(parts)

    def speed(self, steps_per_second: float) -> str:
        """``"40 agent steps/s (160 frames/s)"``; the frames only where an agent step is several frames."""
        text = f"{steps_per_second:,.0f} agent steps/s"
        if self.frames_per_step > 1:
            text += f" ({steps_per_second * self.frames_per_step:,.0f} frames/s)"
        return text

    def _first_episodes_note(self, tasks: list[int], task_steps: Sequence[int]) -> str:
        expected = [e for e in (self.first_episodes_in(t, int(task_steps[t])) for t in tasks) if e is not None]
        if not expected:
            return "no episode finished yet"
        at = max(a for a, _ in expected)
        seconds = max(s for _, s in expected)
        when = f"in about {format_duration(seconds)}" if math.isfinite(seconds) else "time not known yet"
        return f"first episodes end at {at:,} steps per task ({at // self.workers_per_task:,} per worker), {when}"
