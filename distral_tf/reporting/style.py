"""Fixed display names, colours and line styles of the seven algorithms.

Every figure of the report draws an algorithm the same way, so that panels can
be compared at a glance. The algorithms, their order (the paper's Table 1: the
three A3C baselines first, then the four Distral variants) and their display
names come from the registry, ``distral_tf.algorithms``; colours are chosen here.
"""

from __future__ import annotations

from distral_tf import algorithms
from distral_tf.algorithm_spec import DistilledPolicy

ALGORITHMS: tuple[str, ...] = algorithms.NAMES

DISPLAY_NAMES: dict[str, str] = {name: algo.label for name, algo in algorithms.ALGORITHMS.items()}

COLORS: dict[str, str] = {
    "a3c": "#1f77b4",  # blue
    "a3c_multitask": "#ff7f0e",  # orange
    "a3c_2col": "#8c564b",  # brown
    "kl_1col": "#9467bd",  # purple
    "kl_2col": "#d62728",  # red
    "klent_1col": "#17becf",  # cyan
    "klent_2col": "#2ca02c",  # green
}

# Baselines (no KL term) dashed, Distral solid.
LINESTYLES: dict[str, str] = {name: ("-" if algo.kl else "--") for name, algo in algorithms.ALGORITHMS.items()}

_FALLBACK_COLORS = ("#7f7f7f", "#bcbd22", "#e377c2", "#393b79", "#637939")


def display_name(algo: str) -> str:
    """Human-readable name of ``algo`` (unknown names are returned unchanged)."""
    return DISPLAY_NAMES.get(algo, algo)


def color(algo: str) -> str:
    """Colour of ``algo``; unknown algorithms get a stable colour outside the fixed set."""
    if algo in COLORS:
        return COLORS[algo]
    return _FALLBACK_COLORS[sum(map(ord, algo)) % len(_FALLBACK_COLORS)]


def linestyle(algo: str) -> str:
    return LINESTYLES.get(algo, ":")


def policy_label(algo: str, policy: str) -> str:
    """Legend label of ``algo``'s ``policy`` curves: its name, noting an untrained pi_0 (a3c's)."""
    known = algorithms.ALGORITHMS.get(algo)
    if policy == "distilled" and known is not None and known.distilled_policy is DistilledPolicy.UNTRAINED:
        return f"{display_name(algo)} (untrained net)"
    return display_name(algo)


def sort_key(algo: str) -> tuple[int, str]:
    """Orders algorithms as in the paper's Table 1, unknown ones last."""
    return (ALGORITHMS.index(algo) if algo in ALGORITHMS else len(ALGORITHMS), algo)
