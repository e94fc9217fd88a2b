"""Writes pictures of every task of a suite: ``python -m distral_tf.preview --suite=NAME --out=DIR``.

For each task: ``<task>_frames.png`` (first-person frames at 2x, taken every few steps
of a walk between random cells along shortest paths, or a random walk where the map is
unknown) and, for Doom tasks, ``<task>_map.png``
(a top-down map: rooms, walls, blocked doors in brown, start blue, goal red, apples
green, objects yellow, player white, laser-tag bots magenta).

In laser tag the walk chases the nearest bot, and each frame is taken at the first
step (at most ``--patience`` steps late) at which a bot is in view: ahead, within
:data:`HALF_FIELD_OF_VIEW` degrees and :data:`MAX_BOT_DISTANCE` map units, no wall between.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from absl import flags
from PIL import Image

from distral_tf.envs import make_suite
from flags import cli


def define_flags():
    """Defines the command-line flags (only when run as a program, so importing defines none)."""
    flags.DEFINE_string("suite", "doom_mazes", "Suite (or comma-separated task names) to preview.")
    flags.DEFINE_string("out", "preview", "Directory for the PNG files.")
    flags.DEFINE_integer("frames", 6, "First-person frames per task.")
    flags.DEFINE_integer("every", 15, "Agent steps between frames.")
    flags.DEFINE_integer("seed", 0, "Seed of the environments and the random walk.")
    flags.DEFINE_integer("patience", 200, "Laser tag: most extra steps to wait for a bot in view per frame.")


# Forward-heavy action distribution over the shared nine actions (forward, back, strafes, turns,
# turn+forward, fire), so that frames show more than the first corridor.
_WALK = np.array([0.35, 0.02, 0.04, 0.04, 0.08, 0.08, 0.15, 0.15, 0.09])
BOT_COLOUR = (230, 0, 230)  # laser-tag bots on the top-down map


HALF_FIELD_OF_VIEW = 35.0  # degrees either side of the view direction (Doom's 4:3 view spans 45)
MAX_BOT_DISTANCE = 6 * 96.0  # map units (six cells of mapgen.CELL_SIZE): farther bots are a few pixels tall at 84x84


def _bearing(env, x: float, y: float) -> float:
    """Degrees from the player's view direction to point ``(x, y)``, in [-180, 180)."""
    px, py = env.position
    return (math.degrees(math.atan2(y - py, x - px)) - env.var("ANGLE") + 180) % 360 - 180


def _turn_towards(diff: float) -> int:
    """The shared action that turns (and walks) towards a bearing of ``diff`` degrees."""
    return 4 if diff > 30 else 5 if diff < -30 else 6 if diff > 10 else 7 if diff < -10 else 0


def bot_positions(env) -> list[tuple[float, float]]:
    """``(x, y)`` of every other player (the bots) of a Doom environment tracking objects."""
    px, py = env.position
    return [(x, y) for name, x, y in env.objects
            if name == "DoomPlayer" and math.hypot(x - px, y - py) > 1.0]


def _line_of_sight(env, x: float, y: float) -> bool:
    """Whether no wall cell of the scene lies on the segment from the player to ``(x, y)``."""
    from distral_tf.envs.doom.mapgen import world_to_cell

    px, py = env.position
    walls = env.scene.layout.walls
    steps = max(2, int(math.hypot(x - px, y - py) / 16))
    for t in np.linspace(0.0, 1.0, steps):
        r, c = world_to_cell(px + t * (x - px), py + t * (y - py))
        if not (0 <= r < walls.shape[0] and 0 <= c < walls.shape[1]) or walls[r, c]:
            return False
    return True


def bots_in_view(env) -> list[tuple[float, float]]:
    """The bots the player sees: within ``HALF_FIELD_OF_VIEW`` and ``MAX_BOT_DISTANCE``, no wall between."""
    px, py = env.position
    return [(x, y) for x, y in bot_positions(env)
            if abs(_bearing(env, x, y)) <= HALF_FIELD_OF_VIEW and math.hypot(x - px, y - py) <= MAX_BOT_DISTANCE
            and _line_of_sight(env, x, y)]


def _has_bots(env) -> bool:
    from distral_tf.envs.doom.lasertag import DoomLasertagEnv

    return isinstance(env, DoomLasertagEnv)


class _Explorer:
    """Walks to random cells of a Doom scene along shortest paths (random actions elsewhere).

    With ``chase_bots`` it walks towards the nearest bot instead, and faces one it sees.
    """

    def __init__(self, env, rng: np.random.Generator, chase_bots: bool = False):
        self.env, self.rng, self.path, self.chase_bots = env, rng, [], chase_bots

    def _target(self) -> tuple[int, int] | None:
        from distral_tf.envs.doom.mapgen import world_to_cell

        env = self.env
        bots = bot_positions(env) if self.chase_bots else []
        if not bots:
            return None
        px, py = env.position
        x, y = min(bots, key=lambda b: math.hypot(b[0] - px, b[1] - py))
        cell = world_to_cell(x, y)
        return cell if cell in env.scene.layout.floor_cells() else None

    def act(self) -> int:
        env = self.env
        if getattr(env, "scene", None) is None:  # no map to walk: random actions (the walk's, on Doom's nine)
            n = env.action_space.n
            return int(self.rng.choice(n, p=_WALK if n == len(_WALK) else None))
        from distral_tf.envs.doom.mapgen import cell_center

        if self.chase_bots:
            seen = bots_in_view(env)
            if seen:
                px, py = env.position
                x, y = min(seen, key=lambda b: math.hypot(b[0] - px, b[1] - py))
                return _turn_towards(_bearing(env, x, y))
        target = self._target()
        if target is not None and (not self.path or self.path[-1] != target):
            self.path = env.scene.layout.shortest_path(env.cell, target)
        if not self.path or env.cell not in self.path:
            cells = env.scene.layout.floor_cells()
            self.path = env.scene.layout.shortest_path(env.cell, cells[int(self.rng.integers(len(cells)))])
        while len(self.path) > 1 and self.path[0] != env.cell:
            self.path.pop(0)
        if len(self.path) <= 1:
            self.path = []
            return 4
        x, y = cell_center(self.path[1])
        return _turn_towards(_bearing(env, x, y))


def take_frames(env, explorer: _Explorer, frames: int, every: int, seed: int, patience: int = 0) -> list:
    """``frames`` observations, ``every`` steps apart; with ``patience``, each one at the first step (at most
    ``patience`` steps later) with a bot in view. Returns ``(observation, bots in view)`` pairs."""
    wait_for_bots = patience > 0 and _has_bots(env.unwrapped)
    visible = (lambda: len(bots_in_view(env.unwrapped))) if wait_for_bots else (lambda: 0)
    obs, _ = env.reset(seed=seed)
    shots = []

    def step():
        nonlocal obs
        obs, _, terminated, truncated, _ = env.step(explorer.act())
        if terminated or truncated:
            obs, _ = env.reset()

    for _ in range(patience if wait_for_bots else 0):  # the first frame too
        if visible():
            break
        step()
    shots.append((obs, visible()))
    while len(shots) < frames:
        for _ in range(every):
            step()
        for _ in range(patience if wait_for_bots else 0):
            if visible():
                break
            step()
        shots.append((obs, visible()))
    return shots


def preview_task(suite, index: int, out: Path, frames: int, every: int, seed: int,
                 patience: int = 200) -> list[Path]:
    """Writes the PNGs of task ``index``; returns their paths (``patience``: see :func:`take_frames`)."""
    overrides = dict(suite.preview_env_kwargs)
    if "episode_length" in overrides:  # long enough for every frame
        overrides["episode_length"] = frames * (every + patience) + 1
    env = suite.make_env(index, **overrides)
    rng = np.random.default_rng(seed)
    explorer = _Explorer(env.unwrapped, rng, chase_bots=bool(overrides) and _has_bots(env.unwrapped))
    name = suite.task_names[index]
    written = []
    try:
        shots = [obs for obs, _ in take_frames(env, explorer, frames, every, seed, patience)]
        strip = np.concatenate([np.pad(s, ((2, 2), (2, 2), (0, 0))) for s in shots], axis=1)
        path = out / f"{name}_frames.png"
        Image.fromarray(strip).resize((strip.shape[1] * 2, strip.shape[0] * 2), Image.NEAREST).save(path)
        written.append(path)
        top_down = getattr(env.unwrapped, "top_down", None)
        if top_down is not None:
            path = out / f"{name}_map.png"
            image = top_down(scale=12)
            from distral_tf.envs.doom.mapgen import CELL_SIZE

            for x, y in bot_positions(env.unwrapped):
                row, col = int(-y / CELL_SIZE * 12), int(x / CELL_SIZE * 12)
                image[max(0, row - 2):row + 3, max(0, col - 2):col + 3] = BOT_COLOUR
            Image.fromarray(image).save(path)
            written.append(path)
    finally:
        env.close()
    return written


def main(argv):
    cli.refuse_positional(argv)
    values = flags.FLAGS
    try:
        suite = make_suite(values.suite)
    except ValueError as e:
        cli.fail(str(e))
    out = Path(values.out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(suite.num_tasks):
        for path in preview_task(suite, i, out, values.frames, values.every, values.seed, values.patience):
            print(path)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
