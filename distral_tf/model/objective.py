"""Assembles each algorithm's loss on a rollout from the pure functions in ``losses``.

Which parameters receive which gradient follows docs/spec.md section 5:

* task policies learn by the policy gradient of eq. 9 on (regularised) rewards;
* values predict the return of the same rewards (never shared in Distral);
* pi_0 learns by distillation (eq. 10, second term) and, in the two-column
  architecture, also through the task policies' logits (eq. 10, first term);
* the A3C baselines use the task rewards and an explicit entropy bonus; in a3c_2col
  the bonus acts on pi_i = softmax(h0 + f) with h0 held fixed, so h0 learns only
  through the policy gradient.
"""

from __future__ import annotations

import tensorflow as tf

from distral_tf.model import losses
from distral_tf.model.algorithm_spec import Algorithm, Architecture, Coefficients


def task_policy_logits(algorithm: Algorithm, coeffs: Coefficients, task_column_logits, distilled_logits):
    """Logits of pi_i: the task column's own (1col, multitask) or eq. 8's mixture (2col)."""
    if algorithm.architecture is Architecture.TWO_COLUMN:
        return losses.two_column_logits(distilled_logits, task_column_logits, coeffs.alpha, coeffs.beta)
    return task_column_logits


def entropy_bonus_logits(algorithm: Algorithm, coeffs: Coefficients, task_logits, task_column_logits,
                         distilled_logits):
    """Logits whose entropy the bonus rewards: pi_i's, with no gradient into h0 for 2col (docs/spec.md section 5)."""
    if algorithm.architecture is not Architecture.TWO_COLUMN or coeffs.entropy_bonus == 0:
        return task_logits
    if task_column_logits is None:
        raise ValueError(f"{algorithm.name}: loss_terms needs task_column_logits (the f column's logits) so "
                         "that the entropy bonus does not reach h0.")
    return task_policy_logits(algorithm, coeffs, task_column_logits, tf.stop_gradient(distilled_logits))


def loss_terms(algorithm: Algorithm, coeffs: Coefficients, *, task_logits, values, distilled_logits,
               actions, rewards, dones, task_column_logits=None):
    """Loss terms of one batch of rollouts.

    Args:
      task_logits: ``[T+1, B, A]`` logits of pi_i (already combined for 2col).
      values: ``[T+1, B]`` values of the task columns; the last row bootstraps.
      distilled_logits: ``[T+1, B, A]`` logits of pi_0, or ``None``.
      actions, rewards, dones: ``[T, B]``; ``dones`` marks the last step of an episode.
      task_column_logits: ``[T+1, B, A]`` logits of the task column alone (f in eq. 8);
        needed by a two-column algorithm with an entropy bonus (a3c_2col).

    Returns:
      A dict of scalars: ``total`` and its parts (``policy_gradient``, ``value``,
      ``entropy_bonus``, ``distillation``) plus diagnostics.
    """
    logits = task_logits[:-1]
    discounts = coeffs.discount * (1.0 - tf.cast(dones, tf.float32))
    log_pi_a = losses.log_prob(logits, actions)
    if algorithm.kl:
        log_pi0_a = losses.log_prob(distilled_logits[:-1], actions)
        train_rewards = losses.regularized_rewards(rewards, log_pi0_a, log_pi_a, coeffs.alpha, coeffs.beta)
    else:
        train_rewards = tf.cast(rewards, tf.float32)
    returns = losses.n_step_returns(train_rewards, discounts, tf.stop_gradient(values[-1]))
    advantages = returns - values[:-1]
    pg = losses.policy_gradient_loss(logits, actions, advantages)
    vl = losses.value_loss(values[:-1], returns)
    task_entropy = losses.entropy(logits)
    bonus_logits = entropy_bonus_logits(algorithm, coeffs, task_logits, task_column_logits, distilled_logits)
    bonus_entropy = task_entropy if bonus_logits is task_logits else losses.entropy(bonus_logits[:-1])
    entropy_bonus = -coeffs.entropy_bonus * tf.reduce_sum(bonus_entropy)
    if algorithm.kl:
        distill = losses.distillation_loss(logits, distilled_logits[:-1], coeffs.alpha, coeffs.beta)
    else:
        distill = tf.constant(0.0)
    total = pg + coeffs.value_cost * vl + entropy_bonus + distill

    terms = {
        "total": total,
        "policy_gradient": pg,
        "value": vl,
        "entropy_bonus": entropy_bonus,
        "distillation": distill,
        "entropy_task": tf.reduce_mean(task_entropy),
        "mean_return": tf.reduce_mean(returns),
        "mean_advantage": tf.reduce_mean(advantages),
    }
    if distilled_logits is not None:
        d = tf.stop_gradient(distilled_logits[:-1])
        terms["entropy_distilled"] = tf.reduce_mean(losses.entropy(d))
        terms["kl_task_distilled"] = tf.reduce_mean(losses.kl_divergence(tf.stop_gradient(logits), d))
    return terms
