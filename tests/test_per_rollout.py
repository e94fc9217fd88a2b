"""Hogwild updates computed together: per-rollout gradients from one batched pass, applied one by one."""

import numpy as np
import pytest
import tensorflow as tf

from distral_tf import algorithms
from distral_tf.model.agent import Agent, Rollout
from distral_tf.model.per_rollout import conv_gradients, dense_gradients, dense_squared_norms
from distral_tf.training.actors import select_rollouts

OBS, T, NUM_ACTIONS, TASKS = (36, 36, 3), 4, 3, 2
TOL = dict(rtol=2e-4, atol=2e-6)


def _agent(name, seed=0, **kwargs):
    algorithm = algorithms.get(name)
    agent = Agent(algorithm, algorithm.coefficients(0.05), 1 if name == "a3c_multitask" else TASKS, OBS,
                  NUM_ACTIONS, unroll_length=T, learning_rate=5e-2, total_env_steps=400, seed=seed, **kwargs)
    rng = np.random.default_rng(seed)  # policy layers away from zero, so that every gradient is non-trivial
    for column in agent.columns:
        for v in column.policy_head.weights:
            v.assign(rng.normal(scale=0.3, size=v.shape).astype(np.float32))
    return agent


def _one_rollout(rollout, k):
    return select_rollouts(rollout, slice(k, k + 1))


def _batch(task, count, seed, episode_starts=False):
    """``count`` rollouts of ``task``: random images, actions, rewards and LSTM states; with
    ``episode_starts``, episodes that end and start again inside the rollouts."""
    rng = np.random.default_rng(seed)
    first = rng.random([T + 1, count]) < (0.3 if episode_starts else 0.0)
    state = lambda: tuple(rng.normal(scale=0.5, size=[count, 256]).astype(np.float32) for _ in range(2))  # noqa: E731
    return Rollout(
        task_ids=np.full(count, task, np.int32),
        observations=rng.integers(0, 255, [T + 1, count, *OBS], dtype=np.uint8), first=first,
        actions=rng.integers(0, NUM_ACTIONS, [T, count]).astype(np.int32),
        rewards=rng.normal(size=[T, count]).astype(np.float32), dones=first[1:].copy(),
        distilled_state=state(), task_state=state())


def test_dense_and_conv_gradients_are_the_sums_over_each_rollouts_own_steps():
    rng = np.random.default_rng(0)
    time, batch = 3, 4
    x = tf.constant(rng.normal(size=(time * batch, 5)), tf.float32)
    dz = tf.constant(rng.normal(size=(time * batch, 2)), tf.float32)
    kernel, bias = dense_gradients(x, dz, time, batch)
    xs, ds = x.numpy().reshape(time, batch, 5), dz.numpy().reshape(time, batch, 2)
    for b in range(batch):
        np.testing.assert_allclose(kernel[b], xs[:, b].T @ ds[:, b], rtol=1e-5)
        np.testing.assert_allclose(bias[b], ds[:, b].sum(0), rtol=1e-5)
    # Each rollout's squared norm from its steps' Gram matrices, without the gradient: the gradient's own.
    np.testing.assert_allclose(dense_squared_norms(x, dz, time, batch), np.sum(np.square(kernel), (1, 2)), rtol=1e-5)
    images = tf.constant(rng.normal(size=(time * batch, 10, 10, 2)), tf.float32)
    w = tf.constant(rng.normal(size=(4, 4, 2, 3)), tf.float32)
    out_grad = tf.constant(rng.normal(size=(time * batch, 4, 4, 3)), tf.float32)
    kernel, bias = conv_gradients(images, out_grad, (4, 4, 2, 3), (2, 2), time, batch)
    for b in range(batch):
        mine = [b + batch * t for t in range(time)]  # time-major rows of rollout b
        with tf.GradientTape() as tape:
            tape.watch(w)
            z = tf.nn.conv2d(tf.gather(images, mine), w, 2, "VALID")
            loss = tf.reduce_sum(z * tf.gather(out_grad, mine))
        np.testing.assert_allclose(kernel[b], tape.gradient(loss, w), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bias[b], tf.reduce_sum(tf.gather(out_grad, mine), [0, 1, 2]), rtol=1e-5)


@pytest.mark.parametrize("name", algorithms.NAMES)
def test_gradients_computed_together_equal_those_of_each_rollout_alone(name):
    agent = _agent(name)
    task = 0 if name == "a3c_multitask" else 1
    rollout = _batch(task, 5, seed=3, episode_starts=True)
    _, together, norms = agent._functions.rollout_gradients(task)(rollout)
    sources = agent._functions._task_variables(task)[0]
    for k in range(5):
        with tf.GradientTape() as tape:
            total = agent.trace_loss_terms(_one_rollout(rollout, k))["total"]
        alone = tape.gradient(total, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        assert any(np.abs(g.numpy()).max() > 0 for g in alone)
        np.testing.assert_allclose(norms[k], np.sqrt(sum(np.sum(np.square(g.numpy())) for g in alone)), rtol=1e-4)
        for v, g_all, g_one in zip(sources, together, alone, strict=True):
            np.testing.assert_allclose(g_all[k].numpy(), g_one.numpy(), err_msg=v.name, **TOL)


@pytest.mark.parametrize("name", ["a3c", "kl_2col", "klent_1col", "a3c_multitask"])
def test_updates_applied_together_equal_separate_hogwild_updates_in_order(name):
    together, separate = _agent(name), _agent(name)
    task = 0 if name == "a3c_multitask" else 1
    rollout = _batch(task, 6, seed=4)
    rollout.rewards[:, 2] = 1e4  # one gradient far above the clipping norm
    replica = together.make_replica()
    terms = replica.train_each(rollout)
    # The reference: one worker's update after another, each differentiated at the same snapshot.
    reference = separate.make_replica()
    expected = [reference.train_step(_one_rollout(rollout, k)) for k in range(6)]
    for a, b in zip(together.trainable, separate.trainable, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), err_msg=a.name, rtol=1e-4, atol=1e-6)
    for a, b in zip(together.optimizer.mean_squares, separate.optimizer.mean_squares, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-9)
    assert int(together.env_steps.numpy()) == int(separate.env_steps.numpy()) == 6 * T
    assert int(together.optimizer.num_updates.numpy()) == 6
    assert [t["staleness"] for t in terms] == [e["staleness"] for e in expected] == list(range(6))
    np.testing.assert_allclose([t["grad_norm"] for t in terms], [e["grad_norm"] for e in expected], rtol=1e-4)
    assert terms[2]["grad_norm"] > together.optimizer.clip_norm


def test_a_non_finite_rollout_is_skipped_and_the_others_applied():
    together, separate = _agent("kl_2col"), _agent("kl_2col")
    rollout = _batch(0, 3, seed=5)
    rollout.rewards[:, 1] = np.nan
    together.make_replica().train_each(rollout)
    reference = separate.make_replica()
    for k in range(3):  # the non-finite one is skipped there too (its agent steps still count)
        reference.train_step(_one_rollout(rollout, k))
    for a, b in zip(together.trainable, separate.trainable, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
    assert int(together.optimizer.num_skipped.numpy()) == 1 and int(together.optimizer.num_updates.numpy()) == 2


def test_device_places_acting_and_updates_and_an_unknown_device_is_refused():
    on_cpu, default = _agent("kl_2col", device="/CPU:0"), _agent("kl_2col")
    rollout = _batch(1, 2, seed=6)
    on_cpu.make_replica().train_each(rollout)
    default.make_replica().train_each(rollout)
    for a, b in zip(on_cpu.trainable, default.trainable, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="no such device here; this machine has /CPU:0"):
        _agent("a3c", device="/GPU:7")
    with pytest.raises(ValueError, match="not a TensorFlow device name"):
        _agent("a3c", device="gpu please")


def test_xla_compiled_acting_and_gradients_equal_the_plain_ones():
    """``jit_compile`` (measured by benchmarks/tf_step_cost.py) changes how, not what, is computed."""
    compiled, plain = _agent("kl_2col", jit_compile=True), _agent("kl_2col")
    rollout = _batch(1, 3, seed=7, episode_starts=True)
    for agent, xla in ((compiled, True), (plain, False)):
        for fn in (agent._functions.rollout_gradients_function(), agent._functions.act):
            assert fn.function_def.attr["_XlaMustCompile"].b == xla
    _, g_xla, n_xla = compiled._functions.rollout_gradients(1)(rollout)
    _, g_plain, n_plain = plain._functions.rollout_gradients(1)(rollout)
    np.testing.assert_allclose(n_xla.numpy(), n_plain.numpy(), rtol=1e-4)
    for a, b in zip(g_xla, g_plain, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), **TOL)
    obs, first = rollout.observations[0], rollout.first[0]
    d_state, t_state = compiled.initial_state(3)
    _, logits_xla, _, (h_xla, _) = compiled.act(rollout.task_ids, obs, first, d_state, t_state)
    _, logits_plain, _, (h_plain, _) = plain.act(rollout.task_ids, obs, first, d_state, t_state)
    np.testing.assert_allclose(logits_xla, logits_plain, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(h_xla, h_plain, rtol=1e-4, atol=1e-6)
