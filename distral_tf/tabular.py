"""Tabular Distral on the two-room grid world: soft Q learning and distillation (eqs. 2-5).

With ``pi0`` fixed, each task is soft Q learning with the prior ``pi0^alpha``:

    V(s)    = (1/beta) log sum_a pi0(a|s)^alpha exp(beta Q(a, s))        (eq. 2)
    Q(a, s) <- Q(a, s) + lr (R + gamma V(s') - Q(a, s))                 (eq. 3, sampled)
    pi(a|s) = pi0(a|s)^alpha exp(beta (Q(a, s) - V(s)))                  (eq. 4)

With the task policies fixed, ``pi0`` maximises eq. 5, whose solution is the mixture
``pi0(a|s) = sum_i w_i(s) pi_i(a|s)`` with ``w_i(s)`` proportional to the
gamma-discounted visitation of ``s`` under ``pi_i``. The Distral agent alternates a
rollout of length 10 per task plus its soft Q updates with a refit of ``pi0``; the
baseline is the same soft Q learning with a uniform prior and no distillation.

Everything is vectorised over a batch of independent runs (``R``) of ``N`` tasks
each; arrays are float64 numpy. :func:`soft_value` and :func:`soft_policy_log_probs`
are numpy twins of :func:`distral_tf.losses.soft_value` and
:func:`distral_tf.losses.soft_policy_logits` (the tests check they agree).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from distral_tf.envs.two_rooms import NO_ACTION, NUM_ACTIONS, Layout


def _logsumexp(x, axis=-1, keepdims=False):
    """Per-row stable ``log sum exp`` (rows of ``-inf`` give ``-inf``)."""
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis)


def soft_value(q_values, log_prior, alpha, beta):
    """``V(s) = (1/beta) log sum_a pi0(a|s)^alpha exp(beta Q(a, s))`` over the last axis (eq. 2).

    ``beta`` may be an array that broadcasts against ``q_values`` (one per run).
    """
    return (_logsumexp(alpha * log_prior + beta * q_values, keepdims=True) / beta)[..., 0]


def soft_policy_log_probs(q_values, log_prior, alpha, beta):
    """``log pi(a|s) = alpha log pi0(a|s) + beta (Q(a, s) - V(s))`` (eq. 4)."""
    z = alpha * log_prior + beta * q_values
    return z - _logsumexp(z, keepdims=True)


def soft_bellman_targets(rewards, next_q, next_log_prior, alpha, beta, gamma):
    """Sampled right-hand side of eq. 3: ``R + gamma V(s')`` with ``V`` from eq. 2."""
    return rewards + gamma * soft_value(next_q, next_log_prior, alpha, beta)


def discounted_visits(states, times, gamma, num_states):
    """``sum_t gamma^t 1[s_t = s]`` per row: ``states``, ``times`` ``[B, T]`` -> ``[B, num_states]``.

    ``times`` counts steps from the start of each episode, so the weights are those of
    the gamma-discounted state distribution in eq. 5.
    """
    states = np.asarray(states)
    rows = np.broadcast_to(np.arange(states.shape[0])[:, None], states.shape)
    out = np.zeros((states.shape[0], num_states))
    np.add.at(out, (rows, states), np.power(gamma, np.asarray(times, np.float64)))
    return out


def distill(task_log_probs, visits):
    """Refit ``log pi0`` from the task policies (eq. 5): their visitation-weighted mixture.

    Args:
      task_log_probs: ``[..., N, S, A]`` log-probabilities of the ``N`` task policies.
      visits: ``[..., N, S]`` (discounted) visitation of each state by each task.

    Returns:
      ``[..., S, A]`` log-probabilities of ``pi0(a|s) = sum_i w_i(s) pi_i(a|s)`` with
      ``w_i(s) = visits_i(s) / sum_j visits_j(s)``; uniform where no task has been.
    """
    visits = np.asarray(visits, np.float64)
    total = visits.sum(axis=-2, keepdims=True)
    with np.errstate(divide="ignore"):
        log_w = np.log(visits) - np.log(np.where(total > 0, total, 1.0))
    log_pi0 = _logsumexp(log_w[..., None] + task_log_probs, axis=-3)
    unvisited = (total[..., 0, :] <= 0)[..., None]
    return np.where(unvisited, -np.log(task_log_probs.shape[-1]), log_pi0)


@dataclasses.dataclass(frozen=True)
class SoftQConfig:
    """Hyperparameters of the tabular learners.

    Attributes:
      alpha: weight of the prior ``pi0^alpha`` (1: KL regularisation only).
      beta: inverse temperature.
      gamma: discount.
      learning_rate: step size of the sampled soft Bellman update.
      rollout_length: steps per task between distillations (10 in the paper).
      episode_length: steps per episode (episodes end by truncation).
      visit_decay: per-iteration decay of the sums that define ``pi0`` (1: every
        rollout so far counts, the maximum-likelihood fit of eq. 5 to all data).
    """

    alpha: float = 1.0
    beta: float = 15.0
    gamma: float = 0.95
    learning_rate: float = 0.2
    rollout_length: int = 10
    episode_length: int = 50
    visit_decay: float = 1.0


class TabularLearners:
    """``R`` independent runs of ``N`` soft Q learners on the two-room grid world.

    Run ``r`` learns the tasks with goal cells ``goals[r]``. Runs with
    ``distral[r]`` true use the Distral prior (refit by :meth:`distill` after every
    rollout); the others keep a uniform prior (the single-task baseline). ``beta``
    optionally gives each run its own inverse temperature (default ``config.beta``).
    """

    def __init__(self, layout: Layout, goals, distral, config: SoftQConfig, seed: int = 0, beta=None):
        self.layout, self.config = layout, config
        self.goals = np.asarray(goals, np.int64)
        self.distral = np.asarray(distral, bool)
        R, N = self.goals.shape
        S, A = layout.num_states, NUM_ACTIONS
        self.rng = np.random.default_rng(seed)
        beta = np.broadcast_to(np.asarray(config.beta if beta is None else beta, np.float64), (R,))
        self.beta = beta[:, None, None]  # broadcasts against [R, N, A]
        self.q = np.zeros((R, N, S, A))
        self.log_pi0 = np.full((R, S, A), -np.log(A))
        self.pi0_counts = np.zeros((R, S, A))  # discounted sums of task policies, see distill()
        self._run = np.broadcast_to(np.arange(R)[:, None], (R, N))
        self._task = np.broadcast_to(np.arange(N)[None, :], (R, N))
        self.env_steps = 0
        self._reset_episodes()

    def _random_starts(self):
        """A uniform free cell other than each goal (the env's start distribution)."""
        cell = self.rng.integers(self.layout.num_cells - 1, size=self.goals.shape)
        return cell + (cell >= self.goals)

    def _reset_episodes(self):
        self.cell = self._random_starts()
        self.prev_action = np.full(self.goals.shape, NO_ACTION)
        self.prev_reward = np.zeros(self.goals.shape, np.int64)
        self.t = 0
        self.episode_return = np.zeros(self.goals.shape)

    @property
    def state(self):
        return self.layout.state_index(self.cell, self.prev_action, self.prev_reward)

    def _policy(self, states):
        """``[R, N, A]`` log-probabilities of the task policies (eq. 4) at ``states`` ``[R, N]``."""
        return soft_policy_log_probs(self.q[self._run, self._task, states],
                                     self.log_pi0[self._run, states], self.config.alpha, self.beta)

    def rollout(self):
        """Runs every task's current policy (eq. 4) for ``rollout_length`` steps.

        Returns a dict of ``[T, R, N]`` arrays: ``states``, ``actions``, ``rewards``,
        ``next_states``, ``times`` (steps since the episode's start), and ``[T, R, N, A]``
        ``log_probs`` (the acting policy at each state), plus the returns ``[E, R, N]`` of
        the episodes that ended.
        """
        cfg = self.config
        keys = ("states", "actions", "rewards", "next_states", "times", "log_probs")
        buf = {k: [] for k in keys}
        finished = []
        for _ in range(cfg.rollout_length):
            s = self.state
            log_p = self._policy(s)
            cdf = np.cumsum(np.exp(log_p), axis=-1)
            u = self.rng.random(s.shape)[..., None] * cdf[..., -1:]
            a = np.minimum((cdf < u).sum(-1), NUM_ACTIONS - 1)
            cell = self.layout.next_cell[self.cell, a]
            hit = cell == self.goals
            self.cell = np.where(hit, self._random_starts(), cell)
            self.prev_action, self.prev_reward = a, hit.astype(np.int64)
            self.episode_return += hit
            values = (s, a, hit.astype(np.float64), self.state, np.full(s.shape, self.t), log_p)
            for k, v in zip(keys, values, strict=True):
                buf[k].append(v)
            self.t += 1
            self.env_steps += 1
            if self.t >= cfg.episode_length:  # truncation: bootstrapping continues from next_states
                finished.append(self.episode_return)
                self._reset_episodes()
        batch = {k: np.stack(v) for k, v in buf.items()}
        return batch, np.array(finished).reshape(-1, *self.goals.shape)

    def soft_q_update(self, states, actions, rewards, next_states):
        """Sampled soft Bellman updates (eqs. 2-3), latest transition first so reward propagates back."""
        cfg = self.config
        for s, a, r, s2 in zip(states[::-1], actions[::-1], rewards[::-1], next_states[::-1], strict=True):
            target = soft_bellman_targets(r, self.q[self._run, self._task, s2], self.log_pi0[self._run, s2],
                                          cfg.alpha, self.beta, cfg.gamma)
            idx = (self._run, self._task, s, a)
            self.q[idx] += cfg.learning_rate * (target - self.q[idx])

    def task_log_probs(self):
        """``[R, N, S, A]`` log-probabilities of every task policy (eq. 4)."""
        return soft_policy_log_probs(self.q, self.log_pi0[:, None], self.config.alpha, self.beta[..., None])

    def distill(self, states, times, log_probs):
        """Refits ``pi0`` of the Distral runs from the task rollouts (eq. 5).

        ``pi0(.|s)`` is proportional to ``sum gamma^t pi_i(.|s_t)`` over the visits
        ``s_t = s`` of every task's rollouts: the visitation-weighted mixture of
        :func:`distill`, each task policy taken as it was when it visited ``s``. The sums
        decay by ``visit_decay`` per iteration, so ``pi0`` follows the current task policies.
        """
        cfg = self.config
        d = self.distral
        if not d.any():
            return
        if cfg.visit_decay != 1.0:
            self.pi0_counts *= cfg.visit_decay
        weights = np.power(cfg.gamma, times.astype(np.float64))[..., None] * np.exp(log_probs)
        run = np.broadcast_to(self._run, states.shape)
        np.add.at(self.pi0_counts, (run[:, d], states[:, d]), weights[:, d])
        total = self.pi0_counts[d].sum(-1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_pi0 = np.log(self.pi0_counts[d]) - np.log(total)
        self.log_pi0[d] = np.where(total > 0, log_pi0, -np.log(NUM_ACTIONS))

    def iteration(self):
        """One alternation: rollouts and soft Q learning for every task, then distillation.

        Returns the returns ``[E, R, N]`` of the episodes that ended during it.
        """
        batch, finished = self.rollout()
        self.soft_q_update(batch["states"], batch["actions"], batch["rewards"], batch["next_states"])
        self.distill(batch["states"], batch["times"], batch["log_probs"])
        return finished
