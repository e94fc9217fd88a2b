"""Tabular Distral on the two-room grid world: soft Q learning and distillation (eqs. 2-5).

With ``pi0`` fixed, each task is soft Q learning with the prior ``pi0^alpha``:

    V(s)    = (1/beta) log sum_a pi0(a|s)^alpha exp(beta Q(a, s))        (eq. 2)
    Q(a, s) <- Q(a, s) + lr (R + gamma V(s') - Q(a, s))                 (eq. 3, sampled)
    pi(a|s) = pi0(a|s)^alpha exp(beta (Q(a, s) - V(s)))                  (eq. 4)

With the task policies fixed, ``pi0`` maximises eq. 5, whose solution is the mixture
``pi0(a|s) = sum_i w_i(s) pi_i(a|s)`` with ``w_i(s)`` proportional to the
gamma-discounted visitation of ``s`` under ``pi_i``. The Distral agent alternates a
rollout of length 10 per task plus its soft Q updates with a refit of ``pi0``
towards the mixture of the *current* task policies, whose visitations are computed
exactly from the known grid dynamics (:func:`discounted_visitation`). The refit is a
step ``pi0 <- (1 - eta) pi0 + eta mixture`` (``SoftQConfig.distill_rate``; ``eta = 1``
is eq. 5's exact solution). The baseline is the same soft Q learning with a uniform
prior and no distillation.

Everything is vectorised over a batch of independent runs (``R``) of ``N`` tasks
each; arrays are float64 numpy. :func:`soft_value` and :func:`soft_policy_log_probs`
are numpy twins of :func:`distral_tf.model.losses.soft_value` and
:func:`distral_tf.model.losses.soft_policy_logits` (the tests check they agree).
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


def discounted_visitation(layout: Layout, goals, task_log_probs, gamma, horizon):
    """Exact ``sum_{t < horizon} gamma^t P(s_t = s)`` of each task policy on the grid (eq. 5's weights).

    An episode starts at a uniform free cell other than the goal with no previous action
    and reward; reaching the goal gives a new such start (previous reward 1), and the
    episode ends by truncation after ``horizon`` steps. The state distribution is
    propagated step by step through these known dynamics; nothing is sampled.

    Args:
      layout: the grid.
      goals: ``[...]`` goal cell of each task.
      task_log_probs: ``[..., S, A]`` log-probabilities of each task's policy.
      gamma: discount.
      horizon: steps per episode.

    Returns:
      ``[..., S]`` discounted visitation; each row sums to ``sum_{t < horizon} gamma^t``.
    """
    goals = np.asarray(goals, np.int64)
    batch_shape = goals.shape
    C, P, A = layout.num_cells, NUM_ACTIONS + 1, NUM_ACTIONS
    goals = goals.reshape(-1)
    B = goals.shape[0]
    pi = np.exp(np.asarray(task_log_probs, np.float64)).reshape(B, C, P * 2, A)
    start = np.where(np.arange(C)[None, :] == goals[:, None], 0.0, 1.0 / (C - 1))  # [B, C]
    hit = layout.next_cell[None] == goals[:, None, None]  # [B, C, A]
    # Flat index of (run, next cell, action) for the moves that do not reach the goal.
    dest = (np.arange(B)[:, None, None] * C + layout.next_cell[None]) * A + np.arange(A)
    mu = np.zeros((B, C, P, 2))
    mu[:, :, NO_ACTION, 0] = start
    visits = np.zeros_like(mu)
    for t in range(int(horizon)):
        visits += gamma ** t * mu
        flow = (mu.reshape(B, C, 1, P * 2) @ pi)[:, :, 0]  # probability of (cell, action) at step t
        mu = np.zeros_like(mu)
        mu[:, :, :A, 0] = np.bincount(dest.ravel(), weights=np.where(hit, 0.0, flow).ravel(),
                                      minlength=B * C * A).reshape(B, C, A)
        mu[:, :, :A, 1] = start[:, :, None] * np.where(hit, flow, 0.0).sum(1)[:, None, :]
    return visits.reshape(*batch_shape, C * P * 2)


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
      distill_rate: step ``eta`` of each refit of ``pi0`` towards the mixture of eq. 5,
        ``pi0 <- (1 - eta) pi0 + eta sum_i w_i pi_i`` (1: ``pi0`` becomes the mixture).
    """

    alpha: float = 1.0
    beta: float = 15.0
    gamma: float = 0.95
    learning_rate: float = 0.2
    rollout_length: int = 10
    episode_length: int = 50
    distill_rate: float = 0.01

    def __post_init__(self):
        if not 0 < self.distill_rate <= 1:
            raise ValueError(f"distill_rate must be in (0, 1], got {self.distill_rate}.")


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

    def distill(self):
        """Moves ``pi0`` of the Distral runs towards the mixture of their current task policies (eq. 5).

        The mixture is ``sum_i w_i(s) pi_i(a|s)`` with ``w_i(s)`` proportional to the
        gamma-discounted visitation of ``s`` under ``pi_i`` over an episode, computed
        exactly from the grid dynamics (:func:`discounted_visitation`; uniform at states
        no task can reach), and ``pi0 <- (1 - eta) pi0 + eta mixture`` with
        ``eta = config.distill_rate``. The task policies are those of eq. 4 with the
        current ``Q`` and ``pi0``; the refit changes ``pi0`` and with it (for
        ``alpha > 0``) the task policies of the next rollout.
        """
        d = self.distral
        if not d.any():
            return
        cfg = self.config
        log_pi = soft_policy_log_probs(self.q[d], self.log_pi0[d][:, None], cfg.alpha, self.beta[d][..., None])
        visits = discounted_visitation(self.layout, self.goals[d], log_pi, cfg.gamma, cfg.episode_length)
        mixture = distill(log_pi, visits)
        eta = cfg.distill_rate
        if eta < 1:
            mixture = np.logaddexp(np.log1p(-eta) + self.log_pi0[d], np.log(eta) + mixture)
        self.log_pi0[d] = mixture

    def iteration(self):
        """One alternation: rollouts and soft Q learning for every task, then distillation.

        Returns the returns ``[E, R, N]`` of the episodes that ended during it.
        """
        batch, finished = self.rollout()
        self.soft_q_update(batch["states"], batch["actions"], batch["rewards"], batch["next_states"])
        self.distill()
        return finished
