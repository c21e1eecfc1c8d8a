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


def test_demo_state_size_is_validated_before_anything_is_written(tmp_path: Path) -> None:
    from rnnlab.errors import ConfigError
    from rnnlab.gated.demo import run_sweep_demo

    with pytest.raises(ConfigError, match="state_size"):
        run_sweep_demo(tmp_path / "sweep", workers=1, state_size=0)
    assert not (tmp_path / "sweep").exists()


def test_demo_state_size_sets_every_config(tmp_path: Path) -> None:
    """`--state-size 8`, stacked in this process, a few steps: 12 configs of width 8."""
    import json

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rnnlab",
            "sweep",
            "demo",
            "--dir",
            str(tmp_path),
            "--steps",
            "30",
            "--workers",
            "1",
            "--stack",
            "12",
            "--state-size",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "12 runs in" in result.stdout
    configs = json.loads((tmp_path / "configs.json").read_text())
    entries = configs["configs"]
    widths = {entry["arch"]["state_size"] for entry in entries}
    assert widths == {8}
    assert len(entries) == 12
