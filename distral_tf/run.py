"""Trains one of the paper's seven algorithms on a task suite.

    python -m distral_tf.run --algo=kl_2col --suite=doom_mazes
    python -m distral_tf.run --preset=two_rooms_small   # the settings of a committed result

Rerunning the same command (same ``--logdir``) resumes the run. SIGINT/SIGTERM
write a final checkpoint and exit. Every flag and the run directory are checked
before the run's first line is printed or TensorFlow is loaded.
"""

from __future__ import annotations

import signal
import sys

from absl import flags as absl_flags
from absl import logging

from flags import cli
from flags import training as training_flags

absl_flags.adopt_module_key_flags(training_flags)  # --help lists the training flags


def main(argv):
    cli.refuse_positional(argv)
    from distral_tf.envs import make_suite
    from distral_tf.training import budgets, preflight, progress, tracking
    from distral_tf.training.run_files import RunDirError

    config = training_flags.config_from_flags()
    problem = training_flags.logdir_problem(config.logdir)  # the default one too
    if problem:
        cli.fail(problem)
    try:  # before anything starts: the trackers and Ray are optional extras
        tracking.check_available(config.track)
    except tracking.TrackingUnavailableError as e:
        cli.fail(str(e))
    if config.backend == "ray":
        from distral_tf.training.ray_runs import RayUnavailableError, import_ray

        try:
            import_ray()
        except RayUnavailableError as e:
            cli.fail(str(e))
    suite = make_suite(config.suite)
    try:
        preflight.check_saved_config(config)
        finished = preflight.finished_status(config, suite.num_tasks)
    except RunDirError as e:
        cli.fail(str(e))
    if finished is not None:
        print(f"{config.logdir}: already finished ({finished.get('env_steps', 0):,} agent steps); nothing to do.")
        return
    try:
        tracker = tracking.start(config)
    except tracking.TrackingUnavailableError as e:
        cli.fail(str(e))
    for line in progress.run_header(config, suite, budgets.longest_episode_steps(suite)):  # before TensorFlow loads
        logging.info("%s", line)
    # TensorFlow is imported only once the flags are valid, so that a bad flag costs nothing.
    from distral_tf.training.checkpointing import CheckpointError
    from distral_tf.training.tensorflow_setup import configure_tensorflow
    from distral_tf.training.trained_run import RunLoadError
    from distral_tf.training.trainer import Trainer, TrainingError

    configure_tensorflow(config.tf_inter_op_threads, config.tf_intra_op_threads)
    if config.backend == "ray":
        from distral_tf.training.distributed import DistributedRun

        try:
            trainer = DistributedRun(config, suite)
        except (ValueError, ConnectionError) as e:
            cli.fail(f"--backend=ray could not start: {e}")
    else:
        trainer = Trainer(config, suite)

    def on_signal(signum, _frame):
        logging.warning("Received %s: writing a final checkpoint and stopping.", signal.Signals(signum).name)
        trainer.request_stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        with tracking.tracked(tracker, suite.task_names) as finish_tracking:
            summary = trainer.run()
            finish_tracking(summary)
    except (TrainingError, CheckpointError, RunDirError, RunLoadError, OSError, ImportError) as e:
        sys.exit(f"error: {e}")
    if summary.get("already_finished"):
        print(f"{config.logdir}: already finished ({summary.get('env_steps', 0):,} agent steps); nothing to do.")
        return
    logging.info("Run %s: %s after %s agent steps (%.0f frames/s).", config.logdir, summary["state"],
                 f"{summary['env_steps']:,}", summary.get("env_frames_per_second", 0.0))
    if summary["state"] == "interrupted":
        sys.exit(130)


if __name__ == "__main__":
    cli.run(main, flags_parser=training_flags.parse)
