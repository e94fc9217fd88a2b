"""Only ``configure_tensorflow`` changes process-wide settings: building an agent or a trainer changes none."""

import random

import numpy as np
import pytest
import tensorflow as tf
from conftest import SMALL_AGENT

from distral_tf import algorithms
from distral_tf.model.agent import Agent
from distral_tf.training.tensorflow_setup import configure_tensorflow, is_configured


def _agent(seed: int) -> Agent:
    algorithm = algorithms.get("kl_2col")
    return Agent(algorithm, algorithm.coefficients(0.05), SMALL_AGENT["num_tasks"], SMALL_AGENT["observation_shape"],
                 SMALL_AGENT["num_actions"], unroll_length=SMALL_AGENT["unroll_length"], learning_rate=1e-3,
                 total_env_steps=1000, seed=seed)


@pytest.fixture
def grappler_on():
    """Grappler switched on for the test (the session runs with it off, as the entry points do)."""
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})
    yield
    configure_tensorflow()


def test_building_an_agent_leaves_global_random_state_and_grappler_alone(grappler_on):
    np_state, py_state = np.random.get_state(), random.getstate()
    options = tf.config.optimizer.get_experimental_options()
    _agent(seed=3)
    assert tf.config.optimizer.get_experimental_options() == options and not is_configured()
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]
    assert random.getstate() == py_state


def test_an_agents_initial_parameters_follow_its_seed_alone():
    first = [v.numpy() for v in _agent(seed=5).parameters]
    np.random.seed(123)
    random.seed(123)
    tf.random.set_seed(123)
    second = [v.numpy() for v in _agent(seed=5).parameters]
    other = [v.numpy() for v in _agent(seed=6).parameters]
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_building_a_trainer_leaves_grappler_alone(grappler_on, tmp_path):
    from distral_tf.envs import make_suite
    from distral_tf.training.config import TrainConfig
    from distral_tf.training.trainer import Trainer

    Trainer(TrainConfig(suite="two_rooms_small", logdir=str(tmp_path)), make_suite("two_rooms_small"))
    assert not is_configured()


def test_configure_tensorflow_turns_grappler_off(grappler_on):
    configure_tensorflow()
    assert tf.config.optimizer.get_experimental_options()["disable_meta_optimizer"] is True


def test_configure_tensorflow_rejects_negative_thread_counts():
    with pytest.raises(ValueError, match="thread counts must be >= 0"):
        configure_tensorflow(inter_op_threads=-1)
