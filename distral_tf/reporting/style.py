"""Display names, colours and line styles of the algorithms.

Every figure of the report draws an algorithm the same way, so that panels can
be compared at a glance. All of it comes from the registry, ``distral_tf.algorithms``:
the order (the registry's: the paper's Table 1 with the three A3C baselines first,
then the four Distral variants), the display names and colours (each row's ``label``
and ``color``) and the line styles (Distral, with its KL term, solid; baselines dashed).
Names the registry does not know (runs of an algorithm since removed) keep a stable
colour of their own.
"""

from __future__ import annotations

from distral_tf import algorithms
from distral_tf.model.algorithm_spec import DistilledPolicy

_FALLBACK_COLORS = ("#7f7f7f", "#bcbd22", "#e377c2", "#393b79", "#637939")


def display_name(algo: str) -> str:
    """Human-readable name of ``algo`` (unknown names are returned unchanged)."""
    known = algorithms.ALGORITHMS.get(algo)
    return known.label if known is not None else algo


def color(algo: str) -> str:
    """Colour of ``algo``; unknown algorithms get a stable colour outside the registry's."""
    known = algorithms.ALGORITHMS.get(algo)
    if known is not None:
        return known.color
    return _FALLBACK_COLORS[sum(map(ord, algo)) % len(_FALLBACK_COLORS)]


def linestyle(algo: str) -> str:
    """Solid for an algorithm with a KL term (Distral), dashed for one without (the baselines)."""
    known = algorithms.ALGORITHMS.get(algo)
    if known is None:
        return ":"
    return "-" if known.kl else "--"


def policy_label(algo: str, policy: str) -> str:
    """Legend label of ``algo``'s ``policy`` curves: its name, noting an untrained pi_0 (a3c's)."""
    known = algorithms.ALGORITHMS.get(algo)
    if policy == "distilled" and known is not None and known.distilled_policy is DistilledPolicy.UNTRAINED:
        return f"{display_name(algo)} (untrained net)"
    return display_name(algo)


def sort_key(algo: str) -> tuple[int, str]:
    """Orders algorithms as the registry does, unknown ones last."""
    names = algorithms.NAMES
    return (names.index(algo) if algo in names else len(names), algo)
