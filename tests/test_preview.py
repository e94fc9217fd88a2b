"""The preview command writes first-person frames and a top-down map per task."""

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("vizdoom")

from distral_tf.envs import make_suite  # noqa: E402
from distral_tf.envs.preview import preview_task  # noqa: E402


def test_preview_writes_frames_and_map(tmp_path):
    suite = make_suite("doom_mazes")
    frames_png, map_png = preview_task(suite, 0, tmp_path, frames=3, every=5, seed=0)
    frames = np.asarray(Image.open(frames_png))
    assert frames.shape == (2 * 88, 2 * 3 * 88, 3) and frames.std() > 10  # three 84x84 frames, padded, at 2x
    top = np.asarray(Image.open(map_png))
    assert top.shape[0] == 12 * suite.make_env(0).unwrapped.layout.shape[0]
    assert (top == (220, 30, 30)).all(axis=-1).any()  # the goal is marked
