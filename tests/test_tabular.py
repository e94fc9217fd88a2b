"""Tabular soft Q learning and distillation (eqs. 2-5) on the two-room grid world."""

import math

import numpy as np
import pytest

from distral_tf.envs import two_rooms as tr
from distral_tf.experiments import tabular
from distral_tf.model import losses


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


def test_exact_visitation_matches_sampled_episodes():
    """Fixed random task policies: the visitation from the grid dynamics equals the Monte Carlo one."""
    layout = tr.get_layout("small")
    config = tabular.SoftQConfig(alpha=0.0, beta=3.0, gamma=0.9, learning_rate=0.0, episode_length=20,
                                 rollout_length=20)
    runs, goals = 200, [6, 3, 11]
    learner = tabular.TabularLearners(layout, goals=[goals] * runs, distral=[False] * runs, config=config, seed=1)
    learner.q[:] = np.random.default_rng(0).normal(size=learner.q[:1].shape)  # the same policies in every run
    sampled = np.zeros((len(goals), layout.num_states))
    episodes = 20
    for _ in range(episodes):  # one episode per rollout
        batch, _ = learner.rollout()
        states, times = (batch[k].transpose(1, 2, 0).reshape(runs * len(goals), -1) for k in ("states", "times"))
        sampled += tabular.discounted_visits(states, times, config.gamma, layout.num_states).reshape(
            runs, len(goals), -1).sum(0)
    sampled /= runs * episodes
    exact = tabular.discounted_visitation(layout, goals, learner.task_log_probs()[0], config.gamma, 20)
    horizon_mass = (1 - config.gamma ** 20) / (1 - config.gamma)
    np.testing.assert_allclose(exact.sum(-1), horizon_mass)
    starts_at_goal = layout.state_index(np.array(goals), tr.NO_ACTION, 0)
    assert np.all(exact[np.arange(3), starts_at_goal] == 0)  # no episode starts at the goal
    assert np.all(np.abs(sampled - exact).sum(-1) < 0.05 * horizon_mass)
    # States after a reward (a new start) are reached, and as often as sampled.
    after_reward = np.arange(layout.num_states) % 2 == 1
    np.testing.assert_allclose(exact[:, after_reward].sum(-1), sampled[:, after_reward].sum(-1), rtol=0.1)


def test_distillation_fits_the_mixture_of_the_current_task_policies():
    """After training, pi0 is the visitation-weighted mixture of the current task policies (eq. 5)."""
    layout = tr.get_layout("paper")
    config = tabular.SoftQConfig(alpha=1.0, beta=15.0, gamma=0.95, learning_rate=0.2, distill_rate=1.0)
    goals = tr.draw_goals(layout, 4, seed=0)
    learner = tabular.TabularLearners(layout, goals=[goals], distral=[True], config=config, seed=0)
    for _ in range(300):
        learner.iteration()
    # One refit: pi0 becomes exactly the mixture of the policies it was fitted to.
    fitted = learner.task_log_probs()[0]
    learner.distill()
    visits = tabular.discounted_visitation(layout, goals, fitted, config.gamma, config.episode_length)
    np.testing.assert_allclose(learner.log_pi0[0], tabular.distill(fitted, visits), atol=1e-10)
    # The refit also changes the task policies (eq. 4 with alpha = 1); pi0 stays close to their mixture.
    current = learner.task_log_probs()[0]
    visits = tabular.discounted_visitation(layout, goals, current, config.gamma, config.episode_length)
    mixture = np.exp(tabular.distill(current, visits))
    visited = visits.sum(0) > 1e-3
    tv = 0.5 * np.abs(np.exp(learner.log_pi0[0]) - mixture).sum(-1)
    assert visited.sum() > layout.num_cells and tv[visited].max() < 0.05
    # Unreachable states (no previous action after the start, say) keep the uniform pi0.
    np.testing.assert_allclose(learner.log_pi0[0, visits.sum(0) == 0], -np.log(4))


def test_damped_distillation_steps_towards_the_mixture():
    """``pi0 <- (1 - eta) pi0 + eta mixture`` with the mixture of the current task policies."""
    layout = tr.get_layout("small")
    config = tabular.SoftQConfig(alpha=1.0, beta=5.0, gamma=0.9, learning_rate=0.3, distill_rate=0.2)
    goals = [[6, 3], [1, 9]]
    learner = tabular.TabularLearners(layout, goals=goals, distral=[True, False], config=config, seed=3)
    for _ in range(30):
        learner.iteration()
    before, log_pi = np.exp(learner.log_pi0.copy()), learner.task_log_probs()
    learner.distill()
    visits = tabular.discounted_visitation(layout, goals[0], log_pi[0], config.gamma, config.episode_length)
    target = np.exp(tabular.distill(log_pi[0], visits))
    np.testing.assert_allclose(np.exp(learner.log_pi0[0]), 0.8 * before[0] + 0.2 * target, atol=1e-12)
    assert np.abs(before[0] - target).max() > 0.05  # the step moved pi0
    np.testing.assert_allclose(learner.log_pi0[1], -np.log(4))  # the baseline run keeps its uniform prior
    with pytest.raises(ValueError, match="distill_rate"):
        tabular.SoftQConfig(distill_rate=0.0)


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
