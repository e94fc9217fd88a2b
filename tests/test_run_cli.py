"""The command line: ``python -m distral_tf.run`` trains, and every bad flag value is a one-line error."""

import json
import os
import re
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


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, cwd, env=None):
    """``python -m distral_tf.run ARGS`` of this checkout, in ``cwd``, with TensorFlow's log level left to it."""
    env = {k: v for k, v in {**os.environ, **(env or {})}.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "distral_tf.run", *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=cwd)


# A line of the short log format: time, level, message (no thread id, no file:line).
SHORT_LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S")
# What the log must not show without --verbosity: absl's long prefix and TensorFlow's notices.
NOISE = re.compile(r"^[IWEF]\d{4} |\] |oneDNN|absl::InitializeLog|Sharding callback|cpu_feature_guard")


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
    for flag in ("--algo", "--suite", "--total_env_steps", "--checkpoint_every_secs", "--[no]force", "--preset",
                 "--track"):
        assert flag in result.stdout
    for preset in ("two_rooms_small: --suite=two_rooms_small --workers_per_task=8 --total_env_steps=300000",
                   "paper: --suite=doom_mazes --workers_per_task=32 --total_env_steps=100000000"):
        assert preset in " ".join(result.stdout.split())


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
    args = ["--algo=kl_2col", "--suite=two_rooms_small", "--total_env_steps=120", "--workers_per_task=1",
            f"--logdir={logdir}", "--eval_episodes=1", "--learning_rate=0.002"]
    result = _run(args, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((logdir / "status.json").read_text())["state"] == "finished"
    assert json.loads((logdir / "config.json").read_text())["config"]["algo"] == "kl_2col"
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(logdir))
    assert "steps 120/120" in result.stderr
    # Quiet by default: the short format on every line, none of TensorFlow's notices (a checkpoint was written).
    lines = result.stderr.strip().splitlines()
    assert [line for line in lines if not SHORT_LOG_LINE.match(line) or NOISE.search(line)] == [], result.stderr
    assert any("Saved checkpoint" in line for line in lines)
    # The resolved hyperparameters, on the terminal and in TensorBoard's text tab.
    stated = [line for line in lines if "Hyperparameters:" in line]
    assert len(stated) == 1
    for part in ("--algo=kl_2col", "--suite=two_rooms_small", "--total_env_steps=120", "--learning_rate=0.002",
                 "--entropy_cost=0.01", "--seed=0", "--update_mode=hogwild", "no preset"):
        assert part in stated[0]
    text = _text_summaries(logdir)["hyperparameters"]
    assert "| learning rate | 0.002 |" in text and "| suite | two_rooms_small |" in text
    # A rerun of the finished run says so once, before any header.
    again = _run(args, tmp_path)
    assert again.returncode == 0
    assert again.stdout.count("already finished") == 1 and "Run directory" not in again.stderr + again.stdout


def _text_summaries(logdir) -> dict[str, str]:
    """Tag -> text of the text summaries in the run's event files."""
    import tensorflow as tf
    from tensorboard.compat.proto import event_pb2

    texts = {}
    for name in os.listdir(logdir):
        if name.startswith("events.out.tfevents"):
            for record in tf.data.TFRecordDataset(os.path.join(logdir, name)):
                for value in event_pb2.Event.FromString(record.numpy()).summary.value:
                    if value.metadata.plugin_data.plugin_name == "text":
                        texts[value.tag] = tf.make_ndarray(value.tensor).item().decode()
    return texts


def _different_run(tmp_path):
    """A run directory holding a run of 60 agent steps."""
    logdir = tmp_path / "other"
    logdir.mkdir()
    (logdir / "config.json").write_text(json.dumps({"config": {"algo": "kl_2col", "total_env_steps": 60,
                                                                    "two_column_scaling": "unit",
                                                                    "observation_normalization": "suite"}}))
    return logdir


# Ten mistakes; each fails before the run's header, with one line, in a second or two (TensorFlow never loads).
BAD_INVOCATIONS = [
    (lambda tmp: ["--logdir=/proc/x"], "--logdir=/proc/x is not a writable directory"),
    (lambda tmp: [f"--logdir={tmp / 'file'}/run"], "is not a writable directory"),
    (lambda tmp: ["--total_env_steps=abc"], "--total_env_steps=abc: expected a whole number (e.g. 300000), got 'abc'"),
    (lambda tmp: ["--learning_rate=fast"], "--learning_rate=fast: expected a number"),
    (lambda tmp: ["--eval_greedy=maybe"], "expected true or false, got 'maybe'"),
    (lambda tmp: ["--preset=huge"], "--preset=huge: value should be one of <"),
    (lambda tmp: ["--track=tensorboard"], "--track"),
    (lambda tmp: ["--suite=no_such_suite"], "--suite"),
    (lambda tmp: ["--preset=two_rooms_small", "--workers_per_task=0"], "--workers_per_task"),
    (lambda tmp: ["--algo=kl_2col", "--total_env_steps=120", f"--logdir={_different_run(tmp)}"],
     "holds a run with a different configuration (total_env_steps: saved 60, now 120)"),
]


@pytest.mark.parametrize("make_args,message", BAD_INVOCATIONS, ids=[m[:30] for _, m in BAD_INVOCATIONS])
def test_bad_invocations_fail_before_the_header_with_one_line(tmp_path, make_args, message):
    (tmp_path / "file").write_text("not a directory")
    result = _run(make_args(tmp_path), tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "runs").exists()


def test_command_line_missing_deepmind_lab_says_how_to_build_it(tmp_path):
    logdir = tmp_path / "run"
    result = _run(["--suite=dmlab_mazes", f"--logdir={logdir}", "--total_env_steps=100"], tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "deepmind_lab" in last and "Bazel" in last
    assert not logdir.exists()


# Every program (entry points, experiments, benchmarks, drills) and the flags it needs to reach its own code.
PROGRAMS = {
    "distral_tf.sweep": ["--experiment=two_rooms_small", "--out=out"],
    "distral_tf.report": ["--runs=runs", "--out=out"],
    "distral_tf.evaluate": ["--logdir=run"],
    "distral_tf.export": ["--logdir=run", "--out=out"],
    "distral_tf.experiments.two_rooms": ["--out=out"],
    "distral_tf.experiments.transfer": ["--out=out"],
    "distral_tf.preview": ["--out=out"],
}
SCRIPTS = ["benchmarks/checkpoint_cost.py", "benchmarks/env_throughput.py", "benchmarks/learning_check.py",
           "benchmarks/staleness.py", "benchmarks/tf_step_cost.py",
           "benchmarks/sweep_backends.py", "benchmarks/throughput.py", "drills/bad_inputs.py", "drills/env_crashes.py",
           "drills/kill_resume.py"]


@pytest.mark.parametrize("module", sorted(PROGRAMS))
def test_every_program_refuses_a_stray_argument_with_one_line(tmp_path, module):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    result = subprocess.run([sys.executable, "-m", module, *PROGRAMS[module], "oops"], capture_output=True,
                            text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: unexpected arguments 'oops'; every setting is a --flag=value (see --help)."]


@pytest.mark.parametrize("path", [m.replace(".", "/") + ".py" for m in ("distral_tf.run", *PROGRAMS)] + SCRIPTS)
def test_every_program_starts_through_the_one_prologue(path):
    source = open(os.path.join(ROOT, path)).read()
    main_block = source[source.index('\nif __name__ == "__main__":'):]
    assert "cli.run(main" in main_block
    assert "app.run(" not in source and 'setdefault("TF_CPP_MIN_LOG_LEVEL"' not in source  # the prologue's


def test_a_usage_error_of_a_program_is_one_line(tmp_path):
    code = ("from absl import app\nfrom flags import cli\n\ndef main(argv):\n    raise app.UsageError('no  way\\n"
            "at all')\n\ncli.run(main)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env,
                            cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == ["error: no way at all"]
