"""The command line: ``python -m distral_tf.run`` trains, and every bad flag value is a one-line error."""

import json
import os
import subprocess
import sys

import pytest
from absl import flags as absl_flags

from flags import training as training_flags

FLAGS = absl_flags.FLAGS

BAD_FLAGS = [
    (["--algo=a4c"], "--algo", "a3c|a3c_multitask|a3c_2col|kl_1col|kl_2col|klent_1col|klent_2col"),
    (["--learning_rate=-0.001"], "--learning_rate", "> 0"),
    (["--learning_rate=0"], "--learning_rate", "> 0"),
    (["--algo=kl_2col", "--alpha=1.5"], "--alpha", "[0, 1]"),
    (["--algo=klent_1col", "--alpha=-0.1"], "--alpha", "[0, 1]"),
    (["--algo=a3c", "--alpha=0.5"], "alpha", "Distral algorithms"),
    (["--workers_per_task=0"], "--workers_per_task", "> 0"),
    (["--unroll_length=0"], "--unroll_length", "> 0"),
    (["--total_env_steps=-5"], "--total_env_steps", "> 0"),
    (["--suite=no_such_suite"], "--suite", "two_rooms_small"),
    (["--algo=kl_1col", "--entropy_cost=0"], "entropy_cost", "1/beta"),
    (["--entropy_cost=-1"], "--entropy_cost", ">= 0"),
    (["--discount=1.5"], "--discount", "[0, 1]"),
    (["--update_mode=sync"], "--update_mode", "hogwild|batched"),
    (["--reward_clipping=tanh"], "--reward_clipping", "none|abs_one|soft_asymmetric"),
    (["--total_env_steps=ten"], "--total_env_steps", "int"),
    (["--seed=-1"], "--seed", ">= 0"),
    (["--eval_episodes=-2"], "--eval_episodes", ">= 0"),
    (["--entropy_cost=inf"], "--entropy_cost", "finite"),
    (["--two_column_scaling=half"], "--two_column_scaling", "unit|literal"),
    (["--total_env_steps=100000000000000000000000"], "--total_env_steps", "limit of 1,000,000,000,000"),
    (["--workers_per_task=100000"], "--workers_per_task", "limit of 4,096"),
    (["--suite=doom_mazes", "--workers_per_task=4000"], "--workers_per_task", "workers per task fit"),
    (["--learning_rate=nan"], "--learning_rate", "finite"),
    (["--discount=nan"], "--discount", "[0, 1]"),
    (["--env_timeout_secs=inf"], "--env_timeout_secs", "finite"),
    (["--seed=99999999999"], "--seed", "limit"),
    (["--num_env_processes=100000"], "--num_env_processes", "[-1, 1024]"),
    (["--suite=top_left,top_left"], "--suite", "more than once"),
    (["--suite=top_left,,bottom_right"], "--suite", "empty task name"),
    (["--logdir="], "--logdir", "empty"),
]


@pytest.mark.parametrize("args,flag,allowed", BAD_FLAGS)
def test_bad_flag_values_are_rejected_naming_the_flag(parse, args, flag, allowed):
    with pytest.raises(absl_flags.Error) as error:
        parse(args)
    message = str(error.value)
    assert flag in message and allowed in message
    assert "\n" not in message.strip()


def test_valid_flags_parse_into_a_config(parse, tmp_path):
    parse(["--algo=klent_2col", "--alpha=0.3", "--entropy_cost=0.02", f"--logdir={tmp_path}"])
    config = training_flags.config_from_flags()
    assert (config.algo, config.alpha, config.entropy_cost, config.logdir) == ("klent_2col", 0.3, 0.02, str(tmp_path))


def _run(args, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "distral_tf.run", *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=cwd)


@pytest.mark.parametrize("args", [["--algo=bogus"], ["--learning_rate=-1"], ["--suite=nope"]])
def test_command_line_bad_flag_is_one_line_without_traceback(args, tmp_path):
    result = _run(args, tmp_path)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith(("I0000", "W0000"))]
    assert len(lines) == 1 and lines[0].startswith("error: flag --"), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_help_lists_the_training_flags(tmp_path):
    result = _run(["--help"], tmp_path)
    assert result.returncode == 0
    for flag in ("--algo", "--suite", "--total_env_steps", "--checkpoint_every_secs", "--[no]force"):
        assert flag in result.stdout


def test_stray_positional_argument_is_one_line_without_usage(tmp_path):
    result = _run(["--total_env_steps=60", "oops"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unexpected arguments 'oops'; every setting is a --flag=value (see --help)."]


@pytest.mark.parametrize("content,message", [("{not json", "is not valid JSON"), ("", "is empty"),
                                             ("[1]", "holds a JSON list")])
def test_unreadable_config_json_names_the_file(tmp_path, content, message):
    logdir = tmp_path / "run"
    logdir.mkdir()
    (logdir / "config.json").write_text(content)
    result = _run(["--suite=two_rooms_small", "--total_env_steps=60", f"--logdir={logdir}"], tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(logdir / "config.json") in last and message in last
    assert (logdir / "config.json").read_text() == content


def test_command_line_unwritable_logdir_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = _run([f"--logdir={blocker}/run", "--total_env_steps=60"], tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "--logdir" in result.stderr.strip().splitlines()[-1]


def test_command_line_trains_and_writes_a_run_directory(tmp_path):
    logdir = tmp_path / "run"
    result = _run(["--algo=kl_2col", "--suite=two_rooms_small", "--total_env_steps=120", "--workers_per_task=1",
                   f"--logdir={logdir}", "--eval_episodes=1"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((logdir / "status.json").read_text())["state"] == "finished"
    assert json.loads((logdir / "config.json").read_text())["config"]["algo"] == "kl_2col"
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(logdir))
    assert "steps 120/120" in result.stderr


def test_command_line_missing_deepmind_lab_says_how_to_build_it(tmp_path):
    logdir = tmp_path / "run"
    result = _run(["--suite=dmlab_mazes", f"--logdir={logdir}", "--total_env_steps=100"], tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "deepmind_lab" in last and "Bazel" in last
    assert not logdir.exists()
