"""Per-pixel observation normalisation: the columns' arithmetic, where the statistics go, and a run that takes them."""

import dataclasses
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from conftest import SMALL_AGENT

from distral_tf.envs import make_suite
from distral_tf.model.networks import OBSERVATION_STD_FLOOR, Column
from distral_tf.training import observation_statistics
from distral_tf.training.config import TrainConfig

SHAPE = SMALL_AGENT["observation_shape"]


def frames(seed=0, n=4):
    return np.random.default_rng(seed).integers(0, 256, (n, *SHAPE), dtype=np.uint8)


def statistics_of_shape(seed=1):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, SHAPE).astype(np.float32), rng.uniform(0.0, 0.3, SHAPE).astype(np.float32)


def test_a_column_without_normalisation_scales_frames_to_the_unit_interval_and_has_no_statistics():
    column = Column(3, with_value=True).build_for(SHAPE)
    obs = frames()
    np.testing.assert_array_equal(column.scaled_observations(obs).numpy(), obs.astype(np.float32) * (1 / 255.0))
    assert column.observation_statistics == ()
    assert not any("observation" in v.path for v in column.variables)
    with pytest.raises(ValueError, match="without normalize_observations"):
        column.set_observation_statistics(*statistics_of_shape())


def test_normalisation_is_the_identity_until_set_then_centres_and_scales_each_pixel():
    import random

    plain = Column(3, with_value=True, seed_stream=random.Random(0)).build_for(SHAPE)
    normed = Column(3, with_value=True, seed_stream=random.Random(0), normalize_observations=True).build_for(SHAPE)
    obs = frames()
    np.testing.assert_allclose(normed.torso(obs).numpy(), plain.torso(obs).numpy(), rtol=1e-6, atol=1e-7)
    assert all(not v.trainable for v in normed.observation_statistics)
    assert len(normed.trainable_variables) == len(plain.trainable_variables)

    mean, std = statistics_of_shape()
    normed.set_observation_statistics(mean, std)
    expected = (obs / 255.0 - mean) / (std + OBSERVATION_STD_FLOOR)
    np.testing.assert_allclose(normed.scaled_observations(obs).numpy(), expected, rtol=1e-5, atol=1e-5)
    # The Keras layers' own path (the reference of the explicit torso) sees the same input.
    np.testing.assert_allclose(normed.keras_torso(obs).numpy(), normed.torso(obs).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="do not fit"):
        normed.set_observation_statistics(mean[:-1], std[:-1])


def small_agent(algo="kl_2col", normalize=True):
    from distral_tf import algorithms
    from distral_tf.model.agent import Agent

    algorithm = algorithms.get(algo)
    return Agent(algorithm, algorithm.coefficients(0.05), SMALL_AGENT["num_tasks"], SHAPE,
                 SMALL_AGENT["num_actions"], unroll_length=SMALL_AGENT["unroll_length"], learning_rate=1e-3,
                 total_env_steps=1000, normalize_observations=normalize)


def test_agent_sets_every_column_and_its_snapshots_read_the_same_statistics(tmp_path):
    import tensorflow as tf

    agent = small_agent()
    replica = agent.make_replica()
    mean, std = statistics_of_shape()
    agent.set_observation_statistics(mean, std)
    for column in agent.columns:
        np.testing.assert_allclose(column.observation_mean.numpy(), 255.0 * mean, rtol=1e-6)
    # The snapshot's columns read the shared statistics (no sync needed, nothing copied) and do not own them.
    snapshot_columns = replica._network.task_columns + [replica._network.distilled]  # noqa: SLF001
    for column, shared in zip(snapshot_columns, agent.columns, strict=True):
        mean_var, scale_var = column.observation_statistics
        assert mean_var is shared.observation_mean and scale_var is shared.observation_scale
        np.testing.assert_allclose(scale_var.numpy(), 1.0 / (255.0 * (std + OBSERVATION_STD_FLOOR)), rtol=1e-6)
        assert not any("observation" in v.name for v in column.weights)
    batch = tf.constant(frames(n=2))
    for column, shared in zip(snapshot_columns, agent.columns, strict=True):
        np.testing.assert_array_equal(column.scaled_observations(batch).numpy(),
                                      shared.scaled_observations(batch).numpy())

    # Checkpoints carry them.
    path = tf.train.Checkpoint(agent=agent).write(str(tmp_path / "ckpt"))
    restored = small_agent()
    tf.train.Checkpoint(agent=restored).read(path).assert_existing_objects_matched()
    for a, b in zip(agent.columns, restored.columns, strict=True):
        np.testing.assert_array_equal(a.observation_mean.numpy(), b.observation_mean.numpy())
        np.testing.assert_array_equal(a.observation_scale.numpy(), b.observation_scale.numpy())
    with pytest.raises(ValueError, match="without normalize_observations"):
        small_agent(normalize=False).set_observation_statistics(mean, std)


@pytest.mark.parametrize("suite, choice, expected", [
    ("two_rooms_small", "suite", "none"), ("doom_mazes", "suite", "per_pixel"),
    ("basic_own_buttons", "suite", "per_pixel"), ("doom_mazes", "none", "none"),
    ("two_rooms_small", "per_pixel", "per_pixel")])
def test_the_suite_choice_resolves_to_the_suites_own(tmp_path, suite, choice, expected):
    config = TrainConfig(suite=suite, logdir=str(tmp_path), observation_normalization=choice)
    assert observation_statistics.normalization_of(config, make_suite(suite)) == expected


def test_statistics_are_the_per_pixel_mean_and_deviation_and_the_run_keeps_them(tmp_path):
    x = frames(n=50)
    mean, std = observation_statistics.statistics(x)
    np.testing.assert_allclose(mean, (x / 255.0).mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, (x / 255.0).std(0), rtol=1e-4, atol=1e-6)

    suite = make_suite("two_rooms_small")
    taken = observation_statistics.random_policy_frames(suite, frames=20, seed=3)
    assert taken.shape == (20, *suite.make_env(0).observation_space.shape) and taken.dtype == np.uint8
    np.testing.assert_array_equal(taken, observation_statistics.random_policy_frames(suite, frames=20, seed=3))

    config = TrainConfig(suite="two_rooms_small", logdir=str(tmp_path), observation_normalization="per_pixel", seed=3)
    first = observation_statistics.load_or_take(config, suite)
    assert (tmp_path / observation_statistics.FILE).exists()
    with np.load(tmp_path / observation_statistics.FILE) as saved:
        saved["mean"][...]  # readable
    np.savez(tmp_path / observation_statistics.FILE, mean=first[0] + 1.0, std=first[1])  # read, not taken again
    np.testing.assert_array_equal(observation_statistics.load_or_take(config, suite)[0], first[0] + 1.0)


def test_a_run_with_per_pixel_normalisation_takes_the_statistics_once_and_resumes_with_them(tmp_path):
    import tensorflow as tf

    from distral_tf.training.trainer import Trainer

    config = TrainConfig(algo="a3c", suite="two_rooms_small", logdir=str(tmp_path), total_env_steps=3 * 2 * 40,
                         workers_per_task=2, eval_episodes=0, final_eval_episodes=1, log_every_secs=100.0,
                         checkpoint_every_secs=1000.0, observation_normalization="per_pixel")
    assert Trainer(config, make_suite("two_rooms_small")).run()["state"] == "finished"
    recorded = json.loads((tmp_path / "config.json").read_text())["config"]
    assert recorded["observation_normalization"] == "per_pixel"
    with np.load(tmp_path / observation_statistics.FILE) as saved:
        mean = saved["mean"]
    checkpoint = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
    means = [v for name, _ in tf.train.list_variables(checkpoint) if "observation_mean" in name
             for v in [tf.train.load_variable(checkpoint, name)]]
    assert means and all(np.allclose(m, 255.0 * mean) for m in means)
    # A longer budget resumes the finished run from its checkpoint: the statistics come back from it.
    longer = dataclasses.replace(config, total_env_steps=3 * 2 * 60, force=True)
    assert Trainer(longer, make_suite("two_rooms_small")).run()["state"] == "finished"


def test_a_saved_choice_is_compared_as_it_resolves(tmp_path):
    from distral_tf.training.run_directory import ConfigMismatchError, RunDirectory

    def saved(logdir, **fields):
        logdir.mkdir()
        (logdir / "config.json").write_text(json.dumps({"config": {"algo": "a3c", **fields}}))
        return RunDirectory(str(logdir))

    # A two-room run written before the field existed (frames in [0, 1]) is the same model as "suite" there.
    saved(tmp_path / "rooms", suite="two_rooms_small").check_saved_config(
        TrainConfig(algo="a3c", suite="two_rooms_small", logdir=str(tmp_path / "rooms")))
    # A Doom run written then is not: the Doom suites now normalise per pixel.
    with pytest.raises(ConfigMismatchError, match="observation_normalization: saved 'none', now 'suite'"):
        saved(tmp_path / "doom", suite="doom_mazes").check_saved_config(
            TrainConfig(algo="a3c", suite="doom_mazes", logdir=str(tmp_path / "doom")))
    saved(tmp_path / "explicit", suite="doom_mazes", observation_normalization="per_pixel").check_saved_config(
        TrainConfig(algo="a3c", suite="doom_mazes", logdir=str(tmp_path / "explicit")))
