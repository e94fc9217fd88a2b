"""Sweep runs on a Ray cluster: each run a Ray actor that reserves its CPUs and starts the run's command.

The actor (:class:`RunProcess`) starts ``python -m distral_tf.run ...`` as a
subprocess on the node Ray placed it on, its output appended to the run's log.
Run directories and logs must therefore be on a filesystem that every node
reaches under the same path. TensorFlow never enters the Ray worker: the run is
the same program as in a local sweep, with its own checkpointing and resuming.

If the node dies, Ray restarts the actor on another node (up to
``max_restarts`` times), and the actor starts the command again: the run
resumes from its last checkpoint and drops the metrics rows and TensorBoard
events written after it, so no step is counted twice. The subprocess is bound
to the actor's process (``PR_SET_PDEATHSIG``), so it never outlives it.
"""

from __future__ import annotations

import ctypes
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

INSTALL_HINT = 'pip install ray (or pip install -e ".[ray]")'
# Environment variables Ray sets in its workers from their resources; a run gets the sweep's values instead,
# so that its thread settings are those of a local run (its own --tf_*_threads flags).
_RAY_THREAD_VARIABLES = ("OMP_NUM_THREADS",)
_PR_SET_PDEATHSIG = 1
# A run whose actor is gone for good (no restarts left) ends with this return code.
LOST_RETURNCODE = -1


# Resources Ray knows by these names are given with their own flags (--cpus_per_run, --cpus_per_learner).
_BUILTIN_RESOURCES = frozenset({"CPU", "GPU", "memory", "object_store_memory"})


def parse_resources(text: str) -> dict[str, float]:
    """``--ray_resources`` (of a sweep's runs or of a run's task learners): a JSON object of custom resource
    names to positive amounts, ``{}`` when empty; ``ValueError`` naming the flag otherwise.

    An amount of 0 reserves nothing (so it is refused as a mistake), and CPUs, GPUs and memory
    are not custom resources: a run's CPUs have their own flag.
    """
    if not text.strip():
        return {}
    try:
        resources = json.loads(text)
    except ValueError:
        resources = None
    if not isinstance(resources, dict) or not all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) and v > 0
            for k, v in resources.items()):
        raise ValueError(f"--ray_resources: expected a JSON object of names to positive numbers (e.g. "
                         f"'{{\"doom\": 1}}'), got {text!r}")
    if _BUILTIN_RESOURCES & set(resources):
        raise ValueError("--ray_resources: give CPUs with --cpus_per_run (a sweep) or --cpus_per_learner (a run); "
                         "only custom resources go here")
    return {k: float(v) for k, v in resources.items()}


class RayUnavailableError(RuntimeError):
    """Ray is not installed."""


def import_ray():
    """The ``ray`` module, or :class:`RayUnavailableError` saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise RayUnavailableError(f"--backend=ray needs Ray, which is not installed: {INSTALL_HINT}") from e
    return ray


try:  # looked up here, not in the forked child, where loading a library could deadlock
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def check_reachable(address: str | None, timeout: float = 10.0):
    """Raises ConnectionError if ``address`` (HOST:PORT) does not accept connections.

    Ray itself keeps retrying an address where nothing listens; ``auto`` and None are left to Ray.
    """
    if not address or address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected 'auto' or HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConnectionError(f"nothing answers at {address} ({e.strerror or e}); is the head started "
                              "(ray start --head)?") from e


def _prepare_child():
    """In the child before exec: unblock the signals the Ray worker's thread blocks (a blocked SIGINT
    would never reach the run), and receive SIGKILL when the thread that started it ends (Linux)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def runs_per_node(node_resources: dict[str, float], demand: dict[str, float]) -> int:
    """How many runs, each reserving ``demand``, a node with ``node_resources`` holds at once."""
    return int(min(node_resources.get(k, 0.0) // v for k, v in demand.items()))


class RunProcess:
    """Ray actor: one run's subprocess on the node the actor was placed on.

    Args:
      command: the run's argv; its first element (the sweep's Python) is replaced by this
        worker's Python, which has the project installed on every node.
      log_path: the run's log, appended to.
      cwd: working directory of the run, if it exists on this node.
      environment: variables set for the run; a value of None removes the variable.
    """

    def __init__(self, command: list[str], log_path: str, cwd: str | None, environment: dict):
        import ray

        env = dict(os.environ)
        for key, value in environment.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        context = ray.get_runtime_context()
        restarted = context.was_current_actor_reconstructed
        command = [sys.executable, *command[1:]]
        with open(log_path, "a") as log_file:
            log_file.write(f"===== {_now()} {'restarted after its node was lost, ' if restarted else ''}"
                           f"on node {context.get_node_id()[:12]} ({os.uname().nodename})\n")
            log_file.flush()
            # Started from a thread that lives exactly as long as the run, so that the run's
            # parent-death signal fires when this actor's process ends, and not before.
            started = threading.Event()
            self._proc = None
            self._error = None

            def start_and_wait():
                try:
                    self._proc = subprocess.Popen(
                        command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                        cwd=cwd if cwd and os.path.isdir(cwd) else None, env=env, start_new_session=True,
                        preexec_fn=_prepare_child)
                except OSError as e:
                    self._error = e
                finally:
                    started.set()
                if self._proc is not None:
                    self._proc.wait()

            self._thread = threading.Thread(target=start_and_wait, name="run", daemon=True)
            self._thread.start()
            started.wait()
        if self._error is not None:
            raise self._error

    def wait(self) -> int:
        """The run's return code, once it has ended."""
        self._thread.join()
        return self._proc.returncode

    def signal(self, signum: int):
        """Sends ``signum`` to the run's process group (the run and its environment processes)."""
        try:
            os.killpg(self._proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


class RayRun:
    """The sweep's handle on a :class:`RunProcess` actor, shaped like ``subprocess.Popen``.

    ``pid`` is None: the run's process lives on whichever node Ray chose (its log says which).
    """

    pid = None

    def __init__(self, ray, actor, log_path: str):
        self._ray = ray
        self.actor = actor
        self._log_path = log_path
        self._done = actor.wait.remote()
        self.returncode: int | None = None

    def _collect(self):
        try:
            self.returncode = int(self._ray.get(self._done))
        except self._ray.exceptions.RayError as e:  # the actor died with no restarts left
            self.returncode = LOST_RETURNCODE
            with open(self._log_path, "a") as f:
                f.write(f"===== {_now()} the run's Ray actor was lost: {type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}\n")

    def poll(self) -> int | None:
        if self.returncode is None and self._ray.wait([self._done], timeout=0)[0]:
            self._collect()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        if self.returncode is None:
            ready, _ = self._ray.wait([self._done], timeout=timeout)
            if ready:
                self._collect()
        return self.returncode

    def send_signal(self, signum: int):
        if self.returncode is None:
            self.actor.signal.remote(int(signum))

    def kill(self):
        """Kills the run's process group and then its actor (no restart)."""
        self.send_signal(signal.SIGKILL)
        if self.wait(timeout=10.0) is None:
            self._ray.kill(self.actor, no_restart=True)
            self.wait(timeout=10.0)
            if self.returncode is None:
                self.returncode = -int(signal.SIGKILL)


class RayLauncher:
    """Starts sweep runs as :class:`RunProcess` actors on a Ray cluster.

    Args:
      address: the cluster to join (``auto``, ``HOST:PORT``); None starts Ray on this machine alone.
      cpus_per_run: CPUs each run reserves.
      resources: custom Ray resources each run reserves, e.g. ``{"doom": 1}``.
      max_restarts: times a run is restarted on another node after its node dies.
    """

    def __init__(self, address: str | None = None, cpus_per_run: float = 1, resources: dict | None = None,
                 max_restarts: int = 3):
        self.ray = import_ray()
        self.cpus_per_run = cpus_per_run
        if not self.ray.is_initialized():
            check_reachable(address)
            self.ray.init(address=address, include_dashboard=False, log_to_driver=False,
                          configure_logging=True, logging_level="warning")
        self._actor_class = self.ray.remote(RunProcess).options(
            num_cpus=cpus_per_run, resources=resources or {}, max_restarts=max_restarts,
            max_task_retries=-1, max_concurrency=4)
        self.demand = {"CPU": float(cpus_per_run), **(resources or {})}
        self._capacity = (0.0, 0)
        self.environment = {key: os.environ.get(key) for key in _RAY_THREAD_VARIABLES}

    def cluster_cpus(self) -> float:
        return float(self.ray.cluster_resources().get("CPU", 0))

    def alive_nodes(self) -> int:
        return sum(1 for node in self.ray.nodes() if node.get("Alive"))

    def runs_the_nodes_hold(self) -> int:
        """Runs the alive nodes hold at once, each reserving ``demand``."""
        return sum(runs_per_node(node.get("Resources", {}), self.demand)
                   for node in self.ray.nodes() if node.get("Alive"))

    def capacity(self) -> int:
        """Runs the cluster holds at once (at least 1), refreshed every few seconds."""
        checked, value = self._capacity
        if time.time() - checked > 5.0:
            value = max(1, self.runs_the_nodes_hold())
            self._capacity = (time.time(), value)
        return value

    def launch(self, command: list[str], log_path: str) -> RayRun:
        actor = self._actor_class.remote(command, log_path, os.getcwd(), self.environment)
        return RayRun(self.ray, actor, log_path)

    def signal(self, run: RayRun, signum: int):
        if signum == signal.SIGKILL:
            run.kill()
        else:
            run.send_signal(signum)

    def close(self):
        self.ray.shutdown()
