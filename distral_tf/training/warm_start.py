"""Transfer: a new run whose distilled policy pi_0 (h0 in 2col) starts from a trained run's.

The paper names transfer as pi_0's purpose: the distilled policy captures what the
tasks share, and a new task's policy can start from it. ``--init_from=RUN`` copies
the distilled column of RUN's newest checkpoint into the new agent; the task
columns start fresh, as the algorithm's parametrisation defines them: their policy
layers start at zero, so in 2col the new task policy ``softmax(alpha h0 + beta f)``
starts as ``pi_0^alpha`` (renormalised), and in 1col as the uniform policy.
``--freeze_distilled`` keeps pi_0 fixed while the task columns learn.
"""

from __future__ import annotations

from distral_tf import algorithms
from distral_tf.model.algorithm_spec import DistilledPolicy
from distral_tf.training import trained_run
from distral_tf.training.trained_run import RunLoadError

# Sources whose pi_0 was trained (a3c's is an untrained network; a3c_multitask has no distilled column).
TRANSFERABLE = (DistilledPolicy.TRAINED, DistilledPolicy.COLUMN_H0)


def uses_distilled(algo: str) -> bool:
    """Whether ``algo``'s task policies or rewards involve pi_0 (the KL algorithms and the 2col ones)."""
    return algorithms.get(algo).uses_distilled


def check_source(logdir: str, algo: str, observation_shape, num_actions: int) -> int:
    """Checks that run ``logdir`` can start an ``algo`` run on these spaces; returns its newest checkpoint's step.

    Raises :class:`~distral_tf.training.trained_run.RunLoadError` (one line) otherwise. Imports no TensorFlow.
    """
    if not uses_distilled(algo):
        raise RunLoadError(f"--init_from starts pi_0 from another run, but --algo={algo} does not use pi_0.")
    config, meta = trained_run.read_config(logdir)
    source = algorithms.get(config.algo)
    if source.distilled_policy not in TRANSFERABLE:
        raise RunLoadError(f"--init_from={logdir} is a {config.algo} run, which has no trained distilled policy.")
    step, _ = trained_run.select_checkpoint(logdir)
    shape, actions = trained_run.run_spaces(meta)
    if shape != tuple(int(d) for d in observation_shape) or actions != int(num_actions):
        raise RunLoadError(
            f"--init_from={logdir} was trained on observations {shape} with {actions} actions, but this suite has "
            f"observations {tuple(int(d) for d in observation_shape)} and {int(num_actions)} actions.")
    return step


def load_distilled(agent, logdir: str) -> int:
    """Copies the distilled column of run ``logdir`` (newest checkpoint) into ``agent``; returns its step."""
    source = trained_run.load(logdir)
    source_vars, target_vars = source.agent.distilled.variables, agent.distilled.variables
    shapes = [tuple(v.shape) for v in source_vars], [tuple(v.shape) for v in target_vars]
    if shapes[0] != shapes[1]:
        raise RunLoadError(f"The distilled column of {logdir} does not fit this agent's (variable shapes differ).")
    for target, value in zip(target_vars, source_vars, strict=True):
        target.assign(value)
    return source.step
