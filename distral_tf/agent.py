"""The multitask agent: the columns of one algorithm, batched acting and the learning step.

Acting and learning both take batches whose elements may belong to different
tasks (``task_ids``): each task column only sees its own elements, so many
workers of many tasks can share one call (the seam used by dynamic batching and
by the batched update mode).
"""

from __future__ import annotations

import dataclasses
import threading

import keras
import numpy as np
import tensorflow as tf

from distral_tf import objective
from distral_tf.algorithm_spec import Algorithm, Architecture, Coefficients
from distral_tf.networks import LSTM_SIZE, Column
from distral_tf.optim import SharedRMSProp, linear_annealing


@dataclasses.dataclass
class Rollout:
    """A batch of ``B`` rollouts of ``T`` steps (numpy arrays).

    ``observations``/``first`` have ``T + 1`` rows: the last is the state that
    bootstraps. ``first[t]`` marks an observation that starts an episode;
    ``dones[t]`` marks the action at ``t`` ending one. ``*_state`` hold each
    column's LSTM state ``(h, c)`` before ``observations[0]``.
    """

    task_ids: np.ndarray  # [B] int32
    observations: np.ndarray  # [T+1, B, H, W, C] uint8
    first: np.ndarray  # [T+1, B] bool
    actions: np.ndarray  # [T, B] int32
    rewards: np.ndarray  # [T, B] float32
    dones: np.ndarray  # [T, B] bool
    distilled_state: tuple[np.ndarray, np.ndarray]  # ([B, 256], [B, 256])
    task_state: tuple[np.ndarray, np.ndarray]


class _FunctionCache:
    """Traced functions by key, traced once under a lock (a plain object: checkpoints do not track it)."""

    def __init__(self):
        self._functions = {}
        self._lock = threading.Lock()

    def __contains__(self, key) -> bool:
        return key in self._functions

    def get(self, key, trace):
        with self._lock:
            if key not in self._functions:
                self._functions[key] = trace()
            return self._functions[key]


def _drop_value(step_output):
    logits, _, (h, c) = step_output
    return logits, h, c


def _gumbel_sample(rng: tf.random.Generator, logits):
    u = rng.uniform(tf.shape(logits), minval=1e-12, maxval=1.0)
    return tf.argmax(logits - tf.math.log(-tf.math.log(u)), axis=-1, output_type=tf.int32)


class Agent(tf.Module):
    """All columns of one algorithm for ``num_tasks`` tasks, and their optimiser."""

    def __init__(self, algorithm: Algorithm, coeffs: Coefficients, num_tasks: int,
                 observation_shape: tuple[int, ...], num_actions: int, *, unroll_length: int,
                 learning_rate: float, total_env_steps: int, rmsprop_decay: float = 0.99,
                 rmsprop_epsilon: float = 0.1, max_grad_norm: float = 40.0, seed: int = 0,
                 torso_dtype: str = "float32"):
        super().__init__(name="agent")
        self.algorithm = algorithm
        self.coeffs = coeffs
        self.num_tasks = num_tasks
        self.observation_shape = tuple(int(d) for d in observation_shape)
        self.num_actions = int(num_actions)
        self.unroll_length = int(unroll_length)
        self.learning_rate = float(learning_rate)
        self.total_env_steps = int(total_env_steps)

        keras.utils.set_random_seed(seed)
        arch = algorithm.architecture
        if arch is Architecture.MULTITASK:
            self.task_columns = [Column(num_actions, with_value=True, name="shared", torso_dtype=torso_dtype)]
            self.distilled = None
        else:
            self.task_columns = [Column(num_actions, with_value=True, name=f"task_{i}", torso_dtype=torso_dtype)
                                 for i in range(num_tasks)]
            self.distilled = Column(num_actions, with_value=False, name="distilled", torso_dtype=torso_dtype)
        for column in self.columns:
            column.build_for(self.observation_shape)

        # Columns whose outputs the loss needs, and therefore the acting path steps.
        self._uses_distilled = algorithm.kl or arch is Architecture.TWO_COLUMN
        trained = list(self.task_columns) + ([self.distilled] if self._uses_distilled else [])
        self.trainable = [v for column in trained for v in column.trainable_variables]
        # Per trainable variable: the task whose column it belongs to (None: used by every task).
        per_task = len(self.task_columns) > 1
        self._variable_task = [i if per_task and column in self.task_columns else None
                               for i, column in enumerate(trained) for _ in column.trainable_variables]
        # Every column's variables, tracked explicitly for checkpoints (a3c's untrained pi_0 included).
        self.parameters = [v for column in self.columns for v in column.variables]
        self.optimizer = SharedRMSProp(self.trainable, decay=rmsprop_decay, epsilon=rmsprop_epsilon,
                                       clip_norm=max_grad_norm)
        self.env_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="env_steps")
        self.rng = tf.random.Generator.from_seed(seed)
        self._build_functions()

    @property
    def columns(self) -> list[Column]:
        return list(self.task_columns) + ([self.distilled] if self.distilled is not None else [])

    def distilled_column(self) -> Column:
        """The network evaluated as pi_0 (the shared network for a3c_multitask)."""
        return self.distilled if self.distilled is not None else self.task_columns[0]

    def initial_state(self, batch_size: int):
        zeros = np.zeros([batch_size, LSTM_SIZE], np.float32)
        return (zeros, zeros.copy()), (zeros.copy(), zeros.copy())

    # ----------------------------------------------------------------------------------------- #
    # Per-task routing: each element of a batch goes through its own task's column. Columns
    # without elements are skipped (TensorFlow's CPU convolution rejects empty batches).

    def _task_columns_step(self, task_ids, obs, first, state):
        if len(self.task_columns) == 1:
            return self.task_columns[0].step(obs, first, state)
        n = len(self.task_columns)
        positions = tf.dynamic_partition(tf.range(tf.shape(task_ids)[0]), task_ids, n)
        logits, states_h, states_c = [], [], []
        for i, column in enumerate(self.task_columns):
            idx = positions[i]
            sub_state = (tf.gather(state[0], idx), tf.gather(state[1], idx))
            lg, h, c = tf.cond(
                tf.size(idx) > 0,
                lambda column=column, idx=idx, sub_state=sub_state: _drop_value(
                    column.step(tf.gather(obs, idx), tf.gather(first, idx), sub_state)),
                lambda sub_state=sub_state: (tf.zeros([0, self.num_actions]), *sub_state))
            logits.append(lg)
            states_h.append(h)
            states_c.append(c)
        return (tf.dynamic_stitch(positions, logits), None,
                (tf.dynamic_stitch(positions, states_h), tf.dynamic_stitch(positions, states_c)))

    def _task_columns_unroll(self, task_ids, obs, first, state):
        if len(self.task_columns) == 1:
            return self.task_columns[0].unroll(obs, first, state)
        n = len(self.task_columns)
        positions = tf.dynamic_partition(tf.range(tf.shape(task_ids)[0]), task_ids, n)
        logits, values = [], []
        for i, column in enumerate(self.task_columns):
            idx = positions[i]
            lg, v = tf.cond(
                tf.size(idx) > 0,
                lambda column=column, idx=idx: column.unroll(
                    tf.gather(obs, idx, axis=1), tf.gather(first, idx, axis=1),
                    (tf.gather(state[0], idx), tf.gather(state[1], idx)))[:2],
                lambda: (tf.zeros([obs.shape[0], 0, self.num_actions]), tf.zeros([obs.shape[0], 0])))
            logits.append(tf.transpose(lg, [1, 0, 2]))  # batch-major for stitching
            values.append(tf.transpose(v, [1, 0]))
        return (tf.transpose(tf.dynamic_stitch(positions, logits), [1, 0, 2]),
                tf.transpose(tf.dynamic_stitch(positions, values), [1, 0]), None)

    # ----------------------------------------------------------------------------------------- #

    def _build_functions(self):
        obs_spec = tf.TensorSpec([None, *self.observation_shape], tf.uint8)
        state_spec = tf.TensorSpec([None, LSTM_SIZE], tf.float32)
        t1 = self.unroll_length + 1

        # autograph=False: the code below has no Python control flow on tensors, and tracing is faster.
        @tf.function(autograph=False, input_signature=[
            tf.TensorSpec([None], tf.int32), obs_spec, tf.TensorSpec([None], tf.bool),
            state_spec, state_spec, state_spec, state_spec])
        def act(task_ids, obs, first, d_h, d_c, t_h, t_c):
            f_logits, _, (t_h, t_c) = self._task_columns_step(task_ids, obs, first, (t_h, t_c))
            if self._uses_distilled:
                h0_logits, _, (d_h, d_c) = self.distilled.step(obs, first, (d_h, d_c))
            else:
                h0_logits = None
            logits = objective.task_policy_logits(self.algorithm, self.coeffs, f_logits, h0_logits)
            return _gumbel_sample(self.rng, logits), logits, d_h, d_c, t_h, t_c

        @tf.function(autograph=False, input_signature=[
            obs_spec, tf.TensorSpec([None], tf.bool), state_spec, state_spec, tf.TensorSpec([], tf.bool)])
        def act_distilled(obs, first, h, c, greedy):
            logits, _, (h, c) = self.distilled_column().step(obs, first, (h, c))
            sampled = _gumbel_sample(self.rng, logits)
            actions = tf.where(greedy, tf.argmax(logits, -1, output_type=tf.int32), sampled)
            return actions, logits, h, c

        rollout_spec = [
            tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([t1, None, *self.observation_shape], tf.uint8),
            tf.TensorSpec([t1, None], tf.bool),
            tf.TensorSpec([t1 - 1, None], tf.int32),
            tf.TensorSpec([t1 - 1, None], tf.float32),
            tf.TensorSpec([t1 - 1, None], tf.bool),
            state_spec, state_spec, state_spec, state_spec,
        ]

        self._rollout_spec = rollout_spec
        train_step = self._make_train_function(None)
        self._act = act
        self._act_distilled = act_distilled
        self._train_step = train_step
        # One training function per task, for batches of a single task (every Hogwild update):
        # only that column is unrolled and updated. Traced on first use, under a lock.
        self._task_functions = _FunctionCache()
        # Trace everything now, in one thread: tracing Keras layers concurrently from
        # several worker threads is not safe, calling traced functions is.
        for fn in (act, act_distilled, train_step):
            fn.get_concrete_function()

    def _make_train_function(self, task: int | None):
        """The update for a batch of any tasks (``task=None``) or of task ``task`` only."""
        if task is None:
            variables, variable_task = self.trainable, self._variable_task
        else:
            variables = [v for v, t in zip(self.trainable, self._variable_task, strict=True) if t in (None, task)]
            variable_task = [None] * len(variables)

        @tf.function(autograph=False, input_signature=self._rollout_spec)
        def train_step(task_ids, obs, first, actions, rewards, dones, d_h, d_c, t_h, t_c):
            with tf.GradientTape() as tape:
                terms = self._loss_terms(task_ids, obs, first, actions, rewards, dones, d_h, d_c, t_h, t_c, task)
            grads = tape.gradient(terms["total"], variables)
            lr = linear_annealing(self.learning_rate, self.env_steps, self.total_env_steps)
            # Columns of tasks absent from this batch keep their parameters and RMSProp statistics.
            active = None
            if any(t is not None for t in variable_task):
                present = tf.math.bincount(task_ids, minlength=len(self.task_columns),
                                           maxlength=len(self.task_columns)) > 0
                active = [None if t is None else present[t] for t in variable_task]
            terms["grad_norm"] = self.optimizer.apply(grads, variables, lr, active)
            self.env_steps.assign_add(tf.cast(tf.size(actions), tf.int64))
            terms["learning_rate"] = lr
            return terms

        return train_step

    def _task_train_step(self, task: int):
        return self._task_functions.get(task, lambda: self._make_train_function(task).get_concrete_function())

    def warm_up(self, single_task_updates: bool = False):
        """Runs every function once on dummy data, leaving all state as it was.

        The first execution of a traced function optimises its graph; done here,
        it is done once instead of concurrently by every worker thread.
        ``single_task_updates`` also prepares each task's own update function (Hogwild).
        """
        state = list(self.parameters) + list(self.optimizer.variables)
        state += [self.env_steps, self.rng.state]
        saved = [v.numpy() for v in state]
        d_state, t_state = self.initial_state(1)
        obs = np.zeros([1, *self.observation_shape], np.uint8)
        self.act(np.zeros(1, np.int32), obs, np.ones(1, bool), d_state, t_state)
        self.act_distilled(obs, np.ones(1, bool), d_state, greedy=False)
        t = self.unroll_length
        rollout = Rollout(
            task_ids=np.zeros(1, np.int32), observations=np.zeros([t + 1, 1, *self.observation_shape], np.uint8),
            first=np.ones([t + 1, 1], bool), actions=np.zeros([t, 1], np.int32), rewards=np.zeros([t, 1], np.float32),
            dones=np.zeros([t, 1], bool), distilled_state=d_state, task_state=t_state)
        self._train_step(*self._rollout_args(rollout))
        if single_task_updates and len(self.task_columns) > 1:
            for task in range(len(self.task_columns)):
                rollout.task_ids[:] = task
                self._task_train_step(task)(*self._rollout_args(rollout))
        for v, value in zip(state, saved, strict=True):
            v.assign(value)

    def _loss_terms(self, task_ids, obs, first, actions, rewards, dones, d_h, d_c, t_h, t_c, task=None):
        if task is None:
            f_logits, values, _ = self._task_columns_unroll(task_ids, obs, first, (t_h, t_c))
        else:  # every element belongs to ``task``
            f_logits, values, _ = self.task_columns[task].unroll(obs, first, (t_h, t_c))
        h0_logits = self.distilled.unroll(obs, first, (d_h, d_c))[0] if self._uses_distilled else None
        logits = objective.task_policy_logits(self.algorithm, self.coeffs, f_logits, h0_logits)
        return objective.loss_terms(self.algorithm, self.coeffs, task_logits=logits, values=values,
                                    distilled_logits=h0_logits, actions=actions, rewards=rewards, dones=dones,
                                    task_column_logits=f_logits)

    # ----------------------------------------------------------------------------------------- #
    # Public numpy-facing API.

    def act(self, task_ids, observations, first, distilled_state, task_state):
        """Samples actions of the task policies for a batch; returns ``(actions, logits, d_state, t_state)``."""
        a, logits, d_h, d_c, t_h, t_c = self._act(
            np.asarray(task_ids, np.int32), observations, np.asarray(first, bool), *distilled_state, *task_state)
        return a.numpy(), logits.numpy(), (d_h.numpy(), d_c.numpy()), (t_h.numpy(), t_c.numpy())

    def act_distilled(self, observations, first, state, greedy: bool):
        """Actions of pi_0 (greedy or sampled); returns ``(actions, state)``."""
        a, _, h, c = self._act_distilled(observations, np.asarray(first, bool), *state, tf.constant(greedy))
        return a.numpy(), (h.numpy(), c.numpy())

    def _rollout_args(self, r: Rollout):
        return (np.asarray(r.task_ids, np.int32), r.observations, np.asarray(r.first, bool),
                np.asarray(r.actions, np.int32), np.asarray(r.rewards, np.float32), np.asarray(r.dones, bool),
                *r.distilled_state, *r.task_state)

    def train_step(self, rollout: Rollout) -> dict[str, float]:
        """One (Hogwild) update from ``rollout``; returns the loss terms and diagnostics as floats.

        A rollout batch of a single task runs that task's own function (no routing).
        """
        args = self._rollout_args(rollout)
        task_ids = args[0]
        if len(self.task_columns) > 1 and len(task_ids) and (task_ids == task_ids[0]).all():
            terms = self._task_train_step(int(task_ids[0]))(*args)
        else:
            terms = self._train_step(*args)
        return {k: float(v) for k, v in terms.items()}

    def trace_loss_terms(self, rollout: Rollout):
        """Loss terms computed eagerly under a caller's ``GradientTape`` (for tests)."""
        args = [tf.convert_to_tensor(a) for a in self._rollout_args(rollout)]
        return self._loss_terms(*args)
