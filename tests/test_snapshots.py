"""On-policy asynchronous updates: a group's gradient is taken at the snapshot it acted with (A3C's theta')."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import random_rollout as _rollout

from distral_tf import algorithms
from distral_tf.model.agent import Agent

OBS, T, NUM_ACTIONS = (36, 36, 3), 3, 3


def _agent(name, seed=0, **kwargs):
    algorithm = algorithms.get(name)
    return Agent(algorithm, algorithm.coefficients(0.05), 2, OBS, NUM_ACTIONS, unroll_length=T,
                 learning_rate=1e-2, total_env_steps=10**9, seed=seed, **kwargs)


def _gradient(agent, rollout):
    with tf.GradientTape() as tape:
        total = agent.trace_loss_terms(rollout)["total"]
    return [None if g is None else g.numpy() for g in tape.gradient(total, agent.trainable)]


def _rmsprop_step(agent, params, mean_squares, grads, learning_rate):
    """The shared RMSProp's update of ``params`` with ``grads`` (global-norm clipped, docs/spec.md section 6);
    a ``None`` gradient (a column the rollout does not use) leaves its parameter as it is."""
    opt = agent.optimizer
    norm = np.sqrt(sum(np.sum(np.square(g)) for g in grads if g is not None))
    scale = min(1.0, opt.clip_norm / norm)
    out = []
    for p, ms, g in zip(params, mean_squares, grads, strict=True):
        if g is None:
            out.append(p)
            continue
        g = g * scale
        ms = opt.decay * ms + (1 - opt.decay) * g ** 2
        out.append(p - learning_rate * g / np.sqrt(ms + opt.epsilon))
    return out


@pytest.mark.parametrize("name", ["a3c", "kl_2col"])
@pytest.mark.parametrize("my_tasks", [[0, 0], [0, 1]])
def test_update_uses_the_snapshot_gradient_not_the_newer_parameters(name, my_tasks):
    """With tasks [0, 1] the snapshot's update runs the function the agent's own update traced (the parameters
    enter by value), so this also checks that it differentiates at the snapshot's values, not the tracer's."""
    agent = _agent(name)
    replica = agent.make_replica()
    for local, shared in zip(replica.variables, agent.trainable, strict=True):
        np.testing.assert_array_equal(local.numpy(), shared.numpy())
    mine, other = _rollout(my_tasks, seed=1), _rollout([0, 1], seed=2)
    at_snapshot = _gradient(agent, mine)

    agent.train_step(other)  # another group's update lands after the snapshot
    at_newer = _gradient(agent, mine)
    differs = max(np.abs(a - b).max() for a, b in zip(at_snapshot, at_newer, strict=True) if a is not None)
    assert differs > 1e-3, "the case must make the newer parameters give a different gradient"
    params = [v.numpy().astype(np.float64) for v in agent.trainable]
    mean_squares = [agent.optimizer.mean_squares[agent.optimizer._index[id(v)]].numpy() for v in agent.trainable]
    lr = agent.learning_rate * (1 - int(agent.env_steps.numpy()) / agent.total_env_steps)

    terms = replica.train_step(mine)
    assert terms["staleness"] == 1.0
    # One traced update per batch kind, kept by the agent for itself and its snapshots.
    assert set(agent._by_value._functions) == {("train", None)} | ({("train", 0)} if my_tasks == [0, 0] else set())
    assert not [key for key in replica._functions._cache._functions if key[0] == "train"]
    applied = [v.numpy() for v in agent.trainable]
    expected = _rmsprop_step(agent, params, mean_squares, at_snapshot, lr)
    wrong = _rmsprop_step(agent, params, mean_squares, at_newer, lr)
    err_snapshot = max(np.abs(a - e).max() for a, e in zip(applied, expected, strict=True))
    err_newer = max(np.abs(a - w).max() for a, w in zip(applied, wrong, strict=True))
    assert err_snapshot < 1e-5 < err_newer


def test_replica_acts_with_its_snapshot_until_it_syncs():
    agent = _agent("kl_2col", seed=3)
    replica = agent.make_replica()
    obs = np.random.default_rng(0).integers(0, 255, [2, *OBS], dtype=np.uint8)
    d_state, t_state = agent.initial_state(2)
    args = (np.array([0, 1], np.int32), obs, np.ones(2, bool), d_state, t_state)
    before = replica.act(*args)[1]
    for _ in range(3):
        agent.train_step(_rollout([0, 1], seed=4))
    np.testing.assert_array_equal(replica.act(*args)[1], before)
    assert not np.allclose(agent.act(*args)[1], before)
    assert replica.sync() == 3
    np.testing.assert_allclose(replica.act(*args)[1], agent.act(*args)[1], rtol=1e-6, atol=1e-6)
    assert replica.train_step(_rollout([1], seed=5))["staleness"] == 0.0


def test_batched_update_is_clipped_at_the_sum_of_per_rollout_clips():
    """A batch of B rollouts is clipped at B x clip_norm: never harder than B clipped rollouts summed."""
    from distral_tf.model.optim import SharedRMSProp

    variables = [tf.Variable(np.zeros(4, np.float32))]
    opt = SharedRMSProp(variables, clip_norm=1.0, epsilon=1e-8, decay=0.0)
    apply = tf.function(lambda g, scale: opt.apply([g], variables, 1.0, clip_scale=scale))
    grad = tf.constant([3.0, 0.0, 0.0, 0.0])
    # decay 0: the step is lr * clipped / |clipped| = 1 whatever the clip, so read the clip off ms.
    apply(grad, tf.constant(4.0))
    np.testing.assert_allclose(opt.mean_squares[0].numpy()[0], 9.0, rtol=1e-5)  # 3 < 4 x 1: not clipped
    apply(grad, tf.constant(2.0))
    np.testing.assert_allclose(opt.mean_squares[0].numpy()[0], 4.0, rtol=1e-5)  # clipped to 2 x 1
