"""Exports a trained run's policies as a TensorFlow SavedModel: ``python -m distral_tf.export --logdir=RUN --out=DIR``.

The SavedModel needs neither this package nor Keras to run (``tf.saved_model.load(DIR)``);
it has three serving signatures:

* ``initial_state(batch_size)`` -> ``distilled_h, distilled_c, task_h, task_c``: zero LSTM
  states ``[batch_size, 256]`` (float32), the state at the start of an episode.
* ``step(observation, task_id, distilled_h, distilled_c, task_h, task_c)`` -> ``logits, value``
  and the four new states: the task policies pi_i. ``observation`` is ``[B, H, W, C]`` uint8,
  ``task_id`` ``[B]`` int32 (element ``b`` is acted on by task ``task_id[b]``'s policy;
  ``0 <= task_id < num_tasks``). ``logits`` ``[B, A]`` are those of pi_i: the task column's
  own (1col, multitask) or ``alpha h0 + beta f`` (2col, eq. 8), so the distilled state moves
  on too; ``value`` ``[B]`` is the task column's value.
* ``step_distilled(observation, distilled_h, distilled_c)`` -> ``logits, distilled_h,
  distilled_c``: the distilled policy pi_0 (the shared network for a3c_multitask). pi_0 has
  no value, hence its own signature.

A new episode starts from ``initial_state``. ``DIR/distral_policies.json`` records the
algorithm, task names, observation shape, action count and coefficients.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys

from absl import flags as absl_flags

from flags import cli

METADATA_FILE = "distral_policies.json"


def policies_module(agent):
    """A ``tf.Module`` holding the agent's columns and the three serving functions (see the module docstring)."""
    import tensorflow as tf

    from distral_tf.model import objective
    from distral_tf.model.networks import LSTM_SIZE

    algorithm, coeffs = agent.algorithm, agent.coeffs
    task_columns = list(agent.task_columns)
    distilled = agent.distilled_column()
    has_distilled = algorithm.has_distilled_column
    num_actions = agent.num_actions
    obs_spec = tf.TensorSpec([None, *agent.observation_shape], tf.uint8, name="observation")

    def state_spec(name):
        return tf.TensorSpec([None, LSTM_SIZE], tf.float32, name=name)

    def task_columns_step(task_id, obs, state):
        no_reset = tf.zeros(tf.shape(obs)[:1], tf.bool)
        if len(task_columns) == 1:
            return task_columns[0].step(obs, no_reset, state)
        positions = tf.dynamic_partition(tf.range(tf.shape(task_id)[0]), task_id, len(task_columns))
        logits, values, hs, cs = [], [], [], []
        for i, column in enumerate(task_columns):
            idx = positions[i]
            sub_state = (tf.gather(state[0], idx), tf.gather(state[1], idx))

            def run(column=column, idx=idx, sub_state=sub_state):
                lg, v, (h, c) = column.step(tf.gather(obs, idx), tf.gather(no_reset, idx), sub_state)
                return lg, v, h, c

            def skip(sub_state=sub_state):  # CPU convolutions reject empty batches
                return tf.zeros([0, num_actions]), tf.zeros([0]), *sub_state

            lg, v, h, c = tf.cond(tf.size(idx) > 0, run, skip)
            logits.append(lg)
            values.append(v)
            hs.append(h)
            cs.append(c)
        stitch = lambda parts: tf.dynamic_stitch(positions, parts)  # noqa: E731
        return stitch(logits), stitch(values), (stitch(hs), stitch(cs))

    module = tf.Module(name="distral_policies")
    module.task_columns = task_columns
    module.distilled = distilled
    module.all_variables = [v for column in agent.columns for v in column.variables]

    @tf.function(input_signature=[tf.TensorSpec([], tf.int32, name="batch_size")])
    def initial_state(batch_size):
        zeros = tf.zeros([batch_size, LSTM_SIZE], tf.float32)
        return {"distilled_h": zeros, "distilled_c": zeros, "task_h": zeros, "task_c": zeros}

    @tf.function(input_signature=[obs_spec, tf.TensorSpec([None], tf.int32, name="task_id"),
                                  state_spec("distilled_h"), state_spec("distilled_c"), state_spec("task_h"),
                                  state_spec("task_c")])
    def step(observation, task_id, distilled_h, distilled_c, task_h, task_c):
        f_logits, value, (task_h, task_c) = task_columns_step(task_id, observation, (task_h, task_c))
        h0_logits = None
        if has_distilled:
            no_reset = tf.zeros(tf.shape(observation)[:1], tf.bool)
            h0_logits, _, (distilled_h, distilled_c) = distilled.step(observation, no_reset,
                                                                      (distilled_h, distilled_c))
        logits = objective.task_policy_logits(algorithm, coeffs, f_logits, h0_logits)
        return {"logits": logits, "value": value, "distilled_h": distilled_h, "distilled_c": distilled_c,
                "task_h": task_h, "task_c": task_c}

    @tf.function(input_signature=[obs_spec, state_spec("distilled_h"), state_spec("distilled_c")])
    def step_distilled(observation, distilled_h, distilled_c):
        no_reset = tf.zeros(tf.shape(observation)[:1], tf.bool)
        logits, _, (h, c) = distilled.step(observation, no_reset, (distilled_h, distilled_c))
        return {"logits": logits, "distilled_h": h, "distilled_c": c}

    module.initial_state = initial_state
    module.step = step
    module.step_distilled = step_distilled
    return module


def export(logdir: str, out: str, checkpoint: int | None = None) -> dict:
    """Writes the SavedModel of the run in ``logdir`` (checkpoint ``checkpoint``, default the newest) to ``out``."""
    from distral_tf.training import trained_run

    trained_run.read_config(logdir)
    trained_run.select_checkpoint(logdir, checkpoint)
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise trained_run.RunLoadError(f"--out={out} exists and is not an empty directory.")
    return save_policies(trained_run.load(logdir, checkpoint), out)


class _CaptureRenamingNote(logging.Filter):
    """TensorFlow's note that a function "contains input name(s) input_5, ..., resource with unsupported characters
    which will be renamed": those are the variables the functions capture, which the SavedModel names by itself;
    the signatures' inputs keep the names given above (observation, task_id, ...)."""

    def filter(self, record):
        message = str(record.msg)
        return not (message.startswith("Function `") and "unsupported characters" in message)


@contextlib.contextmanager
def _without_capture_renaming_notes():
    note = _CaptureRenamingNote()
    logger = logging.getLogger("absl")
    logger.addFilter(note)
    try:
        yield
    finally:
        logger.removeFilter(note)


def save_policies(run, out: str) -> dict:
    """Writes the SavedModel of a loaded :class:`~distral_tf.training.trained_run.TrainedRun` to ``out``."""
    import tensorflow as tf

    module = policies_module(run.agent)
    with _without_capture_renaming_notes():
        tf.saved_model.save(module, out, signatures={
            "initial_state": module.initial_state.get_concrete_function(),
            "step": module.step.get_concrete_function(),
            "step_distilled": module.step_distilled.get_concrete_function(),
        })
    coeffs = run.agent.coeffs
    metadata = {"algo": run.config.algo, "task_names": list(run.task_names), "suite": run.suite_name,
                "observation_shape": list(run.observation_shape), "num_actions": run.num_actions,
                "checkpoint": run.checkpoint, "checkpoint_step": run.step,
                "alpha": coeffs.alpha, "beta": coeffs.beta,
                "distilled_policy": run.agent.algorithm.distilled_policy.value,
                "signatures": ["initial_state", "step", "step_distilled"]}
    with open(os.path.join(out, METADATA_FILE), "w") as f:
        json.dump(metadata, f, indent=2)
    return metadata


def define_flags():
    """Defines the command-line flags (only when run as a program, so importing defines none)."""
    absl_flags.DEFINE_string("logdir", None, "Run directory to export (read only).", required=True)
    absl_flags.DEFINE_string("out", None, "Directory for the SavedModel (must not exist, or be empty).",
                             required=True)
    absl_flags.DEFINE_integer("checkpoint", None, "Agent step of the checkpoint (default: the newest).")


def main(argv):
    cli.refuse_positional(argv)
    from distral_tf.training.tensorflow_setup import configure_tensorflow
    from distral_tf.training.trained_run import RunLoadError

    configure_tensorflow()
    values = absl_flags.FLAGS
    try:
        metadata = export(values.logdir, values.out, values.checkpoint)
    except (RunLoadError, ValueError, ImportError, OSError) as e:
        sys.exit(f"error: {e}")
    print(f"{values.out}: {metadata['algo']} policies of {len(metadata['task_names'])} task(s) and pi_0 at "
          f"{metadata['checkpoint_step']:,} agent steps (signatures: {', '.join(metadata['signatures'])})")


if __name__ == "__main__":
    define_flags()
    cli.run(main)
