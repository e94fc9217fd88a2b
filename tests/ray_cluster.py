"""A real two-node local Ray cluster for the tests of ``--backend=ray`` (``ray.cluster_utils.Cluster``)."""

import contextlib
import os
import signal

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The test files that start a cluster run one after the other on one test worker (conftest), so that
# two clusters never share the machine's cores.
XDIST_GROUP = "ray_cluster"


@contextlib.contextmanager
def two_node_cluster(*python_path: str):
    """A head node without CPUs (nothing that reserves a CPU lands there) and two nodes of one CPU
    each, with the resources ``node_a`` and ``node_b``; this process is connected to it. The Ray
    processes inherit a PYTHONPATH with this checkout and ``python_path``. Yields ``(cluster, nodes)``."""
    pytest.importorskip("ray")
    import ray
    from ray.cluster_utils import Cluster

    old_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, *python_path, old_path) if p)
    os.environ.setdefault("RAY_worker_niceness", "0")  # Ray's 15 starves the nodes on a busy machine
    local = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    session_dir = local.head_node.get_session_dir_path()
    try:
        nodes = [local.add_node(num_cpus=1, resources={f"node_{name}": 1}) for name in "ab"]
        local.wait_for_nodes()
        ray.init(address=local.address, include_dashboard=False, log_to_driver=False)
        yield local, nodes
    finally:
        ray.shutdown()
        local.shutdown()
        _kill_processes_of_session(session_dir)
        if old_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old_path


def _kill_processes_of_session(session_dir):
    """Kills what is left of this cluster's processes (those of a node that failed to start are not
    among the nodes ``Cluster.shutdown`` stops): the processes whose command line names its session."""
    for pid in filter(str.isdigit, os.listdir("/proc") if os.path.isdir("/proc") else []):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read().decode(errors="replace")
            if session_dir in command and int(pid) != os.getpid():
                os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            pass
