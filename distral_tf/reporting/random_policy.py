"""The return of a uniformly random policy on each task: the report's reference line.

:func:`measure` plays a few seeded episodes of every task of a suite with uniformly
random actions. :func:`reference_returns` measures a suite once per report
directory and keeps the result in ``random_policy.json`` there, keyed by suite,
episodes and seed, so that regenerating a report (a Doom suite's episodes are
thousands of engine frames each) reuses it.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np

CACHE_FILE = "random_policy.json"


def measure(suite, episodes: int, seed: int) -> dict[str, float]:
    """Mean return of ``episodes`` episodes per task of ``suite`` under uniformly random actions.

    Task ``i``'s environment is reset with seed ``seed + i`` once, then episode after
    episode; actions come from a generator seeded with ``(seed, i)``.
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
            for _ in range(episodes):
                total, done = 0.0, False
                while not done:
                    _, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
                    total += float(reward)
                    done = terminated or truncated
                totals.append(total)
                env.reset()
        finally:
            env.close()
        returns[task] = float(np.mean(totals))
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


def reference_returns(suite_name: str, out_dir: str, episodes: int, seed: int,
                      make_suite=None) -> tuple[dict[str, float] | None, str]:
    """``(task -> random-policy return, how it was obtained)``, measured once per report directory.

    Returns ``(None, reason)`` where the suite cannot be built here (an unknown name,
    a simulator that is not installed) or ``episodes`` is 0; the report then draws no line.
    """
    if episodes <= 0:
        return None, "not measured (--random_episodes=0)"
    path = os.path.join(out_dir, CACHE_FILE)
    cache = _read_cache(path)
    entry = cache.get(suite_name)
    if isinstance(entry, dict) and entry.get("episodes") == episodes and entry.get("seed") == seed \
            and isinstance(entry.get("returns"), dict):
        return {str(k): float(v) for k, v in entry["returns"].items()}, f"cached in {CACHE_FILE}"
    if make_suite is None:
        from distral_tf.envs import make_suite
    try:
        suite = make_suite(suite_name)
        returns = measure(suite, episodes, seed)
    except (ImportError, ValueError, RuntimeError, OSError) as e:
        logging.warning("no random-policy line for %s: %s", suite_name, e)
        return None, f"not measured ({type(e).__name__}: {e})"
    cache[suite_name] = {"episodes": episodes, "seed": seed, "returns": returns}
    os.makedirs(out_dir, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(cache, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return returns, f"measured now, kept in {CACHE_FILE}"
