"""Turns a text grid (labmaze's format: ``*`` wall, anything else floor) into a UDMF map.

Cell ``(row, col)`` is a square of ``cell_size`` map units; row 0 is the north edge.
Floor cells of one labmaze variation (room) share a sector with its own floor and wall
textures, so rooms look different, as in DeepMind Lab. Things are placed by cell.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from distral_tf.envs.doom.wad import UdmfMap

WALL = "*"
CELL_SIZE = 96

# (wall texture, floor flat) per variation; "." (corridors) uses the first entry.
THEMES = (
    ("STARTAN2", "FLOOR0_1"),
    ("BROWN1", "FLOOR4_8"),
    ("GRAY1", "FLAT5_4"),
    ("BRICK7", "FLOOR5_1"),
    ("TEKGREN2", "FLOOR7_1"),
    ("STONE2", "FLAT1"),
    ("METAL", "FLOOR1_1"),
    ("ICKWALL1", "FLAT5_5"),
)
CEILING = "CEIL3_5"
OBSTRUCTION_TEXTURE = "DOOR3"


@dataclasses.dataclass(frozen=True)
class Layout:
    """A rectangular maze: ``walls[r, c]`` is True for solid cells; ``rooms`` holds variation letters."""

    walls: np.ndarray
    rooms: np.ndarray

    @classmethod
    def from_text(cls, entities: str, variations: str | None = None) -> Layout:
        grid = _to_array(entities)
        rooms = _to_array(variations) if variations is not None else np.full(grid.shape, ".")
        if rooms.shape != grid.shape:
            raise ValueError(f"Entity and variation layers differ in shape: {grid.shape} vs {rooms.shape}.")
        return cls(walls=grid == WALL, rooms=rooms)

    @property
    def shape(self) -> tuple[int, int]:
        return self.walls.shape

    def floor_cells(self) -> list[tuple[int, int]]:
        return [tuple(int(v) for v in rc) for rc in np.argwhere(~self.walls)]

    def neighbours(self, cell: tuple[int, int]) -> list[tuple[int, int]]:
        r, c = cell
        h, w = self.shape
        out = []
        for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= nr < h and 0 <= nc < w and not self.walls[nr, nc]:
                out.append((nr, nc))
        return out

    def distances(self, source: tuple[int, int]) -> dict[tuple[int, int], int]:
        """Breadth-first distances in cells from ``source`` to every reachable floor cell."""
        dist = {source: 0}
        frontier = [source]
        while frontier:
            nxt = []
            for cell in frontier:
                for n in self.neighbours(cell):
                    if n not in dist:
                        dist[n] = dist[cell] + 1
                        nxt.append(n)
            frontier = nxt
        return dist

    def shortest_path(self, start: tuple[int, int], goal: tuple[int, int]) -> list[tuple[int, int]]:
        """Cells from ``start`` to ``goal`` inclusive along a shortest path (empty if unreachable)."""
        dist = self.distances(goal)
        if start not in dist:
            return []
        path = [start]
        while path[-1] != goal:
            path.append(min(self.neighbours(path[-1]), key=lambda n: dist.get(n, 1 << 30)))
        return path

    def with_walls(self, cells) -> Layout:
        walls = self.walls.copy()
        for r, c in cells:
            walls[r, c] = True
        return Layout(walls=walls, rooms=self.rooms)


def _to_array(text: str) -> np.ndarray:
    lines = [line for line in str(text).split("\n") if line]
    width = max(len(line) for line in lines)
    return np.array([list(line.ljust(width, WALL)) for line in lines])


def cell_center(cell: tuple[int, int], cell_size: int = CELL_SIZE) -> tuple[float, float]:
    r, c = cell
    return (c + 0.5) * cell_size, -(r + 0.5) * cell_size


def world_to_cell(x: float, y: float, cell_size: int = CELL_SIZE) -> tuple[int, int]:
    return int(np.floor(-y / cell_size)), int(np.floor(x / cell_size))


def build_map(layout: Layout, cell_size: int = CELL_SIZE, light: int = 192, ceiling_height: int = 128,
              obstructions=(), theme_offset: int = 0) -> UdmfMap:
    """The UDMF geometry of ``layout``: one sector per room variation, one wall line per floor/wall edge.

    ``obstructions`` are floor cells drawn as solid blocks with a door texture.
    """
    blocked = layout.with_walls(obstructions).walls
    obstructed = np.zeros_like(blocked)
    for r, c in obstructions:
        obstructed[r, c] = True
    level = UdmfMap()
    letters = sorted(set(layout.rooms[~blocked].tolist()))
    themes = {k: THEMES[(i + theme_offset) % len(THEMES)] for i, k in enumerate(letters)}
    sector_of = {k: level.add_sector(themes[k][1], CEILING, ceiling_height=ceiling_height, light=light)
                 for k in letters}
    h, w = blocked.shape
    s = cell_size
    for r in range(h):
        for c in range(w):
            if blocked[r, c]:
                continue
            room = layout.rooms[r, c]
            sector = sector_of[room]
            x0, x1, y0, y1 = c * s, (c + 1) * s, -r * s, -(r + 1) * s
            # Edges clockwise (north, east, south, west) so that the front side faces the cell.
            edges = (((x0, y0), (x1, y0), r - 1, c), ((x1, y0), (x1, y1), r, c + 1),
                     ((x1, y1), (x0, y1), r + 1, c), ((x0, y1), (x0, y0), r, c - 1))
            for start, end, nr, nc in edges:
                inside = 0 <= nr < h and 0 <= nc < w
                if not inside or blocked[nr, nc]:
                    texture = OBSTRUCTION_TEXTURE if inside and obstructed[nr, nc] else themes[room][0]
                    level.add_line(start, end, sector, texture)
                elif layout.rooms[nr, nc] != room and (r, c) < (nr, nc):
                    level.add_line(start, end, sector, "-", back_sector=sector_of[layout.rooms[nr, nc]])
    return level
