"""Initial policies and the scale of a learning step for all seven algorithms (docs/fidelity.md)."""

import numpy as np
import pytest

from distral_tf import algorithms
from distral_tf.model.agent import Agent, Rollout
from distral_tf.model.losses import entropy

OBS, T, NUM_ACTIONS = (36, 36, 3), 4, 4


def _agent(name, entropy_cost, scaling="unit", seed=0):
    algorithm = algorithms.get(name)
    return Agent(algorithm, algorithm.coefficients(entropy_cost), 2, OBS, NUM_ACTIONS, unroll_length=T,
                 learning_rate=1e-3, total_env_steps=10**9, seed=seed, two_column_scaling=scaling)


def _inputs(seed=0, b=6):
    rng = np.random.default_rng(seed)
    obs = rng.integers(0, 255, [b, *OBS], dtype=np.uint8)
    return np.arange(b, dtype=np.int32) % 2, obs, np.ones(b, bool)


def _task_logits(agent, inputs):
    d_state, t_state = agent.initial_state(len(inputs[0]))
    return agent.act(*inputs, d_state, t_state)[1]


@pytest.mark.parametrize("name", algorithms.NAMES)
def test_every_task_policy_starts_near_uniform(name):
    """At the paper's largest beta (entropy cost 3e-3: beta = 333), the hardest case for eq. 8."""
    logits = _task_logits(_agent(name, 3e-3), _inputs())
    h = entropy(logits).numpy()
    assert np.all(h >= 0.95 * np.log(NUM_ACTIONS)), h


def _logit_change_after_one_step(name, entropy_cost, scaling):
    agent = _agent(name, entropy_cost, scaling)
    rng = np.random.default_rng(1)
    zeros = np.zeros([2, 256], np.float32)
    rollout = Rollout(
        task_ids=np.array([0, 1], np.int32), observations=rng.integers(0, 255, [T + 1, 2, *OBS], dtype=np.uint8),
        first=np.zeros([T + 1, 2], bool), actions=rng.integers(0, NUM_ACTIONS, [T, 2]).astype(np.int32),
        rewards=rng.normal(size=[T, 2]).astype(np.float32), dones=np.zeros([T, 2], bool),
        distilled_state=(zeros, zeros), task_state=(zeros, zeros))
    inputs = _inputs(2)
    before = _task_logits(agent, inputs)
    for _ in range(3):
        agent.train_step(rollout)
    return float(np.abs(_task_logits(agent, inputs) - before).max())


@pytest.mark.parametrize("name", ["kl_2col", "klent_2col"])
def test_unit_scaling_makes_the_logit_step_independent_of_beta(name):
    """beta from 33 to 333: with 'unit' the task logits move by about the same amount; with 'literal'
    the step grows with beta (the reason for the unit scaling)."""
    unit = [_logit_change_after_one_step(name, c, "unit") for c in (3e-2, 3e-3)]
    literal = [_logit_change_after_one_step(name, c, "literal") for c in (3e-2, 3e-3)]
    assert unit[0] > 0 and 0.5 < unit[1] / unit[0] < 2.0, unit
    assert literal[1] / literal[0] > 5.0, literal


def test_rmsprop_makes_the_unit_form_the_literal_one_with_epsilon_times_beta_squared():
    """docs/fidelity.md: unit at lr = literal at (lr / beta, eps beta^2); not literal at (lr / beta, eps)."""
    import tensorflow as tf

    from distral_tf.model.optim import SharedRMSProp

    beta, lr, eps = 33.0, 1e-2, 0.1
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(5, 4))
    grads = [rng.normal(size=(5, 4)) * scale for scale in (0.01, 0.1, 1.0, 0.03, 3.0, 0.3)]

    def train(scale, learning_rate, epsilon):
        """Parameters ``w0 / scale``; the policy ``scale * w`` sees the unit gradients ``g``, so ``dL/dw = scale g``."""
        w = tf.Variable(w0 / scale, dtype=tf.float64)
        opt = SharedRMSProp([w], epsilon=epsilon, clip_norm=1e9)
        step = tf.function(lambda g: opt.apply([g], [w], learning_rate))
        for g in grads:
            step(tf.constant(scale * g))
        return scale * w.numpy()  # back in unit parameters

    unit = train(1.0, lr, eps)
    np.testing.assert_allclose(train(beta, lr / beta, eps * beta**2), unit, rtol=1e-6)
    literal = train(beta, lr / beta, eps)
    assert np.max(np.abs(literal - unit)) > 0.1 * np.max(np.abs(unit - w0))
    # Without epsilon the forms agree at lr / beta.
    np.testing.assert_allclose(train(beta, lr / beta, 1e-12), train(1.0, lr, 1e-12 / beta**2), rtol=1e-6)
