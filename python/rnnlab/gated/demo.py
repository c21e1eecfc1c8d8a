"""``rnnlab sweep demo``: a 12-config sweep on the embedded corpus, end to end, with all plots."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from rnnlab.errors import ConfigError
from rnnlab.gated.sweep import Sweep, grid_configs

__all__ = ["DEMO_GRID", "DEMO_TRAINING", "run_sweep_demo"]

# 3 read-outs (NS, OS, NS+OS) × state gate on/off × residual on/off = 12 configs, 1 layer, S = 32.
DEMO_GRID: dict[str, Any] = {
    "grid": {
        "use_forget_gate": [True],
        "use_state_gate": [True, False],
        "use_new_state": [True, False],
        "use_old_state": [True, False],
        "use_residual": [True, False],
        "n_layers": [1],
        "state_size": [32],
    }
}
DEMO_TRAINING: dict[str, Any] = {
    "steps": 1500,
    "batch_size": 32,
    "window": 250,
    "log_every": 25,
    "eval_windows": 8,
    "eval_length": 512,
    "checkpoint_every_s": 30.0,
    "device": "cpu",
}


def run_sweep_demo(
    sweep_dir: str | os.PathLike[str],
    *,
    workers: int = 2,
    steps: int | None = None,
    stack: int = 1,
    state_size: int = 32,
) -> dict[str, Any]:
    """Init, train (``workers`` processes), examine; returns the examine summary + timing.

    ``state_size`` replaces the grid's S = 32 (the same 12 flag combinations at another width).
    """
    from rnnlab.gated.analysis import examine
    from rnnlab.gated.executors import run_local

    if not isinstance(state_size, int) or isinstance(state_size, bool) or state_size < 1:
        raise ConfigError(f"state_size: must be a positive integer, got {state_size!r}")
    training = dict(DEMO_TRAINING)
    if steps is not None:
        training["steps"] = steps
    grid = {"grid": {**DEMO_GRID["grid"], "state_size": [state_size]}}
    sweep = Sweep(sweep_dir)
    sweep.init(grid_configs(grid), training, stale_after_s=60.0)
    sweep.data_summary()
    started = time.monotonic()
    run_local(sweep_dir, workers=workers, threads=1, heartbeat_s=5.0, stack=stack)
    seconds = time.monotonic() - started
    summary = examine(sweep_dir)
    summary["train_seconds"] = seconds
    summary["configs_per_hour"] = 3600 * summary["runs"] / max(seconds, 1e-9)
    summary["dir"] = str(Path(sweep_dir))
    return summary
