"""watch() and the `rnnlab feed watch` command: bounded runs against a real server."""

from __future__ import annotations

import argparse
import time

import matplotlib
import pytest

from rnnlab.feed import serve
from rnnlab.feed.watch import RingBuffer, register, watch

from .conftest import loopback_config

matplotlib.use("Agg")


def test_watch_a_short_stream_until_its_end() -> None:
    config = loopback_config(
        mode="push", rate=200.0, max_frames=240, channels=[{"name": "a"}, {"name": "b"}]
    )
    lines: list[str] = []
    with serve(config) as server:
        stats = watch(server.endpoint, mode="pull", seconds=10, interval=0.25, out=lines.append)
        assert server.wait(timeout=5.0) == 0
    assert stats["eos"]
    assert stats["reason"] == "max_frames"
    assert (stats["frames"], stats["dropped"], stats["bad_messages"]) == (240, 0, 0)
    assert stats["channels"] == ["a", "b"]
    assert set(stats["last_values"]) == {"a", "b"}
    assert 100 < stats["frames_per_second"] < 300  # paced at 200 frames/s
    assert 0.9 < stats["seconds"] < 5.0
    reports = [line for line in lines if "frames/s  frames" in line]
    assert len(reports) >= 3  # one per interval
    assert "last a=" in reports[-1]
    assert any(line.startswith("end of stream (max_frames)") for line in lines)
    assert lines[-1].startswith("total: 240 frame(s)")


def test_watch_with_a_bounded_plot() -> None:
    config = loopback_config(mode="push", as_fast_as_possible=True, chunk=100, max_frames=5000)
    lines: list[str] = []
    with serve(config) as server:
        stats = watch(
            server.endpoint, mode="pull", seconds=10, plot=True, window=50, out=lines.append
        )
    assert stats["frames"] == 5000
    assert any("not interactive" in line for line in lines)  # Agg: told, not silently nothing
    assert stats["plotted_frames"] == 50  # the ring buffer keeps the last `window` frames


def test_watch_a_silent_endpoint_is_bounded_by_seconds() -> None:
    lines: list[str] = []
    started = time.monotonic()
    stats = watch("tcp://127.0.0.1:9", seconds=0.5, interval=0.2, out=lines.append)
    assert time.monotonic() - started < 2.0
    assert stats["frames"] == 0
    assert stats["last_values"] == {}
    assert not stats["eos"]
    assert any(" 0.0 frames/s" in line for line in lines)


def test_ring_buffer_is_bounded() -> None:
    import numpy as np

    ring = RingBuffer(4, 2)
    ring.extend(np.arange(3.0), np.arange(6.0).reshape(3, 2))
    ring.extend(np.arange(3.0, 10.0), np.arange(6.0, 20.0).reshape(7, 2))
    assert len(ring) == 4
    assert ring.times().tolist() == [6.0, 7.0, 8.0, 9.0]
    assert ring.values()[:, 0].tolist() == [12.0, 14.0, 16.0, 18.0]
    ring.extend(np.array([10.0]), np.array([[20.0, 21.0]]))
    assert ring.times().tolist() == [7.0, 8.0, 9.0, 10.0]


def test_register_adds_the_feed_watch_command(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="rnnlab")
    register(parser.add_subparsers(dest="system"))
    args = parser.parse_args(
        ["feed", "watch", "tcp://127.0.0.1:1201", "--mode", "pull", "--seconds", "3", "--plot"]
    )
    assert (args.endpoint, args.mode, args.seconds, args.plot, args.window) == (
        "tcp://127.0.0.1:1201",
        "pull",
        3.0,
        True,
        500,
    )
    assert callable(args.handler)
    with pytest.raises(SystemExit):
        parser.parse_args(["feed", "watch", "--help"])
    help_text = capsys.readouterr().out
    assert "examples:" in help_text
    assert "--window" in help_text


def test_watch_command_handler(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="rnnlab")
    register(parser.add_subparsers(dest="system"))
    config = loopback_config(mode="push", as_fast_as_possible=True, chunk=10, max_frames=30)
    with serve(config) as server:
        args = parser.parse_args(["feed", "watch", server.endpoint, "--mode", "pull"])
        assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "end of stream (max_frames)" in out
    assert "total: 30 frame(s)" in out
