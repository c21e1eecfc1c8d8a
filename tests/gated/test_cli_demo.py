"""The sweep CLI: fast `--help` (no torch import) and the demo end to end (slow)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def test_sweep_cli_does_not_import_torch() -> None:
    code = "import sys, rnnlab.cli; rnnlab.cli.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    """`rnnlab sweep demo` with 2 workers, shortened to 300 steps: all plots and the report."""
    result = subprocess.run(
        [sys.executable, "-m", "rnnlab", "sweep", "demo", "--dir", str(tmp_path), "--steps", "300"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert "12 runs in" in result.stdout
    folder = tmp_path / "examine"
    assert (folder / "results_all.png").stat().st_size > 10_000
    assert (folder / "hyperparameters.png").stat().st_size > 10_000
    assert len(list(folder.glob("filtered_below_*.png"))) == 1
    assert "| 12 |" in (folder / "report.md").read_text()
