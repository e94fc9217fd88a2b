"""The Keras column (docs/spec.md section 6) and the agent's batched acting."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import randomize_policy_layers

from distral_tf.model import objective
from distral_tf.model.algorithm_spec import Architecture
from distral_tf.model.networks import LSTM_SIZE, Column

OBS = (36, 36, 3)


def random_obs(rng, *lead, shape=OBS):
    return rng.integers(0, 256, (*lead, *shape), dtype=np.uint8)


def random_state(rng, b):
    return tuple(tf.constant(rng.normal(scale=0.5, size=(b, LSTM_SIZE)).astype(np.float32)) for _ in range(2))


@pytest.fixture(scope="module")
def column():
    keras.utils.set_random_seed(0)
    col = Column(4, with_value=True, name="task_test").build_for(OBS)
    randomize_policy_layers([col], seed=0)
    return col


@pytest.fixture(scope="module")
def distilled_column():
    keras.utils.set_random_seed(1)
    col = Column(4, with_value=False, name="distilled_test").build_for(OBS)
    randomize_policy_layers([col], seed=1)
    return col


def test_layer_sizes_on_84x84_rgb():
    col = Column(6, with_value=True).build_for((84, 84, 3))
    assert (col.conv1.filters, col.conv1.kernel_size, col.conv1.strides) == (16, (8, 8), (4, 4))
    assert (col.conv2.filters, col.conv2.kernel_size, col.conv2.strides) == (32, (4, 4), (2, 2))
    assert col.conv1.activation is keras.activations.relu and col.conv2.activation is keras.activations.relu
    assert col.fc.units == 256 and col.fc.activation is keras.activations.relu
    assert col.lstm.units == LSTM_SIZE == 256
    assert tuple(col.conv1.kernel.shape) == (8, 8, 3, 16)
    assert tuple(col.conv2.kernel.shape) == (4, 4, 16, 32)
    assert tuple(col.fc.kernel.shape) == (9 * 9 * 32, 256)  # 84 -> 20 -> 9
    assert tuple(col.lstm.kernel.shape) == (256, 4 * 256)
    assert tuple(col.lstm.recurrent_kernel.shape) == (256, 4 * 256)
    assert tuple(col.policy_head.kernel.shape) == (256, 6)
    assert tuple(col.value_head.kernel.shape) == (256, 1)
    n_params = sum(int(np.prod(v.shape)) for v in col.trainable_variables)
    expected = (8 * 8 * 3 * 16 + 16) + (4 * 4 * 16 * 32 + 32) + (2592 * 256 + 256) + 4 * (256 * 256 * 2 + 256)
    assert n_params == expected + (256 * 6 + 6) + (256 + 1)


def test_observations_are_scaled_to_unit_range(column):
    obs = random_obs(np.random.default_rng(0), 2)
    x = tf.constant(obs.astype(np.float32) / 255.0)
    expected = column.fc(column.flatten(column.conv2(column.conv1(x))))
    np.testing.assert_allclose(column.torso(obs).numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_step_shapes(column, distilled_column):
    rng = np.random.default_rng(1)
    obs, first = random_obs(rng, 5), tf.zeros([5], tf.bool)
    logits, value, (h, c) = column.step(obs, first, Column.initial_state(5))
    assert logits.shape == (5, 4) and value.shape == (5,)
    assert h.shape == (5, LSTM_SIZE) and c.shape == (5, LSTM_SIZE)
    logits, value, _ = distilled_column.step(obs, first, Column.initial_state(5))
    assert logits.shape == (5, 4) and value is None
    assert distilled_column.value_head is None
    assert not any("value" in v.path for v in distilled_column.trainable_variables)


@pytest.mark.parametrize("which", ["task", "distilled"])
def test_unroll_equals_repeated_steps(column, distilled_column, which):
    col = column if which == "task" else distilled_column
    rng = np.random.default_rng(2)
    t, b = 5, 3
    obs = random_obs(rng, t, b)
    first = np.zeros((t, b), bool)
    first[0, 0] = first[2, 1] = first[4, 2] = True
    state0 = random_state(rng, b)
    weights = rng.normal(size=(t, b, 4)).astype(np.float32)

    def loss(logits, values, state):  # touches every output, so every variable gets a gradient
        total = tf.reduce_sum(logits * weights) + tf.reduce_sum(state[0] * state[1])
        return total if values is None else total + tf.reduce_sum(values ** 2)

    with tf.GradientTape() as tape:
        logits, values, state = col.unroll(tf.constant(obs), tf.constant(first), state0)
        unrolled_loss = loss(logits, values, state)
    unrolled_grads = tape.gradient(unrolled_loss, col.trainable_variables)
    assert logits.shape == (t, b, 4)
    assert values is None if which == "distilled" else values.shape == (t, b)
    with tf.GradientTape() as tape:  # the same computation through the Keras LSTM cell, step by step
        s, steps = state0, []
        for i in range(t):
            lg, v, s = col.step(obs[i], first[i], s)
            steps.append((lg, v))
        stepped_loss = loss(tf.stack([lg for lg, _ in steps]),
                            None if values is None else tf.stack([v for _, v in steps]), s)
    stepped_grads = tape.gradient(stepped_loss, col.trainable_variables)
    for i, (lg, v) in enumerate(steps):
        np.testing.assert_allclose(logits[i].numpy(), lg.numpy(), atol=1e-5)
        if v is not None:
            np.testing.assert_allclose(values[i].numpy(), v.numpy(), atol=1e-5)
    for a, e in zip(state, s, strict=True):
        np.testing.assert_allclose(a.numpy(), e.numpy(), atol=1e-5)
    assert all(g is not None for g in unrolled_grads)
    for a, e in zip(unrolled_grads, stepped_grads, strict=True):
        np.testing.assert_allclose(a.numpy(), e.numpy(), rtol=1e-4, atol=1e-5)


def test_lstm_state_resets_where_first(column):
    rng = np.random.default_rng(3)
    obs = random_obs(rng, 2)
    first = tf.constant([True, False])
    out_a = column.step(obs, first, random_state(rng, 2))
    out_b = column.step(obs, first, random_state(rng, 2))
    out_zero = column.step(obs, first, Column.initial_state(2))
    for a, b, z in zip(out_a[:2], out_b[:2], out_zero[:2], strict=True):
        np.testing.assert_allclose(a[0].numpy(), z[0].numpy(), atol=1e-6)  # element 0 starts an episode
        np.testing.assert_allclose(b[0].numpy(), z[0].numpy(), atol=1e-6)
        assert not np.allclose(a[1].numpy(), b[1].numpy(), atol=1e-4)  # element 1 carries its state


def test_unroll_forgets_everything_before_an_episode_start(column):
    rng = np.random.default_rng(4)
    t = 4
    obs_a, obs_b = random_obs(rng, t, 1), random_obs(rng, t, 1)
    obs_b[2:] = obs_a[2:]  # the same episode from t = 2 on, different history before it
    first = np.zeros((t, 1), bool)
    first[2] = True
    la, va, _ = column.unroll(tf.constant(obs_a), tf.constant(first), random_state(rng, 1))
    lb, vb, _ = column.unroll(tf.constant(obs_b), tf.constant(first), random_state(rng, 1))
    np.testing.assert_allclose(la[2:].numpy(), lb[2:].numpy(), atol=1e-6)
    np.testing.assert_allclose(va[2:].numpy(), vb[2:].numpy(), atol=1e-6)
    assert not np.allclose(la[:2].numpy(), lb[:2].numpy(), atol=1e-4)


# ------------------------------------------------------------------------------------------------ #
# The agent's batched acting.

def act_inputs(agent, task_ids, seed):
    rng = np.random.default_rng(seed)
    b = len(task_ids)
    state = lambda: rng.normal(scale=0.5, size=(b, LSTM_SIZE)).astype(np.float32)
    first = np.zeros(b, bool)
    first[0] = True
    return (np.asarray(task_ids, np.int32), random_obs(rng, b, shape=agent.observation_shape), first,
            (state(), state()), (state(), state()))


def take(inputs, i):
    task_ids, obs, first, d, t = inputs
    return (task_ids[i:i + 1], obs[i:i + 1], first[i:i + 1], tuple(s[i:i + 1] for s in d),
            tuple(s[i:i + 1] for s in t))


@pytest.mark.parametrize("name", ["a3c", "a3c_multitask", "kl_2col", "klent_1col"])
def test_act_batches_mixed_tasks(make_agent, name):
    agent = make_agent(name)
    inputs = act_inputs(agent, [0, 1, 1, 0], seed=5)
    _, logits, d_state, t_state = agent.act(*inputs)
    assert logits.shape == (4, agent.num_actions)
    for i in range(4):
        _, lg, d, t = agent.act(*take(inputs, i))
        np.testing.assert_allclose(logits[i:i + 1], lg, atol=1e-5)
        for a, e in zip((*d_state, *t_state), (*d, *t), strict=True):
            np.testing.assert_allclose(a[i:i + 1], e, atol=1e-5)


@pytest.mark.parametrize("name", ["a3c", "a3c_2col", "kl_1col", "klent_2col"])
def test_act_uses_the_trained_task_policy(make_agent, name):
    """The acting logits are those of pi_i: the task column's own, or eq. 8's mixture for 2col."""
    agent = make_agent(name)
    task_ids, obs, first, d_state, t_state = act_inputs(agent, [0, 1, 0], seed=6)
    _, logits, _, _ = agent.act(task_ids, obs, first, d_state, t_state)
    h0 = agent.distilled.step(obs, first, d_state)[0].numpy()
    for i, task in enumerate(task_ids):
        col = agent.task_columns[task]
        f = col.step(obs[i:i + 1], first[i:i + 1], tuple(s[i:i + 1] for s in t_state))[0]
        expected = objective.task_policy_logits(agent.algorithm, agent.coeffs, f, h0[i:i + 1]).numpy()
        np.testing.assert_allclose(logits[i:i + 1], expected, atol=1e-5)
        if agent.algorithm.architecture is Architecture.TWO_COLUMN:
            a, b = agent.coeffs.alpha, agent.coeffs.beta
            np.testing.assert_allclose(expected, a * h0[i:i + 1] + b * f.numpy(), atol=1e-5)


def test_sampled_actions_follow_the_task_policy(make_agent):
    agent = make_agent("kl_2col")
    n = 3000
    rng = np.random.default_rng(7)
    obs = np.repeat(random_obs(rng, 1, shape=agent.observation_shape), n, axis=0)
    zeros = np.zeros((n, LSTM_SIZE), np.float32)
    actions, logits, _, _ = agent.act(np.ones(n, np.int32), obs, np.ones(n, bool), (zeros, zeros),
                                      (zeros, zeros))
    p = tf.nn.softmax(logits[0]).numpy()
    freq = np.bincount(actions, minlength=agent.num_actions) / n
    np.testing.assert_allclose(freq, p, atol=4 * np.sqrt(0.25 / n))


def test_bfloat16_torso_keeps_float32_variables_and_outputs_close_to_float32():
    full = Column(4, with_value=True, name="f32").build_for(OBS)
    half = Column(4, with_value=True, name="bf16", torso_dtype="bfloat16").build_for(OBS)
    assert all(v.dtype == "float32" for v in half.trainable_variables)
    half.set_weights(full.get_weights())
    rng = np.random.default_rng(3)
    obs, first, state = random_obs(rng, 6, 2), np.zeros((6, 2), bool), random_state(rng, 2)
    (la, va, sa), (lb, vb, sb) = (c.unroll(tf.constant(obs), tf.constant(first), state) for c in (full, half))
    assert lb.dtype == vb.dtype == sb[0].dtype == tf.float32
    np.testing.assert_allclose(lb.numpy(), la.numpy(), atol=0.05 * float(np.abs(la.numpy()).max()) + 1e-3)
    np.testing.assert_allclose(vb.numpy(), va.numpy(), atol=0.05 * float(np.abs(va.numpy()).max()) + 1e-3)
    with tf.GradientTape() as tape:
        logits, values, _ = half.unroll(tf.constant(obs), tf.constant(first), state)
        loss = tf.reduce_sum(logits**2) + tf.reduce_sum(values**2)
    grads = tape.gradient(loss, half.trainable_variables)
    assert all(g.dtype == tf.float32 and np.isfinite(g.numpy()).all() for g in grads)
    assert float(tf.linalg.global_norm(grads)) > 0


def test_unknown_torso_dtype_is_rejected():
    with pytest.raises(ValueError, match="torso_dtype must be one of"):
        Column(4, with_value=True, torso_dtype="float16")


@pytest.mark.parametrize("with_value", [True, False])
def test_a_seed_stream_gives_the_parameters_of_a_globally_seeded_build(with_value):
    """Checkpoints and runs keep their initial parameters: ``seed_stream=random.Random(s)`` draws the
    initialisers' seeds exactly as Keras draws them from Python's ``random`` after ``random.seed(s)``."""
    import random

    random.seed(7)
    globally_seeded = Column(3, with_value=with_value, name="global").build_for(OBS)
    from_stream = Column(3, with_value=with_value, name="stream", seed_stream=random.Random(7)).build_for(OBS)
    assert len(globally_seeded.variables) == len(from_stream.variables)
    for a, b in zip(globally_seeded.variables, from_stream.variables, strict=True):
        assert a.shape == b.shape and np.array_equal(a.numpy(), b.numpy()), a.name
    other = Column(3, with_value=with_value, name="other", seed_stream=random.Random(8)).build_for(OBS)
    assert not np.array_equal(other.conv1.kernel.numpy(), from_stream.conv1.kernel.numpy())


@pytest.mark.parametrize("torso_dtype,normalize", [("float32", False), ("float32", True), ("bfloat16", True)])
def test_the_chunked_first_convolution_gives_the_plain_features_and_gradients(torso_dtype, normalize):
    """Whole-batch updates compute conv1 in chunks and recompute its input for the kernel's gradient;
    features and gradients equal the plain computation's in float32 (for a batch that is not a whole
    number of chunks), and stay as close to float32's with a bfloat16 torso as the plain computation does."""
    import random

    from distral_tf.model.networks import FIRST_CONVOLUTION_CHUNK

    rng = np.random.default_rng(3)
    mean, std = rng.uniform(0, 1, OBS), rng.uniform(0.05, 0.3, OBS)
    obs = tf.constant(random_obs(rng, 2 * FIRST_CONVOLUTION_CHUNK + 5))
    weights = tf.constant(rng.normal(size=(obs.shape[0], 256)).astype(np.float32))

    def features_and_gradients(dtype, chunked):
        col = Column(4, with_value=True, name="chunked", torso_dtype=dtype, normalize_observations=normalize,
                     seed_stream=random.Random(5)).build_for(OBS)
        if normalize:
            col.set_observation_statistics(mean, std)
        with tf.GradientTape() as tape:
            features = col.torso(obs, chunked=chunked)
            loss = tf.reduce_sum(features * weights)
        grads = tape.gradient(loss, col.trainable_variables)
        return features.numpy(), [g.numpy() for g in grads if g is not None]

    reference = features_and_gradients("float32", chunked=False)
    plain, chunked = features_and_gradients(torso_dtype, False), features_and_gradients(torso_dtype, True)
    assert len(chunked[1]) == len(reference[1]) == 6  # conv1, conv2 and fc kernels and biases

    def error(result):  # largest deviation from float32's, relative to each array's largest value
        return max(np.abs(a - b).max() / np.abs(b).max() for a, b in zip([result[0], *result[1]],
                                                                           [reference[0], *reference[1]], strict=True))

    if torso_dtype == "float32":
        assert error(chunked) < 1e-5 and error(plain) < 1e-5
    else:  # bfloat16: no further from float32 than the plain computation (which sums conv1's bias in bfloat16)
        assert 0 < error(chunked) <= max(error(plain), 0.02)
