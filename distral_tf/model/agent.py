"""The multitask agent: the columns of one algorithm, batched acting and the learning step.

Acting and learning both take batches whose elements may belong to different
tasks (``task_ids``): each task column only sees its own elements, so many
workers of many tasks can share one call (the seam used by the actor groups and
by the batched update mode).

:class:`Agent` holds the shared parameters and the shared RMSProp. A
:class:`Replica` is a group of workers' private copy of them (A3C's thread-local
parameters theta'): the group acts with its snapshot for a whole rollout, its
gradient is computed at that snapshot, and applied to the shared parameters.
"""

from __future__ import annotations

import contextlib
import random
import threading
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from distral_tf.model import objective, per_rollout
from distral_tf.model.algorithm_spec import LOSS_TERM_NAMES, Algorithm, Architecture, Coefficients, DistilledPolicy
from distral_tf.model.networks import LSTM_SIZE, Column
from distral_tf.model.optim import SharedRMSProp, linear_annealing
from distral_tf.model.options import TWO_COLUMN_SCALINGS

LSTMState = tuple[np.ndarray, np.ndarray]
"""A column's LSTM state ``(h, c)`` for a batch: two ``[B, 256]`` float32 arrays."""

ActResult = tuple[np.ndarray, np.ndarray, LSTMState, LSTMState]
"""What acting returns: ``(actions [B] int32, logits [B, A], distilled state, task state)``."""


class Rollout(NamedTuple):
    """A batch of ``B`` rollouts of ``T`` steps: numpy arrays, or tensors inside the traced functions.

    Fields (shape, dtype), with ``[H, W, C]`` the observation shape:

    * ``task_ids``: ``[B]`` int32, each rollout's task.
    * ``observations``: ``[T+1, B, H, W, C]`` uint8; the last row is the state that bootstraps.
    * ``first``: ``[T+1, B]`` bool, ``first[t]`` marks an observation that starts an episode.
    * ``actions``: ``[T, B]`` int32.
    * ``rewards``: ``[T, B]`` float32 (scaled and clipped).
    * ``dones``: ``[T, B]`` bool, ``dones[t]`` marks the action at ``t`` ending an episode.
    * ``distilled_state``: ``(h, c)``, two ``[B, 256]`` float32: pi_0's LSTM state before
      ``observations[0]``.
    * ``task_state``: ``(h, c)``, two ``[B, 256]`` float32: the task columns' LSTM state before
      ``observations[0]``.

    The traced update functions take one rollout as a single nested argument
    (:meth:`signature`) and read it by field name.
    """

    task_ids: np.ndarray
    observations: np.ndarray
    first: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    distilled_state: LSTMState
    task_state: LSTMState

    @staticmethod
    def signature(unroll_length: int, observation_shape: tuple[int, ...]) -> Rollout:
        """The ``tf.TensorSpec`` of each field, for rollouts of ``unroll_length`` steps (any ``B``)."""
        t = int(unroll_length)
        state = (tf.TensorSpec([None, LSTM_SIZE], tf.float32),) * 2
        return Rollout(task_ids=tf.TensorSpec([None], tf.int32),
                       observations=tf.TensorSpec([t + 1, None, *observation_shape], tf.uint8),
                       first=tf.TensorSpec([t + 1, None], tf.bool), actions=tf.TensorSpec([t, None], tf.int32),
                       rewards=tf.TensorSpec([t, None], tf.float32), dones=tf.TensorSpec([t, None], tf.bool),
                       distilled_state=state, task_state=state)

    def as_inputs(self) -> Rollout:
        """This rollout with the dtypes of :meth:`signature` (arrays already of those types are not copied)."""
        return self._replace(task_ids=np.asarray(self.task_ids, np.int32), first=np.asarray(self.first, bool),
                             actions=np.asarray(self.actions, np.int32),
                             rewards=np.asarray(self.rewards, np.float32), dones=np.asarray(self.dones, bool))


class _FunctionCache:
    """Traced functions by key, traced once under a lock (a plain object: checkpoints do not track it).

    ``device`` (e.g. ``"/GPU:0"``; empty: TensorFlow's placement) is where the traced functions' ops run.
    """

    def __init__(self, device: str = ""):
        self._functions = {}
        self._lock = threading.Lock()
        self._device = device

    def __contains__(self, key) -> bool:
        return key in self._functions

    def get(self, key, trace):
        with self._lock:
            if key not in self._functions:
                with tf.device(self._device) if self._device else contextlib.nullcontext():
                    self._functions[key] = trace()
            return self._functions[key]


def check_device(device: str) -> str:
    """``device`` if this machine has it (or it is empty); else a ValueError naming the devices it has."""
    if not device:
        return device
    try:
        name = tf.DeviceSpec.from_string(device)
    except ValueError as e:
        raise ValueError(f"--device={device!r} is not a TensorFlow device name ({e}); e.g. /GPU:0.") from None
    have = tf.config.list_logical_devices()
    if not any(d.device_type == (name.device_type or d.device_type) and name.device_index in (None, int(
            d.name.rsplit(":", 1)[-1])) for d in have):
        raise ValueError(f"--device={device}: no such device here; this machine has "
                         f"{', '.join(d.name.replace('/device:', '/') for d in have)}.")
    return device


# Loss terms that are sums over a batch's rollouts (the others are means).
_SUMMED_TERMS = LOSS_TERM_NAMES


def _with_values(function, variables):
    """``function(rollout, values)`` as a function of the rollout, ``variables``' values read at each call."""
    return lambda rollout: function(rollout, [tf.convert_to_tensor(v) for v in variables])


def _standing_for(template, values):
    """Scope in which ``template``'s variables read as ``values`` (a function traced with one network's
    parameters serves any network of the same structure, its parameters passed by value)."""
    return keras.StatelessScope(state_mapping=list(zip(template, values, strict=True)))


def _column_parameters(column: Column) -> list:
    """The variables a column's unroll reads: its trainable ones, then its observation statistics."""
    return [*column.trainable_variables, *column.observation_statistics]


def _drop_value(step_output):
    logits, _, (h, c) = step_output
    return logits, h, c


def _gumbel_sample(rng: tf.random.Generator, logits):
    u = rng.uniform(tf.shape(logits), minval=1e-12, maxval=1.0)
    return tf.argmax(logits - tf.math.log(-tf.math.log(u)), axis=-1, output_type=tf.int32)


def task_policy_scale(algorithm: Algorithm, coeffs: Coefficients, two_column_scaling: str) -> float:
    """The factor on a task column's policy layer: ``1/beta`` for 2col with ``"unit"`` scaling, else 1.

    With it, ``beta * f_thetai`` in eq. 8 is a unit-scaled network whatever beta is
    (``docs/fidelity.md``); ``"literal"`` keeps ``f_thetai`` a plain policy layer.
    """
    if two_column_scaling not in TWO_COLUMN_SCALINGS:
        raise ValueError(f"two_column_scaling must be one of {TWO_COLUMN_SCALINGS}, got {two_column_scaling!r}.")
    if algorithm.architecture is Architecture.TWO_COLUMN and two_column_scaling == "unit":
        return 1.0 / coeffs.beta
    return 1.0


class _Network:
    """The computation of one set of columns: routed acting and the loss of a rollout (not tracked)."""

    def __init__(self, algorithm: Algorithm, coeffs: Coefficients, task_columns: list[Column],
                 distilled: Column | None, num_actions: int, train_distilled: bool = True):
        self.algorithm = algorithm
        self.coeffs = coeffs
        self.task_columns = task_columns
        self.distilled = distilled
        self.num_actions = num_actions
        # Columns whose outputs the loss needs, and therefore the acting path steps (from the registry).
        self.uses_distilled = algorithm.uses_distilled
        self.trained = list(task_columns) + ([distilled] if self.uses_distilled and train_distilled else [])
        self.trainable = [v for column in self.trained for v in column.trainable_variables]
        # What a snapshot copies from the shared parameters: the trained variables and a fixed pi_0.
        fixed = [distilled] if self.uses_distilled and not train_distilled else []
        # (The observation statistics are not copied: a snapshot's columns read the shared ones.)
        self.synced = self.trainable + [v for column in fixed for v in column.trainable_variables]

    def distilled_column(self) -> Column:
        """The column evaluated as pi_0, as the algorithm's ``distilled_policy`` declares it."""
        if self.algorithm.distilled_policy is DistilledPolicy.SHARED:
            return self.task_columns[0]
        return self.distilled

    # Per-task routing: each element of a batch goes through its own task's column. Columns
    # without elements are skipped (TensorFlow's CPU convolution rejects empty batches).

    def task_columns_step(self, task_ids, obs, first, state):
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

    def task_columns_unroll(self, task_ids, obs, first, state):
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

    def act(self, rng, task_ids, obs, first, distilled_state, task_state):
        f_logits, _, task_state = self.task_columns_step(task_ids, obs, first, task_state)
        if self.uses_distilled:
            h0_logits, _, distilled_state = self.distilled.step(obs, first, distilled_state)
        else:
            h0_logits = None
        logits = objective.task_policy_logits(self.algorithm, self.coeffs, f_logits, h0_logits)
        return _gumbel_sample(rng, logits), logits, tuple(distilled_state), tuple(task_state)

    def loss_terms(self, rollout: Rollout, task=None, taps=None):
        """The loss terms of a batch; ``taps`` (with ``task``): dicts ``"task"`` and ``"distilled"`` that
        receive the columns' recorded layers (:mod:`distral_tf.model.per_rollout`)."""
        taps = taps or {}
        obs, first = rollout.observations, rollout.first
        if task is None:
            f_logits, values, _ = self.task_columns_unroll(rollout.task_ids, obs, first, rollout.task_state)
        else:  # every element belongs to ``task``
            f_logits, values, _ = self.task_columns[task].unroll(obs, first, rollout.task_state, taps.get("task"))
        h0_logits = (self.distilled.unroll(obs, first, rollout.distilled_state, taps.get("distilled"))[0]
                     if self.uses_distilled else None)
        logits = objective.task_policy_logits(self.algorithm, self.coeffs, f_logits, h0_logits)
        return objective.loss_terms(self.algorithm, self.coeffs, task_logits=logits, values=values,
                                    distilled_logits=h0_logits, actions=rollout.actions, rewards=rollout.rewards,
                                    dones=rollout.dones, task_column_logits=f_logits)


class _Functions:
    """Traced acting and update functions of one :class:`_Network` (not tracked by checkpoints).

    An update differentiates the loss with respect to the network's own variables
    and applies the gradient to the agent's shared variables (the same variables
    for the agent itself, the shared ones for a replica). Functions are traced on
    first use, once, under a lock (tracing Keras layers from several threads at
    once is not safe; calling traced functions is).
    """

    def __init__(self, agent: Agent, network: _Network):
        self._agent = agent
        self.network = network
        self._cache = _FunctionCache(agent.device)
        # Per trainable variable: the task whose column it belongs to (None: used by every task).
        per_task = len(network.task_columns) > 1
        self._variable_task = [i if per_task and column in network.task_columns else None
                               for i, column in enumerate(network.trained) for _ in column.trainable_variables]

    @property
    def act(self):
        return self._cache.get("act", self._trace_act)

    @property
    def act_distilled(self):
        return self._cache.get("act_distilled", self._trace_act_distilled)

    def train(self, task: int | None):
        """The update of a batch of any tasks (``task=None``: each rollout goes through its task's column) or of
        task ``task`` only (that column alone, no routing: what :meth:`train_step` runs for a batch of one task).

        Differentiated at this network's parameters, which enter by value: one traced function serves the
        agent and all its snapshots (the first network to trace it stands for the others through
        ``keras.StatelessScope``; they have the same structure), instead of one each (about 400 MB per
        snapshot for kl_2col's batched update on 84x84 frames)."""
        function = self._agent._by_value.get(("train", task), lambda: self._trace_train(task))
        return _with_values(function, self.network.trainable)

    def train_each(self, task: int, rollout: Rollout) -> dict:
        """The Hogwild updates of a batch of rollouts of task ``task``: one RMSProp step per rollout, in order,
        all differentiated at this network's parameters; returns the batch's terms (its losses per rollout), and
        per rollout ``grad_norm``, ``updates_before`` and, with a shared sink, the clipped ``shared_grads``
        ([B, *shape] per shared variable) for the sink."""
        agent = self._agent
        terms, grads, norms = self.rollout_gradients(task)(rollout.as_inputs())
        _, targets, shared = self._task_variables(task)
        split = agent.shared_sink is not None
        applied = [not s for s in shared] if split else [True] * len(targets)
        steps = np.shape(rollout.actions)[0]  # agent steps of one rollout
        with agent.update_locks(task, any(s and a for s, a in zip(shared, applied, strict=True))):
            scales, before = agent.optimizer.apply_sequence(
                [g for g, a in zip(grads, applied, strict=True) if a],
                [v for v, a in zip(targets, applied, strict=True) if a], norms, agent.env_steps, steps,
                agent.learning_rate, agent.total_env_steps)
        out = {k: v / float(len(norms)) if k in _SUMMED_TERMS else v for k, v in terms.items()}
        out["grad_norm"], out["updates_before"] = norms, before
        out["learning_rate"] = linear_annealing(agent.learning_rate, agent.env_steps, agent.total_env_steps)
        if split:
            out["shared_grads"] = [g * tf.reshape(scales, [-1] + [1] * (len(g.shape) - 1))
                                   for g, s in zip(grads, shared, strict=True) if s]
        return out

    def traced(self, key) -> bool:
        return key in self._cache or key in self._agent._by_value

    def _trace_act(self):
        agent, network = self._agent, self.network
        state = (agent.state_spec, agent.state_spec)

        # autograph=False: the code has no Python control flow on tensors, and tracing is faster.
        @tf.function(autograph=False, jit_compile=agent.jit_compile, input_signature=[
            tf.TensorSpec([None], tf.int32), agent.obs_spec, tf.TensorSpec([None], tf.bool), state, state])
        def act(task_ids, obs, first, distilled_state, task_state):
            return network.act(agent.rng, task_ids, obs, first, distilled_state, task_state)

        return act.get_concrete_function()

    def _trace_act_distilled(self):
        agent, network = self._agent, self.network
        state = (agent.state_spec, agent.state_spec)

        @tf.function(autograph=False, jit_compile=agent.jit_compile, input_signature=[
            agent.obs_spec, tf.TensorSpec([None], tf.bool), state, tf.TensorSpec([], tf.bool)])
        def act_distilled(obs, first, state, greedy):
            logits, _, state = network.distilled_column().step(obs, first, state)
            sampled = _gumbel_sample(agent.rng, logits)
            actions = tf.where(greedy, tf.argmax(logits, -1, output_type=tf.int32), sampled)
            return actions, logits, tuple(state)

        return act_distilled.get_concrete_function()

    def _trace_train(self, task: int | None):
        agent, network = self._agent, self.network
        template, targets, variable_task = list(network.trainable), agent.trainable, self._variable_task
        # Variables every task uses (pi_0, h0, a3c_multitask's network): with a shared sink (a run spread over
        # machines), their clipped gradients are returned for the sink instead of applied here.
        shared = [t is None for t in variable_task]
        sources = list(range(len(template)))  # positions of the differentiated parameters
        if task is not None:
            keep = [t in (None, task) for t in variable_task]
            sources = [i for i, k in zip(sources, keep, strict=True) if k]
            targets = [v for v, k in zip(targets, keep, strict=True) if k]
            shared = [s for s, k in zip(shared, keep, strict=True) if k]
            variable_task = [None] * len(sources)
        split = agent.shared_sink is not None
        specs = [tf.TensorSpec(v.shape, v.dtype) for v in template]

        @tf.function(autograph=False, input_signature=[agent.rollout_spec, specs])
        def train_step(rollout, values):
            with _standing_for(template, values):
                with tf.GradientTape() as tape:
                    tape.watch(values)
                    terms = network.loss_terms(rollout, task)
            grads = tape.gradient(terms["total"], [values[i] for i in sources])
            lr = linear_annealing(agent.learning_rate, agent.env_steps, agent.total_env_steps)
            # Columns of tasks absent from this batch keep their parameters and RMSProp statistics.
            active = None
            if any(t is not None for t in variable_task):
                present = tf.math.bincount(rollout.task_ids, minlength=len(network.task_columns),
                                           maxlength=len(network.task_columns)) > 0
                active = [None if t is None else present[t] for t in variable_task]
            # Per-rollout clipping (A3C clips each worker's gradient): an update of B rollouts is
            # clipped at B times the norm, the largest that B clipped gradients can sum to.
            num_rollouts = tf.cast(tf.shape(rollout.task_ids)[0], tf.float32)
            terms["updates_before"] = tf.cast(agent.optimizer.num_updates, tf.float32)
            if split:
                clipped, terms["grad_norm"] = tf.clip_by_global_norm(grads, agent.optimizer.clip_norm * num_rollouts)
                flags = [None] * len(clipped) if active is None else active
                private = [(g, v, a) for g, v, a, s in zip(clipped, targets, flags, shared, strict=True) if not s]
                agent.optimizer.apply([g for g, _, _ in private], [v for _, v, _ in private],
                                      lr, [a for _, _, a in private], clip=False)
                terms["shared_grads"] = [tf.zeros_like(v) if g is None else g
                                         for g, v, s in zip(clipped, targets, shared, strict=True) if s]
            else:
                terms["grad_norm"] = agent.optimizer.apply(grads, targets, lr, active, clip_scale=num_rollouts)
            agent.env_steps.assign_add(tf.cast(tf.size(rollout.actions), tf.int64))
            terms["learning_rate"] = lr
            return terms

        return train_step.get_concrete_function()

    def rollout_gradients(self, task: int):
        """A batch of rollouts of task ``task`` -> (loss terms, per-rollout gradients ``[B, *shape]`` of the
        variables task ``task`` trains, in ``trainable`` order, each rollout's global norm ``[B]``); nothing is
        applied. The task's column enters by value (:meth:`rollout_gradients_function`), read at each call."""
        return _with_values(self.rollout_gradients_function(), _column_parameters(self.network.task_columns[task]))

    def rollout_gradients_function(self):
        """Traced once for every task: ``(rollout, values of a task column's parameters)`` -> what
        :meth:`rollout_gradients` returns for that task.

        Task 0's column stands for the task's (``keras.StatelessScope`` maps its variables to the values
        given; the columns have the same structure), so one function, and one copy of its graph and
        runtime state (about 50 MB for kl_2col on 84x84 frames), serves all the tasks instead of one each.
        """
        template = _column_parameters(self.network.task_columns[0])

        def trace():
            specs = [tf.TensorSpec(v.shape, v.dtype) for v in template]

            @tf.function(autograph=False, jit_compile=self._agent.jit_compile,
                         input_signature=[self._agent.rollout_spec, specs])
            def gradients(rollout, values):
                with _standing_for(template, values):
                    terms, grads, squares = self._rollout_gradients(0, rollout, watch=values)
                return terms, grads, tf.sqrt(tf.add_n(squares))

            return gradients.get_concrete_function()

        return self._cache.get(("rollout_gradients",), trace)

    def _task_variables(self, task: int):
        """(replica's variables, shared targets, shared-by-every-task flags) that an update of ``task`` trains."""
        keep = [t in (None, task) for t in self._variable_task]
        pick = lambda values: [v for v, k in zip(values, keep, strict=True) if k]  # noqa: E731
        return (pick(self.network.trainable), pick(self._agent.trainable),
                pick([t is None for t in self._variable_task]))

    def _rollout_gradients(self, task: int, rollout: Rollout, watch=()):
        """(loss terms, per-rollout gradients ``[B, *shape]`` and their squared norms ``[B]``, of each variable
        task ``task`` trains). ``watch``: tensors standing for variables (a tape records only what depends on a
        watched tensor)."""
        network = self.network
        sources = self._task_variables(task)[0]
        column = network.task_columns[task]
        trained = {id(v) for v in sources}
        distilled = network.distilled if network.distilled is not None and any(
            id(v) in trained for v in network.distilled.trainable_variables) else None
        taps = {"task": {}, "distilled": {}}
        with tf.GradientTape() as tape:
            tape.watch(watch)
            terms = network.loss_terms(rollout, task=task, taps=taps)
        tapped = [(column, taps["task"])] + ([(distilled, taps["distilled"])] if distilled is not None else [])
        outputs = [per_rollout.tap_outputs(t) for _, t in tapped]
        d_outputs = tape.gradient(terms["total"], outputs, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        time, batch = tf.shape(rollout.observations)[0], tf.shape(rollout.observations)[1]
        grads, squares = {}, {}
        for (col, t), d in zip(tapped, d_outputs, strict=True):
            column_grads, column_squares = per_rollout.column_gradients(col, t, d, time, batch)
            grads.update(column_grads)
            squares.update(column_squares)
        return terms, [grads[id(v)] for v in sources], [squares[id(v)] for v in sources]

    def warm_up(self, single_task_updates: bool, batched_updates: bool, update_batch: int = 1):
        """Runs the acting and update functions once on dummy data (the caller restores all state);
        the Hogwild updates with ``update_batch`` rollouts (the compiled application of a call's
        updates is specialised to their number)."""
        agent = self._agent
        d_state, t_state = agent.initial_state(1)
        obs = np.zeros([1, *agent.observation_shape], np.uint8)
        self.act(np.zeros(1, np.int32), obs, np.ones(1, bool), d_state, t_state)
        t, b = agent.unroll_length, update_batch if single_task_updates else 1
        d_state, t_state = agent.initial_state(b)
        rollout = Rollout(
            task_ids=np.zeros(b, np.int32), observations=np.zeros([t + 1, b, *agent.observation_shape], np.uint8),
            first=np.ones([t + 1, b], bool), actions=np.zeros([t, b], np.int32), rewards=np.zeros([t, b], np.float32),
            dones=np.zeros([t, b], bool), distilled_state=d_state, task_state=t_state)
        if batched_updates:
            self.train(None)(rollout)
        if single_task_updates:  # Hogwild updates of each task, computed together (train_each)
            for task in range(len(self.network.task_columns)):
                rollout.task_ids[:] = task
                self.train_each(task, rollout)  # shared gradients are not sent from here

    def train_step(self, rollout: Rollout, shared_version: int = 0) -> dict[str, float]:
        """One update from ``rollout``; a batch of a single task runs that task's own function (no routing).

        With a shared sink, the shared variables' gradients go to the sink (with
        ``shared_version``, the version of the shared parameters they were computed at),
        and ``shared_lag`` is the number of versions they lagged when applied.
        """
        rollout = rollout.as_inputs()
        task_ids = rollout.task_ids
        single = len(self.network.task_columns) > 1 and len(task_ids) and (task_ids == task_ids[0]).all()
        out = self.train(int(task_ids[0]) if single else None)(rollout)
        shared_grads = out.pop("shared_grads", None)
        terms = {k: float(v) for k, v in out.items()}
        if shared_grads is not None:
            terms["shared_lag"] = float(self._agent.shared_sink(
                [g.numpy()[None] for g in shared_grads], 1, int(np.size(rollout.actions)), shared_version))
        return terms


def train_each_step(functions: _Functions, rollout: Rollout, version: int,
                    shared_version: int = 0) -> list[dict[str, float]]:
    """The Hogwild updates of ``rollout``, one per rollout in order; per rollout its terms (the batch's
    losses per rollout, its own gradient norm) and ``staleness`` against ``version``."""
    task = 0
    if len(functions.network.task_columns) > 1:
        task = int(rollout.task_ids[0])
        if (rollout.task_ids != task).any():
            raise ValueError(f"Updates computed together need rollouts of one task, got tasks {set(rollout.task_ids)}.")
    out = functions.train_each(task, rollout)
    shared_grads = out.pop("shared_grads", None)
    norms, before = out.pop("grad_norm").numpy(), out.pop("updates_before").numpy()
    staleness = before.astype(np.float64) - version
    if shared_grads is not None:
        # Spread over machines, the lag that matters is that of the shared columns' versions: the
        # rollouts' gradients go to the sink as they are, stacked, one per rollout in order.
        staleness[:] = float(functions._agent.shared_sink(
            [g.numpy() for g in shared_grads], len(norms), int(rollout.actions.shape[0]), shared_version))
    common = {k: float(v) for k, v in out.items()}
    return [{**common, "grad_norm": float(norms[k]), "staleness": float(staleness[k])} for k in range(len(norms))]


def _act_numpy(functions: _Functions, task_ids, observations, first, distilled_state, task_state) -> ActResult:
    a, logits, d_state, t_state = functions.act(
        np.asarray(task_ids, np.int32), observations, np.asarray(first, bool), tuple(distilled_state),
        tuple(task_state))
    return a.numpy(), logits.numpy(), (d_state[0].numpy(), d_state[1].numpy()), (t_state[0].numpy(),
                                                                                 t_state[1].numpy())


class Agent(tf.Module):
    """All columns of one algorithm for ``num_tasks`` tasks (the shared parameters), and their optimiser.

    ``total_env_steps`` and the ``env_steps`` counter count agent steps: actions taken,
    summed over tasks and workers (one agent step may be several environment frames).
    ``total_env_steps`` is the horizon of the learning rate's linear annealing. ``seed``
    alone sets the initial parameters and the action sampling: building an agent reads
    and changes no global random state or TensorFlow setting. ``rmsprop_kernel`` is how the Hogwild
    calls' RMSProp steps run (:class:`SharedRMSProp`'s ``sequence_kernel``; ``auto`` means XLA where
    ``device`` is not a CPU).
    """

    def __init__(self, algorithm: Algorithm, coeffs: Coefficients, num_tasks: int,
                 observation_shape: tuple[int, ...], num_actions: int, *, unroll_length: int,
                 learning_rate: float, total_env_steps: int, rmsprop_decay: float = 0.99,
                 rmsprop_epsilon: float = 0.1, max_grad_norm: float = 40.0, seed: int = 0,
                 torso_dtype: str = "float32", two_column_scaling: str = "unit", train_distilled: bool = True,
                 rmsprop_initial_mean_square: float = 0.0, device: str = "", normalize_observations: bool = False,
                 jit_compile: bool = False, rmsprop_kernel: str = "auto"):
        super().__init__(name="agent")
        self.jit_compile = bool(jit_compile)  # XLA-compile acting and the updates' gradients
        self.normalize_observations = bool(normalize_observations)
        self.algorithm = algorithm
        self.coeffs = coeffs
        self.num_tasks = num_tasks
        self.observation_shape = tuple(int(d) for d in observation_shape)
        self.num_actions = int(num_actions)
        self.unroll_length = int(unroll_length)
        self.learning_rate = float(learning_rate)
        self.total_env_steps = int(total_env_steps)
        self.torso_dtype = torso_dtype
        self.device = check_device(device)  # where acting and updates run (the variables stay on the CPU)
        self.policy_scale = task_policy_scale(algorithm, coeffs, two_column_scaling)

        # The initial parameters follow from ``seed`` alone: no global random state is read or changed.
        self._seed_stream = random.Random(seed)
        self.task_columns, self.distilled = self._make_columns()
        # train_distilled=False keeps pi_0 fixed (transfer with a frozen pi_0): it gets no updates.
        self.train_distilled = bool(train_distilled)
        network = _Network(algorithm, coeffs, self.task_columns, self.distilled, self.num_actions,
                           self.train_distilled)
        self.trainable = network.trainable
        self._synced = network.synced
        # Every column's variables, tracked explicitly for checkpoints (a3c's untrained pi_0 included).
        self.parameters = [v for column in self.columns for v in column.variables]
        if rmsprop_kernel == "auto" and tf.DeviceSpec.from_string(self.device).device_type not in (None, "CPU"):
            rmsprop_kernel = "xla"  # the C++ op has a CPU kernel only
        self.optimizer = SharedRMSProp(self.trainable, decay=rmsprop_decay, epsilon=rmsprop_epsilon,
                                       clip_norm=max_grad_norm, initial_mean_square=rmsprop_initial_mean_square,
                                       sequence_kernel=rmsprop_kernel)
        self.env_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="env_steps")
        self.rng = tf.random.Generator.from_seed(seed)
        self.obs_spec = tf.TensorSpec([None, *self.observation_shape], tf.uint8)
        self.state_spec = tf.TensorSpec([None, LSTM_SIZE], tf.float32)
        self.rollout_spec = Rollout.signature(self.unroll_length, self.observation_shape)
        # A run spread over machines sets a sink for the gradients of the variables every task uses
        # (``shared_sink(grads, count, agent_steps, version) -> lag``: ``count`` updates' gradients, each
        # [count, *shape] per shared variable, of ``agent_steps`` each), before any update function is traced,
        # and a source (``shared_source()``) that brings the newest shared parameters here before a
        # snapshot is taken, keeping ``shared_version``, the version of those held here, up to date.
        self.shared_sink = None
        self.shared_source = None
        self.shared_version = 0
        # Hogwild updates computed together (``train_each``) hold these while they write: one per task
        # column, one for the variables every task uses, taken in that order.
        self._task_locks = [threading.Lock() for _ in range(num_tasks)]
        self._shared_lock = threading.Lock()
        self._by_value = _FunctionCache(self.device)  # functions whose parameters enter by value (_Functions.train)
        self._functions = _Functions(self, network)

    @contextlib.contextmanager
    def update_locks(self, task: int, shared: bool):
        """Held while a batch of updates of ``task`` (and, with ``shared``, the shared variables) is written."""
        with self._task_locks[task]:
            if shared:
                with self._shared_lock:
                    yield
            else:
                yield

    @property
    def variable_tasks(self) -> list[int | None]:
        """Per variable of ``trainable``: the task whose column it belongs to, or None if every task uses it."""
        return list(self._functions._variable_task)

    def _make_columns(self, suffix: str = "", statistics_of: list[Column] | None = None
                      ) -> tuple[list[Column], Column | None]:
        """A fresh, built set of this algorithm's columns (the shared ones, or a replica's, which reads the
        observation statistics of ``statistics_of``, the shared columns in :attr:`columns` order)."""
        num_actions, dtype, seeds = self.num_actions, self.torso_dtype, self._seed_stream
        norm = self.normalize_observations
        if self.algorithm.has_distilled_column:
            task_columns = [Column(num_actions, with_value=True, name=f"task_{i}{suffix}", torso_dtype=dtype,
                                   policy_scale=self.policy_scale, seed_stream=seeds, normalize_observations=norm)
                            for i in range(self.num_tasks)]
            distilled = Column(num_actions, with_value=False, name=f"distilled{suffix}", torso_dtype=dtype,
                               seed_stream=seeds, normalize_observations=norm)
        else:
            task_columns = [Column(num_actions, with_value=True, name=f"shared{suffix}", torso_dtype=dtype,
                                   seed_stream=seeds, normalize_observations=norm)]
            distilled = None
        built = task_columns + ([distilled] if distilled is not None else [])
        lenders = [None] * len(built) if statistics_of is None else statistics_of
        for column, lender in zip(built, lenders, strict=True):
            column.build_for(self.observation_shape, statistics_of=lender)
        return task_columns, distilled

    @property
    def columns(self) -> list[Column]:
        return list(self.task_columns) + ([self.distilled] if self.distilled is not None else [])

    def set_observation_statistics(self, mean, std) -> None:
        """Sets every column's per-pixel statistics (``[H, W, C]``, frames scaled to ``[0, 1]``); snapshots read
        the same variables."""
        if not self.normalize_observations:
            raise ValueError("This agent was built without normalize_observations.")
        for column in self.columns:
            column.set_observation_statistics(mean, std)

    def distilled_column(self) -> Column:
        """The network evaluated as pi_0 (the shared network for a3c_multitask)."""
        return self._functions.network.distilled_column()

    def initial_state(self, batch_size: int) -> tuple[LSTMState, LSTMState]:
        """Zero LSTM states ``(distilled, task)`` for ``batch_size`` workers."""
        zeros = np.zeros([batch_size, LSTM_SIZE], np.float32)
        return (zeros, zeros.copy()), (zeros.copy(), zeros.copy())

    def make_replica(self, index: int = 0) -> Replica:
        """A private copy of the parameters for one group of workers (synchronised at creation)."""
        return Replica(self, index)

    def warm_up(self, replicas=(), single_task_updates: bool = False, batched_updates: bool = True,
                update_batch: int = 1):
        """Runs every function that training uses once on dummy data, leaving all state as it was.

        The first execution of a traced function optimises its graph; done here, it is
        done once instead of concurrently by every worker thread. Without ``replicas``
        the agent's own functions are prepared; ``single_task_updates`` also prepares
        each task's Hogwild update function (for calls of ``update_batch`` rollouts),
        ``batched_updates`` the routed one.
        """
        state = list(self.parameters) + list(self.optimizer.variables) + [self.env_steps, self.rng.state]
        saved = [v.numpy() for v in state]
        d_state, _ = self.initial_state(1)
        obs = np.zeros([1, *self.observation_shape], np.uint8)
        self.act_distilled(obs, np.ones(1, bool), d_state, greedy=False)
        for functions in [r._functions for r in replicas] or [self._functions]:
            functions.warm_up(single_task_updates, batched_updates, update_batch)
        for v, value in zip(state, saved, strict=True):
            v.assign(value)
        for replica in replicas:
            replica.sync()

    # ----------------------------------------------------------------------------------------- #
    # Public numpy-facing API.

    def act(self, task_ids: np.ndarray, observations: np.ndarray, first: np.ndarray, distilled_state: LSTMState,
            task_state: LSTMState) -> ActResult:
        """Samples actions of the task policies for a batch; returns ``(actions, logits, d_state, t_state)``."""
        return _act_numpy(self._functions, task_ids, observations, first, distilled_state, task_state)

    def act_distilled(self, observations: np.ndarray, first: np.ndarray, state: LSTMState,
                      greedy: bool) -> tuple[np.ndarray, LSTMState]:
        """Actions of pi_0 (greedy or sampled); returns ``(actions, state)``."""
        a, _, (h, c) = self._functions.act_distilled(observations, np.asarray(first, bool), tuple(state),
                                                     tf.constant(greedy))
        return a.numpy(), (h.numpy(), c.numpy())

    def train_step(self, rollout: Rollout) -> dict[str, float]:
        """One update from ``rollout``, differentiated at the current shared parameters.

        Returns the loss terms and diagnostics as floats.
        """
        return self._functions.train_step(rollout, self.shared_version)

    def trace_loss_terms(self, rollout: Rollout):
        """Loss terms computed eagerly under a caller's ``GradientTape`` (for tests)."""
        return self._functions.network.loss_terms(tf.nest.map_structure(tf.convert_to_tensor, rollout.as_inputs()))


class Replica:
    """A group of workers' snapshot of the shared parameters (A3C's thread-local theta').

    The group acts with the snapshot for a whole rollout; :meth:`train_step`
    differentiates the rollout's loss at the snapshot and applies the gradient to the
    shared parameters through the shared RMSProp (no lock); :meth:`sync` takes a new
    snapshot before the next rollout. ``staleness`` of an update is the number of
    updates the shared parameters received between the snapshot and that update.
    """

    def __init__(self, agent: Agent, index: int = 0):
        self.agent = agent
        task_columns, distilled = agent._make_columns(suffix=f"_replica{index}", statistics_of=agent.columns)
        self._network = _Network(agent.algorithm, agent.coeffs, task_columns, distilled, agent.num_actions,
                                 agent.train_distilled)
        self._functions = _Functions(agent, self._network)
        pairs = list(zip(self._network.synced, agent._synced, strict=True))

        @tf.function(autograph=False, input_signature=[])
        def sync():
            version = tf.identity(agent.optimizer.num_updates)
            with tf.control_dependencies([version]):
                for local, shared in pairs:
                    local.assign(shared)
            return version

        self._sync = sync
        self.version = 0
        self.shared_version = 0
        self.sync()

    @property
    def variables(self) -> list[tf.Variable]:
        return list(self._network.trainable)

    def sync(self) -> int:
        """Copies the shared parameters into the snapshot; returns the shared update count it saw."""
        if self.agent.shared_source is not None:
            self.agent.shared_source()
        self.shared_version = self.agent.shared_version
        self.version = int(self._sync())
        return self.version

    def act(self, task_ids: np.ndarray, observations: np.ndarray, first: np.ndarray, distilled_state: LSTMState,
            task_state: LSTMState) -> ActResult:
        """As :meth:`Agent.act`, with the snapshot's parameters."""
        return _act_numpy(self._functions, task_ids, observations, first, distilled_state, task_state)

    def train_each(self, rollout: Rollout) -> list[dict[str, float]]:
        """Applies the gradient of each rollout of ``rollout`` at the snapshot to the shared parameters, one
        RMSProp step each, in order: Hogwild updates computed together. With a column per task, every
        rollout of the batch must be of one task.

        Returns each rollout's terms, with ``staleness``.
        """
        return train_each_step(self._functions, rollout, self.version, self.shared_version)

    def train_step(self, rollout: Rollout) -> dict[str, float]:
        """Applies the gradient of ``rollout`` at the snapshot to the shared parameters.

        Returns the loss terms as floats, with ``staleness``.
        """
        terms = self._functions.train_step(rollout, self.shared_version)
        updates_before = terms.pop("updates_before")
        lag = terms.pop("shared_lag", None)
        # Spread over machines, the lag that matters is that of the shared columns' versions.
        terms["staleness"] = updates_before - self.version if lag is None else lag
        return terms
