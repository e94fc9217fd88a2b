"""benchmarks/core_ablation.py: the A2C that trains the column on ViZDoom's basic, with and without its LSTM."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vizdoom")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "core_ablation.py"
KEYS = {"agent_steps", "frames", "seconds", "episodes", "mean_return_last_50", "entropy", "silent_fc", "pi_std",
        "v_std"}


@pytest.mark.parametrize("core, optimizer, normalization", [("lstm", "normalised", "per_pixel"),
                                                            ("none", "shared", "none")])
def test_core_ablation_trains_and_records_what_the_column_does_with_its_input(tmp_path, core, optimizer,
                                                                              normalization):
    out = tmp_path / "records.jsonl"
    subprocess.run([sys.executable, str(SCRIPT), f"--core={core}", f"--optimizer={optimizer}", "--envs=2",
                    f"--observation_normalization={normalization}",
                    "--unroll=5", "--agent_steps=40", "--log_every=20", f"--out={out}"],
                   check=True, capture_output=True, timeout=300)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["agent_steps"] for r in records] == [20, 40]
    expected = KEYS | ({"gate_std", "gate_abs"} if core == "lstm" else set())
    assert set(records[0]) == expected
    assert records[-1]["frames"] == 160
    # A uniform initial policy (its layer starts at zero): entropy log 3 after a few small updates.
    assert records[0]["entropy"] == pytest.approx(math.log(3), abs=1e-3)
    assert all(0.0 <= r["silent_fc"] <= 1.0 and r["v_std"] >= 0.0 for r in records)
