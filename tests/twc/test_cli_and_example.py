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
