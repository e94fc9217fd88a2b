"""Shared RMSProp (docs/spec.md section 6) against a NumPy reference, clipping, skipped updates, annealing."""

import threading

import numpy as np
import pytest
import tensorflow as tf

from distral_tf.model.optim import SharedRMSProp, linear_annealing

SHAPES = [(3, 4), (5,), ()]


class NumpyRMSProp:
    """``g <- rho g + (1 - rho) d^2``, ``theta <- theta - lr d / sqrt(g + eps)``, after global-norm
    clipping."""

    def __init__(self, params, rho, eps, clip_norm):
        self.params = [np.array(p, np.float64) for p in params]
        self.ms = [np.zeros_like(p) for p in self.params]
        self.rho, self.eps, self.clip_norm = rho, eps, clip_norm

    def apply(self, grads, lr):
        norm = np.sqrt(sum(np.sum(np.square(d)) for d in grads if d is not None))
        scale = min(1.0, self.clip_norm / norm) if norm > 0 else 1.0
        for i, d in enumerate(grads):
            if d is None:
                continue
            d = d * scale
            self.ms[i] = self.rho * self.ms[i] + (1 - self.rho) * d ** 2
            self.params[i] = self.params[i] - lr * d / np.sqrt(self.ms[i] + self.eps)
        return norm


def make(rng, rho=0.99, eps=0.1, clip_norm=40.0):
    init = [rng.normal(size=s) for s in SHAPES]
    variables = [tf.Variable(p.astype(np.float32)) for p in init]
    opt = SharedRMSProp(variables, decay=rho, epsilon=eps, clip_norm=clip_norm)
    apply = tf.function(lambda grads, lr: opt.apply(grads, variables, lr))
    return variables, opt, apply, NumpyRMSProp(init, rho, eps, clip_norm)


def as_tensors(grads):
    return [None if g is None else tf.constant(g, tf.float32) for g in grads]


def assert_state(variables, opt, ref):
    for v, p in zip(variables, ref.params, strict=True):
        np.testing.assert_allclose(v.numpy(), p, rtol=1e-5, atol=1e-6)
    for ms, m in zip(opt.mean_squares, ref.ms, strict=True):
        np.testing.assert_allclose(ms.numpy(), m, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("initial", [0.0, 1.0])
def test_first_step_from_the_initial_mean_squares(initial):
    """g1 = rho g0 + (1 - rho) d^2; theta1 = theta0 - lr d / sqrt(g1 + eps): TF1 starts g0 at 1, Keras at 0."""
    rho, eps, lr, d = 0.99, 0.1, 1e-3, np.array([0.5, -2.0], np.float32)
    var = tf.Variable([1.0, 1.0])
    opt = SharedRMSProp([var], decay=rho, epsilon=eps, initial_mean_square=initial)
    tf.function(lambda: opt.apply([tf.constant(d)], [var], lr))()
    g1 = rho * initial + (1 - rho) * d**2
    np.testing.assert_allclose(opt.mean_squares[0].numpy(), g1, rtol=1e-6)
    np.testing.assert_allclose(var.numpy(), 1.0 - lr * d / np.sqrt(g1 + eps), rtol=1e-6)


def test_tf1_initialisation_makes_the_first_steps_smaller():
    steps = {}
    for initial in (0.0, 1.0):
        var = tf.Variable([0.0])
        opt = SharedRMSProp([var], initial_mean_square=initial)
        tf.function(lambda opt=opt, var=var: opt.apply([tf.constant([1.0])], [var], 1.0))()
        steps[initial] = -float(var.numpy()[0])
    np.testing.assert_allclose(steps[0.0], 1 / np.sqrt(0.01 + 0.1), rtol=1e-6)  # about 3x the TF1 step
    np.testing.assert_allclose(steps[1.0], 1 / np.sqrt(0.99 + 0.01 + 0.1), rtol=1e-6)


def test_defaults_follow_the_spec():
    opt = SharedRMSProp([tf.Variable(1.0)])
    assert (opt.decay, opt.epsilon, opt.clip_norm) == (0.99, 0.1, 40.0)


@pytest.mark.parametrize("clip_norm", [40.0, 0.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_two_workers_share_statistics(seed, clip_norm):
    """Two workers apply alternately with different gradients to the same parameters and statistics."""
    rng = np.random.default_rng(seed)
    variables, opt, apply, ref = make(rng, rho=0.9, eps=0.1, clip_norm=clip_norm)
    for step in range(6):
        worker_scale = 1.0 if step % 2 == 0 else 3.0  # worker 1's gradients are larger
        grads = [rng.normal(size=s) * worker_scale for s in SHAPES]
        lr = 0.01 * (1.0 - step / 10)
        norm = apply(as_tensors(grads), tf.constant(lr))
        expected_norm = ref.apply(grads, lr)
        np.testing.assert_allclose(norm.numpy(), expected_norm, rtol=1e-5)  # the pre-clipping norm
        assert_state(variables, opt, ref)
    assert int(opt.num_updates.numpy()) == 6
    assert int(opt.num_skipped.numpy()) == 0


def test_global_norm_clipping():
    rng = np.random.default_rng(2)
    variables, opt, apply, ref = make(rng, rho=0.0, eps=0.0, clip_norm=1.0)
    grads = [np.full(s, 10.0) for s in SHAPES]
    before = [v.numpy() for v in variables]
    norm = apply(as_tensors(grads), tf.constant(1.0))
    n = np.sqrt(100.0 * sum(int(np.prod(s)) for s in SHAPES))
    np.testing.assert_allclose(norm.numpy(), n, rtol=1e-6)
    # With rho = 0 and eps = 0 the statistics hold the clipped d^2 (global norm 1 after clipping).
    clipped = [g * (1.0 / n) for g in grads]
    np.testing.assert_allclose(np.sqrt(sum(np.sum(ms.numpy()) for ms in opt.mean_squares)), 1.0, rtol=1e-5)
    for ms, c in zip(opt.mean_squares, clipped, strict=True):
        np.testing.assert_allclose(ms.numpy(), c ** 2, rtol=1e-5)
    # ... and every parameter moves by exactly lr * sign(d).
    for v, b in zip(variables, before, strict=True):
        np.testing.assert_allclose(v.numpy(), b - 1.0, rtol=1e-5)
    ref.apply(grads, 1.0)
    assert_state(variables, opt, ref)


def test_none_gradients_are_ignored():
    rng = np.random.default_rng(3)
    variables, opt, apply, ref = make(rng)
    grads = [rng.normal(size=SHAPES[0]), None, rng.normal(size=SHAPES[2])]
    before = variables[1].numpy()
    apply(as_tensors(grads), tf.constant(0.05))
    ref.apply(grads, 0.05)
    assert_state(variables, opt, ref)
    np.testing.assert_array_equal(variables[1].numpy(), before)
    assert not np.any(opt.mean_squares[1].numpy())
    assert int(opt.num_updates.numpy()) == 1


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_gradients_skip_the_update(bad):
    rng = np.random.default_rng(4)
    variables, opt, apply, ref = make(rng)
    good = [rng.normal(size=s) for s in SHAPES]
    apply(as_tensors(good), tf.constant(0.05))
    ref.apply(good, 0.05)
    for skipped in (1, 2):
        grads = [rng.normal(size=s) for s in SHAPES]
        grads[1][2] = bad
        norm = apply(as_tensors(grads), tf.constant(0.05))
        assert not np.isfinite(norm.numpy())
        assert_state(variables, opt, ref)  # nothing moved, statistics untouched
        assert int(opt.num_skipped.numpy()) == skipped
        assert int(opt.consecutive_skipped.numpy()) == skipped
        assert int(opt.num_updates.numpy()) == 1
    apply(as_tensors(good), tf.constant(0.05))
    ref.apply(good, 0.05)
    assert_state(variables, opt, ref)
    assert int(opt.consecutive_skipped.numpy()) == 0
    assert int(opt.num_skipped.numpy()) == 2
    assert int(opt.num_updates.numpy()) == 2


def test_concurrent_updates_of_a_variable_never_mix():
    """Hogwild threads: each variable's update is applied whole (the fused kernel's step slot is
    shared), so with the same gradient everywhere the result is that of sequential updates."""
    rng = np.random.default_rng(5)
    shapes = [(1024, 512), (512,)]  # large enough for concurrent kernels to overlap
    init = [rng.normal(size=s) for s in shapes]
    variables = [tf.Variable(p.astype(np.float32)) for p in init]
    opt = SharedRMSProp(variables, decay=0.9, epsilon=0.01, clip_norm=1e6)
    apply = tf.function(lambda grads, lr: opt.apply(grads, variables, lr))
    ref = NumpyRMSProp(init, 0.9, 0.01, 1e6)
    grads = [rng.normal(size=s) for s in shapes]
    tensors, lr = as_tensors(grads), tf.constant(0.01)
    apply(tensors, lr)  # trace once before the threads start
    threads, per_thread = 4, 25
    workers = [threading.Thread(target=lambda: [apply(tensors, lr) for _ in range(per_thread)])
               for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for _ in range(1 + threads * per_thread):
        ref.apply(grads, 0.01)
    assert int(opt.num_updates.numpy()) == 1 + threads * per_thread
    for v, p in zip(variables, ref.params, strict=True):
        np.testing.assert_allclose(v.numpy(), p, rtol=1e-4, atol=1e-5)
    for ms, m in zip(opt.mean_squares, ref.ms, strict=True):
        np.testing.assert_allclose(ms.numpy(), m, rtol=1e-4, atol=1e-6)


def test_linear_annealing():
    values = [float(linear_annealing(0.1, s, 1000)) for s in (0, 250, 500, 1000, 1500)]
    np.testing.assert_allclose(values, [0.1, 0.075, 0.05, 0.0, 0.0], rtol=1e-6, atol=1e-9)
    step = tf.Variable(400, dtype=tf.int64)
    np.testing.assert_allclose(float(tf.function(lambda: linear_annealing(2.0, step, 800))()), 1.0, rtol=1e-6)
    assert float(linear_annealing(0.1, 0, 0)) == pytest.approx(0.1)
