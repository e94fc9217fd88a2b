"""The two-room grid world of the paper's section 4.1 (Figure 3).

Two rooms joined by a corridor. Each task has its own goal cell (drawn uniformly
from the free cells with the task's seed); the start cell is drawn uniformly at
every episode and again each time the goal is reached. The agent's state is
(cell, previous action, previous reward). Actions: up, down, left, right;
moving into a wall leaves the agent where it is.

Observations:
  * ``"index"``: the discrete state index (for the tabular learners), see
    :meth:`Layout.state_index`.
  * ``"image"``: an RGB uint8 image for the deep agents. Walls are grey, floor is
    black, the agent is a yellow cell. The goal is *not* drawn (tasks are told
    apart by which task network sees them, as in the paper; videos outline it,
    from :meth:`TwoRoomsEnv.goal_box`). The rest of the state is drawn on a border:
    the top and bottom strips take the colour of the previous action (black before
    the first action), the left and right strips are white when the previous
    reward was 1. ``docs/environments.md`` shows the colours.
"""

from __future__ import annotations

import dataclasses
import functools

import gymnasium as gym
import numpy as np

from distral_tf.envs.suites import Suite

# The suites of this module and its Gymnasium environment (read by distral_tf.envs.suites without importing it).
SUITES = ("two_rooms", "two_rooms_small")
ENVIRONMENTS = {"distral_tf/TwoRooms-v0": "distral_tf.envs.two_rooms:TwoRoomsEnv"}
(ENV_ID,) = ENVIRONMENTS
MEMORY_PER_ENV_BYTES = 2 << 20  # a small image and the worker's state

UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3
NUM_ACTIONS = 4
ACTION_NAMES = ("up", "down", "left", "right")
NO_ACTION = NUM_ACTIONS  # the "previous action" at the start of an episode
_MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]])

# "#" wall, "." room floor, "c" corridor floor.
LAYOUTS = {
    # Two 5x5 rooms joined by a corridor five cells long.
    "paper": (
        "#################",
        "#.....#####.....#",
        "#.....#####.....#",
        "#.....ccccc.....#",
        "#.....#####.....#",
        "#.....#####.....#",
        "#################",
    ),
    # Two 3x2 rooms joined by a one-cell doorway: goals are a few steps from every start.
    "small": (
        "#######",
        "#..#..#",
        "#..c..#",
        "#..#..#",
        "#######",
    ),
}

_ACTION_COLOURS = np.array(
    [[255, 0, 0], [0, 255, 0], [0, 96, 255], [255, 0, 255], [0, 0, 0]], dtype=np.uint8)
_WALL, _AGENT, _WHITE = (np.array(c, np.uint8) for c in ([128, 128, 128], [255, 255, 0], [255, 255, 255]))


@dataclasses.dataclass(frozen=True)
class Layout:
    """A grid as lookup tables over its free cells (shared by the env and the tabular learners).

    Attributes:
      name: the layout's name in :data:`LAYOUTS`.
      grid: the map, one string per row.
      cells: ``[C, 2]`` (row, column) of the free cells, row-major.
      next_cell: ``[C, 4]`` index of the cell reached by each action.
      corridor: indices of the corridor cells, left to right.
    """

    name: str
    grid: tuple[str, ...]
    cells: np.ndarray
    next_cell: np.ndarray
    corridor: np.ndarray

    @property
    def num_cells(self) -> int:
        return len(self.cells)

    @property
    def num_states(self) -> int:
        """Cells x (4 previous actions + "none") x (previous reward 0 or 1)."""
        return self.num_cells * (NUM_ACTIONS + 1) * 2

    def state_index(self, cell, prev_action, prev_reward):
        """``(cell * 5 + prev_action) * 2 + prev_reward``; works elementwise on arrays."""
        return (np.asarray(cell) * (NUM_ACTIONS + 1) + prev_action) * 2 + prev_reward

    def decode_state(self, state):
        """Inverse of :meth:`state_index`: ``(cell, prev_action, prev_reward)``."""
        state = np.asarray(state)
        return state // (2 * (NUM_ACTIONS + 1)), (state // 2) % (NUM_ACTIONS + 1), state % 2


@functools.cache
def get_layout(name: str) -> Layout:
    """Builds (once) the lookup tables of the layout called ``name``."""
    if name not in LAYOUTS:
        raise ValueError(f"Unknown layout {name!r}; layouts are {', '.join(LAYOUTS)}.")
    grid = LAYOUTS[name]
    cells = np.array([(r, c) for r, row in enumerate(grid) for c, ch in enumerate(row) if ch != "#"])
    index = {tuple(rc): i for i, rc in enumerate(cells.tolist())}
    next_cell = np.array([[index.get((r + dr, c + dc), i) for dr, dc in _MOVES]
                          for i, (r, c) in enumerate(cells.tolist())])
    corridor = np.array([i for i, (r, c) in enumerate(cells.tolist()) if grid[r][c] == "c"])
    for arr in (cells, next_cell, corridor):
        arr.setflags(write=False)
    return Layout(name, grid, cells, next_cell, corridor)


def optimal_values(layout: Layout, goal: int, episode_length: int) -> np.ndarray:
    """``[T + 1, C]`` best expected return from each cell with ``T - t`` steps left, by backward induction.

    The dynamics are the environment's: a move into a wall stays, reaching the goal
    gives reward 1 and a new start uniform over the free cells other than the goal,
    and the episode is cut after ``T = episode_length`` steps (undiscounted)::

        V_T(c) = 0
        V_t(c) = max_a  1 + mean_{c' != goal} V_{t+1}(c')   if next(c, a) = goal
                        V_{t+1}(next(c, a))                  otherwise

    The previous action and reward, also part of the state, change neither the
    moves nor the rewards, so the cell and the steps left suffice.
    """
    starts = np.arange(layout.num_cells) != goal
    hit = layout.next_cell == goal  # [C, A]
    values = np.zeros((int(episode_length) + 1, layout.num_cells))
    for t in range(int(episode_length) - 1, -1, -1):
        after = values[t + 1]
        values[t] = np.where(hit, 1.0 + after[starts].mean(), after[layout.next_cell]).max(-1)
    return values


def optimal_return(layout: Layout, goal: int, episode_length: int) -> float:
    """The best achievable expected return of an episode (from the uniform start; see :func:`optimal_values`)."""
    return float(optimal_values(layout, goal, episode_length)[0, np.arange(layout.num_cells) != goal].mean())


def task_optimal_return(env_kwargs) -> float:
    """:func:`optimal_return` of the task built by ``TwoRoomsEnv(**env_kwargs)`` (the suites' hook)."""
    layout = get_layout(env_kwargs.get("layout", "paper"))
    goal = env_kwargs.get("goal")
    goal = task_goal(layout, env_kwargs.get("task_seed", 0)) if goal is None else int(goal)
    return optimal_return(layout, goal, env_kwargs.get("episode_length", 100))


def task_goal(layout: Layout, task_seed: int) -> int:
    """The goal cell of task ``task_seed``: uniform over the free cells."""
    return int(np.random.default_rng(task_seed).integers(layout.num_cells))


def draw_goals(layout: Layout, num_tasks: int, seed: int) -> np.ndarray:
    """``num_tasks`` distinct goal cells, uniform over the free cells (one per task)."""
    return np.random.default_rng(seed).choice(layout.num_cells, num_tasks, replace=False)


class TwoRoomsEnv(gym.Env):
    """One task of the two-room grid world: reward 1 at the goal, then a new random start.

    Episodes have a fixed length and end by truncation. ``info`` holds ``cell``
    (the free-cell index), ``position`` (row, column), ``goal``, ``state``
    (the discrete state index) and ``goals`` (times the goal was reached this
    episode; an episode that reaches it at least once is a success, see
    :attr:`success_key`).

    Args:
      layout: ``"paper"`` or ``"small"`` (see :data:`LAYOUTS`).
      goal: goal cell index; ``None`` draws it uniformly with ``task_seed``.
      task_seed: seed of the task's goal when ``goal`` is None.
      observation: ``"image"`` (uint8 RGB) or ``"index"`` (discrete state).
      episode_length: steps per episode.
      image_size: side of the square image observation, in pixels.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    success_key = "goals"  # the info count whose being positive at an episode's end marks a success

    def __init__(self, layout: str = "paper", goal: int | None = None, task_seed: int = 0,
                 observation: str = "image", episode_length: int = 100, image_size: int = 84,
                 render_mode: str | None = None):
        self.layout = get_layout(layout)
        self.goal = task_goal(self.layout, task_seed) if goal is None else int(goal)
        if not 0 <= self.goal < self.layout.num_cells:
            raise ValueError(f"goal must be a cell index in [0, {self.layout.num_cells}), got {goal}.")
        if observation not in ("image", "index"):
            raise ValueError(f"observation must be 'image' or 'index', got {observation!r}.")
        if episode_length < 1:
            raise ValueError(f"episode_length must be positive, got {episode_length}.")
        self.observation_kind = observation
        self.episode_length = int(episode_length)
        self.render_mode = render_mode
        self.action_space = gym.spaces.Discrete(NUM_ACTIONS)
        rows, cols = len(self.layout.grid), len(self.layout.grid[0])
        self._border = max(1, image_size // 20)
        self._cell_px = (image_size - 2 * self._border) // max(rows, cols)
        if self._cell_px < 1:
            raise ValueError(f"image_size {image_size} is too small for a {rows}x{cols} grid.")
        self.image_size = int(image_size)
        if observation == "image":
            self.observation_space = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        else:
            self.observation_space = gym.spaces.Discrete(self.layout.num_states)
        self._background = self._draw_background(rows, cols)
        self._cell, self._prev_action, self._prev_reward, self._t = 0, NO_ACTION, 0, 0
        self._goals = 0

    def _draw_background(self, rows, cols):
        img = np.zeros((self.image_size, self.image_size, 3), np.uint8)
        p = self._cell_px
        self._origin = ((self.image_size - rows * p) // 2, (self.image_size - cols * p) // 2)
        for r, row in enumerate(self.layout.grid):
            for c, ch in enumerate(row):
                if ch == "#":
                    img[self._cell_slice(r, c)] = _WALL
        return img

    def _cell_slice(self, r, c):
        p, (r0, c0) = self._cell_px, self._origin
        return slice(r0 + r * p, r0 + (r + 1) * p), slice(c0 + c * p, c0 + (c + 1) * p)

    def goal_box(self) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` pixels of the goal's cell in the image (bottom and right exclusive)."""
        rows, cols = self._cell_slice(*self.layout.cells[self.goal])
        return rows.start, cols.start, rows.stop, cols.stop

    def _random_start(self) -> int:
        """A uniformly drawn free cell other than the goal."""
        cell = int(self.np_random.integers(self.layout.num_cells - 1))
        return cell + (cell >= self.goal)

    def _observation(self):
        if self.observation_kind == "index":
            return int(self.layout.state_index(self._cell, self._prev_action, self._prev_reward))
        return self.render()

    def _info(self):
        return {"cell": self._cell, "position": tuple(int(x) for x in self.layout.cells[self._cell]),
                "goal": self.goal, "goals": self._goals,
                "state": int(self.layout.state_index(self._cell, self._prev_action, self._prev_reward))}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._cell, self._prev_action, self._prev_reward, self._t = self._random_start(), NO_ACTION, 0, 0
        self._goals = 0
        return self._observation(), self._info()

    def step(self, action):
        action = int(action)
        if not 0 <= action < NUM_ACTIONS:
            raise ValueError(f"action must be in [0, {NUM_ACTIONS}), got {action}.")
        self._cell = int(self.layout.next_cell[self._cell, action])
        reward = 0.0
        if self._cell == self.goal:
            reward = 1.0
            self._goals += 1
            self._cell = self._random_start()
        self._prev_action, self._prev_reward = action, int(reward)
        self._t += 1
        truncated = self._t >= self.episode_length
        return self._observation(), reward, False, truncated, self._info()

    def render(self):
        """The image observation (also returned by ``render()`` in ``"rgb_array"`` mode)."""
        img = self._background.copy()
        img[self._cell_slice(*self.layout.cells[self._cell])] = _AGENT
        b = self._border
        img[:b] = img[-b:] = _ACTION_COLOURS[self._prev_action]
        img[:, :b] = img[:, -b:] = _WHITE if self._prev_reward else 0
        return img


# Each suite's goals are drawn once, with a fixed seed, by draw_goals().
_SUITE_SPECS = {
    "two_rooms": dict(layout="paper", num_tasks=8, goal_seed=0, episode_length=100, image_size=84),
    "two_rooms_small": dict(layout="small", num_tasks=3, goal_seed=0, episode_length=40, image_size=40),
}


def suite(name: str) -> Suite:
    """The suite ``two_rooms`` (paper layout, 8 tasks, 84x84 images) or ``two_rooms_small``.

    ``two_rooms_small`` is the small family for tests and smoke runs: three tasks on
    the small layout, 40x40 images, 40-step episodes.
    """
    if name not in _SUITE_SPECS:
        raise ValueError(f"Unknown two-rooms suite {name!r}; suites are {', '.join(SUITES)}.")
    spec = _SUITE_SPECS[name]
    layout = get_layout(spec["layout"])
    kwargs = tuple(dict(layout=spec["layout"], goal=int(g), observation="image",
                        episode_length=spec["episode_length"], image_size=spec["image_size"])
                   for g in draw_goals(layout, spec["num_tasks"], spec["goal_seed"]))
    names = tuple(f"{name}_goal{k['goal']}" for k in kwargs)
    return Suite(name=name, task_names=names, env_ids=(ENV_ID,) * len(names), env_kwargs=kwargs,
                 frames_per_step=1, optimal_return=task_optimal_return, memory_per_env_bytes=MEMORY_PER_ENV_BYTES)
