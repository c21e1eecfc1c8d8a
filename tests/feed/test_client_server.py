"""FeedClient against the real waitress binary (and fake servers) on 127.0.0.1.

Every server binds a kernel-chosen free port; every wait is bounded (client timeouts, bounded
server waits); nothing sleeps to synchronise.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

import rnnlab
from rnnlab.feed import FeedChunk, FeedClient, encode_message, serve

from .conftest import expected_values, loopback_config

CHANNELS = [
    # The prototype's channel: 100 + 10·sin(k).
    {"name": "proto"},
    {
        "name": "mix",
        "step": 0.5,
        "offsetv": 1.0,
        "minv": -1.0,
        "maxv": 2.0,
        "waves": [
            {"wave": "Sinusoidal", "period": 40, "offset": 3},
            {"wave": "Spike", "period": 7, "offset": 2, "maxv": 5.0, "minv": 0.0},
        ],
    },
    {
        "name": "decay",
        "offsetv": 0.0,
        "waves": [{"wave": "SpikeDecay", "period": 10, "decay": 2.5}, {"wave": "Pwm", "period": 6}],
    },
    {
        "name": "saw",
        "offsetv": -5.0,
        "minv": 1.0,
        "maxv": 4.0,
        "waves": [
            {"wave": "Sawtooth", "period": 9.5, "offset": -3},
            {"wave": "Chirp", "period": 100, "f0": 0.01, "f1": 0.3},
        ],
    },
]


def test_push_stream_values_seq_and_end_of_stream() -> None:
    n_frames, chunk_size, rate = 2500, 64, 50.0
    config = loopback_config(
        mode="push",
        as_fast_as_possible=True,
        max_frames=n_frames,
        chunk=chunk_size,
        rate=rate,
        channels=CHANNELS,
    )
    with serve(config) as server:
        assert server.endpoint.startswith("tcp://127.0.0.1:")
        assert not server.endpoint.endswith(":*")
        assert (server.mode, server.client_mode, server.topic) == ("push", "pull", "waitress")
        chunks: list[FeedChunk] = []
        with FeedClient(server.endpoint, mode="pull", timeout=5.0) as client:
            chunks.extend(client)  # ends at the end-of-stream message
            eos = client.eos
            assert (client.received_frames, client.dropped, client.bad_messages) == (n_frames, 0, 0)
            assert client.received_messages == len(chunks)
            assert client.first_seq == 0
        assert server.wait(timeout=5.0) == 0
    assert eos is not None
    assert (eos.eos, eos.reason, eos.seq, eos.n_frames) == (True, "max_frames", n_frames, 0)
    # No gaps: consecutive seq; full chunks except a partial last one.
    seqs = [c.seq for c in chunks]
    assert seqs == list(range(0, n_frames, chunk_size))
    assert [c.n_frames for c in chunks[:-1]] == [chunk_size] * (len(chunks) - 1)
    assert chunks[-1].n_frames == n_frames - chunk_size * (len(chunks) - 1)
    assert all(c.channels == ("proto", "mix", "decay", "saw") for c in chunks)
    values = np.concatenate([c.values for c in chunks])
    times = np.concatenate([c.times for c in chunks])
    np.testing.assert_allclose(values, expected_values(CHANNELS, n_frames), rtol=1e-12, atol=1e-9)
    # Nominal times t_start + k/rate (as fast as possible: virtual times, PROTOCOL.md §2.3).
    np.testing.assert_allclose(times - times[0], np.arange(n_frames) / rate, rtol=0, atol=1e-6)
    assert abs(times[0] - time.time()) < 60  # Unix epoch seconds


def test_f32_stream_and_frames_iterator() -> None:
    channels = CHANNELS[:2]
    config = loopback_config(
        mode="push",
        as_fast_as_possible=True,
        max_frames=100,
        chunk=30,
        dtype="f32",
        channels=channels,
    )
    with serve(config) as server, FeedClient(server.endpoint, mode="pull") as client:
        frames = list(client.frames())
        assert server.wait(timeout=5.0) == 0
    assert len(frames) == 100
    times = np.array([t for t, _ in frames])
    values = np.stack([x for _, x in frames])
    assert values.dtype == np.float64
    expected = expected_values(channels, 100).astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(np.diff(times), 0.1, atol=1e-6)  # default rate 10/s


def test_pub_mode_slow_consumer_reports_its_drops() -> None:
    # A small queue on both sides and a fast producer: the PUB socket drops for us.
    config = loopback_config(mode="pub", as_fast_as_possible=True, chunk=10, hwm=2)
    with serve(config) as server:
        with FeedClient(server.endpoint, mode="sub", hwm=2, timeout=5.0) as client:
            missing = 0
            previous: FeedChunk | None = None
            for _ in range(200):  # bounded: 200 messages
                chunk = client.recv()
                assert not chunk.eos
                if previous is not None:
                    assert chunk.seq >= previous.end_seq
                    missing += chunk.seq - previous.end_seq
                previous = chunk
                time.sleep(0.001)  # a slow consumer (not synchronisation)
            assert missing > 0
            assert client.dropped == missing
            assert client.received_frames == 200 * 10
            assert client.first_seq is not None
        assert server.stop() == 0


def test_seed_json_frames() -> None:
    # The prototype's single-channel config plus the prototype's envelope.
    config = loopback_config(
        mode="push",
        format="seed-json",
        channel="waitress",
        as_fast_as_possible=True,
        max_frames=50,
        sleep=0.1,
    )
    with serve(config) as server, FeedClient(server.endpoint, mode="pull", timeout=5.0) as client:
        chunks = [client.recv() for _ in range(50)]
        assert server.wait(timeout=5.0) == 0
        # seed-json has no end-of-stream message: the client times out instead of hanging.
        started = time.monotonic()
        with pytest.raises(rnnlab.FeedTimeout):
            client.recv(timeout=0.2)
        assert time.monotonic() - started < 1.0
        assert (client.received_frames, client.dropped, client.bad_messages) == (50, 0, 0)
    assert all(c.format == "seed-json" and c.channels == ("waitress",) for c in chunks)
    assert [c.seq for c in chunks] == list(range(50))  # the client's own counter
    values = np.concatenate([c.values for c in chunks])
    np.testing.assert_allclose(values[:, 0], 100 + 10 * np.sin(np.arange(50)), rtol=1e-12)
    times = np.concatenate([c.times for c in chunks])
    np.testing.assert_allclose(np.diff(times), 0.1, atol=1e-6)


def test_malformed_messages_are_counted_logged_and_skipped(
    push_socket: tuple[zmq.Socket, str], caplog: pytest.LogCaptureFixture
) -> None:
    socket, endpoint = push_socket
    good = encode_message("waitress", 0, 1.0, 0.1, ["a", "b"], np.array([[1.0, 2.0]]))
    header = json.loads(good[1])
    with FeedClient(endpoint, mode="pull", timeout=5.0) as client:
        caplog.set_level(logging.DEBUG, logger="rnnlab.feed")
        socket.send_multipart([b"waitress", json.dumps({**header, "v": 99}).encode(), good[2]])
        socket.send_multipart([b"waitress", good[1], good[2][:-5]])  # truncated payload
        socket.send_multipart([b"waitress", b"\x00garbage{", good[2]])
        socket.send_multipart([b"waitress", good[1]])  # wrong part count
        socket.send_multipart([b"other", *good[1:]])  # another topic: ignored, not bad
        socket.send_multipart(good)
        chunk = client.recv()
        assert chunk.seq == 0
        np.testing.assert_array_equal(chunk.values, [[1.0, 2.0]])
        assert client.bad_messages == 4
        assert client.other_topic_messages == 1
        assert isinstance(client.last_error, rnnlab.FeedProtocolError)
        assert "expected 3 message parts" in str(client.last_error)
        assert client.received_frames == 1
    records = [r for r in caplog.records if r.name == "rnnlab.feed"]
    assert [r.levelno for r in records] == [logging.WARNING] + [logging.DEBUG] * 3
    texts = [r.getMessage() for r in records]
    for text, fragment in zip(
        texts,
        [
            "unsupported protocol version 99",
            "payload has 11 bytes, expected",
            "header is not valid",
            "expected 3 message parts",
        ],
        strict=True,
    ):
        assert fragment in text


def test_drop_and_restart_accounting(push_socket: tuple[zmq.Socket, str]) -> None:
    socket, endpoint = push_socket
    one = np.zeros((5, 1))
    with FeedClient(endpoint, mode="pull", timeout=5.0) as client:
        for seq in (10, 15, 23, 28):  # joined at 10; a gap of 3 frames (20..22)
            socket.send_multipart(encode_message("waitress", seq, 0.0, 1.0, ["x"], one))
        socket.send_multipart(encode_message("waitress", 40, 0.0, 1.0, ["x"], eos=True))
        socket.send_multipart(encode_message("waitress", 0, 0.0, 1.0, ["x"], one))  # next stream
        socket.send_multipart(encode_message("waitress", 2, 0.0, 1.0, ["x"], one))  # restart
        assert [c.seq for c in client] == [10, 15, 23, 28]  # iteration stops at eos
        assert client.first_seq == 10
        assert client.dropped == 3 + (40 - 33)  # the gap, and frames missing before eos
        assert client.eos is not None
        assert client.eos.seq == 40
        assert client.recv().seq == 0
        assert client.recv().seq == 2
        assert client.restarts == 1
        assert client.dropped == 10


def test_timeout_raises_within_the_timeout(push_socket: tuple[zmq.Socket, str]) -> None:
    _, endpoint = push_socket  # bound, but never sends
    with FeedClient(endpoint, mode="pull", timeout=0.3) as client:
        started = time.monotonic()
        with pytest.raises(rnnlab.FeedTimeout, match=r"within 0\.3 s"):
            client.recv()
        took = time.monotonic() - started
        assert 0.29 <= took < 0.8
        started = time.monotonic()
        with pytest.raises(TimeoutError):  # FeedTimeout is a TimeoutError; iteration too
            next(iter(client))
        assert time.monotonic() - started < 0.8
    with pytest.raises(rnnlab.FeedError, match="closed"):
        client.recv()


def test_client_rejects_bad_settings() -> None:
    with pytest.raises(rnnlab.ConfigError, match="mode"):
        FeedClient("tcp://127.0.0.1:1", mode="push")
    with pytest.raises(rnnlab.ConfigError, match="timeout"):
        FeedClient("tcp://127.0.0.1:1", timeout=0)
    with pytest.raises(rnnlab.FeedError, match="cannot connect"):
        FeedClient("nonsense://x")


def test_sigterm_stops_the_server_quickly() -> None:
    config = loopback_config(mode="push", rate=200.0)
    with serve(config) as server, FeedClient(server.endpoint, mode="pull", timeout=5.0) as client:
        assert client.recv().seq == 0
        started = time.monotonic()
        code = server.stop()
        took = time.monotonic() - started
        assert code == 0
        assert took < 2.0
        # The frames still queued, then the end-of-stream message with reason "signal".
        rest = list(client)
        assert client.eos is not None
        assert client.eos.reason == "signal"
        assert client.eos.seq == 1 + sum(c.n_frames for c in rest)
        assert client.dropped == 0
        assert server.stop() == 0  # idempotent
    assert any("stopped (signal)" in line for line in server.stderr_lines())


def test_sigterm_in_push_mode_without_a_peer() -> None:
    with serve(loopback_config(mode="push", as_fast_as_possible=True, chunk=100)) as server:
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 2.0
        assert server.returncode == 0


@pytest.mark.parametrize(
    ("config", "field"),
    [
        pytest.param({"nosie": 0.1}, "nosie", id="unknown-field"),
        pytest.param(
            {"channels": [{"name": "a", "waves": [{"wave": "Spike", "period": 0}]}]},
            "channels[0].waves[0].period",
            id="period-0",
        ),
        pytest.param({"mode": "pull"}, "mode", id="bad-enum"),
    ],
)
def test_invalid_config_raises_config_error(config: dict[str, object], field: str) -> None:
    with pytest.raises(rnnlab.ConfigError) as caught:
        serve(loopback_config(**config))
    assert field in str(caught.value)
    assert "rnnlab-waitress-" not in str(caught.value)  # no temporary file names


def test_config_file_path(tmp_path: Path) -> None:
    path = tmp_path / "feed.json"
    path.write_text(
        json.dumps(loopback_config(mode="push", max_frames=3, as_fast_as_possible=True))
    )
    with serve(path) as server, FeedClient(server.endpoint, mode="pull") as client:
        assert sum(c.n_frames for c in client) == 3
    assert server.returncode == 0
    assert server.config_path == path
    with pytest.raises(rnnlab.ConfigError, match="does not exist"):
        serve(tmp_path / "missing.json")


def test_port_in_use_raises_feed_error() -> None:
    with serve(loopback_config()) as first:
        with pytest.raises(rnnlab.FeedError, match="cannot bind") as caught:
            serve(loopback_config(pub_to=first.endpoint))
        assert not isinstance(caught.value, rnnlab.ConfigError)


def test_missing_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(rnnlab.FeedError, match="cargo build --release -p waitress"):
        serve(loopback_config(), binary=tmp_path / "no-such-waitress")
    monkeypatch.setenv("RNNLAB_WAITRESS", str(tmp_path / "nope"))
    with pytest.raises(rnnlab.FeedError, match="RNNLAB_WAITRESS"):
        serve(loopback_config())


def test_startup_timeout_kills_a_silent_server(tmp_path: Path) -> None:
    script = tmp_path / "silent-waitress"
    script.write_text("#!/bin/sh\nexec sleep 30\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    started = time.monotonic()
    with pytest.raises(rnnlab.FeedTimeout, match="no startup line"):
        serve(loopback_config(), binary=script, startup_timeout=0.3)
    assert time.monotonic() - started < 3.0
    assert os.access(script, os.X_OK)
