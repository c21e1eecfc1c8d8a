"""The client of the waitress feed server, and :func:`serve` to run one.

- :class:`FeedClient` receives a stream (SUB or PULL) as :class:`FeedChunk` objects
  (``times [n]``, ``values [n, C]`` float64), tracks dropped frames and skips malformed
  messages;
- :func:`decode_message` decodes one message (protocol v1 binary, or the seed's JSON frames);
- :func:`serve` starts the ``waitress`` binary with a config and returns its real endpoint;
- :func:`rnnlab.feed.watch.watch` prints a feed's rate, drops and last values
  (``rnnlab feed watch``).

The wire protocol is specified in ``waitress/PROTOCOL.md``.

Example:

>>> from rnnlab.feed import FeedClient, serve
>>> config = {"pub_to": "tcp://127.0.0.1:*", "mode": "push", "chunk": 100,
...           "as_fast_as_possible": True, "max_frames": 1000,
...           "channels": [{"name": "a"}, {"name": "b"}]}
>>> with serve(config) as server:                                   # doctest: +SKIP
...     with FeedClient(server.endpoint, mode=server.client_mode) as client:
...         for chunk in client:                    # until the end-of-stream message
...             print(chunk.seq, chunk.times.shape, chunk.values.shape)
0 (100,) (100, 2)
100 (100,) (100, 2)
...
"""

from __future__ import annotations

from rnnlab.feed.client import FeedClient
from rnnlab.feed.protocol import FeedChunk, decode_message, encode_message
from rnnlab.feed.server import FeedServer, find_waitress, serve

__all__ = [
    "FeedChunk",
    "FeedClient",
    "FeedServer",
    "decode_message",
    "encode_message",
    "find_waitress",
    "serve",
]
