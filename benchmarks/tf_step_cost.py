"""TensorFlow's CPU time per agent step for acting and learning, without environments, A/B in one process.

Builds the agent of ``--algo`` for ``--tasks`` tasks on 84x84 RGB frames (the Doom suites'
observations, per-pixel normalisation on, as their runs have it) and times, in CPU seconds of
this process (``time.process_time``, one intra-op thread as the trainer's default):

* ``act``: one acting call for ``--group`` workers (an actor group of ``8 x 32`` workers is 128),
  per agent step;
* ``hogwild``: the Hogwild updates of ``--rollouts_per_call`` rollouts of one task computed
  together (``Replica.train_each``: per-rollout gradients, then one RMSProp step per rollout),
  per agent step;
* ``batched``: one batched update of ``--group`` rollouts spread over the tasks, per agent step
  (``--batched`` only: it is not part of the XLA comparison).

``--hogwild_parts`` (plain functions only) also times the parts of the Hogwild call:
``gradients`` (the per-rollout gradients and norms, nothing applied), ``apply`` (the compiled
RMSProp steps, one per rollout), ``to_layer_outputs`` (forward and backward pass down to each
recorded layer output, without the per-rollout products), ``forward`` and, for comparison,
``summed_gradient`` (the ordinary gradient of the same batch, one for all its rollouts).

Every variant in ``--variants`` (``plain``: the traced functions as the trainer runs them;
``xla``: acting and the per-rollout gradients compiled with XLA, ``jit_compile=True``; ``bf16``:
``--torso_dtype=bfloat16``; ``rmsprop_xla`` and ``rmsprop_cpp``: the Hogwild calls' RMSProp steps by
the XLA program or the C++ op, ``--rmsprop_kernel``) gets its
own agent; the variants are measured alternately, ``--rounds`` times, and the script prints each
variant's median per measurement and its ratio to the first variant (below 1: cheaper).

    python benchmarks/tf_step_cost.py --algo=a3c
    python benchmarks/tf_step_cost.py --algo=kl_2col --rounds=5 --batched
    python benchmarks/tf_step_cost.py --algo=kl_2col --variants=plain --batched --hogwild_parts
    python benchmarks/tf_step_cost.py --algo=kl_2col --variants=rmsprop_xla,rmsprop_cpp --rounds=5
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np
from absl import flags

from flags import cli

_ALGO = flags.DEFINE_string("algo", "a3c", "Algorithm (the registry's name).")
_TASKS = flags.DEFINE_integer("tasks", 8, "Tasks (task columns).")
_GROUP = flags.DEFINE_integer("group", 128, "Workers of one actor group (acting batch; batched update's rollouts).")
_ROLLOUTS = flags.DEFINE_integer("rollouts_per_call", 16, "Rollouts of one task per Hogwild call.")
_UNROLL = flags.DEFINE_integer("unroll_length", 20, "Rollout length.")
_VARIANTS = flags.DEFINE_list("variants", ["plain", "xla"],
                              "Variants to compare: plain, xla, bf16, rmsprop_xla, rmsprop_cpp.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Alternating rounds.")
_CALLS = flags.DEFINE_integer("calls", 10, "Calls per measurement.")
_BATCHED = flags.DEFINE_bool("batched", False, "Also time the batched update (plain functions only).")
_PARTS = flags.DEFINE_bool("hogwild_parts", False, "Also time the parts of the Hogwild call (plain functions only).")
_OUT = flags.DEFINE_string("out", None, "JSON file for the medians.")

SHAPE, NUM_ACTIONS = (84, 84, 3), 9  # the Doom suites' frames and actions
VARIANTS = {"plain": {}, "xla": {"jit_compile": True}, "bf16": {"torso_dtype": "bfloat16"},
            "rmsprop_xla": {"rmsprop_kernel": "xla"}, "rmsprop_cpp": {"rmsprop_kernel": "cpp"}}


def build(algo: str, variant: str):
    from distral_tf import algorithms
    from distral_tf.model.agent import Agent

    if variant not in VARIANTS:
        cli.fail(f"--variants: unknown variant {variant!r}; choose from {', '.join(VARIANTS)}.")
    algorithm = algorithms.get(algo)
    agent = Agent(algorithm, algorithm.coefficients(0.01), _TASKS.value, SHAPE, NUM_ACTIONS,
                  unroll_length=_UNROLL.value, learning_rate=1e-3, total_env_steps=10**9,
                  normalize_observations=True, **VARIANTS[variant])
    rng = np.random.default_rng(0)
    agent.set_observation_statistics(rng.uniform(0, 1, SHAPE), rng.uniform(0.05, 0.3, SHAPE))
    return agent, agent.make_replica(0)


def rollout(agent, batch: int, task: int | None, rng):
    from distral_tf.model.agent import Rollout

    t = _UNROLL.value
    d_state, t_state = agent.initial_state(batch)
    tasks = np.full(batch, task, np.int32) if task is not None else np.arange(batch, dtype=np.int32) % _TASKS.value
    return Rollout(task_ids=tasks, observations=rng.integers(0, 256, (t + 1, batch, *SHAPE), dtype=np.uint8),
                   first=rng.random((t + 1, batch)) < 0.01, actions=rng.integers(0, NUM_ACTIONS, (t, batch),
                                                                                   dtype=np.int32),
                   rewards=rng.standard_normal((t, batch)).astype(np.float32), dones=np.zeros((t, batch), bool),
                   distilled_state=d_state, task_state=t_state)


def hogwild_parts(agent, replica, one_task) -> dict:
    """The parts of ``replica.train_each(one_task)`` (task 0) as separate calls: name -> (fn, agent steps)."""
    import tensorflow as tf

    from distral_tf.model import per_rollout

    functions = replica._functions
    network, inputs = functions.network, one_task.as_inputs()
    sources, targets, _ = functions._task_variables(0)
    trained = {id(v) for v in sources}
    distilled = network.distilled is not None and any(id(v) in trained for v in network.distilled.trainable_variables)

    @tf.function(autograph=False)
    def to_layer_outputs(rollout):
        taps = {"task": {}, "distilled": {}}
        with tf.GradientTape() as tape:
            terms = network.loss_terms(rollout, task=0, taps=taps)
        outputs = [per_rollout.tap_outputs(taps[k]) for k in (("task", "distilled") if distilled else ("task",))]
        return tape.gradient(terms["total"], outputs, unconnected_gradients=tf.UnconnectedGradients.ZERO)

    @tf.function(autograph=False)
    def forward(rollout):
        return network.loss_terms(rollout, task=0, taps={"task": {}, "distilled": {}})["total"]

    @tf.function(autograph=False)
    def summed_gradient(rollout):
        with tf.GradientTape() as tape:
            terms = network.loss_terms(rollout, task=0)
        return tape.gradient(terms["total"], sources)

    gradients = functions.rollout_gradients(0)
    _, grads, norms = gradients(inputs)
    steps = len(one_task.task_ids) * _UNROLL.value

    def apply():
        agent.optimizer.apply_sequence(grads, targets, norms, agent.env_steps, _UNROLL.value, agent.learning_rate,
                                       agent.total_env_steps)

    return {"gradients": (lambda: gradients(inputs), steps), "apply": (apply, steps),
            "to_layer_outputs": (lambda: to_layer_outputs(inputs), steps), "forward": (lambda: forward(inputs), steps),
            "summed_gradient": (lambda: summed_gradient(inputs), steps)}


def cpu_per_step(fn, steps_per_call: int) -> float:
    """Microseconds of CPU per agent step of ``fn``, over ``--calls`` calls."""
    start = time.process_time()
    for _ in range(_CALLS.value):
        fn()
    return 1e6 * (time.process_time() - start) / (_CALLS.value * steps_per_call)


def main(argv):
    del argv
    from distral_tf.training.tensorflow_setup import configure_tensorflow

    configure_tensorflow(inter_op_threads=1, intra_op_threads=1)
    rng = np.random.default_rng(1)
    group, per_call = _GROUP.value, _ROLLOUTS.value
    setups = {}
    for variant in _VARIANTS.value:
        agent, replica = build(_ALGO.value, variant)
        obs = rng.integers(0, 256, (group, *SHAPE), dtype=np.uint8)
        first, tasks = np.zeros(group, bool), np.arange(group, dtype=np.int32) % _TASKS.value
        d_state, t_state = agent.initial_state(group)
        one_task = rollout(agent, per_call, 0, rng)
        measures = {
            "act": (lambda r=replica, o=obs, f=first, k=tasks, d=d_state, s=t_state: r.act(k, o, f, d, s), group),
            "hogwild": (lambda r=replica, x=one_task: r.train_each(x), per_call * _UNROLL.value),
        }
        if _BATCHED.value and variant == "plain":
            mixed = rollout(agent, group, None, rng)
            measures["batched"] = (lambda r=replica, x=mixed: r.train_step(x), group * _UNROLL.value)
        if _PARTS.value and variant in ("plain", "rmsprop_xla", "rmsprop_cpp"):
            measures.update(hogwild_parts(agent, replica, one_task))
        start = time.perf_counter()
        for fn, _ in measures.values():
            fn()  # traces and compiles
        print(f"{variant}: built and compiled in {time.perf_counter() - start:.1f} s", flush=True)
        setups[variant] = measures
    results = {v: {m: [] for m in setups[v]} for v in setups}
    for k in range(_ROUNDS.value):
        for variant, measures in setups.items():
            for name, (fn, steps) in measures.items():
                results[variant][name].append(cpu_per_step(fn, steps))
        print(f"round {k + 1}: " + "; ".join(f"{v} " + ", ".join(f"{m} {x[-1]:.0f}" for m, x in r.items())
                                           for v, r in results.items()), flush=True)
    base = _VARIANTS.value[0]
    medians = {v: {m: statistics.median(x) for m, x in r.items()} for v, r in results.items()}
    print(f"\n{_ALGO.value}, {_TASKS.value} tasks: CPU microseconds per agent step (median of {_ROUNDS.value})")
    for variant, row in medians.items():
        ratios = ", ".join(f"{m} {row[m] / medians[base][m]:.2f}x" for m in row if m in medians[base])
        print(f"  {variant:6s} " + ", ".join(f"{m} {x:.0f}" for m, x in row.items()) + f"   ({ratios} of {base})")
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump({"algo": _ALGO.value, "tasks": _TASKS.value, "medians_us_per_step": medians,
                       "rounds": results}, f, indent=1)


if __name__ == "__main__":
    cli.run(main)
