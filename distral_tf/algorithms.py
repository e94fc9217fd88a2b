"""The registry of the paper's seven algorithms (Table 1): the single source of truth."""

from __future__ import annotations

from baselines import a3c
from distral_tf import distral
from distral_tf.algorithm_spec import Algorithm, Architecture, Coefficients, DistilledPolicy

ALGORITHMS: dict[str, Algorithm] = {algo.name: algo for algo in (*a3c.ALGORITHMS, *distral.ALGORITHMS)}
NAMES: tuple[str, ...] = tuple(ALGORITHMS)


def get(name: str) -> Algorithm:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"Unknown algorithm {name!r}; choose one of {', '.join(NAMES)}.") from None


__all__ = ["ALGORITHMS", "NAMES", "Algorithm", "Architecture", "Coefficients", "DistilledPolicy", "get"]
