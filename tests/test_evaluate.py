"""Evaluating a trained run: episodes outside training, the table and JSON, videos, maps and bad input."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import program_lines

from distral_tf.envs import make_suite
from distral_tf.training import policy_runner as evaluation
from distral_tf.training import videos

SUITE = "two_rooms_small"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def directory_digest(path):
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(full.encode())
            with open(full, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def run_cli(args, cwd):
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "distral_tf.evaluate", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_choose_actions_greedy_is_argmax_and_sampling_follows_the_softmax():
    logits = np.log(np.array([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]]))
    rng = np.random.default_rng(0)
    assert evaluation.choose_actions(logits, True, rng).tolist() == [2, 0]
    draws = np.stack([evaluation.choose_actions(logits, False, rng) for _ in range(4000)])
    for row, probs in enumerate(np.exp(logits)):
        freq = np.bincount(draws[:, row], minlength=3) / len(draws)
        np.testing.assert_allclose(freq, probs, atol=0.03)


def test_evaluate_reports_every_task_and_policy_writes_videos_and_leaves_the_run_untouched(tiny_kl_2col_run, tmp_path):
    from distral_tf.evaluate import evaluate, format_table

    before = directory_digest(tiny_kl_2col_run)
    results = evaluate(str(tiny_kl_2col_run), episodes=2, video_dir=str(tmp_path / "videos"), seed=3)
    assert directory_digest(tiny_kl_2col_run) == before

    suite = make_suite(SUITE)
    assert [(r["policy"], r["task"]) for r in results["rows"]] == [
        (p, t) for p in ("task", "distilled") for t in suite.task_names]
    for row in results["rows"]:
        assert row["episodes"] == 2 and len(row["returns"]) == 2
        assert row["mean_length"] == 40  # two_rooms_small episodes are 40 steps
        assert row["mean_return"] == pytest.approx(np.mean(row["returns"]))
        assert 0.0 <= row["success_rate"] <= 1.0
        assert row["success_rate"] == np.mean([r > 0 for r in row["returns"]])  # a goal reward is 1
    assert results["checkpoint_step"] == 120
    table = format_table(results["rows"])
    assert all(t in table for t in suite.task_names) and "±" in table

    import imageio.v2 as imageio

    assert len(results["videos"]) == 2 * suite.num_tasks
    for path in results["videos"]:
        frames = [frame for frame in imageio.get_reader(path)]  # list() trips on its infinite length hint
        assert len(frames) == 41  # the first observation and one per step
        assert frames[0].shape[0] % 16 == 0 and frames[0].shape[1] % 16 == 0
        assert frames[0].shape[1] >= videos.MIN_SIDE
        # The goal is outlined in cyan (the encoding blurs colours a little).
        near_goal_colour = np.all(np.abs(frames[0].astype(int) - videos.GOAL_COLOUR) < 60, axis=-1)
        assert near_goal_colour.sum() > 100


def test_restored_agent_holds_the_trained_parameters_and_episodes_with_the_same_seed_repeat(tiny_kl_2col_run):
    import tensorflow as tf

    from distral_tf.training import trained_run

    config, meta = trained_run.read_config(str(tiny_kl_2col_run))
    agent = trained_run.build_agent(config, trained_run.Spaces(3, tuple(meta["observation_shape"]),
                                                                meta["num_actions"]))
    initial = agent.trainable[0].numpy()
    step, prefix = trained_run.select_checkpoint(str(tiny_kl_2col_run))
    trained_run.restore_agent(agent, prefix)
    saved = tf.train.load_checkpoint(prefix).get_tensor("agent/trainable/0/.ATTRIBUTES/VARIABLE_VALUE")
    np.testing.assert_array_equal(agent.trainable[0].numpy(), saved)  # restored ...
    assert not np.array_equal(initial, saved)  # ... and trained

    suite = make_suite(SUITE)
    envs = [suite.make_env(i) for i in range(suite.num_tasks)]
    runner = evaluation.PolicyRunner(agent, "task")

    def returns(**kwargs):
        return [e.returns for e in evaluation.run_episodes(envs, range(suite.num_tasks), runner, 3, **kwargs)]

    assert returns(greedy=False, seed=5) == returns(greedy=False, seed=5)
    assert returns(greedy=True, seed=1) == returns(greedy=True, seed=1)
    for env in envs:
        env.close()


def test_command_line_prints_the_table_and_writes_json(tiny_kl_2col_run, tmp_path):
    out = tmp_path / "eval.json"
    result = run_cli([f"--logdir={tiny_kl_2col_run}", "--policy=task", "--episodes=1", "--greedy",
                      f"--json_out={out}"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "return (mean ± std)" in result.stdout
    saved = json.loads(out.read_text())
    assert saved["greedy"] and {r["policy"] for r in saved["rows"]} == {"task"}
    assert len(saved["rows"]) == make_suite(SUITE).num_tasks


def fake_run_directory(path, checkpoint_steps=(120,)):
    """A run directory as the trainer leaves it, with empty checkpoint files (enough for the checks before loading)."""
    from distral_tf.training.config import TrainConfig

    path.mkdir(parents=True)
    suite = make_suite(SUITE)
    (path / "config.json").write_text(json.dumps({
        "config": TrainConfig(suite=SUITE, logdir=str(path)).to_json(), "suite": SUITE,
        "task_names": list(suite.task_names), "observation_shape": [40, 40, 3], "num_actions": 4}))
    (path / "checkpoints").mkdir()
    for step in checkpoint_steps:
        (path / "checkpoints" / f"ckpt-{step}.index").write_bytes(b"")
    return path


@pytest.mark.parametrize("case", ["no_checkpoints", "missing_step", "other_spaces", "not_a_run", "task_policies"])
def test_bad_input_is_a_one_line_error(tmp_path, case):
    run = fake_run_directory(tmp_path / "run", checkpoint_steps=() if case == "no_checkpoints" else (40, 120))
    args = {
        "no_checkpoints": [f"--logdir={run}"],
        "missing_step": [f"--logdir={run}", "--checkpoint=7"],
        "other_spaces": [f"--logdir={run}", "--suite=two_rooms", "--policy=distilled"],
        "not_a_run": [f"--logdir={tmp_path}"],
        "task_policies": [f"--logdir={run}", "--suite=two_rooms_small_goal7"],
    }[case]
    expected = {"no_checkpoints": "has no checkpoint", "missing_step": "no checkpoint at step 7; its checkpoints "
                "are at steps 40, 120", "other_spaces": "(84, 84, 3)", "not_a_run": "not a run directory",
                "task_policies": "--policy=distilled"}[case]
    result = run_cli(args, tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = program_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr


class _RandomRunner:
    """A policy with uniform logits (no network), for environments an agent is too slow to act in."""

    def __init__(self, num_actions):
        self.num_actions = num_actions

    def initial_state(self, n):
        return (np.zeros((n, 1)),) * 4

    def logits(self, task_ids, observations, first, state):
        return np.zeros((len(task_ids), self.num_actions)), state


def test_doom_episode_is_recorded_with_its_trajectory_map():
    from distral_tf.envs.doom.maze import DoomMazeEnv

    env = DoomMazeEnv(maze=0, episode_length=12, maps_per_wad=1)
    try:
        (outcome,) = evaluation.run_episodes([env], [0], _RandomRunner(env.action_space.n), 1, greedy=False,
                                             record=True)
    finally:
        env.close()
    recording = outcome.recording
    assert outcome.lengths == [12] and outcome.successes in ([False], [True])
    assert len(recording.frames) == 13 and len(recording.positions) == 13 and recording.scene is not None
    picture = videos.trajectory_map(recording.scene, recording.positions, scale=12)
    rows, cols = recording.scene.layout.walls.shape
    assert picture.shape == (rows * 12, cols * 12, 3)
    x, y = recording.positions[0]  # the start of the path is marked
    assert tuple(picture[int(-y / 96 * 12), int(x / 96 * 12)]) == (40, 90, 255)


def test_trajectory_line_is_broken_where_the_player_jumps():
    from distral_tf.envs.doom.maze import fixed_layout
    from distral_tf.envs.doom.scenes import make_scene

    layout = fixed_layout(0)
    cells = layout.floor_cells()
    scene = make_scene(layout, cells[0])
    plain = videos.trajectory_map(scene, [(0.0, 0.0)] * 2, scale=12)
    # Two short walks far apart: drawn where they go, not between them.
    walk = [(100.0, -100.0), (100.0, -180.0), (700.0, -700.0), (780.0, -700.0)]
    picture = videos.trajectory_map(scene, walk, scale=12)
    changed = np.any(picture != plain, axis=-1)
    assert changed[int(140 / 96 * 12), int(100 / 96 * 12)]  # on the first walk
    assert not changed[int(440 / 96 * 12), int(400 / 96 * 12)]  # midway through the jump


def test_the_goal_is_outlined_in_video_frames_and_not_drawn_in_the_observation():
    suite = make_suite(SUITE)
    env = suite.make_env(0)
    obs, _ = env.reset(seed=0)
    top, left, bottom, right = box = videos.goal_box(env)
    assert (bottom - top, right - left) == (env.unwrapped._cell_px,) * 2
    row, col = env.unwrapped.layout.cells[env.unwrapped.goal]
    assert env.unwrapped.layout.grid[row][col] != "#"
    # The observation: the goal's cell is plain floor, and nothing is in the goal's colour.
    assert not obs[top:bottom, left:right].any()
    assert not np.all(obs == videos.GOAL_COLOUR, axis=-1).any()
    (plain,) = videos.episode_frames([obs], [], "t", "task")
    (marked,) = videos.episode_frames([obs], [], "t", "task", goal=box)
    changed = np.any(marked != plain, axis=-1)
    changed[:videos._BANNER_LINE * 2 + 4] = False  # the banner, which says that the goal is outlined
    rows, cols = np.nonzero(changed)
    assert np.all(marked[rows, cols] == videos.GOAL_COLOUR)
    factor = -(-videos.MIN_SIDE // obs.shape[1])  # scale_up's factor
    # The outline runs round the goal's cell, scaled up.
    assert (cols.min(), cols.max() + 1) == (left * factor, right * factor)
    assert rows.max() + 1 - rows.min() == (bottom - top) * factor
    assert not changed[rows.min() + (bottom - top) * factor // 2, (left + right) * factor // 2]  # hollow
    env.close()


def test_without_imageio_the_video_error_gives_the_readmes_install_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "imageio", None)
    monkeypatch.setitem(sys.modules, "imageio.v2", None)
    with pytest.raises(videos.VideoError, match="imageio-ffmpeg") as caught:
        videos.write_mp4(str(tmp_path / "x.mp4"), [np.zeros((16, 16, 3), np.uint8)], 10)
    assert videos.INSTALL_HINT in str(caught.value)
    readme = open(os.path.join(REPO, "README.md")).read()
    assert f"`{videos.INSTALL_HINT}`" in readme and "distral_tf[video]" not in readme


def test_annotated_frames_show_the_running_return():
    frames = [np.zeros((40, 40, 3), np.uint8)] * 3
    out = videos.episode_frames(frames, [0.0, 1.0], "goal", "task", 100)
    assert len(out) == 3 and out[0].shape == out[2].shape
    assert out[0].shape[0] % 16 == 0 and out[0].shape[1] % 16 == 0
    assert not np.array_equal(out[1], out[2])  # the return changed from 0 to 1 between them


def test_trainer_writes_pi0_clips_that_tensorboard_shows_as_animated_gifs(tmp_path):
    import io

    from PIL import Image
    from tensorboard.backend.event_processing import event_accumulator

    from distral_tf.training.config import TrainConfig
    from distral_tf.training.trainer import CLIP_STEPS, Trainer

    suite = make_suite("two_rooms_small_goal7,two_rooms_small_goal9")
    trainer = Trainer(TrainConfig(algo="kl_1col", suite=suite.name, logdir=str(tmp_path), total_env_steps=40,
                                  workers_per_task=1, entropy_cost=0.05, num_env_processes=0, eval_clip_every=1),
                      suite)
    trainer.build()
    envs = [suite.make_env(i) for i in range(suite.num_tasks)]
    trainer.evaluator.write_clips(envs, seed=0)
    trainer.monitor.close()
    for env in envs:
        env.close()

    acc = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    for task in suite.task_names:
        (event,) = acc.Tensors(f"distilled/{task}/clip")
        width, height, gif = event.tensor_proto.string_val
        image = Image.open(io.BytesIO(gif))
        # The encoder merges identical consecutive frames (the agent against a wall) into one longer frame,
        # so the clip's total duration counts every step.
        durations = []
        for i in range(image.n_frames):
            image.seek(i)
            durations.append(image.info["duration"])
        step_ms = max(20, round(1000 / envs[suite.task_names.index(task)].metadata.get("render_fps", 10)))
        assert image.format == "GIF" and 1 < image.n_frames <= CLIP_STEPS + 1
        assert sum(durations) == (CLIP_STEPS + 1) * step_ms
        image.seek(0)
        assert (int(width), int(height)) == image.size and image.size[0] >= 128
        assert acc.SummaryMetadata(f"distilled/{task}/clip").plugin_data.plugin_name == "images"
