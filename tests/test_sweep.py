"""The sweep driver, with a fake run program standing in for the trainer."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from distral_tf import sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Behaves like `python -m distral_tf.run` as far as the sweep can tell: writes status.json,
# returns at once if the run finished before, and on SIGINT checkpoints and exits 130.
FAKE_RUN = textwrap.dedent('''
    import json, os, signal, sys, time
    args = dict(a[2:].split("=", 1) for a in sys.argv[1:])
    logdir = args["logdir"]
    os.makedirs(logdir, exist_ok=True)
    with open(os.path.join(logdir, "invocations.txt"), "a") as f:
        f.write(" ".join(sys.argv[1:]) + "\\n")
    def status(state):
        with open(os.path.join(logdir, "status.json"), "w") as f:
            json.dump({"state": state, "env_steps": 0}, f)
    def read():
        try:
            return json.load(open(os.path.join(logdir, "status.json")))["state"]
        except OSError:
            return None
    if read() == "finished":
        sys.exit(0)
    mode = os.environ.get("FAKE_RUN_MODE", "finish")
    if mode == "fail_" + args["algo"]:
        status("failed")
        sys.exit(3)
    if mode == "hang":
        def on_sigint(signum, frame):
            with open(os.path.join(logdir, "signals.txt"), "a") as f:
                f.write(signal.Signals(signum).name + "\\n")
            status("interrupted")
            sys.exit(130)
        signal.signal(signal.SIGINT, on_sigint)
        status("running")
        time.sleep(60)
        sys.exit(5)
    status("finished")
''')


@pytest.fixture()
def fake_run(tmp_path, monkeypatch):
    (tmp_path / "fake_run.py").write_text(FAKE_RUN)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), REPO]))
    return "fake_run"


def invocations(out, run_id):
    path = os.path.join(out, "runs", run_id, "invocations.txt")
    return len(open(path).read().splitlines()) if os.path.exists(path) else 0


def manifest(out):
    with open(os.path.join(out, "manifest.json")) as f:
        return {e["id"]: e for e in json.load(f)["runs"]}


def test_run_ids_are_stable_and_readable():
    assert sweep.format_value(5e-4) == "5e-4"
    assert sweep.format_value(0.01) == "1e-2"
    assert sweep.format_value(2.5e-4) == "2.5e-4"
    assert sweep.format_value(3.0) == "3e0"
    assert sweep.format_value(0.0) == "0"
    assert sweep.run_id("kl_2col", 5e-4, 0.01, 0) == "kl_2col-lr5e-4-ent1e-2-s0"
    assert sweep.run_id("kl_2col", 0.0005, 1e-2, 0) == sweep.run_id("kl_2col", 5e-4, 0.010, 0)


def test_grid_expansion():
    specs = sweep.expand_grid("doom_mazes", ["a3c", "klent_2col"], [1e-3, 1e-2], [1e-4, 3e-4, 1e-3], 2,
                              total_env_steps=5000, extra_flags={"workers_per_task": 4})
    assert len(specs) == 2 * 2 * 3 * 2
    assert len({s.run_id for s in specs}) == len(specs)
    assert specs[0].run_id == "a3c-lr1e-4-ent1e-3-s0"
    assert specs[-1].run_id == "klent_2col-lr1e-3-ent1e-2-s1"
    assert specs[-1].flags == {"algo": "klent_2col", "suite": "doom_mazes", "learning_rate": 1e-3,
                               "entropy_cost": 1e-2, "seed": 1, "total_env_steps": 5000,
                               "workers_per_task": 4}
    cmd = sweep.run_command(specs[0], "/x/runs/a3c", run_module="fake_run")
    assert cmd[1:3] == ["-m", "fake_run"]
    assert "--learning_rate=0.0001" in cmd and cmd[-1] == "--logdir=/x/runs/a3c"


def test_defaults_follow_the_paper():
    algos = sweep.parse_algos("all")
    assert len(algos) == 7
    specs = sweep.expand_grid("doom_mazes", algos, sweep.parse_floats(sweep.DEFAULT_ENTROPY_COSTS, "e"),
                              sweep.parse_floats(sweep.DEFAULT_LEARNING_RATES, "l"), sweep.DEFAULT_SEEDS)
    assert len(specs) == 7 * 36
    assert sweep.parse_budget("small") is sweep.BUDGETS["small"] and sweep.parse_budget("0.25") == 0.25
    for bad in (lambda: sweep.parse_algos("a3c,ppo"), lambda: sweep.parse_floats("1e-3,x", "e"),
                lambda: sweep.parse_budget("0"), lambda: sweep.parse_budget("huge")):
        with pytest.raises(ValueError):
            bad()


def test_manifest_failures_and_resume_skips_finished(tmp_path, fake_run, monkeypatch):
    out = str(tmp_path / "sweep")
    specs = sweep.expand_grid("suite", ["a3c", "kl_2col"], [0.01], [1e-4, 5e-4], 2, total_env_steps=100)
    make = lambda: sweep.Sweep(
        specs, out, parallel=3, log=lambda line: None,
        command_fn=lambda spec, logdir: sweep.run_command(spec, logdir, fake_run))

    monkeypatch.setenv("FAKE_RUN_MODE", "fail_kl_2col")
    assert make().run() == 1
    entries = manifest(out)
    assert len(entries) == 8
    for rid, e in entries.items():
        algo = rid.split("-")[0]
        assert e["state"] == ("finished" if algo == "a3c" else "failed"), rid
        assert e["returncode"] == (0 if algo == "a3c" else 3)
        assert e["flags"]["algo"] == algo and e["command"][-1] == f"--logdir={e['logdir']}"
        assert os.path.exists(e["log"])

    monkeypatch.setenv("FAKE_RUN_MODE", "finish")
    assert make().run() == 0
    entries = manifest(out)
    assert all(e["state"] == "finished" and e["returncode"] in (0, None) for e in entries.values())
    for rid, e in entries.items():
        # Finished runs were not started again; failed ones were, once.
        assert invocations(out, rid) == (1 if rid.startswith("a3c") else 2), rid
        assert e["attempts"] == invocations(out, rid)


def _sweep_cli(out, *extra, env=None):
    return [sys.executable, "-m", "distral_tf.sweep", "--experiment=two_rooms_small", "--algos=a3c,kl_2col",
            "--entropy_costs=1e-2", "--learning_rates=5e-4", "--seeds=2", "--total_env_steps=50000",
            "--budget=0.001", f"--out={out}", "--run_module=fake_run", *extra]


def test_dry_run_prints_commands(tmp_path, fake_run):
    out = tmp_path / "sweep"
    result = subprocess.run(_sweep_cli(out, "--dry_run"), capture_output=True, text=True, timeout=120,
                            cwd=REPO)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    assert len(lines) == 4
    assert "[sweep] warning: 50 agent steps each" in result.stderr  # far less than an episode per worker
    assert all("-m fake_run" in line and "--total_env_steps=50 " in line for line in lines)
    assert any(line.endswith(f"--logdir={out}/runs/kl_2col-lr5e-4-ent1e-2-s1") for line in lines)
    assert not out.exists()
    # 50 steps are not one 40-step episode for each of 3 x 32 workers: said before anything else.
    assert result.stderr.startswith("[sweep] warning: 50 agent steps each: about 0.0 episodes of 40 steps")


def test_named_budgets_give_every_worker_several_episodes_of_the_longest_task():
    from distral_tf.envs import make_suite
    from distral_tf.training import budgets

    for name in ("two_rooms_small", "doom_mazes", "doom_lasertag"):
        suite = make_suite(name)
        longest = budgets.longest_episode_steps(suite)
        for workers in (1, 8, 32):
            small = budgets.total_env_steps(sweep.BUDGETS["small"], 10**8, suite.num_tasks, workers, longest)
            tiny = budgets.total_env_steps(sweep.BUDGETS["tiny"], 10**8, suite.num_tasks, workers, longest)
            assert budgets.episodes_per_worker(tiny, suite.num_tasks, workers, longest) >= 4
            assert budgets.episodes_per_worker(small, suite.num_tasks, workers, longest) >= 12
    doom = make_suite("doom_mazes")
    assert budgets.longest_episode_steps(doom) == 1350  # mazes 5-8
    assert budgets.total_env_steps(sweep.BUDGETS["full"], 12345, 8, 32, 1350) == 12345
    assert budgets.total_env_steps(0.5, 12345, 8, 32, 1350) == 6172


def test_dry_run_estimates_the_wall_time_from_the_measured_speed(tmp_path, fake_run):
    from distral_tf.training import budgets

    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "distral_tf.sweep", "--experiment=doom_mazes", "--algos=a3c,kl_2col",
               "--entropy_costs=1e-2", "--learning_rates=5e-4", "--seeds=1", "--budget=small", "--parallel=2",
               f"--out={out}", "--run_module=fake_run", "--run_flags=--update_mode=batched", "--dry_run"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    # small: 12 episodes of 1,350 steps for each of 8 x 32 workers.
    assert "4,147,200 agent steps each: about 12.0 episodes of 1,350 steps per worker (8 tasks x 32 workers)" \
        in result.stdout
    (estimate,) = [line for line in result.stdout.splitlines() if line.startswith("# estimated wall time:")]
    # a3c at 1,094 and kl_2col at 697 agent steps/s per core (batched): 1.05 + 1.65 core-hours.
    assert "(2.7 core-hours in all)" in estimate and "a3c 1,094, kl_2col 697" in estimate
    cores = os.cpu_count()
    wall = budgets.wall_seconds([4_147_200 / 1094, 4_147_200 / 697], cores, parallel=2)
    assert f"{budgets.format_hours(wall)} on this machine's {cores} cores, 2 at a time" in estimate
    assert "measured on doom_mazes, batched mode" in estimate


def test_the_estimate_uses_the_speed_measured_on_the_sweeps_suite():
    from distral_tf.training import budgets

    small, doom = budgets.SPEEDS["two_rooms_small"], budgets.SPEEDS["doom_mazes"]
    for name in ("two_rooms_small", "two_rooms_small_goal7,two_rooms_small_goal9"):
        assert budgets.measured_speed(name) is small
    for name in ("doom_mazes", "doom_maze_01,doom_maze_02", "two_rooms", "two_rooms_small_goal7,doom_maze_01"):
        assert budgets.measured_speed(name) is doom
    assert budgets.steps_per_core_second("kl_2col", "hogwild", "two_rooms_small") == \
        small.per_core[("two_column", "hogwild")]
    assert budgets.steps_per_core_second("a3c", "hogwild", "doom_mazes") == doom.per_core[("one_column", "hogwild")]
    # Not measured on two_rooms_small: its hogwild speed, scaled as batched updates scale doom_mazes.
    ratio = doom.per_core[("one_column", "batched")] / doom.per_core[("one_column", "hogwild")]
    assert budgets.steps_per_core_second("a3c", "batched", "two_rooms_small") == pytest.approx(
        small.per_core[("one_column", "hogwild")] * ratio)

    specs = [sweep.RunSpec(a, {"algo": a, "suite": "two_rooms_small", "total_env_steps": 300_000})
             for a in ("a3c", "kl_2col")]
    (line,) = sweep.wall_time_estimate(specs, "hogwild", 1, "local", 1)
    assert "measured on two_rooms_small, hogwild mode: a3c 1,586, kl_2col 785 agent steps/s" in line
    core_hours = 300_000 * (1 / 1586 + 1 / 785) / 3600
    assert f"({core_hours:,.1f} core-hours in all)" in line


def test_the_two_rooms_small_speed_is_that_of_the_committed_runs():
    """Each run's agent steps/s (2 runs shared 2 cores: one core each); per kind of run, the harmonic mean."""
    import tarfile

    from distral_tf.training import budgets

    rates, configs = {}, {}
    with tarfile.open(os.path.join(REPO, "docs", "results", "two_rooms_small", "runs.tar.gz")) as tar:
        for member in tar.getmembers():
            run, name = os.path.split(member.name)
            if name in ("status.json", "config.json"):
                data = json.load(tar.extractfile(member))
                (rates if name == "status.json" else configs)[run] = data
    assert len(rates) == 126 and rates.keys() == configs.keys()
    per_kind = {}
    for run, status in rates.items():
        flags = configs[run]["flags"]
        assert flags["update_mode"] == "hogwild"
        kind = budgets.speed_class(flags["algo"])
        per_kind.setdefault(kind, []).append(status["agent_steps_per_second"])
    speed = budgets.SPEEDS["two_rooms_small"].per_core
    for kind, values in per_kind.items():
        harmonic = len(values) / sum(1 / v for v in values)
        assert speed[(kind, "hogwild")] == pytest.approx(harmonic, rel=0.01)




def test_sigint_stops_runs_cleanly_and_rerun_completes(tmp_path, fake_run):
    out = tmp_path / "sweep"
    env = {**os.environ, "FAKE_RUN_MODE": "hang"}
    proc = subprocess.Popen(_sweep_cli(out, "--parallel=2", "--grace_secs=20"), cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    running = [out / "runs" / f"{a}-lr5e-4-ent1e-2-s0" / "status.json" for a in ("a3c",)]
    running.append(out / "runs" / "a3c-lr5e-4-ent1e-2-s1" / "status.json")
    deadline = time.time() + 30
    while not all(p.exists() for p in running) and time.time() < deadline:
        time.sleep(0.1)
    assert all(p.exists() for p in running), proc.stdout.read() if proc.poll() is not None else "timeout"
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, output
    assert "SIGINT: stopping" in output

    entries = manifest(out)
    for seed in (0, 1):
        e = entries[f"a3c-lr5e-4-ent1e-2-s{seed}"]
        assert (e["state"], e["returncode"]) == ("interrupted", 130)
        # The run got exactly one SIGINT, from the sweep, and checkpointed.
        signals = (out / "runs" / e["id"] / "signals.txt").read_text().split()
        assert signals == ["SIGINT"]
    assert {entries[f"kl_2col-lr5e-4-ent1e-2-s{s}"]["state"] for s in (0, 1)} == {"pending"}

    # Rerun: everything completes; the interrupted runs are started a second time.
    result = subprocess.run(_sweep_cli(out, "--parallel=2"), cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(e["state"] == "finished" for e in manifest(out).values())
    assert [invocations(out, rid) for rid in sorted(entries)] == [2, 2, 1, 1]

    # A third time: nothing left to do, nothing started.
    result = subprocess.run(_sweep_cli(out), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "4/4 runs already finished" in result.stdout
    assert [invocations(out, rid) for rid in sorted(entries)] == [2, 2, 1, 1]
    # The sweep-level HParams config for TensorBoard was written beside the runs.
    assert any(f.endswith(".distral-hparams-config") for f in os.listdir(out / "runs"))


def test_unknown_experiment_is_a_one_line_error_even_in_a_dry_run(tmp_path):
    result = subprocess.run([sys.executable, "-m", "distral_tf.sweep", "--experiment=bogus",
                             f"--out={tmp_path / 'sweep'}", "--dry_run"], capture_output=True, text=True, timeout=60,
                            cwd=REPO)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --experiment: Unknown suite or task names 'bogus'")
    assert not (tmp_path / "sweep").exists()


def test_a_dead_run_that_says_running_is_shown_crashed(tmp_path, fake_run):
    out = tmp_path / "sweep"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_dir = out / "runs" / "a3c-lr5e-4-ent1e-2-s0"
    run_dir.mkdir(parents=True)
    (run_dir / "status.json").write_text(json.dumps({"state": "running", "pid": dead.pid,
                                                     "host": os.uname().nodename, "heartbeat": time.time()}))
    result = subprocess.run(_sweep_cli(out, "--dry_run"), capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    crashed = [line for line in result.stdout.splitlines() if line.endswith("# crashed: resumes")]
    assert len(crashed) == 1 and str(run_dir) in crashed[0]
