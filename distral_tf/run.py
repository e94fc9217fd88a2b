"""Trains one of the paper's seven algorithms on a task suite.

    python -m distral_tf.run --algo=kl_2col --suite=doom_mazes

Rerunning the same command (same ``--logdir``) resumes the run. SIGINT/SIGTERM
write a final checkpoint and exit.
"""

from __future__ import annotations

import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, logging  # noqa: E402
from absl import flags as absl_flags  # noqa: E402

from flags import training as training_flags  # noqa: E402


def parse_flags_or_exit(argv):
    """Parses flags; an invalid value ends the program with one line naming the flag (exit status 2)."""
    try:
        return absl_flags.FLAGS(argv)
    except absl_flags.Error as e:
        sys.stderr.write(f"error: {e}\n")
        sys.exit(2)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    # TensorFlow is imported only once the flags are valid, so that a bad flag costs nothing.
    from distral_tf.checkpointing import CheckpointError
    from distral_tf.envs import make_suite
    from distral_tf.trained_run import RunLoadError
    from distral_tf.trainer import Trainer, TrainingError

    config = training_flags.config_from_flags()
    trainer = Trainer(config, make_suite(config.suite))

    def on_signal(signum, _frame):
        logging.warning("Received %s: writing a final checkpoint and stopping.", signal.Signals(signum).name)
        trainer.request_stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        summary = trainer.run()
    except (TrainingError, CheckpointError, RunLoadError, OSError, ImportError) as e:
        sys.exit(f"error: {e}")
    logging.info("Run %s: %s after %s agent steps (%.0f frames/s).", config.logdir, summary["state"],
                 f"{summary['env_steps']:,}", summary["env_frames_per_second"])
    if summary["state"] == "interrupted":
        sys.exit(130)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags_or_exit)
