"""Videos and pictures of watched episodes: annotated frames, MP4 files, trajectory maps, GIF clips.

MP4 files are encoded by ffmpeg through imageio (:data:`INSTALL_HINT`, run in the
clone, installs imageio and imageio-ffmpeg, whose wheel ships the ffmpeg binary).
Frames are scaled up (nearest neighbour) and get a banner with the task, the
policy, the step and the return so far; their sides are padded to multiples of
16, the block size of the H.264 encoder. Where the environment says where its goal
is in the picture but does not draw it (the two-room grid world's ``goal_box()``),
the goal is outlined on the video frames; the observations stay as they are.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MIN_SIDE = 256  # frames are scaled up by an integer factor to at least this width
BLOCK = 16
_BANNER_FONT_SIZE = 12
_BANNER_LINE = 16
_TRAJECTORY = (255, 255, 255)
_TRAJECTORY_START, _TRAJECTORY_END = (40, 90, 255), (255, 0, 255)
INSTALL_HINT = 'pip install ".[video]"'  # the extra that writes videos, as the README gives it
GOAL_COLOUR = (0, 255, 255)  # cyan: no two-room observation uses it


class VideoError(RuntimeError):
    """A video cannot be written (the message is one line)."""


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def scale_up(frame: np.ndarray, min_side: int = MIN_SIDE) -> np.ndarray:
    """``frame`` repeated by the smallest integer factor making its width at least ``min_side``."""
    factor = max(1, math.ceil(min_side / frame.shape[1]))
    return np.repeat(np.repeat(frame, factor, axis=0), factor, axis=1)


def goal_box(env) -> tuple[int, int, int, int] | None:
    """``(top, left, bottom, right)`` pixels of the goal in ``env``'s observations, where it gives them."""
    box = getattr(env.unwrapped, "goal_box", None)
    return None if box is None else tuple(int(v) for v in box())


def annotate(frame: np.ndarray, lines: list[str], min_side: int = MIN_SIDE,
             goal: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The scaled-up RGB ``frame`` under a black banner holding ``lines``; sides are multiples of 16.

    ``goal``: ``(top, left, bottom, right)`` pixels of ``frame`` (bottom and right
    exclusive), outlined in :data:`GOAL_COLOUR`.
    """
    frame = np.asarray(frame, np.uint8)[..., :3]
    image = scale_up(frame, min_side)
    banner = _BANNER_LINE * len(lines) + 4
    height, width = _round_up(image.shape[0] + banner, BLOCK), _round_up(image.shape[1], BLOCK)
    canvas = np.zeros((height, width, 3), np.uint8)
    canvas[banner:banner + image.shape[0], :image.shape[1]] = image
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    if goal is not None:
        factor = image.shape[1] // frame.shape[1]
        top, left, bottom, right = (v * factor for v in goal)
        draw.rectangle([left, banner + top, right - 1, banner + bottom - 1], outline=GOAL_COLOUR,
                       width=max(2, (right - left) // 8))
    font = ImageFont.load_default(size=_BANNER_FONT_SIZE)
    for k, line in enumerate(lines):
        draw.text((4, 2 + k * _BANNER_LINE), line, fill=(255, 255, 255), font=font)
    return np.asarray(picture)


def episode_frames(frames, rewards, task: str, policy: str, checkpoint_step: int | None = None,
                   goal: tuple[int, int, int, int] | None = None) -> list[np.ndarray]:
    """Annotated frames of one episode: frame ``t`` shows step ``t`` and the return of steps ``< t``.

    ``goal``: the goal's pixels in the frames, outlined (see :func:`annotate`).
    """
    returns = np.concatenate([[0.0], np.cumsum(rewards)])
    header = f"{task}  [{policy}]"
    if checkpoint_step is not None:
        header += f"  @ {checkpoint_step:,} steps"
    key = "   goal: cyan" if goal is not None else ""
    return [annotate(frame, [header, f"step {t:4d}   return {returns[t]:7.2f}{key}"], goal=goal)
            for t, frame in enumerate(frames)]


def write_mp4(path: str, frames: list[np.ndarray], fps: float) -> None:
    """Encodes ``frames`` (equal shapes, sides multiples of 16) as H.264 in an MP4 file."""
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise VideoError(f"Writing videos needs imageio and imageio-ffmpeg: {INSTALL_HINT} in the clone.") from None
    try:
        with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=BLOCK, pixelformat="yuv420p",
                                ffmpeg_log_level="error") as writer:
            for frame in frames:
                writer.append_data(frame)
    except (ImportError, RuntimeError, OSError) as e:
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise VideoError(f"Could not write {path}: {first_line} (is imageio-ffmpeg installed?)") from None


def trajectory_map(scene, positions, scale: int = 12) -> np.ndarray:
    """The top-down map of a Doom ``scene`` with the trajectory through ``positions`` (world x, y).

    The path is a white line, broken where the player was moved (a jump of more
    than a cell, e.g. the respawn after a goal); its start is blue, its end magenta.
    """
    from distral_tf.envs.doom import topdown
    from distral_tf.envs.doom.mapgen import CELL_SIZE

    picture = Image.fromarray(topdown.render(scene, None, scale=scale, cell_size=CELL_SIZE))
    draw = ImageDraw.Draw(picture)
    points = [(x / CELL_SIZE * scale, -y / CELL_SIZE * scale) for x, y in positions]
    segment = points[:1]
    for previous, point in zip(points, points[1:], strict=False):
        if math.dist(previous, point) > scale:
            if len(segment) > 1:
                draw.line(segment, fill=_TRAJECTORY, width=2)
            segment = []
        segment.append(point)
    if len(segment) > 1:
        draw.line(segment, fill=_TRAJECTORY, width=2)
    for (x, y), colour in ((points[0], _TRAJECTORY_START), (points[-1], _TRAJECTORY_END)):
        r = max(2, scale // 4)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    return np.asarray(picture)


def gif_bytes(frames: list[np.ndarray], fps: float) -> bytes:
    """An animated GIF of ``frames`` (looping), e.g. for an image summary that TensorBoard animates."""
    images = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(20, int(round(1000 / fps))), loop=0)
    return buffer.getvalue()
