"""Shared fixtures."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

SMALL_AGENT = {"num_tasks": 2, "observation_shape": (36, 36, 3), "num_actions": 3, "unroll_length": 3}


def randomize_policy_layers(columns, seed=0, scale=0.3):
    """Gives zero-initialised policy layers random weights, so that tests of which input or
    parameter reaches the logits see every path (a zero layer hides the torso from the logits)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for column in columns:
        for v in column.policy_head.weights:
            v.assign(rng.normal(scale=scale, size=v.shape).astype(np.float32))


@pytest.fixture(scope="session")
def make_agent():
    """``make_agent(name)``: a small agent of algorithm ``name`` (2 tasks, 36x36x3 images, 3 actions,
    unroll length 3, entropy cost 0.05, random policy layers), built once per session and shared by
    the tests that read it."""
    from distral_tf import algorithms
    from distral_tf.agent import Agent

    cache = {}

    def make(name):
        if name not in cache:
            algorithm = algorithms.get(name)
            cache[name] = Agent(algorithm, algorithm.coefficients(0.05), SMALL_AGENT["num_tasks"],
                                SMALL_AGENT["observation_shape"], SMALL_AGENT["num_actions"],
                                unroll_length=SMALL_AGENT["unroll_length"], learning_rate=1e-3,
                                total_env_steps=10_000, seed=0)
            randomize_policy_layers(cache[name].columns)
        return cache[name]

    return make
