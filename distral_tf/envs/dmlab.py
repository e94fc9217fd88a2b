"""DeepMind Lab as a Gymnasium environment, written against ``deepmind_lab``'s documented Python API.

DeepMind Lab has no wheel; build its Python package with Bazel (see ``WORKSPACE`` and
``docs/dmlab.md``). Without it, making an environment raises an ImportError that says
how; the suites themselves are plain data and always available.

API facts this module relies on: ``deepmind_lab.Lab(level, observations, config,
renderer)`` takes config values as strings; ``reset(seed=...)`` takes an int seed;
``step(action, num_steps)`` takes a ``np.intc`` array of 7 values and returns the
reward summed over the frames; ``observations()`` may only be called while
``is_running()`` (so the last frame is cached for the end of an episode, which the
level decides: it is reported as truncation).
"""

from __future__ import annotations

import importlib

import gymnasium as gym
import numpy as np

from distral_tf.envs.suites import Suite

# The suites of this module and its Gymnasium environment (read by distral_tf.envs.suites without importing it).
SUITES = ("dmlab_mazes", "dmlab_navigation", "dmlab_lasertag")
ENVIRONMENTS = {"distral_tf/DMLab-v0": "distral_tf.envs.dmlab:DMLabEnv"}
(ENV_ID,) = ENVIRONMENTS
MEMORY_PER_ENV_BYTES = 64 << 20
# The level decides when an episode ends: levels run 60-120 s at 60 frames/s, with an action repeat of 4
# at most 1,800 agent steps.
MAX_EPISODE_STEPS = 1_800
ACTION_REPEAT = 4
OBSERVATION = "RGB_INTERLEAVED"
BUILD_HELP = (
    "The `deepmind_lab` module is not installed. DeepMind Lab has no pip wheel: build its Python "
    "package with Bazel from the WORKSPACE at the root of this repository "
    "(`bazel build @deepmind_lab//:deepmind_lab.so` and the pip package, see docs/dmlab.md), then "
    "`pip install` the wheel it writes. The Doom suites (doom_mazes, doom_navigation, doom_lasertag) "
    "need no build."
)

# The nine actions used by IMPALA on DeepMind Lab, as 7-vectors: look left/right (pixels per frame),
# look down/up, strafe left/right, move back/forward, fire, jump, crouch.
ACTION_SET = (
    (0, 0, 0, 1, 0, 0, 0),  # forward
    (0, 0, 0, -1, 0, 0, 0),  # backward
    (0, 0, -1, 0, 0, 0, 0),  # strafe left
    (0, 0, 1, 0, 0, 0, 0),  # strafe right
    (-20, 0, 0, 0, 0, 0, 0),  # look left
    (20, 0, 0, 0, 0, 0, 0),  # look right
    (-20, 0, 0, 1, 0, 0, 0),  # look left + forward
    (20, 0, 0, 1, 0, 0, 0),  # look right + forward
    (0, 0, 0, 0, 1, 0, 0),  # fire
)

_DMLAB30 = "contributed/dmlab30/"
_LEVELS = {
    "dmlab_mazes": ("nav_maze_static_01", "nav_maze_static_02", "nav_maze_static_03",
                    "nav_maze_random_goal_01", "nav_maze_random_goal_02", "nav_maze_random_goal_03",
                    _DMLAB30 + "explore_object_locations_small", _DMLAB30 + "explore_object_locations_large"),
    "dmlab_navigation": (_DMLAB30 + "explore_object_rewards_many", _DMLAB30 + "explore_object_locations_small",
                         _DMLAB30 + "explore_goal_locations_small", _DMLAB30 + "explore_obstructed_goals_small"),
    "dmlab_lasertag": ("lt_chasm", "lt_hallway_slope", "lt_horseshoe_color", "lt_space_bounce_hard",
                       _DMLAB30 + "lasertag_one_opponent_small", _DMLAB30 + "lasertag_three_opponents_small",
                       _DMLAB30 + "lasertag_one_opponent_large", _DMLAB30 + "lasertag_three_opponents_large"),
}


def _import_deepmind_lab():
    try:
        return importlib.import_module("deepmind_lab")
    except ImportError as e:
        raise ImportError(BUILD_HELP) from e


class DMLabEnv(gym.Env):
    """One DeepMind Lab level with 84x84 RGB observations, the IMPALA action set and action repeat 4."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 60 // ACTION_REPEAT}

    def __init__(self, level: str = "nav_maze_static_01", width: int = 84, height: int = 84,
                 renderer: str = "software", config: dict | None = None, render_mode: str | None = None):
        if width % 4 or height % 4:
            raise ValueError(f"DeepMind Lab frame sizes must be multiples of 4, got {width}x{height}.")
        self.level = level
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0, 255, (84, 84, 3), np.uint8)
        self.action_space = gym.spaces.Discrete(len(ACTION_SET))
        self._actions = np.array(ACTION_SET, dtype=np.intc)
        lab_config = {"width": width, "height": height, "fps": 60, **(config or {})}
        self._lab = _import_deepmind_lab().Lab(
            level, [OBSERVATION], config={str(k): str(v) for k, v in lab_config.items()}, renderer=renderer)
        self._size = (height, width)
        self._obs = np.zeros((84, 84, 3), np.uint8)

    def _observe(self) -> np.ndarray:
        frame = np.asarray(self._lab.observations()[OBSERVATION], dtype=np.uint8)
        if frame.shape[:2] != (84, 84):
            from PIL import Image

            frame = np.asarray(Image.fromarray(frame).resize((84, 84), Image.BOX))
        self._obs = frame
        return frame

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._lab.reset(seed=int(self.np_random.integers(2**31 - 1)))
        return self._observe(), {"frames": 0}

    def step(self, action):
        reward = float(self._lab.step(self._actions[int(action)], num_steps=ACTION_REPEAT))
        running = self._lab.is_running()
        obs = self._observe() if running else self._obs  # observations() fails once the episode is over
        return obs, reward, False, not running, {"frames": ACTION_REPEAT}

    def render(self):
        return self._obs.copy()

    def close(self):
        lab, self._lab = getattr(self, "_lab", None), None
        if lab is not None:
            lab.close()
        super().close()


def suite(name: str) -> Suite:
    """The DeepMind Lab suite called ``name`` (building its environments needs ``deepmind_lab``)."""
    if name not in _LEVELS:
        raise ValueError(f"Unknown DeepMind Lab suite {name!r}; choose from {', '.join(SUITES)}.")
    levels = _LEVELS[name]
    return Suite(name=name, task_names=tuple(level.rsplit("/", 1)[-1] for level in levels),
                 env_ids=(ENV_ID,) * len(levels), env_kwargs=tuple({"level": level} for level in levels),
                 frames_per_step=ACTION_REPEAT, memory_per_env_bytes=MEMORY_PER_ENV_BYTES,
                 max_episode_steps=MAX_EPISODE_STEPS)
