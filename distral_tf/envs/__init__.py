"""Environments and task suites. Importing this package registers every environment with Gymnasium."""

import gymnasium as gym

from distral_tf.envs.suites import Suite, make_suite, suite_names

# Gymnasium id -> entry point. Entry points are strings so that heavy engines are
# only imported when an environment is made.
_ENV_ENTRY_POINTS = {
    "distral_tf/TwoRooms-v0": "distral_tf.envs.two_rooms:TwoRoomsEnv",
    "distral_tf/DoomMaze-v0": "distral_tf.envs.doom.maze:DoomMazeEnv",
    "distral_tf/DoomNavigation-v0": "distral_tf.envs.doom.navigation:DoomNavigationEnv",
    "distral_tf/DoomLasertag-v0": "distral_tf.envs.doom.lasertag:DoomLasertagEnv",
    "distral_tf/VizdoomScenario-v0": "distral_tf.envs.doom.stock:StockScenarioEnv",
    "distral_tf/DMLab-v0": "distral_tf.envs.dmlab:DMLabEnv",
}


def _register_all():
    for env_id, entry_point in _ENV_ENTRY_POINTS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point)


_register_all()

__all__ = ["Suite", "make_suite", "suite_names"]
