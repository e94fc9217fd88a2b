"""The environments of a run's workers: one per worker, split into the groups the actor threads drive.

Workers are listed task-major (``workers_per_task`` of task 0, then of task 1, ...)
and split into ``--actor_threads`` groups of contiguous workers; each group's
environments step in its share of the ``--num_env_processes`` processes
(:func:`distral_tf.envs.pool.group_layout`). The trainer and the throughput
benchmark build their environments here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from distral_tf.envs.pool import group_layout, make_envs, resolve_num_processes
from distral_tf.envs.suites import Suite
from distral_tf.training.config import TrainConfig


def layout(config: TrainConfig, num_tasks: int) -> list[tuple[int, int, int]]:
    """``(lo, hi, processes)`` of each group over the task-major list of workers."""
    return group_layout(num_tasks * config.workers_per_task, config.actor_threads,
                        resolve_num_processes(config.num_env_processes))


def worker_tasks_and_seeds(config: TrainConfig, num_tasks: int, generation: int,
                           only_tasks: Sequence[int] | None = None) -> tuple[list[int], list[int]]:
    """The task and the environment seed of every worker; ``generation`` counts the run's attempts.

    ``only_tasks`` keeps the workers of those tasks (with the seeds they have in the whole run).
    """
    tasks, seeds = [], []
    for task in range(num_tasks) if only_tasks is None else only_tasks:
        for w in range(config.workers_per_task):
            tasks.append(task)
            seeds.append(int(np.random.SeedSequence([config.seed, task, w, generation]).generate_state(1)[0]))
    return tasks, seeds


def make_groups(suite: Suite, config: TrainConfig, observation_space, generation: int = 0,
                on_group_ready: Callable[[int, int, float], None] | None = None,
                only_tasks: Sequence[int] | None = None) -> list[tuple[list[int], object]]:
    """``(tasks, envs)`` of every group: its workers' tasks and their environments (an environment pool).

    ``on_group_ready(groups_ready, workers_ready, seconds)`` is called as each group's
    environments have started (starting hundreds of engines takes minutes). If a group
    cannot start, the groups already started are closed. ``only_tasks`` keeps the
    workers of those tasks (a learner of a run spread over machines).
    """
    tasks, seeds = worker_tasks_and_seeds(config, suite.num_tasks, generation, only_tasks)
    groups = []
    start = time.monotonic()
    try:
        for lo, hi, processes in layout(config, len(tasks) // config.workers_per_task):
            envs = make_envs(suite.env_factory(in_pool=processes > 0), tasks[lo:hi], seeds[lo:hi],
                             observation_space.shape, observation_space.dtype, num_processes=processes,
                             timeout_s=config.env_timeout_secs)
            groups.append((tasks[lo:hi], envs))
            if on_group_ready is not None:
                on_group_ready(len(groups), hi, time.monotonic() - start)
    except BaseException:
        for _, envs in groups:
            envs.close()
        raise
    return groups
