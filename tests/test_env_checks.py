"""Every registered environment passes Gymnasium's own checks, seeded resets included."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import distral_tf.envs  # noqa: F401  (registers the environments)

ENV_IDS = sorted(env_id for env_id in gym.registry if env_id.startswith("distral_tf/"))


def _make(env_id):
    if env_id.startswith("distral_tf/Doom"):
        pytest.importorskip("vizdoom")
    if env_id == "distral_tf/DMLab-v0":
        pytest.importorskip("deepmind_lab")
    kwargs = {"episode_length": 50} if env_id.startswith("distral_tf/Doom") else {}
    return gym.make(env_id, disable_env_checker=True, **kwargs).unwrapped


def test_every_environment_of_the_package_is_registered():
    assert {"distral_tf/TwoRooms-v0", "distral_tf/DoomMaze-v0", "distral_tf/DoomNavigation-v0",
            "distral_tf/DoomLasertag-v0", "distral_tf/DMLab-v0"} <= set(ENV_IDS)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_registered_environment_passes_check_env(env_id):
    env = _make(env_id)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a warning of the checker is a failure too
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            check_env(env, skip_render_check=True)
    finally:
        env.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_gives_the_same_first_observations_and_steps(env_id):
    env = _make(env_id)
    try:
        runs = []
        for _ in range(2):
            obs, _ = env.reset(seed=123)
            frames = [obs]
            for action in (0, 1, 2):
                frames.append(env.step(action)[0])
            runs.append(np.stack(frames))
        np.testing.assert_array_equal(runs[0], runs[1])
        other, _ = env.reset(seed=124)
        assert other.shape == runs[0][0].shape
    finally:
        env.close()
