"""The imitation diagnostic in examples/twc runs end to end (a few iterations)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "twc" / "imitation_check.py"


def test_imitation_check_runs_and_reports_the_constant_predictor_baseline() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--dynamics",
            "straight_through",
            "--iterations",
            "2",
            "--episodes",
            "4",
            "--steps",
            "20",
            "--report-every",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert lines[0].startswith("teacher: action variance")
    assert sum(line.startswith("iteration") for line in lines) == 3
    assert (
        "examples:"
        in subprocess.run(
            [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60
        ).stdout
    )
