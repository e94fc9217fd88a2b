"""What defines one of the paper's seven algorithms (Table 1), and the coefficients it trains with."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable


class Architecture(enum.Enum):
    """How the task policies' logits are formed (the columns of Table 1)."""

    ONE_COLUMN = "1col"  # pi_i = softmax(h_thetai): a separate network per task.
    MULTITASK = "multitask"  # pi_i = softmax(h_theta0): one network shared by all tasks.
    TWO_COLUMN = "2col"  # pi_i = softmax(alpha h_theta0 + beta f_thetai) (eq. 8).


class DistilledPolicy(enum.Enum):
    """What plays the role of pi_0 when the distilled policy is evaluated."""

    TRAINED = "trained"  # a column trained by distillation (and, in 2col, the policy gradient).
    SHARED = "shared"  # a3c_multitask: its one shared network.
    UNTRAINED = "untrained"  # a3c: an untrained network, as in the paper's Figure 4.
    COLUMN_H0 = "h0"  # a3c_2col: the shared column h_theta0, trained by the policy gradient only.

    @property
    def meaning(self) -> str:
        """What pi_0 is, in words (the report explains the distilled-policy panels with it)."""
        return _DISTILLED_POLICY_MEANINGS[self]


_DISTILLED_POLICY_MEANINGS = {
    DistilledPolicy.TRAINED: "the column h_theta0 trained by distillation",
    DistilledPolicy.SHARED: "its one shared network",
    DistilledPolicy.UNTRAINED: "an untrained network, as in the paper",
    DistilledPolicy.COLUMN_H0: "the shared column h_theta0, trained by the policy gradient only",
}


def expected_distilled_policy(architecture: Architecture, kl: bool) -> DistilledPolicy:
    """The pi_0 that an architecture with (``kl``) or without a KL term has (Table 1)."""
    if architecture is Architecture.MULTITASK:
        return DistilledPolicy.SHARED
    if kl:
        return DistilledPolicy.TRAINED
    return DistilledPolicy.COLUMN_H0 if architecture is Architecture.TWO_COLUMN else DistilledPolicy.UNTRAINED


# The A3C baselines have no KL term; their logits are those of eq. 8 with beta = 1.
BASELINE_BETA = 1.0


@dataclasses.dataclass(frozen=True)
class Coefficients:
    """The scalar costs of one run (docs/spec.md sections 1 and 5), kept separately named.

    ``alpha``/``beta`` define the KL-regularised objective; ``entropy_bonus`` is
    A3C's ``beta_ent`` (zero for Distral, whose entropy term lives in the reward).
    """

    alpha: float
    beta: float
    entropy_bonus: float
    value_cost: float = 0.5
    discount: float = 0.99

    @property
    def c_kl(self) -> float:
        return self.alpha / self.beta

    @property
    def c_ent(self) -> float:
        return (1.0 - self.alpha) / self.beta


@dataclasses.dataclass(frozen=True)
class LossTerm:
    """One part of the loss (:func:`distral_tf.model.objective.loss_terms`), summed over a batch's rollouts.

    ``present(algorithm, coeffs)`` says whether the term can be non-zero in a run of
    ``algorithm`` with ``coeffs``; only such terms are logged (``loss/<task>/<name>``).
    """

    name: str
    present: Callable[[Algorithm, Coefficients], bool]


# Every term of the loss, in the order the summaries list them: the one place that names them.
LOSS_TERMS: tuple[LossTerm, ...] = (
    LossTerm("total", lambda algo, coeffs: True),
    LossTerm("policy_gradient", lambda algo, coeffs: True),
    LossTerm("value", lambda algo, coeffs: bool(coeffs.value_cost)),
    # A3C's entropy bonus beta_ent (Distral's entropy term lives in the regularised reward, eq. 9).
    LossTerm("entropy_bonus", lambda algo, coeffs: bool(coeffs.entropy_bonus)),
    # The KL term's distillation loss (eq. 10).
    LossTerm("distillation", lambda algo, coeffs: algo.kl),
)
LOSS_TERM_NAMES: tuple[str, ...] = tuple(term.name for term in LOSS_TERMS)


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """One row/column cell of the paper's Table 1.

    Attributes:
      name: the name on the command line and in run ids, e.g. ``kl_2col``.
      label: the name in the report's tables and legends, e.g. ``KL 2col``.
      architecture: how the task policies' logits are formed.
      kl: regularised rewards (eq. 9) and a distillation loss (eq. 10).
      default_alpha: the alpha it trains with. Distral: unless ``--alpha`` overrides it.
        A3C baselines (fixed, beta = 1): the weight of h_theta0 in eq. 8's logits, 1 for
        a3c_2col (logits h_theta0 + f_thetai), 0 for the others (no KL term).
      distilled_policy: what pi_0 is; must agree with ``architecture`` and ``kl``.
      description: one sentence, shown where an algorithm is chosen (``--algos``).
      color: its colour in every figure of the report (a Matplotlib colour, unique in the registry).

    Everything else about an algorithm (its place in tables and legends: the registry's
    order; its line style, loss terms, speed class and flag messages) is derived from
    these fields, so that a new algorithm is one registry row.
    """

    name: str
    label: str
    architecture: Architecture
    kl: bool
    default_alpha: float
    distilled_policy: DistilledPolicy
    description: str
    color: str

    def __post_init__(self):
        expected = expected_distilled_policy(self.architecture, self.kl)
        if self.distilled_policy is not expected:
            raise ValueError(f"{self.name}: a {self.architecture.value} algorithm {'with' if self.kl else 'without'} "
                             f"a KL term has distilled policy {expected.value}, not {self.distilled_policy.value}.")
        if not 0.0 <= self.default_alpha <= 1.0:
            raise ValueError(f"{self.name}: default_alpha must be in [0, 1], got {self.default_alpha}.")

    @property
    def has_distilled_column(self) -> bool:
        """Whether a separate h_theta0 column exists (every architecture except multitask)."""
        return self.distilled_policy is not DistilledPolicy.SHARED

    @property
    def uses_distilled(self) -> bool:
        """Whether the task policies or rewards involve h_theta0, which therefore trains (KL or 2col)."""
        return self.distilled_policy in (DistilledPolicy.TRAINED, DistilledPolicy.COLUMN_H0)

    @property
    def trains_two_columns(self) -> bool:
        """Whether an update trains h_theta0 besides the task column (what sets the training speed)."""
        return self.uses_distilled

    def loss_term_names(self, coeffs: Coefficients) -> tuple[str, ...]:
        """The terms of :data:`LOSS_TERMS` this algorithm's loss has with ``coeffs`` (the others are constant
        zeros and are not logged)."""
        return tuple(term.name for term in LOSS_TERMS if term.present(self, coeffs))

    def terms(self, coeffs: Coefficients) -> dict[str, float]:
        """The coefficients of ``coeffs`` that this algorithm's objective has, by name (for ``config.json``).

        Distral: ``alpha``, ``beta``, ``c_kl`` = alpha/beta and, where alpha < 1, ``c_ent`` = (1-alpha)/beta.
        A3C baselines: ``entropy_bonus``, and in a3c_2col ``alpha``, the weight of h_theta0 in the logits.
        """
        if self.kl:
            out = {"alpha": coeffs.alpha, "beta": coeffs.beta, "c_kl": coeffs.c_kl}
            if coeffs.c_ent > 0:
                out["c_ent"] = coeffs.c_ent
            return out
        out = {"entropy_bonus": coeffs.entropy_bonus}
        if self.architecture is Architecture.TWO_COLUMN:
            out["alpha"] = coeffs.alpha
        return out

    def coefficients(self, entropy_cost: float, alpha: float | None = None, value_cost: float = 0.5,
                     discount: float = 0.99) -> Coefficients:
        """Maps the swept ``entropy_cost`` onto the algorithm's coefficients.

        For Distral the swept cost is ``1/beta`` (docs/spec.md section 5); for A3C it is the
        entropy bonus ``beta_ent``, with ``default_alpha`` and ``BASELINE_BETA`` fixed.
        """
        if self.kl:
            if entropy_cost <= 0:
                raise ValueError(f"{self.name}: entropy_cost (1/beta) must be > 0, got {entropy_cost}.")
            a = self.default_alpha if alpha is None else alpha
            return Coefficients(alpha=a, beta=1.0 / entropy_cost, entropy_bonus=0.0,
                                value_cost=value_cost, discount=discount)
        if alpha is not None:
            raise ValueError(f"{self.name} is an A3C baseline without a KL term; alpha does not apply.")
        return Coefficients(alpha=self.default_alpha, beta=BASELINE_BETA, entropy_bonus=entropy_cost,
                            value_cost=value_cost, discount=discount)
