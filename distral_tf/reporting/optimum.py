"""The best achievable return of each task, for suites that can compute it: the report's upper line.

A suite offers it through :meth:`distral_tf.envs.suites.Suite.optimal_returns` (the
two-room suites solve their known layout by dynamic programming); for the others,
or where the suite cannot be built here, the report draws no such line.
"""

from __future__ import annotations

import logging


def optimal_returns(suite_name: str, make_suite=None) -> tuple[dict[str, float] | None, str]:
    """``(task -> best achievable expected return per episode, how it was obtained)``, or ``(None, why not)``."""
    if make_suite is None:
        from distral_tf.envs import make_suite
    try:
        returns = make_suite(suite_name).optimal_returns()
    except (ImportError, ValueError, RuntimeError, OSError) as e:
        logging.info("no optimum line for %s: %s", suite_name, e)
        return None, f"unknown ({type(e).__name__}: {e})"
    if returns is None:
        return None, "unknown: the suite cannot compute it"
    return returns, "computed by the suite from its known dynamics"
