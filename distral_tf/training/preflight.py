"""What a run directory holds, read before a run starts: a finished run, or a run of another configuration.

``python -m distral_tf.run`` asks this before it prints its header or loads TensorFlow,
so that a rerun of a finished run says so in one line and a run directory it cannot
resume fails at once. The trainer checks the same again, with the same code
(:class:`~distral_tf.training.run_directory.RunDirectory`), once it holds the directory's lock.
Plain file handling: nothing here imports TensorFlow.
"""

from __future__ import annotations

from distral_tf.training.run_directory import RunDirectory, budget_per_task


def check_saved_config(config):
    """Raises ``RunDirError`` if ``config.logdir`` holds a run whose model-defining settings differ (unless
    ``config.force``) or whose ``config.json`` cannot be read."""
    RunDirectory(config.logdir).check_saved_config(config)


def finished_status(config, num_tasks: int) -> dict | None:
    """The recorded status of the run in ``config.logdir`` if it has spent ``config``'s budget, else None."""
    return RunDirectory(config.logdir).finished_status(num_tasks, budget_per_task(config, num_tasks))
