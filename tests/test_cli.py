"""The `rnnlab` command line, run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import rnnlab


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rnnlab", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


def test_version_and_help() -> None:
    done = _run("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"rnnlab {rnnlab.__version__}"
    done = _run("--help")
    assert done.returncode == 0
    assert "ctrnn" in done.stdout
    assert "examples:" in done.stdout
    done = _run("ctrnn", "demo", "--help")
    assert done.returncode == 0
    assert "--epochs" in done.stdout
    assert "examples:" in done.stdout


def test_demo_from_the_command_line(tmp_path: Path) -> None:
    done = _run("ctrnn", "demo", "--epochs", "20", "--out", str(tmp_path), "--no-progress")
    assert done.returncode == 0, done.stderr
    (folder,) = tmp_path.iterdir()
    assert (folder / "fit.png").exists()
    assert (folder / "metrics.json").exists()
    assert "final loss" in done.stdout


def test_bad_option_exits_with_usage() -> None:
    done = _run("ctrnn", "demo", "--epochs", "many")
    assert done.returncode == 2
    assert "--epochs" in done.stderr
