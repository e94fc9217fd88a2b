"""Which part of the column keeps a plain actor-critic from learning ViZDoom's ``basic``?

A synchronous advantage actor-critic (A2C: ``--envs`` environments stepped in this process,
one update per ``--unroll`` steps of all of them), small enough to read, that trains the
project's own column (:class:`distral_tf.model.networks.Column`) on ``basic_own_buttons``
(basic's three buttons, rewards at 1/100) with one part swapped at a time:

* ``--core=lstm``: the paper's column, conv - fc - LSTM - heads; ``--core=none``: the same
  conv - fc torso with the heads on the fc features (no LSTM);
* ``--observation_normalization=per_pixel``: frames centred and scaled per pixel by the
  statistics of a random policy's frames, as the Doom suites' runs take them;
* ``--optimizer=normalised``: Keras RMSProp (epsilon outside the square root) on the batch's
  mean loss, as the usual A2C implementations run it; ``--optimizer=shared``: the project's
  shared RMSProp (epsilon inside the square root, docs/spec.md section 6) on the summed loss.

Losses are the project's (:mod:`distral_tf.model.losses`). Every ``--log_every`` agent steps a
line gives the mean return of the last 50 episodes, the policy's entropy and what the column
does with its input: ``silent_fc`` (fc units that fire on no observation of the batch),
``pi_std`` and ``v_std`` (the standard deviation over the batch of the action probabilities
and of the value: near 0, the column ignores what it sees), and for the LSTM ``gate_std`` and
``gate_abs`` (the standard deviation over the batch, and the mean magnitude, of the gates'
input pre-activations: the part that depends on the observation, against the whole).

    python benchmarks/core_ablation.py --core=none --agent_steps=300000
    python benchmarks/core_ablation.py --core=lstm --agent_steps=300000 --out=lstm.jsonl
    python benchmarks/core_ablation.py --core=lstm --observation_normalization=per_pixel --agent_steps=300000
"""

from __future__ import annotations

import json
import time

import numpy as np
from absl import app, flags

_CORE = flags.DEFINE_enum("core", "lstm", ["lstm", "none"], "The column's core: the paper's LSTM, or none.")
_OPTIMIZER = flags.DEFINE_enum("optimizer", "normalised", ["normalised", "shared"],
                               "Keras RMSProp on the mean loss, or the project's shared RMSProp on the summed loss.")
_NORMALIZATION = flags.DEFINE_enum("observation_normalization", "none", ["none", "per_pixel"],
                                    "Frames in [0, 1], or centred and scaled per pixel as the Doom suites' runs do.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 7e-4, "Learning rate (constant).")
_EPSILON = flags.DEFINE_float("rmsprop_epsilon", 1e-5, "RMSProp epsilon.")
_ENTROPY_COST = flags.DEFINE_float("entropy_cost", 0.01, "Entropy bonus.")
_ENVS = flags.DEFINE_integer("envs", 16, "Environments stepped together.")
_UNROLL = flags.DEFINE_integer("unroll", 5, "Steps per environment between updates.")
_AGENT_STEPS = flags.DEFINE_integer("agent_steps", 20_000, "Agent steps in all (4 frames each).")
_LOG_EVERY = flags.DEFINE_integer("log_every", 10_000, "Agent steps between progress lines.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the network and the environments.")
_OUT = flags.DEFINE_string("out", None, "JSON-lines file for the progress records.")

REWARD_SCALE = 0.01  # basic_own_buttons' scale (distral_tf.envs.doom.suites)
DISCOUNT, VALUE_COST, CLIP_NORM = 0.99, 0.5, 40.0


def build(num_actions: int, core: str, seed: int, normalize: bool = False):
    """The column and its ``step(obs, first, state)`` / ``unroll(obs, first, state, taps)`` for ``core``."""
    import random

    import tensorflow as tf

    from distral_tf.model.networks import Column

    column = Column(num_actions, with_value=True, seed_stream=random.Random(seed),
                    normalize_observations=normalize).build_for((84, 84, 3))
    if core == "lstm":
        return column, column.step, column.unroll

    def step(obs, first, state):  # the heads on the fc features
        features = column.torso(obs)
        return column.policy_head(features), tf.squeeze(column.value_head(features), -1), state

    def unroll(obs, first, state, taps=None):
        t, b = tf.shape(obs)[0], tf.shape(obs)[1]
        logits, value = step(tf.reshape(obs, [-1, *obs.shape[2:]]), None, state)[:2]
        return tf.reshape(logits, [t, b, -1]), tf.reshape(value, [t, b]), state

    return column, step, unroll


def main(argv):
    del argv
    import tensorflow as tf

    from distral_tf.envs import make_suite
    from distral_tf.envs.doom.stock import StockScenarioEnv
    from distral_tf.model import losses
    from distral_tf.model.networks import Column
    from distral_tf.model.optim import SharedRMSProp
    from distral_tf.training import observation_statistics

    n, t_max = _ENVS.value, _UNROLL.value
    envs = [StockScenarioEnv("basic", buttons="scenario") for _ in range(n)]
    num_actions = int(envs[0].action_space.n)
    column, step, unroll = build(num_actions, _CORE.value, _SEED.value, _NORMALIZATION.value == "per_pixel")
    if _NORMALIZATION.value == "per_pixel":  # the statistics a run on basic_own_buttons takes
        suite = make_suite("basic_own_buttons")
        column.set_observation_statistics(*observation_statistics.statistics(
            observation_statistics.random_policy_frames(suite, observation_statistics.FRAMES, _SEED.value)))
    variables = column.trainable_variables
    if _OPTIMIZER.value == "shared":
        shared = SharedRMSProp(variables, epsilon=_EPSILON.value, clip_norm=CLIP_NORM)
        reduce = tf.reduce_sum
    else:
        import keras

        keras_rmsprop = keras.optimizers.RMSprop(_LEARNING_RATE.value, rho=0.99, epsilon=_EPSILON.value)
        reduce = tf.reduce_mean

    @tf.function
    def act(obs, first, state):
        logits, value, state = step(obs, first, state)
        return tf.random.categorical(logits, 1)[:, 0], value, state

    @tf.function
    def train(obs, first, state, actions, rewards, dones, bootstrap):
        with tf.GradientTape() as tape:
            taps = {}
            logits, values, _ = unroll(obs, first, state, taps)
            returns = losses.n_step_returns(rewards, DISCOUNT * (1.0 - dones), bootstrap)  # no bootstrap past an end
            advantages = returns - values
            loss = (reduce(-losses.log_prob(logits, actions) * tf.stop_gradient(advantages))
                    + VALUE_COST * reduce(0.5 * tf.square(advantages))
                    - _ENTROPY_COST.value * reduce(losses.entropy(logits)))
        grads = tape.gradient(loss, variables)
        if _OPTIMIZER.value == "shared":
            shared.apply(grads, variables, tf.constant(_LEARNING_RATE.value))
        else:
            grads, _ = tf.clip_by_global_norm(grads, CLIP_NORM)
            keras_rmsprop.apply_gradients(zip(grads, variables, strict=True))
        features = column.torso(tf.reshape(obs, [-1, *obs.shape[2:]]))
        probe = {"entropy": tf.reduce_mean(losses.entropy(logits)),
                 "silent_fc": tf.reduce_mean(tf.cast(tf.reduce_max(features, 0) <= 0, tf.float32)),
                 "pi_std": tf.reduce_mean(tf.math.reduce_std(tf.nn.softmax(tf.reshape(logits, [-1, num_actions])), 0)),
                 "v_std": tf.math.reduce_std(values)}
        if "lstm" in taps:
            gates = taps["lstm"][2]  # [T, B, 4 x 256]
            gates = tf.reshape(gates, [-1, gates.shape[-1]])
            probe["gate_std"] = tf.reduce_mean(tf.math.reduce_std(gates, 0))
            probe["gate_abs"] = tf.reduce_mean(tf.abs(gates))
        return probe

    obs = np.stack([env.reset(seed=_SEED.value * 1000 + i)[0] for i, env in enumerate(envs)])
    first = np.ones(n, np.float32)
    state = Column.initial_state(n)
    episode_returns, finished = np.zeros(n), []
    out = open(_OUT.value, "w") if _OUT.value else None  # noqa: SIM115 - written line by line
    steps, next_log, start = 0, _LOG_EVERY.value, time.time()
    while steps < _AGENT_STEPS.value:
        batch = {k: [] for k in ("obs", "first", "actions", "rewards", "dones")}
        initial_state = state
        for _ in range(t_max):
            actions, _, state = act(obs, first, state)
            actions = actions.numpy()
            batch["obs"].append(obs)
            batch["first"].append(first)
            batch["actions"].append(actions)
            next_obs, rewards, dones = [], [], []
            for i, env in enumerate(envs):
                o, r, terminated, truncated, _ = env.step(int(actions[i]))
                episode_returns[i] += r
                if terminated or truncated:
                    finished.append(episode_returns[i])
                    episode_returns[i] = 0.0
                    o, _ = env.reset()
                next_obs.append(o)
                rewards.append(r * REWARD_SCALE)
                dones.append(float(terminated or truncated))
            batch["rewards"].append(rewards)
            batch["dones"].append(dones)
            obs, first = np.stack(next_obs), np.asarray(dones, np.float32)
        _, bootstrap, _ = act(obs, first, state)
        probe = train(np.stack(batch["obs"]), np.stack(batch["first"]), initial_state,
                      np.stack(batch["actions"]).astype(np.int32), np.asarray(batch["rewards"], np.float32),
                      np.asarray(batch["dones"], np.float32), bootstrap)
        steps += n * t_max
        if steps >= next_log:
            next_log += _LOG_EVERY.value
            record = {"agent_steps": steps, "frames": 4 * steps, "seconds": round(time.time() - start, 1),
                      "episodes": len(finished), "mean_return_last_50": float(np.mean(finished[-50:] or [np.nan])),
                      **{k: round(float(v), 5) for k, v in probe.items()}}
            print(" ".join(f"{k} {v}" for k, v in record.items()), flush=True)
            if out:
                out.write(json.dumps(record) + "\n")
                out.flush()
    for env in envs:
        env.close()


if __name__ == "__main__":
    app.run(main)
