"""The preview command writes first-person frames and a top-down map per task."""

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("vizdoom")

from distral_tf.envs import make_suite  # noqa: E402
from distral_tf.preview import preview_task  # noqa: E402


def test_preview_writes_frames_and_map(tmp_path):
    suite = make_suite("doom_mazes")
    frames_png, map_png = preview_task(suite, 0, tmp_path, frames=3, every=5, seed=0)
    frames = np.asarray(Image.open(frames_png))
    assert frames.shape == (2 * 88, 2 * 3 * 88, 3) and frames.std() > 10  # three 84x84 frames, padded, at 2x
    top = np.asarray(Image.open(map_png))
    assert top.shape[0] == 12 * suite.make_env(0).unwrapped.layout.shape[0]
    assert (top == (220, 30, 30)).all(axis=-1).any()  # the goal is marked


def test_laser_tag_frames_show_bots():
    from distral_tf.preview import _Explorer, take_frames

    suite = make_suite("doom_lasertag")
    env = suite.make_env(0, episode_length=500, maps_per_wad=1, track_objects=True)
    try:
        explorer = _Explorer(env.unwrapped, np.random.default_rng(0), chase_bots=True)
        shots = take_frames(env, explorer, frames=2, every=3, seed=0, patience=150)
    finally:
        env.close()
    assert len(shots) == 2 and all(seen >= 1 for _, seen in shots)


class _FakeView:
    """A player at the centre of cell (1, 1) of a 3x5 map, looking east (angle 0), with other players."""

    def __init__(self, others, walls=()):
        from types import SimpleNamespace

        from distral_tf.envs.doom.mapgen import cell_center

        grid = np.zeros((3, 5), bool)
        for cell in walls:
            grid[cell] = True
        self.scene = SimpleNamespace(layout=SimpleNamespace(walls=grid))
        self.position = cell_center((1, 1))
        self.objects = [("DoomPlayer", *self.position)] + [("DoomPlayer", *cell_center(c)) for c in others]

    def var(self, name):
        assert name == "ANGLE"
        return 0.0


def test_a_bot_is_in_view_only_ahead_near_and_unhidden():
    from distral_tf.envs.doom.mapgen import cell_center
    from distral_tf.preview import bots_in_view

    assert bots_in_view(_FakeView([(1, 3)])) == [cell_center((1, 3))]  # ahead
    assert bots_in_view(_FakeView([(1, 0)])) == []  # behind
    assert bots_in_view(_FakeView([(0, 1)])) == []  # beside (90 degrees)
    assert bots_in_view(_FakeView([(1, 3)], walls=[(1, 2)])) == []  # behind a wall
