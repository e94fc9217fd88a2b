"""Fixed display names, colours and line styles of the seven algorithms.

Every figure of the report draws an algorithm the same way, so that panels can
be compared at a glance. The order is the paper's Table 1: the three A3C
baselines first, then the four Distral variants.
"""

from __future__ import annotations

ALGORITHMS: tuple[str, ...] = (
    "a3c",
    "a3c_multitask",
    "a3c_2col",
    "kl_1col",
    "kl_2col",
    "klent_1col",
    "klent_2col",
)

DISPLAY_NAMES: dict[str, str] = {
    "a3c": "A3C",
    "a3c_multitask": "A3C multitask",
    "a3c_2col": "A3C 2col",
    "kl_1col": "KL 1col",
    "kl_2col": "KL 2col",
    "klent_1col": "KL+ent 1col",
    "klent_2col": "KL+ent 2col",
}

COLORS: dict[str, str] = {
    "a3c": "#1f77b4",  # blue
    "a3c_multitask": "#ff7f0e",  # orange
    "a3c_2col": "#8c564b",  # brown
    "kl_1col": "#9467bd",  # purple
    "kl_2col": "#d62728",  # red
    "klent_1col": "#17becf",  # cyan
    "klent_2col": "#2ca02c",  # green
}

# Baselines dashed, Distral solid.
LINESTYLES: dict[str, str] = {a: ("--" if a.startswith("a3c") else "-") for a in ALGORITHMS}

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


def sort_key(algo: str) -> tuple[int, str]:
    """Orders algorithms as in the paper's Table 1, unknown ones last."""
    return (ALGORITHMS.index(algo) if algo in ALGORITHMS else len(ALGORITHMS), algo)
