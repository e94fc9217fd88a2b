"""The registry of the algorithms: the single source of truth about them.

Each algorithm is one :class:`~distral_tf.model.algorithm_spec.Algorithm` row, declared
with its family (the A3C baselines in ``baselines/a3c.py``, the Distral variants of
the paper's Table 1 in ``distral_tf/distral.py``). Everything else derives from the
rows: the order of tables and legends is the registry's (the three A3C baselines
first, then the four Distral variants), and the labels, colours, line styles, loss
terms, speed classes, flag choices and messages come from each row's fields.
"""

from __future__ import annotations

from baselines import a3c
from distral_tf import distral
from distral_tf.model.algorithm_spec import Algorithm, Architecture, Coefficients, DistilledPolicy

ALGORITHMS: dict[str, Algorithm] = {}  # name -> row, in the registry's order
NAMES: tuple[str, ...] = ()  # the names, in the registry's order


def register(algo: Algorithm) -> None:
    """Adds ``algo`` to the end of the registry; its name, label and colour must be new."""
    global NAMES
    for field in ("name", "label", "color"):
        clash = next((a.name for a in ALGORITHMS.values() if getattr(a, field) == getattr(algo, field)), None)
        if clash is not None:
            raise ValueError(f"{algo.name}: its {field} {getattr(algo, field)!r} is already that of {clash}.")
    ALGORITHMS[algo.name] = algo
    NAMES = tuple(ALGORITHMS)


def unregister(name: str) -> None:
    """Removes the algorithm ``name`` (for tests that register one of their own)."""
    global NAMES
    del ALGORITHMS[name]
    NAMES = tuple(ALGORITHMS)


def get(name: str) -> Algorithm:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"Unknown algorithm {name!r}; choose one of {', '.join(NAMES)}.") from None


def with_kl() -> tuple[str, ...]:
    """The names of the algorithms with a KL term (the Distral ones), in the registry's order."""
    return tuple(name for name, algo in ALGORITHMS.items() if algo.kl)


for _algo in (*a3c.ALGORITHMS, *distral.ALGORITHMS):
    register(_algo)
del _algo

__all__ = ["ALGORITHMS", "NAMES", "Algorithm", "Architecture", "Coefficients", "DistilledPolicy", "get",
           "register", "unregister", "with_kl"]
