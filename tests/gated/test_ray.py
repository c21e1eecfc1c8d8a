"""The Ray executor on a local Ray instance (one CPU, no dashboard)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnlab.gated.sweep import Sweep, grid_configs

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'rnnlab[ray]')")

TRAINING = {
    "steps": 12,
    "batch_size": 2,
    "window": 7,
    "log_every": 4,
    "eval_windows": 1,
    "eval_length": 6,
    "device": "cpu",
}


@pytest.mark.slow
def test_ray_executor_runs_every_config_once(tmp_path: Path) -> None:
    from rnnlab.gated.executors import run_ray

    sweep = Sweep(tmp_path)
    grid = {
        "grid": {
            "use_new_state": [True, False],
            "use_old_state": [True, False],
            "n_layers": [1],
            "state_size": [4],
        }
    }
    sweep.init(grid_configs(grid), TRAINING)
    finished = run_ray(tmp_path, num_cpus=1)
    ids = [c["run_id"] for c in sweep.load()["configs"]]
    assert sorted(finished) == sorted(ids)
    assert {s.status for s in sweep.states()} == {"done"}
    assert run_ray(tmp_path, num_cpus=1) == []  # nothing left: no task submitted
