"""Throughput of training against the random-action environment ceiling, measured in one invocation.

    python benchmarks/throughput.py --suite=doom_mazes --algo=a3c --update_mode=batched
    python benchmarks/throughput.py --quick

For the configuration given, it measures (a) the environments alone, stepped with
random actions by the same layout of actor threads and environment processes as
training, and (b) training (``Trainer``) for a fixed time after a warm-up, and prints:
env frames/s (action repeat counted), agent steps/s, the ratio training / ceiling,
peak memory (resident and proportional set size of the process and all its
children, engines included) and the split of the actor threads' time between
stepping environments, inference, learning and waiting. ``--repeats`` > 1 reports
medians. ``--json_out`` writes every figure. ``--backend=ray`` then measures the same
training spread over a Ray cluster started on this machine (``--learners`` task learners,
the shared parameters in their own actor) and prints the ratio ray/local with the
learners' exchanges with the shared parameters (pushes/s, time per push, bytes/s).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time

from absl import flags

from flags import cli

# Only light imports at the top: environment processes are spawned and import this module (as
# "throughput", to make the ViZDoom stand-in), so the flags are defined only when it runs as a program.
if __name__ == "__main__":
    _SUITE = flags.DEFINE_string(
        "suite", "doom_mazes", "Task suite, or vizdoom_my_way_home: 8 copies of ViZDoom's my_way_home maze (160x120 "
        "RGB24 resized to 84x84, action repeat 4), a stand-in when the Doom suites are not installed.")
    _ALGO = flags.DEFINE_string("algo", "a3c", "Algorithm.")
    from distral_tf.training.config import RMSPROP_KERNELS, TORSO_DTYPES, UPDATE_MODES, TrainConfig

    _D = TrainConfig()  # the trainer's defaults, except batched updates
    _MODE = flags.DEFINE_enum("update_mode", "batched", UPDATE_MODES, "Update mode.")
    _WORKERS = flags.DEFINE_integer("workers_per_task", _D.workers_per_task, "Workers per task.")
    _PROCESSES = flags.DEFINE_integer("num_env_processes", _D.num_env_processes,
                                      "Environment processes (-1: one per core; 0: in-process).")
    _ACTORS = flags.DEFINE_integer("actor_threads", _D.actor_threads, "Actor threads (lockstep groups of workers).")
    _LEARNERS = flags.DEFINE_integer("learner_threads", _D.learner_threads, "Learner threads (hogwild).")
    _PER_CALL = flags.DEFINE_integer("rollouts_per_call", _D.rollouts_per_call,
                                     "Hogwild: rollouts of one task differentiated in one batched pass.")
    _INTER = flags.DEFINE_integer("tf_inter_op_threads", _D.tf_inter_op_threads,
                                  "TensorFlow inter-op threads (0: TensorFlow's default).")
    _INTRA = flags.DEFINE_integer("tf_intra_op_threads", _D.tf_intra_op_threads,
                                  "TensorFlow intra-op threads (0: TensorFlow's default).")
    _RMSPROP_KERNEL = flags.DEFINE_enum("rmsprop_kernel", _D.rmsprop_kernel, RMSPROP_KERNELS,
                                        "How Hogwild's RMSProp steps run (distral_tf.run --rmsprop_kernel).")
    _TORSO_DTYPE = flags.DEFINE_enum("torso_dtype", _D.torso_dtype, TORSO_DTYPES,
                                     "Compute dtype of the convolutional torso.")
    _SECONDS = flags.DEFINE_float("seconds", 60.0, "Measured training time (after the warm-up).")
    _WARMUP = flags.DEFINE_float("warmup_seconds", 20.0, "Training time before measuring.")
    _CEILING_SECONDS = flags.DEFINE_float("ceiling_seconds", 15.0, "Measured time of the random-action ceiling.")
    _REPEATS = flags.DEFINE_integer("repeats", 1, "Training measurements (medians are reported).")
    _QUICK = flags.DEFINE_bool("quick", False, "Short measurement (under a minute): 3 s ceiling, 4 s warm-up, 10 s, "
                               "and 4 workers per task unless --workers_per_task is given (starting 256 Doom "
                               "engines alone takes about a minute on 2 cores).")
    _BACKEND = flags.DEFINE_enum(
        "backend", "local", ("local", "ray"), "ray: measure a local run, then a run of the same workers spread "
        "over a Ray cluster started on this machine (docs/cluster.md), and print the ratio ray/local.")
    _RAY_LEARNERS = flags.DEFINE_integer("learners", 1, "--backend=ray: task learners (0: one per task).")
    _RAY_CPUS = flags.DEFINE_float("cpus_per_learner", float(os.cpu_count() or 1),
                                   "--backend=ray: CPUs each learner reserves (its environment processes).")
    _RAY_GRADIENTS = flags.DEFINE_integer("gradients_per_push", _D.gradients_per_push,
                                          "--backend=ray: shared-column gradients per call to the shared parameters.")
    _JSON_OUT = flags.DEFINE_string("json_out", None, "Also write the results as JSON here.")
    _SEED = flags.DEFINE_integer("seed", 0, "Seed.")


# --------------------------------------------------------------------------------------------- #
# A ViZDoom stand-in for when the project's Doom suites are not installed: ViZDoom's own
# my_way_home maze, rendered RGB24 at 160x120, resized to 84x84, action repeat 4.

PROXY_SUITE = "vizdoom_my_way_home"
PROXY_ENV_ID = "DoomProxy-v0"


def _register_proxy():
    import gymnasium as gym
    import numpy as np

    from distral_tf.envs.doom.engine_process import resize

    class DoomProxyEnv(gym.Env):
        def __init__(self, frame_skip: int = 4):
            import vizdoom as vzd

            game = vzd.DoomGame()
            game.load_config(os.path.join(os.path.dirname(vzd.__file__), "scenarios", "my_way_home.cfg"))
            game.set_screen_resolution(vzd.ScreenResolution.RES_160X120)
            game.set_screen_format(vzd.ScreenFormat.RGB24)
            game.set_window_visible(False)
            game.set_sound_enabled(False)
            game.set_mode(vzd.Mode.PLAYER)
            game.init()
            self._game, self._skip = game, frame_skip
            n = game.get_available_buttons_size()
            self._actions = [list(a) for a in np.eye(n, dtype=int)]
            self.action_space = gym.spaces.Discrete(n)
            self.observation_space = gym.spaces.Box(0, 255, (84, 84, 3), np.uint8)

        def _obs(self):
            state = self._game.get_state()
            if state is None:
                return np.zeros((84, 84, 3), np.uint8)
            return resize(state.screen_buffer)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            if seed is not None:
                self._game.set_seed(int(seed) % (2**31))
            self._game.new_episode()
            return self._obs(), {}

        def step(self, action):
            reward = self._game.make_action(self._actions[int(action)], self._skip)
            done = self._game.is_episode_finished()
            return self._obs(), float(reward), False, done, {}

        def close(self):
            self._game.close()

    if PROXY_ENV_ID not in gym.registry:
        gym.register(id=PROXY_ENV_ID, entry_point=DoomProxyEnv)


def proxy_suite(num_tasks: int = 8):
    from distral_tf.envs.suites import Suite

    _register_proxy()
    return Suite(name=PROXY_SUITE, task_names=tuple(f"my_way_home_{i}" for i in range(num_tasks)),
                 env_ids=(f"throughput:{PROXY_ENV_ID}",) * num_tasks, env_kwargs=({},) * num_tasks,
                 frames_per_step=4)


if __name__ != "__main__":  # imported by environment processes (as "throughput") to make the stand-in
    try:
        _register_proxy()
    except ImportError:
        pass


# --------------------------------------------------------------------------------------------- #
# Memory of this process and all its descendants.

def _descendants(pid: int) -> list[int]:
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    kids = [int(c) for c in f.read().split()]
                out.extend(kids)
                stack.extend(kids)
        except OSError:
            continue
    return out


def _memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB of one process; zeros if it is gone."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


class MemorySampler:
    """Samples the summed RSS and PSS of the process tree every ``interval`` seconds; keeps the peaks."""

    def __init__(self, interval: float = 1.0):
        self.peak_rss_kib = self.peak_pss_kib = 0
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self):
        pids = [os.getpid(), *_descendants(os.getpid())]
        rss = pss = 0
        for pid in pids:
            r, p = _memory_kib(pid)
            rss += r
            pss += p
        self.peak_rss_kib = max(self.peak_rss_kib, rss)
        self.peak_pss_kib = max(self.peak_pss_kib, pss)

    def _run(self):
        while not self._stop.wait(self._interval):
            self.sample()

    def close(self):
        self._stop.set()
        self._thread.join()
        self.sample()


# --------------------------------------------------------------------------------------------- #

def measure_ceiling(suite, config, seconds: float) -> dict:
    """Random actions on the same actor-thread / process layout as training (no TensorFlow work)."""
    import numpy as np

    from distral_tf.training import worker_envs

    probe = suite.make_env(0)
    obs_space, n_actions = probe.observation_space, probe.action_space.n
    probe.close()
    groups = [envs for _, envs in worker_envs.make_groups(suite, config, obs_space)]
    counts = [0] * len(groups)
    stop = threading.Event()

    def drive(k):
        rng = np.random.default_rng(k)
        envs = groups[k]
        while not stop.is_set():
            envs.step(rng.integers(0, n_actions, envs.num_envs, dtype=np.int32))
            counts[k] += envs.num_envs

    threads = [threading.Thread(target=drive, args=(k,), daemon=True) for k in range(len(groups))]
    for t in threads:
        t.start()
    time.sleep(min(2.0, seconds / 4))
    start_count, start = sum(counts), time.monotonic()
    time.sleep(seconds)
    steps = sum(counts) - start_count
    elapsed = time.monotonic() - start
    stop.set()
    for t in threads:
        t.join()
    for g in groups:
        g.close()
    rate = steps / elapsed
    return {"agent_steps_per_second": rate, "env_frames_per_second": rate * suite.frames_per_step}


def measure_training(suite, config, warmup: float, seconds: float) -> dict:
    if config.backend == "ray":
        from distral_tf.training.distributed import DistributedRun

        run = DistributedRun(config, suite)

        def current():  # the driver of the run's attempt
            return run.trainer
    else:
        from distral_tf.training.trainer import Trainer

        run = Trainer(config, suite)

        def current():
            return run

    result = {}
    runner = threading.Thread(target=lambda: result.update(summary=run.run()), daemon=True)
    wall_start = time.monotonic()
    runner.start()
    while current() is None or current().state.total_steps == 0:
        if not runner.is_alive():
            raise RuntimeError(f"training ended before its first rollout: {result.get('summary')}")
        time.sleep(0.1)
    trainer = current()
    startup = time.monotonic() - wall_start
    time.sleep(warmup)
    # Steps are counted per finished rollout (a whole group's at once in batched mode), so the
    # rate is taken between the first and the last change of the count seen in the window.
    traffic0 = dict(getattr(trainer.backend, "traffic", {}))
    timings0, deadline = trainer.timings.snapshot(), time.monotonic() + seconds
    changes, last = [], trainer.state.total_steps
    while time.monotonic() < deadline:
        now = trainer.state.total_steps
        if now != last:
            changes.append((time.monotonic(), now))
            last = now
        time.sleep(0.01)
    timings1 = trainer.timings.snapshot()
    traffic = {k: v - traffic0[k] for k, v in getattr(trainer.backend, "traffic", {}).items()}
    run.request_stop()
    runner.join()
    summary = result.get("summary", {})
    if "error" in summary:
        raise RuntimeError(f"training failed: {summary['error']}")
    if len(changes) < 2:
        raise RuntimeError(f"fewer than two updates in {seconds:g} s; measure for longer (--seconds)")
    (t0, steps0), (t1, steps1) = changes[0], changes[-1]
    rate = (steps1 - steps0) / (t1 - t0)
    split = {k: timings1[k] - timings0[k] for k in timings1}
    total = sum(split.values()) or 1.0
    out = {"agent_steps_per_second": rate, "env_frames_per_second": rate * suite.frames_per_step,
           "startup_seconds": startup, "time_split": {k: v / total for k, v in split.items()},
           "env_restarts": sum(summary.get("env_restarts_per_task", []))}
    if traffic:  # the learners' exchanges with the shared parameters during the measured window
        pushes = max(traffic["pushes"], 1.0)
        out["shared"] = {"pushes_per_second": traffic["pushes"] / seconds,
                         "gradients_per_second": traffic["gradients"] / seconds,
                         "pulls_per_second": traffic["pulls"] / seconds,
                         "mean_wait_ms": 1000 * traffic["wait_seconds"] / pushes,
                         "wait_seconds_per_second": traffic["wait_seconds"] / seconds,
                         "megabytes_per_second": traffic["bytes"] / seconds / 2**20,
                         "megabytes_per_push": traffic["bytes"] / pushes / 2**20}
    return out


def repeated_training(suite, config, warmup: float, seconds: float, logdir: str, label: str) -> list[dict]:
    """``--repeats`` training measurements, each in a fresh run directory, each printed."""
    import shutil

    runs = []
    for r in range(_REPEATS.value):
        shutil.rmtree(logdir, ignore_errors=True)
        runs.append(measure_training(suite, config, warmup, seconds))
        print(f"{label} {r + 1}: {runs[-1]['env_frames_per_second']:,.0f} env frames/s "
              f"(started in {runs[-1]['startup_seconds']:.0f} s)", flush=True)
    return runs


def measure_ray(suite, config, warmup: float, seconds: float, logdir: str) -> dict:
    """The training measurement of ``config`` run with ``--backend=ray`` on a Ray started here."""
    import dataclasses

    config = dataclasses.replace(config, backend="ray", learners=_RAY_LEARNERS.value,
                                 cpus_per_learner=_RAY_CPUS.value, gradients_per_push=_RAY_GRADIENTS.value)
    runs = repeated_training(suite, config, warmup, seconds, logdir, "ray training run")
    from distral_tf.training.distributed import partition_tasks

    return {"learners": len(partition_tasks(suite.num_tasks, config.learners)),
            "cpus_per_learner": config.cpus_per_learner, "gradients_per_push": config.gradients_per_push,
            "runs": runs,
            "env_frames_per_second": statistics.median(r["env_frames_per_second"] for r in runs)}


def main(argv):
    cli.refuse_positional(argv)
    from distral_tf.envs import make_suite
    from distral_tf.training.config import TrainConfig

    quick = _QUICK.value
    ceiling_s = 3.0 if quick else _CEILING_SECONDS.value
    warmup = 4.0 if quick else _WARMUP.value
    seconds = 10.0 if quick else _SECONDS.value
    workers_per_task = 4 if quick and not flags.FLAGS["workers_per_task"].present else _WORKERS.value
    if _SUITE.value == PROXY_SUITE:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        suite = proxy_suite()
    else:
        suite = make_suite(_SUITE.value)
    logdir = tempfile.mkdtemp(prefix="throughput-")
    config = TrainConfig(
        algo=_ALGO.value, suite=_SUITE.value, logdir=logdir, total_env_steps=10**10,
        workers_per_task=workers_per_task, update_mode=_MODE.value, num_env_processes=_PROCESSES.value,
        actor_threads=_ACTORS.value, learner_threads=_LEARNERS.value, rollouts_per_call=_PER_CALL.value,
        tf_inter_op_threads=_INTER.value,
        tf_intra_op_threads=_INTRA.value,
        torso_dtype=_TORSO_DTYPE.value, rmsprop_kernel=_RMSPROP_KERNEL.value,
        entropy_cost=0.01, eval_episodes=0, checkpoint_every_secs=10**6, log_every_secs=10**6,
        summary_every_updates=20, seed=_SEED.value)
    from distral_tf.envs.pool import resolve_num_processes
    from distral_tf.training.tensorflow_setup import configure_tensorflow

    configure_tensorflow(config.tf_inter_op_threads, config.tf_intra_op_threads)

    processes = resolve_num_processes(config.num_env_processes)
    workers = config.workers_per_task * suite.num_tasks
    print(f"suite={suite.name} algo={config.algo} update_mode={config.update_mode} "
          f"workers={suite.num_tasks}x{config.workers_per_task} env_processes={processes} "
          f"actor_threads={config.actor_threads} tf_threads(inter,intra)=({config.tf_inter_op_threads},"
          f"{config.tf_intra_op_threads}) torso_dtype={config.torso_dtype} rmsprop_kernel={config.rmsprop_kernel} "
          f"action_repeat={suite.frames_per_step} "
          f"cores={os.cpu_count()}",
          flush=True)
    memory = MemorySampler()
    ceiling = measure_ceiling(suite, config, ceiling_s)
    print(f"ceiling (random actions): {ceiling['env_frames_per_second']:,.0f} env frames/s, "
          f"{ceiling['agent_steps_per_second']:,.0f} agent steps/s", flush=True)
    runs = repeated_training(suite, config, warmup, seconds, logdir, "training run")
    memory.close()
    fps = statistics.median(r["env_frames_per_second"] for r in runs)
    sps = statistics.median(r["agent_steps_per_second"] for r in runs)
    split = {k: statistics.median(r["time_split"][k] for r in runs) for k in runs[0]["time_split"]}
    results = {
        "suite": suite.name, "algo": config.algo, "update_mode": config.update_mode,
        "workers": workers, "env_processes": processes, "actor_threads": config.actor_threads,
        "ceiling": ceiling, "training_runs": runs,
        "env_frames_per_second": fps, "agent_steps_per_second": sps,
        "ratio_to_ceiling": fps / ceiling["env_frames_per_second"],
        "peak_rss_gib": memory.peak_rss_kib / 2**20, "peak_pss_gib": memory.peak_pss_kib / 2**20,
        "time_split": split,
    }
    print(f"training: {fps:,.0f} env frames/s, {sps:,.0f} agent steps/s "
          f"(median of {len(runs)}; {seconds:g} s after {warmup:g} s warm-up)")
    if _BACKEND.value == "ray":
        results["ray"] = measure_ray(suite, config, warmup, seconds, logdir)
        results["ray_to_local"] = results["ray"]["env_frames_per_second"] / fps
    print(f"ratio training/ceiling: {results['ratio_to_ceiling']:.2f}")
    print(f"peak memory (process tree): RSS {results['peak_rss_gib']:.2f} GiB, PSS {results['peak_pss_gib']:.2f} GiB")
    print("actor time split: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in split.items()))
    if _BACKEND.value == "ray":
        ray_run, shared = results["ray"], results["ray"]["runs"][0].get("shared", {})
        print(f"ray ({ray_run['learners']} learners of {ray_run['cpus_per_learner']:g} CPUs): "
              f"{ray_run['env_frames_per_second']:,.0f} env frames/s (median of {len(ray_run['runs'])})")
        if shared:
            print(f"shared parameters: {shared['pushes_per_second']:.1f} pushes/s "
                  f"({shared['gradients_per_second']:.1f} gradients/s), "
                  f"{shared['pulls_per_second']:.2f} pulls/s (parameters received, one per snapshot), "
                  f"{shared['megabytes_per_push']:.2f} MB per push (both ways), "
                  f"{shared['megabytes_per_second']:.1f} MB/s; learner threads waited {shared['mean_wait_ms']:.1f} ms "
                  f"per push ({shared['wait_seconds_per_second']:.2f} s per second)")
        print(f"ratio ray/local: {results['ray_to_local']:.2f}")
    if _JSON_OUT.value:
        with open(_JSON_OUT.value, "w") as f:
            json.dump(results, f, indent=2)
    import shutil

    shutil.rmtree(logdir, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    cli.run(main)
