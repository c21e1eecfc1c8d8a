"""The feed client: receive waitress messages over ZeroMQ as :class:`FeedChunk` objects.

:class:`FeedClient` connects a SUB (``mode="sub"``, for a ``pub`` server) or PULL
(``mode="pull"``, for a ``push`` server) socket, decodes the rnnlab binary protocol v1 and the
seed's JSON frames (detected per message), and keeps track of lost frames from the ``seq``
numbers (PROTOCOL.md §2.1). Every wait is bounded by ``timeout``; a silent feed raises
:class:`rnnlab.FeedTimeout` instead of hanging. Malformed messages are counted, logged and
skipped.

Example (a server started by :func:`rnnlab.feed.serve`):

>>> from rnnlab.feed import FeedClient, serve
>>> config = {"pub_to": "tcp://127.0.0.1:*", "mode": "push", "chunk": 100,
...           "as_fast_as_possible": True, "max_frames": 1000}
>>> with serve(config) as server, FeedClient(server.endpoint, mode="pull") as client:
...     frames = sum(chunk.n_frames for chunk in client)      # stops at the end of stream
>>> frames, client.dropped
(1000, 0)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import numpy as np
import zmq

from rnnlab.errors import ConfigError, FeedError, FeedProtocolError, FeedTimeout
from rnnlab.feed.protocol import FeedChunk, decode_message

__all__ = ["FeedClient"]

log = logging.getLogger("rnnlab.feed")

_MODES = {"sub": zmq.SUB, "pull": zmq.PULL}


class FeedClient:
    """A connected receiver of one waitress stream.

    Args:
        endpoint: The server's endpoint, e.g. ``server.endpoint`` or ``"tcp://127.0.0.1:1201"``.
        topic: Only messages whose part 0 equals this topic exactly are accepted (others are
            ignored and counted in ``other_topic_messages``). In ``sub`` mode it is also the
            subscription (a byte prefix, hence the exact comparison). None accepts every topic
            (and subscribes to everything).
        mode: ``"sub"`` for a server in ``pub`` mode (the default; lossy), ``"pull"`` for a
            server in ``push`` mode (lossless).
        timeout: Seconds that :meth:`recv` and the iterators wait for the next message before
            raising :class:`rnnlab.FeedTimeout` (positive and finite).
        hwm: Receive high-water mark in messages (ZeroMQ's ``RCVHWM``; 0 = unlimited). A
            PUB server drops messages for a subscriber whose queue is full.
        context: The ZeroMQ context (default: ``zmq.Context.instance()``).

    Counters (for every stream received so far):
        ``received_frames``, ``received_messages`` (data messages), ``received_bytes`` (all
        parts of every accepted message), ``dropped`` (frames lost, from ``seq`` gaps),
        ``bad_messages`` and ``last_error`` (malformed messages, skipped),
        ``other_topic_messages``, ``restarts`` (a ``seq`` went backwards: a new stream),
        ``first_seq`` (the ``seq`` of the first message received: in ``sub`` mode the
        stream may have begun before the client joined; those frames are not counted as
        dropped), ``eos`` (the last end-of-stream message, or None).

    ``dropped`` follows PROTOCOL.md: a data message whose ``seq`` is larger than the previous
    message's ``seq + n_frames`` adds the difference, and so does an end-of-stream message
    whose ``seq`` (the total frames produced) is larger. Seed-json frames carry no ``seq``, so
    nothing is counted for them; their ``seq`` is the client's own frame counter. With several
    PULL peers on one PUSH server each peer sees gaps by design.

    Example:

    >>> client = FeedClient("tcp://127.0.0.1:1201", mode="sub", timeout=2.0)  # doctest: +SKIP
    >>> for chunk in client:                                                 # doctest: +SKIP
    ...     learn(chunk.times, chunk.values)
    >>> client.close()                                                       # doctest: +SKIP
    """

    def __init__(
        self,
        endpoint: str,
        topic: str | None = "waitress",
        mode: str = "sub",
        timeout: float = 5.0,
        hwm: int = 1000,
        *,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        if mode not in _MODES:
            raise ConfigError(f"mode: unknown value {mode!r}; allowed: 'sub', 'pull'")
        timeout = float(timeout)
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ConfigError(
                f"timeout: must be a positive finite number of seconds, got {timeout}"
            )
        if not isinstance(hwm, int) or hwm < 0:
            raise ConfigError(f"hwm: must be an integer ≥ 0, got {hwm!r}")
        self.endpoint = endpoint
        self.topic = topic
        self.mode = mode
        self.timeout = timeout
        self.hwm = hwm
        self._topic_bytes = None if topic is None else topic.encode()
        self.received_frames = 0
        self.received_messages = 0
        self.received_bytes = 0
        self.dropped = 0
        self.bad_messages = 0
        self.other_topic_messages = 0
        self.restarts = 0
        self.last_error: FeedProtocolError | None = None
        self.first_seq: int | None = None
        self.eos: FeedChunk | None = None
        self._expected: int | None = None  # seq of the next frame of the current stream
        self._seed_seq = 0  # frame counter for seed-json frames
        self._closed = False
        ctx = context if context is not None else zmq.Context.instance()
        self._socket: zmq.Socket[bytes] = ctx.socket(_MODES[mode])
        try:
            self._socket.setsockopt(zmq.LINGER, 0)
            self._socket.setsockopt(zmq.RCVHWM, hwm)
            if mode == "sub":
                self._socket.setsockopt(zmq.SUBSCRIBE, self._topic_bytes or b"")
            self._socket.connect(endpoint)
        except zmq.ZMQError as error:
            self._socket.close(linger=0)
            self._closed = True
            raise FeedError(f"cannot connect a {mode} socket to {endpoint!r}: {error}") from None

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the socket (idempotent). Later :meth:`recv` calls raise :class:`FeedError`."""
        if not self._closed:
            self._closed = True
            self._socket.close(linger=0)

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def __enter__(self) -> FeedClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"FeedClient({self.endpoint!r}, topic={self.topic!r}, mode={self.mode!r}, "
            f"{state}, frames={self.received_frames}, dropped={self.dropped}, "
            f"bad={self.bad_messages})"
        )

    # ------------------------------------------------------------------ receiving
    def recv(self, timeout: float | None = None) -> FeedChunk:
        """The next message of the stream (data, or the end-of-stream message with ``eos``).

        Malformed messages and other topics are skipped (and counted); the wait for a good
        message is bounded by ``timeout`` seconds (default: the client's ``timeout``).

        Raises:
            FeedTimeout: Nothing acceptable arrived within ``timeout``.
            FeedError: The client is closed.
        """
        if self._closed:
            raise FeedError("the feed client is closed")
        wait = self.timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + wait
        socket = self._socket
        while True:
            try:
                parts = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not socket.poll(max(1, math.ceil(remaining * 1000))):
                    raise FeedTimeout(
                        f"no message from {self.endpoint} ({self.mode}, topic "
                        f"{self.topic!r}) within {wait:g} s"
                    ) from None
                continue
            chunk = self._accept(parts)
            if chunk is not None:
                return chunk
            if time.monotonic() > deadline:
                raise FeedTimeout(
                    f"no valid message from {self.endpoint} within {wait:g} s "
                    f"({self.bad_messages} malformed, {self.other_topic_messages} other topic)"
                )

    def _accept(self, parts: list[bytes]) -> FeedChunk | None:
        """Check the topic, decode and account one message; None if it is skipped."""
        if self._topic_bytes is not None and (not parts or parts[0] != self._topic_bytes):
            self.other_topic_messages += 1
            return None
        try:
            chunk = decode_message(parts, seed_seq=self._seed_seq)
        except FeedProtocolError as error:
            self._bad(error)
            return None
        self.received_bytes += len(parts[0]) + len(parts[1]) + len(parts[2])  # 3, checked
        if chunk.format == "seed-json":
            self._seed_seq += 1
        else:
            self._track_seq(chunk)
        if chunk.eos:
            self.eos = chunk
        else:
            self.received_messages += 1
            self.received_frames += chunk.n_frames
        return chunk

    def _track_seq(self, chunk: FeedChunk) -> None:
        if self.first_seq is None:
            self.first_seq = chunk.seq
        expected = self._expected
        if expected is not None:
            if chunk.seq > expected:
                self.dropped += chunk.seq - expected
            elif chunk.seq < expected:
                self.restarts += 1  # the server restarted: a new stream from seq 0
                log.info(
                    "feed %s: seq went back from %d to %d; a new stream",
                    self.endpoint,
                    expected,
                    chunk.seq,
                )
        # After the end of a stream, the next data message starts a new one.
        self._expected = None if chunk.eos else chunk.end_seq

    def _bad(self, error: FeedProtocolError) -> None:
        self.bad_messages += 1
        self.last_error = error
        if self.bad_messages == 1:
            log.warning(
                "feed %s: skipped a malformed message: %s (further ones are counted in "
                "FeedClient.bad_messages and logged at DEBUG level)",
                self.endpoint,
                error,
            )
        else:
            log.debug("feed %s: skipped a malformed message: %s", self.endpoint, error)

    def __iter__(self) -> Iterator[FeedChunk]:
        """Data chunks until the end-of-stream message (which is not yielded).

        Each step waits at most ``timeout`` and raises :class:`rnnlab.FeedTimeout` if the
        feed is silent (seed-json streams have no end-of-stream message: break out yourself,
        or catch the timeout).
        """
        while True:
            chunk = self.recv()
            if chunk.eos:
                return
            yield chunk

    def frames(self) -> Iterator[tuple[float, np.ndarray]]:
        """``(time, values[C])`` per frame until the end of stream (see :meth:`__iter__`).

        Example:

        >>> for t, x in client.frames():  # doctest: +SKIP
        ...     print(f"{t:.3f}", x)
        """
        for chunk in self:
            times = chunk.times.tolist()
            for i, t in enumerate(times):
                yield t, chunk.values[i]
