"""``rnnlab ctrnn bakeoff``: train steps per second of every backend on the seed's workload.

The seed's ``perf``/``churn_one`` benchmark, done with honest numbers: every step draws a random
input frame and a random target (U[0, 1)), advances the network over that frame (50 substeps),
and takes one SGD step (lr 0.001) on the exact truncated-BPTT gradient over the retained window
of the last 60 frames (3000 substeps), cut into chunks of ``truncation`` frames. As in the seed,
which kept a cache of past states, each chunk starts from the state recorded when its first
frame streamed in (``recorded_states``), so all chunks can start at once; ``--rerun`` instead
re-runs the window with the current weights first (a sequential forward pass per step). Each
backend runs the same seeded stream for a fixed wall time; the table reports train steps/s and
the ratio to ``dense``.

Cases (``--cases``): ``n200`` (the seed's perf: N = 200, density 1), ``n24`` (PERF.md's case:
the seed's SSMNetwork did about 1800 steps/s — of its own, much cheaper, non-BPTT update), and
``n1024`` (N = 1024 at density 0.05, where ``sparse`` should win).
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rnnlab import _native
from rnnlab.ctrnn.model import CTRNN
from rnnlab.errors import ConfigError

__all__ = ["CASES", "BakeoffConfig", "churn", "run_bakeoff"]

CASES: dict[str, tuple[int, float]] = {"n200": (200, 1.0), "n24": (24, 1.0), "n1024": (1024, 0.05)}
BACKEND_NAMES = ("dense", "sparse", "threaded", "distributed")


@dataclass
class BakeoffConfig:
    """Settings of one bake-off (saved as ``config.json``)."""

    cases: list[str] = field(default_factory=lambda: ["n200", "n24", "n1024"])
    backends: list[str] = field(default_factory=lambda: list(BACKEND_NAMES))
    seconds: float = 5.0
    substeps: int = 50
    window: int = 60
    truncation: int = 10
    lr: float = 1e-3
    dt: float = 0.1
    threads: int = 2
    workers: int = 2
    seed: int = 0
    #: start the chunks from the states recorded as the frames streamed in (the seed's cache)
    #: instead of re-running the window with the current weights.
    recorded: bool = True

    def validate(self) -> None:
        for case in self.cases:
            if case not in CASES:
                raise ConfigError(f"cases: unknown {case!r}; allowed: {', '.join(CASES)}")
        for backend in self.backends:
            if backend not in BACKEND_NAMES:
                raise ConfigError(
                    f"backends: unknown {backend!r}; allowed: {', '.join(BACKEND_NAMES)}"
                )
        if not self.seconds > 0:
            raise ConfigError(f"seconds: must be > 0, got {self.seconds!r}")


def _options(backend: str, config: BakeoffConfig) -> dict[str, Any]:
    if backend == "threaded":
        return {"threads": config.threads}
    if backend == "distributed":
        return {"workers": config.workers, "threads": max(1, config.threads // config.workers)}
    if backend == "dense":
        return {"threads": 1}
    return {"threads": 1}


def churn(net: CTRNN, config: BakeoffConfig, seconds: float, min_steps: int = 2) -> dict[str, Any]:
    """Run the churn workload on ``net`` for ``seconds`` (and at least ``min_steps`` steps).

    Returns steps, seconds, steps/s and the mean loss of the timed steps.
    """
    rng = np.random.default_rng(config.seed)
    frames: deque[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = deque(
        maxlen=config.window
    )
    state = np.zeros(net.n_neurons, dtype=net.dtype)
    raw = net.trainable_vector()
    opt = _native.Optimizer("sgd", raw.size, config.lr, momentum=0.0, clip_norm=None)

    def step(train: bool) -> float:
        nonlocal state
        x = rng.uniform(size=(1, net.n_inputs))
        target = rng.uniform(size=(1, net.n_outputs))
        start = state
        net.run(x, dt=config.dt, substeps=config.substeps, s0=start)
        end = net.state
        assert end is not None  # run() always records the state it ends in
        state = end
        frames.append((x[0], target[0], start, state))
        if not train:
            return float("nan")
        xs = np.stack([f[0] for f in frames])
        ys = np.stack([f[1] for f in frames])
        recorded = np.stack([f[3] for f in frames])
        loss, grads = net.loss_and_grad(
            xs,
            ys,
            dt=config.dt,
            substeps=config.substeps,
            truncation=config.truncation,
            s0=frames[0][2],
            recorded_states=recorded if config.recorded else None,
        )
        opt.step(raw, net.trainable_gradient(raw, grads))
        net.set_trainable_vector(raw)
        return loss

    for _ in range(config.window):  # fill the retained window (untimed)
        step(train=False)
    losses = []
    started = time.perf_counter()
    while True:
        losses.append(step(train=True))
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and len(losses) >= min_steps:
            break
    return {
        "steps": len(losses),
        "seconds": elapsed,
        "steps_per_second": len(losses) / elapsed,
        "mean_loss": float(np.mean(losses)),
    }


def run_bakeoff(config: BakeoffConfig, progress: bool = True) -> dict[str, Any]:
    """Every case × backend; returns ``{"config", "machine", "results": [...]}``."""
    config.validate()
    results = []
    for case in config.cases:
        n, density = CASES[case]
        dense_rate = None
        for backend in config.backends:
            net = CTRNN(
                n,
                1,
                1,
                density=density,
                seed=config.seed,
                backend=backend,
                **_options(backend, config),
            )
            try:
                if progress:
                    print(f"  {case}: {backend} ...", flush=True)
                row = churn(net, config, config.seconds)
            finally:
                net.close()
            if backend == "dense":
                dense_rate = row["steps_per_second"]
            row.update(
                case=case,
                n=n,
                density=density,
                backend=backend,
                options=_options(backend, config),
                ratio_to_dense=(row["steps_per_second"] / dense_rate) if dense_rate else None,
            )
            results.append(row)
    return {
        "config": asdict(config),
        "machine": {
            "cpus": os.cpu_count(),
            "RNNLAB_NUM_THREADS": os.environ.get("RNNLAB_NUM_THREADS"),
        },
        "results": results,
    }


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"{'case':<7} {'N':>5} {'density':>7} {'backend':<12} {'steps':>6} {'steps/s':>9} "
        f"{'vs dense':>8}"
    ]
    for r in report["results"]:
        ratio = "" if r["ratio_to_dense"] is None else f"{r['ratio_to_dense']:.2f}x"
        lines.append(
            f"{r['case']:<7} {r['n']:>5} {r['density']:>7.2f} {r['backend']:<12} {r['steps']:>6} "
            f"{r['steps_per_second']:>9.2f} {ratio:>8}"
        )
    return "\n".join(lines)


def main_from_args(args: Any) -> int:
    from rnnlab.run_folder import RunFolder

    config = BakeoffConfig(
        cases=args.cases.split(","),
        backends=args.backends.split(","),
        seconds=args.seconds,
        threads=args.threads,
        workers=args.workers,
        truncation=args.truncation,
        seed=args.seed,
        recorded=not args.rerun,
    )
    config.validate()
    report = run_bakeoff(config, progress=not args.no_progress)
    table = format_table(report)
    print(table)
    from rnnlab.atomic import write_text_atomic

    folder = RunFolder.create(args.out, name="bakeoff-" + time.strftime("%Y%m%d-%H%M%S"))
    folder.write_json("config.json", asdict(config))
    folder.write_json("bakeoff.json", report)
    write_text_atomic(folder / "table.txt", table + "\n")
    print(f"wrote {folder.path}/: bakeoff.json config.json table.txt")
    if args.json:
        print(json.dumps(report, indent=1))
    return 0
