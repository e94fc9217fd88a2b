"""Shared RMSProp (docs/spec.md section 6): one set of squared-gradient statistics for all workers.

``g <- rho g + (1 - rho) d^2``, ``theta <- theta - lr d / sqrt(g + eps)``, with ``g``
starting at ``initial_mean_square`` (0 as in Keras; 1 in TF1's ``tf.train.RMSPropOptimizer``), applied
Hogwild style: any worker thread may call :meth:`SharedRMSProp.apply` at any time,
without a lock around the update; concurrent updates interleave variable by variable.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import tensorflow as tf
from absl import logging

from distral_tf.model import kernels
from distral_tf.model.options import RMSPROP_KERNELS


def linear_annealing(initial_learning_rate: float, step, total_steps: int):
    """Learning rate annealed linearly from ``initial_learning_rate`` to 0 at ``total_steps``."""
    frac = 1.0 - tf.cast(step, tf.float32) / float(max(total_steps, 1))
    return initial_learning_rate * tf.maximum(frac, 0.0)


class SharedRMSProp(tf.Module):
    """RMSProp whose statistics are shared by all workers, with global-norm clipping.

    Updates whose gradient norm is not finite are skipped and counted
    (``num_skipped``), and so are consecutive skips (``consecutive_skipped``).
    ``sequence_kernel`` is how :meth:`apply_sequence` applies its steps: ``cpp``, the C++ op of
    ``distral_tf/model/kernels`` (compiled at first use); ``xla``, one XLA program; ``auto``, the C++
    op where it builds and loads, else XLA (with a warning). Both give the same values to float rounding.
    """

    def __init__(self, variables, decay: float = 0.99, epsilon: float = 0.1, clip_norm: float = 40.0,
                 initial_mean_square: float = 0.0, sequence_kernel: str = "auto", name: str = "shared_rmsprop"):
        super().__init__(name=name)
        if sequence_kernel not in RMSPROP_KERNELS:
            raise ValueError(f"sequence_kernel={sequence_kernel!r}; choose from {', '.join(RMSPROP_KERNELS)}")
        self.decay = decay
        self.epsilon = epsilon
        self.clip_norm = clip_norm
        self.sequence_kernel = sequence_kernel
        self._kernel = None  # the C++ op, once loaded
        self._variables = list(variables)
        self._index = {id(v): i for i, v in enumerate(self._variables)}
        with self.name_scope:
            self.mean_squares = [
                tf.Variable(tf.fill(tf.shape(v), tf.constant(initial_mean_square, v.dtype)), trainable=False,
                            name=f"ms_{i}")
                for i, v in enumerate(self._variables)
            ]
            self.num_updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="num_updates")
            self.num_skipped = tf.Variable(0, dtype=tf.int64, trainable=False, name="num_skipped")
            self.consecutive_skipped = tf.Variable(0, dtype=tf.int64, trainable=False,
                                                   name="consecutive_skipped")
            # The fused kernel's momentum slot: with momentum 0 it only carries each update's step
            # (overwritten every time), so it is neither optimiser state nor checkpointed.
            self._scratch = SimpleNamespace(steps=[
                tf.Variable(tf.zeros_like(v), trainable=False, name=f"step_{i}")
                for i, v in enumerate(self._variables)])

    def apply(self, grads, variables, learning_rate, active=None, clip_scale=None, clip: bool = True):
        """Clips ``grads`` by global norm and applies them; returns the pre-clipping norm.

        Must be called inside a ``tf.function``. ``None`` gradients are ignored. The
        norm is clipped at ``clip_norm``, times ``clip_scale`` if given (a scalar tensor);
        ``clip=False`` applies gradients clipped already (by the worker that computed them).
        ``active`` optionally gives, per variable, a scalar boolean tensor (or
        ``None`` for always): a variable whose flag is false keeps its value and its
        statistics, as for a task column without data in this update.
        """
        active = [None] * len(grads) if active is None else list(active)
        triples = [(g, v, a) for g, v, a in zip(grads, variables, active, strict=True) if g is not None]
        if not triples:
            return tf.constant(0.0)
        gs, vs, flags = zip(*triples, strict=True)
        clip_norm = self.clip_norm if clip_scale is None else self.clip_norm * clip_scale
        if clip:
            clipped, norm = tf.clip_by_global_norm(list(gs), clip_norm)
        else:
            clipped, norm = list(gs), tf.linalg.global_norm(list(gs))

        def update():
            for g, v, flag in zip(clipped, vs, flags, strict=True):
                ms = self.mean_squares[self._index[id(v)]]
                if flag is None:
                    self._update(g, v, ms, learning_rate)
                else:
                    tf.cond(flag, lambda g=g, v=v, ms=ms: self._update(g, v, ms, learning_rate), tf.no_op)
            self.num_updates.assign_add(1)
            self.consecutive_skipped.assign(0)
            return tf.no_op()

        def skip():
            self.num_skipped.assign_add(1)
            self.consecutive_skipped.assign_add(1)
            return tf.no_op()

        tf.cond(tf.math.is_finite(norm), update, skip)
        return norm

    def apply_sequence(self, grads, variables, norms, steps_counter, steps_per_update, initial_learning_rate,
                       total_steps):
        """Applies ``B`` updates of ``variables`` in order, each its own clipped RMSProp step; call under a lock.

        ``grads``: per variable ``[B, *shape]`` (update ``k`` is ``grads[i][k]``); ``norms [B]``:
        each update's global norm (over every gradient of its rollout, those applied elsewhere
        included). Update ``k`` is :meth:`apply` of its gradients clipped at ``clip_norm``, at
        the learning rate annealed linearly from ``initial_learning_rate`` over ``total_steps``
        to the agent steps ``steps_counter`` holds before it; after each update
        ``steps_counter`` grows by ``steps_per_update``; a non-finite norm skips the update
        (counted as :meth:`apply` counts it). The ``B`` steps of a variable run in one pass
        over its memory (the chain of element-wise steps is one XLA fusion), so its parameters
        and mean squares are read and written once per call instead of once per update. One
        compiled program serves every set of variables of the same shapes (every task's
        column). The caller keeps other calls from writing the same variables meanwhile (as
        the per-variable locks of :meth:`apply` do). Returns ``(scales [B], updates_before
        [B])``: each update's clipping factor (0 if skipped) and the update count the shared
        parameters had just before it.
        """
        mean_squares = [self.mean_squares[self._index[id(v)]].handle for v in variables]
        args = (list(grads), [v.handle for v in variables], mean_squares, norms, steps_counter.handle,
                tf.constant(steps_per_update, tf.int64), tf.constant(initial_learning_rate, tf.float32),
                tf.constant(float(max(total_steps, 1)), tf.float32))
        if self._load_kernel():
            return self._sequence_cpp(*args)
        return self._sequence(*args, guarded=not bool(np.all(np.isfinite(norms))))

    def _load_kernel(self) -> bool:
        """Whether :meth:`apply_sequence` uses the C++ op (loaded at its first call)."""
        if self._kernel is None and self.sequence_kernel != "xla":
            try:
                self._kernel = kernels.rmsprop_sequence()
            except kernels.KernelUnavailable as e:
                if self.sequence_kernel == "cpp":
                    raise
                logging.warning("The RMSProp steps of Hogwild calls run as an XLA program: the C++ op is "
                                "unavailable (%s)", e)
                self.sequence_kernel = "xla"
        return self._kernel is not None

    def _schedule(self, norms, steps_counter, steps_per_update, initial_learning_rate, total_steps):
        """Per update of a sequence: whether it is applied (finite norm), its clipping factor (0 if not) and
        its learning rate, annealed to the agent steps before it."""
        count = norms.shape[0]  # static: one traced function per number of updates (and shapes)
        finite = tf.math.is_finite(norms)
        scales = tf.where(finite, tf.minimum(1.0, self.clip_norm / tf.maximum(norms, 1e-30)), 0.0)
        steps0 = tf.cast(tf.raw_ops.ReadVariableOp(resource=steps_counter, dtype=tf.int64), tf.float32)
        done = steps0 + tf.range(count, dtype=tf.float32) * tf.cast(steps_per_update, tf.float32)
        rates = initial_learning_rate * tf.maximum(1.0 - done / total_steps, 0.0)
        return finite, scales, rates

    def _count(self, finite, scales, steps_counter, steps_per_update):
        """Advances the counters past a sequence; returns ``(scales, updates_before)``."""
        count = finite.shape[0]
        applied = tf.cast(finite, tf.float32)
        before = tf.cast(self.num_updates, tf.float32) + tf.cumsum(applied, exclusive=True)
        done = tf.cast(tf.reduce_sum(applied), tf.int64)
        self.num_updates.assign_add(done)
        self.num_skipped.assign_add(count - done)
        # Skips since the last applied update (all of them, and those before, if none was applied).
        applied_at = tf.where(finite, tf.range(count), -1)
        trailing = tf.cast(count - 1 - tf.reduce_max(applied_at), tf.int64)
        self.consecutive_skipped.assign(tf.where(done > 0, trailing, self.consecutive_skipped + count))
        tf.raw_ops.AssignAddVariableOp(resource=steps_counter, value=tf.cast(count, tf.int64) * steps_per_update)
        return scales, before

    @tf.function(reduce_retracing=False, autograph=False)
    def _sequence_cpp(self, grads, variables, mean_squares, norms, steps_counter, steps_per_update,
                      initial_learning_rate, total_steps):
        """The steps by the C++ op, one call per variable (a step with scale 0 is skipped there)."""
        finite, scales, rates = self._schedule(norms, steps_counter, steps_per_update, initial_learning_rate,
                                               total_steps)
        for g, v, ms in zip(grads, variables, mean_squares, strict=True):  # resource handles
            self._kernel(v, ms, g, scales, rates, decay=self.decay, epsilon=self.epsilon)
        return self._count(finite, scales, steps_counter, steps_per_update)

    @tf.function(jit_compile=True, reduce_retracing=False, autograph=False)
    def _sequence(self, grads, variables, mean_squares, norms, steps_counter, steps_per_update, initial_learning_rate,
                  total_steps, guarded: bool):
        """The steps as one XLA program. ``guarded``: with the per-element selects that skip non-finite
        updates (about a quarter of the program's time), compiled only when a norm is not finite (a finite
        norm means finite gradients)."""
        count = norms.shape[0]  # static: one compiled program per number of updates (and shapes)
        decay, epsilon = self.decay, self.epsilon
        finite, scales, rates = self._schedule(norms, steps_counter, steps_per_update, initial_learning_rate,
                                               total_steps)
        applied = tf.cast(finite, tf.float32)
        for g, v, ms in zip(grads, variables, mean_squares, strict=True):  # resource handles
            value = tf.raw_ops.ReadVariableOp(resource=v, dtype=tf.float32)
            square = tf.raw_ops.ReadVariableOp(resource=ms, dtype=tf.float32)
            for k in range(count):
                d = g[k] * scales[k]
                if guarded:
                    d = tf.where(finite[k], d, 0.0)
                stepped = square + (d * d - square) * (1.0 - decay)
                square = tf.where(finite[k], stepped, square) if guarded else stepped
                value = value - (applied[k] * rates[k] if guarded else rates[k]) * d * tf.math.rsqrt(square + epsilon)
            tf.raw_ops.AssignVariableOp(resource=v, value=value)
            tf.raw_ops.AssignVariableOp(resource=ms, value=square)
        return self._count(finite, scales, steps_counter, steps_per_update)

    def _update(self, g, v, ms, learning_rate):
        # One fused kernel per variable (about ten separate ops otherwise). The step slot is
        # shared by concurrent updates of ``v``, so the kernel holds the variable's lock while it
        # runs: two updates of one variable follow each other, never mix.
        step = self._scratch.steps[self._index[id(v)]]
        dtype = v.dtype
        tf.raw_ops.ResourceApplyRMSProp(
            var=v.handle, ms=ms.handle, mom=step.handle, lr=tf.cast(learning_rate, dtype),
            rho=tf.constant(self.decay, dtype), momentum=tf.constant(0.0, dtype),
            epsilon=tf.constant(self.epsilon, dtype), grad=tf.cast(g, dtype), use_locking=True)
        return tf.no_op()
