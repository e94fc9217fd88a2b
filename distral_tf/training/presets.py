"""Named settings of ``python -m distral_tf.run --preset=NAME``: the suite, workers, budget, learning rate and
entropy cost of a committed result (or of the paper).

A preset gives the defaults of those five flags; a flag given on the command line
overrides its preset value, and the run's ``config.json`` records the preset's name. A
new preset is one entry of :data:`PRESETS`.
"""

from __future__ import annotations

import dataclasses

# The flags a preset sets: fields of distral_tf.training.config.TrainConfig.
PRESET_FIELDS = ("suite", "workers_per_task", "total_env_steps", "learning_rate", "entropy_cost")


@dataclasses.dataclass(frozen=True)
class Preset:
    """One preset: its flag values, the evidence they come from and what a run costs."""

    name: str
    suite: str
    workers_per_task: int
    total_env_steps: int
    learning_rate: float
    entropy_cost: float
    evidence: str  # where the result of these settings is
    cost: str  # wall time and memory of one run

    def flags(self) -> dict:
        """Flag name -> value of the flags this preset sets."""
        return {name: getattr(self, name) for name in PRESET_FIELDS}

    def describe(self) -> str:
        return (f"{self.name}: --suite={self.suite} --workers_per_task={self.workers_per_task} "
                f"--total_env_steps={self.total_env_steps} --learning_rate={self.learning_rate:g} "
                f"--entropy_cost={self.entropy_cost:g} ({self.cost}; {self.evidence})")


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("smoke", suite="two_rooms_small", workers_per_task=2, total_env_steps=2_400,
           learning_rate=1e-3, entropy_cost=1e-2, evidence="no result: a check that training, the final "
           "evaluation and checkpoints work", cost="under a minute on 2 cores"),
    Preset("two_rooms_small", suite="two_rooms_small", workers_per_task=8, total_env_steps=300_000,
           learning_rate=1e-3, entropy_cost=1e-2, evidence="docs/results/two_rooms_small",
           cost="2-8 min on 2 cores shared by two runs"),
    Preset("doom_mazes_small", suite="doom_mazes_small", workers_per_task=32, total_env_steps=4_000_000,
           learning_rate=1e-3, entropy_cost=1e-2, evidence="docs/results/doom_mazes_small (the defaults)",
           cost="64 min (a3c) to 77 min (kl_2col) on 2 cores, under 6 GiB"),
    Preset("paper", suite="doom_mazes", workers_per_task=32, total_env_steps=100_000_000,
           learning_rate=1e-3, entropy_cost=1e-2, evidence="the paper's scale, on the 3D mazes",
           cost="36-54 h on 2 cores, 4-5 GiB"),
)}


def get(name: str) -> Preset:
    """The preset ``name``; a ``ValueError`` naming the presets if there is none."""
    if name not in PRESETS:
        raise ValueError(f"--preset={name} is not a preset; choose from {', '.join(PRESETS)}.")
    return PRESETS[name]


def help_text() -> str:
    return ("Named settings of the suite, workers, budget, learning rate and entropy cost; flags given "
            "explicitly override them. " + "; ".join(p.describe() for p in PRESETS.values()) + ".")
