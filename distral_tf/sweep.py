"""Runs the paper's hyperparameter sweep: algorithms x entropy costs x learning rates x seeds.

Usage::

    python -m distral_tf.sweep --experiment=doom_mazes --algos=all --out=sweeps/mazes --parallel=2

Each run is a subprocess ``python -m distral_tf.run ... --logdir=OUT/runs/<run id>``
(output in ``OUT/logs/<run id>.log``), at most ``--parallel`` at a time. The sweep
records every run's id, flags, state and return code in ``OUT/manifest.json``.
Rerunning the same command skips runs whose ``status.json`` says finished and
reruns the others, which resume from their checkpoints. Ctrl-C (SIGINT) or
SIGTERM passes SIGINT to the running runs so that they checkpoint, waits for
them, records the manifest and exits with status 130; a second Ctrl-C kills them.
With ``--backend=ray`` each run is a Ray actor on a cluster instead of a local
subprocess (``distral_tf/training/ray_runs.py``, ``docs/cluster.md``); all of the above holds.
``python -m distral_tf.report --runs=OUT/runs --out=...`` then draws Figure 4.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from absl import flags

from distral_tf import __version__, algorithms
from distral_tf.training import budgets, run_files, tracking
from distral_tf.training.ray_runs import parse_resources
from distral_tf.training.run_files import format_value as format_value
from distral_tf.training.run_files import run_id as run_id
from flags import cli

FLAGS = flags.FLAGS

# Default grid: three values each, as in the paper (which does not list them).
# Learning rates: A3C (Mnih et al. 2016) sampled RMSProp learning rates
# log-uniformly from [1e-4, 1e-2], and DeepMind Lab agents (IMPALA, Espeholt et
# al. 2018) from [5e-6, 5e-3]; 1e-4, 3e-4, 1e-3 covers the common part
# half a decade apart. Entropy costs: A3C's entropy bonus was 0.01; Distral sweeps
# its 1/beta over the same range, so 3e-3, 1e-2, 3e-2 bracket 0.01.
DEFAULT_LEARNING_RATES = "1e-4,3e-4,1e-3"
DEFAULT_ENTROPY_COSTS = "3e-3,1e-2,3e-2"
DEFAULT_SEEDS = 4
BUDGETS = budgets.BUDGETS  # named --budget values


def algos_help() -> str:
    """The help of ``--algos``: every algorithm of the registry with its description."""
    return "'all' or a comma-separated subset of: " + "; ".join(
        f"{a.name} ({a.description})" for a in algorithms.ALGORITHMS.values()) + "."


def define_flags():
    """Defines the command-line flags (only when run as a program, so importing defines none)."""
    flags.DEFINE_string("experiment", None, "Task suite passed to the runs as --suite (e.g. doom_mazes).")
    flags.DEFINE_string("algos", "all", algos_help())
    flags.DEFINE_string("entropy_costs", DEFAULT_ENTROPY_COSTS, "Comma-separated entropy costs.")
    flags.DEFINE_string("learning_rates", DEFAULT_LEARNING_RATES, "Comma-separated learning rates.")
    flags.DEFINE_integer("seeds", DEFAULT_SEEDS, "Seeds 0..N-1 per setting.", lower_bound=1)
    flags.DEFINE_string("out", None, "Sweep directory: runs/, logs/ and manifest.json go here.")
    flags.DEFINE_integer("parallel", 1, "Runs at a time.", lower_bound=1)
    flags.DEFINE_integer("total_env_steps", None, "Agent steps over all tasks of a full run "
                         "(default: the trainer's default).", lower_bound=1)
    flags.DEFINE_string("budget", "full", "A fraction of --total_env_steps, or one of "
                        f"{', '.join(f'{k} ({v.description})' for k, v in BUDGETS.items())}; the episodes are "
                        "those of the suite's longest task, so that every run draws learning curves.")
    flags.DEFINE_integer("workers_per_task", None, "Passed to every run if set.", lower_bound=1)
    flags.DEFINE_string("run_flags", "", "Further flags passed to every run, e.g. '--eval_episodes=4'.")
    flags.DEFINE_string("run_module", "distral_tf.run", "Module run for each run (python -m MODULE).")
    flags.DEFINE_float("grace_secs", 120.0,
                       "After Ctrl-C, seconds the runs get to checkpoint before SIGTERM.")
    flags.DEFINE_float("progress_every_secs", 60.0, "Seconds between progress lines while runs are going.")
    flags.DEFINE_bool("dry_run", False, "Print the commands of the runs still to do, their estimated wall time, "
                      "and exit.")
    flags.DEFINE_enum("backend", "local", ["local", "ray"],
                      "local: runs are subprocesses of the sweep; ray: runs are Ray actors on a cluster "
                      "(see docs/cluster.md; --out must then be on a filesystem every node reaches).")
    flags.DEFINE_string("address", None, "--backend=ray: the cluster to join ('auto' or HOST:PORT); "
                        "unset starts Ray on this machine alone.")
    flags.DEFINE_integer("cpus_per_run", 2, "--backend=ray: CPUs each run reserves; also its environment "
                         "processes and TensorFlow inter-op threads unless --run_flags sets them.",
                         lower_bound=1)
    flags.DEFINE_string("ray_resources", "", "--backend=ray: custom Ray resources each run reserves, as "
                        'JSON, e.g. \'{"doom": 1}\'.')
    flags.DEFINE_integer("max_restarts", 3, "--backend=ray: times a run is restarted on another node after "
                         "its node dies (it resumes from its last checkpoint).", lower_bound=0)
    flags.DEFINE_enum("track", "none", ["none", *tracking.TRACKERS],
                      "Passed to every run (--track): each also sends its scalars to W&B or MLflow, grouped under "
                      "the sweep's name (the base name of --out): the W&B group, the MLflow experiment.")
    flags.DEFINE_string("track_project", None, "--track: the W&B project of the runs (default: the runs' default).")


def tracking_args(track: str, out: str, project: str | None) -> list[str]:
    """The run flags that track a sweep's runs as one group named after the sweep directory ``out``."""
    if track == "none":
        return []
    args = [f"--track={track}", f"--track_group={os.path.basename(os.path.normpath(os.path.abspath(out)))}"]
    return args + ([f"--track_project={project}"] if project else [])


MANIFEST = "manifest.json"
_POLL_SECS = 0.2


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of the sweep: its id and the flags it is started with (without --logdir)."""

    run_id: str
    flags: dict


def parse_floats(text: str, name: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise ValueError(f"--{name}: expected comma-separated numbers, got {text!r}") from e
    if not values or any(not math.isfinite(v) or v < 0 for v in values):
        raise ValueError(f"--{name}: expected non-negative numbers, got {text!r}")
    return list(dict.fromkeys(values))


def parse_algos(text: str) -> list[str]:
    """``--algos``: 'all' (the registry's algorithms, in Table 1's order) or a subset of their names."""
    if text.strip() == "all":
        return list(algorithms.NAMES)
    algos = list(dict.fromkeys(a.strip() for a in text.split(",") if a.strip()))
    unknown = [a for a in algos if a not in algorithms.ALGORITHMS]
    if unknown or not algos:
        raise ValueError(f"--algos: unknown {unknown or text!r}; choose from all, {', '.join(algorithms.NAMES)}")
    return algos


def parse_budget(text: str) -> budgets.NamedBudget | float:
    """``--budget``: a named budget (:data:`BUDGETS`) or a positive fraction of ``--total_env_steps``."""
    return budgets.parse(text)


def expand_grid(
    experiment: str,
    algos: Sequence[str],
    entropy_costs: Sequence[float],
    learning_rates: Sequence[float],
    seeds: int,
    total_env_steps: int | None = None,
    extra_flags: dict | None = None,
) -> list[RunSpec]:
    """Every (algorithm, learning rate, entropy cost, seed) run, in that nesting order."""
    specs = []
    for algo in algos:
        for lr in learning_rates:
            for ent in entropy_costs:
                for seed in range(seeds):
                    run_flags = {"algo": algo, "suite": experiment, "learning_rate": lr,
                                 "entropy_cost": ent, "seed": seed}
                    if total_env_steps is not None:
                        run_flags["total_env_steps"] = total_env_steps
                    run_flags.update(extra_flags or {})
                    specs.append(RunSpec(run_id(algo, lr, ent, seed), run_flags))
    return specs


def _flag_text(value) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def run_command(spec: RunSpec, logdir: str, run_module: str = "distral_tf.run",
                extra_args: Sequence[str] = ()) -> list[str]:
    """The command line of one run."""
    return ([sys.executable, "-m", run_module]
            + [f"--{k}={_flag_text(v)}" for k, v in spec.flags.items()]
            + list(extra_args) + [f"--logdir={logdir}"])


def read_state(logdir: str) -> str | None:
    """The state of a run's status.json ("crashed" for a dead run that says running), or None without one."""
    return run_files.read_state(logdir)


def _read_progress(logdir: str) -> str:
    """A short progress note: the per-task step count of the run's latest logged episode."""
    try:
        with open(os.path.join(logdir, run_files.METRICS_FILE), "rb") as f:
            f.seek(max(0, os.path.getsize(f.name) - 4096))
            lines = f.read().decode(errors="replace").splitlines()
        for line in reversed(lines):
            try:
                return f"{int(json.loads(line)['env_steps']):,} steps/task"
            except (ValueError, KeyError, TypeError):
                continue
    except OSError:
        pass
    return "starting"


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


class LocalLauncher:
    """Starts each run as a subprocess of the sweep, in a session of its own.

    A terminal's Ctrl-C thus reaches the sweep only, which forwards it once.
    """

    def launch(self, command: list[str], log_path: str) -> subprocess.Popen:
        with open(log_path, "a") as log_file:
            return subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)

    def signal(self, proc: subprocess.Popen, sig: int):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def close(self):
        pass


class Sweep:
    """Runs a list of :class:`RunSpec` as subprocesses and keeps ``manifest.json`` current.

    Args:
      specs: the runs of the sweep.
      out_dir: the sweep directory.
      parallel: runs at a time, or a function returning it (called as runs are started).
      command_fn: ``(spec, logdir) -> argv`` of a run (injectable for tests).
      grace_secs: how long interrupted runs get to checkpoint before SIGTERM.
      progress_every_secs: seconds between progress lines.
      log: where progress lines go.
      info: extra fields recorded at the top of the manifest.
      launcher: starts and signals the runs: :class:`LocalLauncher` (the default) or
        ``ray_runs.RayLauncher``; both give handles shaped like ``subprocess.Popen``.
    """

    def __init__(self, specs: list[RunSpec], out_dir: str, parallel: int = 1,
                 command_fn: Callable[[RunSpec, str], list[str]] = run_command,
                 grace_secs: float = 120.0, progress_every_secs: float = 60.0,
                 log: Callable[[str], None] = print, info: dict | None = None, launcher=None):
        ids = [s.run_id for s in specs]
        if len(set(ids)) != len(ids):
            raise ValueError("Run ids of the sweep are not unique.")
        self.specs = specs
        self.out_dir = out_dir
        self.parallel = parallel
        self.command_fn = command_fn
        self.grace_secs = grace_secs
        self.progress_every_secs = progress_every_secs
        self.log = log
        self.info = info or {}
        self.launcher = launcher or LocalLauncher()
        self.runs_dir = os.path.join(out_dir, "runs")
        self.logs_dir = os.path.join(out_dir, "logs")
        self._stop = False
        self._kill = False
        self.entries = self._load_manifest()

    # -- manifest -------------------------------------------------------------------------------

    @property
    def manifest_path(self) -> str:
        return os.path.join(self.out_dir, MANIFEST)

    def _load_manifest(self) -> dict[str, dict]:
        try:
            with open(self.manifest_path) as f:
                old = json.load(f)
            entries = {e["id"]: e for e in old.get("runs", [])}
        except (OSError, ValueError, KeyError, TypeError):
            entries = {}
        for spec in self.specs:
            logdir = self.logdir(spec)
            entry = entries.get(spec.run_id, {"id": spec.run_id, "state": "pending", "returncode": None,
                                              "attempts": 0})
            if entry.get("flags") not in (None, spec.flags):
                self.log(f"[sweep] {spec.run_id}: flags differ from the last sweep; the run decides "
                         "whether it can resume")
            entry.update(flags=spec.flags, logdir=logdir, command=self.command_fn(spec, logdir),
                         log=os.path.join(self.logs_dir, f"{spec.run_id}.log"))
            entries[spec.run_id] = entry
        return entries

    def write_manifest(self):
        os.makedirs(self.out_dir, exist_ok=True)
        wanted = [s.run_id for s in self.specs]
        others = [k for k in self.entries if k not in wanted]  # runs of an earlier, larger grid
        states = collections.Counter(self.entries[k]["state"] for k in wanted)
        manifest = {"version": __version__, **self.info, "updated": _now(), "counts": dict(states),
                    "runs": [self.entries[k] for k in wanted + others]}
        run_files.write_json_atomically(self.manifest_path, manifest)

    def logdir(self, spec: RunSpec) -> str:
        return os.path.join(self.runs_dir, spec.run_id)

    # -- running --------------------------------------------------------------------------------

    def to_run(self) -> list[RunSpec]:
        """Runs not finished according to their status.json (others are marked finished).

        A run whose status says running but whose process is gone is marked "crashed" (it resumes).
        """
        todo = []
        for spec in self.specs:
            entry = self.entries[spec.run_id]
            state = read_state(self.logdir(spec))
            if state == "finished":
                entry["state"] = "finished"
            else:
                if state == "crashed":
                    entry["state"] = "crashed"
                elif entry["state"] in ("running", "finished"):  # finished per manifest, not per run
                    entry["state"] = "pending"
                todo.append(spec)
        return todo

    def _on_signal(self, signum, _frame):
        if self._stop:
            self._kill = True
            self.log("[sweep] second interrupt: killing the runs")
        else:
            self._stop = True
            self.log(f"[sweep] {signal.Signals(signum).name}: stopping; the running runs get SIGINT to "
                     "checkpoint (interrupt again to kill them)")

    def _launch(self, spec: RunSpec) -> subprocess.Popen:
        entry = self.entries[spec.run_id]
        os.makedirs(self.logs_dir, exist_ok=True)
        os.makedirs(self.runs_dir, exist_ok=True)
        with open(entry["log"], "a") as log_file:
            log_file.write(f"\n===== {_now()} attempt {entry['attempts'] + 1}: "
                           f"{shlex.join(entry['command'])}\n")
        proc = self.launcher.launch(entry["command"], entry["log"])
        entry.update(state="running", returncode=None, attempts=entry["attempts"] + 1, started=_now(),
                     ended=None, pid=proc.pid)
        return proc

    def _finish(self, spec: RunSpec, proc: subprocess.Popen, started: float, interrupted: bool) -> str:
        entry = self.entries[spec.run_id]
        rc = proc.returncode
        if read_state(self.logdir(spec)) == "finished":
            state = "finished"
        elif interrupted or rc in (130, -signal.SIGINT):
            state = "interrupted"
        else:
            state = "failed"
        entry.update(state=state, returncode=rc, ended=_now(), elapsed_secs=round(time.time() - started, 1))
        entry.pop("pid", None)
        return state

    def _signal_group(self, proc: subprocess.Popen, sig: int):
        self.launcher.signal(proc, sig)

    def _parallel(self) -> int:
        return self.parallel() if callable(self.parallel) else self.parallel

    def _stop_running(self, running: dict[str, tuple[RunSpec, subprocess.Popen, float]]):
        """SIGINT to every run; SIGTERM after ``grace_secs``; SIGKILL 10 s later or on a second Ctrl-C."""
        for _, proc, _ in running.values():
            self._signal_group(proc, signal.SIGINT)
        deadline, terminated = time.time() + self.grace_secs, False
        while any(p.poll() is None for _, p, _ in running.values()):
            if self._kill or (terminated and time.time() > deadline):
                for _, proc, _ in running.values():
                    if proc.poll() is None:
                        self._signal_group(proc, signal.SIGKILL)
                break
            if not terminated and time.time() > deadline:
                self.log("[sweep] runs still going after the grace period: SIGTERM")
                for _, proc, _ in running.values():
                    if proc.poll() is None:
                        self._signal_group(proc, signal.SIGTERM)
                deadline, terminated = time.time() + 10.0, True
            time.sleep(_POLL_SECS)
        for spec, proc, started in running.values():
            proc.wait()
            state = self._finish(spec, proc, started, interrupted=True)
            self.log(f"[sweep] {spec.run_id}: {state} (rc {proc.returncode})")

    def run(self) -> int:
        """Runs what is left; returns 0 if every run finished, 130 if interrupted, else 1."""
        todo = self.to_run()
        done = len(self.specs) - len(todo)
        total = len(self.specs)
        if done:
            self.log(f"[sweep] {done}/{total} runs already finished; skipping them")
        self.write_manifest()
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        pending = collections.deque(todo)
        running: dict[str, tuple[RunSpec, subprocess.Popen, float]] = {}
        counts = collections.Counter()
        last_progress = time.time()
        try:
            while (pending or running) and not self._stop:
                while pending and len(running) < self._parallel() and not self._stop:
                    spec = pending.popleft()
                    running[spec.run_id] = (spec, self._launch(spec), time.time())
                    self.log(f"[sweep] started {spec.run_id} "
                             f"({len(running)} running, {len(pending)} waiting)")
                    self.write_manifest()
                for rid in list(running):
                    spec, proc, started = running[rid]
                    if proc.poll() is None:
                        continue
                    del running[rid]
                    state = self._finish(spec, proc, started, interrupted=False)
                    counts[state] += 1
                    done += 1
                    self.log(f"[sweep] {done}/{total} {rid}: {state} (rc {proc.returncode}, "
                             f"{time.time() - started:.0f}s); {len(running)} running, {len(pending)} waiting"
                             + (f"; see {self.entries[rid]['log']}" if state != "finished" else ""))
                    self.write_manifest()
                if running and time.time() - last_progress > self.progress_every_secs:
                    last_progress = time.time()
                    self.log("[sweep] progress: " + ", ".join(
                        f"{rid} {_read_progress(self.logdir(s))}" for rid, (s, _, _) in running.items()))
                time.sleep(_POLL_SECS)
            if self._stop:
                self._stop_running(running)
                running.clear()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.write_manifest()
        states = collections.Counter(self.entries[s.run_id]["state"] for s in self.specs)
        self.log(f"[sweep] {states['finished']}/{total} finished"
                 + "".join(f", {n} {k}" for k, n in sorted(states.items()) if k != "finished")
                 + f"; manifest {self.manifest_path}")
        if self._stop:
            return 130
        return 0 if states["finished"] == total else 1


def _write_tensorboard_config(runs_dir: str, specs: list[RunSpec], experiment: str):
    """The sweep-level HParams config (discrete domains of the grid); skipped if the suite can't load."""
    from distral_tf.training import tensorboard_metadata

    try:
        from distral_tf.envs import make_suite

        task_names = make_suite(experiment).task_names
    except Exception as e:  # an optional simulator missing here; the runs write their own config
        print(f"[sweep] no sweep-level HParams config ({type(e).__name__}: {e})")
        return
    domains = {k: [s.flags[k] for s in specs] for k in ("algo", "learning_rate", "entropy_cost", "seed")}
    tags = [run_files.per_task_tag(p, t, run_files.EPISODE_RETURN) for p in run_files.POLICIES for t in task_names]
    tensorboard_metadata.write_hparams_config(runs_dir, domains, tags)


def _default_config():
    from distral_tf.training.config import TrainConfig

    return TrainConfig()


def _suite(name: str):
    from distral_tf.envs import make_suite

    return make_suite(name)


def _run_flag(args: Sequence[str], name: str, default):
    """The value of ``--name=VALUE`` in ``args`` (the last one given), else ``default``."""
    value = default
    for arg in args:
        if arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
    return value


def wall_time_estimate(specs: list[RunSpec], update_mode: str, parallel: int, backend: str,
                       cpus_per_run: int) -> list[str]:
    """Lines estimating the wall time of ``specs`` from the per-core speed measured on their suite
    (:func:`distral_tf.training.budgets.measured_speed`)."""
    if not specs:
        return []
    if update_mode not in ("hogwild", "batched"):
        return [f"no wall-time estimate for --update_mode={update_mode}"]
    speed = lambda s: budgets.steps_per_core_second(s.flags["algo"], update_mode, s.flags["suite"])  # noqa: E731
    core_seconds = [s.flags["total_env_steps"] / speed(s) for s in specs]
    total = f"{sum(core_seconds) / 3600:,.1f} core-hours in all"
    measured = [budgets.measured_speed(s.flags["suite"]) for s in specs]
    derived = any(update_mode not in {mode for _, mode in m.per_core} for m in measured)
    how = f"hogwild mode, scaled to {update_mode} as on {budgets.DEFAULT_SPEED}" if derived else f"{update_mode} mode"
    basis = (f"(speed per core measured on {', '.join(sorted({m.suite for m in measured}))}, {how}: "
             + ", ".join(f"{s.flags['algo']} {speed(s):,.0f}" for s in {s.flags["algo"]: s for s in specs}.values())
             + " agent steps/s)")
    if backend == "ray":
        longest = max(core_seconds) / cpus_per_run
        return [f"estimated: {total}; the longest run takes {budgets.format_hours(longest)} on "
                f"{cpus_per_run} CPUs {basis}"]
    cores = os.cpu_count() or 1
    wall = budgets.wall_seconds(core_seconds, cores, parallel)
    return [f"estimated wall time: {budgets.format_hours(wall)} on this machine's {cores} cores, {parallel} at a "
            f"time ({total}) {basis}"]


def ray_run_args(cpus_per_run: int, extra_args: Sequence[str]) -> list[str]:
    """Run flags that keep a Ray run within its reserved CPUs, unless ``extra_args`` sets them already.

    A run's defaults size its environment processes and TensorFlow's inter-op pool by the
    cores of the machine, which on a cluster node are not the run's to take.
    """
    given = {a[2:].split("=", 1)[0] for a in extra_args if a.startswith("--")}
    return [f"--{name}={cpus_per_run}" for name in ("num_env_processes", "tf_inter_op_threads")
            if name not in given]


def check_experiment(name: str) -> None:
    """Raises ``ValueError`` unless ``name`` is a suite (or task list) the runs can train on."""
    from distral_tf.envs import suites

    try:
        suites.make_suite(name)
    except ImportError as e:
        raise ValueError(f"--experiment={name} needs a module that is not installed: {e}") from None
    except ValueError as e:
        raise ValueError(f"--experiment: {e}") from None


def main(argv):
    cli.refuse_positional(argv)
    if not FLAGS.experiment or not FLAGS.out:
        cli.fail("--experiment and --out are required.")
    if not math.isfinite(FLAGS.grace_secs) or FLAGS.grace_secs < 0:
        cli.fail(f"--grace_secs must be a finite number >= 0, got {FLAGS.grace_secs}.")
    if not math.isfinite(FLAGS.progress_every_secs) or FLAGS.progress_every_secs <= 0:
        cli.fail(f"--progress_every_secs must be a finite number > 0, got {FLAGS.progress_every_secs}.")
    try:
        check_experiment(FLAGS.experiment)
        algos = parse_algos(FLAGS.algos)
        entropy_costs = parse_floats(FLAGS.entropy_costs, "entropy_costs")
        learning_rates = parse_floats(FLAGS.learning_rates, "learning_rates")
        budget = parse_budget(FLAGS.budget)
        resources = parse_resources(FLAGS.ray_resources)
        shlex.split(FLAGS.run_flags)
        tracking.check_available(FLAGS.track)
    except (ValueError, tracking.TrackingUnavailableError) as e:
        cli.fail(str(e))
    out = FLAGS.out
    if FLAGS.backend == "ray":
        from distral_tf.training import ray_runs

        try:
            ray_runs.import_ray()
        except ray_runs.RayUnavailableError as e:
            cli.fail(str(e))
        out = os.path.abspath(out)  # the runs start in other working directories, on other machines
    extra_args = shlex.split(FLAGS.run_flags) + tracking_args(FLAGS.track, out, FLAGS.track_project)
    defaults = _default_config()
    base_steps = FLAGS.total_env_steps or defaults.total_env_steps
    workers_per_task = FLAGS.workers_per_task or int(_run_flag(extra_args, "workers_per_task",
                                                               defaults.workers_per_task))
    suite = _suite(FLAGS.experiment)
    episode_steps = budgets.longest_episode_steps(suite)
    total_env_steps = budgets.total_env_steps(budget, base_steps, suite.num_tasks, workers_per_task, episode_steps)
    extra = {"workers_per_task": FLAGS.workers_per_task} if FLAGS.workers_per_task else {}
    specs = expand_grid(FLAGS.experiment, algos, entropy_costs, learning_rates, FLAGS.seeds,
                        total_env_steps, extra)
    per_worker = budgets.episodes_per_worker(total_env_steps, suite.num_tasks, workers_per_task, episode_steps)
    budget_note = (f"{total_env_steps:,} agent steps each: about {per_worker:,.1f} episodes of {episode_steps:,} "
                   f"steps per worker ({suite.num_tasks} tasks x {workers_per_task} workers)")
    if per_worker < 2:
        print(f"[sweep] warning: {budget_note}; a run needs at least two episodes per worker for a learning "
              "curve: raise --budget or --total_env_steps, or lower --workers_per_task", file=sys.stderr, flush=True)
    if FLAGS.backend == "ray":
        extra_args += ray_run_args(FLAGS.cpus_per_run, extra_args)
    command_fn = lambda spec, logdir: run_command(spec, logdir, FLAGS.run_module, extra_args)
    info = {"experiment": FLAGS.experiment, "budget": FLAGS.budget if isinstance(budget, budgets.NamedBudget)
            else budget, "total_env_steps": total_env_steps,
            "backend": FLAGS.backend, "command": [sys.executable, "-m", "distral_tf.sweep", *sys.argv[1:]]}
    sweep = Sweep(specs, out, FLAGS.parallel, command_fn, FLAGS.grace_secs, FLAGS.progress_every_secs,
                  log=lambda line: print(line, flush=True), info=info)
    if FLAGS.dry_run:
        todo = sweep.to_run()
        print(f"# {len(specs)} runs, {len(specs) - len(todo)} finished, {len(todo)} to run; {budget_note}")
        update_mode = str(_run_flag(extra_args, "update_mode", defaults.update_mode))
        for line in wall_time_estimate(todo, update_mode, FLAGS.parallel, FLAGS.backend, FLAGS.cpus_per_run):
            print(f"# {line}")
        for spec in todo:
            crashed = "  # crashed: resumes" if sweep.entries[spec.run_id]["state"] == "crashed" else ""
            print(shlex.join(sweep.entries[spec.run_id]["command"]) + crashed)
        return 0
    at_a_time = f"{FLAGS.parallel} at a time"
    if FLAGS.backend == "ray":
        try:
            sweep.launcher = ray_runs.RayLauncher(FLAGS.address, FLAGS.cpus_per_run, resources,
                                                  FLAGS.max_restarts)
        except (ConnectionError, RuntimeError, ValueError) as e:
            cli.fail(f"--backend=ray could not join a Ray cluster at --address={FLAGS.address}: "
                     f"{str(e).splitlines()[0] if str(e) else type(e).__name__}")
        if not FLAGS["parallel"].present:
            sweep.parallel = sweep.launcher.capacity
        if sweep.launcher.runs_the_nodes_hold() == 0:
            print(f"[sweep] warning: no node of the cluster has the resources a run reserves "
                  f"({sweep.launcher.demand}); "
                  "the runs wait until such a node joins", flush=True)
        at_a_time = (f"{FLAGS.parallel if FLAGS['parallel'].present else 'as many as the cluster holds'} "
                     f"at a time ({FLAGS.cpus_per_run} CPUs each; the cluster has "
                     f"{sweep.launcher.cluster_cpus():g} CPUs on {sweep.launcher.alive_nodes()} nodes now)")
    print(f"[sweep] {FLAGS.experiment}: {len(specs)} runs ({len(algos)} algorithms x {len(learning_rates)} "
          f"learning rates x {len(entropy_costs)} entropy costs x {FLAGS.seeds} seeds), "
          f"{total_env_steps:,} agent steps each, {at_a_time}, in {out}", flush=True)
    os.makedirs(sweep.runs_dir, exist_ok=True)
    _write_tensorboard_config(sweep.runs_dir, specs, FLAGS.experiment)
    try:
        return sweep.run()
    finally:
        sweep.launcher.close()


if __name__ == "__main__":
    define_flags()
    cli.run(main)
