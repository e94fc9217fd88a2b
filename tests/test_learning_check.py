"""benchmarks/learning_check.py: runs the algorithms as a user does, reads them back, and fails a check that fails."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _check(out, *extra):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "learning_check.py"), f"--out={out}",
                           "--preset=smoke", "--random_episodes=5", *extra],
                          capture_output=True, text=True, timeout=600, env=env, cwd=out)


def test_learning_check_fails_an_unmet_bar_and_passes_a_met_one(tmp_path):
    failed = _check(tmp_path, "--min_times_random=1000")
    assert failed.returncode == 1, failed.stderr
    lines = failed.stdout.splitlines()
    assert any(line.startswith("a3c: final return") and "FAILS" in line for line in lines), failed.stdout
    assert any(line.startswith("kl_2col: final return") and "FAILS" in line for line in lines), failed.stdout
    for algo in ("a3c", "kl_2col"):  # the runs are the presets' own, with this directory as logdir
        assert os.path.exists(tmp_path / algo / "metrics.jsonl")
    # Finished runs are read back, not run again; a bar they meet passes.
    passed = _check(tmp_path, "--min_times_random=0", "--min_ratio=0")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    ratio = [line for line in passed.stdout.splitlines() if line.startswith("kl_2col / a3c:")]
    assert len(ratio) == 1 and "holds" in ratio[0]
    assert "already finished" in (tmp_path / "a3c.log").read_text()
