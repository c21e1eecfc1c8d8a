"""Online training throughput: rnnlab's OnlineTrainer vs the same online loop written in torch.

Setting (issue 3 §6): N = 64, 10 substeps per frame, a window of 100 frames, one optimiser
update per frame (truncated BPTT over the whole window), 2 channels, float32. Each benchmark call
processes FRAMES new frames on a trainer whose window is already full, so the mean per call
divided by FRAMES is the cost of one frame (advance + update). The torch loop is what a user
would write: advance the running state one frame under ``no_grad``, keep the window in tensors,
and every frame run the torch CTRNN over the window from its stored start state with autograd,
then ``backward()`` and ``torch.optim.Adam``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import pytest
import torch

from rnnlab.ctrnn import CTRNN, OnlineTrainer
from rnnlab.ctrnn.torch_reference import TorchCTRNN

N = 64
SUBSTEPS = 10
WINDOW = 100
CHANNELS = 2
FRAMES = 10  # frames per timed call
RATE = 100.0
LR = 1e-3


def _stream(frames: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    k = np.arange(start, start + frames)
    values = np.stack([100 + 10 * np.sin(2 * np.pi * k / 50), np.cos(2 * np.pi * k / 7)], axis=1)
    return k / RATE, values


def _net() -> CTRNN:
    return CTRNN(
        N,
        CHANNELS,
        CHANNELS,
        activation="tanh",
        integrator="euler",
        readout="linear",
        dtype="float32",
        tau=3 / RATE,
        tau_min=0.2 / RATE,
        seed=3,
    )


def _info(candidate: str) -> dict[str, Any]:
    return {
        "kind": "online",
        "candidate": candidate,
        "n": N,
        "batch": 1,
        "frames": FRAMES,
        "steps": FRAMES,  # the report's "µs / step" column is then µs per frame
        "substeps": SUBSTEPS,
        "window": WINDOW,
        "dtype": "float32",
    }


class TorchOnline:
    """The straightforward torch version of OnlineTrainer (normalisation with the same running
    statistics, one Adam step over the window per frame)."""

    def __init__(self, net: CTRNN) -> None:
        dense = {k: v for k, v in net.params.items() if k != "mask"}
        self.model = TorchCTRNN.from_params(
            dense, activation=net.activation, integrator=net.integrator, dtype=torch.float32
        )
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.state = torch.zeros(1, N)
        self.window: deque[tuple[torch.Tensor, float, torch.Tensor, torch.Tensor]] = deque(
            maxlen=WINDOW
        )
        self.count, self.mean, self.m2 = 0, np.zeros(CHANNELS), np.zeros(CHANNELS)
        self.last: tuple[float, np.ndarray] | None = None

    def _normalise(self, value: np.ndarray) -> np.ndarray:
        scale = np.sqrt(self.m2 / (self.count - 1)) if self.count >= 2 else np.ones(CHANNELS)
        return (value - self.mean) / np.maximum(scale, 1e-6)

    def _update_stats(self, value: np.ndarray) -> None:
        self.count += 1
        delta = value - self.mean
        self.mean = self.mean + delta / self.count
        self.m2 = self.m2 + delta * (value - self.mean)

    def process(self, times: np.ndarray, values: np.ndarray) -> None:
        for t, value in zip(times, values, strict=True):
            if self.last is None:
                self._update_stats(value)
                self.last = (float(t), value)
                continue
            x = torch.tensor(self._normalise(self.last[1]), dtype=torch.float32).view(1, 1, -1)
            target = torch.tensor(self._normalise(value), dtype=torch.float32).view(1, 1, -1)
            duration = float(t) - self.last[0]
            start = self.state
            with torch.no_grad():
                _, states = self.model(x, torch.tensor([duration]), SUBSTEPS, s0=start)
            self.state = states[:, -1]
            self.window.append((x, duration, start, target))
            xs = torch.cat([w[0] for w in self.window], dim=1)
            dts = torch.tensor([w[1] for w in self.window], dtype=torch.float32)
            targets = torch.cat([w[3] for w in self.window], dim=1)
            self.optimizer.zero_grad()
            y, _ = self.model(xs, dts, SUBSTEPS, s0=self.window[0][2])
            loss = torch.mean((y - targets) ** 2)
            loss.backward()
            self.optimizer.step()
            self._update_stats(value)
            self.last = (float(t), value)


@pytest.mark.benchmark(group="online training N=64, 10 substeps, window 100")
def test_online_rnnlab(benchmark: Any) -> None:
    trainer = OnlineTrainer(
        _net(), substeps=SUBSTEPS, window=WINDOW, update_every=1, lr=LR, clip_norm=None
    )
    trainer.process(*_stream(WINDOW + 1))  # fill the window (untimed)
    position = [WINDOW + 1]

    def run() -> None:
        trainer.process(*_stream(FRAMES, position[0]))
        position[0] += FRAMES

    benchmark.extra_info.update(_info("rnnlab"))
    benchmark.pedantic(run, rounds=30, warmup_rounds=1)
    assert trainer.updates >= 30 * FRAMES
    assert np.isfinite(trainer.metrics()["mse"])


@pytest.mark.benchmark(group="online training N=64, 10 substeps, window 100")
def test_online_torch(benchmark: Any) -> None:
    loop = TorchOnline(_net())
    loop.process(*_stream(WINDOW + 1))
    position = [WINDOW + 1]

    def run() -> None:
        loop.process(*_stream(FRAMES, position[0]))
        position[0] += FRAMES

    benchmark.extra_info.update(_info("torch_online"))
    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    assert len(loop.window) == WINDOW
