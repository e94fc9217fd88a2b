"""Runs one small sweep twice, locally and on a two-node local Ray cluster, and compares the reports.

    python benchmarks/sweep_backends.py --out=/tmp/sweep_backends

Both sweeps have the same runs (``--algos`` x ``--seeds`` on ``--experiment``, with
``--run_flags``); the local one runs ``--parallel`` at a time, the Ray one on a cluster
started here (``ray.cluster_utils.Cluster``: a head node without CPUs and two nodes of
``--cpus_per_node`` CPUs). ``python -m distral_tf.report`` then writes a report of each,
and the script prints the wall time of each sweep and checks that the two reports have the
same structure: the same runs (id, algorithm, state), tasks, panels and runs per panel.
Exits 1 if they differ. Learning curves differ between the two (asynchronous training).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from flags import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Directory for the two sweeps and their reports.")
flags.DEFINE_string("experiment", "two_rooms_small", "Suite of the runs.")
flags.DEFINE_string("algos", "a3c,kl_2col", "Algorithms of the sweep.")
flags.DEFINE_integer("seeds", 2, "Seeds per algorithm.", lower_bound=1)
flags.DEFINE_integer("total_env_steps", 600, "Agent steps of each run.", lower_bound=1)
flags.DEFINE_string("run_flags", "--workers_per_task=1 --eval_episodes=1 --num_env_processes=1 "
                    "--tf_inter_op_threads=1", "Flags of every run, in both sweeps.")
flags.DEFINE_integer("parallel", 2, "Runs at a time of the local sweep.", lower_bound=1)
flags.DEFINE_integer("cpus_per_node", 1, "CPUs of each of the cluster's two nodes (one run each).",
                     lower_bound=1)


def _sweep_command(out: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "distral_tf.sweep", f"--experiment={FLAGS.experiment}",
            f"--algos={FLAGS.algos}", "--entropy_costs=1e-2", "--learning_rates=5e-4", f"--seeds={FLAGS.seeds}",
            f"--total_env_steps={FLAGS.total_env_steps}", f"--run_flags={FLAGS.run_flags}", f"--out={out}",
            "--progress_every_secs=30", *extra]


def _run(command: list[str], env: dict) -> float:
    """Runs ``command`` (output passed through); returns its wall time; stops the script if it fails."""
    start = time.time()
    result = subprocess.run(command, cwd=REPO, env=env)
    if result.returncode != 0:
        sys.exit(f"error: {' '.join(command[:4])} ... exited with {result.returncode}")
    return time.time() - start


def report_structure(runs_dir: str, report_dir: str) -> dict:
    """What a report shows, without the numbers: runs, tasks, panels and the runs behind each."""
    from distral_tf.reporting.runs import load_runs

    runs = load_runs(runs_dir)
    with open(os.path.join(report_dir, "summary.json")) as f:
        summary = json.load(f)
    experiments = {}
    for name, result in summary["experiments"].items():
        experiments[name] = {
            "panels": sorted(k for k, v in result["figures"].items()
                             if os.path.exists(os.path.join(report_dir, v))),
            "runs_per_panel": {p: {a: s["num_runs"] for a, s in algos.items()}
                               for p, algos in result["policies"].items()},
        }
    return {"runs": sorted((r.run_id, r.algo, r.state) for r in runs),
            "tasks": sorted({t for r in runs for t in r.task_names}),
            "experiments": experiments}


def main(argv):
    cli.refuse_positional(argv)
    from ray.cluster_utils import Cluster

    out = os.path.abspath(FLAGS.out)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    os.environ.update(PYTHONPATH=env["PYTHONPATH"], TF_CPP_MIN_LOG_LEVEL="2")  # the cluster's processes
    # Ray starts its workers (and so the runs) at niceness 15, below the local runs they are compared with.
    os.environ.setdefault("RAY_worker_niceness", "0")
    local_secs = _run(_sweep_command(os.path.join(out, "local"), f"--parallel={FLAGS.parallel}"), env)

    start = time.time()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        for name in "ab":
            cluster.add_node(num_cpus=FLAGS.cpus_per_node, resources={f"node_{name}": 1})
        cluster.wait_for_nodes()
        start_secs = time.time() - start
        ray_secs = _run(_sweep_command(os.path.join(out, "ray"), "--backend=ray", f"--address={cluster.address}",
                                       f"--cpus_per_run={FLAGS.cpus_per_node}"), env)
    finally:
        cluster.shutdown()

    structures = {}
    for backend in ("local", "ray"):
        _run([sys.executable, "-m", "distral_tf.report", f"--runs={out}/{backend}/runs",
              f"--out={out}/{backend}/report"], env)
        structures[backend] = report_structure(f"{out}/{backend}/runs", f"{out}/{backend}/report")
    same = structures["local"] == structures["ray"]
    local, ray = structures["local"], structures["ray"]
    print(f"local sweep: {len(local['runs'])} runs, {FLAGS.parallel} at a time: {local_secs:.0f} s")
    print(f"ray sweep: {len(ray['runs'])} runs on 2 nodes x {FLAGS.cpus_per_node} CPUs: {ray_secs:.0f} s "
          f"(cluster start {start_secs:.0f} s, not included)")
    for name, result in ray["experiments"].items():
        print(f"{name}: tasks {', '.join(ray['tasks'])}; panels {', '.join(result['panels'])}; "
              f"runs per panel {json.dumps(result['runs_per_panel'])}")
    print("reports: " + ("same structure (runs, tasks, panels)" if same else
                         f"DIFFER\nlocal: {json.dumps(local)}\nray: {json.dumps(ray)}"))
    return 0 if same else 1


if __name__ == "__main__":
    flags.mark_flag_as_required("out")
    cli.run(main)
