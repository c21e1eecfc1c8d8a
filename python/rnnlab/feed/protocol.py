"""Decoding of waitress messages: protocol v1 (binary) and the seed's JSON frames.

The wire format is specified in ``waitress/PROTOCOL.md``. Every message has three parts:

- binary v1: ``[topic, JSON header, payload]``, the payload being ``n_frames × C``
  little-endian ``f64``/``f32`` values, frame-major;
- seed-json: ``[topic, b"feed", {"ts": <number>, "channels": {"<name>": <number>, ...}}]``,
  one frame per message, without ``seq`` and without an end-of-stream message.

:func:`decode_message` tells the two apart by part 1 and returns a :class:`FeedChunk`. It is
stateless: it neither checks the topic nor tracks ``seq`` (that is :class:`FeedClient`'s job).

Example:

>>> import json
>>> import numpy as np
>>> header = {"v": 1, "seq": 4, "ts": 10.0, "dt": 0.5, "n_frames": 2,
...           "channels": ["a", "b"], "dtype": "f64", "eos": False}
>>> payload = np.array([[1.0, 2.0], [3.0, 4.0]], dtype="<f8").tobytes()
>>> chunk = decode_message([b"waitress", json.dumps(header).encode(), payload])
>>> chunk.seq, chunk.times.tolist(), chunk.values[:, 1].tolist(), chunk.channels
(4, [10.0, 10.5], [2.0, 4.0], ('a', 'b'))
>>> decode_message([b"waitress", b"feed", b'{"ts": 3.5, "channels": {"x": 1.25}}']).values
array([[1.25]])
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from rnnlab._native import decode_feed_v1
from rnnlab.errors import FeedProtocolError

__all__ = [
    "DTYPES",
    "PROTOCOL_VERSION",
    "SEED_JSON_MARKER",
    "FeedChunk",
    "decode_message",
    "encode_message",
]

PROTOCOL_VERSION: Final = 1
"""The binary protocol version this client understands (header key ``v``)."""

SEED_JSON_MARKER: Final = b"feed"
"""Part 1 of a seed-json message."""

DTYPES: Final[dict[str, str]] = {"f64": "<f8", "f32": "<f4"}
"""Header ``dtype`` → little-endian numpy dtype of the payload."""

_REQUIRED_KEYS: Final = ("seq", "ts", "dt", "n_frames", "channels", "dtype")
_EMPTY_TIMES = np.empty(0, dtype=np.float64)
_EMPTY_TIMES.flags.writeable = False
_NUMPY_DTYPES: Final = {name: np.dtype(code) for name, code in DTYPES.items()}

BytesLike = bytes | bytearray | memoryview


@dataclass(eq=False, slots=True)
class FeedChunk:
    """One decoded message: ``n`` consecutive frames of ``C`` channels (``n`` = 0 at the end).

    Treat it as read-only (it is not frozen only because a frozen dataclass costs a
    microsecond more per message, which matters at 50 000 messages per second).

    Attributes:
        seq: Index of the first frame in the stream. For seed-json frames (which carry no
            ``seq``) it is a counter kept by the receiver (:class:`FeedClient` numbers the
            frames it received 0, 1, 2, …; :func:`decode_message` uses its ``seed_seq``).
            In the end-of-stream message, the number of frames the stream produced.
        times: ``[n]`` float64, each frame's nominal time in Unix epoch seconds
            (``ts + i·dt``; seed-json: its ``ts``). See PROTOCOL.md §2.3.
        values: ``[n, C]`` float64 (always float64, also for an ``f32`` stream; a fresh,
            writable, C-contiguous array).
        channels: The channel names, i.e. the columns of ``values``.
        eos: True for the end-of-stream message (``n`` = 0).
        reason: Why the stream ended (``"max_frames"``, ``"duration"``, ``"signal"``) when
            ``eos``; otherwise None.
        dt: Nominal spacing of the frames in seconds (None for seed-json, which has none).
        format: ``"binary"`` or ``"seed-json"``.

    Example:

    >>> import numpy as np
    >>> c = FeedChunk(seq=0, times=np.array([0.0, 0.1]), values=np.zeros((2, 1)), channels=("a",))
    >>> c.n_frames, c.end_seq, len(c)
    (2, 2, 2)
    """

    seq: int
    times: np.ndarray
    values: np.ndarray
    channels: tuple[str, ...]
    eos: bool = False
    reason: str | None = None
    dt: float | None = None
    format: str = "binary"

    @property
    def n_frames(self) -> int:
        """Number of frames (rows of ``values``)."""
        return int(self.values.shape[0])

    @property
    def end_seq(self) -> int:
        """``seq + n_frames``: the ``seq`` the next message of the stream should have."""
        return self.seq + self.n_frames

    def __len__(self) -> int:
        return self.n_frames


def _fail(message: str) -> FeedProtocolError:
    return FeedProtocolError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _load_json(raw: BytesLike, what: str) -> Any:
    try:
        return json.loads(bytes(raw).decode("utf-8"))
    except UnicodeDecodeError as error:
        raise _fail(f"{what} is not valid UTF-8: {error}") from None
    except ValueError as error:  # json.JSONDecodeError
        preview = bytes(raw[:60]) if len(raw) > 0 else b""
        raise _fail(f"{what} is not valid JSON ({error}); it starts with {preview!r}") from None


def decode_message(parts: Sequence[BytesLike], *, seed_seq: int = 0) -> FeedChunk:
    """Decode one multipart message (binary v1 or seed-json) into a :class:`FeedChunk`.

    Args:
        parts: The message parts, e.g. from ``socket.recv_multipart()``. Part 0 (the topic)
            is not checked here.
        seed_seq: The ``seq`` given to a seed-json frame, which carries none.

    Raises:
        FeedProtocolError: The message is malformed. The message names the problem: a part
            count other than 3, a header that is not UTF-8 JSON or not an object, an unknown
            protocol version, a missing or mistyped key, an unknown ``dtype``, or a payload
            whose length is not ``n_frames · C · size``.

    Example:

    >>> decode_message([b"waitress", b'{"v": 2}', b""])
    Traceback (most recent call last):
    ...
    rnnlab.errors.FeedProtocolError: unsupported protocol version 2 (this client speaks v1)
    """
    if len(parts) != 3:
        raise _fail(
            f"expected 3 message parts (topic, header, payload), got {len(parts)}"
            + (f" of sizes {[len(p) for p in parts]}" if len(parts) < 10 else "")
        )
    if bytes(parts[1]) == SEED_JSON_MARKER:
        return _decode_seed_json(parts[2], seed_seq)
    return _decode_binary(parts[1], parts[2])


def _decode_binary(raw_header: BytesLike, payload: BytesLike) -> FeedChunk:
    # Fast path: the Rust decoder (the same code as the server's) takes ~2 µs instead of ~15 µs
    # in Python, which is what makes ≥ 50 000 one-frame messages/s possible. It returns None for
    # anything it does not accept; the Python decoder below is the reference for what is
    # accepted and names what is wrong.
    fast = (
        decode_feed_v1(raw_header, payload)
        if type(raw_header) is bytes and type(payload) is bytes
        else None
    )
    if fast is not None:
        seq, ts, dt, channel_list, eos, reason, times, values = fast
        return FeedChunk(
            seq=seq,
            times=times,
            values=values,
            channels=tuple(channel_list),
            eos=eos,
            reason=reason if eos else None,
            dt=dt,
            format="binary",
        )
    header = _load_json(raw_header, "header")
    if not isinstance(header, dict):
        raise _fail(f"header must be a JSON object, got {type(header).__name__}")
    if "v" not in header:
        raise _fail("header has no protocol version (key 'v')")
    version = header["v"]
    if not _is_int(version) or version != PROTOCOL_VERSION:
        raise _fail(
            f"unsupported protocol version {version!r} (this client speaks v{PROTOCOL_VERSION})"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in header]
    if missing:
        raise _fail(f"header lacks key(s) {', '.join(map(repr, missing))}")
    seq, ts, dt, n_frames = header["seq"], header["ts"], header["dt"], header["n_frames"]
    channels, dtype = header["channels"], header["dtype"]
    eos = header.get("eos", False)
    reason = header.get("reason")
    _check_header_fields(seq, ts, dt, n_frames, channels, dtype, eos, reason)
    eos = bool(eos)  # None (tolerated) → False
    n_channels = len(channels)
    item = _NUMPY_DTYPES[dtype]
    expected = n_frames * n_channels * item.itemsize
    if len(payload) != expected:
        raise _fail(
            f"payload has {len(payload)} bytes, expected n_frames·C·size = {n_frames}·"
            f"{n_channels}·{item.itemsize} = {expected} (dtype {dtype})"
        )
    if n_frames == 0:
        values = np.empty((0, n_channels), dtype=np.float64)
        times = _EMPTY_TIMES
    else:
        values = np.frombuffer(payload, dtype=item).reshape(n_frames, n_channels)
        values = values.astype(np.float64)  # a native, writable copy (also for f32)
        times = ts + dt * np.arange(n_frames, dtype=np.float64)
    return FeedChunk(
        seq=seq,
        times=times,
        values=values,
        channels=tuple(channels),
        eos=eos,
        reason=reason if eos else None,
        dt=float(dt),
        format="binary",
    )


def _check_header_fields(
    seq: Any, ts: Any, dt: Any, n_frames: Any, channels: Any, dtype: Any, eos: Any, reason: Any
) -> None:
    """Raise a :class:`FeedProtocolError` naming the first malformed header field."""
    if not _is_int(seq) or seq < 0:
        raise _fail(f"header 'seq' must be an integer ≥ 0, got {seq!r}")
    if not _is_int(n_frames) or n_frames < 0:
        raise _fail(f"header 'n_frames' must be an integer ≥ 0, got {n_frames!r}")
    if not _is_number(ts) or not math.isfinite(ts):
        raise _fail(f"header 'ts' must be a finite number, got {ts!r}")
    if not _is_number(dt) or not math.isfinite(dt):
        raise _fail(f"header 'dt' must be a finite number, got {dt!r}")
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise _fail(f"header 'channels' must be a list of strings, got {channels!r}")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise _fail(f"header 'dtype' must be one of {sorted(DTYPES)}, got {dtype!r}")
    if eos is not None and not isinstance(eos, bool):
        raise _fail(f"header 'eos' must be a boolean, got {eos!r}")
    if reason is not None and not isinstance(reason, str):
        raise _fail(f"header 'reason' must be a string, got {reason!r}")


def _decode_seed_json(body: BytesLike, seq: int) -> FeedChunk:
    frame = _load_json(body, "seed-json body")
    if not isinstance(frame, dict):
        raise _fail(f"seed-json body must be a JSON object, got {type(frame).__name__}")
    if "ts" not in frame or "channels" not in frame:
        missing = [k for k in ("ts", "channels") if k not in frame]
        raise _fail(f"seed-json body lacks key(s) {', '.join(map(repr, missing))}")
    ts, named = frame["ts"], frame["channels"]
    if not _is_number(ts) or not math.isfinite(ts):
        raise _fail(f"seed-json 'ts' must be a finite number, got {ts!r}")
    if not isinstance(named, dict):
        raise _fail(f"seed-json 'channels' must be an object of numbers, got {named!r}")
    for name, value in named.items():
        if not _is_number(value):
            raise _fail(f"seed-json channel {name!r} must be a number, got {value!r}")
    return FeedChunk(
        seq=seq,
        times=np.array([ts], dtype=np.float64),
        values=np.array([list(named.values())], dtype=np.float64).reshape(1, len(named)),
        channels=tuple(named),
        format="seed-json",
    )


def encode_message(
    topic: str,
    seq: int,
    ts: float,
    dt: float,
    channels: Sequence[str],
    values: np.ndarray | None = None,
    *,
    dtype: str = "f64",
    eos: bool = False,
    reason: str | None = None,
) -> list[bytes]:
    """Encode a binary v1 message (for tests and fake servers; waitress does this in Rust).

    ``values`` is ``[n_frames, C]`` (None or empty for the end-of-stream message).

    Example:

    >>> parts = encode_message("waitress", 0, 1.0, 0.1, ["a"], np.array([[5.0]]))
    >>> decode_message(parts).values
    array([[5.]])
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    array = np.empty((0, len(channels))) if values is None else np.asarray(values)
    if array.ndim != 2 or array.shape[1] != len(channels):
        raise ValueError(f"values must be [n_frames, {len(channels)}], got shape {array.shape}")
    header: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "seq": int(seq),
        "ts": float(ts),
        "dt": float(dt),
        "n_frames": int(array.shape[0]),
        "channels": list(channels),
        "dtype": dtype,
        "eos": bool(eos),
    }
    if eos:
        header["reason"] = reason or "max_frames"
    payload = np.ascontiguousarray(array, dtype=DTYPES[dtype]).tobytes()
    return [topic.encode(), json.dumps(header).encode(), payload]
