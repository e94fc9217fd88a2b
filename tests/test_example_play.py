"""examples/play_saved_model.py: an exported policy plays Gymnasium episodes without this package."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(REPO, "examples", "play_saved_model.py")

# A Gymnasium environment with the two_rooms_small spaces that owes nothing to this package: seeded
# random images, reward 1 for action 0, five steps per episode; it keeps what it saw and was told.
_ENV_MODULE = '''
import gymnasium as gym
import numpy as np


class Noise(gym.Env):
    observation_space = gym.spaces.Box(0, 255, (40, 40, 3), np.uint8)
    action_space = gym.spaces.Discrete(4)
    def __init__(self):
        self.log = []  # (observation, action, first step of an episode)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        self._obs = self.np_random.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        return self._obs, {}

    def step(self, action):
        self.log.append((self._obs, int(action), self._t == 0))
        self._t += 1
        self._obs = self.np_random.integers(0, 256, (40, 40, 3), dtype=np.uint8)
        return self._obs, float(action == 0), False, self._t >= 5, {}


if "Noise-v0" not in gym.registry:
    gym.register(id="Noise-v0", entry_point=Noise)
'''

# Runs the example as a program, then says whether anything imported this package.
_RUN = '''
import runpy, sys
sys.argv = ["play_saved_model.py", *sys.argv[1:]]
try:
    runpy.run_path({example!r}, run_name="__main__")
except SystemExit as e:
    code = e.code
else:
    code = 0
print("distral_tf imported:", any(m == "distral_tf" or m.startswith("distral_tf.") for m in sys.modules))
sys.exit(code)
'''


@pytest.fixture(scope="module")
def saved_model(tiny_kl_2col_run, tmp_path_factory):
    """The tiny run's policies, exported, with random policy layers so that every logit counts."""
    from distral_tf.export import save_policies
    from distral_tf.training import trained_run

    run = trained_run.load(str(tiny_kl_2col_run))
    rng = np.random.default_rng(1)
    for column in run.agent.columns:
        for variable in column.policy_head.variables:
            variable.assign(rng.normal(0.0, 0.3, variable.shape).astype(np.float32))
    out = tmp_path_factory.mktemp("export") / "saved"
    save_policies(run, str(out))
    return run, str(out)


def _module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("policy", ["task", "distilled"])
def test_the_example_acts_as_the_agent_and_starts_each_episode_afresh(saved_model, tmp_path, policy):
    from distral_tf.training import policy_runner as evaluation

    run, model_dir = saved_model
    (tmp_path / "noise_env.py").write_text(_ENV_MODULE)
    noise = _module(tmp_path / "noise_env.py", "noise_env_inproc")
    example = _module(EXAMPLE, "play_saved_model")
    task = 1
    policy_ = example.SavedPolicy(model_dir, task if policy == "task" else None)
    seen = []
    served = policy_.logits
    policy_.logits = lambda observation: seen.append(served(observation)) or seen[-1]
    env = noise.Noise()
    results = example.play(policy_, env, episodes=3, greedy=True, seed=4)
    assert [r["length"] for r in results] == [5, 5, 5]
    observations, actions, first = (np.array(x) for x in zip(*env.log, strict=True))
    assert [r["return"] for r in results] == [float(np.sum(actions[i:i + 5] == 0)) for i in (0, 5, 10)]
    # The agent's own logits on the same observations, its state reset where an episode starts.
    runner = evaluation.PolicyRunner(run.agent, policy)
    expected = []
    for obs, start in zip(observations, first, strict=True):
        if start:
            state = runner.initial_state(1)
        logits, state = runner.logits(np.array([task], np.int32), obs[None], np.array([start]), state)
        expected.append(logits[0])
    np.testing.assert_allclose(np.array(seen), np.array(expected), atol=1e-5, rtol=0)
    assert actions.tolist() == np.argmax(expected, axis=-1).tolist()
    # The logits move with the observations and the state: the comparison is not vacuous.
    assert np.ptp(np.array(seen)[:, 0]) > 1e-3


def _run(args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(cwd)
    script = cwd / "run_example.py"
    script.write_text(_RUN.format(example=EXAMPLE))
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_example_plays_a_gymnasium_environment_without_this_package(saved_model, tmp_path):
    run, model_dir = saved_model
    (tmp_path / "noise_env.py").write_text(_ENV_MODULE)
    result = _run([f"--model={model_dir}", "--env=noise_env:Noise-v0", f"--task={run.task_names[2]}",
                   "--episodes=2"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert f"kl_2col at {run.step:,} agent steps: task policy {run.task_names[2]} on noise_env:Noise-v0" in lines
    assert [line.split(":")[0] for line in lines if line.startswith("episode ")] == ["episode 1", "episode 2"]
    assert all(" in 5 steps" in line for line in lines if line.startswith("episode "))
    assert any(line.startswith("mean return ") and "over 2 episode(s)" in line for line in lines)
    assert "distral_tf imported: False" in lines


def test_the_example_plays_a_two_room_task_and_refuses_other_spaces(saved_model, tmp_path):
    run, model_dir = saved_model
    metadata = json.load(open(os.path.join(model_dir, "distral_policies.json")))
    task = metadata["task_names"][0]
    goal = int(task.rsplit("goal", 1)[1])
    kwargs = {"layout": "small", "goal": goal, "episode_length": 40, "image_size": 40}
    result = _run([f"--model={model_dir}", "--env=distral_tf.envs:distral_tf/TwoRooms-v0",
                   f"--env_kwargs={json.dumps(kwargs)}", "--distilled", "--episodes=1"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "episode 1: return " in result.stdout and " in 40 steps" in result.stdout
    # 84x84 images: not what the model takes; one plain line.
    result = _run([f"--model={model_dir}", "--env=distral_tf.envs:distral_tf/TwoRooms-v0",
                   '--env_kwargs={"image_size": 84}'], tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "the model takes uint8 images of shape (40, 40, 3)" in result.stderr
