"""Each algorithm's loss (``objective.loss_terms``) and coefficients against a NumPy recomputation."""

import numpy as np
import pytest
import tensorflow as tf

from distral_tf import algorithms
from distral_tf.model import objective
from distral_tf.model.algorithm_spec import Architecture

T, B, A = 4, 3, 3
DISTRAL = ["kl_1col", "kl_2col", "klent_1col", "klent_2col"]
A3C = ["a3c", "a3c_multitask", "a3c_2col"]
TOL = {"rtol": 1e-5, "atol": 1e-5}


def np_log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def np_take(x, a):
    return np.take_along_axis(x, a[..., None], -1)[..., 0]


def np_loss_terms(algorithm, coeffs, task_logits, values, distilled_logits, actions, rewards, dones,
                  task_column_logits=None):
    """docs/spec.md sections 4-5 written out with loops: the reference the objective must match."""
    logits = task_logits[:-1]
    log_pi = np_log_softmax(logits)
    log_pi_a = np_take(log_pi, actions)
    r = rewards.astype(np.float64)
    if algorithm.kl:
        log_pi0 = np_log_softmax(distilled_logits[:-1])
        r = r + coeffs.c_kl * np_take(log_pi0, actions) - (1.0 / coeffs.beta) * log_pi_a
    returns = np.zeros((T, B))
    acc = values[-1].astype(np.float64)
    for t in reversed(range(T)):
        acc = r[t] + coeffs.discount * (1.0 - dones[t]) * acc
        returns[t] = acc
    adv = returns - values[:-1]
    pg = -np.sum(log_pi_a * adv)
    vl = 0.5 * np.sum(adv ** 2)
    ent = -np.sum(np.exp(log_pi) * log_pi, -1)
    ent_bonus = -coeffs.entropy_bonus * ent.sum()
    distill = 0.0
    if algorithm.kl:
        distill = -coeffs.c_kl * np.sum(np.exp(log_pi) * log_pi0)
    return {
        "policy_gradient": pg,
        "value": vl,
        "entropy_bonus": ent_bonus,
        "distillation": distill,
        "total": pg + coeffs.value_cost * vl + ent_bonus + distill,
        "mean_return": returns.mean(),
        "mean_advantage": adv.mean(),
        "entropy_task": ent.mean(),
    }


def make_inputs(seed, algorithm, coeffs):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(T + 1, B, A)).astype(np.float32)
    h0 = rng.normal(size=(T + 1, B, A)).astype(np.float32)
    inputs = {
        "task_logits": (coeffs.alpha * h0 + coeffs.beta * f).astype(np.float32)
        if algorithm.architecture is Architecture.TWO_COLUMN else f,
        "values": rng.normal(size=(T + 1, B)).astype(np.float32),
        "distilled_logits": h0 if algorithm.architecture is not Architecture.MULTITASK else None,
        "actions": rng.integers(0, A, size=(T, B)).astype(np.int32),
        "rewards": rng.normal(size=(T, B)).astype(np.float32),
        "dones": np.zeros((T, B), bool),
    }
    if algorithm.architecture is Architecture.TWO_COLUMN:
        inputs["task_column_logits"] = f
    inputs["dones"][1, 0] = True
    inputs["dones"][T - 1, 2] = True
    return inputs


def run(algorithm, coeffs, inputs):
    terms = objective.loss_terms(algorithm, coeffs, **inputs)
    return {k: v.numpy() for k, v in terms.items()}


@pytest.mark.parametrize("name", algorithms.NAMES)
@pytest.mark.parametrize("seed", [0, 1])
def test_loss_terms_match_numpy(name, seed):
    algorithm = algorithms.get(name)
    coeffs = algorithm.coefficients(0.3)
    inputs = make_inputs(seed, algorithm, coeffs)
    got = run(algorithm, coeffs, inputs)
    expected = np_loss_terms(algorithm, coeffs, **inputs)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, err_msg=key, **TOL)


@pytest.mark.parametrize("name", algorithms.NAMES)
def test_regularised_rewards_used_iff_kl(name):
    """With zero rewards, zero values and no episode end, returns are nonzero only through the regulariser."""
    algorithm = algorithms.get(name)
    coeffs = algorithm.coefficients(0.5)
    inputs = make_inputs(3, algorithm, coeffs)
    inputs["rewards"][:] = 0.0
    inputs["values"][:] = 0.0
    inputs["dones"][:] = False
    got = run(algorithm, coeffs, inputs)
    if algorithm.kl:
        log_pi_a = np_take(np_log_softmax(inputs["task_logits"][:-1]), inputs["actions"])
        log_pi0_a = np_take(np_log_softmax(inputs["distilled_logits"][:-1]), inputs["actions"])
        r = coeffs.c_kl * log_pi0_a - (1.0 / coeffs.beta) * log_pi_a
        returns = np_plain_returns(r, coeffs.discount)
        assert abs(got["mean_return"]) > 1e-3
        np.testing.assert_allclose(got["mean_return"], returns.mean(), rtol=1e-5)
        np.testing.assert_allclose(got["value"], 0.5 * np.sum(returns ** 2), rtol=1e-5)
    else:
        assert got["mean_return"] == 0.0
        assert got["value"] == 0.0
        assert got["policy_gradient"] == 0.0


def np_plain_returns(r, discount):
    out = np.zeros_like(r)
    acc = np.zeros(r.shape[1])
    for t in reversed(range(r.shape[0])):
        acc = r[t] + discount * acc
        out[t] = acc
    return out


def test_bootstrap_from_the_last_value_and_cut_at_dones():
    """``G_t`` bootstraps from ``values[T]`` (the state after the last action), cut where ``dones``."""
    algorithm = algorithms.get("a3c")
    coeffs = algorithm.coefficients(0.01)
    base = {"task_logits": np.zeros((2, 1, A), np.float32), "distilled_logits": None,
            "actions": np.zeros((1, 1), np.int32), "rewards": np.array([[1.0]], np.float32)}
    values = np.array([[5.0], [7.0]], np.float32)
    got = run(algorithm, coeffs, {**base, "values": values, "dones": np.array([[False]])})
    np.testing.assert_allclose(got["mean_return"], 1.0 + 0.99 * 7.0, rtol=1e-6)
    np.testing.assert_allclose(got["mean_advantage"], 1.0 + 0.99 * 7.0 - 5.0, rtol=1e-6)
    got = run(algorithm, coeffs, {**base, "values": values, "dones": np.array([[True]])})
    np.testing.assert_allclose(got["mean_return"], 1.0, rtol=1e-6)
    # Two steps, the episode ends after the first: G_0 = r_0, G_1 = r_1 + gamma V_2.
    got = run(algorithm, coeffs, {"task_logits": np.zeros((3, 1, A), np.float32), "distilled_logits": None,
                                  "actions": np.zeros((2, 1), np.int32),
                                  "rewards": np.array([[1.0], [2.0]], np.float32),
                                  "values": np.array([[0.0], [0.0], [10.0]], np.float32),
                                  "dones": np.array([[True], [False]])})
    np.testing.assert_allclose(got["mean_return"], (1.0 + 2.0 + 0.99 * 10.0) / 2, rtol=1e-6)


@pytest.mark.parametrize("name", algorithms.NAMES)
def test_entropy_bonus_only_for_a3c_and_distillation_only_for_kl(name):
    algorithm = algorithms.get(name)
    coeffs = algorithm.coefficients(0.3)
    got = run(algorithm, coeffs, make_inputs(5, algorithm, coeffs))
    if name in A3C:
        assert not algorithm.kl
        assert got["entropy_bonus"] < 0.0  # -beta_ent * sum of positive entropies
        np.testing.assert_allclose(got["entropy_bonus"], -0.3 * got["entropy_task"] * T * B, rtol=1e-5)
        assert got["distillation"] == 0.0
    else:
        assert algorithm.kl
        assert got["entropy_bonus"] == 0.0  # Distral's entropy lives in the regularised reward
        assert got["distillation"] > 0.0  # a cross entropy times alpha/beta > 0


def test_a3c_2col_entropy_bonus_holds_h0_fixed():
    """docs/spec.md section 5: the bonus is pi_i's entropy, its gradient reaching f only; the policy gradient both."""
    algorithm = algorithms.get("a3c_2col")
    coeffs = algorithm.coefficients(0.3)
    inputs = make_inputs(7, algorithm, coeffs)
    f, h0 = tf.Variable(inputs.pop("task_column_logits")), tf.Variable(inputs.pop("distilled_logits"))
    del inputs["task_logits"]
    with tf.GradientTape(persistent=True) as tape:
        logits = objective.task_policy_logits(algorithm, coeffs, f, h0)
        terms = objective.loss_terms(algorithm, coeffs, task_logits=logits, distilled_logits=h0,
                                     task_column_logits=f, **inputs)
    log_pi = np_log_softmax(logits.numpy()[:-1])
    np.testing.assert_allclose(terms["entropy_bonus"], 0.3 * np.sum(np.exp(log_pi) * log_pi), **TOL)
    g_f, g_h0 = tape.gradient(terms["entropy_bonus"], [f, h0])
    assert g_h0 is None or not np.any(g_h0.numpy())
    assert np.any(g_f.numpy()[:-1] != 0)
    g_f, g_h0 = tape.gradient(terms["policy_gradient"], [f, h0])
    assert np.any(g_h0.numpy() != 0) and np.any(g_f.numpy() != 0)
    with pytest.raises(ValueError, match="task_column_logits"):
        objective.loss_terms(algorithm, coeffs, task_logits=logits, distilled_logits=h0, **inputs)


@pytest.mark.parametrize("name", ["kl_1col", "kl_2col", "klent_2col"])
def test_kl_diagnostic_is_kl_of_task_policy_from_distilled(name):
    algorithm = algorithms.get(name)
    coeffs = algorithm.coefficients(0.3)
    inputs = make_inputs(6, algorithm, coeffs)
    got = run(algorithm, coeffs, inputs)
    lp, lq = np_log_softmax(inputs["task_logits"][:-1]), np_log_softmax(inputs["distilled_logits"][:-1])
    kl = np.mean(np.sum(np.exp(lp) * (lp - lq), -1))  # KL(pi_i || pi0), not KL(pi0 || pi_i)
    np.testing.assert_allclose(got["kl_task_distilled"], kl, rtol=1e-5)
    ent0 = -np.sum(np.exp(lq) * lq, -1).mean()
    np.testing.assert_allclose(got["entropy_distilled"], ent0, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ #
# Task-policy logits of each architecture.

@pytest.mark.parametrize("name", algorithms.NAMES)
def test_task_policy_logits(name):
    algorithm = algorithms.get(name)
    coeffs = algorithm.coefficients(0.25)
    rng = np.random.default_rng(0)
    f = rng.normal(size=(T, B, A)).astype(np.float32)
    h0 = rng.normal(size=(T, B, A)).astype(np.float32)
    got = objective.task_policy_logits(algorithm, coeffs, tf.constant(f), tf.constant(h0)).numpy()
    if algorithm.architecture is Architecture.TWO_COLUMN:
        alpha, beta = (1.0, 1.0) if name == "a3c_2col" else (algorithm.default_alpha, 4.0)
        np.testing.assert_allclose(got, alpha * h0 + beta * f, **TOL)  # eq. 8
    else:
        np.testing.assert_allclose(got, f)


# ------------------------------------------------------------------------------------------------ #
# Algorithm.coefficients

@pytest.mark.parametrize("name,alpha", [("kl_1col", 1.0), ("kl_2col", 1.0), ("klent_1col", 0.5),
                                        ("klent_2col", 0.5)])
@pytest.mark.parametrize("entropy_cost", [1e-3, 0.05, 2.0])
def test_distral_coefficients(name, alpha, entropy_cost):
    coeffs = algorithms.get(name).coefficients(entropy_cost)
    assert coeffs.alpha == alpha
    np.testing.assert_allclose(coeffs.beta, 1.0 / entropy_cost)
    np.testing.assert_allclose(coeffs.c_kl, alpha * entropy_cost)  # alpha / beta
    np.testing.assert_allclose(coeffs.c_ent, (1.0 - alpha) * entropy_cost)  # (1 - alpha) / beta
    # alpha = c_KL / (c_KL + c_Ent), beta = 1 / (c_KL + c_Ent)  (docs/spec.md section 1)
    np.testing.assert_allclose(coeffs.c_kl / (coeffs.c_kl + coeffs.c_ent), coeffs.alpha)
    np.testing.assert_allclose(1.0 / (coeffs.c_kl + coeffs.c_ent), coeffs.beta)
    assert coeffs.entropy_bonus == 0.0
    assert coeffs.value_cost == 0.5 and coeffs.discount == 0.99


def test_distral_alpha_override():
    coeffs = algorithms.get("klent_2col").coefficients(0.1, alpha=0.25)
    assert coeffs.alpha == 0.25
    np.testing.assert_allclose(coeffs.beta, 10.0)
    np.testing.assert_allclose(coeffs.c_ent, 0.075)


@pytest.mark.parametrize("name", DISTRAL)
@pytest.mark.parametrize("entropy_cost", [0.0, -0.1])
def test_distral_rejects_nonpositive_entropy_cost(name, entropy_cost):
    with pytest.raises(ValueError, match="entropy_cost"):
        algorithms.get(name).coefficients(entropy_cost)


@pytest.mark.parametrize("name", A3C)
def test_a3c_coefficients(name):
    coeffs = algorithms.get(name).coefficients(0.01, value_cost=0.25, discount=0.9)
    assert coeffs.entropy_bonus == 0.01  # beta_ent, a separately named value (docs/pitfalls.md item 8)
    assert coeffs.value_cost == 0.25 and coeffs.discount == 0.9
    if name == "a3c_2col":
        assert (coeffs.alpha, coeffs.beta) == (1.0, 1.0)  # logits h0 + f
    else:
        assert coeffs.alpha == 0.0
    with pytest.raises(ValueError, match="alpha"):
        algorithms.get(name).coefficients(0.01, alpha=0.5)
