"""The SavedModel export: a fresh process without this package reproduces the agent's logits."""

import json
import os
import subprocess
import sys

import numpy as np
from conftest import program_lines

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a fresh interpreter that does not import distral_tf: only TensorFlow and the SavedModel.
_SERVE = """
import sys
import numpy as np
import tensorflow as tf

model = tf.saved_model.load(sys.argv[1])
inputs = np.load(sys.argv[2])
obs, task_id = inputs["observations"], inputs["task_ids"]
state = model.signatures["initial_state"](batch_size=tf.constant(obs.shape[1], tf.int32))
task_state = dict(state)
d_state = {k: state[k] for k in ("distilled_h", "distilled_c")}
out = {"task_logits": [], "values": [], "distilled_logits": []}
for t in range(obs.shape[0]):
    step = model.signatures["step"](observation=tf.constant(obs[t]), task_id=tf.constant(task_id), **task_state)
    task_state = {k: step[k] for k in ("distilled_h", "distilled_c", "task_h", "task_c")}
    out["task_logits"].append(step["logits"].numpy())
    out["values"].append(step["value"].numpy())
    d = model.signatures["step_distilled"](observation=tf.constant(obs[t]), **d_state)
    d_state = {k: d[k] for k in ("distilled_h", "distilled_c")}
    out["distilled_logits"].append(d["logits"].numpy())
np.savez(sys.argv[3], **{k: np.stack(v) for k, v in out.items()})
print("served", sorted(model.signatures.keys()))
"""


def test_saved_model_reproduces_the_agents_logits_in_a_fresh_process(tiny_kl_2col_run, tmp_path):
    from distral_tf.export import METADATA_FILE, save_policies
    from distral_tf.training import policy_runner as evaluation
    from distral_tf.training import trained_run

    out = tmp_path / "saved"
    run = trained_run.load(str(tiny_kl_2col_run))
    # Policy layers start at zero and a tiny run barely moves them: random ones make every logit count.
    rng = np.random.default_rng(1)
    for column in run.agent.columns:
        for variable in column.policy_head.variables:
            variable.assign(rng.normal(0.0, 0.3, variable.shape).astype(np.float32))
    save_policies(run, str(out))
    assert (out / "saved_model.pb").exists()
    metadata = json.loads((out / METADATA_FILE).read_text())
    assert metadata["task_names"] == list(run.task_names) and metadata["checkpoint_step"] == run.step
    agent = run.agent

    rng = np.random.default_rng(0)
    steps, task_ids = 3, np.array([0, 2, 1, 2], np.int32)
    observations = rng.integers(0, 256, (steps, len(task_ids), *agent.observation_shape), dtype=np.uint8)
    np.savez(tmp_path / "inputs.npz", observations=observations, task_ids=task_ids)
    script = tmp_path / "serve.py"
    script.write_text(_SERVE)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result = subprocess.run([sys.executable, str(script), str(out), str(tmp_path / "inputs.npz"),
                             str(tmp_path / "outputs.npz")], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "['initial_state', 'step', 'step_distilled']" in result.stdout
    served = np.load(tmp_path / "outputs.npz")

    task_runner, distilled_runner = (evaluation.PolicyRunner(agent, p) for p in ("task", "distilled"))
    task_state = task_runner.initial_state(len(task_ids))
    d_state = distilled_runner.initial_state(len(task_ids))
    for t in range(steps):
        first = np.full(len(task_ids), t == 0)
        logits, task_state = task_runner.logits(task_ids, observations[t], first, task_state)
        np.testing.assert_allclose(served["task_logits"][t], logits, atol=1e-5, rtol=0)
        d_logits, d_state = distilled_runner.logits(task_ids, observations[t], first, d_state)
        np.testing.assert_allclose(served["distilled_logits"][t], d_logits, atol=1e-5, rtol=0)
    # Values: each element's own task column.
    for b, task in enumerate(task_ids):
        column = agent.task_columns[task]
        state = (np.zeros((1, 256), np.float32),) * 2
        for t in range(steps):
            _, value, state = column.step(observations[t, b:b + 1], np.array([t == 0]), state)
            np.testing.assert_allclose(served["values"][t, b], value.numpy()[0], atol=1e-5, rtol=0)
    # The logits are far from zero and the task policies differ from pi_0: the comparison is not vacuous.
    assert np.abs(served["task_logits"]).mean() > 0.1
    assert not np.allclose(served["task_logits"], served["distilled_logits"], atol=1e-2)


def test_export_refuses_a_non_empty_output_directory(tiny_kl_2col_run, tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-m", "distral_tf.export", f"--logdir={tiny_kl_2col_run}",
                             f"--out={tmp_path}"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = program_lines(result.stderr)
    assert len(lines) == 1 and "not an empty directory" in lines[0]
    assert (tmp_path / "keep.txt").read_text() == "x"
