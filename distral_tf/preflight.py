"""What a run directory holds, read before a run starts: a finished run, or a run of another configuration.

``python -m distral_tf.run`` asks this before it prints its header or loads TensorFlow,
so that a rerun of a finished run says so in one line and a run directory it cannot
resume fails at once. The trainer checks the same again once it holds the directory's
lock. Plain file handling: nothing here imports TensorFlow.
"""

from __future__ import annotations

import os

from distral_tf import algorithms, progress, rundir
from distral_tf.algorithm_spec import Architecture
from distral_tf.rundir import CONFIG_FILE, STATUS_FILE, RunDirError


def check_saved_config(config):
    """Raises ``RunDirError`` if ``config.logdir`` holds a run whose model-defining settings differ (unless
    ``config.force``) or whose ``config.json`` cannot be read."""
    path = os.path.join(config.logdir, CONFIG_FILE)
    if not os.path.exists(path):
        return
    saved = rundir.read_json_object(path).get("config", {})
    if not isinstance(saved, dict):
        raise RunDirError(f"{path}: its \"config\" entry is not an object")
    # The two-column scaling only defines the model of the two-column algorithms.
    two_column = algorithms.get(config.algo).architecture is Architecture.TWO_COLUMN
    diffs = config.model_differences(saved, ignore=() if two_column else ("two_column_scaling",))
    if diffs and not config.force:
        raise RunDirError(f"{config.logdir} holds a run with a different configuration ({'; '.join(diffs)}); "
                          "use another --logdir, or --force to resume it with the new values.")


def finished_status(config, num_tasks: int) -> dict | None:
    """The recorded status of the run in ``config.logdir`` if it has spent ``config``'s budget, else None."""
    path = os.path.join(config.logdir, STATUS_FILE)
    if not os.path.exists(path):
        return None
    try:
        status = rundir.read_json_object(path)
    except RunDirError:
        return None
    per_task = progress.steps_per_task(config.total_env_steps, num_tasks, config.unroll_length)
    steps = status.get("env_steps_per_task")
    if (status.get("state") == "finished" and isinstance(steps, list) and len(steps) == num_tasks
            and status.get("budget_per_task") == per_task
            and all(isinstance(s, int) and s >= per_task for s in steps)):
        return status
    return None
