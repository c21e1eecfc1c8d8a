"""The main job (``rnnlab demo``): a CTRNN learns a live waitress stream online.

It starts the real ``waitress`` binary on loopback with the shipped default config (two
channels — a sine with a fast ripple around 100, and decaying pulses on a square wave — with
seeded noise), attaches an :class:`~rnnlab.ctrnn.OnlineTrainer` (48-neuron CTRNN, one-step-ahead
prediction, truncated BPTT in Rust) and trains for a bounded time. The last ``held_back``
fraction of the run is evaluated with frozen weights against the naive "repeat the last value"
baseline. Everything goes into ``runs/demo-<timestamp>/``: ``prediction.png``, ``loss.png``,
``metrics.json``, ``model.npz`` and ``config.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnnlab.ctrnn import CTRNN, OnlineTrainer
from rnnlab.errors import ConfigError
from rnnlab.run_folder import RunFolder

__all__ = ["StreamDemoConfig", "default_waitress_config", "run_stream_demo"]

SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "waitress" / "waitress.config.json"


@dataclass(frozen=True)
class StreamDemoConfig:
    duration: float = 60.0
    rate: float = 100.0
    held_back: float = 0.2
    n_neurons: int = 48
    substeps: int = 4
    window: int = 100
    update_every: int = 2
    lr: float = 3e-3
    tau_frames: float = 3.0
    mode: str = "pub"
    seed: int = 0
    waitress_config: str | None = None

    def validate(self) -> None:
        if not (self.duration > 0):
            raise ConfigError(f"duration: must be > 0 seconds, got {self.duration!r}")
        if not (self.rate > 0):
            raise ConfigError(f"rate: must be > 0 frames/s, got {self.rate!r}")
        if not (0 < self.held_back < 1):
            raise ConfigError(f"held_back: must be in (0, 1), got {self.held_back!r}")
        if self.mode not in ("pub", "push"):
            raise ConfigError(f"mode: unknown value {self.mode!r}; allowed: pub, push")


def default_waitress_config(path: str | None = None) -> dict[str, Any]:
    """The shipped ``waitress/waitress.config.json`` (or ``path``) as a dict."""
    source = Path(path) if path else SHIPPED_CONFIG
    if not source.exists():
        raise ConfigError(f"waitress_config: {source} does not exist")
    data: dict[str, Any] = json.loads(source.read_text())
    return data


def _server_config(config: StreamDemoConfig) -> dict[str, Any]:
    server = default_waitress_config(config.waitress_config)
    server.update(
        {
            "pub_to": "tcp://127.0.0.1:*",  # a free loopback port, read back from the startup line
            "mode": config.mode,
            "rate": config.rate,
            # The server stops by itself shortly after the demo's time budget (a safety net).
            "duration": config.duration + 30.0,
        }
    )
    return server


def run_stream_demo(
    config: StreamDemoConfig | None = None,
    root: str = "runs",
    progress: bool = True,
) -> tuple[RunFolder, dict[str, Any]]:
    """Run the main job and return its run folder and metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tqdm.auto import tqdm

    from rnnlab.feed import FeedClient, serve

    config = config or StreamDemoConfig()
    config.validate()
    server_config = _server_config(config)
    folder = RunFolder.create(root, name="demo-" + time.strftime("%Y%m%d-%H%M%S"))
    folder.write_json("config.json", {"demo": asdict(config), "waitress": server_config})

    dt = 1.0 / config.rate
    channels = [channel["name"] for channel in server_config["channels"]]
    net = CTRNN(
        config.n_neurons,
        len(channels),
        len(channels),
        activation="tanh",
        integrator="exp_euler",
        readout="linear",
        tau=config.tau_frames * dt,
        tau_min=0.2 * dt,
        seed=config.seed,
    )
    trainer = OnlineTrainer(
        net,
        substeps=config.substeps,
        window=config.window,
        update_every=config.update_every,
        lr=config.lr,
        history=int(config.duration * config.rate * 1.5) + 1000,
    )
    held_back_at = (1.0 - config.held_back) * config.duration
    first_held_back: int | None = None
    bar = tqdm(total=round(config.duration), unit="s", desc="demo", disable=not progress)
    started = time.monotonic()
    shown = 0
    stop_code = None
    with serve(server_config) as server:
        mode = "sub" if config.mode == "pub" else "pull"
        with FeedClient(
            server.endpoint, topic=server_config["topic"], mode=mode, timeout=10.0
        ) as client:
            for chunk in client:
                elapsed = time.monotonic() - started
                if elapsed >= config.duration:
                    break
                if first_held_back is None and elapsed >= held_back_at:
                    trainer.learning = False
                    first_held_back = trainer.scored
                trainer.process(chunk.times, chunk.values)
                if int(elapsed) > shown:
                    bar.update(int(elapsed) - shown)
                    shown = int(elapsed)
                    recent = trainer.history()["loss"][-200:]
                    bar.set_postfix(
                        frames=trainer.frames,
                        fps=f"{trainer.frames / max(elapsed, 1e-9):.0f}",
                        loss=f"{recent.mean():.3g}" if recent.size else "-",
                        drops=client.dropped,
                        phase="held-back" if first_held_back is not None else "train",
                        refresh=False,
                    )
            dropped = client.dropped
        stop_code = server.stop()
    bar.update(max(0, round(config.duration) - shown))
    bar.close()
    wall = time.monotonic() - started

    history = trainer.history()
    if first_held_back is None:
        first_held_back = trainer.scored
    # Records hold the last `history` scored frames; locate the held-back part within them.
    kept = history["loss"].size
    offset = trainer.scored - kept
    held = slice(max(first_held_back - offset, 0), kept)
    held_mse = float(history["loss"][held].mean()) if kept > held.start else float("nan")
    held_baseline = (
        float(history["baseline_loss"][held].mean()) if kept > held.start else float("nan")
    )
    train_part = slice(0, max(first_held_back - offset, 0))
    metrics = {
        "frames": trainer.frames,
        "scored": trainer.scored,
        "updates": trainer.updates,
        "dropped": int(dropped),
        "frames_per_second": trainer.frames / wall if wall > 0 else None,
        "held_back_frames": int(kept - held.start),
        "held_back_mse": held_mse,
        "held_back_baseline_mse": held_baseline,
        "beats_baseline": bool(held_mse < held_baseline),
        "training_mse": float(history["loss"][train_part].mean()) if train_part.stop else None,
        "training_baseline_mse": (
            float(history["baseline_loss"][train_part].mean()) if train_part.stop else None
        ),
        "loss_units": "mean squared error of normalised values (running mean/std)",
        "server_exit_code": stop_code,
        "wall_seconds": wall,
    }
    folder.write_json("metrics.json", metrics)
    net.save(folder / "model.npz")
    _plot(plt, folder, history, channels, held.start, config)
    return folder, metrics


def _rolling(values: np.ndarray, width: int) -> np.ndarray:
    if values.size < width or width <= 1:
        return values
    kernel = np.ones(width) / width
    return np.convolve(values, kernel, mode="valid")


def _plot(
    plt: Any,
    folder: RunFolder,
    history: dict[str, np.ndarray],
    channels: list[str],
    held_start: int,
    config: StreamDemoConfig,
) -> None:
    times = history["time"]
    if times.size == 0:
        return
    t0 = times[0]
    show = min(times.size, int(20 * config.rate))  # the last 20 seconds
    fig, axes = plt.subplots(len(channels), 1, figsize=(9, 2.6 * len(channels)), sharex=True)
    axes = np.atleast_1d(axes)
    for c, (ax, name) in enumerate(zip(axes, channels, strict=True)):
        ax.plot(
            times[-show:] - t0, history["target"][-show:, c], color="0.55", lw=2.0, label="stream"
        )
        ax.plot(
            times[-show:] - t0,
            history["prediction"][-show:, c],
            color="C3",
            lw=1.0,
            label="one-step prediction",
        )
        if held_start < times.size:
            ax.axvspan(
                times[held_start] - t0,
                times[-1] - t0,
                color="C0",
                alpha=0.08,
                label="held back (frozen)",
            )
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel("stream time (s)")
    fig.suptitle("Online CTRNN on the live waitress stream: the last 20 s")
    fig.tight_layout()
    folder.save_figure("prediction.png", fig)
    plt.close(fig)

    width = max(1, int(config.rate))  # one-second rolling mean
    fig, ax = plt.subplots(figsize=(8, 3.6))
    x = (times - t0)[width - 1 :] if times.size >= width else times - t0
    ax.semilogy(x, _rolling(history["loss"], width), color="C3", label="CTRNN one-step prediction")
    ax.semilogy(
        x, _rolling(history["baseline_loss"], width), color="0.4", label="repeat last value"
    )
    if held_start < times.size:
        ax.axvline(times[held_start] - t0, color="C0", ls="--", lw=1, label="held-back part starts")
    ax.set_xlabel("stream time (s)")
    ax.set_ylabel("MSE (normalised, 1 s mean)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    folder.save_figure("loss.png", fig)
    plt.close(fig)
