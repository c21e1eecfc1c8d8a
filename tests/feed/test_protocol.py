"""decode_message: binary v1 and seed-json, and a clear error for each kind of malformed message."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import rnnlab
from rnnlab.feed import FeedChunk, decode_message, encode_message

TOPIC = b"waitress"


def _header(**changes: Any) -> bytes:
    header: dict[str, Any] = {
        "v": 1,
        "seq": 40,
        "ts": 1795431718.366221,
        "dt": 0.1,
        "n_frames": 2,
        "channels": ["sine", "pulses"],
        "dtype": "f64",
        "eos": False,
    }
    header.update(changes)
    return json.dumps({k: v for k, v in header.items() if v is not ...}).encode()


VALUES = np.array([[1.5, -2.0], [3.25, 1e300]])


def test_binary_f64_round_trip() -> None:
    chunk = decode_message([TOPIC, _header(), VALUES.astype("<f8").tobytes()])
    assert isinstance(chunk, FeedChunk)
    assert (chunk.seq, chunk.channels, chunk.eos, chunk.reason) == (
        40,
        ("sine", "pulses"),
        False,
        None,
    )
    assert chunk.format == "binary"
    assert chunk.dt == 0.1
    assert chunk.values.dtype == np.float64
    assert chunk.values.flags.writeable
    np.testing.assert_array_equal(chunk.values, VALUES)
    np.testing.assert_allclose(
        chunk.times, 1795431718.366221 + 0.1 * np.arange(2), rtol=0, atol=1e-6
    )
    assert (chunk.n_frames, chunk.end_seq, len(chunk)) == (2, 42, 2)


def test_binary_f32_is_returned_as_float64() -> None:
    values = np.array([[0.1, 2.0], [-3.5, 7.0]])
    chunk = decode_message([TOPIC, _header(dtype="f32"), values.astype("<f4").tobytes()])
    assert chunk.values.dtype == np.float64
    np.testing.assert_array_equal(chunk.values, values.astype(np.float32).astype(np.float64))


def test_end_of_stream_and_unknown_keys() -> None:
    header = _header(n_frames=0, eos=True, reason="signal", future_key={"x": 1})
    chunk = decode_message([TOPIC, header, b""])
    assert chunk.eos
    assert chunk.reason == "signal"
    assert chunk.values.shape == (0, 2)
    assert chunk.times.shape == (0,)
    # An absent eos means False (PROTOCOL.md §2.1).
    chunk = decode_message([TOPIC, _header(eos=...), VALUES.tobytes()])
    assert not chunk.eos


def test_seed_json_frame() -> None:
    body = b'{"ts":1795431718.3662,"channels":{"waitress":108.41470984807896,"b":-1}}'
    chunk = decode_message([TOPIC, b"feed", body], seed_seq=12)
    assert chunk.format == "seed-json"
    assert chunk.seq == 12
    assert chunk.channels == ("waitress", "b")
    np.testing.assert_array_equal(chunk.values, [[108.41470984807896, -1.0]])
    np.testing.assert_array_equal(chunk.times, [1795431718.3662])
    assert chunk.dt is None


def test_encode_message_round_trips() -> None:
    parts = encode_message("t", 5, 2.0, 0.5, ["a", "b"], VALUES, dtype="f64")
    chunk = decode_message(parts)
    assert parts[0] == b"t"
    assert chunk.seq == 5
    np.testing.assert_array_equal(chunk.values, VALUES)
    eos = decode_message(encode_message("t", 7, 3.0, 0.5, ["a", "b"], eos=True, reason="duration"))
    assert (eos.eos, eos.reason, eos.seq) == (True, "duration", 7)


PAYLOAD = VALUES.tobytes()


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        pytest.param(
            [TOPIC, _header(v=2), PAYLOAD], "unsupported protocol version 2", id="version"
        ),
        pytest.param(
            [TOPIC, _header(v="1"), PAYLOAD], "unsupported protocol version '1'", id="v-str"
        ),
        pytest.param([TOPIC, _header(v=...), PAYLOAD], "no protocol version", id="no-version"),
        pytest.param([TOPIC, b"{not json", PAYLOAD], "header is not valid JSON", id="garbage"),
        pytest.param([TOPIC, b"\xff\xfe", PAYLOAD], "header is not valid UTF-8", id="not-utf8"),
        pytest.param([TOPIC, b"[1, 2]", PAYLOAD], "header must be a JSON object", id="not-object"),
        pytest.param([TOPIC, _header(seq=...), PAYLOAD], "lacks key(s) 'seq'", id="missing-seq"),
        pytest.param(
            [TOPIC, _header(dt=..., channels=...), PAYLOAD],
            "lacks key(s) 'dt', 'channels'",
            id="missing-two",
        ),
        pytest.param(
            [TOPIC, _header(), PAYLOAD[:-3]], "payload has 29 bytes, expected", id="short"
        ),
        pytest.param([TOPIC, _header(), PAYLOAD + b"\0"], "payload has 33 bytes", id="long"),
        pytest.param([TOPIC, _header()], "expected 3 message parts", id="two-parts"),
        pytest.param([TOPIC, _header(), PAYLOAD, b""], "got 4", id="four-parts"),
        pytest.param([], "got 0", id="no-parts"),
        pytest.param([TOPIC, _header(dtype="f16"), PAYLOAD], "'dtype' must be one of", id="dtype"),
        pytest.param([TOPIC, _header(seq=-1), PAYLOAD], "'seq' must be an integer", id="neg-seq"),
        pytest.param([TOPIC, _header(n_frames=2.0), PAYLOAD], "'n_frames' must be", id="float-n"),
        pytest.param([TOPIC, _header(ts="now"), PAYLOAD], "'ts' must be a finite number", id="ts"),
        pytest.param(
            [TOPIC, _header(channels="ab"), PAYLOAD], "'channels' must be a list", id="ch"
        ),
        pytest.param([TOPIC, _header(eos="no"), PAYLOAD], "'eos' must be a boolean", id="eos"),
        pytest.param(
            [TOPIC, b"feed", b"{]"], "seed-json body is not valid JSON", id="seed-garbage"
        ),
        pytest.param([TOPIC, b"feed", b'{"ts": 1}'], "lacks key(s) 'channels'", id="seed-missing"),
        pytest.param(
            [TOPIC, b"feed", b'{"ts": 1, "channels": {"a": "x"}}'],
            "channel 'a' must be a number",
            id="seed-value",
        ),
    ],
)
def test_malformed_messages_raise_a_clear_error(parts: list[bytes], message: str) -> None:
    with pytest.raises(rnnlab.FeedProtocolError) as caught:
        decode_message(parts)
    assert message in str(caught.value)
    # FeedProtocolError is a FeedError and a ValueError.
    assert isinstance(caught.value, rnnlab.FeedError)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("dtype", ["f64", "f32"])
@pytest.mark.parametrize("n_frames", [0, 1, 7])
def test_rust_fast_path_agrees_with_the_python_decoder(dtype: str, n_frames: int) -> None:
    """``bytes`` parts take the Rust decoder; ``bytearray`` parts the Python reference one."""
    rng = np.random.default_rng(n_frames)
    values = rng.normal(size=(n_frames, 3)) * 1e3
    eos = n_frames == 0
    parts = encode_message(
        "waitress", 12, 1795431718.25, 0.01, ["a", "b", "c"], values,
        dtype=dtype, eos=eos, reason="signal" if eos else None,
    )  # fmt: skip
    assert rnnlab._native.decode_feed_v1(parts[1], parts[2]) is not None
    fast = decode_message(parts)
    reference = decode_message([bytearray(part) for part in parts])
    for field in ("seq", "channels", "eos", "reason", "dt", "format"):
        assert getattr(fast, field) == getattr(reference, field), field
    np.testing.assert_array_equal(fast.times, reference.times)
    np.testing.assert_array_equal(fast.values, reference.values)
    assert fast.values.dtype == np.float64
    assert fast.values.flags.writeable
    assert fast.values.shape == (n_frames, 3)


def test_rust_fast_path_declines_what_it_does_not_accept() -> None:
    """A malformed header gives None from Rust, so the Python decoder names the problem."""
    payload = VALUES.astype("<f8").tobytes()
    assert rnnlab._native.decode_feed_v1(_header(v=2), payload) is None
    assert rnnlab._native.decode_feed_v1(_header(), payload[:-1]) is None
    assert rnnlab._native.decode_feed_v1(b"\xff", payload) is None
