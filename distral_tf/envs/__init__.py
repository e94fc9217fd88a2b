"""Environments and task suites. Importing this package registers every environment with Gymnasium.

Each suite module declares its Gymnasium ids and their entry points (``ENVIRONMENTS``,
see :mod:`distral_tf.envs.suites`); the entry points are strings, so that heavy engines
are only imported when an environment is made.
"""

import gymnasium as gym

from distral_tf.envs.suites import Suite, declared_modules, make_suite, register_suite, suite_names


def _register_all():
    for declared in declared_modules():
        for env_id, entry_point in declared.environments.items():
            if env_id not in gym.registry:
                gym.register(id=env_id, entry_point=entry_point)


_register_all()

__all__ = ["Suite", "make_suite", "register_suite", "suite_names"]
