"""Every function of ``distral_tf.model.losses`` against an independent NumPy version of the spec formula.

Values and ``tf.GradientTape`` gradients are compared on random ``[T, B]`` / ``[T, B, A]``
inputs. Gradients of a scalar function are compared directly; those of a tensor-valued one
through ``sum(W * f(x))`` with random weights ``W``, whose gradient is written out by hand.
"""

import numpy as np
import pytest
import tensorflow as tf

from distral_tf.model import losses

T, B, A = 5, 4, 3
SEEDS = [0, 1, 2]
COEFFS = [(1.0, 1.0), (1.0, 20.0), (0.5, 3.0), (0.25, 0.5)]  # (alpha, beta)
TOL = {"rtol": 1e-5, "atol": 1e-5}


# ------------------------------------------------------------------------------------------------ #
# NumPy references (float64).

def np_log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def np_softmax(x):
    return np.exp(np_log_softmax(x))


def np_onehot(a, n):
    return np.eye(n)[a]


def np_take(x, a):
    return np.take_along_axis(x, a[..., None], -1)[..., 0]


def np_returns(rewards, discounts, bootstrap):
    out = np.zeros_like(rewards, dtype=np.float64)
    acc = np.asarray(bootstrap, np.float64)
    for t in reversed(range(rewards.shape[0])):
        acc = rewards[t] + discounts[t] * acc
        out[t] = acc
    return out


def np_entropy(logits):
    lp = np_log_softmax(logits)
    return -(np.exp(lp) * lp).sum(-1)


# ------------------------------------------------------------------------------------------------ #

def var(x):
    return tf.Variable(np.asarray(x, np.float32))


def grads(fn, *variables, weights=None):
    """``(value, [d sum(W * fn) / d v for v in variables])``."""
    with tf.GradientTape() as tape:
        out = fn(*variables)
        target = out if weights is None else tf.reduce_sum(tf.constant(weights, tf.float32) * out)
    return out.numpy(), tape.gradient(target, list(variables))


def assert_no_gradient(g):
    assert g is None or not np.any(g.numpy()), g


def random_inputs(seed):
    rng = np.random.default_rng(seed)
    return rng, {
        "logits": rng.normal(size=(T, B, A)) * 2.0,
        "logits2": rng.normal(size=(T, B, A)) * 2.0,
        "actions": rng.integers(0, A, size=(T, B)),
        "tb": rng.normal(size=(T, B)),
        "tb2": rng.normal(size=(T, B)),
        "weights_tb": rng.normal(size=(T, B)),
        "weights_tba": rng.normal(size=(T, B, A)),
    }


# ------------------------------------------------------------------------------------------------ #
# regularized_rewards

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("alpha,beta", COEFFS)
def test_regularized_rewards_value_and_gradient(seed, alpha, beta):
    rng, x = random_inputs(seed)
    rewards, w = x["tb"], x["weights_tb"]
    log_pi0_a = np_take(np_log_softmax(x["logits"]), x["actions"])
    log_pi_a = np_take(np_log_softmax(x["logits2"]), x["actions"])
    vr, v0, vi = var(rewards), var(log_pi0_a), var(log_pi_a)
    out, (g_r, g_0, g_i) = grads(lambda r, l0, li: losses.regularized_rewards(r, l0, li, alpha, beta),
                                 vr, v0, vi, weights=w)
    expected = rewards + (alpha / beta) * log_pi0_a - (1.0 / beta) * log_pi_a
    assert out.shape == (T, B)
    np.testing.assert_allclose(out, expected, **TOL)
    np.testing.assert_allclose(g_r.numpy(), w, **TOL)
    # Both log-probabilities are rewards, not paths for gradients (docs/pitfalls.md item 2).
    assert_no_gradient(g_0)
    assert_no_gradient(g_i)


def test_regularized_rewards_is_eq1_with_c_kl_and_c_ent():
    """``R + (a/b) log pi0 - (1/b) log pi_i == R - c_KL log(pi_i/pi0) - c_Ent log pi_i``."""
    _, x = random_inputs(7)
    alpha, beta = 0.5, 4.0
    c_kl, c_ent = alpha / beta, (1 - alpha) / beta
    l0 = np_take(np_log_softmax(x["logits"]), x["actions"])
    li = np_take(np_log_softmax(x["logits2"]), x["actions"])
    out = losses.regularized_rewards(x["tb"], l0, li, alpha, beta).numpy()
    np.testing.assert_allclose(out, x["tb"] - c_kl * (li - l0) - c_ent * li, **TOL)


# ------------------------------------------------------------------------------------------------ #
# n_step_returns

def test_n_step_returns_hand_computed_with_episode_end():
    gamma = 0.9
    # Column 0: the episode ends with the action at t=1, so G_1 does not bootstrap from t=2.
    # Column 1: no episode end; discounts differ per step (catches a reversed discount vector).
    rewards = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 1.0]])
    discounts = np.array([[gamma, 0.5], [0.0, 0.9], [gamma, 0.8], [gamma, 0.7]])
    bootstrap = np.array([10.0, -1.0])
    g = losses.n_step_returns(rewards, discounts, bootstrap).numpy()
    col0 = [1 + 0.9 * 2, 2 + 0.0, 3 + 0.9 * (4 + 0.9 * 10), 4 + 0.9 * 10]
    g3 = 1.0 + 0.7 * -1.0
    col1 = [0.5 * 0.9 * 0.8 * g3, 0.9 * 0.8 * g3, 0.8 * g3, g3]
    np.testing.assert_allclose(g[:, 0], col0, **TOL)
    np.testing.assert_allclose(g[:, 1], col1, **TOL)
    np.testing.assert_allclose(g, np_returns(rewards, discounts, bootstrap), **TOL)


def test_n_step_returns_off_by_one():
    # The last transition is counted and the bootstrap is the value *after* it.
    g = losses.n_step_returns([[5.0]], [[0.5]], [2.0]).numpy()
    np.testing.assert_allclose(g, [[5.0 + 0.5 * 2.0]])
    # An episode ending at the last step ignores the bootstrap entirely.
    g = losses.n_step_returns([[1.0], [1.0]], [[0.9], [0.0]], [1e6]).numpy()
    np.testing.assert_allclose(g, [[1.9], [1.0]])
    # Only rewards: G_0 = r_0 + g r_1 + g^2 r_2 with r_0 weighted 1 (not gamma).
    g = losses.n_step_returns([[1.0], [10.0], [100.0]], [[0.5]] * 3, [0.0]).numpy()
    np.testing.assert_allclose(g[:, 0], [1 + 5 + 25, 10 + 50, 100])


@pytest.mark.parametrize("seed", SEEDS)
def test_n_step_returns_random_against_loop_and_no_gradient(seed):
    rng, x = random_inputs(seed)
    discounts = 0.99 * (rng.random((T, B)) > 0.3)
    bootstrap = rng.normal(size=B)
    vr, vd, vb = var(x["tb"]), var(discounts), var(bootstrap)
    out, gs = grads(lambda r, d, b: losses.n_step_returns(r, d, b), vr, vd, vb, weights=x["weights_tb"])
    assert out.shape == (T, B)
    np.testing.assert_allclose(out, np_returns(x["tb"], discounts, bootstrap), **TOL)
    for g in gs:
        assert_no_gradient(g)


# ------------------------------------------------------------------------------------------------ #
# two_column_logits

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("alpha,beta", COEFFS)
def test_two_column_logits_value_and_gradient(seed, alpha, beta):
    _, x = random_inputs(seed)
    w = x["weights_tba"]
    out, (g_h0, g_f) = grads(lambda h0, f: losses.two_column_logits(h0, f, alpha, beta),
                             var(x["logits"]), var(x["logits2"]), weights=w)
    np.testing.assert_allclose(out, alpha * x["logits"] + beta * x["logits2"], **TOL)
    np.testing.assert_allclose(g_h0.numpy(), alpha * w, **TOL)
    np.testing.assert_allclose(g_f.numpy(), beta * w, **TOL)


# ------------------------------------------------------------------------------------------------ #
# distillation_loss

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("alpha,beta", COEFFS)
def test_distillation_loss_value_and_gradient(seed, alpha, beta):
    _, x = random_inputs(seed)
    task, distilled = x["logits"], x["logits2"]
    out, (g_task, g_distilled) = grads(lambda t, d: losses.distillation_loss(t, d, alpha, beta),
                                       var(task), var(distilled))
    pi_i, pi0 = np_softmax(task), np_softmax(distilled)
    assert out.shape == ()
    np.testing.assert_allclose(out, -(alpha / beta) * np.sum(pi_i * np_log_softmax(distilled)), rtol=1e-5)
    # eq. 10, second term: (alpha/beta) (pi0 - pi_i), per time step and batch element.
    np.testing.assert_allclose(g_distilled.numpy(), (alpha / beta) * (pi0 - pi_i), **TOL)
    # The task policy is a target (docs/pitfalls.md item 2).
    assert_no_gradient(g_task)


def test_distillation_loss_is_a_per_element_cross_entropy_from_pi_i_to_pi0():
    """A sum of per-(t, b) cross entropies: no B x B pairing, no reversed KL (docs/pitfalls.md items 1 and 3)."""
    _, x = random_inputs(3)
    task, distilled = x["logits"], x["logits2"]
    total = losses.distillation_loss(task, distilled, 1.0, 1.0).numpy()
    one = lambda t, b: losses.distillation_loss(task[t:t + 1, b:b + 1], distilled[t:t + 1, b:b + 1], 1.0, 1.0)
    per_element = [one(t, b).numpy() for t in range(T) for b in range(B)]
    np.testing.assert_allclose(total, np.sum(per_element), rtol=1e-5)
    pi_i, pi0 = np_softmax(task), np_softmax(distilled)
    kl_i_0 = np.sum(pi_i * (np_log_softmax(task) - np_log_softmax(distilled)))
    np.testing.assert_allclose(total, kl_i_0 + np.sum(np_entropy(task)), rtol=1e-5)
    reversed_ce = -np.sum(pi0 * np_log_softmax(task))
    assert not np.isclose(total, reversed_ce, rtol=1e-3)


def test_distillation_gradient_vanishes_at_the_centroid_of_task_policies():
    rng = np.random.default_rng(4)
    task = rng.normal(size=(1, 2, A)) * 2.0  # two tasks' policies at the same state
    centroid = np.log(np_softmax(task).mean(axis=1))  # [1, A]
    shared = var(centroid[0])
    with tf.GradientTape() as tape:
        loss = losses.distillation_loss(task.astype(np.float32), tf.broadcast_to(shared, [1, 2, A]), 1.0, 1.0)
    np.testing.assert_allclose(tape.gradient(loss, shared).numpy(), 0.0, atol=1e-6)


# ------------------------------------------------------------------------------------------------ #
# log_prob, policy_gradient_loss, value_loss, entropy, kl_divergence

@pytest.mark.parametrize("seed", SEEDS)
def test_log_prob_value_and_gradient(seed):
    _, x = random_inputs(seed)
    logits, actions, w = x["logits"], x["actions"], x["weights_tb"]
    out, (g,) = grads(lambda lg: losses.log_prob(lg, actions), var(logits), weights=w)
    assert out.shape == (T, B)
    np.testing.assert_allclose(out, np_take(np_log_softmax(logits), actions), **TOL)
    expected = w[..., None] * (np_onehot(actions, A) - np_softmax(logits))
    np.testing.assert_allclose(g.numpy(), expected, **TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_policy_gradient_loss_value_and_gradient(seed):
    _, x = random_inputs(seed)
    logits, actions, adv = x["logits"], x["actions"], x["tb"]
    out, (g_logits, g_adv) = grads(lambda lg, ad: losses.policy_gradient_loss(lg, actions, ad),
                                   var(logits), var(adv))
    assert out.shape == ()
    np.testing.assert_allclose(out, -np.sum(np_take(np_log_softmax(logits), actions) * adv), rtol=1e-5)
    expected = -(np_onehot(actions, A) - np_softmax(logits)) * adv[..., None]
    np.testing.assert_allclose(g_logits.numpy(), expected, **TOL)
    assert_no_gradient(g_adv)  # the advantage is a constant weight


@pytest.mark.parametrize("seed", SEEDS)
def test_value_loss_value_and_gradient(seed):
    _, x = random_inputs(seed)
    values, returns = x["tb"], x["tb2"]
    out, (g_v, g_g) = grads(losses.value_loss, var(values), var(returns))
    assert out.shape == ()
    np.testing.assert_allclose(out, 0.5 * np.sum((returns - values) ** 2), rtol=1e-5)
    np.testing.assert_allclose(g_v.numpy(), -(returns - values), **TOL)
    assert_no_gradient(g_g)


@pytest.mark.parametrize("seed", SEEDS)
def test_entropy_value_and_gradient(seed):
    _, x = random_inputs(seed)
    logits, w = x["logits"], x["weights_tb"]
    out, (g,) = grads(losses.entropy, var(logits), weights=w)
    h = np_entropy(logits)
    assert out.shape == (T, B)
    np.testing.assert_allclose(out, h, **TOL)
    # dH/dz_j = -pi_j (log pi_j + H)
    expected = -w[..., None] * np_softmax(logits) * (np_log_softmax(logits) + h[..., None])
    np.testing.assert_allclose(g.numpy(), expected, **TOL)


def test_entropy_extremes():
    out = losses.entropy(np.array([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]], np.float32)).numpy()
    np.testing.assert_allclose(out, [np.log(4.0), 0.0], atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_kl_divergence_value_and_gradient(seed):
    _, x = random_inputs(seed)
    zp, zq, w = x["logits"], x["logits2"], x["weights_tb"]
    out, (g_p, g_q) = grads(losses.kl_divergence, var(zp), var(zq), weights=w)
    p, q = np_softmax(zp), np_softmax(zq)
    lp, lq = np_log_softmax(zp), np_log_softmax(zq)
    kl = np.sum(p * (lp - lq), -1)
    assert out.shape == (T, B)
    np.testing.assert_allclose(out, kl, **TOL)
    assert np.all(out >= -1e-6)
    np.testing.assert_allclose(g_p.numpy(), w[..., None] * p * (lp - lq - kl[..., None]), **TOL)
    np.testing.assert_allclose(g_q.numpy(), w[..., None] * (q - p), **TOL)
    # Direction: KL(p || q), not KL(q || p).
    assert not np.allclose(out, np.sum(q * (lq - lp), -1), rtol=1e-3)


# ------------------------------------------------------------------------------------------------ #
# soft_value, soft_policy_logits

def soft_inputs(seed, scale=1.0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(T, B, A)) * scale
    log_prior = np_log_softmax(rng.normal(size=(T, B, A)))
    return rng, q, log_prior


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("alpha,beta", COEFFS)
def test_soft_value_value_and_gradient(seed, alpha, beta):
    rng, q, log_prior = soft_inputs(seed)
    w = rng.normal(size=(T, B))
    out, (g_q, g_p) = grads(lambda qq, pp: losses.soft_value(qq, pp, alpha, beta), var(q), var(log_prior),
                            weights=w)
    naive = np.log(np.sum(np.exp(log_prior) ** alpha * np.exp(beta * q), -1)) / beta  # eq. 2
    assert out.shape == (T, B)
    np.testing.assert_allclose(out, naive, **TOL)
    weights = np_softmax(alpha * log_prior + beta * q)
    np.testing.assert_allclose(g_q.numpy(), w[..., None] * weights, **TOL)
    np.testing.assert_allclose(g_p.numpy(), w[..., None] * (alpha / beta) * weights, **TOL)


@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.5, 100.0)])
def test_soft_value_is_stable_per_row(alpha, beta):
    """beta*Q ~ 1e4 in some rows and ~ -1e4 or ~ 1 in others: a per-row log-sum-exp (docs/pitfalls.md item 5)."""
    rng, q, log_prior = soft_inputs(5)
    q = q * (1e4 / beta)
    q[0] += 1e4 / beta  # row 0 large and positive
    q[1] -= 2e4 / beta  # row 1 large and negative
    q[2] = q[2] * 1e-4  # row 2 of order 1/beta
    q = q.astype(np.float32).astype(np.float64)
    v, (g_q,) = grads(lambda qq: losses.soft_value(qq, log_prior, alpha, beta), var(q),
                      weights=np.ones((T, B)))
    x = alpha * log_prior + beta * q
    m = x.max(-1)
    expected = (m + np.log(np.sum(np.exp(x - m[..., None]), -1))) / beta
    assert np.all(np.isfinite(v))
    np.testing.assert_allclose(v, expected, rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(g_q.numpy()))
    np.testing.assert_allclose(g_q.numpy(), np_softmax(x), atol=1e-3)  # float32 rounding of beta*Q ~ 1e4


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("alpha,beta", COEFFS)
def test_soft_policy_logits_value_and_gradient(seed, alpha, beta):
    rng, q, log_prior = soft_inputs(seed)
    w = rng.normal(size=(T, B, A))
    out, (g_q, g_p) = grads(lambda qq, pp: losses.soft_policy_logits(qq, pp, alpha, beta), var(q),
                            var(log_prior), weights=w)
    v = np.log(np.sum(np.exp(log_prior) ** alpha * np.exp(beta * q), -1)) / beta
    pi = np.exp(log_prior) ** alpha * np.exp(beta * (q - v[..., None]))  # eq. 4
    assert out.shape == (T, B, A)
    np.testing.assert_allclose(np.exp(out).sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.exp(out), pi, **TOL)
    np.testing.assert_allclose(out, np_log_softmax(alpha * log_prior + beta * q), **TOL)
    sm = np_softmax(alpha * log_prior + beta * q)
    w_sum = w.sum(-1, keepdims=True)
    np.testing.assert_allclose(g_q.numpy(), beta * (w - w_sum * sm), **TOL)
    np.testing.assert_allclose(g_p.numpy(), alpha * (w - w_sum * sm), **TOL)


def test_soft_policy_logits_stable_and_uniform_prior_limit():
    _, q, log_prior = soft_inputs(6, scale=1e4)
    out = losses.soft_policy_logits(q, log_prior, 1.0, 1.0).numpy()
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(np.exp(out).sum(-1), 1.0, atol=1e-5)
    # alpha = 0: the prior drops out and the policy is softmax(beta Q).
    _, q, log_prior = soft_inputs(7)
    out = losses.soft_policy_logits(q, log_prior, 0.0, 2.0).numpy()
    np.testing.assert_allclose(out, np_log_softmax(2.0 * q), **TOL)
