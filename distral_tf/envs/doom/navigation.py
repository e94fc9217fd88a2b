"""Navigation (the paper's DeepMind Lab ``explore_*`` tasks): a new labmaze maze every episode.

Tasks (``task=``):

- ``object_rewards``: collect objects placed at random (+1 each); once all are taken a
  new set appears and the agent restarts at a random cell.
- ``fetch``: pick up an object (+1) and bring it back to the start area (+10); the next
  object then appears elsewhere.
- ``goal_locations``: one goal (+10) found again and again from different starts.
- ``obstructed_goals``: as ``goal_locations``, but doorways are randomly blocked; every
  time the goal is reached the blocked set is redrawn, forcing new paths.
"""

from __future__ import annotations

import numpy as np

from distral_tf.envs.doom import scenes
from distral_tf.envs.doom.env import Scene
from distral_tf.envs.doom.mapgen import Layout
from distral_tf.envs.doom.maze import GoalTask

TASKS = ("object_rewards", "fetch", "goal_locations", "obstructed_goals")
SIBLINGS = 4  # placements (or door states) per maze, cycled through within an episode


class DoomNavigationEnv(GoalTask):
    """A procedurally generated maze per episode; see the module docstring for the tasks."""

    def __init__(self, task: str = "goal_locations", maze_size: int = 13, max_rooms: int = 4,
                 num_objects: int = 8, episode_length: int = 900, **kwargs):
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}.")
        super().__init__(episode_length=episode_length, **kwargs)
        self.task = task
        self.maze_size = maze_size
        self.max_rooms = max_rooms
        self.num_objects = num_objects
        self._carrying = False

    @property
    def success_key(self) -> str | None:
        """The info count whose being positive at an episode's end marks a success (None: no success)."""
        return {"fetch": "objects_returned", "object_rewards": None}.get(self.task, "goals")

    # ---- generation ------------------------------------------------------------------------------

    def _generate_family(self, rng: np.random.Generator) -> list[Scene]:
        theme = int(rng.integers(8))
        if self.task == "obstructed_goals":
            return self._obstructed_family(rng, theme)
        layout = scenes.random_layout(rng, self.maze_size, max_rooms=self.max_rooms)
        cells = layout.floor_cells()
        if self.task == "object_rewards":
            family = []
            for _ in range(SIBLINGS):
                start = cells[int(rng.integers(len(cells)))]
                apples = scenes.pick_cells(rng, cells, self.num_objects, exclude=(start,))
                family.append(scenes.make_scene(layout, start, apples=apples, theme_offset=theme, rng=rng))
            return family
        start = cells[int(rng.integers(len(cells)))]
        if self.task == "fetch":
            return [scenes.make_scene(layout, start, objects=[scenes.far_cell(rng, layout, start, 4)],
                                      theme_offset=theme, rng=rng) for _ in range(SIBLINGS)]
        goal = scenes.far_cell(rng, layout, start, min_distance=4)
        return [scenes.make_scene(layout, start, goal=goal, theme_offset=theme, rng=rng)]

    def _obstructed_family(self, rng: np.random.Generator, theme: int) -> list[Scene]:
        import labmaze

        maze = labmaze.RandomMaze(height=self.maze_size, width=self.maze_size, max_rooms=self.max_rooms,
                                  room_min_size=3, room_max_size=5, has_doors=True,
                                  extra_connection_probability=0.3, random_seed=int(rng.integers(2**31 - 1)))
        text = str(maze.entity_layer)
        layout = Layout.from_text(text, str(maze.variations_layer))
        doors = scenes.door_cells(text)
        cells = layout.floor_cells()
        goal = cells[int(rng.integers(len(cells)))]
        family = []
        for _ in range(SIBLINGS):
            for _attempt in range(20):  # redraw until the goal is reachable from somewhere far enough
                closed = [d for d in doors if rng.random() < 0.5 and d != goal]
                blocked = layout.with_walls(closed)
                reachable = blocked.distances(goal)
                candidates = [c for c, d in reachable.items() if d >= 4]
                if candidates:
                    break
            else:
                closed, candidates = [], [c for c, d in layout.distances(goal).items() if d >= 1]
            start = candidates[int(rng.integers(len(candidates)))]
            family.append(scenes.make_scene(layout, start, goal=goal, obstructions=closed, theme_offset=theme,
                                            rng=rng))
        return family

    # ---- task logic ------------------------------------------------------------------------------

    def _sibling(self) -> Scene:
        others = [s for s in self._family if s is not self.scene] or self._family
        return others[int(self.rng.integers(len(others)))]

    def reset(self, *, seed=None, options=None):
        self._carrying = False
        return super().reset(seed=seed, options=options)

    def _respawn_cell(self):
        return self.scene.start if self.task != "goal_locations" else super()._respawn_cell()

    def _on_goal(self) -> None:
        if self.task == "obstructed_goals":
            self.switch_scene(self._sibling())
        else:
            super()._on_goal()

    def _task_reward(self, prev: np.ndarray, now: np.ndarray) -> float:
        if self.task == "fetch":
            return self._fetch_reward(prev, now)
        reward = super()._task_reward(prev, now)
        if self.task == "object_rewards" and self.var("ITEMCOUNT", now) >= len(self.scene.apples):
            self.switch_scene(self._sibling())
        return reward

    def _fetch_reward(self, prev: np.ndarray, now: np.ndarray) -> float:
        if self.var("ARMOR", now) > self.var("ARMOR", prev):
            self._carrying = True
            self.count("objects_picked")
            return self.apple_reward
        if self._carrying and self.scene.layout.distances(self.scene.start).get(self.cell, 99) <= 1:
            self._carrying = False
            self.count("objects_returned")
            self.switch_scene(self._sibling())
            return self.goal_reward
        return 0.0
