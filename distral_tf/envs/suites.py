"""Task suites: a named, ordered list of tasks sharing one observation and action space.

A suite is what the trainer consumes: ``make_suite("two_rooms")`` returns a
:class:`Suite` whose ``make_env(i, seed)`` builds the Gymnasium environment of
task ``i``. Suites are provided lazily by the environment modules (so that, for
example, ViZDoom is only imported when a Doom suite is asked for).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym


@dataclasses.dataclass(frozen=True)
class Suite:
    """An ordered set of tasks with a shared observation and action space.

    Attributes:
      name: the suite's name, e.g. ``"doom_mazes"``.
      task_names: one name per task, in task-index order.
      env_ids: the registered Gymnasium id of each task's environment.
      env_kwargs: keyword arguments passed to ``gymnasium.make`` for each task.
      frames_per_step: engine frames per agent step (the action repeat), used to
        report frames per second.
      pool_env_kwargs: extra keyword arguments for environments built inside an
        environment-pool process, which already isolates crashes (e.g. Doom then runs
        its engine in that process instead of a child of its own).
      reward_scale: the factor on the rewards the agent learns from (before any
        ``--reward_clipping``; returns are logged unscaled), for suites whose rewards are
        far from the unit scale the learning rate and gradient clipping assume.
      optimal_return: for suites that can compute it, a picklable function of a task's
        ``env_kwargs`` that gives the best achievable expected return of an episode
        (the reports draw it); ``None`` where it is unknown.
    """

    name: str
    task_names: tuple[str, ...]
    env_ids: tuple[str, ...]
    env_kwargs: tuple[Mapping[str, Any], ...]
    frames_per_step: int = 1
    pool_env_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    reward_scale: float = 1.0
    optimal_return: Callable[[Mapping[str, Any]], float] | None = None

    def __post_init__(self):
        n = len(self.task_names)
        if n == 0 or len(self.env_ids) != n or len(self.env_kwargs) != n:
            raise ValueError(f"Suite {self.name!r}: task_names, env_ids and env_kwargs must be non-empty "
                             f"and of equal length, got {n}, {len(self.env_ids)}, {len(self.env_kwargs)}.")

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def make_env(self, task_index: int, seed: int | None = None, *, in_pool: bool = False, **overrides) -> gym.Env:
        """Builds the environment of task ``task_index`` (and seeds it if ``seed`` is given).

        ``in_pool=True`` adds :attr:`pool_env_kwargs` (for environments built inside a pool process).
        """
        if not 0 <= task_index < self.num_tasks:
            raise IndexError(f"Suite {self.name!r} has {self.num_tasks} tasks; no task {task_index}.")
        kwargs = {**self.env_kwargs[task_index], **(self.pool_env_kwargs if in_pool else {}), **overrides}
        env = gym.make(self.env_ids[task_index], disable_env_checker=True, **kwargs)
        if seed is not None:
            env.reset(seed=seed)
        return env

    def optimal_returns(self) -> dict[str, float] | None:
        """Task name -> best achievable expected return per episode, or ``None`` if the suite cannot say."""
        if self.optimal_return is None:
            return None
        return {t: float(self.optimal_return(k)) for t, k in zip(self.task_names, self.env_kwargs, strict=True)}

    def env_factory(self, in_pool: bool) -> Callable[[int, int], gym.Env]:
        """A picklable ``make_env(task, seed)``; ``in_pool`` as in :meth:`make_env`."""
        return functools.partial(self.make_env, in_pool=in_pool)

    def subset(self, task_names: list[str]) -> Suite:
        idx = [self.task_names.index(t) for t in task_names]
        return Suite(
            name=",".join(task_names),
            task_names=tuple(self.task_names[i] for i in idx),
            env_ids=tuple(self.env_ids[i] for i in idx),
            env_kwargs=tuple(self.env_kwargs[i] for i in idx),
            frames_per_step=self.frames_per_step,
            pool_env_kwargs=self.pool_env_kwargs,
            reward_scale=self.reward_scale,
            optimal_return=self.optimal_return,
        )


# Suite name -> "module:function"; the function takes the suite name and returns a Suite.
_PROVIDERS: dict[str, str] = {
    "two_rooms": "distral_tf.envs.two_rooms:suite",
    "two_rooms_small": "distral_tf.envs.two_rooms:suite",
    "doom_mazes": "distral_tf.envs.doom.suites:suite",
    "doom_mazes_small": "distral_tf.envs.doom.suites:suite",
    "doom_navigation": "distral_tf.envs.doom.suites:suite",
    "doom_lasertag": "distral_tf.envs.doom.suites:suite",
    "basic": "distral_tf.envs.doom.suites:suite",
    "basic_own_buttons": "distral_tf.envs.doom.suites:suite",
    "my_way_home": "distral_tf.envs.doom.suites:suite",
    "dmlab_mazes": "distral_tf.envs.dmlab:suite",
    "dmlab_navigation": "distral_tf.envs.dmlab:suite",
    "dmlab_lasertag": "distral_tf.envs.dmlab:suite",
}


def suite_names() -> tuple[str, ...]:
    """Names accepted by ``--suite`` (besides comma-separated task names)."""
    return tuple(_PROVIDERS)


def _provider(name: str) -> Callable[[str], Suite]:
    module_name, fn_name = _PROVIDERS[name].split(":")
    return getattr(importlib.import_module(module_name), fn_name)


def make_suite(name: str) -> Suite:
    """Returns the suite called ``name``, or a suite of comma-separated task names.

    Task names are looked up in every suite whose provider can be imported; all
    named tasks must come from one suite (they must share an action set).
    """
    if name in _PROVIDERS:
        return _provider(name)(name)
    wanted = [t.strip() for t in name.split(",") if t.strip()]
    import_errors = []
    for suite_name in _PROVIDERS:
        try:
            candidate = _provider(suite_name)(suite_name)
        except ImportError as e:  # an optional dependency of that suite is missing
            import_errors.append(f"{suite_name} ({e})")
            continue
        if wanted and all(t in candidate.task_names for t in wanted):
            return candidate.subset(wanted)
    hint = f"; not searched for task names: {', '.join(import_errors)}" if import_errors else ""
    raise ValueError(f"Unknown suite or task names {name!r}; suites are {', '.join(_PROVIDERS)}{hint}.")
