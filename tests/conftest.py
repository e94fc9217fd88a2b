"""Shared fixtures."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """With ``-n N --dist loadgroup`` (pytest-xdist) each test file runs on one worker, so its
    module fixtures are built once; a file that sets ``SPLIT_ACROSS_WORKERS = True`` (independent
    long tests) has its tests spread over the workers."""
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and not getattr(module, "SPLIT_ACROSS_WORKERS", False):
            item.add_marker(pytest.mark.xdist_group(module.__name__))


@pytest.fixture(scope="session", autouse=True)
def configured_tensorflow():
    """TensorFlow set up as the entry points set it up (Grappler off), once for the test session."""
    from distral_tf.tensorflow_setup import configure_tensorflow

    configure_tensorflow()

SMALL_AGENT = {"num_tasks": 2, "observation_shape": (36, 36, 3), "num_actions": 3, "unroll_length": 3}


def randomize_policy_layers(columns, seed=0, scale=0.3):
    """Gives zero-initialised policy layers random weights, so that tests of which input or
    parameter reaches the logits see every path (a zero layer hides the torso from the logits)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for column in columns:
        for v in column.policy_head.weights:
            v.assign(rng.normal(scale=scale, size=v.shape).astype(np.float32))


@pytest.fixture(scope="session")
def make_agent():
    """``make_agent(name)``: a small agent of algorithm ``name`` (2 tasks, 36x36x3 images, 3 actions,
    unroll length 3, entropy cost 0.05, random policy layers), built once per session and shared by
    the tests that read it."""
    from distral_tf import algorithms
    from distral_tf.agent import Agent

    cache = {}

    def make(name):
        if name not in cache:
            algorithm = algorithms.get(name)
            cache[name] = Agent(algorithm, algorithm.coefficients(0.05), SMALL_AGENT["num_tasks"],
                                SMALL_AGENT["observation_shape"], SMALL_AGENT["num_actions"],
                                unroll_length=SMALL_AGENT["unroll_length"], learning_rate=1e-3,
                                total_env_steps=10_000, seed=0)
            randomize_policy_layers(cache[name].columns)
        return cache[name]

    return make


def train_tiny_run(logdir, algo="kl_2col", suite="two_rooms_small", **overrides):
    """A finished run of ``algo`` on ``suite`` after one rollout of 20 steps per worker and task (seconds)."""
    from distral_tf.config import TrainConfig
    from distral_tf.envs import make_suite
    from distral_tf.trainer import Trainer

    num_tasks = make_suite(suite).num_tasks
    values = dict(algo=algo, suite=suite, logdir=str(logdir), total_env_steps=num_tasks * 40, workers_per_task=1,
                  unroll_length=20, entropy_cost=0.05, eval_episodes=0, num_env_processes=0, actor_threads=1,
                  log_every_secs=60.0, checkpoint_every_secs=1000.0)
    values.update(overrides)
    summary = Trainer(TrainConfig(**values), make_suite(suite)).run()
    assert summary["state"] == "finished"
    return logdir


@pytest.fixture(scope="session")
def tiny_kl_2col_run(tmp_path_factory):
    """The directory of a finished kl_2col run on two_rooms_small (40 agent steps per task)."""
    return train_tiny_run(tmp_path_factory.mktemp("runs") / "kl_2col")


@pytest.fixture
def parse():
    """Parses command-line arguments into absl's FLAGS as ``python -m distral_tf.run ARGS`` would; resets after."""
    from absl import flags

    def _parse(args):
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["run", *args])

    yield _parse
    flags.FLAGS.unparse_flags()
