"""The README's stated defaults are the programs' defaults."""

import os
import re

import pytest

from distral_tf import report
from distral_tf.training.config import TrainConfig

README = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")).read()
# "`--name` (default 3", "`--name` (what it does, default 3", "`--name` per task (default 300"
_STATED = re.compile(r"`--(\w+)`[^`]{0,60}?default\s+(-?[\d.]+)")


def _stated_defaults():
    return {name: value.rstrip(".") for name, value in _STATED.findall(README.replace("\n", " "))}


def test_the_readme_states_defaults_of_the_training_flags_it_names():
    stated = _stated_defaults()
    for name in ("workers_per_task", "learner_threads", "tf_inter_op_threads", "tf_intra_op_threads"):
        assert name in stated, name
    for name, value in stated.items():
        if name in TrainConfig.__dataclass_fields__:
            assert float(value) == float(getattr(TrainConfig(), name)), name


@pytest.mark.parametrize("name", ["random_episodes", "random_seconds"])
def test_the_readme_states_the_reports_defaults(name):
    assert float(_stated_defaults()[name]) == float(getattr(report.Options(), name))
