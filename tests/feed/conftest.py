"""Shared helpers of the feed tests: loopback configs and the wave formulas of waitress/README.md.

Every server binds ``tcp://127.0.0.1:*`` (a kernel-chosen free port, read back from the
startup line); every wait is bounded by a client or server timeout.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import zmq

LOOPBACK = "tcp://127.0.0.1:*"


def loopback_config(**fields: Any) -> dict[str, Any]:
    """A seeded waitress config on a free loopback port, plus ``fields``."""
    return {"pub_to": LOOPBACK, "seed": 7, **fields}


def wave_value(wave: dict[str, Any], x: np.ndarray, minv: float, maxv: float) -> np.ndarray:
    """One wave at arguments ``x`` (README "Waves" table; ``offset`` already in ``x``)."""
    lo, hi = wave.get("minv", minv), wave.get("maxv", maxv)
    kind = wave.get("wave", "Sinusoidal")
    period = wave.get("period", 0)
    if kind == "Sinusoidal":
        return hi * np.sin(x if period == 0 else 2 * math.pi * x / period) + lo
    if kind == "Spike":
        return np.where(np.mod(np.floor(x), period) == 0, hi, lo)
    if kind == "SpikeDecay":
        decay = wave.get("decay", period / 5)
        return lo + (hi - lo) * np.exp(-np.mod(x, period) / decay)
    if kind == "Pwm":
        return np.where(np.mod(np.floor(x / period), 2) == 0, hi, lo)
    if kind == "Sawtooth":
        return lo + (hi - lo) * np.mod(x, period) / period
    if kind == "Chirp":
        f0, f1 = wave.get("f0", 0.02), wave.get("f1", 0.2)
        t = np.mod(x, period)
        return hi * np.sin(2 * math.pi * (f0 * t + (f1 - f0) * t**2 / (2 * period))) + lo
    raise AssertionError(f"no formula for {kind}")


def expected_values(channels: list[dict[str, Any]], n_frames: int) -> np.ndarray:
    """``[n_frames, C]``: ``offsetv + Σ wave(k·step + offset)`` per channel, noise 0."""
    k = np.arange(n_frames, dtype=np.float64)
    columns = []
    for channel in channels:
        step = channel.get("step", 1.0)
        minv, maxv = channel.get("minv", 0.0), channel.get("maxv", 10.0)
        total = np.full(n_frames, channel.get("offsetv", 100.0))
        for wave in channel.get("waves", [{"wave": "Sinusoidal"}]):
            total = total + wave_value(wave, k * step + wave.get("offset", 0.0), minv, maxv)
        columns.append(total)
    return np.stack(columns, axis=1)


@pytest.fixture
def push_socket() -> Iterator[tuple[zmq.Socket, str]]:
    """A Python PUSH socket bound to a free loopback port (a fake, possibly bad, server)."""
    socket = zmq.Context.instance().socket(zmq.PUSH)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SNDTIMEO, 5000)  # a send waits for the peer, but never forever
    socket.bind(LOOPBACK)
    endpoint = socket.getsockopt(zmq.LAST_ENDPOINT).decode()
    try:
        yield socket, endpoint
    finally:
        socket.close(linger=0)
