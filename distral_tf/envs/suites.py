"""Task suites: a named, ordered list of tasks sharing one observation and action space.

A suite is what the trainer consumes: ``make_suite("two_rooms")`` returns a
:class:`Suite` whose ``make_env(i, seed)`` builds the Gymnasium environment of
task ``i``. The :class:`Suite` carries everything the rest of the package needs
from it: its tasks and their environments, the memory one environment takes (the
check of ``--workers_per_task``), the length of its longest episode where the
environments do not say it (named budgets), its optimum (the reports' upper line;
the random-policy line is measured on its environments), and how to preview it.

Registration. A module of this package declares its suites once, at module level::

    SUITES = ("two_rooms", "two_rooms_small")  # the suites of this module
    ENVIRONMENTS = {"distral_tf/TwoRooms-v0": "distral_tf.envs.two_rooms:TwoRoomsEnv"}  # optional

    def suite(name: str) -> Suite: ...  # builds the suite called name

Both declarations are literals, read from the module's source without importing it
(:func:`declared_modules`): the module is only imported when one of its suites is
made, so that optional engines (ViZDoom, DeepMind Lab) stay optional and
``make_suite("two_rooms_small")`` imports neither. ``ENVIRONMENTS`` maps Gymnasium
ids to entry points, registered with Gymnasium when ``distral_tf.envs`` is imported.
Suites made elsewhere (a test's) are added with :func:`register_suite`.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym

# The memory of one environment of a suite that does not declare it (as much as DeepMind Lab's).
DEFAULT_MEMORY_PER_ENV_BYTES = 64 << 20


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
      memory_per_env_bytes: the memory one environment takes, all included (engine, its
        process's share, the worker's rollout and network state), checked against the
        machine's for ``--workers_per_task``.
      max_episode_steps: agent steps of the longest episode, for suites whose environments
        do not say it (by an ``episode_length`` argument or Gymnasium's ``max_episode_steps``);
        named budgets count episodes of that length.
      preview_env_kwargs: extra keyword arguments for the environments that
        ``python -m distral_tf.preview`` builds; an ``episode_length`` among them is
        replaced by one long enough for every frame of the preview.
      observation_normalization: what ``--observation_normalization=suite`` means for this suite:
        ``"none"`` (frames in ``[0, 1]``) or ``"per_pixel"`` (each pixel centred and scaled by
        the statistics of a random policy's frames).
    """

    name: str
    task_names: tuple[str, ...]
    env_ids: tuple[str, ...]
    env_kwargs: tuple[Mapping[str, Any], ...]
    frames_per_step: int = 1
    pool_env_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    reward_scale: float = 1.0
    optimal_return: Callable[[Mapping[str, Any]], float] | None = None
    memory_per_env_bytes: int = DEFAULT_MEMORY_PER_ENV_BYTES
    max_episode_steps: int | None = None
    preview_env_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    observation_normalization: str = "none"

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
        """The suite of ``task_names`` (tasks of this suite), named by them; everything else is this suite's."""
        idx = [self.task_names.index(t) for t in task_names]
        return dataclasses.replace(
            self,
            name=",".join(task_names),
            task_names=tuple(self.task_names[i] for i in idx),
            env_ids=tuple(self.env_ids[i] for i in idx),
            env_kwargs=tuple(self.env_kwargs[i] for i in idx),
        )


SuiteProvider = Callable[[str], Suite]  # takes the suite's name, returns the suite

# Suite name -> its provider, or "module:function" for one imported when the suite is made.
_REGISTERED: dict[str, SuiteProvider | str] = {}
_DISCOVERED = False
_PACKAGE = "distral_tf.envs"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclasses.dataclass(frozen=True)
class SuiteModule:
    """A module's declarations, read from its source: its suites and its Gymnasium environments."""

    module: str
    suites: tuple[str, ...]
    environments: Mapping[str, str]


def _literal(tree: ast.Module, name: str, path: str):
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            try:
                return ast.literal_eval(node.value)
            except ValueError:
                raise ValueError(f"{path}: {name} must be a literal (it is read without importing the module).") \
                    from None
    return None


def _declarations(path: str, module: str) -> SuiteModule | None:
    with open(path, encoding="utf-8") as f:
        source = f.read()
    if "SUITES" not in source:
        return None
    tree = ast.parse(source, path)
    suites = _literal(tree, "SUITES", path)
    if suites is None:
        return None
    if not isinstance(suites, tuple) or not all(isinstance(s, str) for s in suites):
        raise ValueError(f"{path}: SUITES must be a tuple of suite names, got {suites!r}.")
    environments = _literal(tree, "ENVIRONMENTS", path) or {}
    return SuiteModule(module, suites, dict(environments))


@functools.cache
def declared_modules() -> tuple[SuiteModule, ...]:
    """Every module of ``distral_tf.envs`` that declares suites, in the order of their paths (none imported)."""
    found = []
    for root, dirs, files in os.walk(_PACKAGE_DIR):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for file in sorted(files):
            if not file.endswith(".py") or file.startswith("_"):
                continue
            relative = os.path.relpath(os.path.join(root, file[:-3]), _PACKAGE_DIR)
            module = ".".join([_PACKAGE, *relative.split(os.sep)])
            declared = _declarations(os.path.join(root, file), module)
            if declared is not None:
                found.append(declared)
    return tuple(sorted(found, key=lambda m: m.module))


def register_suite(name: str, provider: SuiteProvider | str, *, replace: bool = False) -> None:
    """Makes ``--suite=name`` build ``provider(name)``; ``provider`` may be ``"module:function"``."""
    _discover()
    if name in _REGISTERED and not replace:
        raise ValueError(f"A suite called {name!r} is already registered.")
    _REGISTERED[name] = provider


def unregister_suite(name: str) -> None:
    """Removes the suite ``name`` (for tests that register one of their own)."""
    _discover()
    del _REGISTERED[name]


def _discover():
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    for declared in declared_modules():
        for name in declared.suites:
            if name in _REGISTERED:
                raise ValueError(f"Suite {name!r} of {declared.module} is also declared elsewhere.")
            _REGISTERED[name] = f"{declared.module}:suite"


def suite_names() -> tuple[str, ...]:
    """Names accepted by ``--suite`` (besides comma-separated task names)."""
    _discover()
    return tuple(_REGISTERED)


def _provider(name: str) -> SuiteProvider:
    provider = _REGISTERED[name]
    if isinstance(provider, str):
        module_name, fn_name = provider.split(":")
        provider = getattr(importlib.import_module(module_name), fn_name)
    return provider


def make_suite(name: str) -> Suite:
    """Returns the suite called ``name``, or a suite of comma-separated task names.

    Task names are looked up in every suite whose provider can be imported; all
    named tasks must come from one suite (they must share an action set).
    """
    _discover()
    if name in _REGISTERED:
        return _provider(name)(name)
    wanted = [t.strip() for t in name.split(",") if t.strip()]
    import_errors = []
    for suite_name in tuple(_REGISTERED):
        try:
            candidate = _provider(suite_name)(suite_name)
        except ImportError as e:  # an optional dependency of that suite is missing
            import_errors.append(f"{suite_name} ({e})")
            continue
        if wanted and all(t in candidate.task_names for t in wanted):
            return candidate.subset(wanted)
    hint = f"; not searched for task names: {', '.join(import_errors)}" if import_errors else ""
    raise ValueError(f"Unknown suite or task names {name!r}; suites are {', '.join(_REGISTERED)}{hint}.")
