"""An update changes only the columns of the tasks present in its rollouts (and pi_0)."""

import numpy as np
import pytest
from conftest import SMALL_AGENT
from conftest import random_rollout as _rollout


def _snapshot(agent, column):
    optimizer = agent.optimizer
    params = [v.numpy().copy() for v in column.trainable_variables]
    stats = [optimizer.mean_squares[optimizer._index[id(v)]].numpy().copy() for v in column.trainable_variables]
    return params, stats


def _changed(before, after):
    return [not np.array_equal(a, b) for a, b in zip(before, after, strict=True)]


@pytest.mark.parametrize("name", ["a3c", "kl_2col"])
def test_absent_task_column_keeps_its_parameters_and_rmsprop_statistics(make_agent, name):
    agent = make_agent(name)
    present, absent = agent.task_columns
    before_present, before_absent = _snapshot(agent, present), _snapshot(agent, absent)
    agent.train_step(_rollout([0, 0]))
    after_present, after_absent = _snapshot(agent, present), _snapshot(agent, absent)
    assert any(_changed(before_present[0], after_present[0])) and all(_changed(before_present[1], after_present[1]))
    assert not any(_changed(before_absent[0], after_absent[0]))
    assert not any(_changed(before_absent[1], after_absent[1]))
    if agent.algorithm.kl:
        distilled_before = [v.numpy().copy() for v in agent.distilled.trainable_variables]
        agent.train_step(_rollout([1], seed=1))
        assert all(_changed(distilled_before, [v.numpy() for v in agent.distilled.trainable_variables]))


@pytest.mark.parametrize("name", ["a3c", "kl_2col", "klent_1col"])
def test_single_task_update_equals_the_routed_update(name):
    """A batch of one task runs that task's own function; it must update exactly as the routed one."""
    from distral_tf import algorithms
    from distral_tf.model.agent import Agent

    algorithm = algorithms.get(name)
    routed, direct = (Agent(algorithm, algorithm.coefficients(0.05), 2, SMALL_AGENT["observation_shape"], 3,
                            unroll_length=SMALL_AGENT["unroll_length"], learning_rate=1e-3, total_env_steps=10_000,
                            seed=0) for _ in range(2))
    for a, b in zip(routed.parameters, direct.parameters, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    rollout = _rollout([1, 1, 1], seed=2)
    terms_routed = routed._functions.train(None)(rollout)
    terms_direct = direct.train_step(rollout)
    assert direct._functions.traced(("train", 1)) and not routed._functions.traced(("train", 1))
    np.testing.assert_allclose(float(terms_routed["total"]), terms_direct["total"], rtol=1e-5)
    for a, b in zip(routed.parameters + routed.optimizer.mean_squares,
                    direct.parameters + direct.optimizer.mean_squares, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
