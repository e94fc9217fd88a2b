"""Presets: ``--preset=NAME`` gives the settings of a committed result; explicit flags override them."""

import dataclasses
import json
import os
import tarfile

import pytest
from absl import flags as absl_flags

from distral_tf.training import presets
from distral_tf.training.config import MODEL_FIELDS, TrainConfig
from flags import training as training_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVIDENCE = os.path.join(ROOT, "docs", "results", "two_rooms_small", "runs.tar.gz")


@pytest.fixture
def config_of():
    """``config_of(args)``: the config ``python -m distral_tf.run ARGS`` trains; flags reset after."""

    def parse(args):
        absl_flags.FLAGS.unparse_flags()
        training_flags.parse(["run", *args])
        return training_flags.config_from_flags()

    yield parse
    parse([])  # the defaults a preset changed are restored
    absl_flags.FLAGS.unparse_flags()


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _differences(a: TrainConfig, b: TrainConfig, ignore=("logdir", "seed", "preset")) -> dict:
    return {f.name: (getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(TrainConfig)
            if f.name not in ignore and getattr(a, f.name) != getattr(b, f.name)}


def test_a_preset_is_the_explicit_command_of_its_evidence(config_of):
    preset = config_of(["--preset=two_rooms_small", "--seed=3"])
    explicit = config_of(["--suite=two_rooms_small", "--workers_per_task=8", "--total_env_steps=300000",
                          "--learning_rate=1e-3", "--entropy_cost=1e-2"])
    assert _differences(preset, explicit) == {}
    assert (preset.preset, explicit.preset, preset.seed) == ("two_rooms_small", None, 3)
    assert preset.to_json()["preset"] == "two_rooms_small"  # what config.json records


def test_two_rooms_small_reproduces_the_committed_defaults_run(config_of):
    """Every setting the committed kl_2col run recorded, apart from its directory and seed."""
    with tarfile.open(EVIDENCE) as archive:
        saved = json.load(archive.extractfile("runs/kl_2col-lr1e-3-ent1e-2-s0/config.json"))["config"]
    config = config_of(["--preset=two_rooms_small", "--algo=kl_2col", "--seed=7"]).to_json()
    differing = {k: (v, config[k]) for k, v in saved.items() if k not in ("logdir", "seed") and config[k] != v}
    assert differing == {} and set(presets.PRESET_FIELDS) <= set(saved)


def test_explicit_flags_override_the_preset(config_of):
    config = config_of(["--preset=two_rooms_small", "--learning_rate=3e-4", "--workers_per_task=2"])
    assert (config.learning_rate, config.workers_per_task) == (3e-4, 2)
    assert (config.suite, config.total_env_steps, config.entropy_cost) == ("two_rooms_small", 300_000, 1e-2)
    assert config_of(["--preset", "two_rooms_small", "--suite=two_rooms"]).suite == "two_rooms"


def test_flags_without_a_preset_keep_their_defaults(config_of):
    config_of(["--preset=two_rooms_small"])
    assert _differences(config_of([]), TrainConfig(), ignore=("logdir",)) == {}


def test_paper_preset_is_the_papers_scale(config_of):
    config = config_of(["--preset=paper"])
    assert (config.suite, config.workers_per_task, config.total_env_steps) == ("doom_mazes", 32, 100_000_000)
    assert "36-54 h" in presets.get("paper").cost


def test_the_default_job_is_the_committed_3d_evidence_and_its_preset(config_of):
    """No flags: kl_2col on doom_mazes_small at the budget of docs/results/doom_mazes_small, which is
    also --preset=doom_mazes_small."""
    default = TrainConfig()
    assert (default.algo, default.suite, default.workers_per_task, default.total_env_steps) == (
        "kl_2col", "doom_mazes_small", 32, 4_000_000)
    preset = config_of(["--preset=doom_mazes_small"])
    assert _differences(preset, default, ignore=("logdir", "preset")) == {}
    assert os.path.isfile(os.path.join(REPO, "docs", "results", "doom_mazes_small", "runs.tar.gz"))


def test_unknown_preset_is_one_line_naming_the_presets(config_of, capsys):
    with pytest.raises(SystemExit) as stop:
        config_of(["--preset=huge"])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"error: flag --preset=huge: value should be one of <{'|'.join(presets.PRESETS)}>"]


def test_presets_set_only_their_fields_and_do_not_define_the_model():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for preset in presets.PRESETS.values():
        assert set(preset.flags()) == set(presets.PRESET_FIELDS) <= fields
    assert "preset" not in MODEL_FIELDS
