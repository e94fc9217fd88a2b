"""How a trained column's layers fare: silent units, distance from initialisation, a policy blind to its input.

For the newest checkpoint of each run directory, per layer of every column:

* **silent**: the fraction of the layer's biases whose shared-RMSProp mean square is below 1e-20. The mean
  square decays by ``rho`` at every update without gradient, so such a unit has had no gradient for thousands of
  updates: a ReLU that no longer fires (fc, conv) or an LSTM gate saturated in float32;
* **moved**: ``|W - W0| / |W0|`` (or ``|W - W0|`` where ``W0`` is zero), ``W0`` rebuilt from the run's seed;

and, for the task policy of task 0, the standard deviation over the steps of ``--episodes`` sampled episodes of
each action's probability (a policy that ignores its observations has deviations near 0).

    python benchmarks/network_health.py RUN_DIR [RUN_DIR ...] [--episodes=6] [--json_out=FILE]
"""

from __future__ import annotations

import json

import numpy as np
from absl import flags

from distral_tf.envs.suites import make_suite
from distral_tf.training import trained_run
from distral_tf.training.policy_runner import PolicyRunner

_EPISODES = flags.DEFINE_integer("episodes", 6, "Episodes of task 0's policy for the state-dependence figure.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "File to write the figures to as JSON.")
SILENT = 1e-20


def layer_health(run) -> dict[str, dict[str, float]]:
    """``{variable path: {"silent": fraction or None, "moved": relative change}}`` for every parameter."""
    spaces = trained_run.Spaces(len(run.task_names), run.observation_shape, run.num_actions)
    initial = trained_run.build_agent(run.config, spaces)  # the run's initial parameters follow from its seed
    optimizer = run.agent.optimizer
    out, seen = {}, {}
    for v0, v, ms in zip(initial.trainable, run.agent.trainable, optimizer.mean_squares, strict=True):
        seen[v.path] = seen.get(v.path, 0) + 1  # the columns' layers share names: number the columns
        key = f"column {seen[v.path] - 1}: {v.path}"
        w0, w, ms = v0.numpy(), v.numpy(), ms.numpy()
        norm0 = float(np.linalg.norm(w0))
        change = float(np.linalg.norm(w - w0))
        out[key] = {"silent": float(np.mean(ms < SILENT)) if v.path.endswith("bias") else None,
                       "moved": change / norm0 if norm0 > 0 else change}
    return out


def policy_spread(run, episodes: int) -> dict[str, list[float]]:
    """Mean and standard deviation over the steps of ``episodes`` episodes of task 0's action probabilities."""
    env = make_suite(run.suite_name).subset([run.task_names[0]]).make_env(0)
    runner = PolicyRunner(run.agent, "task")
    rng = np.random.default_rng(0)
    probabilities = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=episode)
        state, first, done = runner.initial_state(1), True, False
        while not done:
            logits, state = runner.logits(np.zeros(1, np.int32), obs[None], np.array([first]), state)
            p = np.exp(logits[0] - logits[0].max())
            p /= p.sum()
            probabilities.append(p)
            obs, _, terminated, truncated, _ = env.step(int(rng.choice(len(p), p=p)))
            first, done = False, terminated or truncated
    env.close()
    probabilities = np.array(probabilities)
    return {"mean": [round(float(p), 4) for p in probabilities.mean(0)],
            "std": [round(float(p), 4) for p in probabilities.std(0)],
            "steps": len(probabilities)}


def main(argv):
    results = {}
    for logdir in argv[1:]:
        run = trained_run.load(logdir)
        layers = layer_health(run)
        spread = policy_spread(run, _EPISODES.value)
        results[logdir] = {"step": run.step, "layers": layers, "policy_task0": spread}
        print(f"{logdir} at {run.step:,} agent steps")
        for path, figures in layers.items():
            silent = "" if figures["silent"] is None else f"silent {figures['silent']:.2f}  "
            print(f"  {path:50s} {silent}moved {figures['moved']:.3f}")
        print(f"  task 0 policy: mean {spread['mean']}, std over {spread['steps']} steps {spread['std']}")
    if _JSON_OUT.value:
        with open(_JSON_OUT.value, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    from flags import cli

    cli.run(main)
