"""Executors of a sweep: a local process pool (default) and Ray tasks.

Both run the same claim protocol of :mod:`rnnlab.gated.sweep`, so they can be mixed: local
workers on several machines and Ray tasks may share one sweep folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from rnnlab.errors import ConfigError
from rnnlab.gated.sweep import Sweep, run_worker

__all__ = ["run_local", "run_ray"]


def run_local(
    sweep_dir: str | os.PathLike[str],
    *,
    workers: int = 1,
    threads: int = 1,
    progress: bool = False,
    heartbeat_s: float = 10.0,
    stack: int = 1,
) -> int:
    """Train with ``workers`` processes (this one when 1); returns the number of runs finished
    by this process (``workers == 1``) or the number of worker processes that failed."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers: must be an integer >= 1, got {workers!r}")
    Sweep(sweep_dir).load()  # fail early on a missing sweep
    if workers == 1:
        run_worker(
            sweep_dir, progress=progress, threads=threads, heartbeat_s=heartbeat_s, stack=stack
        )
        return 0
    command = [
        sys.executable,
        "-m",
        "rnnlab",
        "sweep",
        "train",
        "--dir",
        str(sweep_dir),
        "--workers",
        "1",
        "--threads",
        str(threads),
        "--heartbeat",
        str(heartbeat_s),
        "--stack",
        str(stack),
        "--no-progress",
    ]
    processes = [subprocess.Popen(command) for _ in range(workers)]
    return sum(1 for p in processes if p.wait() != 0)


def _ray_trial(sweep_dir: str, run_id: str, heartbeat_s: float) -> list[str]:
    return run_worker(sweep_dir, only={run_id}, max_runs=1, threads=1, heartbeat_s=heartbeat_s)


def run_ray(
    sweep_dir: str | os.PathLike[str],
    *,
    address: str | None = None,
    gpus_per_trial: float | None = None,
    num_cpus: int | None = None,
    heartbeat_s: float = 10.0,
    init_kwargs: dict[str, Any] | None = None,
) -> list[str]:
    """Run every pending or stale config as one Ray task; returns the finished run ids.

    ``gpus_per_trial`` defaults to 0.5 when CUDA is available (two trials per GPU, as upstream
    ran two processes per RTX 3090) and 0 otherwise. ``address`` connects to a running cluster
    (``"auto"`` or ``ray://host:10001``); without it a local Ray instance is started.
    """
    try:
        import ray
    except ImportError as error:  # pragma: no cover - ray is an optional extra
        raise ConfigError("executor: ray is not installed; pip install 'rnnlab[ray]'") from error
    import torch

    if gpus_per_trial is None:
        gpus_per_trial = 0.5 if torch.cuda.is_available() else 0.0
    if gpus_per_trial < 0:
        raise ConfigError(f"gpus_per_trial: must be >= 0, got {gpus_per_trial!r}")
    sweep = Sweep(sweep_dir)
    todo = [s.run_id for s in sweep.states() if s.status in ("pending", "stale")]
    if not todo:
        return []
    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address is not None:
            kwargs["address"] = address
        if num_cpus is not None and address is None:
            kwargs["num_cpus"] = num_cpus
        kwargs.update(init_kwargs or {})
        ray.init(**kwargs)
    try:
        task = ray.remote(num_cpus=1, num_gpus=gpus_per_trial)(_ray_trial)
        path = str(Path(sweep_dir).resolve())
        finished = ray.get([task.remote(path, run_id, heartbeat_s) for run_id in todo])
    finally:
        if started_here:
            ray.shutdown()
    return [run_id for done in finished for run_id in done]
