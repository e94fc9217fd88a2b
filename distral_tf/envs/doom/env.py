"""The Gymnasium environment shared by every Doom task.

A task is a subclass that generates *scene families*: one family per episode, a
list of maps with the same geometry and different placements (siblings let a task
reset objects or doors mid-episode with a ~2 ms map switch). Families are generated
in batches, written to a fresh WAD in the environment's temporary directory, and the
engine is restarted on it. The engine runs in a child process (``isolate_engine=True``,
the default: an engine crash cannot take the caller down) or, inside an environment-pool
process that is itself isolated, in the same process (about four times faster); see
:mod:`distral_tf.envs.doom.engine`.

Observations are 84x84 RGB frames (rendered at 160x120 and sampled at the centres of an
84x84 grid, as a renderer at 84x84 would; ``frame_resize="area"`` averages instead); each agent
step holds one of the shared actions for ``ACTION_REPEAT`` engine frames; episodes
end by truncation after ``episode_length`` agent steps.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import weakref
from pathlib import Path

import gymnasium as gym
import numpy as np

from distral_tf.envs.doom import actions, topdown
from distral_tf.envs.doom.engine import OBS_SHAPE, Engine, EngineDiedError, InlineEngine
from distral_tf.envs.doom.engine_process import RESIZE_FILTERS
from distral_tf.envs.doom.mapgen import CELL_SIZE, Layout, cell_center, world_to_cell
from distral_tf.envs.doom.wad import UdmfMap, write_wad

VARIABLES = ("POSITION_X", "POSITION_Y", "ANGLE", "ITEMCOUNT", "ARMOR", "FRAGCOUNT", "DEATHCOUNT", "HEALTH",
             "PLAYER_COUNT")
_VAR = {name: i for i, name in enumerate(VARIABLES)}


@dataclasses.dataclass
class Scene:
    """One generated map plus what the task logic needs to know about it (cells are ``(row, col)``)."""

    level: UdmfMap
    layout: Layout
    start: tuple[int, int]
    goal: tuple[int, int] | None = None
    apples: tuple[tuple[int, int], ...] = ()
    objects: tuple[tuple[int, int], ...] = ()
    obstructions: tuple[tuple[int, int], ...] = ()
    name: str = ""


class DoomEnv(gym.Env):
    """Base class: engine lifecycle, scene pool, action repeat, truncation and bookkeeping."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 35 // actions.ACTION_REPEAT}
    procedural = True  # a new scene family every episode (False: one family, generated once)
    respawn_on_death = False
    game_args: tuple[str, ...] = ("+sv_cheats 1",)
    max_engine_starts = 3
    warmup_tics = 0  # engine tics run after each episode start (e.g. to let spawn effects fade)
    restart_on_seed = False  # True where a reused engine is not reproducible (bots keep state)

    def __init__(self, episode_length: int = 900, maps_per_wad: int = 16, render_mode: str | None = None,
                 track_objects: bool = False, fault_on_close: bool = False, isolate_engine: bool = True,
                 frame_resize: str = "nearest"):
        if episode_length < 1 or maps_per_wad < 1:
            raise ValueError("episode_length and maps_per_wad must be positive.")
        if frame_resize not in RESIZE_FILTERS:
            raise ValueError(f"Unknown frame_resize {frame_resize!r}; expected one of {RESIZE_FILTERS}.")
        self.frame_resize = frame_resize
        self.episode_length = int(episode_length)
        self.maps_per_wad = int(maps_per_wad)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0, 255, OBS_SHAPE, np.uint8)
        self.action_space = gym.spaces.Discrete(actions.NUM_ACTIONS)
        self._fault_on_close = fault_on_close
        self._engine_class = Engine if isolate_engine else InlineEngine
        self._track_objects = track_objects
        self._workdir = Path(tempfile.mkdtemp(prefix="distral_doom_"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._workdir, True)
        self._engine: Engine | InlineEngine | None = None
        self._engine_wad: str | None = None
        self._wad_count = 0
        self._wad_text: str | None = None
        self._families: list[list[Scene]] = []
        self._family_index = 0
        self._family: list[Scene] = []
        self.scene: Scene | None = None
        self._obs = np.zeros(OBS_SHAPE, np.uint8)
        self._vars = np.zeros(len(VARIABLES))
        self._pending: list[str] = []
        self._t = 0
        self.engine_restarts = 0
        self._episode_stats: dict[str, float] = {}
        self.rng: np.random.Generator | None = None

    # ---- hooks for tasks -------------------------------------------------------------------------

    def _generate_family(self, rng: np.random.Generator) -> list[Scene]:
        raise NotImplementedError

    def _episode_commands(self) -> list[str]:
        """Console commands run at the start of each episode (e.g. adding bots)."""
        return []

    def _task_reward(self, prev: np.ndarray, now: np.ndarray) -> float:
        """Reward of one agent step from the change in game variables; may queue commands or switch scenes."""
        raise NotImplementedError

    # ---- helpers for tasks -----------------------------------------------------------------------

    def var(self, name: str, variables: np.ndarray | None = None) -> float:
        return float((self._vars if variables is None else variables)[_VAR[name]])

    @property
    def objects(self) -> list[tuple[str, float, float]]:
        """``(name, x, y)`` of every object (needs ``track_objects=True``; the player is ``"DoomPlayer"``)."""
        return list(self._engine.objects or []) if self._engine is not None else []

    @property
    def position(self) -> tuple[float, float]:
        return self.var("POSITION_X"), self.var("POSITION_Y")

    @property
    def cell(self) -> tuple[int, int]:
        return world_to_cell(*self.position)

    def distance_to(self, cell: tuple[int, int]) -> float:
        x, y = cell_center(cell)
        px, py = self.position
        return float(np.hypot(px - x, py - y))

    def warp(self, cell: tuple[int, int]) -> None:
        """Moves the player to ``cell`` at the start of the next step."""
        x, y = cell_center(cell)
        self._pending.append(f"warp {x:.0f} {y:.0f}")

    def switch_scene(self, scene: Scene) -> None:
        """Reloads the episode on a sibling map (objects and doors reset; the player goes to its start)."""
        self.scene = scene
        self._obs, self._vars, _, _ = self._engine.episode(scene.name, self._episode_commands())

    def count(self, key: str, amount: float = 1.0) -> None:
        self._episode_stats[key] = self._episode_stats.get(key, 0.0) + amount

    # ---- scene pool and engine -------------------------------------------------------------------

    def _next_family(self) -> list[Scene]:
        if not self.procedural and self._families:
            return self._families[0]
        self._family_index += 1
        if self._family_index >= len(self._families):
            count = 1 if not self.procedural else self.maps_per_wad
            self._families = [self._generate_family(self.rng) for _ in range(count)]
            self._family_index = 0
            maps = {}
            for f, family in enumerate(self._families):
                for s, scene in enumerate(family):
                    scene.name = f"M{f:04d}{s:02d}"
                    maps[scene.name] = scene.level
            text = "".join(level.textmap() for level in maps.values())
            if self._engine is None or text != self._wad_text or self.restart_on_seed:
                self._wad_count += 1
                wad = write_wad(self._workdir / f"maps{self._wad_count}.wad", maps)
                self._wad_text = text
                self._start_engine(str(wad), next(iter(maps)))
        return self._families[self._family_index]

    def _start_engine(self, wad: str, first_map: str) -> None:
        self._close_engine()
        config = {"wad": wad, "map": first_map, "workdir": str(self._workdir), "buttons": actions.BUTTONS,
                  "variables": VARIABLES, "seed": int(self.rng.integers(2**31 - 1)),
                  "game_args": self.game_args, "respawn": self.respawn_on_death,
                  "fault_on_close": self._fault_on_close, "objects": self._track_objects,
                  "warmup_tics": self.warmup_tics, "resize": self.frame_resize}
        error = None
        self._engine_wad = wad  # a retry after a failed start uses this WAD
        for _ in range(self.max_engine_starts):
            try:
                self._engine = self._engine_class(config)
                return
            except EngineDiedError as e:
                error = e
        raise EngineDiedError(f"ViZDoom failed to start {self.max_engine_starts} times; last error: {error}. "
                              "Check that the `vizdoom` package imports and runs on this machine.")

    def _close_engine(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    # ---- Gymnasium API ---------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or self.rng is None:
            # Every random choice of the task and engine comes from ``rng``, itself drawn once per
            # seeding, so a seed fixes the whole sequence of mazes, placements and engine seeds.
            self.rng = np.random.default_rng(int(self.np_random.integers(2**63 - 1)))
            self._families, self._family_index = [], 0
            if seed is not None:
                # A game reused across episodes keeps state that shows in the frames (measured: 0.25-0.4%
                # of the pixels of two first observations after the same seed differed): a seeded reset
                # starts a fresh engine, so that the same seed gives the same episode.
                self._wad_text = None
        last_error = None
        for _ in range(self.max_engine_starts):
            try:
                if self._engine is None and self._families:
                    self._start_engine(self._engine_wad, self._families[0][0].name)
                self._family = self._next_family()
                self.scene = self._family[0]
                self._obs, self._vars, _, _ = self._engine.episode(
                    self.scene.name, self._episode_commands(), seed=int(self.rng.integers(2**31 - 1)))
                break
            except EngineDiedError as e:
                last_error = e
                self.engine_restarts += 1
                self._close_engine()
        else:
            raise EngineDiedError(f"The ViZDoom engine died {self.max_engine_starts} times in a row during "
                                  f"reset; last error: {last_error}")
        self._pending, self._t, self._episode_stats = [], 0, {}
        return self._obs, self._info(frames=0)

    def step(self, action):
        if self._engine is None:
            raise RuntimeError("Call reset() before step() (the engine was closed or died).")
        commands, self._pending = self._pending, []
        prev = self._vars
        try:
            self._obs, self._vars, _, finished = self._engine.step(
                actions.BUTTON_VECTORS[int(action)], actions.ACTION_REPEAT, commands)
        except EngineDiedError as e:
            # Report the lost episode as truncated; the next reset() starts a fresh engine.
            self.engine_restarts += 1
            self._close_engine()
            return self._obs, 0.0, False, True, self._info(frames=0, engine_error=str(e))
        self._t += 1
        reward = float(self._task_reward(prev, self._vars))
        self.count("return", reward)
        truncated = self._t >= self.episode_length
        return self._obs, reward, bool(finished), truncated, self._info(frames=actions.ACTION_REPEAT)

    def _info(self, frames: int, **extra) -> dict:
        return {"frames": frames, "episode_step": self._t, "engine_restarts": self.engine_restarts,
                **self._episode_stats, **extra}

    def render(self):
        return self._obs.copy()

    def top_down(self, scale: int = 8) -> np.ndarray:
        """An RGB top-down map of the current scene with the player's position."""
        if self.scene is None:
            raise RuntimeError("Call reset() first.")
        return topdown.render(self.scene, self.position, scale=scale, cell_size=CELL_SIZE)

    def close(self):
        self._close_engine()
        self._cleanup()
        super().close()
