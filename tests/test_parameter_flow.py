"""Which columns receive gradients from which loss term, per algorithm (docs/spec.md section 5, paper Table 1)."""

import numpy as np
import pytest
import tensorflow as tf

import baselines.a3c
import distral_tf.distral
from distral_tf import algorithms
from distral_tf.model.agent import Rollout
from distral_tf.model.algorithm_spec import Architecture

TERMS = ("policy_gradient", "value", "entropy_bonus", "distillation")
TASK, DISTILLED = "task", "distilled"

# Which columns each loss term trains; TASK means every task column (the shared column of
# a3c_multitask), DISTILLED the column h_theta0 / pi_0.
def flow(policy_gradient, value, entropy_bonus, distillation):
    return {"policy_gradient": policy_gradient, "value": value, "entropy_bonus": entropy_bonus,
            "distillation": distillation}


FLOW = {
    "a3c": flow({TASK}, {TASK}, {TASK}, set()),
    "a3c_multitask": flow({TASK}, {TASK}, {TASK}, set()),
    "a3c_2col": flow({TASK, DISTILLED}, {TASK}, {TASK}, set()),  # the entropy bonus holds h0 fixed
    "kl_1col": flow({TASK}, {TASK}, set(), {DISTILLED}),
    "klent_1col": flow({TASK}, {TASK}, set(), {DISTILLED}),
    "kl_2col": flow({TASK, DISTILLED}, {TASK}, set(), {DISTILLED}),
    "klent_2col": flow({TASK, DISTILLED}, {TASK}, set(), {DISTILLED}),
}


# ------------------------------------------------------------------------------------------------ #
# Helpers.

def make_rollout(agent, task_ids, seed=0):
    """Random observations, an episode boundary inside the rollout and nonzero initial LSTM states."""
    rng = np.random.default_rng(seed)
    t, b = agent.unroll_length, len(task_ids)
    first = np.zeros((t + 1, b), bool)
    dones = np.zeros((t, b), bool)
    first[0, 0] = True
    if b > 1:
        dones[1, 1] = True
        first[2, 1] = True
    state = lambda: rng.normal(scale=0.5, size=(b, 256)).astype(np.float32)
    return Rollout(
        task_ids=np.asarray(task_ids, np.int32),
        observations=rng.integers(0, 256, (t + 1, b, *agent.observation_shape), dtype=np.uint8),
        first=first,
        actions=rng.integers(0, agent.num_actions, (t, b)).astype(np.int32),
        rewards=rng.normal(size=(t, b)).astype(np.float32),
        dones=dones,
        distilled_state=(state(), state()),
        task_state=(state(), state()),
    )


def sub_rollout(r, idx):
    idx = np.asarray(idx)
    return Rollout(task_ids=r.task_ids[idx], observations=r.observations[:, idx], first=r.first[:, idx],
                   actions=r.actions[:, idx], rewards=r.rewards[:, idx], dones=r.dones[:, idx],
                   distilled_state=tuple(s[idx] for s in r.distilled_state),
                   task_state=tuple(s[idx] for s in r.task_state))


def named_columns(agent):
    cols = {f"task_{i}": c for i, c in enumerate(agent.task_columns)}
    if agent.distilled is not None:
        cols[DISTILLED] = agent.distilled
    return cols


def to_numpy(g, v):
    return np.zeros(v.shape, np.float32) if g is None else tf.convert_to_tensor(g).numpy()


def gradients(agent, rollout, terms=TERMS):
    """``({term: {id(variable): grad array}}, term values)``, zeros where the tape gives ``None``."""
    variables = [v for c in agent.columns for v in c.trainable_variables]
    with tf.GradientTape(persistent=True) as tape:
        values = agent.trace_loss_terms(rollout)
    out = {term: {id(v): to_numpy(g, v) for g, v in zip(tape.gradient(values[term], variables), variables,
                                                        strict=True)}
           for term in terms}
    del tape
    return out, {k: v.numpy() for k, v in values.items()}


def of_column(grads, column):
    return [grads[id(v)] for v in column.trainable_variables]


def of_heads(grads, agent, head):
    """The gradients of the ``head`` ("policy_head"/"value_head") variables of every column."""
    heads = [getattr(c, head) for c in agent.columns if getattr(c, head) is not None]
    return [grads[id(v)] for h in heads for v in h.trainable_variables]


def nonzero(grads):
    return any(np.any(g != 0) for g in grads)


# ------------------------------------------------------------------------------------------------ #
# The registry.

def test_registry_has_exactly_the_seven_algorithms_of_table_1():
    assert set(algorithms.NAMES) == set(FLOW)
    assert len(algorithms.NAMES) == 7
    assert {a.name for a in baselines.a3c.ALGORITHMS} == {"a3c", "a3c_multitask", "a3c_2col"}
    assert {a.name for a in distral_tf.distral.ALGORITHMS} == {"kl_1col", "kl_2col", "klent_1col",
                                                                "klent_2col"}
    for a in baselines.a3c.ALGORITHMS:
        assert algorithms.get(a.name) is a
    for a in distral_tf.distral.ALGORITHMS:
        assert algorithms.get(a.name) is a
    table = {
        "a3c": (Architecture.ONE_COLUMN, False, 0.0),
        "a3c_multitask": (Architecture.MULTITASK, False, 0.0),
        "a3c_2col": (Architecture.TWO_COLUMN, False, 1.0),  # logits h0 + f (alpha = beta = 1)
        "kl_1col": (Architecture.ONE_COLUMN, True, 1.0),
        "kl_2col": (Architecture.TWO_COLUMN, True, 1.0),
        "klent_1col": (Architecture.ONE_COLUMN, True, 0.5),
        "klent_2col": (Architecture.TWO_COLUMN, True, 0.5),
    }
    for name, (arch, kl, alpha) in table.items():
        a = algorithms.get(name)
        assert (a.architecture, a.kl, a.default_alpha) == (arch, kl, alpha), name
    with pytest.raises(ValueError, match="a3c"):
        algorithms.get("distral")


# ------------------------------------------------------------------------------------------------ #
# The columns each algorithm builds and trains.

@pytest.mark.parametrize("name", algorithms.NAMES)
def test_columns_and_trainable_variables(make_agent, name):
    agent = make_agent(name)
    trainable = {id(v) for v in agent.trainable}
    if name == "a3c_multitask":
        assert len(agent.task_columns) == 1 and agent.distilled is None
        assert agent.distilled_column() is agent.task_columns[0]
    else:
        assert len(agent.task_columns) == agent.num_tasks
        assert agent.distilled is not None and agent.distilled.value_head is None
        assert agent.distilled_column() is agent.distilled
        distilled_ids = {id(v) for v in agent.distilled.trainable_variables}
        # a3c's pi_0 is an untrained network; every other algorithm trains h_theta0.
        assert distilled_ids.isdisjoint(trainable) == (name == "a3c")
    # Each task column has its own variables, value head included: nothing is shared between tasks.
    per_column = [{id(v) for v in c.trainable_variables} for c in agent.task_columns]
    for i, ids in enumerate(per_column):
        assert agent.task_columns[i].value_head is not None
        assert ids <= trainable
        for other in per_column[i + 1:]:
            assert ids.isdisjoint(other)


@pytest.mark.parametrize("name", algorithms.NAMES)
def test_which_columns_each_loss_term_trains(make_agent, name):
    agent = make_agent(name)
    grads, values = gradients(agent, make_rollout(agent, [0, 1, 0]))
    for term in TERMS:
        expected = FLOW[name][term]
        for column_name, column in named_columns(agent).items():
            group = DISTILLED if column_name == DISTILLED else TASK
            assert nonzero(of_column(grads[term], column)) == (group in expected), (term, column_name)
    if not FLOW[name]["entropy_bonus"]:
        assert values["entropy_bonus"] == 0.0
    if not FLOW[name]["distillation"]:
        assert values["distillation"] == 0.0
    # The value loss never reaches a policy head; the policy terms never reach a value head.
    assert not nonzero(of_heads(grads["value"], agent, "policy_head"))
    assert nonzero(of_heads(grads["value"], agent, "value_head"))
    for term in ("policy_gradient", "entropy_bonus", "distillation"):
        assert not nonzero(of_heads(grads[term], agent, "value_head")), term


@pytest.mark.parametrize("name", [n for n in algorithms.NAMES if n != "a3c_multitask"])
def test_task_column_gets_nothing_from_other_tasks(make_agent, name):
    agent = make_agent(name)
    grads, _ = gradients(agent, make_rollout(agent, [0, 0], seed=2))
    task_0, task_1 = agent.task_columns
    for term in TERMS:
        assert not nonzero(of_column(grads[term], task_1)), term
    assert nonzero(of_column(grads["policy_gradient"], task_0))
    assert nonzero(of_column(grads["value"], task_0))


def test_multitask_shares_policy_and_value_across_tasks(make_agent):
    agent = make_agent("a3c_multitask")
    for task in (0, 1):
        rollout = make_rollout(agent, [task, task], seed=3)
        grads, _ = gradients(agent, rollout, terms=("policy_gradient", "value"))
        assert nonzero(of_heads(grads["value"], agent, "value_head"))
        assert nonzero(of_heads(grads["policy_gradient"], agent, "policy_head"))
    # The task id does not change the shared network's loss.
    rollout = make_rollout(agent, [0, 1], seed=3)
    other = make_rollout(agent, [1, 0], seed=3)
    np.testing.assert_allclose(agent.trace_loss_terms(rollout)["total"].numpy(),
                               agent.trace_loss_terms(other)["total"].numpy(), rtol=1e-6)


@pytest.mark.parametrize("name", algorithms.NAMES)
def test_batch_gradient_is_the_sum_of_per_task_gradients(make_agent, name):
    """Per-element losses: a mixed batch's gradient is the sum of its tasks' sub-batches' gradients."""
    agent = make_agent(name)
    rollout = make_rollout(agent, [0, 1, 0], seed=4)
    mixed, _ = gradients(agent, rollout, terms=("total",))
    part0, _ = gradients(agent, sub_rollout(rollout, [0, 2]), terms=("total",))
    part1, _ = gradients(agent, sub_rollout(rollout, [1]), terms=("total",))
    for column_name, column in named_columns(agent).items():
        for v in column.trainable_variables:
            g, g0, g1 = mixed["total"][id(v)], part0["total"][id(v)], part1["total"][id(v)]
            scale = max(np.abs(g).max(), 1e-3)
            np.testing.assert_allclose(g, g0 + g1, rtol=1e-4, atol=1e-4 * scale,
                                       err_msg=f"{column_name} {v.name}")


@pytest.mark.parametrize("name,terms", [("a3c_2col", ("policy_gradient",)),
                                        ("kl_2col", ("policy_gradient",)),
                                        ("klent_2col", ("policy_gradient",))])
def test_two_column_mixture_weights(make_agent, name, terms):
    """With logits ``alpha h0 + beta f_i`` (eq. 8), d/d h0 = alpha d/dlogits and d/d f_i = beta d/dlogits;
    f_i's policy layer is scaled by ``s`` (1/beta with the default unit scaling), so the policy-head bias
    gradients satisfy ``g(h0) = (alpha/(beta s)) sum_i g(f_i)``."""
    agent = make_agent(name)
    alpha, beta = agent.coeffs.alpha, agent.coeffs.beta
    if name == "a3c_2col":
        assert (alpha, beta) == (1.0, 1.0)
    rollout = make_rollout(agent, [0, 1, 0], seed=5)
    biases = [c.policy_head.bias for c in agent.task_columns] + [agent.distilled.policy_head.bias]
    for term in terms:
        with tf.GradientTape() as tape:
            values = agent.trace_loss_terms(rollout)
        *g_tasks, g_h0 = [g.numpy() for g in tape.gradient(values[term], biases)]
        scale = agent.task_columns[0].policy_scale
        np.testing.assert_allclose(g_h0, alpha / (beta * scale) * np.sum(g_tasks, axis=0), rtol=1e-4, atol=1e-6)
        assert np.any(g_h0 != 0)


def test_a3c_2col_h0_learns_only_through_the_policy_gradient(make_agent):
    """docs/spec.md section 5: the entropy bonus of pi_i = softmax(h0 + f) reaches f, never h0."""
    agent = make_agent("a3c_2col")
    grads, values = gradients(agent, make_rollout(agent, [0, 1, 0], seed=7), terms=TERMS + ("total",))
    assert values["entropy_bonus"] < 0
    assert not nonzero(of_column(grads["entropy_bonus"], agent.distilled))
    assert all(nonzero(of_column(grads["entropy_bonus"], c)) for c in agent.task_columns)
    assert nonzero(of_column(grads["policy_gradient"], agent.distilled))
    assert all(nonzero(of_column(grads["policy_gradient"], c)) for c in agent.task_columns)
    # So h0's whole gradient is the policy gradient's.
    for g_total, g_pg in zip(of_column(grads["total"], agent.distilled),
                             of_column(grads["policy_gradient"], agent.distilled), strict=True):
        np.testing.assert_allclose(g_total, g_pg, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["a3c", "a3c_multitask", "a3c_2col", "kl_1col", "klent_2col"])
def test_train_step_updates_only_the_columns_of_the_batch(make_agent, name):
    """The compiled training step: loss terms as in eager mode; a task-0 batch moves only what it should."""
    agent = make_agent(name)
    snapshot = [v.numpy() for v in agent.variables]
    try:
        rollout = make_rollout(agent, [0, 0], seed=6)
        eager = {k: v.numpy() for k, v in agent.trace_loss_terms(rollout).items()}
        before = {n: [v.numpy() for v in c.trainable_variables] for n, c in named_columns(agent).items()}
        graph = agent.train_step(rollout)
        for key in ("total", *TERMS):
            np.testing.assert_allclose(graph[key], eager[key], rtol=1e-4, atol=1e-5, err_msg=key)
        for column_name, column in named_columns(agent).items():
            pairs = zip(column.trainable_variables, before[column_name], strict=True)
            moved = any(np.any(v.numpy() != b) for v, b in pairs)
            if column_name == "task_0":
                assert moved
            elif column_name == "task_1":
                assert not moved
            else:
                assert moved == (name != "a3c"), column_name
    finally:
        for v, value in zip(agent.variables, snapshot, strict=True):
            v.assign(value)
