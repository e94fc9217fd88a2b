"""Shared fixtures."""

import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """With ``-n N --dist loadgroup`` (pytest-xdist) each test file runs on one worker, so its
    module fixtures are built once; a file that sets ``SPLIT_ACROSS_WORKERS = True`` (independent
    long tests) has its tests spread over the workers, and files that set the same ``XDIST_GROUP``
    share one worker."""
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and not getattr(module, "SPLIT_ACROSS_WORKERS", False):
            item.add_marker(pytest.mark.xdist_group(getattr(module, "XDIST_GROUP", module.__name__)))


@pytest.fixture(scope="session", autouse=True)
def configured_tensorflow():
    """TensorFlow set up as the entry points set it up (Grappler off), once for the test session."""
    from distral_tf.training.tensorflow_setup import configure_tensorflow

    configure_tensorflow()

SMALL_AGENT = {"num_tasks": 2, "observation_shape": (36, 36, 3), "num_actions": 3, "unroll_length": 3}


def random_rollout(task_ids, seed=0):
    """A rollout for an agent of ``SMALL_AGENT``'s shapes: random images, actions and rewards."""
    import numpy as np

    from distral_tf.model.agent import Rollout

    rng = np.random.default_rng(seed)
    t, b = SMALL_AGENT["unroll_length"], len(task_ids)
    zeros = np.zeros([b, 256], np.float32)
    return Rollout(
        task_ids=np.asarray(task_ids, np.int32),
        observations=rng.integers(0, 255, [t + 1, b, *SMALL_AGENT["observation_shape"]], dtype=np.uint8),
        first=np.zeros([t + 1, b], bool), actions=rng.integers(0, SMALL_AGENT["num_actions"], [t, b]).astype(np.int32),
        rewards=rng.normal(size=[t, b]).astype(np.float32), dones=np.zeros([t, b], bool),
        distilled_state=(zeros, zeros), task_state=(zeros, zeros))


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
    from distral_tf.model.agent import Agent

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
    from distral_tf.envs import make_suite
    from distral_tf.training.config import TrainConfig
    from distral_tf.training.trainer import Trainer

    num_tasks = make_suite(suite).num_tasks
    values = dict(algo=algo, suite=suite, logdir=str(logdir), total_env_steps=num_tasks * 40, workers_per_task=1,
                  unroll_length=20, entropy_cost=0.05, eval_episodes=0, num_env_processes=0, actor_threads=1,
                  log_every_secs=60.0, checkpoint_every_secs=1000.0, final_eval_episodes=2)
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


def tensorboard_episode_events(logdir):
    """(task, step, return) of every task-policy episode_return event in the run's TensorBoard files."""
    import re

    import tensorflow as tf
    from tensorboard.compat.proto import event_pb2

    events = []
    for name in os.listdir(logdir):
        if not name.startswith("events.out.tfevents"):
            continue
        for record in tf.data.TFRecordDataset(os.path.join(logdir, name)):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                match = re.fullmatch(r"task/(.+)/episode_return", value.tag)
                if match:
                    number = tf.make_ndarray(value.tensor) if value.HasField("tensor") else value.simple_value
                    events.append((match.group(1), event.step, round(float(number), 4)))
    return events


def complete_metrics_rows(path):
    """The rows of a ``metrics.jsonl`` being written (a last line cut short is left out)."""
    import json

    rows = []
    if os.path.exists(path):
        for line in open(path):
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    return rows


# TensorFlow's native start-up notices (oneDNN, CPU features): written by its C++ logging before
# absl's log is initialised, which TF_CPP_MIN_LOG_LEVEL does not silence in every TensorFlow build.
_TENSORFLOW_NOTICE = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to "
                                r"STDERR|[IWEF]\d{4} [\d:.]+\s+\d+ \w+\.cc:\d+\] .*")


def program_lines(stderr: str) -> list[str]:
    """The lines a program wrote to stderr, without TensorFlow's native start-up notices."""
    return [line for line in stderr.strip().splitlines() if not _TENSORFLOW_NOTICE.fullmatch(line)]
