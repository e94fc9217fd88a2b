"""The return of a uniformly random policy on each task: the report's reference line.

:func:`measure` plays seeded episodes of every task of a suite with uniformly random
actions: up to a number of episodes per task, fewer where a time budget per task
runs out first (a Doom episode is thousands of engine frames), and gives each task's
mean return with its standard error. :func:`reference_returns` measures a suite once
per report directory and keeps the result in ``random_policy.json`` there, keyed by
suite, episodes, time budget and seed, so that regenerating a report reuses it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time

import numpy as np

CACHE_FILE = "random_policy.json"
MIN_EPISODES = 2  # played whatever the time budget, so that every task has a standard error


@dataclasses.dataclass(frozen=True)
class RandomReturn:
    """A random policy's mean return, the standard error of that mean, and the episodes behind it."""

    mean: float
    stderr: float
    episodes: int

    def text(self) -> str:
        """``"1.230 ± 0.046"``: the mean to the precision of two significant digits of its standard error."""
        if not math.isfinite(self.stderr) or self.stderr <= 0:
            return f"{self.mean:.2f}"
        digits = min(4, max(0, 1 - math.floor(math.log10(self.stderr))))
        return f"{self.mean:.{digits}f} ± {self.stderr:.{digits}f}"


def of_episodes(returns) -> RandomReturn:
    """Mean, standard error (sample standard deviation / sqrt(n); NaN for one episode) and count of ``returns``."""
    values = np.asarray(returns, float)
    stderr = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
    return RandomReturn(float(values.mean()), stderr, len(values))


def over_tasks(per_task: list[RandomReturn]) -> RandomReturn:
    """The mean over tasks, with the standard error of that mean (the tasks are measured independently)."""
    n = len(per_task)
    stderr = math.sqrt(sum(r.stderr ** 2 for r in per_task)) / n
    return RandomReturn(sum(r.mean for r in per_task) / n, stderr, sum(r.episodes for r in per_task))


def measure(suite, episodes: int, seed: int, seconds: float = 0.0) -> dict[str, RandomReturn]:
    """The return of uniformly random actions on every task of ``suite``.

    Each task plays ``episodes`` episodes, or stops earlier once ``seconds`` (per task,
    0: no limit) have passed, after at least :data:`MIN_EPISODES`. Task ``i``'s
    environment is reset with seed ``seed + i`` once, then episode after episode;
    actions come from a generator seeded with ``(seed, i)``.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}.")
    returns = {}
    for i, task in enumerate(suite.task_names):
        env = suite.make_env(i)
        rng = np.random.default_rng([seed, i])
        try:
            totals = []
            env.reset(seed=seed + i)
            start = time.monotonic()
            while len(totals) < episodes:
                if seconds > 0 and len(totals) >= MIN_EPISODES and time.monotonic() - start >= seconds:
                    break
                total, done = 0.0, False
                while not done:
                    _, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
                    total += float(reward)
                    done = terminated or truncated
                totals.append(total)
                env.reset()
        finally:
            env.close()
        returns[task] = of_episodes(totals)
    return returns


def _read_cache(path: str) -> dict:
    try:
        with open(path) as f:
            cache = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        logging.warning("ignoring %s: cannot read it (%s); measuring again", path, e)
        return {}
    return cache if isinstance(cache, dict) else {}


def _from_cache(entry, episodes: int, seconds: float, seed: int) -> dict[str, RandomReturn] | None:
    """The kept measurement if ``entry`` was made with these settings and reads back whole, else None."""
    if not isinstance(entry, dict) or (entry.get("episodes"), entry.get("seconds"), entry.get("seed")) != (
            episodes, seconds, seed) or not isinstance(entry.get("tasks"), dict):
        return None
    try:
        return {str(task): RandomReturn(float(r["mean"]), float(r["stderr"]), int(r["episodes"]))
                for task, r in entry["tasks"].items()}
    except (KeyError, TypeError, ValueError):
        return None


def reference_returns(suite_name: str, out_dir: str, episodes: int, seed: int, seconds: float = 0.0,
                      make_suite=None) -> tuple[dict[str, RandomReturn] | None, str]:
    """``(task -> random-policy return, how it was obtained)``, measured once per report directory.

    Returns ``(None, reason)`` where the suite cannot be built here (an unknown name,
    a simulator that is not installed) or ``episodes`` is 0; the report then draws no line.
    """
    if episodes <= 0:
        return None, "not measured (--random_episodes=0)"
    path = os.path.join(out_dir, CACHE_FILE)
    cache = _read_cache(path)
    kept = _from_cache(cache.get(suite_name), episodes, seconds, seed)
    if kept is not None:
        return kept, f"cached in {CACHE_FILE}"
    if make_suite is None:
        from distral_tf.envs import make_suite
    try:
        suite = make_suite(suite_name)
        returns = measure(suite, episodes, seed, seconds)
    except (ImportError, ValueError, RuntimeError, OSError) as e:
        logging.warning("no random-policy line for %s: %s", suite_name, e)
        return None, f"not measured ({type(e).__name__}: {e})"
    cache[suite_name] = {"episodes": episodes, "seconds": seconds, "seed": seed,
                         "tasks": {task: dataclasses.asdict(r) for task, r in returns.items()}}
    os.makedirs(out_dir, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(cache, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return returns, f"measured now, kept in {CACHE_FILE}"
