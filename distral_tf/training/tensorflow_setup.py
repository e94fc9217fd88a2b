"""The process-wide TensorFlow settings of a program that trains or runs policies: set once, by its entry point.

Nothing else in the package changes TensorFlow's global settings: an ``Agent`` or a
``Trainer`` built inside another program leaves that program's TensorFlow as it was.
"""

from __future__ import annotations

import tensorflow as tf
from absl import logging


def configure_tensorflow(inter_op_threads: int = 0, intra_op_threads: int = 0):
    """Turns off Grappler and sizes TensorFlow's thread pools (0 keeps TensorFlow's default).

    Grappler, TensorFlow's graph optimiser, is turned off for the whole process. Its
    arithmetic optimisation (an AddN rewrite) creates per-step temporary variables whose
    names collide when two threads run the same training function at once
    ("AlreadyExistsError ... tmp_var"), and on these graphs the whole optimiser brings no
    speed on CPU (measured: acting and learning equally fast or faster without it) while
    it costs several seconds at start. The thread pools can only be sized before
    TensorFlow first runs an operation; later, a warning says they are kept.
    """
    if inter_op_threads < 0 or intra_op_threads < 0:
        raise ValueError(f"thread counts must be >= 0, got inter_op_threads={inter_op_threads}, "
                         f"intra_op_threads={intra_op_threads}.")
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        if inter_op_threads > 0 and tf.config.threading.get_inter_op_parallelism_threads() != inter_op_threads:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
        if intra_op_threads > 0 and tf.config.threading.get_intra_op_parallelism_threads() != intra_op_threads:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    except RuntimeError as e:
        logging.warning("TensorFlow's thread pools are already running; keeping them (%s).", e)


def is_configured() -> bool:
    """Whether :func:`configure_tensorflow` has turned Grappler off in this process."""
    return bool(tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer"))
