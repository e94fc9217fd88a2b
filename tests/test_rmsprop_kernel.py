"""The RMSProp steps of a Hogwild call: the C++ op and the XLA program against the formula, step by step."""

import numpy as np
import pytest
import tensorflow as tf

from distral_tf.model import kernels
from distral_tf.model.optim import SharedRMSProp

# The C++ op is compiled at first use; without a compiler only its fallback can be tested.
needs_compiler = pytest.mark.skipif(kernels.find_compiler() is None, reason="no C++ compiler to build the op")
SHAPES = [(3, 5), (7,), (2, 3, 4), (1,)]
DECAY, EPSILON, CLIP, LR, TOTAL, PER_UPDATE = 0.9, 0.1, 1.5, 0.05, 1000, 20


def reference(params, squares, grads, norms, steps0):
    """Separate clipped RMSProp steps in order (docs/spec.md section 6), a non-finite norm skipped."""
    params, squares = [p.copy() for p in params], [m.copy() for m in squares]
    for k, norm in enumerate(norms):
        if not np.isfinite(norm):
            continue
        scale = min(1.0, CLIP / norm)
        rate = LR * max(1.0 - (steps0 + k * PER_UPDATE) / TOTAL, 0.0)
        for i, g in enumerate(grads):
            d = g[k] * scale
            squares[i] = DECAY * squares[i] + (1 - DECAY) * d * d
            params[i] = params[i] - rate * d / np.sqrt(squares[i] + EPSILON)
    return params, squares


def run_sequence(kernel, grads, norms, params, squares, steps0=100):
    variables = [tf.Variable(p) for p in params]
    optimizer = SharedRMSProp(variables, decay=DECAY, epsilon=EPSILON, clip_norm=CLIP, sequence_kernel=kernel)
    for ms, m in zip(optimizer.mean_squares, squares, strict=True):
        ms.assign(m)
    counter = tf.Variable(steps0, dtype=tf.int64)
    scales, before = optimizer.apply_sequence([tf.constant(g) for g in grads], variables, norms, counter,
                                              PER_UPDATE, LR, TOTAL)
    return optimizer, variables, counter, scales.numpy(), before.numpy()


def problem(seed, count=6):
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
    squares = [rng.uniform(0, 0.5, size=s).astype(np.float32) for s in SHAPES]
    grads = [rng.normal(size=(count, *s)).astype(np.float32) for s in SHAPES]
    norms = np.sqrt(sum(np.sum(g.reshape(count, -1) ** 2, axis=1) for g in grads)).astype(np.float32)
    return params, squares, grads, norms


@pytest.mark.parametrize("kernel", [pytest.param("cpp", marks=needs_compiler), "xla"])
@pytest.mark.parametrize("skip", [None, 0, 3, 5])
def test_sequence_equals_separate_steps_in_order(kernel, skip):
    params, squares, grads, norms = problem(seed=7 if skip is None else skip)
    if skip is not None:  # a non-finite update: its gradients are garbage and must not be read
        norms[skip] = np.nan
        for g in grads:
            g[skip] = np.inf
    optimizer, variables, counter, scales, before = run_sequence(kernel, grads, norms, params, squares)
    want_params, want_squares = reference(params, squares, grads, norms, steps0=100)
    for v, ms, p, m in zip(variables, optimizer.mean_squares, want_params, want_squares, strict=True):
        np.testing.assert_allclose(v.numpy(), p, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ms.numpy(), m, rtol=1e-5, atol=1e-7)
    applied = np.isfinite(norms)
    np.testing.assert_allclose(scales, np.where(applied, np.minimum(1.0, CLIP / np.where(applied, norms, 1)), 0),
                               rtol=1e-6)
    np.testing.assert_array_equal(before, np.cumsum(applied) - applied)
    assert optimizer.num_updates.numpy() == applied.sum()
    assert optimizer.num_skipped.numpy() == (~applied).sum()
    assert optimizer.consecutive_skipped.numpy() == (1 if skip == len(norms) - 1 else 0)
    assert counter.numpy() == 100 + len(norms) * PER_UPDATE


@needs_compiler
def test_the_cpp_op_and_the_xla_program_agree_on_large_variables():
    rng = np.random.default_rng(3)
    shapes = [(300, 257), (1031,)]  # not multiples of the op's block of parameters
    params = [rng.normal(size=s).astype(np.float32) for s in shapes]
    squares = [rng.uniform(0, 0.1, size=s).astype(np.float32) for s in shapes]
    grads = [rng.normal(size=(16, *s)).astype(np.float32) for s in shapes]
    norms = np.full(16, 50.0, np.float32)
    results = [run_sequence(kernel, grads, norms, params, squares)[1] for kernel in ("cpp", "xla")]
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)


@needs_compiler
def test_the_op_refuses_mismatched_shapes():
    op = kernels.rmsprop_sequence()
    var, ms = tf.Variable(tf.zeros([4, 3])), tf.Variable(tf.zeros([4, 3]))
    ones = tf.ones([2])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"grads must be \[B, \*var.shape\]"):
        op(var.handle, ms.handle, tf.zeros([2, 3, 4]), ones, ones, decay=0.9, epsilon=0.1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="scales and rates must be"):
        op(var.handle, ms.handle, tf.zeros([2, 4, 3]), tf.ones([3]), ones, decay=0.9, epsilon=0.1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="differ in shape"):
        op(var.handle, tf.Variable(tf.zeros([12])).handle, tf.zeros([2, 4, 3]), ones, ones, decay=0.9, epsilon=0.1)


@needs_compiler
def test_the_op_leaves_a_value_read_before_it_unchanged():
    """A read that still holds the variable's buffer (a snapshot's copy, say) keeps what it read."""
    op = kernels.rmsprop_sequence()
    var, ms = tf.Variable(tf.ones([1000])), tf.Variable(tf.zeros([1000]))
    held = var.read_value()
    op(var.handle, ms.handle, tf.ones([1, 1000]), tf.ones([1]), tf.ones([1]), decay=0.9, epsilon=0.1)
    np.testing.assert_array_equal(held.numpy(), np.ones(1000, np.float32))
    assert np.all(var.numpy() < 1.0)


def test_without_a_compiler_auto_falls_back_to_xla_and_cpp_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("DISTRAL_TF_KERNEL_CACHE", str(tmp_path))  # nothing cached there
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    kernels.rmsprop_sequence.cache_clear()
    try:
        with pytest.raises(kernels.KernelUnavailable, match="running the compiler"):
            kernels.build()
        params, squares, grads, norms = problem(seed=1)
        optimizer, variables, *_ = run_sequence("auto", grads, norms, params, squares)
        assert optimizer.sequence_kernel == "xla"
        want_params, _ = reference(params, squares, grads, norms, steps0=100)
        np.testing.assert_allclose(variables[0].numpy(), want_params[0], rtol=1e-5, atol=1e-6)
        with pytest.raises(kernels.KernelUnavailable, match="no-such-compiler"):
            run_sequence("cpp", grads, norms, params, squares)
    finally:
        kernels.rmsprop_sequence.cache_clear()


@needs_compiler
def test_a_failed_build_names_the_compiler_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTRAL_TF_KERNEL_CACHE", str(tmp_path))
    broken = tmp_path / "broken.cc"
    broken.write_text("this is not C++\n")
    with pytest.raises(kernels.KernelUnavailable, match="compiling broken.cc failed"):
        kernels.build(broken)
    assert not list(tmp_path.glob("*.so"))  # no partial library left behind


def test_an_unwritable_cache_says_which_directory(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("DISTRAL_TF_KERNEL_CACHE", str(blocker / "kernels"))
    with pytest.raises(kernels.KernelUnavailable, match="cannot write the kernel cache .*DISTRAL_TF_KERNEL_CACHE"):
        kernels.build()


def test_an_unknown_kernel_is_refused():
    with pytest.raises(ValueError, match="choose from auto, cpp, xla"):
        SharedRMSProp([tf.Variable(1.0)], sequence_kernel="fast")
