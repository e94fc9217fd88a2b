"""What defines one of the paper's seven algorithms (Table 1), and the coefficients it trains with."""

from __future__ import annotations

import dataclasses
import enum


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
class Algorithm:
    """One row/column cell of the paper's Table 1."""

    name: str
    architecture: Architecture
    kl: bool  # regularised rewards (eq. 9) and a distillation loss (eq. 10)
    default_alpha: float  # 0 for the A3C baselines
    distilled_policy: DistilledPolicy
    description: str

    @property
    def has_distilled_column(self) -> bool:
        """Whether a separate h_theta0 column exists (every architecture except multitask)."""
        return self.architecture is not Architecture.MULTITASK

    def coefficients(self, entropy_cost: float, alpha: float | None = None, value_cost: float = 0.5,
                     discount: float = 0.99) -> Coefficients:
        """Maps the swept ``entropy_cost`` onto the algorithm's coefficients.

        For Distral the swept cost is ``1/beta`` (docs/spec.md section 5); for A3C it is the
        entropy bonus ``beta_ent``. ``a3c_2col`` uses logits ``h0 + f`` (alpha = beta = 1).
        """
        if self.kl:
            if entropy_cost <= 0:
                raise ValueError(f"{self.name}: entropy_cost (1/beta) must be > 0, got {entropy_cost}.")
            a = self.default_alpha if alpha is None else alpha
            return Coefficients(alpha=a, beta=1.0 / entropy_cost, entropy_bonus=0.0,
                                value_cost=value_cost, discount=discount)
        if alpha is not None:
            raise ValueError(f"{self.name} is an A3C baseline without a KL term; alpha does not apply.")
        if self.architecture is Architecture.TWO_COLUMN:
            return Coefficients(alpha=1.0, beta=1.0, entropy_bonus=entropy_cost,
                                value_cost=value_cost, discount=discount)
        return Coefficients(alpha=0.0, beta=1.0, entropy_bonus=entropy_cost,
                            value_cost=value_cost, discount=discount)
