"""The run configuration is written once: every ``TrainConfig`` field is a flag, with its help and bounds."""

import dataclasses
import json

import pytest
from absl import flags as absl_flags

from distral_tf.training.config import LEGACY_VALUES, Interval, TrainConfig, UpTo
from flags import training as training_flags

FLAGS = absl_flags.FLAGS
FIELDS = dataclasses.fields(TrainConfig)


def _another_value(field: dataclasses.Field, tmp_path):
    """A valid value of ``field`` other than its default, found from its type and metadata alone."""
    default, choices, bound = field.default, field.metadata["choices"], field.metadata["bound"]
    choices = choices() if callable(choices) else choices
    special = {"suite": "two_rooms_small", "logdir": str(tmp_path / "run"), "algo": "klent_1col"}
    if field.name in special:
        return special[field.name]
    if choices:
        return next(c for c in choices if c != default)
    if isinstance(default, bool):
        return not default
    if isinstance(bound, Interval):
        return (bound.low + bound.high) / 2 if isinstance(bound.low, float) else bound.low + 1
    if isinstance(default, int):
        return default + 1
    if isinstance(default, float):
        return default / 2 if default else 0.5
    return "another"


def _flag_text(value):
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_every_field_is_a_flag_with_the_fields_help_and_default():
    for field in FIELDS:
        flag = FLAGS[field.name]
        help_text = field.metadata["help"]
        assert flag.help.endswith(help_text() if callable(help_text) else help_text), field.name  # enums: "<a|b>: "
        assert flag.help.strip(), field.name
        assert flag.default == field.metadata.get("flag_default", field.default), field.name


def test_every_flag_reaches_the_config(parse, tmp_path):
    values = {field.name: _another_value(field, tmp_path) for field in FIELDS}
    assert all(values[f.name] != f.default for f in FIELDS)
    parse([f"--{name}={_flag_text(value)}" for name, value in values.items()])
    config = training_flags.config_from_flags()
    assert dataclasses.asdict(config) == values


def test_logdir_defaults_to_algo_suite_and_seed(parse):
    parse(["--algo=a3c", "--suite=two_rooms_small", "--seed=4"])
    assert training_flags.config_from_flags().logdir == "runs/a3c-two_rooms_small-s4"


@pytest.mark.parametrize("field", [f for f in FIELDS if isinstance(f.metadata["bound"], UpTo)], ids=lambda f: f.name)
def test_values_above_a_fields_limit_are_one_line_errors(parse, field):
    limit = field.metadata["bound"].limit
    with pytest.raises(absl_flags.Error) as error:
        parse([f"--{field.name}={limit * 10}"])
    message = str(error.value)
    assert f"--{field.name}=" in message and "is above its limit" in message and "\n" not in message.strip()


@pytest.mark.parametrize("field", [f for f in FIELDS if isinstance(f.metadata["bound"], Interval)],
                         ids=lambda f: f.name)
def test_values_outside_a_fields_interval_are_one_line_errors(parse, field):
    bound = field.metadata["bound"]
    args = [f"--{field.name}={bound.high + 1}"] + (["--algo=kl_1col"] if field.name == "alpha" else [])
    with pytest.raises(absl_flags.Error) as error:
        parse(args)
    assert f"--{field.name} must be in [" in str(error.value)


def test_config_json_of_an_older_version_still_loads(tmp_path):
    from distral_tf.training.trained_run import read_config

    old = {name: value for name, value in TrainConfig(suite="two_rooms_small").to_json().items()
           if name not in LEGACY_VALUES}
    old["a_setting_since_removed"] = 1
    (tmp_path / "config.json").write_text(json.dumps({"config": old, "task_names": ["a", "b"]}))
    config, meta = read_config(str(tmp_path))
    assert config.suite == "two_rooms_small" and meta["task_names"] == ["a", "b"]
    for name, value in LEGACY_VALUES.items():
        assert getattr(config, name) == value
