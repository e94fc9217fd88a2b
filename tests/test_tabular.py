"""Tabular soft Q learning and distillation (eqs. 2-5) on the two-room grid world."""

import math

import numpy as np
import pytest

from distral_tf import losses, tabular
from distral_tf.envs import two_rooms as tr


@pytest.mark.parametrize("alpha,beta", [(1.0, 15.0), (0.5, 2.0), (0.0, 100.0)])
def test_numpy_twins_match_losses(alpha, beta):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(5, 7, 4)) * 50.0  # large beta * Q: a naive log-sum-exp would overflow
    log_prior = np.log(rng.dirichlet(np.ones(4), size=(5, 7)))
    np.testing.assert_allclose(tabular.soft_value(q, log_prior, alpha, beta),
                               losses.soft_value(q, log_prior, alpha, beta).numpy(), rtol=1e-10)
    np.testing.assert_allclose(tabular.soft_policy_log_probs(q, log_prior, alpha, beta),
                               losses.soft_policy_logits(q, log_prior, alpha, beta).numpy(), rtol=1e-10, atol=1e-9)
    assert np.all(np.isfinite(tabular.soft_value(q, log_prior, alpha, beta)))
    # A per-row beta broadcasts like a scalar one.
    betas = np.array([1.0, 3.0, 10.0, 30.0, 100.0])
    per_row = tabular.soft_value(q, log_prior, alpha, betas[:, None, None])
    for i, b in enumerate(betas):
        np.testing.assert_allclose(per_row[i], tabular.soft_value(q[i], log_prior[i], alpha, b))


def test_soft_value_and_policy_hand_computed():
    # pi0 = (0.36, 0.64), alpha = 0.5 -> pi0^alpha = (0.6, 0.8); beta = 1, Q = (0, ln 2) -> exp(bQ) = (1, 2).
    q, log_prior = np.array([0.0, math.log(2.0)]), np.log([0.36, 0.64])
    assert tabular.soft_value(q, log_prior, 0.5, 1.0) == pytest.approx(math.log(0.6 + 1.6))
    np.testing.assert_allclose(np.exp(tabular.soft_policy_log_probs(q, log_prior, 0.5, 1.0)),
                               [0.6 / 2.2, 1.6 / 2.2])


def _learner(alpha=1.0, beta=2.0, gamma=0.9, learning_rate=0.5, **kw):
    layout = tr.get_layout("small")
    config = tabular.SoftQConfig(alpha=alpha, beta=beta, gamma=gamma, learning_rate=learning_rate, **kw)
    goals = [[int(layout.corridor[0])]]  # the doorway
    return layout, tabular.TabularLearners(layout, goals=goals, distral=[True], config=config, seed=0)


def test_soft_bellman_backup_two_states():
    """Two transitions s0 -a0-> s1 (r=0), s1 -a1-> s2 (r=1), updated latest first (eqs. 2-3)."""
    layout, learner = _learner()
    s0, s1, s2 = (int(layout.state_index(c, tr.NO_ACTION, 0)) for c in (0, 1, 2))
    a0, a1 = tr.RIGHT, tr.DOWN
    # s2: Q = (0, 0, ln 3 / 2, 0), uniform prior -> V(s2) = (1/2) ln((1 + 1 + 3 + 1) / 4) = (1/2) ln 1.5.
    learner.q[0, 0, s2] = [0.0, 0.0, math.log(3.0) / 2, 0.0]
    # s1: prior (0.5, 0.5, 0, 0) in probability, Q(s1, down) = 0.2 before the update.
    learner.log_pi0[0, s1] = np.log([0.5, 0.5, 1e-300, 1e-300])
    learner.q[0, 0, s1, a1] = 0.2
    learner.q[0, 0, s0, a0] = 0.1
    col = lambda *v: np.array(v).reshape(-1, 1, 1)
    learner.soft_q_update(col(s0, s1), col(a0, a1), col(0.0, 1.0), col(s1, s2))

    v_s2 = 0.5 * math.log(1.5)
    q_s1 = 0.2 + 0.5 * (1.0 + 0.9 * v_s2 - 0.2)
    assert learner.q[0, 0, s1, a1] == pytest.approx(q_s1)
    # V(s1) = (1/2) ln(0.5 exp(0) + 0.5 exp(2 q_s1)) uses the already updated Q(s1, down).
    v_s1 = 0.5 * math.log(0.5 + 0.5 * math.exp(2 * q_s1))
    assert learner.q[0, 0, s0, a0] == pytest.approx(0.1 + 0.5 * (0.0 + 0.9 * v_s1 - 0.1))
    # Nothing else moved.
    assert np.count_nonzero(learner.q) == 3


def test_discounted_visits_and_distillation_hand_computed():
    visits = tabular.discounted_visits([[0, 1, 0], [1, 1, 1]], [[0, 1, 2], [3, 4, 5]], 0.5, 3)
    np.testing.assert_allclose(visits, [[1.25, 0.5, 0.0], [0.0, 0.125 + 0.0625 + 0.03125, 0.0]])

    pi = np.array([[[0.9, 0.1], [0.5, 0.5], [0.3, 0.7]],   # task 1 at states 0, 1, 2
                   [[0.2, 0.8], [0.4, 0.6], [0.1, 0.9]]])  # task 2
    w = np.array([[3.0, 0.0, 0.0],
                  [1.0, 2.0, 0.0]])
    pi0 = np.exp(tabular.distill(np.log(pi), w))
    np.testing.assert_allclose(pi0[0], 0.75 * pi[0, 0] + 0.25 * pi[1, 0])  # visitation-weighted mixture
    np.testing.assert_allclose(pi0[1], pi[1, 1])  # only task 2 was there
    np.testing.assert_allclose(pi0[2], [0.5, 0.5])  # nobody was there: uniform
    # Batch dimensions in front are independent.
    batched = tabular.distill(np.log(np.stack([pi, pi[::-1]])), np.stack([w, w[::-1]]))
    np.testing.assert_allclose(np.exp(batched[0]), pi0)


def test_learner_distillation_is_the_mixture_over_its_rollouts():
    """With fixed task policies (alpha = 0, no learning) pi0 is exactly eq. 5's mixture."""
    layout = tr.get_layout("small")
    config = tabular.SoftQConfig(alpha=0.0, beta=3.0, gamma=0.9, learning_rate=0.0, episode_length=20)
    learner = tabular.TabularLearners(layout, goals=[[6, 3, 11]], distral=[True], config=config, seed=1)
    learner.q[:] = np.random.default_rng(0).normal(size=learner.q.shape)
    states, times = [], []
    for _ in range(12):
        batch, _ = learner.rollout()
        learner.distill(batch["states"], batch["times"], batch["log_probs"])
        states.append(batch["states"][:, 0])  # [T, N]
        times.append(batch["times"][:, 0])
    states, times = np.concatenate(states).T, np.concatenate(times).T
    visits = tabular.discounted_visits(states, times, config.gamma, layout.num_states)  # [N, S]
    expected = tabular.distill(learner.task_log_probs()[0], visits)
    np.testing.assert_allclose(learner.log_pi0[0], expected, atol=1e-12)
    assert np.any(visits.sum(0) == 0) and np.any(np.abs(expected + np.log(4)) > 1e-3)


def test_rollouts_follow_the_environment_dynamics():
    layout, learner = _learner(rollout_length=10, episode_length=30)
    goal = learner.goals[0, 0]
    seen_reward = False
    for it in range(30):
        batch, finished = learner.rollout()
        cell, prev_a, prev_r = layout.decode_state(batch["states"][:, 0, 0])
        cell2, prev_a2, prev_r2 = layout.decode_state(batch["next_states"][:, 0, 0])
        a, r = batch["actions"][:, 0, 0], batch["rewards"][:, 0, 0]
        assert np.array_equal(prev_a2, a) and np.array_equal(prev_r2, r)
        moved = layout.next_cell[cell, a]
        assert np.array_equal(r == 1, moved == goal)
        assert np.all((cell2 == moved) | (r == 1)) and np.all(cell2 != goal)
        seen_reward |= bool(r.any())
        # Successive states chain up, except at an episode start.
        start = batch["times"][1:, 0, 0] == 0
        assert np.all((batch["states"][1:, 0, 0] == batch["next_states"][:-1, 0, 0]) | start)
        assert np.all(prev_a[batch["times"][:, 0, 0] == 0] == tr.NO_ACTION)
        np.testing.assert_allclose(np.exp(batch["log_probs"]).sum(-1), 1.0)
        assert len(finished) == (1 if (it + 1) % 3 == 0 else 0)
    assert seen_reward
