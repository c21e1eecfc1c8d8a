"""The CTRNN demo: learn to generate a sine and a phase-shifted square wave from a constant input.

``rnnlab ctrnn demo`` fits a 32-neuron CTRNN (tanh, exponential Euler, linear readout) with
full BPTT and Adam, then writes ``loss.png``, ``fit.png`` (targets vs outputs, including a
continuation past the training window), ``metrics.json``, ``config.json`` and ``model.npz`` into
a fresh run folder.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rnnlab.ctrnn.model import CTRNN
from rnnlab.run_folder import RunFolder

__all__ = ["DemoConfig", "demo_task", "run_demo"]


@dataclass(frozen=True)
class DemoConfig:
    n_neurons: int = 32
    frames: int = 200
    dt: float = 0.05
    substeps: int = 2
    period: float = 5.0
    amplitude: float = 0.8
    square_sharpness: float = 4.0
    epochs: int = 1500
    lr: float = 1e-2
    clip_norm: float = 10.0
    seed: int = 0


def demo_task(
    config: DemoConfig, frames: int | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Inputs [T, 1] (constant 1) and targets [T, 2]: a sine and a square wave a quarter period
    behind it (a tanh-softened square, so that it is differentiable), read at frame ends."""
    count = config.frames if frames is None else frames
    t = config.dt * np.arange(1, count + 1)
    omega = 2 * np.pi / config.period
    sine = np.sin(omega * t)
    square = np.tanh(config.square_sharpness * np.sin(omega * t - np.pi / 2))
    return np.ones((count, 1)), config.amplitude * np.stack([sine, square], axis=1)


def build_network(config: DemoConfig) -> CTRNN:
    return CTRNN(
        config.n_neurons,
        1,
        2,
        activation="tanh",
        integrator="exp_euler",
        readout="linear",
        tau=0.5,
        seed=config.seed,
    )


def run_demo(
    config: DemoConfig | None = None,
    root: str = "runs",
    progress: bool = True,
) -> tuple[RunFolder, dict[str, Any]]:
    """Fit the demo network, write the run folder, and return it with the metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = config or DemoConfig()
    folder = RunFolder.create(root)
    folder.write_json("config.json", {"task": "ctrnn-demo", **asdict(config)})
    x, target = demo_task(config)
    net = build_network(config)
    started = time.perf_counter()
    history = net.fit(
        x,
        target,
        dt=config.dt,
        substeps=config.substeps,
        epochs=config.epochs,
        lr=config.lr,
        clip_norm=config.clip_norm,
        progress=progress,
    )
    seconds = time.perf_counter() - started
    final_loss, _ = net.loss_and_grad(x, target, dt=config.dt, substeps=config.substeps)
    x_long, target_long = demo_task(config, frames=2 * config.frames)
    y_long = net.run(x_long, dt=config.dt, substeps=config.substeps, s0=np.zeros(net.n_neurons))
    continuation_mse = float(np.mean((y_long[config.frames :] - target_long[config.frames :]) ** 2))
    metrics = {
        "initial_loss": history["loss"][0] if history["loss"] else final_loss,
        "final_loss": final_loss,
        "best_loss": min([*history["loss"], final_loss]),
        "continuation_mse": continuation_mse,
        "epochs": config.epochs,
        "fit_seconds": seconds,
        "epochs_per_second": config.epochs / seconds if seconds > 0 else None,
    }
    folder.write_json("metrics.json", metrics)
    net.save(folder / "model.npz")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.semilogy(history["loss"])
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean squared error")
    ax.set_title("CTRNN demo: training loss")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    folder.save_figure("loss.png", fig)
    plt.close(fig)

    t = config.dt * np.arange(1, 2 * config.frames + 1)
    fig, axes = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    for k, (ax, name) in enumerate(zip(axes, ("sine", "square wave (phase-shifted)"), strict=True)):
        ax.plot(t, target_long[:, k], color="0.6", lw=3, label="target")
        ax.plot(t, y_long[:, k], color="C3", lw=1.5, label="CTRNN output")
        ax.axvspan(
            t[config.frames], t[-1], color="C0", alpha=0.08, label="past the training window"
        )
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel("time")
    fig.suptitle(f"CTRNN demo: final training MSE {final_loss:.2e}")
    fig.tight_layout()
    folder.save_figure("fit.png", fig)
    plt.close(fig)
    return folder, metrics
