"""The default-flags learning check: kl_2col against a3c on ``two_rooms_small``, as a user runs them.

Runs ``python -m distral_tf.run --preset=two_rooms_small --algo=ALGO --logdir=OUT/ALGO`` for
each of ``--algos`` (8 workers per task, 300,000 agent steps, every other flag at its default;
at the same time with ``--parallel``; a run already there resumes, or is read back if finished),
then prints each run's final return (the mean over tasks of the task policies' return over the
last quarter of each task's steps, as the report's A2 panel computes it) against a random
policy's (``--random_episodes`` seeded episodes per task), and checks that every algorithm
reaches ``--min_times_random`` times random and that the last algorithm reaches
``--min_ratio`` times the first. Exits with status 1 if a check fails. About 5-25 minutes on
2 cores.

    python benchmarks/learning_check.py --out=/tmp/learning_check
"""

from __future__ import annotations

import os
import subprocess
import sys

from absl import flags

from flags import cli

_OUT = flags.DEFINE_string("out", "/tmp/distral_learning_check", "Directory of the runs (one per algorithm).")
_PRESET = flags.DEFINE_string("preset", "two_rooms_small", "Preset the runs use (distral_tf.run --preset).")
_ALGOS = flags.DEFINE_list("algos", ["a3c", "kl_2col"], "Algorithms: the baseline first, Distral last.")
_PARALLEL = flags.DEFINE_bool("parallel", True, "Run the algorithms at the same time.")
_RANDOM_EPISODES = flags.DEFINE_integer("random_episodes", 100, "Random-policy episodes per task.")
_FINAL_FRACTION = flags.DEFINE_float("final_fraction", 0.25, "Fraction of each task's steps the final return covers.")
_MIN_TIMES_RANDOM = flags.DEFINE_float("min_times_random", 3.0, "Final return each algorithm must reach, x random.")
_MIN_RATIO = flags.DEFINE_float("min_ratio", 0.8, "Final return the last algorithm must reach, x the first's.")


def train(algos: list[str]) -> None:
    """Runs (or resumes) each algorithm's run; fails with its log's path if one fails."""
    procs = []
    os.makedirs(_OUT.value, exist_ok=True)
    for algo in algos:
        logdir = os.path.join(_OUT.value, algo)
        log = open(os.path.join(_OUT.value, f"{algo}.log"), "a")  # noqa: SIM115 (closed below)
        cmd = [sys.executable, "-m", "distral_tf.run", f"--preset={_PRESET.value}", f"--algo={algo}",
               f"--logdir={logdir}"]
        print(" ".join(cmd[1:]), flush=True)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        procs.append((algo, proc, log))
        if not _PARALLEL.value:
            proc.wait()
    for algo, proc, log in procs:
        proc.wait()
        log.close()
        if proc.returncode != 0:
            cli.fail(f"the {algo} run failed (exit status {proc.returncode}); see {log.name}")


def main(argv):
    del argv
    if len(_ALGOS.value) < 2:
        cli.fail("--algos: give at least two algorithms, the baseline first.")
    train(_ALGOS.value)
    from distral_tf.envs import make_suite
    from distral_tf.reporting import metrics, random_policy
    from distral_tf.reporting.runs import load_run

    runs = {algo: load_run(os.path.join(_OUT.value, algo), _OUT.value) for algo in _ALGOS.value}
    suite = make_suite(next(iter(runs.values())).suite)
    random = random_policy.over_tasks(list(random_policy.measure(suite, _RANDOM_EPISODES.value, seed=0).values()))
    finals = {algo: metrics.final_return(run, "task", _FINAL_FRACTION.value) for algo, run in runs.items()}
    ok = True
    print(f"random policy: {random.text()} per episode ({random.episodes} episodes over {len(suite.task_names)} tasks)")
    for algo, final in finals.items():
        times = final / random.mean
        ok &= times >= _MIN_TIMES_RANDOM.value
        print(f"{algo}: final return {final:.2f} ({times:.1f}x random; at least {_MIN_TIMES_RANDOM.value:g}x: "
              f"{'holds' if times >= _MIN_TIMES_RANDOM.value else 'FAILS'})")
    first, last = _ALGOS.value[0], _ALGOS.value[-1]
    ratio = finals[last] / finals[first]
    holds = ratio >= _MIN_RATIO.value
    ok &= holds
    print(f"{last} / {first}: {ratio:.2f} (at least {_MIN_RATIO.value:g}: {'holds' if holds else 'FAILS'})")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    cli.run(main)
