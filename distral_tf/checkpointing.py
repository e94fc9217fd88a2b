"""Checkpoints of a whole run: parameters, shared RMSProp statistics, counters and RNG state.

``tf.train.CheckpointManager`` writes each checkpoint under a temporary name and
updates its index afterwards, so a crash never leaves a half-written latest
checkpoint behind; a latest checkpoint that cannot be read (truncated, corrupt)
is skipped with a warning in favour of the one before it.
"""

from __future__ import annotations

import os

import tensorflow as tf
from absl import logging


class CheckpointError(RuntimeError):
    """No checkpoint of the run directory could be restored."""


class Checkpointer:
    def __init__(self, directory: str, keep: int = 3, **trackables):
        self.directory = directory
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=keep)

    def restore(self) -> str | None:
        """Restores the newest readable checkpoint; returns its path, or ``None`` if there is none."""
        paths = list(reversed(self.manager.checkpoints))
        if not paths:
            return None
        errors = []
        for path in paths:
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except (tf.errors.OpError, ValueError, AssertionError, IndexError, KeyError) as e:
                first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                logging.warning("Checkpoint %s is unreadable (%s); trying the previous one.", path, first_line)
                errors.append(f"{os.path.basename(path)}: {first_line}")
                continue
            if errors:
                logging.warning("Resumed from %s after skipping %d unreadable checkpoint(s).", path, len(errors))
            return path
        raise CheckpointError(f"No checkpoint in {self.directory} could be restored: {'; '.join(errors)}")

    def save(self, step: int) -> str:
        """Writes a checkpoint; a failure (e.g. a full disk) leaves the previous ones intact."""
        try:
            return self.manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as e:
            reason = getattr(e, "strerror", None) or str(e).strip().splitlines()[0]
            raise CheckpointError(f"Could not write a checkpoint to {self.directory}: {reason}. "
                                  "The previous checkpoints are intact.") from None
