"""Plays episodes in a Gymnasium environment with a policy exported by ``python -m distral_tf.export``.

Needs only TensorFlow, NumPy and Gymnasium: it does not import distral_tf. The
SavedModel's signatures return dicts (see ``distral_tf/export.py``):

* ``initial_state(batch_size)`` -> ``distilled_h``, ``distilled_c``, ``task_h``, ``task_c``;
* ``step(observation, task_id, distilled_h, distilled_c, task_h, task_c)`` -> ``logits``,
  ``value`` and the four states (the task policy pi_i);
* ``step_distilled(observation, distilled_h, distilled_c)`` -> ``logits``, ``distilled_h``,
  ``distilled_c`` (the distilled policy pi_0).

Usage::

    python examples/play_saved_model.py --model=DIR --env=ENV_ID [--env_kwargs=JSON]
        [--task=NAME | --distilled] [--episodes=N] [--greedy] [--seed=S]

``ENV_ID`` is any registered Gymnasium id whose observations are the model's uint8
images and whose actions are ``Discrete`` with the model's action count; Gymnasium's
``module:id`` form imports the module that registers it first. The two-room tasks are
registered by this project's environments, for instance for ``two_rooms_small_goal7``::

    python examples/play_saved_model.py --model=DIR --task=two_rooms_small_goal7 \\
        --env=distral_tf.envs:distral_tf/TwoRooms-v0 \\
        --env_kwargs='{"layout": "small", "goal": 7, "episode_length": 40, "image_size": 40}'

(the goal is the number at the end of the task's name; ``docs/environments.md``
gives each suite's layout, episode length and image size).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up notices off

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

METADATA_FILE = "distral_policies.json"  # written next to the SavedModel by the export


class SavedPolicy:
    """One policy of an exported model, acting in one environment: task ``task`` (an index) or pi_0 (``None``)."""

    def __init__(self, model_dir: str, task: int | None):
        self.model = tf.saved_model.load(model_dir)
        self.task = task
        self.state: dict = {}

    def reset(self):
        """Starts a new episode: the LSTM states go back to zero."""
        self.state = dict(self.model.signatures["initial_state"](batch_size=tf.constant(1, tf.int32)))
        if self.task is None:
            self.state = {k: self.state[k] for k in ("distilled_h", "distilled_c")}

    def logits(self, observation: np.ndarray) -> np.ndarray:
        """The policy's logits for ``observation`` (one frame); moves the LSTM states on."""
        batch = tf.constant(np.asarray(observation, np.uint8)[None])
        if self.task is None:
            out = self.model.signatures["step_distilled"](observation=batch, **self.state)
        else:
            out = self.model.signatures["step"](observation=batch, task_id=tf.constant([self.task], tf.int32),
                                                **self.state)
        self.state = {k: out[k] for k in self.state}
        return out["logits"].numpy()[0]


def choose(logits: np.ndarray, greedy: bool, rng: np.random.Generator) -> int:
    """The most probable action, or one drawn from the softmax of ``logits``."""
    if greedy:
        return int(np.argmax(logits))
    probs = np.exp(logits - logits.max())
    return int(rng.choice(len(probs), p=probs / probs.sum()))


def play(policy: SavedPolicy, env: gym.Env, episodes: int, greedy: bool = False, seed: int = 0) -> list[dict]:
    """``episodes`` episodes of ``policy`` in ``env``; returns each one's return and length."""
    rng = np.random.default_rng(seed)
    results = []
    observation, _ = env.reset(seed=seed)
    for _ in range(episodes):
        policy.reset()
        total, length, done = 0.0, 0, False
        while not done:
            action = choose(policy.logits(observation), greedy, rng)
            observation, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            length += 1
            done = terminated or truncated
        results.append({"return": total, "length": length})
        observation, _ = env.reset()
    return results


def _task_index(metadata: dict, task: str | None) -> int:
    names = metadata["task_names"]
    if task is None:
        return 0
    if task in names:
        return names.index(task)
    if task.isdigit() and int(task) < len(names):
        return int(task)
    raise ValueError(f"--task={task}: the model's tasks are {', '.join(names)} (or their indices).")


def _check_spaces(env: gym.Env, metadata: dict):
    shape, actions = tuple(metadata["observation_shape"]), metadata["num_actions"]
    space = env.observation_space
    if not (isinstance(space, gym.spaces.Box) and space.shape == shape and space.dtype == np.uint8):
        raise ValueError(f"the environment's observations are {space}; the model takes uint8 images of shape {shape}.")
    if not (isinstance(env.action_space, gym.spaces.Discrete) and env.action_space.n == actions):
        raise ValueError(f"the environment's actions are {env.action_space}; the model has {actions} actions.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="Directory written by python -m distral_tf.export.")
    parser.add_argument("--env", required=True, help="Gymnasium id (or module:id) of the environment.")
    parser.add_argument("--env_kwargs", default="{}", help="JSON object of keyword arguments for gymnasium.make.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--task", help="Task policy to play, by name or index (default: the first task).")
    group.add_argument("--distilled", action="store_true", help="Play the distilled policy pi_0 instead.")
    parser.add_argument("--episodes", type=int, default=3, help="Episodes to play.")
    parser.add_argument("--greedy", action="store_true", help="The most probable action instead of a sample.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the environment and the sampled actions.")
    args = parser.parse_args(argv)
    try:
        with open(os.path.join(args.model, METADATA_FILE)) as f:
            metadata = json.load(f)
        task = None if args.distilled else _task_index(metadata, args.task)
        kwargs = json.loads(args.env_kwargs)
        if not isinstance(kwargs, dict):
            raise ValueError(f"--env_kwargs must be a JSON object, got {args.env_kwargs!r}.")
        env = gym.make(args.env, **kwargs)
        _check_spaces(env, metadata)
        policy = SavedPolicy(args.model, task)
    except (OSError, ImportError, ValueError, KeyError, gym.error.Error) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    name = "pi_0 (distilled)" if task is None else f"task policy {metadata['task_names'][task]}"
    print(f"{metadata['algo']} at {metadata['checkpoint_step']:,} agent steps: {name} on {args.env}")
    try:
        results = play(policy, env, args.episodes, args.greedy, args.seed)
    finally:
        env.close()
    for i, r in enumerate(results, 1):
        print(f"episode {i}: return {r['return']:.2f} in {r['length']} steps")
    returns = [r["return"] for r in results]
    print(f"mean return {np.mean(returns):.2f} ± {np.std(returns):.2f} over {len(returns)} episode(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
