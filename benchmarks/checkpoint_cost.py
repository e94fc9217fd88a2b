"""What one checkpoint costs: write time and size on disk, for the model of a suite and algorithm.

    python benchmarks/checkpoint_cost.py --suites=two_rooms_small,doom_mazes --algo=kl_2col

Builds the run's agent as the trainer does (restored from nothing), then writes
``--repeats`` checkpoints through the trainer's own checkpointer and prints the
median write time and the size of one checkpoint. A live run also parks its
workers before each write: at most one rollout and update per worker, which the
trainer's "Saved checkpoint ... (x s parking the workers, y s writing)" log line
reports.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

from absl import flags

from flags import cli

_SUITES = flags.DEFINE_list("suites", ["two_rooms_small", "doom_mazes"], "Suites measured.")
_ALGO = flags.DEFINE_string("algo", "kl_2col", "Algorithm (its model size sets the checkpoint's).")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Checkpoints written per suite.")


def measure(suite_name: str) -> dict:
    from distral_tf.envs import make_suite
    from distral_tf.training.config import TrainConfig
    from distral_tf.training.trainer import Trainer

    with tempfile.TemporaryDirectory() as logdir:
        config = TrainConfig(algo=_ALGO.value, suite=suite_name, logdir=logdir, keep_checkpoints=_REPEATS.value + 1)
        trainer = Trainer(config, make_suite(suite_name))
        trainer.build()
        seconds = []
        for step in range(1, _REPEATS.value + 1):
            start = time.perf_counter()
            path = trainer.checkpointer.save(step)
            seconds.append(time.perf_counter() - start)
        size = sum(os.path.getsize(os.path.join(os.path.dirname(path), name))
                   for name in os.listdir(os.path.dirname(path)) if name.startswith(os.path.basename(path) + "."))
        trainer.monitor.close()
    return {"suite": suite_name, "median_s": statistics.median(seconds), "max_s": max(seconds),
            "size_mib": size / 2**20}


def main(argv):
    cli.refuse_positional(argv)
    from distral_tf.training.tensorflow_setup import configure_tensorflow

    configure_tensorflow()
    print("| suite | algorithm | write, median (s) | write, max (s) | size (MiB) |")
    print("| --- | --- | --- | --- | --- |")
    for suite_name in _SUITES.value:
        r = measure(suite_name)
        print(f"| {r['suite']} | {_ALGO.value} | {r['median_s']:.3f} | {r['max_s']:.3f} | {r['size_mib']:.1f} |",
              flush=True)


if __name__ == "__main__":
    cli.run(main)
