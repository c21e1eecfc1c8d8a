"""rnnlab: Rust-accelerated research on recurrent neural dynamics.

Subpackages:

- :mod:`rnnlab.ctrnn` — continuous-time RNNs with Rust forward and truncated-BPTT kernels.
- :mod:`rnnlab.feed` — the client of the waitress feed server, and `serve()` to run one.

Errors raised on purpose derive from :class:`rnnlab.RnnlabError`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from rnnlab.errors import (
    ConfigError,
    FeedError,
    FeedProtocolError,
    FeedTimeout,
    InternalError,
    RnnlabError,
    ShapeError,
)

try:
    __version__ = version("rnnlab")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = [
    "ConfigError",
    "FeedError",
    "FeedProtocolError",
    "FeedTimeout",
    "InternalError",
    "RnnlabError",
    "ShapeError",
    "__version__",
]
