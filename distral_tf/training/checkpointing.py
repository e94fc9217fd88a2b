"""Checkpoints of a whole run: parameters, shared RMSProp statistics, counters and RNG state.

``tf.train.CheckpointManager`` writes each checkpoint under a temporary name and
updates its index afterwards, so a crash never leaves a half-written latest
checkpoint behind; a latest checkpoint that cannot be read (truncated, corrupt)
is skipped with a warning in favour of the one before it. Checkpoints are found
by their ``ckpt-N.index`` files, not through the ``checkpoint`` index file (which
a crash or a user may have lost); the index is rewritten from what is found, and
leftovers of interrupted writes (``*_temp*``) are removed.
"""

from __future__ import annotations

import os

import tensorflow as tf
from absl import logging
from tensorflow.python.checkpoint import checkpoint_management

from distral_tf.training import run_files


class CheckpointError(RuntimeError):
    """No checkpoint of the run directory could be restored."""


class Checkpointer:
    def __init__(self, directory: str, keep: int = 3, **trackables):
        self.directory = directory
        self.keep = keep
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=keep)

    def existing(self) -> list[str]:
        """Paths of the checkpoints on disk (found by their index files), oldest first."""
        return [os.path.join(self.directory, f"ckpt-{n}") for n in run_files.checkpoint_numbers(self.directory)]

    def restore(self) -> str | None:
        """Restores the newest readable checkpoint; returns its path, or ``None`` if there is none."""
        removed = run_files.remove_temporary_checkpoints(self.directory)
        if removed:
            logging.warning("Removed leftovers of interrupted checkpoint writes in %s: %s.", self.directory,
                            ", ".join(sorted(removed)))
        found = self.existing()
        if not found:
            return None
        errors = []
        for path in reversed(found):
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except (tf.errors.OpError, ValueError, AssertionError, IndexError, KeyError) as e:
                first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                logging.warning("Checkpoint %s is unreadable (%s); trying the previous one.", path, first_line)
                errors.append(f"{os.path.basename(path)}: {first_line}")
                continue
            if errors:
                logging.warning("Resumed from %s after skipping %d unreadable checkpoint(s).", path, len(errors))
            self._reindex(found[:found.index(path)], path)
            return path
        raise CheckpointError(f"No checkpoint in {self.directory} could be restored: {'; '.join(errors)}")

    def _reindex(self, older: list[str], latest: str):
        """Rewrites the ``checkpoint`` index from the checkpoints found, so that ``keep`` is honoured.

        ``older``: the checkpoints before ``latest``, oldest first (newer unreadable ones are left out).
        """
        kept = [*older, latest][-self.keep:]
        if [os.path.basename(p) for p in self.manager.checkpoints] == [os.path.basename(p) for p in kept]:
            return  # the index is intact
        # The manager only deletes checkpoints whose index entry has a timestamp newer than the
        # "last preserved" one: the file times give both.
        times = [os.path.getmtime(p + ".index") for p in kept]
        checkpoint_management.update_checkpoint_state_internal(
            self.directory, os.path.basename(latest), [os.path.basename(p) for p in kept],
            save_relative_paths=True, all_model_checkpoint_timestamps=times,
            last_preserved_timestamp=min(times) - 1.0)
        for stale in older[:len(older) + 1 - len(kept)]:  # beyond ``keep``: removed like the manager would
            for name in os.listdir(self.directory):
                if name.startswith(os.path.basename(stale) + "."):
                    os.remove(os.path.join(self.directory, name))
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=self.keep)

    def save(self, step: int) -> str:
        """Writes a checkpoint; a failure (e.g. a full disk) leaves the previous ones intact."""
        try:
            return self.manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as e:
            run_files.remove_temporary_checkpoints(self.directory)
            reason = getattr(e, "strerror", None) or str(e).strip().splitlines()[0]
            raise CheckpointError(f"Could not write checkpoint {os.path.join(self.directory, f'ckpt-{step}')}: "
                                  f"{reason}. The previous checkpoints are intact.") from None
