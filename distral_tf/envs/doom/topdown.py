"""Top-down pictures of a scene: walls, rooms, obstructions, objects and the player."""

from __future__ import annotations

import numpy as np

_WALL = (40, 40, 48)
_OBSTRUCTION = (150, 90, 30)
_ROOM_COLOURS = ((200, 200, 190), (190, 170, 140), (160, 180, 200), (200, 160, 160), (160, 200, 160),
                 (200, 200, 140), (180, 160, 200), (150, 190, 190))
_MARKERS = {"start": (40, 90, 255), "apples": (40, 170, 40), "objects": (240, 200, 0), "goal": (220, 30, 30)}


def render(scene, player_xy: tuple[float, float] | None = None, scale: int = 8,
           cell_size: float = 96.0) -> np.ndarray:
    """An ``(rows*scale, cols*scale, 3)`` uint8 map; markers are squares, the player a white dot."""
    walls, rooms = scene.layout.walls, scene.layout.rooms
    letters = sorted(set(rooms[~walls].tolist()))
    image = np.empty(walls.shape + (3,), np.uint8)
    image[:] = _WALL
    for i, letter in enumerate(letters):
        image[(rooms == letter) & ~walls] = _ROOM_COLOURS[i % len(_ROOM_COLOURS)]
    for r, c in scene.obstructions:
        image[r, c] = _OBSTRUCTION
    image = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)

    def mark(cell, colour, size):
        r, c = cell
        lo, hi = (scale - size) // 2, (scale + size) // 2
        image[r * scale + lo:r * scale + hi, c * scale + lo:c * scale + hi] = colour

    mark(scene.start, _MARKERS["start"], scale - 2)
    for cell in scene.apples:
        mark(cell, _MARKERS["apples"], max(2, scale // 2))
    for cell in scene.objects:
        mark(cell, _MARKERS["objects"], max(2, scale // 2))
    if scene.goal is not None:
        mark(scene.goal, _MARKERS["goal"], scale - 2)
    if player_xy is not None:
        col = int(player_xy[0] / cell_size * scale)
        row = int(-player_xy[1] / cell_size * scale)
        h, w = image.shape[:2]
        image[max(0, row - 1):min(h, row + 2), max(0, col - 1):min(w, col + 2)] = (255, 255, 255)
    return image
