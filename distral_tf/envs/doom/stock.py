"""ViZDoom's own scenarios (``basic``, ``my_way_home``) as tasks with the Doom suites' conventions.

These are references with known learning curves elsewhere: a training path that cannot
learn ``basic`` cannot be trusted on the mazes. The scenario's map, rewards, start time and
time-out are ViZDoom's (its ``.cfg``); what the agent sees and does is the project's:
84x84 RGB frames (rendered at 160x120 and sampled at the centres of an 84x84 grid), the
nine shared actions of :mod:`distral_tf.envs.doom.actions` (or, with ``buttons="scenario"``, the
scenario's own buttons, one action each), each held for ``ACTION_REPEAT`` tics. ``basic``: kill
the monster in front (+101 for the kill, -5 per missed shot, -1 per tic; a time-out at 300 tics,
75 agent steps). ``my_way_home``: find
the armour in a maze of rooms (+1, -0.0001 per tic; a time-out at 2,100 tics, 525 agent
steps). An episode that ends by the scenario's goal is ``terminated``; one that reaches
the time-out is ``truncated``.

The game runs in this process: inside the trainer's environment processes a crash ends
that process only, and the pool restarts it.
"""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np

from distral_tf.envs.doom import actions
from distral_tf.envs.doom.engine_process import OBS_SIZE, RESIZE_FILTERS, resize

SCENARIOS = ("basic", "my_way_home")
BUTTON_SETS = ("shared", "scenario")


class StockScenarioEnv(gym.Env):
    """One of ViZDoom's stock scenarios (``scenario`` in :data:`SCENARIOS`)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 35 // actions.ACTION_REPEAT}

    def __init__(self, scenario: str = "basic", episode_length: int | None = None, render_mode: str | None = None,
                 frame_resize: str = "nearest", buttons: str = "shared"):
        if scenario not in SCENARIOS:
            raise ValueError(f"Unknown ViZDoom scenario {scenario!r}; expected one of {', '.join(SCENARIOS)}.")
        if buttons not in BUTTON_SETS:
            raise ValueError(f"Unknown buttons {buttons!r}; expected one of {', '.join(BUTTON_SETS)}.")
        if frame_resize not in RESIZE_FILTERS:
            raise ValueError(f"Unknown frame_resize {frame_resize!r}; expected one of {RESIZE_FILTERS}.")
        import vizdoom as vzd

        self.scenario = scenario
        self.render_mode = render_mode
        self.frame_resize = frame_resize
        self.observation_space = gym.spaces.Box(0, 255, (OBS_SIZE, OBS_SIZE, 3), np.uint8)
        game = vzd.DoomGame()
        game.load_config(os.path.join(vzd.scenarios_path, f"{scenario}.cfg"))
        if buttons == "shared":
            game.set_available_buttons([getattr(vzd.Button, b) for b in actions.BUTTONS])
            self._buttons = [list(vector) for vector in actions.BUTTON_VECTORS]
        else:  # the scenario's own buttons, one action each (basic: move left, move right, attack)
            count = len(game.get_available_buttons())
            self._buttons = [[int(i == j) for j in range(count)] for i in range(count)]
        self.buttons = buttons
        self.action_space = gym.spaces.Discrete(len(self._buttons))
        game.set_screen_resolution(vzd.ScreenResolution.RES_160X120)
        game.set_screen_format(vzd.ScreenFormat.RGB24)
        game.set_window_visible(False)
        game.set_sound_enabled(False)
        game.set_mode(vzd.Mode.PLAYER)
        if episode_length is not None:  # agent steps; the scenario's own time-out otherwise
            if episode_length < 1:
                raise ValueError(f"episode_length must be positive, got {episode_length}.")
            game.set_episode_timeout(int(episode_length) * actions.ACTION_REPEAT)
        self.episode_length = game.get_episode_timeout() // actions.ACTION_REPEAT
        self._game = game
        self._started = False
        self._obs = np.zeros(self.observation_space.shape, np.uint8)
        self._t = 0

    def _observe(self) -> np.ndarray:
        state = self._game.get_state()
        if state is not None:  # None once the episode is over: the last frame stays
            self._obs = resize(state.screen_buffer, OBS_SIZE, self.frame_resize)
        return self._obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None and self._started:
            # A game reused across episodes keeps state that shows in the frames: a seeded reset starts
            # the game afresh, so that the same seed gives the same episode.
            self._game.close()
            self._started = False
        if not self._started:
            self._game.set_seed(int(self.np_random.integers(2**31 - 1)))
            self._game.init()
            self._started = True
        self._game.new_episode()
        self._t = 0
        return self._observe().copy(), {"frames": 0, "episode_step": 0}

    def step(self, action):
        if not self._started:
            raise RuntimeError("Call reset() before step().")
        reward = float(self._game.make_action(self._buttons[int(action)], actions.ACTION_REPEAT))
        self._t += 1
        finished = self._game.is_episode_finished()
        truncated = finished and self._game.is_episode_timeout_reached()
        obs = self._observe().copy()
        return obs, reward, bool(finished and not truncated), bool(truncated), {
            "frames": actions.ACTION_REPEAT, "episode_step": self._t}

    def render(self):
        return self._obs.copy()

    def close(self):
        if self._started:
            self._game.close()
            self._started = False
        super().close()
