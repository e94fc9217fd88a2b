"""Runs the entry points on many bad inputs and checks that each ends with a one-line error.

    python drills/bad_inputs.py [--filter=SUBSTRING] [--jobs=2]

Each case runs ``python -m distral_tf.run`` (or ``sweep``, ``report``) in a
subprocess, after preparing a run directory where the case needs one. A case
passes when the program exits non-zero, prints no traceback, and its output,
log lines aside, is exactly one line starting with ``error:`` that contains the
expected text. Prints a table of every case and a count; exits 1 if any failed.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from absl import flags

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from flags import cli  # noqa: E402

_FILTER = flags.DEFINE_string("filter", "", "Run only the cases whose name contains this text.")
_JOBS = flags.DEFINE_integer("jobs", 2, "Cases run at a time.")
_TIMEOUT = flags.DEFINE_float("timeout_secs", 600.0, "A case not answered within this time fails.")
_LOG_LINE = re.compile(r"^[IWEF]\d{4} |^WARNING:|^INFO:|^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) ")


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    program: str  # run, sweep or report
    args: tuple[str, ...]
    expect: str  # text the error line must contain
    setup: Callable[[Path], None] | None = None  # prepares the case's directory


def _config(logdir: Path, text: str):
    logdir.mkdir(parents=True, exist_ok=True)
    (logdir / "config.json").write_text(text)


def _locked(logdir: Path):
    logdir.mkdir(parents=True, exist_ok=True)
    # A lock held by a process that outlives the case: a sleeping child that holds the flock.
    code = (f"import fcntl, os, sys, time; fd = os.open({str(logdir / 'run.lock')!r}, os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, ('{\"pid\": %d, \"host\": \"here\", \"started\": 0}' "
            "% os.getpid()).encode()); print('ok', flush=True); time.sleep(300)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    holder.stdout.readline()
    (logdir / ".holder").write_text(str(holder.pid))


def _garbage_checkpoints(logdir: Path):
    (logdir / "checkpoints").mkdir(parents=True)
    for n in (60, 120):
        (logdir / "checkpoints" / f"ckpt-{n}.index").write_bytes(b"\x00garbage")
        (logdir / "checkpoints" / f"ckpt-{n}.data-00000-of-00001").write_bytes(b"garbage")
    _config(logdir, json.dumps({"config": {"algo": "a3c", "suite": "two_rooms_small", "total_env_steps": 120}}))


def _garbage_runs(root: Path):
    run = root / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "config.json").write_bytes(b"\xff\xfe garbage")
    (run / "metrics.jsonl").write_bytes(b"\xff\x00\x01 not text")


def _empty_runs(root: Path):
    (root / "runs").mkdir(parents=True)


def cases() -> list[Case]:
    run = "run"
    bad_numbers = [
        ("entropy_cost=inf", "finite"), ("entropy_cost=nan", "finite"), ("entropy_cost=-1", ">= 0"),
        ("entropy_cost=1e9", "limit"), ("two_column_scaling=half", "unit|literal"), ("total_env_steps=0", "> 0"),
        ("total_env_steps=100000000000000000000000", "limit of 1,000,000,000,000"),
        ("total_env_steps=1.5", "whole number"), ("workers_per_task=100000", "limit of 4,096"),
        ("workers_per_task=-3", "> 0"), ("unroll_length=0", "> 0"), ("unroll_length=1000000", "limit"),
        ("learning_rate=inf", "finite"), ("learning_rate=nan", "finite"), ("learning_rate=2", "limit"),
        ("discount=nan", "[0, 1]"), ("discount=-0.1", "[0, 1]"), ("value_cost=inf", "finite"),
        ("max_grad_norm=0", "> 0"), ("max_grad_norm=inf", "finite"), ("rmsprop_decay=1", "[0, 1)"),
        ("rmsprop_epsilon=0", "> 0"), ("rmsprop_epsilon=nan", "finite"), ("alpha=nan", "[0, 1]"),
        ("alpha=2", "[0, 1]"), ("seed=-1", ">= 0"), ("seed=99999999999", "limit"),
        ("checkpoint_every_secs=inf", "finite"), ("checkpoint_every_secs=0", "> 0"),
        ("keep_checkpoints=0", "> 0"), ("log_every_secs=nan", "finite"), ("summary_every_updates=0", "> 0"),
        ("eval_every_env_steps=-1", ">= 0"), ("eval_episodes=100000000", "limit"),
        ("max_consecutive_nonfinite=0", "> 0"), ("num_env_processes=-2", "[-1, 1024]"),
        ("num_env_processes=100000", "[-1, 1024]"), ("actor_threads=0", "> 0"), ("actor_threads=100000", "limit"),
        ("learner_threads=0", "> 0"), ("env_timeout_secs=inf", "finite"), ("env_timeout_secs=0", "> 0"),
        ("tf_inter_op_threads=-1", ">= 0"), ("tf_intra_op_threads=99999", "limit"),
        ("torso_dtype=float16", "float32|bfloat16"), ("update_mode=sync", "hogwild|batched"),
        ("reward_clipping=tanh", "none|abs_one"), ("algo=a4c", "a3c|"), ("learning_rate=ten", "expected a number"),
    ]
    out = [Case(f"--{a}", run, (f"--{a}",), e) for a, e in bad_numbers]
    out += [
        Case("unknown flag --act_batching", run, ("--act_batching",), "act_batching"),
        Case("workers beyond memory", run, ("--suite=doom_mazes", "--workers_per_task=2000"), "GiB"),
        Case("a3c with --alpha", run, ("--algo=a3c", "--alpha=0.5"), "Distral algorithms"),
        Case("distral with entropy_cost=0", run, ("--algo=kl_1col", "--entropy_cost=0"), "1/beta"),
        Case("unknown suite", run, ("--suite=nope",), "Unknown suite"),
        Case("task named twice", run, ("--suite=top_left,top_left",), "more than once"),
        Case("empty --suite", run, ("--suite=",), "empty"),
        Case("empty task name", run, ("--suite=top_left,,bottom_right",), "empty task name"),
        Case("tasks of two suites", run, ("--suite=top_left,doom_maze_01",), "Unknown suite or task names"),
        Case("empty --logdir", run, ("--logdir=",), "--logdir is empty"),
        Case("--logdir under a file", run, ("--logdir=/dev/null/run",), "--logdir"),
        Case("stray positional argument", run, ("--total_env_steps=60", "extra"), "unexpected arguments"),
        Case("unknown flag", run, ("--no_such_flag=1",), "no_such_flag"),
        Case("flag without value", run, ("--total_env_steps",), "total_env_steps"),
        Case("config.json invalid JSON", run, ("--suite=two_rooms_small", "--total_env_steps=60", "--logdir={dir}"),
             "config.json is not valid JSON", lambda d: _config(d, "{not json")),
        Case("config.json empty", run, ("--suite=two_rooms_small", "--total_env_steps=60", "--logdir={dir}"),
             "config.json is empty", lambda d: _config(d, "")),
        Case("config.json a list", run, ("--suite=two_rooms_small", "--total_env_steps=60", "--logdir={dir}"),
             "holds a JSON list", lambda d: _config(d, "[1, 2]")),
        Case("config.json config not an object", run,
             ("--suite=two_rooms_small", "--total_env_steps=60", "--logdir={dir}"), "is not an object",
             lambda d: _config(d, '{"config": 3}')),
        Case("resume with other settings", run,
             ("--algo=kl_1col", "--suite=two_rooms_small", "--total_env_steps=60", "--logdir={dir}"),
             "different configuration", lambda d: _config(d, json.dumps({"config": {"algo": "a3c"}}))),
        Case("run directory in use", run, ("--suite=two_rooms_small", "--total_env_steps=60", "--logdir={dir}"),
             "in use by another run", _locked),
        Case("no readable checkpoint", run,
             ("--algo=a3c", "--suite=two_rooms_small", "--total_env_steps=120", "--logdir={dir}"),
             "could be restored", _garbage_checkpoints),
        Case("sweep: unknown experiment", "sweep", ("--experiment=bogus", "--out={dir}", "--dry_run"),
             "Unknown suite"),
        Case("sweep: unknown algorithm", "sweep",
             ("--experiment=two_rooms_small", "--algos=a4c", "--out={dir}", "--dry_run"), "--algos"),
        Case("sweep: entropy costs not numbers", "sweep",
             ("--experiment=two_rooms_small", "--entropy_costs=x", "--out={dir}", "--dry_run"), "--entropy_costs"),
        Case("sweep: negative learning rate", "sweep",
             ("--experiment=two_rooms_small", "--learning_rates=-1", "--out={dir}", "--dry_run"), "--learning_rates"),
        Case("sweep: zero budget", "sweep",
             ("--experiment=two_rooms_small", "--budget=0", "--out={dir}", "--dry_run"), "--budget"),
        Case("sweep: zero seeds", "sweep", ("--experiment=two_rooms_small", "--seeds=0", "--out={dir}"), "--seeds"),
        Case("sweep: zero parallel", "sweep", ("--experiment=two_rooms_small", "--parallel=0", "--out={dir}"),
             "--parallel"),
        Case("sweep: stray argument", "sweep", ("--experiment=two_rooms_small", "--out={dir}", "go"),
             "unexpected arguments"),
        Case("sweep: no --out", "sweep", ("--experiment=two_rooms_small",), "required"),
        Case("sweep: unbalanced quote in --run_flags", "sweep",
             ("--experiment=two_rooms_small", "--out={dir}", "--run_flags=--seed='1", "--dry_run"), "quotation"),
        Case("sweep: nan grace", "sweep", ("--experiment=two_rooms_small", "--out={dir}", "--grace_secs=nan"),
             "--grace_secs"),
        Case("report: missing runs directory", "report", ("--runs={dir}/none", "--out={dir}/report"),
             "does not exist"),
        Case("report: no runs", "report", ("--runs={dir}/runs", "--out={dir}/report"), "No runs found",
             _empty_runs),
        Case("report: one bin", "report", ("--runs={dir}", "--out={dir}/report", "--num_bins=1"), "num_bins"),
        Case("report: final fraction 2", "report", ("--runs={dir}", "--out={dir}/report", "--final_fraction=2"),
             "final_fraction"),
        Case("report: nan threshold", "report", ("--runs={dir}", "--out={dir}/report", "--threshold=nan"),
             "--threshold"),
        Case("report: nan random seconds", "report", ("--runs={dir}", "--out={dir}/report", "--random_seconds=nan"),
             "random_seconds"),
        Case("report: stray argument", "report", ("--runs={dir}", "--out={dir}/report", "x"), "unexpected"),
        Case("report: no --out", "report", ("--runs={dir}",), "required"),
        Case("report: only garbage files", "report", ("--runs={dir}/runs", "--out={dir}/report"), "r1/config.json",
             _garbage_runs),
    ]
    return out


def run_case(case: Case) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "case"
        if case.setup is not None:
            case.setup(directory)
        args = [a.replace("{dir}", str(directory)) for a in case.args]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        try:
            result = subprocess.run([sys.executable, "-m", f"distral_tf.{case.program}", *args], cwd=tmp,
                                    capture_output=True, text=True, timeout=_TIMEOUT.value, env=env)
        except subprocess.TimeoutExpired:
            return {"case": case.name, "program": case.program, "exit": None, "lines": 0, "ok": False,
                    "message": f"no answer within {_TIMEOUT.value:g} s"}
        finally:
            holder = directory / ".holder"
            if holder.exists():
                os.kill(int(holder.read_text()), 9)
    output = (result.stdout + result.stderr).splitlines()
    lines = [line for line in output if line.strip() and not _LOG_LINE.match(line)]
    error_lines = [line for line in lines if line.startswith("error:")]
    named = any(case.expect in line for line in output if "error" in line or "skipping" in line)
    ok = (result.returncode != 0 and "Traceback" not in result.stderr and len(lines) == 1
          and len(error_lines) == 1 and named)
    return {"case": case.name, "program": case.program, "exit": result.returncode, "lines": len(lines),
            "ok": ok, "message": (error_lines or lines or [""])[-1][:150]}


def main(argv):
    cli.refuse_positional(argv)
    selected = [c for c in cases() if _FILTER.value in c.name]
    with concurrent.futures.ThreadPoolExecutor(max(1, _JOBS.value)) as pool:
        results = list(pool.map(run_case, selected))
    print("| case | program | exit | lines | ok | message |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        message = r["message"].replace("|", "\\|")
        print(f"| {r['case']} | {r['program']} | {r['exit']} | {r['lines']} | {'yes' if r['ok'] else 'NO'} "
              f"| {message} |")
    passed = sum(r["ok"] for r in results)
    print(f"\n{passed}/{len(results)} bad inputs end with a one-line error, no traceback and a non-zero exit.")
    sys.exit(0 if passed == len(results) else 1)


if __name__ == "__main__":
    cli.run(main)
