"""Feed throughput and latency into a Python consumer (pytest-benchmark).

Each throughput round starts a real ``waitress`` (push mode, as fast as possible,
``max_frames`` = the round's frames, 2 channels, loopback TCP) and receives every frame through
:class:`rnnlab.feed.FeedClient` into a preallocated ``[frames, 2]`` float64 numpy array, until
the end-of-stream message. The round's time therefore includes the server's start (a few ms)
and the end of stream. Candidates, side by side:

- ``binary_chunked``: protocol v1, ``chunk`` = 1000 frames per message, f64;
- ``binary_per_frame``: protocol v1, one frame per message (isolates the cost of chunking);
- ``seed_json``: the prototype's per-frame JSON (``format: "seed-json"``).

``extra_info`` holds ``frames_per_second``, ``channel_values_per_second`` and
``megabytes_per_second`` (bytes of every message part received, 1 MB = 10⁶ B; JSON text for
seed-json) from the median round, and the targets (asserted by the report, not here):
≥ 2 million channel values/s chunked, ≥ 50 000 frames/s with one binary frame per message
(the seed-json row is the comparison and has no target).

The latency benchmark paces the server at 1000 frames/s, one frame per message, and records
``now − frame time`` for each frame: the receive time (``time.time()``, the real-time clock)
minus the frame's nominal time ``ts = t_start + k/rate`` (PROTOCOL.md §2.3), which the server
computes from the same real-time clock (same machine) and before which it never sends the
frame. The latency is therefore pacing jitter + encode + ZeroMQ over loopback + decode. The
first 200 frames (0.2 s) are left out: frames that fell due before the client connected are
sent late and caught up.

Each benchmark checks its output (frame count, no drops, values equal to the wave formulas),
so a broken client cannot look fast. Total run time about 15 s on 2 cores.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from rnnlab.feed import FeedClient, serve

CHANNELS = [
    {"name": "sine"},  # the prototype's wave: 100 + 10·sin(k)
    {"name": "saw", "offsetv": 0.0, "waves": [{"wave": "Sawtooth", "period": 50}]},
]
TARGET_CHANNEL_VALUES_PER_SECOND = 2e6  # chunked
TARGET_FRAMES_PER_SECOND = 50_000  # per frame
LATENCY_RATE = 1000.0
LATENCY_FRAMES = 2200
LATENCY_WARMUP = 200


def _expected(n_frames: int) -> np.ndarray:
    k = np.arange(n_frames, dtype=np.float64)
    return np.stack([100.0 + 10.0 * np.sin(k), 10.0 * np.mod(k, 50.0) / 50.0], axis=1)


def _config(*, chunk: int, frames: int, fmt: str = "binary", **extra: Any) -> dict[str, Any]:
    return {
        "pub_to": "tcp://127.0.0.1:*",
        "mode": "push",
        "format": fmt,
        "chunk": chunk,
        "as_fast_as_possible": True,
        "max_frames": frames,
        "seed": 1,
        "channels": CHANNELS,
        **extra,
    }


class Round:
    """One timed round: start a server, receive ``frames`` frames into numpy."""

    def __init__(self, config: dict[str, Any], frames: int) -> None:
        self.config = config
        self.frames = frames
        self.seconds: list[float] = []
        self.wire_bytes = 0

    def __call__(self) -> np.ndarray:
        started = time.perf_counter()
        out = np.empty((self.frames, len(CHANNELS)))
        with serve(self.config) as server, FeedClient(server.endpoint, mode="pull") as client:
            if self.config["format"] == "seed-json":  # no end-of-stream message
                for i in range(self.frames):
                    out[i] = client.recv().values[0]
            else:
                position = 0
                for chunk in client:  # until the end of stream
                    out[position : position + chunk.n_frames] = chunk.values
                    position += chunk.n_frames
                assert position == self.frames
                assert client.eos is not None
                assert client.eos.seq == self.frames
            assert client.received_frames == self.frames
            assert (client.dropped, client.bad_messages) == (0, 0)
            self.wire_bytes = client.received_bytes
        self.seconds.append(time.perf_counter() - started)
        return out


def _throughput_info(
    candidate: str, chunk: int, fmt: str, run: Round, **targets: Any
) -> dict[str, Any]:
    seconds = statistics.median(run.seconds)
    frames_per_second = run.frames / seconds
    return {
        # The keys benches/report.py reads for every benchmark:
        "kind": "feed-throughput",
        "candidate": candidate,
        "n": len(CHANNELS),
        "batch": chunk,
        "steps": run.frames,  # the report's "µs / step" is µs per frame
        "frames": run.frames,
        # Feed-specific:
        "format": fmt,
        "chunk": chunk,
        "channels": len(CHANNELS),
        "dtype": "f64",
        "mode": "push",
        "rate_basis": "median round, server start to end of stream",
        "rounds_seconds": run.seconds,
        "frames_per_second": frames_per_second,
        "channel_values_per_second": frames_per_second * len(CHANNELS),
        "megabytes_per_second": run.wire_bytes / seconds / 1e6,
        "payload_megabytes_per_second": frames_per_second * len(CHANNELS) * 8 / 1e6,
        "wire_bytes_per_frame": run.wire_bytes / run.frames,
        **targets,
    }


Measure = Callable[..., Any]


@pytest.mark.parametrize(
    ("candidate", "fmt", "chunk", "frames"),
    [
        pytest.param("binary_chunked", "binary", 1000, 4_000_000, id="binary_chunked"),
        pytest.param("binary_per_frame", "binary", 1, 100_000, id="binary_per_frame"),
        pytest.param("seed_json", "seed-json", 1, 100_000, id="seed_json"),
    ],
)
def test_feed_throughput(
    benchmark: Any, measure: Measure, candidate: str, fmt: str, chunk: int, frames: int
) -> None:
    benchmark.group = "feed throughput: 2 channels, push, loopback TCP"
    run = Round(_config(chunk=chunk, frames=frames, fmt=fmt), frames)
    values = measure(run, budget_s=2.0, min_rounds=3, max_rounds=5)
    np.testing.assert_allclose(values, _expected(frames), rtol=1e-12, atol=1e-9)
    run.seconds = run.seconds[1:]  # drop the untimed warm-up round
    if chunk > 1:
        targets = {
            "target_channel_values_per_second": TARGET_CHANNEL_VALUES_PER_SECOND,
        }
    elif fmt == "binary":
        targets = {"target_frames_per_second": TARGET_FRAMES_PER_SECOND}
    else:  # the seed's format is the comparison, not a target
        targets = {}
    benchmark.extra_info.update(_throughput_info(candidate, chunk, fmt, run, **targets))


def test_feed_latency_at_1khz(benchmark: Any) -> None:
    benchmark.group = "feed latency: 1 kHz, 1 frame per message"
    config = {
        "pub_to": "tcp://127.0.0.1:*",
        "mode": "push",
        "rate": LATENCY_RATE,
        "chunk": 1,
        "max_frames": LATENCY_FRAMES,
        "seed": 1,
        "channels": CHANNELS,
    }
    latencies: list[np.ndarray] = []

    def receive() -> np.ndarray:
        lags = np.empty(LATENCY_FRAMES)
        values = np.empty((LATENCY_FRAMES, len(CHANNELS)))
        with serve(config) as server, FeedClient(server.endpoint, mode="pull") as client:
            for chunk in client:
                now = time.time()
                lags[chunk.seq] = now - chunk.times[0]
                values[chunk.seq] = chunk.values[0]
            assert client.received_frames == LATENCY_FRAMES
            assert client.dropped == 0
        latencies.append(lags[LATENCY_WARMUP:])
        return values

    benchmark.pedantic(receive, rounds=1, iterations=1, warmup_rounds=0)
    (lags,) = latencies
    ms = lags * 1e3
    benchmark.extra_info.update(
        {
            "kind": "feed-latency",
            "candidate": "binary_per_frame_1khz",
            "n": len(CHANNELS),
            "batch": 1,
            "steps": LATENCY_FRAMES,
            "frames": LATENCY_FRAMES,
            "rate": LATENCY_RATE,
            "measured_frames": int(lags.size),
            "warmup_frames": LATENCY_WARMUP,
            "p50_ms": float(np.percentile(ms, 50)),
            "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max()),
            "min_ms": float(ms.min()),
            "clock": (
                "receive time.time() minus the frame's nominal time ts = t_start + k/rate; "
                "both CLOCK_REALTIME on one machine; the server sends no frame before it is due"
            ),
        }
    )
