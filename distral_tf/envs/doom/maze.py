"""Mazes (the paper's DeepMind Lab ``nav_maze`` tasks): fixed mazes with apples and a goal.

Task ``maze`` (0-7) is one fixed labmaze maze. Each episode places apples (+1 each)
and a goal (+10) at random; reaching the goal respawns the agent at a random cell
away from it, and the goal stays where it is for the rest of the episode.

``maze_set="paper"`` holds the eight mazes of ``doom_mazes`` (11x11 to 19x19 cells, 37 to
122 floor cells); ``"small"`` eight smaller ones of the same structure (9x9 and 11x11
cells, 26 to 55 floor cells) for ``doom_mazes_small``, the reduced-scale stand-in that an
agent learns on a 2-core machine.
"""

from __future__ import annotations

import numpy as np

from distral_tf.envs.doom.env import DoomEnv, Scene
from distral_tf.envs.doom.scenes import GOAL_RADIUS, far_cell, make_scene, pick_cells, random_layout

# (size, max rooms) of the eight fixed mazes, small to large as in nav_maze_static_01..03.
MAZES = ((11, 2), (11, 3), (13, 3), (13, 4), (15, 4), (15, 5), (17, 5), (19, 6))
SMALL_MAZES = ((9, 2), (9, 2), (9, 3), (9, 3), (11, 2), (11, 2), (11, 3), (11, 3))
MAZE_SETS = {"paper": (MAZES, 20170707), "small": (SMALL_MAZES, 20171204)}  # sizes and the seed of their layouts


def fixed_layout(maze: int, maze_set: str = "paper"):
    """The layout of maze ``maze`` (0-7) of ``maze_set``."""
    if maze_set not in MAZE_SETS:
        raise ValueError(f"Unknown maze_set {maze_set!r}; expected one of {', '.join(MAZE_SETS)}.")
    sizes, seed = MAZE_SETS[maze_set]
    size, rooms = sizes[maze]
    return random_layout(np.random.default_rng([seed, maze]), size, max_rooms=rooms)


class GoalTask(DoomEnv):
    """Shared goal logic: +``goal_reward`` within reach of the goal, then a respawn away from it."""

    goal_reward = 10.0
    apple_reward = 1.0
    success_key = "goals"  # the info count whose being positive at an episode's end marks a success

    def _goal_reached(self) -> bool:
        return self.scene.goal is not None and self.distance_to(self.scene.goal) < GOAL_RADIUS

    def _respawn_cell(self):
        return far_cell(self.rng, self.scene.layout, self.scene.goal, min_distance=3)

    def _on_goal(self) -> None:
        self.warp(self._respawn_cell())

    def _task_reward(self, prev: np.ndarray, now: np.ndarray) -> float:
        reward = 0.0
        apples = self.var("ITEMCOUNT", now) - self.var("ITEMCOUNT", prev)
        if apples > 0:
            reward += self.apple_reward * apples
            self.count("apples", apples)
        if self._goal_reached() and not self._pending:
            reward += self.goal_reward
            self.count("goals")
            self._on_goal()
        return reward


class DoomMazeEnv(GoalTask):
    """One of eight fixed mazes; apples and goal placed at random each episode."""

    def __init__(self, maze: int = 0, apple_density: float = 0.15, episode_length: int = 900,
                 maze_set: str = "paper", **kwargs):
        if not 0 <= maze < len(MAZES):
            raise ValueError(f"maze must be in [0, {len(MAZES)}), got {maze}.")
        self.layout = fixed_layout(maze, maze_set)
        super().__init__(episode_length=episode_length, **kwargs)
        self.maze = maze
        self.maze_set = maze_set
        self.apple_density = apple_density

    def _generate_family(self, rng: np.random.Generator) -> list[Scene]:
        cells = self.layout.floor_cells()
        goal = cells[int(rng.integers(len(cells)))]
        start = far_cell(rng, self.layout, goal, min_distance=3)
        apples = pick_cells(rng, cells, int(round(self.apple_density * len(cells))), exclude=(goal, start))
        return [make_scene(self.layout, start, goal=goal, apples=apples, theme_offset=self.maze, rng=rng)]
