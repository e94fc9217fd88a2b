"""The environment pool: same steps as in-process environments, and faults that restart processes."""

import inspect
import os
import signal
import subprocess
import sys
import threading
import time

import gymnasium as gym
import numpy as np
import pytest

from distral_tf.envs import make_suite
from distral_tf.envs.pool import EnvPool, EnvPoolInterface, LocalEnvs, group_layout, make_envs

SUITE = "two_rooms_small"
OBS_SHAPE = (40, 40, 3)


class FaultyEnv(gym.Env):
    """A tiny image environment that misbehaves on request.

    ``fault`` is ``"hang"`` (sleeps far longer than the pool's timeout),
    ``"nan_reward"``, ``"nan_obs"`` (float observations) or ``"crash"``, happening at
    step ``fault_step`` of the environment's first life only (a marker file, so that a
    restarted process behaves).
    """

    def __init__(self, fault=None, fault_step=3, marker=None, float_obs=False):
        self.fault, self.fault_step, self.marker = fault, fault_step, marker
        dtype = np.float32 if float_obs else np.uint8
        self.observation_space = gym.spaces.Box(0, 255, (8, 8, 3), dtype)
        self.action_space = gym.spaces.Discrete(3)
        self._t = 0
        self._dtype = dtype

    def _obs(self):
        return np.full((8, 8, 3), self._t % 200, self._dtype)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._obs(), {}

    def step(self, action):
        self._t += 1
        armed = self.marker is not None and not os.path.exists(self.marker)
        if armed and self._t == self.fault_step:
            open(self.marker, "w").close()
            if self.fault == "hang":
                time.sleep(600)
            if self.fault == "crash":
                os.kill(os.getpid(), signal.SIGSEGV)
            if self.fault == "nan_reward":
                return self._obs(), float("nan"), False, False, {}
            if self.fault == "nan_obs":
                return np.full((8, 8, 3), np.nan, np.float32), 0.0, False, False, {}
        return self._obs(), 1.0, False, self._t >= 10, {}


class FaultyFactory:
    """Picklable ``make_env(task, seed)``: task 1's environments carry the fault."""

    def __init__(self, fault, marker, float_obs=False):
        self.fault, self.marker, self.float_obs = fault, marker, float_obs

    def __call__(self, task, seed):
        return FaultyEnv(self.fault if task == 1 else None, marker=self.marker if task == 1 else None,
                         float_obs=self.float_obs)


def test_pool_steps_match_in_process_environments():
    suite = make_suite(SUITE)
    tasks = [i % suite.num_tasks for i in range(10)]
    seeds = list(range(100, 110))
    local = LocalEnvs(suite.make_env, tasks, seeds, OBS_SHAPE)
    with EnvPool(suite.make_env, tasks, seeds, OBS_SHAPE, num_processes=3, timeout_s=20) as pool:
        assert pool.num_processes == 3
        assert isinstance(pool, EnvPoolInterface) and isinstance(local, EnvPoolInterface)
        np.testing.assert_array_equal(pool.observations, local.observations)
        rng = np.random.default_rng(0)
        ends = 0
        for t in range(120):
            actions = rng.integers(0, 4, len(tasks))
            if t % 7 == 0:
                actions[3] = -1  # a skipped environment does not step
            a, b = pool.step(actions), local.step(actions)
            np.testing.assert_array_equal(a.observations, b.observations)
            np.testing.assert_array_equal(a.rewards, b.rewards)
            np.testing.assert_array_equal(a.terminated, b.terminated)
            np.testing.assert_array_equal(a.truncated, b.truncated)
            assert not a.cut.any()
            ends += int(a.done.sum())
        assert ends >= 10  # 40-step episodes: every environment reset at least once
        assert pool.restarts.sum() == 0
    local.close()


class SeedRecordingEnv(gym.Env):
    """Records the seed of every reset; 3-step episodes whose observations come from its random stream."""

    observation_space = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.seeds, self._t = [], 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.seeds.append(seed)
        self._t = 0
        return self._obs(), {}

    def _obs(self):
        return np.full((8, 8, 3), self.np_random.integers(256), np.uint8)

    def step(self, action):
        self._t += 1
        return self._obs(), 0.0, self._t >= 3, False, {}


def test_only_the_first_reset_is_seeded_and_the_seed_fixes_every_episode():
    """Gymnasium's convention: the first reset gets the seed, later episodes continue the environment's
    own random stream (a Doom environment would otherwise start a new engine every episode)."""
    runs = []
    for _ in range(2):
        envs = LocalEnvs(lambda task, seed: SeedRecordingEnv(), [0, 0], [5, 6])
        frames = [envs.observations.copy()] + [envs.step(np.zeros(2, np.int32)).observations.copy()
                                               for _ in range(10)]
        seeds = [slot.envs[0].seeds for slot in envs._slots]
        runs.append(np.stack(frames))
        envs.close()
        for recorded in seeds:
            assert len(recorded) == 4 and isinstance(recorded[0], int) and recorded[1:] == [None] * 3
        assert seeds[0][0] != seeds[1][0]
    np.testing.assert_array_equal(runs[0], runs[1])  # the same seeds give the same episodes, resets included


def _interface_members():
    """The public members of the interface: annotated data, the property and the methods."""
    declared = (*vars(EnvPoolInterface), *EnvPoolInterface.__annotations__)
    return {name for name in declared if not name.startswith("_")}


def test_both_pool_kinds_have_the_interface_the_actor_groups_use():
    """Each method of the interface exists on both kinds with its parameters; an object lacking any member is not
    a pool. (Live pools of both kinds pass ``isinstance`` in test_pool_steps_match_in_process_environments.)"""
    methods = [name for name in _interface_members() if callable(vars(EnvPoolInterface).get(name))]
    assert methods
    for kind in (EnvPool, LocalEnvs):
        assert isinstance(vars(kind).get("num_processes"), property | int), kind.__name__
        for name in methods:
            expected = list(inspect.signature(getattr(EnvPoolInterface, name)).parameters)
            assert list(inspect.signature(getattr(kind, name)).parameters) == expected, (kind.__name__, name)
    local = make_envs(FaultyFactory(None, None), [0, 1], [1, 2], (8, 8, 3), num_processes=0)
    assert isinstance(local, LocalEnvs) and isinstance(local, EnvPoolInterface)
    local.close()
    members = _interface_members()
    assert isinstance(type("Complete", (), dict.fromkeys(members, 0))(), EnvPoolInterface)
    for name in members:
        stub = type("Stub", (), dict.fromkeys(members - {name}, 0))
        assert not isinstance(stub(), EnvPoolInterface), name


@pytest.mark.parametrize("num_envs", [1, 2, 5, 12])
@pytest.mark.parametrize("num_groups", [1, 2, 3, 5, 16])
@pytest.mark.parametrize("num_processes", [0, 1, 2, 3, 7, 16])
def test_group_layout_splits_environments_and_processes_evenly(num_envs, num_groups, num_processes):
    layout = group_layout(num_envs, num_groups, num_processes)
    assert len(layout) == min(num_groups, num_envs)
    los, his, procs = (np.array(column) for column in zip(*layout, strict=True))
    assert los[0] == 0 and his[-1] == num_envs and (his[:-1] == los[1:]).all()  # contiguous, each once
    sizes = his - los
    assert sizes.min() >= 1 and sizes.max() - sizes.min() <= 1
    if num_processes == 0:
        assert (procs == 0).all()
    else:
        assert procs.min() >= 1 and procs.max() - procs.min() <= 1
        assert procs.sum() == max(num_processes, len(layout))  # all processes used; one each at least


def test_group_layout_refuses_what_cannot_be_split():
    with pytest.raises(ValueError, match="at least one environment"):
        group_layout(0, 2, 1)
    with pytest.raises(ValueError, match="cannot be negative"):
        group_layout(4, 2, -1)


@pytest.mark.faults
def test_killed_process_is_restarted_and_its_episodes_cut():
    suite = make_suite(SUITE)
    tasks = [0, 0, 1, 1, 2, 2]
    with EnvPool(suite.make_env, tasks, list(range(6)), OBS_SHAPE, num_processes=2, timeout_s=20) as pool:
        pool.step(np.zeros(6, np.int32))
        old = pool.process_ids()
        pool.kill_process(1, signal.SIGKILL)
        result = pool.step(np.zeros(6, np.int32))
        np.testing.assert_array_equal(result.cut, [False, False, False, True, True, True])
        assert result.done[3:].all() and (result.rewards[3:] == 0).all()
        assert pool.process_ids()[0] == old[0] and pool.process_ids()[1] != old[1]
        np.testing.assert_array_equal(pool.restarts_per_task(3), [0, 1, 2])
        assert pool.process_restarts == 1
        for _ in range(5):  # the run goes on
            assert not pool.step(np.ones(6, np.int32)).cut.any()


@pytest.mark.faults
@pytest.mark.parametrize("fault,float_obs", [("hang", False), ("nan_reward", False), ("nan_obs", True),
                                             ("crash", False)])
def test_faulty_environment_restarts_its_process(tmp_path, fault, float_obs):
    factory = FaultyFactory(fault, str(tmp_path / "fired"), float_obs)
    tasks = [0, 0, 1, 1]
    dtype = np.float32 if float_obs else np.uint8
    with EnvPool(factory, tasks, [1, 2, 3, 4], (8, 8, 3), dtype, num_processes=2, timeout_s=1.5) as pool:
        cuts = np.zeros(4, int)
        start = time.monotonic()
        for _ in range(6):
            result = pool.step(np.zeros(4, np.int32))
            cuts += result.cut
            assert np.isfinite(result.rewards).all() and np.isfinite(result.observations).all()
        assert time.monotonic() - start < 10
        np.testing.assert_array_equal(cuts, [0, 0, 1, 1])
        np.testing.assert_array_equal(pool.restarts_per_task(2), [0, 2])


@pytest.mark.faults
def test_in_process_environment_faults_restart_the_environment(tmp_path):
    factory = FaultyFactory("nan_reward", str(tmp_path / "fired"))
    envs = LocalEnvs(factory, [0, 1], [1, 2])
    cuts = sum(envs.step(np.zeros(2, np.int32)).cut.astype(int) for _ in range(5))
    np.testing.assert_array_equal(cuts, [0, 1])
    np.testing.assert_array_equal(envs.restarts_per_task(2), [0, 1])
    envs.close()


class _CloseCrashes(FaultyEnv):
    def close(self):
        os.kill(os.getpid(), signal.SIGSEGV)


def _close_crashes(task, seed):
    return _CloseCrashes() if task == 0 else _HangingClose()


class _HangingClose(FaultyEnv):
    def close(self):
        time.sleep(600)


def test_shutdown_is_clean_even_when_engines_crash_or_hang_in_close():
    pool = EnvPool(_close_crashes, [0, 1], [1, 2], (8, 8, 3), num_processes=2, timeout_s=5)
    pool.step(np.zeros(2, np.int32))
    pids = pool.process_ids()
    start = time.monotonic()
    pool.close(timeout_s=2.0)
    assert time.monotonic() - start < 5
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    pool.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        pool.step(np.zeros(2, np.int32))


@pytest.mark.faults
def test_killed_busy_process_is_noticed_and_restarted_within_two_seconds(tmp_path):
    """A process killed in the middle of a step is seen dead through its sentinel, not the 60 s timeout."""
    factory = FaultyFactory("hang", str(tmp_path / "fired"))
    with EnvPool(factory, [0, 0, 1, 1], [1, 2, 3, 4], (8, 8, 3), num_processes=2, timeout_s=60) as pool:
        pool.step(np.zeros(4, np.int32))
        pool.step(np.zeros(4, np.int32))  # the next step of task 1 hangs
        restarted = {}
        restart = pool._restart

        def timed_restart(proc, reason):
            restarted["noticed"] = time.monotonic()
            restart(proc, reason)
            restarted["running"] = time.monotonic()

        pool._restart = timed_restart
        victim = pool.process_ids()[1]
        killed = {}

        def kill_soon():
            time.sleep(0.5)
            killed["at"] = time.monotonic()
            os.kill(victim, signal.SIGKILL)

        killer = threading.Thread(target=kill_soon)
        killer.start()
        result = pool.step(np.zeros(4, np.int32))
        killer.join()
        np.testing.assert_array_equal(result.cut, [False, False, True, True])
        print(f"killed process noticed after {restarted['noticed'] - killed['at']:.3f} s, "
              f"running again after {restarted['running'] - killed['at']:.3f} s")
        assert restarted["noticed"] - killed["at"] < 2.0
        assert restarted["running"] - killed["at"] < 2.0 * 5  # a fresh interpreter on a loaded machine
        assert pool.process_ids()[1] != victim


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.faults
def test_pool_processes_die_with_their_owner():
    """kill -9 of the process owning a pool leaves none of the pool's processes alive."""
    code = (f"import sys, time; sys.path.insert(0, {os.getcwd()!r}); import numpy as np; "
            "from distral_tf.envs.pool import EnvPool; from distral_tf.envs import make_suite; "
            "pool = EnvPool(make_suite('two_rooms_small').make_env, [0, 1, 2], [1, 2, 3], (40, 40, 3), "
            "num_processes=3); print(*pool.process_ids(), flush=True); time.sleep(120)")
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        children = [int(p) for p in owner.stdout.readline().split()]
        assert len(children) == 3 and all(_alive(p) for p in children)
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(p) for p in children):
            time.sleep(0.1)
        assert not any(_alive(p) for p in children)
    finally:
        owner.kill()
