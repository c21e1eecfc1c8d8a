"""The rnnlab exception hierarchy.

Every error rnnlab raises on purpose derives from :class:`RnnlabError`. Errors about bad input
also derive from :class:`ValueError`, so ``except ValueError`` keeps working. The Rust extension
raises these same classes (it maps its error enum to them in one place).
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "FeedError",
    "FeedProtocolError",
    "FeedTimeout",
    "InternalError",
    "RnnlabError",
    "ShapeError",
]


class RnnlabError(Exception):
    """Base class of every error raised by rnnlab."""


class ConfigError(RnnlabError, ValueError):
    """A setting or value is outside what is allowed; the message names the field."""


class ShapeError(RnnlabError, ValueError):
    """An array has the wrong shape; the message names the argument and the expected shape."""


class InternalError(RnnlabError, RuntimeError):
    """A bug inside rnnlab (for instance a Rust panic caught at the boundary). Please report it."""


class FeedError(RnnlabError, RuntimeError):
    """A problem with a data feed (the waitress server or a feed connection)."""


class FeedTimeout(FeedError, TimeoutError):  # noqa: N818 (the name the issue specifies)
    """No message arrived within the feed client's timeout."""


class FeedProtocolError(FeedError, ValueError):
    """A message does not follow the feed protocol (wrong version, bad header, short payload)."""
