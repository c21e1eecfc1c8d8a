"""The shipped solved example policy, and the ``rnnlab twc`` command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from rnnlab.twc.cli import register
from rnnlab.twc.rollout import evaluate
from rnnlab.twc.td3 import load_policy


def main(argv: list[str]) -> int:
    """``rnnlab`` with only this system registered (isolated from the other systems)."""
    parser = argparse.ArgumentParser(prog="rnnlab")
    register(parser.add_subparsers(dest="system"))
    args = parser.parse_args(argv)
    return int(args.handler(args))


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "twc" / "es_seed0_final.json"


def test_shipped_es_policy_solves_mountain_car_over_100_fixed_seeds() -> None:
    torch.set_num_threads(1)
    recorded = json.loads(EXAMPLE.read_text())["eval"]
    summary = evaluate(load_policy(EXAMPLE), 100).summary()
    assert summary["mean_return"] >= 90.0
    assert summary["success_rate"] == 1.0
    assert summary["mean_return"] == pytest.approx(recorded["mean_return"], abs=0.5)


def test_cli_help_validate_and_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["twc", "--help"])
    assert exit_info.value.code == 0
    assert "rnnlab twc train --algo es" in capsys.readouterr().out
    assert main(["twc", "validate", "--runs", "4", "--steps", "40", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "exact float64" in out
    assert "NO" not in out
    assert (tmp_path / "twc-validate" / "comparison.png").exists()
    assert main(["twc", "eval", str(EXAMPLE), "--episodes", "5", "--backend", "batched"]) == 0
    assert "success 100%" in capsys.readouterr().out


def test_td3_ctrl_c_stops_saves_final_and_resumes(tmp_path: Path) -> None:
    """SIGINT during `rnnlab twc train --algo td3`: exit 130 with a resumable 'final'."""
    import queue
    import signal
    import subprocess
    import sys
    import threading

    command = [sys.executable, "-m", "rnnlab", "twc", "train", "--algo", "td3", "--out"]
    small = ["--warmup", "64", "--envs", "2", "--batch-size", "8", "--eval-every", "10000000"]
    process = subprocess.Popen(
        [*command, str(tmp_path), "--steps", "10000000", *small, "--no-progress"],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(
        target=lambda: [lines.put(line) for line in iter(process.stderr.readline, "")],  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    try:
        while "Ctrl-C stops" not in lines.get(timeout=120):
            pass
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=180)
    finally:
        process.kill()
    assert process.returncode == 130
    assert "final:" in stdout
    folder = tmp_path / "twc-td3-seed0"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["interrupted"] is True
    assert (folder / "final.safetensors").exists()
    steps = metrics["env_steps"]
    done = subprocess.run(
        [*command, str(tmp_path / "resumed"), "--resume", str(folder), "--steps", str(steps + 8)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = json.loads((tmp_path / "resumed" / "twc-td3-seed0" / "metrics.json").read_text())
    assert resumed["env_steps"] == steps + 8
    assert resumed["interrupted"] is False
