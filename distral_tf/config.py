"""The configuration of one training run as a frozen dataclass (built from flags by ``flags.training``)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

REWARD_CLIPPING = ("none", "abs_one", "soft_asymmetric")
UPDATE_MODES = ("hogwild", "batched")
TORSO_DTYPES = ("float32", "bfloat16")
TWO_COLUMN_SCALINGS = ("unit", "literal")

# Fields that define the model and its training problem: a run may only resume
# with the same values (other fields, e.g. logging intervals, may change).
MODEL_FIELDS = ("algo", "suite", "alpha", "entropy_cost", "learning_rate", "unroll_length", "discount",
                "value_cost", "total_env_steps", "workers_per_task", "reward_clipping", "update_mode",
                "two_column_scaling", "freeze_distilled")
# The value a model-defining field had in run directories written before it existed.
LEGACY_VALUES = {"two_column_scaling": "literal"}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs; see ``flags/training.py`` for each field's meaning."""

    algo: str = "kl_2col"
    suite: str = "doom_mazes"
    logdir: str = "runs/default"
    total_env_steps: int = 100_000_000
    workers_per_task: int = 32
    unroll_length: int = 20
    learning_rate: float = 1e-3
    entropy_cost: float = 0.01
    alpha: float | None = None
    discount: float = 0.99
    value_cost: float = 0.5
    max_grad_norm: float = 40.0
    rmsprop_decay: float = 0.99
    rmsprop_epsilon: float = 0.1
    reward_clipping: str = "none"
    seed: int = 0
    update_mode: str = "hogwild"
    checkpoint_every_secs: float = 600.0
    keep_checkpoints: int = 3
    log_every_secs: float = 30.0
    summary_every_updates: int = 20
    eval_every_env_steps: int = 0
    eval_episodes: int = 2
    eval_greedy: bool = False
    eval_clip_every: int = 0
    max_consecutive_nonfinite: int = 100
    env_timeout_secs: float = 60.0
    num_env_processes: int = -1
    actor_threads: int = 2
    learner_threads: int = 3
    tf_inter_op_threads: int = 0
    tf_intra_op_threads: int = 1
    torso_dtype: str = "float32"
    two_column_scaling: str = "unit"
    init_from: str = ""
    freeze_distilled: bool = False
    force: bool = False

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def model_differences(self, saved: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
        """Model-defining fields (except ``ignore``) whose saved value differs from this config's."""
        saved = {**LEGACY_VALUES, **saved}
        return [f"{k}: saved {saved[k]!r}, now {getattr(self, k)!r}" for k in MODEL_FIELDS
                if k in saved and k not in ignore and json.loads(json.dumps(getattr(self, k))) != saved[k]]
