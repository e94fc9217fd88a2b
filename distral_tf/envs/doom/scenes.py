"""Building scenes: labmaze layouts, random placements, and the things that mark them in the map."""

from __future__ import annotations

import labmaze
import numpy as np

from distral_tf.envs.doom.env import Scene
from distral_tf.envs.doom.mapgen import Layout, build_map, cell_center

PLAYER_START = 1
DEATHMATCH_START = 11
APPLE = 2014  # HealthBonus: counted in ITEMCOUNT
FETCH_OBJECT = 2015  # ArmorBonus: raises ARMOR
GOAL_MARKER = 44  # tall blue firestick: a solid decoration, reached by proximity
GOAL_RADIUS = 52.0  # map units from the goal cell's centre (player radius 16 + marker radius 16 + slack)


def random_layout(rng: np.random.Generator, size: int, max_rooms: int = 4, has_doors: bool = False,
                  extra_connection_probability: float = 0.0) -> Layout:
    """A labmaze (DeepMind Lab's generator) maze of ``size`` x ``size`` cells (odd ``size``)."""
    maze = labmaze.RandomMaze(height=size, width=size, max_rooms=max_rooms, room_min_size=3, room_max_size=5,
                              has_doors=has_doors, extra_connection_probability=extra_connection_probability,
                              random_seed=int(rng.integers(2**31 - 1)))
    return Layout.from_text(str(maze.entity_layer), str(maze.variations_layer))


def door_cells(layout_text: str) -> list[tuple[int, int]]:
    return [(r, c) for r, line in enumerate(layout_text.split("\n")) for c, ch in enumerate(line) if ch in "IH"]


def pick_cells(rng: np.random.Generator, cells, count: int, exclude=()) -> list[tuple[int, int]]:
    """``count`` distinct cells drawn uniformly from ``cells`` minus ``exclude`` (fewer if not enough)."""
    pool = [c for c in cells if c not in set(exclude)]
    count = min(count, len(pool))
    return [pool[i] for i in rng.choice(len(pool), size=count, replace=False)] if count else []


def far_cell(rng: np.random.Generator, layout: Layout, source: tuple[int, int], min_distance: int = 3):
    """A random floor cell at least ``min_distance`` path steps from ``source`` (or any reachable one)."""
    dist = layout.distances(source)
    far = [c for c, d in dist.items() if d >= min_distance] or list(dist)
    return far[int(rng.integers(len(far)))]


def open_angle(rng: np.random.Generator | None, layout: Layout, cell) -> int:
    """A Doom angle (0 = east, 90 = north) facing a random open neighbour of ``cell``."""
    r, c = cell
    headings = {(r, c + 1): 0, (r - 1, c): 90, (r, c - 1): 180, (r + 1, c): 270}
    options = [headings[n] for n in layout.neighbours(cell)] or [0]
    return options[int(rng.integers(len(options)))] if rng is not None else options[0]


def make_scene(layout: Layout, start, goal=None, apples=(), objects=(), obstructions=(), theme_offset: int = 0,
               light: int = 192, rng: np.random.Generator | None = None) -> Scene:
    """A scene whose map has the layout's geometry, a player start and the given objects."""
    level = build_map(layout, obstructions=obstructions, theme_offset=theme_offset, light=light)
    level.add_thing(PLAYER_START, *cell_center(start), angle=open_angle(rng, layout, start))
    for cell in apples:
        level.add_thing(APPLE, *cell_center(cell))
    for cell in objects:
        level.add_thing(FETCH_OBJECT, *cell_center(cell))
    if goal is not None:
        level.add_thing(GOAL_MARKER, *cell_center(goal))
    return Scene(level=level, layout=layout.with_walls(obstructions), start=tuple(start),
                 goal=None if goal is None else tuple(goal), apples=tuple(map(tuple, apples)),
                 objects=tuple(map(tuple, objects)), obstructions=tuple(map(tuple, obstructions)))
