"""Writes pictures of every task of a suite: ``python -m distral_tf.envs.preview --suite=NAME --out=DIR``.

For each task: ``<task>_frames.png`` (first-person frames at 2x, taken every few steps
of a walk between random cells along shortest paths, or a random walk where the map is
unknown) and, for Doom tasks, ``<task>_map.png``
(a top-down map: rooms, walls, blocked doors in brown, start blue, goal red, apples
green, objects yellow, player white).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from absl import app, flags
from PIL import Image

from distral_tf.envs import make_suite


def define_flags():
    """Defines the command-line flags (only when run as a program, so importing defines none)."""
    flags.DEFINE_string("suite", "doom_mazes", "Suite (or comma-separated task names) to preview.")
    flags.DEFINE_string("out", "preview", "Directory for the PNG files.")
    flags.DEFINE_integer("frames", 6, "First-person frames per task.")
    flags.DEFINE_integer("every", 15, "Agent steps between frames.")
    flags.DEFINE_integer("seed", 0, "Seed of the environments and the random walk.")


# Forward-heavy action distribution over the shared nine actions (forward, back, strafes, turns,
# turn+forward, fire), so that frames show more than the first corridor.
_WALK = np.array([0.35, 0.02, 0.04, 0.04, 0.08, 0.08, 0.15, 0.15, 0.09])


class _Explorer:
    """Walks to random cells of a Doom scene along shortest paths (random actions elsewhere)."""

    def __init__(self, env, rng: np.random.Generator):
        self.env, self.rng, self.path = env, rng, []

    def act(self) -> int:
        env = self.env
        if getattr(env, "scene", None) is None:
            return int(self.rng.choice(len(_WALK), p=_WALK))
        from distral_tf.envs.doom.mapgen import cell_center

        if not self.path or env.cell not in self.path:
            cells = env.scene.layout.floor_cells()
            self.path = env.scene.layout.shortest_path(env.cell, cells[int(self.rng.integers(len(cells)))])
        while len(self.path) > 1 and self.path[0] != env.cell:
            self.path.pop(0)
        if len(self.path) <= 1:
            self.path = []
            return 4
        (x, y), (px, py) = cell_center(self.path[1]), env.position
        diff = (math.degrees(math.atan2(y - py, x - px)) - env.var("ANGLE") + 180) % 360 - 180
        return 4 if diff > 30 else 5 if diff < -30 else 6 if diff > 10 else 7 if diff < -10 else 0


def preview_task(suite, index: int, out: Path, frames: int, every: int, seed: int) -> list[Path]:
    """Writes the PNGs of task ``index``; returns their paths."""
    env = suite.make_env(index, episode_length=frames * every + 1, maps_per_wad=1) \
        if "Doom" in suite.env_ids[index] else suite.make_env(index)
    rng = np.random.default_rng(seed)
    explorer = _Explorer(env.unwrapped, rng)
    name = suite.task_names[index]
    written = []
    try:
        obs, _ = env.reset(seed=seed)
        shots = [obs]
        while len(shots) < frames:
            for _ in range(every):
                obs, _, terminated, truncated, _ = env.step(explorer.act())
                if terminated or truncated:
                    obs, _ = env.reset()
            shots.append(obs)
        strip = np.concatenate([np.pad(s, ((2, 2), (2, 2), (0, 0))) for s in shots], axis=1)
        path = out / f"{name}_frames.png"
        Image.fromarray(strip).resize((strip.shape[1] * 2, strip.shape[0] * 2), Image.NEAREST).save(path)
        written.append(path)
        top_down = getattr(env.unwrapped, "top_down", None)
        if top_down is not None:
            path = out / f"{name}_map.png"
            Image.fromarray(top_down(scale=12)).save(path)
            written.append(path)
    finally:
        env.close()
    return written


def main(argv):
    del argv
    values = flags.FLAGS
    suite = make_suite(values.suite)
    out = Path(values.out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(suite.num_tasks):
        for path in preview_task(suite, i, out, values.frames, values.every, values.seed):
            print(path)


if __name__ == "__main__":
    define_flags()
    app.run(main)
