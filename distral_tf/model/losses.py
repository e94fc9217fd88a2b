"""The mathematics of Distral as pure functions: tensors in, tensors out.

Equation numbers refer to the paper (Teh et al., 2017) as restated in the
project's specification. Shapes: ``T`` time steps, ``B`` batch elements,
``A`` actions. Sums run over time and batch (A3C style: per-rollout sums, no
``gamma^t`` weighting inside a rollout, as in Mnih et al., 2016).
"""

from __future__ import annotations

import tensorflow as tf


def regularized_rewards(rewards, log_pi0_a, log_pi_a, alpha, beta):
    """``R + (alpha/beta) log pi0(a|s) - (1/beta) log pi_i(a|s)`` elementwise (eq. 9).

    Both log-probabilities are treated as rewards: no gradient flows through them.
    """
    rewards = tf.convert_to_tensor(rewards, tf.float32)
    log_pi0_a = tf.stop_gradient(tf.convert_to_tensor(log_pi0_a, tf.float32))
    log_pi_a = tf.stop_gradient(tf.convert_to_tensor(log_pi_a, tf.float32))
    return rewards + (alpha / beta) * log_pi0_a - (1.0 / beta) * log_pi_a


def n_step_returns(rewards, discounts, bootstrap_value):
    """Bootstrapped n-step returns ``G_t = r_t + d_t G_{t+1}``, ``G_T = bootstrap`` (``[T, B]``).

    Args:
      rewards: ``[T, B]`` rewards ``r_t`` received after the action at ``t``.
      discounts: ``[T, B]`` ``gamma * (1 - done_t)``; zero cuts the bootstrap at episode ends.
      bootstrap_value: ``[B]`` value of the state after the last step.
    """
    rewards = tf.convert_to_tensor(rewards, tf.float32)
    discounts = tf.convert_to_tensor(discounts, tf.float32)
    bootstrap_value = tf.convert_to_tensor(bootstrap_value, tf.float32)
    returns = tf.scan(
        lambda acc, rd: rd[0] + rd[1] * acc,
        (rewards, discounts),
        initializer=bootstrap_value,
        reverse=True,
    )
    return tf.stop_gradient(returns)


def two_column_logits(h0_logits, f_logits, alpha, beta):
    """Logits of the two-column task policy ``alpha * h0 + beta * f`` (eq. 8)."""
    return alpha * h0_logits + beta * f_logits


def distillation_loss(task_logits, distilled_logits, alpha, beta):
    """``-(alpha/beta) sum_{t,b,a} stopgrad(pi_i(a)) log pi0(a)`` (eq. 10, second term).

    A cross entropy from the task policy to the distilled policy; its gradient with
    respect to the distilled logits is ``(alpha/beta) (pi0 - pi_i)``.
    """
    pi_i = tf.stop_gradient(tf.nn.softmax(task_logits))
    log_pi0 = tf.nn.log_softmax(distilled_logits)
    return -(alpha / beta) * tf.reduce_sum(pi_i * log_pi0)


def log_prob(logits, actions):
    """``log pi(a_t|s_t)`` of the taken actions, shape of ``actions``."""
    return -tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(actions, tf.int32), logits=logits)


def policy_gradient_loss(logits, actions, advantages):
    """``-sum_t log pi(a_t|s_t) stopgrad(advantage_t)`` (the policy-gradient estimator of eq. 9)."""
    return -tf.reduce_sum(log_prob(logits, actions) * tf.stop_gradient(advantages))


def value_loss(values, returns):
    """``0.5 sum_t (stopgrad(G_t) - V(s_t))^2``; its gradient w.r.t. ``V`` is ``-(G - V)``."""
    return 0.5 * tf.reduce_sum(tf.square(tf.stop_gradient(returns) - values))


def entropy(logits):
    """Entropy ``-sum_a pi(a) log pi(a)`` per leading index (shape ``logits.shape[:-1]``)."""
    log_pi = tf.nn.log_softmax(logits)
    return -tf.reduce_sum(tf.exp(log_pi) * log_pi, axis=-1)


def kl_divergence(logits_p, logits_q):
    """``KL(p || q) = sum_a p(a) (log p(a) - log q(a))`` per leading index."""
    log_p = tf.nn.log_softmax(logits_p)
    log_q = tf.nn.log_softmax(logits_q)
    return tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)


def _prior_term(log_prior, alpha, dtype):
    """``alpha log pi0``, with ``pi0^0 = 1`` even where ``pi0 = 0`` (no ``0 * -inf``)."""
    log_prior = tf.cast(log_prior, dtype)
    return tf.math.multiply_no_nan(log_prior, tf.cast(alpha, dtype) * tf.ones_like(log_prior))


def soft_value(q_values, log_prior, alpha, beta):
    """``V(s) = (1/beta) log sum_a pi0(a|s)^alpha exp(beta Q(a, s))`` over the last axis (eq. 2).

    Computed with a per-row stable log-sum-exp.
    """
    q_values = tf.convert_to_tensor(q_values)
    return tf.reduce_logsumexp(_prior_term(log_prior, alpha, q_values.dtype) + beta * q_values, axis=-1) / beta


def soft_policy_logits(q_values, log_prior, alpha, beta):
    """Log-probabilities ``log pi(a|s) = alpha log pi0 + beta (Q - V)`` of the soft-greedy policy (eq. 4)."""
    q_values = tf.convert_to_tensor(q_values)
    v = soft_value(q_values, log_prior, alpha, beta)
    return _prior_term(log_prior, alpha, q_values.dtype) + beta * (q_values - v[..., None])
