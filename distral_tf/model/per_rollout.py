"""Per-rollout gradients of a batch of rollouts acted with one set of parameters.

A Hogwild worker's update is the gradient of its own rollout's loss (a sum over the
rollout's steps; docs/spec.md section 6). The rollouts of an actor group are all acted,
and differentiated, at the group's snapshot, so one batched forward and backward pass
gives every one of them: at each linear map of a column, with input ``x`` and output
``z`` (before the nonlinearity), rollout ``b``'s gradient with respect to the weights is
the sum over its own steps (and, for a convolution, its positions) of ``x`` times
``dL/dz``; with respect to the bias, the sum of ``dL/dz``. The backward pass computes
``dL/dz`` for the whole batch at once; only these last products are made per rollout.

Columns record ``(x, z)`` pairs in ``taps`` (:meth:`distral_tf.model.networks.Column.unroll`):
the convolutions and the fc layer on ``[T*B, ...]`` (time-major), the LSTM's input
projection and recurrence on ``[T, B, ...]``, the heads on ``[T, B, ...]``.

Each rollout's gradient norm (for its clipping) is taken without reading its gradients
again where they are large: the squared norm of a linear map's weight gradient
``X_b^T dZ_b`` is ``sum_{t,s} (x_t . x_s)(dz_t . dz_s)``, the inner product of two
``T x T`` Gram matrices of rollout ``b``'s own steps.
"""

from __future__ import annotations

import tensorflow as tf


def dense_gradients(x, dz, time, batch):
    """Per-rollout ``(kernel [B, in, out], bias [B, out])`` of ``z = x W + b`` with ``x [T*B or T, B, in]``."""
    x = tf.reshape(tf.cast(x, tf.float32), [time, batch, -1])
    dz = tf.reshape(tf.cast(dz, tf.float32), [time, batch, -1])
    return tf.einsum("tbi,tbo->bio", x, dz), tf.reduce_sum(dz, 0)


def _grams(x, time, batch):
    """``[B, T, T]``: each rollout's Gram matrix of its steps' rows of ``x [T*B or T, B, n]``."""
    x = tf.reshape(tf.cast(x, tf.float32), [time, batch, -1])
    return tf.einsum("tbi,sbi->bts", x, x)


def dense_squared_norms(x, dz, time, batch):
    """Each rollout's squared norm ``[B]`` of its kernel gradient (:func:`dense_gradients`), without forming it."""
    return tf.reduce_sum(_grams(x, time, batch) * _grams(dz, time, batch), [1, 2])


def _squared_norms(g):
    return tf.reduce_sum(tf.square(g), axis=tf.range(1, tf.rank(g)))


def conv_gradients(x, dz, kernel_shape, strides, time, batch):
    """Per-rollout ``(kernel [B, kh, kw, cin, cout], bias [B, cout])`` of a VALID convolution.

    ``x [T*B, H, W, cin]`` and ``dz [T*B, h, w, cout]`` are time-major; each rollout's
    ``T`` images make one filter-gradient call (the kernel a batched backward pass uses).
    """
    def batch_major(t):
        t = tf.cast(t, tf.float32)
        shape = tf.shape(t)
        return tf.transpose(tf.reshape(t, tf.concat([[time, batch], shape[1:]], 0)), [1, 0, 2, 3, 4])

    xs, dzs = batch_major(x), batch_major(dz)
    sizes = tf.constant(kernel_shape, tf.int32)
    kernels = tf.map_fn(
        lambda pair: tf.raw_ops.Conv2DBackpropFilter(input=pair[0], filter_sizes=sizes, out_backprop=pair[1],
                                                     strides=[1, *strides, 1], padding="VALID"),
        (xs, dzs), fn_output_signature=tf.TensorSpec(kernel_shape, tf.float32))
    return kernels, tf.reduce_sum(dzs, [1, 2, 3])


def column_gradients(column, taps: dict, d_outputs: dict, time, batch) -> tuple[dict, dict]:
    """Per-rollout gradients ``[B, *shape]`` of ``column``'s variables and their squared norms ``[B]``, each
    keyed by ``id(variable)``.

    ``taps``: what ``column.unroll(..., taps=taps)`` recorded; ``d_outputs``: per layer
    name, the loss's gradient with respect to that layer's recorded output. The squared
    norms of the dense and LSTM kernels come from Gram matrices (:func:`dense_squared_norms`).
    """
    out, norms = {}, {}
    for layer in (column.conv1, column.conv2):
        x, _ = taps[layer.name]
        kernel, bias = conv_gradients(x, d_outputs[layer.name], tuple(layer.kernel.shape), tuple(layer.strides),
                                      time, batch)
        out[id(layer.kernel)], out[id(layer.bias)] = kernel, bias
    heads = [column.fc, column.policy_head] + ([column.value_head] if column.value_head is not None else [])
    for layer in heads:
        x, _ = taps[layer.name]
        dz = d_outputs[layer.name]
        out[id(layer.kernel)], out[id(layer.bias)] = dense_gradients(x, dz, time, batch)
        norms[id(layer.kernel)] = dense_squared_norms(x, dz, time, batch)
    lstm = column.lstm
    features, previous, _ = taps[lstm.name]
    d_gates = d_outputs[lstm.name]
    out[id(lstm.kernel)], out[id(lstm.bias)] = dense_gradients(features, d_gates, time, batch)
    out[id(lstm.recurrent_kernel)], _ = dense_gradients(previous, d_gates, time, batch)
    norms[id(lstm.kernel)] = dense_squared_norms(features, d_gates, time, batch)
    norms[id(lstm.recurrent_kernel)] = dense_squared_norms(previous, d_gates, time, batch)
    for key, g in out.items():  # the small ones: convolution kernels and biases
        if key not in norms:
            norms[key] = _squared_norms(g)
    return out, norms


def tap_outputs(taps: dict) -> dict:
    """The recorded output of each layer in ``taps`` (what the loss is differentiated with respect to)."""
    return {name: recorded[-1] for name, recorded in taps.items()}
