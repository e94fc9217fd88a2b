"""Per-pixel statistics of a suite's frames, for ``--observation_normalization=per_pixel``.

Taken once, when a run starts, from the frames of a uniformly random policy on each task
(``FRAMES`` in all, split over the tasks, episodes restarted as they end), and kept in the run:
in the columns' variables (so checkpoints, snapshots and exports carry them) and in
``observation_statistics.npz`` in the run directory, which a learner on another process reads
instead of taking them again. The same seed gives the same statistics.
"""

from __future__ import annotations

import os

import numpy as np

from distral_tf.envs.suites import Suite

FRAMES = 512
FILE = "observation_statistics.npz"


def normalization_of(config, suite: Suite | None = None) -> str:
    """``"none"`` or ``"per_pixel"``: the run's choice, with ``suite`` resolved to the suite's own.

    Without ``suite`` it is looked up by ``config.suite``; a suite that is not registered (one
    built in code and handed to the trainer) counts as ``"none"`` there.
    """
    return resolve(config.observation_normalization, config.suite, suite)


def resolve(choice: str, suite_name: str, suite: Suite | None = None) -> str:
    """``choice`` (``"suite"``, ``"none"`` or ``"per_pixel"``) for the suite called ``suite_name``."""
    if choice != "suite":
        return choice
    if suite is None:
        from distral_tf.envs.suites import make_suite

        try:
            suite = make_suite(suite_name)
        except ValueError:
            return "none"
    return suite.observation_normalization


def random_policy_frames(suite: Suite, frames: int = FRAMES, seed: int = 0) -> np.ndarray:
    """``[frames, H, W, C]`` uint8: frames of a uniformly random policy, about as many from each task."""
    rng = np.random.default_rng(seed)
    per_task = -(-frames // suite.num_tasks)
    out = []
    for task in range(suite.num_tasks):
        env = suite.make_env(task)
        try:
            env.action_space.seed(int(rng.integers(2**31 - 1)))
            obs, _ = env.reset(seed=int(rng.integers(2**31 - 1)))
            for _ in range(per_task):
                out.append(np.asarray(obs))
                obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
                if terminated or truncated:
                    obs, _ = env.reset()
        finally:
            env.close()
    return np.stack(out[:frames])


def statistics(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and standard deviation ``[H, W, C]`` of uint8 ``frames``, scaled to ``[0, 1]``."""
    x = frames.astype(np.float32) / 255.0
    return x.mean(axis=0), x.std(axis=0)


def load_or_take(config, suite: Suite) -> tuple[np.ndarray, np.ndarray]:
    """The run's statistics: read from its directory, or taken from a random policy and written there."""
    path = os.path.join(config.logdir, FILE)
    if os.path.exists(path):
        with np.load(path) as saved:
            return saved["mean"], saved["std"]
    mean, std = statistics(random_policy_frames(suite, FRAMES, config.seed))
    tmp = path + ".tmp.npz"
    np.savez(tmp, mean=mean, std=std)
    os.replace(tmp, path)
    return mean, std
