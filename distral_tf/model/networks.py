"""Keras columns: the conv + LSTM torso of the paper's agents (docs/spec.md section 6), with policy and value heads.

A column maps observations to policy logits (and, for task columns, a value).
``h_theta0`` (the distilled policy) is a column without a value head; ``f_thetai``
/ ``h_thetai`` (task columns) have both heads.
"""

from __future__ import annotations

import random

import keras
import tensorflow as tf

from distral_tf.model.options import TORSO_DTYPES

LSTM_SIZE = 256
# Added to a pixel's standard deviation before dividing by it: pixels that never change (a wall, the
# weapon) stay near their mean instead of being magnified.
OBSERVATION_STD_FLOOR = 0.02
# Frames per chunk of the first convolution in whole-batch updates (unrolls without taps): Column._first_convolution.
FIRST_CONVOLUTION_CHUNK = 64


def _scaled(obs: tf.Tensor, mean: tf.Tensor | None = None, scale: tf.Tensor | None = None) -> tf.Tensor:
    """uint8 frames -> float32: ``x / 255``, or ``(x - mean) * scale`` with per-pixel statistics."""
    if mean is None:
        return tf.cast(obs, tf.float32) * (1.0 / 255.0)
    return (tf.cast(obs, tf.float32) - mean) * scale


class _Untracked:
    """A column's statistics variables, out of Keras' tracking: a column's own are tracked as its weights
    (``observation_mean``, ``observation_scale``), a lender's are not this column's weights."""

    def __init__(self, variables: tuple):
        self.variables = variables


class Column(keras.Model):
    """conv(16, 8x8, /4) - conv(32, 4x4, /2) - fc256 - LSTM256, then heads.

    Observations are uint8 images ``[..., H, W, C]`` scaled to ``[0, 1]``. With
    ``normalize_observations``, each pixel and channel is then centred and scaled by
    statistics of the task's frames (:meth:`set_observation_statistics`; until set, the
    identity): ``(x - mean) / (std + floor)``. The LSTM state is reset wherever ``first``
    is true (the observation starts an episode).

    ``torso_dtype="bfloat16"`` computes the convolutions and the fc layer in bfloat16
    (Keras mixed precision: variables stay float32); the LSTM, the heads and
    everything downstream stay in float32.

    The policy layer starts at zero, so every column's initial policy is uniform, and its
    output is multiplied by ``policy_scale``: a two-column task column ``f_thetai`` built with
    ``policy_scale = 1/beta`` makes ``beta * f`` a unit-scaled network (``docs/fidelity.md``).

    ``seed_stream`` gives the seeds of the random initialisers (and of the LSTM's seed
    generator), drawn as Keras draws its default seeds, so that a column built after
    ``random.seed(s)`` equals one built with ``seed_stream=random.Random(s)``; without it,
    Keras draws them from Python's global ``random``.
    """

    def __init__(self, num_actions: int, with_value: bool, name: str = "column", torso_dtype: str = "float32",
                 policy_scale: float = 1.0, seed_stream: random.Random | None = None,
                 normalize_observations: bool = False):
        super().__init__(name=name)
        self.normalize_observations = bool(normalize_observations)
        self._statistics = _Untracked(())  # (mean, scale) of the pixels, with normalisation (see build_for)
        if torso_dtype not in TORSO_DTYPES:
            raise ValueError(f"torso_dtype must be one of {TORSO_DTYPES}, got {torso_dtype!r}.")
        num_actions = int(num_actions)
        self.num_actions = num_actions
        self.with_value = with_value
        policy = "mixed_bfloat16" if torso_dtype == "bfloat16" else "float32"

        def seed():  # Keras' default seed (``keras.random.make_default_seed``), from the given stream
            return None if seed_stream is None else seed_stream.randint(1, int(1e9))

        def glorot():
            return keras.initializers.GlorotUniform(seed=seed())

        self.conv1 = keras.layers.Conv2D(16, 8, strides=4, activation="relu", name="conv1", dtype=policy,
                                         kernel_initializer=glorot())
        self.conv2 = keras.layers.Conv2D(32, 4, strides=2, activation="relu", name="conv2", dtype=policy,
                                         kernel_initializer=glorot())
        self.flatten = keras.layers.Flatten(name="flatten", dtype=policy)
        self.fc = keras.layers.Dense(256, activation="relu", name="fc", dtype=policy, kernel_initializer=glorot())
        lstm_kernel, lstm_recurrent = glorot(), keras.initializers.Orthogonal(seed=seed())
        self.lstm = keras.layers.LSTMCell(LSTM_SIZE, name="lstm", kernel_initializer=lstm_kernel,
                                          recurrent_initializer=lstm_recurrent, seed=seed())
        if not (policy_scale > 0 and policy_scale < float("inf")):
            raise ValueError(f"policy_scale must be positive and finite, got {policy_scale}.")
        self.policy_scale = float(policy_scale)
        self.policy_head = keras.layers.Dense(num_actions, name="policy", kernel_initializer="zeros")
        self.value_head = keras.layers.Dense(1, name="value", kernel_initializer=glorot()) if with_value else None

    @staticmethod
    def initial_state(batch_size: int) -> tuple[tf.Tensor, tf.Tensor]:
        zeros = tf.zeros([batch_size, LSTM_SIZE], tf.float32)
        return zeros, zeros

    def build_for(self, observation_shape, statistics_of: Column | None = None) -> Column:
        """Creates the variables for observations of ``observation_shape`` (H, W, C).

        With normalisation, ``statistics_of`` (a built column) lends its statistics variables
        instead of new ones: a snapshot's column reads the shared column's, never a copy.
        """
        if self.normalize_observations and not self.observation_statistics:
            if statistics_of is not None:
                if not statistics_of.observation_statistics:
                    raise ValueError(f"Column {statistics_of.name!r} has no observation statistics to lend.")
                self._statistics = _Untracked(statistics_of.observation_statistics)
            else:
                shape = [int(d) for d in observation_shape]
                # x -> (x - mean) * scale, on uint8 values; until set, the identity on [0, 1]
                self.observation_mean = self.add_weight(shape=shape, initializer="zeros", trainable=False,
                                                        name="observation_mean")
                self.observation_scale = self.add_weight(
                    shape=shape, initializer=keras.initializers.Constant(1 / 255.0), trainable=False,
                    name="observation_scale")
                self._statistics = _Untracked((self.observation_mean, self.observation_scale))
        obs = tf.zeros([1, *observation_shape], tf.uint8)
        features = self.keras_torso(obs)  # builds the torso's Keras layers
        self._heads(self.lstm(features, list(self.initial_state(1)))[0])
        return self

    def torso(self, obs: tf.Tensor, taps: dict | None = None, chunked: bool = False) -> tf.Tensor:
        """``[N, H, W, C]`` uint8 -> ``[N, 256]`` features.

        The layers' own variables, applied by explicit ops (those the Keras layers run), so
        that ``taps`` (a dict, if given) can receive each layer's input and its output before
        the ReLU under the layer's name: what per-rollout gradients are made of
        (:mod:`distral_tf.model.per_rollout`). ``chunked`` (without ``taps``) computes the first
        convolution in chunks (:meth:`_first_convolution`): what a whole-batch update uses.
        """
        if taps is None and chunked:
            x = tf.nn.relu(self._first_convolution(obs))
            layers = (self.conv2,)
        else:
            x, layers = self.scaled_observations(obs), (self.conv1, self.conv2)
        for layer in layers:
            dtype = layer.compute_dtype
            x = tf.cast(x, dtype)
            z = tf.nn.conv2d(x, tf.cast(layer.kernel, dtype), strides=layer.strides, padding="VALID")
            z = tf.nn.bias_add(z, tf.cast(layer.bias, dtype))
            if taps is not None:
                taps[layer.name] = (x, z)
            x = tf.nn.relu(z)
        x = tf.reshape(x, [tf.shape(x)[0], -1])
        dtype = self.fc.compute_dtype
        z = tf.matmul(x, tf.cast(self.fc.kernel, dtype)) + tf.cast(self.fc.bias, dtype)
        if taps is not None:
            taps[self.fc.name] = (x, z)
        return tf.cast(tf.nn.relu(z), tf.float32)

    @property
    def observation_statistics(self) -> tuple:
        """``(mean, scale)`` variables of the normalisation (its own or a lender's); ``()`` without it."""
        return self._statistics.variables

    def scaled_observations(self, obs: tf.Tensor) -> tf.Tensor:
        """uint8 ``[N, H, W, C]`` -> float32 in ``[0, 1]``, or normalised per pixel (see the class)."""
        return _scaled(obs, *(tf.convert_to_tensor(v) for v in self.observation_statistics))

    def _first_convolution(self, obs: tf.Tensor) -> tf.Tensor:
        """conv1's output before the ReLU, from uint8 frames ``[N, H, W, C]``, computed in chunks of
        :data:`FIRST_CONVOLUTION_CHUNK` frames, one after another, both ways: the float frames exist one
        chunk at a time, and the kernel's gradient recomputes them from the uint8 ones instead of keeping
        them (an update of 128 rollouts x 21 frames of 84x84x3 would otherwise hold 227 MB of them per
        column, and about twice that while they are normalised)."""
        layer, dtype = self.conv1, self.conv1.compute_dtype
        statistics = [tf.convert_to_tensor(v) for v in self.observation_statistics]
        strides = [1, *layer.strides, 1]
        chunk = FIRST_CONVOLUTION_CHUNK
        count = tf.shape(obs)[0]
        chunks = (count + chunk - 1) // chunk
        padded = tf.pad(obs, [[0, chunks * chunk - count], [0, 0], [0, 0], [0, 0]])
        frames_in_chunks = tf.reshape(padded, tf.concat([[chunks, chunk], tf.shape(obs)[1:]], 0))

        def chunk_input(frames):
            return tf.cast(_scaled(frames, *statistics), dtype)

        @tf.custom_gradient
        def convolution(frames, kernel, bias):
            z = tf.map_fn(lambda f: tf.nn.conv2d(chunk_input(f), kernel, strides=strides, padding="VALID"), frames,
                          parallel_iterations=1, fn_output_signature=dtype)

            def gradient(dz):  # summed over the chunks in float32, as the plain gradients accumulate
                d_kernel = tf.foldl(
                    lambda total, pair: total + tf.cast(tf.raw_ops.Conv2DBackpropFilter(
                        input=chunk_input(pair[0]), filter_sizes=tf.shape(kernel), out_backprop=pair[1],
                        strides=strides, padding="VALID"), tf.float32),
                    (frames, dz), initializer=tf.zeros(tf.shape(kernel), tf.float32), parallel_iterations=1)
                d_bias = tf.reduce_sum(tf.cast(dz, tf.float32), axis=[0, 1, 2, 3])
                return None, tf.cast(d_kernel, kernel.dtype), tf.cast(d_bias, bias.dtype)

            return tf.nn.bias_add(z, bias), gradient

        z = convolution(frames_in_chunks, tf.cast(layer.kernel, dtype), tf.cast(layer.bias, dtype))
        return tf.reshape(z, tf.concat([[chunks * chunk], tf.shape(z)[2:]], 0))[:count]

    def set_observation_statistics(self, mean, std, floor: float = OBSERVATION_STD_FLOOR):
        """Sets the per-pixel statistics, ``mean`` and ``std`` ``[H, W, C]`` of frames scaled to ``[0, 1]``."""
        if not self.observation_statistics:
            raise ValueError(f"Column {self.name!r} was built without normalize_observations.")
        mean_var, scale_var = self.observation_statistics
        mean = tf.convert_to_tensor(mean, tf.float32)
        std = tf.convert_to_tensor(std, tf.float32)
        if mean.shape != mean_var.shape or std.shape != scale_var.shape:
            raise ValueError(f"Observation statistics of shape {mean.shape} and {std.shape} do not fit observations "
                             f"of shape {mean_var.shape}.")
        mean_var.assign(255.0 * mean)
        scale_var.assign(1.0 / (255.0 * (std + floor)))

    def keras_torso(self, obs: tf.Tensor) -> tf.Tensor:
        """:meth:`torso` through the Keras layers' own calls (builds them; a reference for tests)."""
        x = self.scaled_observations(obs)
        return tf.cast(self.fc(self.flatten(self.conv2(self.conv1(x)))), tf.float32)

    def _heads(self, core_out: tf.Tensor, taps: dict | None = None):
        logits = self.policy_head(core_out)
        if taps is not None:
            taps[self.policy_head.name] = (core_out, logits)
        if self.policy_scale != 1.0:
            logits = logits * self.policy_scale
        value = None
        if self.with_value:
            value = self.value_head(core_out)
            if taps is not None:
                taps[self.value_head.name] = (core_out, value)
            value = tf.squeeze(value, -1)
        return logits, value

    @staticmethod
    def _reset(state, first):
        keep = 1.0 - tf.cast(first, tf.float32)[:, None]
        return tuple(s * keep for s in state)

    def step(self, obs, first, state):
        """One step for a batch: ``obs [B, H, W, C]``, ``first [B]`` -> ``(logits, value, state)``."""
        state = self._reset(state, first)
        out, new_state = self.lstm(self.torso(obs), list(state))
        logits, value = self._heads(out)
        return logits, value, tuple(new_state)

    def unroll(self, obs, first, state, taps: dict | None = None):
        """Unrolls over time: ``obs [T, B, H, W, C]``, ``first [T, B]`` -> ``([T,B,A], [T,B], state)``.

        The same LSTM as :meth:`step` (Keras ``LSTMCell``: gates i, f, c, o), with the input
        projection of all ``T * B`` steps computed in one product outside the loop instead of
        one product per step. ``taps``: as in :meth:`torso`, and for the LSTM ``(features
        [T*B, 256], h_{t-1} after the reset [T, B, 256], gate pre-activations' input part [T, B, 1024])``
        (the gradient with respect to the latter is that of the gates' pre-activations).
        """
        obs_shape = tf.shape(obs)
        t, b = obs_shape[0], obs_shape[1]
        features = self.torso(tf.reshape(obs, tf.concat([[t * b], obs_shape[2:]], 0)), taps, chunked=taps is None)
        lstm = self.lstm
        projected = tf.reshape(tf.matmul(features, lstm.kernel) + lstm.bias, [t, b, 4 * LSTM_SIZE])
        keep = 1.0 - tf.cast(first, tf.float32)[..., None]
        recurrent_kernel = tf.convert_to_tensor(lstm.recurrent_kernel)

        def cell(h, c, x, keep):
            h, c = h * keep, c * keep
            i, f, g, o = tf.split(x + tf.matmul(h, recurrent_kernel), 4, axis=1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            return tf.sigmoid(o) * tf.tanh(c), c

        core, cs = tf.scan(lambda carry, inputs: cell(carry[0], carry[1], *inputs), (projected, keep),
                           initializer=tuple(state))
        h, c = core[-1], cs[-1]
        if taps is not None:
            previous = tf.concat([state[0][None], core[:-1]], 0) * keep
            taps[lstm.name] = (features, previous, projected)
        logits, value = self._heads(core, taps)
        return logits, value, (h, c)

    def call(self, obs, first, state):
        return self.step(obs, first, state)
