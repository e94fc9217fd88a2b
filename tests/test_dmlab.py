"""The DeepMind Lab adapter against a double of ``deepmind_lab`` that enforces its documented API."""

import sys
import types

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from distral_tf.envs import make_suite
from distral_tf.envs.dmlab import ACTION_SET, BUILD_HELP, DMLabEnv

_ACTION_SPEC = [
    {"name": "LOOK_LEFT_RIGHT_PIXELS_PER_FRAME", "min": -512, "max": 512},
    {"name": "LOOK_DOWN_UP_PIXELS_PER_FRAME", "min": -512, "max": 512},
    {"name": "STRAFE_LEFT_RIGHT", "min": -1, "max": 1},
    {"name": "MOVE_BACK_FORWARD", "min": -1, "max": 1},
    {"name": "FIRE", "min": 0, "max": 1},
    {"name": "JUMP", "min": 0, "max": 1},
    {"name": "CROUCH", "min": 0, "max": 1},
]


class FakeLab:
    """Behaves like ``deepmind_lab.Lab`` where the adapter depends on it, and is strict about types."""

    instances = []
    episode_frames = 40

    def __init__(self, level, observations, config=None, renderer="software", level_cache=None):
        if not isinstance(level, str) or not isinstance(observations, list):
            raise TypeError("level must be a str and observations a list")
        config = {} if config is None else config
        for key, value in config.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"Config keys and values must be strings: {key!r}: {value!r}")
        if renderer not in ("software", "hardware"):
            raise ValueError(f"Unknown renderer {renderer!r}")
        self.width, self.height = int(config.get("width", "320")), int(config.get("height", "240"))
        for name in observations:
            if name not in ("RGB_INTERLEAVED", "RGBD_INTERLEAVED", "RGB", "RGBD"):
                raise ValueError(f"Unknown observation {name!r}")
        self.level, self.config, self.observation_names = level, config, observations
        self.running, self.frames, self.closed, self.seeds = False, 0, False, []
        FakeLab.instances.append(self)

    def _check_open(self):
        if self.closed:
            raise RuntimeError("Environment has been closed")

    def action_spec(self):
        return list(_ACTION_SPEC)

    def reset(self, episode=-1, seed=None):
        self._check_open()
        if seed is not None:
            if not isinstance(seed, int) or isinstance(seed, bool):
                raise TypeError("seed must be an int")
            if not 0 <= seed < 2**31:
                raise OverflowError("seed out of range")
        self.seeds.append(seed)
        self.rng = np.random.default_rng(seed)
        self.running, self.frames = True, 0
        return True

    def step(self, action, num_steps=1):
        self._check_open()
        if not self.running:
            raise RuntimeError("Environment in wrong status to advance")
        if not isinstance(action, np.ndarray) or action.dtype != np.intc:
            raise TypeError("action must be a numpy array of dtype np.intc")
        if action.shape != (len(_ACTION_SPEC),):
            raise ValueError(f"action must have shape ({len(_ACTION_SPEC)},)")
        for value, spec in zip(action, _ACTION_SPEC, strict=True):
            if not spec["min"] <= value <= spec["max"]:
                raise ValueError(f"{spec['name']} out of range: {value}")
        if not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError("num_steps must be a positive int")
        reward = 0.0
        for _ in range(num_steps):
            self.frames += 1
            reward += 1.0 if action[3] == 1 else 0.0  # one point per frame spent moving forward
            if self.frames >= self.episode_frames:
                self.running = False
                break
        return reward

    def is_running(self):
        return self.running

    def num_steps(self):
        return self.frames

    def observations(self):
        self._check_open()
        if not self.running:
            raise RuntimeError("Environment in wrong status to call observations()")
        frame = self.rng.integers(0, 256, (self.height, self.width, 3), dtype=np.uint8)
        return {"RGB_INTERLEAVED": frame}

    def close(self):
        self.closed = True
        return True


@pytest.fixture
def fake_lab(monkeypatch):
    module = types.ModuleType("deepmind_lab")
    module.Lab = FakeLab
    monkeypatch.setitem(sys.modules, "deepmind_lab", module)
    FakeLab.instances = []
    return FakeLab


def test_missing_deepmind_lab_explains_how_to_build(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepmind_lab", None)  # makes the import fail
    suite = make_suite("dmlab_mazes")  # suites are data and need no engine
    with pytest.raises(ImportError, match="Bazel") as error:
        suite.make_env(0)
    assert str(error.value) == BUILD_HELP and "WORKSPACE" in BUILD_HELP


@pytest.mark.parametrize("name,count", [("dmlab_mazes", 8), ("dmlab_navigation", 4), ("dmlab_lasertag", 8)])
def test_suites(fake_lab, name, count):
    suite = make_suite(name)
    assert suite.num_tasks == count and suite.frames_per_step == 4
    for i in range(count):
        env = suite.make_env(i)
        assert env.action_space == gym.spaces.Discrete(9)
        env.close()
    assert all(lab.config == {"width": "84", "height": "84", "fps": "60"} for lab in fake_lab.instances)
    assert "lt_chasm" in make_suite("dmlab_lasertag").task_names


@pytest.mark.parametrize("name", ["dmlab_mazes", "dmlab_navigation", "dmlab_lasertag"])
def test_check_env(fake_lab, name):
    env = make_suite(name).make_env(0)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_steps_follow_the_lab_api(fake_lab):
    env = DMLabEnv(level="nav_maze_static_01")
    lab = fake_lab.instances[-1]
    obs, info = env.reset(seed=3)
    assert obs.shape == (84, 84, 3) and obs.dtype == np.uint8 and info["frames"] == 0
    assert isinstance(lab.seeds[-1], int) and 0 <= lab.seeds[-1] < 2**31
    _, reward, terminated, truncated, info = env.step(0)
    assert reward == 4.0 and info["frames"] == 4 and lab.frames == 4 and not (terminated or truncated)
    assert env.step(8)[1] == 0.0
    steps = 2
    while not truncated:  # the level ends the episode; observations() is then off limits
        last, _, terminated, truncated, _ = env.step(0)
        steps += 1
    assert steps == FakeLab.episode_frames // 4 and not terminated and last.shape == (84, 84, 3)
    env.reset()
    env.close()
    assert lab.closed


def test_action_set_is_valid_for_the_action_spec(fake_lab):
    assert len(ACTION_SET) == 9
    for action in ACTION_SET:
        for value, spec in zip(action, _ACTION_SPEC, strict=True):
            assert spec["min"] <= value <= spec["max"]


def test_double_is_strict_about_types_and_status(fake_lab):
    with pytest.raises(TypeError):
        FakeLab("nav_maze_static_01", ["RGB_INTERLEAVED"], {"width": 84})
    lab = FakeLab("nav_maze_static_01", ["RGB_INTERLEAVED"], {})
    with pytest.raises(RuntimeError):
        lab.observations()
    lab.reset(seed=1)
    with pytest.raises(TypeError):
        lab.step(np.zeros(7, np.int64))
    with pytest.raises(TypeError):
        lab.reset(seed=np.int64(1))
    with pytest.raises(ValueError):
        DMLabEnv(width=86)


def test_non_square_frames_are_resized(fake_lab):
    env = DMLabEnv(level="lt_chasm", width=96, height=72)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (84, 84, 3) and fake_lab.instances[-1].config["width"] == "96"
    env.close()
