"""How many agent steps a run gets, and how long runs take: named budgets and wall-time estimates.

A named budget (``--budget=tiny|small`` of the sweep) is a number of episodes per
worker on the suite's longest task, so that every run finishes episodes at several
points of its budget and draws learning curves, whatever the suite and the number
of workers; ``full`` is the whole ``--total_env_steps``. A fraction scales
``--total_env_steps`` instead.

Wall times are estimated from the per-core training speed measured on 2 cores for
each suite that has a measurement (:data:`SPEEDS`), assuming speed grows in proportion
to the cores of a run; other suites use ``doom_mazes``'s.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import inspect
import math

from distral_tf import algorithms

# Agent steps of an episode when neither the environment nor its suite says.
FALLBACK_EPISODE_STEPS = 1_800


@dataclasses.dataclass(frozen=True)
class NamedBudget:
    """``episodes_per_worker`` on the longest task; ``None`` for the whole ``--total_env_steps``."""

    episodes_per_worker: int | None
    description: str


BUDGETS = {
    "full": NamedBudget(None, "the whole --total_env_steps"),
    "small": NamedBudget(12, "12 episodes per worker"),
    "tiny": NamedBudget(4, "4 episodes per worker"),
}


def speed_class(algo: str) -> str:
    """``"two_column"`` for an algorithm whose updates also train h_theta0, else ``"one_column"``."""
    return "two_column" if algorithms.get(algo).trains_two_columns else "one_column"


@dataclasses.dataclass(frozen=True)
class MeasuredSpeed:
    """Training speed per core (agent steps/s) measured on ``suite``, by columns and update mode.

    ``per_core`` maps ``(columns, update_mode)`` (``columns``: :func:`speed_class`) to agent
    steps/s per core; an update mode it lacks is derived from its hogwild figure and
    ``doom_mazes``'s ratio.
    """

    suite: str
    per_core: dict
    source: str


SPEEDS = {
    "doom_mazes": MeasuredSpeed("doom_mazes", {
        ("one_column", "hogwild"): 614.0,
        ("one_column", "batched"): 1094.0,
        ("two_column", "hogwild"): 391.0,
        ("two_column", "batched"): 697.0,
    }, "8 tasks x 32 workers on 2 cores, docs/throughput.md and docs/cluster.md"),
    # The pilot runs of docs/results/doom_mazes_small (8 tasks x 32 workers, 4M agent steps, one run at a
    # time on 2 cores, partly beside other work): each run's agent_steps_per_second / 2.
    "doom_mazes_small": MeasuredSpeed("doom_mazes_small", {
        ("one_column", "hogwild"): 534.0,
        ("two_column", "hogwild"): 443.0,
    }, "the pilot runs of docs/results/doom_mazes_small, one at a time on 2 cores"),
    # The 126 runs of docs/results/two_rooms_small (8 workers per task, 300,000 agent steps each,
    # 2 at a time on 2 cores, so one core each): each run's agent_steps_per_second, the harmonic
    # mean over the runs of each kind (so that the estimated core-time is the measured one).
    "two_rooms_small": MeasuredSpeed("two_rooms_small", {
        ("one_column", "hogwild"): 1586.0,
        ("two_column", "hogwild"): 785.0,
    }, "the 126 runs of docs/results/two_rooms_small, 2 at a time on 2 cores"),
}
DEFAULT_SPEED = "doom_mazes"


def measured_speed(suite_name: str) -> MeasuredSpeed:
    """The measurement that applies to ``suite_name``: its own, that of the measured suite all its
    tasks are named after (a list of task names such as ``two_rooms_small_goal7,...``), else
    :data:`DEFAULT_SPEED`'s."""
    if suite_name in SPEEDS:
        return SPEEDS[suite_name]
    owners = {max((name for name in SPEEDS if task.startswith(f"{name}_")), key=len, default=DEFAULT_SPEED)
              for task in suite_name.split(",")}
    return SPEEDS[owners.pop() if len(owners) == 1 else DEFAULT_SPEED]


def task_episode_steps(suite, task: int) -> int | None:
    """Agent steps of one episode of ``suite``'s task ``task`` (its time limit), or None if unknown.

    Read from the task's ``episode_length`` argument or its environment's default, or
    from Gymnasium's ``max_episode_steps``; no environment is started.
    """
    kwargs = suite.env_kwargs[task]
    if "episode_length" in kwargs:
        return int(kwargs["episode_length"])
    import gymnasium as gym

    try:
        spec = gym.spec(suite.env_ids[task])
    except Exception:  # not registered, or its module does not import: the length is only informative
        return None
    if spec.max_episode_steps:
        return int(spec.max_episode_steps)
    try:
        creator = gym.envs.registration.load_env_creator(spec.entry_point) if isinstance(spec.entry_point, str) \
            else spec.entry_point
        default = inspect.signature(creator).parameters["episode_length"].default
    except Exception:
        return None
    return int(default) if isinstance(default, int) and default > 0 else None


def longest_episode_steps(suite) -> int:
    """Agent steps of the longest episode of any task of ``suite``: its ``max_episode_steps`` where it declares
    one, else read from its tasks (:data:`FALLBACK_EPISODE_STEPS` for those that do not say)."""
    if suite.max_episode_steps:
        return int(suite.max_episode_steps)
    lengths = [task_episode_steps(suite, t) for t in range(suite.num_tasks)]
    known = [n for n in lengths if n]
    return max(known) if len(known) == len(lengths) else max([*known, FALLBACK_EPISODE_STEPS])


def parse(text: str) -> NamedBudget | float:
    """``--budget``: a named budget, or a positive fraction of ``--total_env_steps``; ``ValueError`` otherwise."""
    if text in BUDGETS:
        return BUDGETS[text]
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"--budget: expected a positive fraction or one of {', '.join(BUDGETS)}, got {text!r}")
    return value


def total_env_steps(budget: NamedBudget | float, full_steps: int, num_tasks: int, workers_per_task: int,
                    episode_steps: int) -> int:
    """Agent steps (all tasks) of a run with ``budget``; ``full_steps`` is ``--total_env_steps``."""
    if isinstance(budget, NamedBudget):
        if budget.episodes_per_worker is None:
            return full_steps
        return budget.episodes_per_worker * episode_steps * workers_per_task * num_tasks
    return max(1, round(full_steps * budget))


def episodes_per_worker(total_steps: int, num_tasks: int, workers_per_task: int, episode_steps: int) -> float:
    """Episodes of ``episode_steps`` that each worker finishes in a run of ``total_steps``."""
    return total_steps / (num_tasks * workers_per_task * episode_steps)


def steps_per_core_second(algo: str, update_mode: str, suite_name: str = DEFAULT_SPEED) -> float:
    """Measured training speed per core (agent steps/s) of ``algo`` in ``update_mode`` on ``suite_name``."""
    columns = speed_class(algo)
    per_core = measured_speed(suite_name).per_core
    if (columns, update_mode) in per_core:
        return per_core[(columns, update_mode)]
    reference = SPEEDS[DEFAULT_SPEED].per_core
    return per_core[(columns, "hogwild")] * reference[(columns, update_mode)] / reference[(columns, "hogwild")]


def wall_seconds(run_core_seconds: list[float], cores: float, parallel: int) -> float:
    """Wall time of runs needing ``run_core_seconds`` each, ``parallel`` at a time sharing ``cores``."""
    if not run_core_seconds:
        return 0.0
    at_once = max(1, min(parallel, len(run_core_seconds)))
    return max(sum(run_core_seconds) / cores, max(run_core_seconds) * at_once / cores)


def format_hours(seconds: float) -> str:
    """``"2.5 h"``, ``"40 min"`` or ``"3.1 days"``."""
    if seconds < 3600:
        return f"{max(seconds / 60, 1):.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
