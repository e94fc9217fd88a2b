"""Random-action throughput of each 3D suite, in agent steps per second (4 engine frames per step).

Every task of a suite runs ``--steps`` uniformly random actions in one environment,
episode resets included (the first reset, which starts the engine, is not timed).
Usage: ``python benchmarks/env_throughput.py [--suites=doom_mazes,...] [--steps=1000] [--in_pool]``.
"""

import time

import numpy as np
from absl import flags

from distral_tf.envs import make_suite
from flags import cli

_SUITES = flags.DEFINE_list("suites", ["doom_mazes", "doom_navigation", "doom_lasertag"], "Suites to time.")
_STEPS = flags.DEFINE_integer("steps", 1000, "Agent steps per task.")
_IN_POOL = flags.DEFINE_bool("in_pool", False, "Build environments as inside an environment process (Doom: the game "
                             "runs in this process instead of a child process of its own).")


def task_throughput(suite, index: int, steps: int, seed: int = 0, in_pool: bool = False) -> float:
    env = suite.make_env(index, in_pool=in_pool)
    rng = np.random.default_rng(seed)
    try:
        env.reset(seed=seed)
        start = time.perf_counter()
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            if terminated or truncated:
                env.reset()
        return steps / (time.perf_counter() - start)
    finally:
        env.close()


def main(argv):
    cli.refuse_positional(argv)
    for name in _SUITES.value:
        suite = make_suite(name)
        rates = [task_throughput(suite, i, _STEPS.value, in_pool=_IN_POOL.value) for i in range(suite.num_tasks)]
        per_task = ", ".join(f"{t}={r:.0f}" for t, r in zip(suite.task_names, rates, strict=True))
        print(f"{name}: {np.mean(rates):.0f} agent steps/s "
              f"({np.mean(rates) * suite.frames_per_step:.0f} frames/s) per environment; {per_task}", flush=True)


if __name__ == "__main__":
    cli.run(main)
