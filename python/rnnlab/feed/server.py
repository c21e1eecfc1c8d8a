"""Run the waitress feed server as a subprocess: :func:`serve`.

:func:`serve` writes the config (a dict) to a temporary JSON file, starts ``waitress -f FILE``,
waits (bounded) for its startup line on stdout and reads the real endpoint from it, so
``"pub_to": "tcp://127.0.0.1:*"`` gives a free port. Two daemon threads then drain the
server's stdout and stderr, so a full pipe can never block it; the last lines are kept.

Exit statuses at startup (``waitress/README.md``): 2 (invalid config) raises
:class:`rnnlab.ConfigError` with the server's message, which names the field; 3 (cannot bind,
e.g. the port is in use) and anything else raise :class:`rnnlab.FeedError`.

Example:

>>> from rnnlab.feed import FeedClient, serve
>>> config = {"pub_to": "tcp://127.0.0.1:*", "mode": "push", "rate": 100}
>>> with serve(config) as server:                          # doctest: +SKIP
...     with FeedClient(server.endpoint, mode="pull") as client:
...         chunk = client.recv()
...     code = server.stop()                                # SIGTERM → end of stream, exit 0
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from rnnlab.errors import ConfigError, FeedError, FeedTimeout

__all__ = ["FeedServer", "find_waitress", "serve"]

ENV_BINARY = "RNNLAB_WAITRESS"
"""Environment variable naming the waitress binary."""

REPO_ROOT = Path(__file__).resolve().parents[3]
"""The source checkout this package lives in (python/rnnlab/feed/server.py → parents[3])."""

EXIT_INVALID_CONFIG = 2
EXIT_BIND_FAILED = 3
_KEPT_LINES = 200
_STARTUP_MARK = " streaming: "
_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\[[^\]]*\]|\S+)')


def find_waitress(binary: str | os.PathLike[str] | None = None) -> Path:
    """The waitress executable: ``binary``, else ``$RNNLAB_WAITRESS``, else
    ``<repo>/target/release/waitress``, else ``waitress`` on ``PATH``.

    Raises:
        FeedError: None of them exists (or the one given explicitly does not).
    """
    hint = "build it with `make build` or `cargo build --release -p waitress`"
    for given, origin in ((binary, "argument"), (os.environ.get(ENV_BINARY) or None, ENV_BINARY)):
        if given is not None:
            path = Path(given)
            if path.is_file() and os.access(path, os.X_OK):
                return path
            found = shutil.which(str(given))
            if found:
                return Path(found)
            raise FeedError(f"waitress binary {str(given)!r} (from {origin}) not found; {hint}")
    built = REPO_ROOT / "target" / "release" / "waitress"
    if built.is_file() and os.access(built, os.X_OK):
        return built
    found = shutil.which("waitress")
    if found:
        return Path(found)
    raise FeedError(f"waitress binary not found (looked for {built} and on PATH); {hint}")


class _Drain(threading.Thread):
    """Reads a pipe line by line until EOF, keeping the last lines; optionally queues them."""

    def __init__(self, pipe: IO[bytes], name: str, lines: queue.Queue[str | None] | None) -> None:
        super().__init__(name=name, daemon=True)
        self._pipe = pipe
        self._queue = lines
        self.tail: collections.deque[str] = collections.deque(maxlen=_KEPT_LINES)

    def run(self) -> None:
        try:
            for raw in self._pipe:
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                self.tail.append(line)
                if self._queue is not None:
                    self._queue.put(line)
        except (OSError, ValueError):  # the pipe was closed under us
            pass
        finally:
            if self._queue is not None:
                self._queue.put(None)  # EOF
            with contextlib.suppress(OSError):
                self._pipe.close()


class FeedServer:
    """A running waitress process (made by :func:`serve`).

    Attributes:
        process: The ``subprocess.Popen``.
        endpoint: The bound endpoint from the startup line (the real port for ``:*``).
        startup_line: The server's startup line.
        info: The startup line's ``key=value`` fields (``mode``, ``format``, ``dtype``,
            ``chunk``, ``topic``, ``rate``, ``channels``, ``seed``) as strings, quotes kept.
        config_path: The config file the server was started with.
    """

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        startup_line: str,
        config_path: Path,
        stdout: _Drain,
        stderr: _Drain,
        temp_dir: tempfile.TemporaryDirectory[str] | None,
    ) -> None:
        self.process = process
        self.startup_line = startup_line
        self.config_path = config_path
        self.info: dict[str, str] = dict(_FIELD.findall(startup_line.split(_STARTUP_MARK, 1)[1]))
        if "endpoint" not in self.info:
            process.kill()
            process.wait()
            raise FeedError(f"the waitress startup line has no endpoint: {startup_line!r}")
        self.endpoint: str = self.info["endpoint"]
        self._stdout = stdout
        self._stderr = stderr
        self._temp_dir = temp_dir
        self._lock = threading.Lock()

    @property
    def mode(self) -> str:
        """The server's socket mode, ``"pub"`` or ``"push"`` (the matching client mode is
        ``"sub"`` or ``"pull"``: see :attr:`client_mode`)."""
        return self.info.get("mode", "pub")

    @property
    def client_mode(self) -> str:
        """The :class:`FeedClient` mode that matches the server: ``"sub"`` or ``"pull"``."""
        return "pull" if self.mode == "push" else "sub"

    @property
    def topic(self) -> str:
        """The server's topic (part 0 of every message)."""
        raw = self.info.get("topic", '"waitress"')
        try:
            value = json.loads(raw)
        except ValueError:
            return raw
        return value if isinstance(value, str) else raw

    @property
    def returncode(self) -> int | None:
        """The exit status, or None while the server runs."""
        return self.process.poll()

    def stdout_lines(self) -> list[str]:
        """The last lines (up to 200) the server wrote to stdout, the startup line first."""
        return list(self._stdout.tail)

    def stderr_lines(self) -> list[str]:
        """The last lines (up to 200) the server wrote to stderr (per-wave lines, summary)."""
        return list(self._stderr.tail)

    def wait(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the server to end by itself (``max_frames``,
        ``duration``) and return its exit status.

        Raises:
            FeedTimeout: It is still running (it is left running; call :meth:`stop`).
        """
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise FeedTimeout(
                f"waitress (pid {self.process.pid}) still runs after {timeout:g} s"
            ) from None
        self._cleanup()
        return code

    def stop(self, timeout: float = 5.0) -> int:
        """Stop the server and return its exit status (idempotent).

        Sends SIGTERM (the server flushes, sends the end-of-stream message and exits 0 well
        under a second), waits up to ``timeout`` seconds, then kills it (status -9).
        """
        with self._lock:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self._cleanup()
            return int(self.process.returncode)

    def _cleanup(self) -> None:
        # The drains end at EOF, right after the process exits; bounded joins all the same.
        self._stdout.join(timeout=1.0)
        self._stderr.join(timeout=1.0)
        if self._temp_dir is not None:
            self._temp_dir.cleanup()
            self._temp_dir = None

    def __enter__(self) -> FeedServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        code = self.returncode
        state = "running" if code is None else f"exited {code}"
        return f"FeedServer(endpoint={self.endpoint!r}, pid={self.process.pid}, {state})"


def serve(
    config: Mapping[str, Any] | str | os.PathLike[str],
    binary: str | os.PathLike[str] | None = None,
    startup_timeout: float = 10.0,
) -> FeedServer:
    """Start a waitress server and return it once it is bound (usable as a context manager).

    Args:
        config: The config as a dict (written to a temporary JSON file; a relative CSV
            ``path`` then resolves against that file's temporary folder, so use absolute
            paths) or the path of a JSON config file. See ``waitress/README.md``.
        binary: The waitress executable (default: see :func:`find_waitress`).
        startup_timeout: Seconds to wait for the startup line.

    Raises:
        ConfigError: The server rejected the config (exit 2); the message names the field.
        FeedError: The binary is missing, the endpoint cannot be bound (exit 3, e.g. the port
            is in use), or the server failed otherwise.
        FeedTimeout: No startup line within ``startup_timeout`` (the server is killed).

    Example:

    >>> with serve({"pub_to": "tcp://127.0.0.1:*", "rate": 50}) as server:  # doctest: +SKIP
    ...     print(server.endpoint, server.mode, server.topic)
    tcp://127.0.0.1:40123 pub waitress
    """
    executable = find_waitress(binary)
    temp_dir: tempfile.TemporaryDirectory[str] | None = None
    if isinstance(config, Mapping):
        temp_dir = tempfile.TemporaryDirectory(prefix="rnnlab-waitress-")
        config_path = Path(temp_dir.name) / "waitress.config.json"
        config_path.write_text(json.dumps(dict(config), indent=2))
    else:
        config_path = Path(config)
        if not config_path.is_file():
            raise ConfigError(f"config: {config_path} does not exist")
    try:
        process = subprocess.Popen(
            [str(executable), "-f", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as error:
        if temp_dir is not None:
            temp_dir.cleanup()
        raise FeedError(f"cannot start {executable}: {error}") from None
    assert process.stdout is not None
    assert process.stderr is not None
    lines: queue.Queue[str | None] = queue.Queue()
    stdout = _Drain(process.stdout, f"waitress-{process.pid}-stdout", lines)
    stderr = _Drain(process.stderr, f"waitress-{process.pid}-stderr", None)
    stdout.start()
    stderr.start()
    try:
        startup_line = _await_startup(process, lines, stderr, executable, startup_timeout)
    except ConfigError as error:
        _abandon(process, stdout, stderr, temp_dir)
        if temp_dir is None:
            raise
        # The temporary file's name means nothing to the caller, who passed a dict.
        raise ConfigError(str(error).replace(str(config_path), "<config dict>")) from None
    except BaseException:
        _abandon(process, stdout, stderr, temp_dir)
        raise
    return FeedServer(process, startup_line, config_path, stdout, stderr, temp_dir)


def _abandon(
    process: subprocess.Popen[bytes],
    stdout: _Drain,
    stderr: _Drain,
    temp_dir: tempfile.TemporaryDirectory[str] | None,
) -> None:
    """Kill (if needed) and reap a server that failed to start; release its resources."""
    if process.poll() is None:
        process.kill()
        process.wait()
    stdout.join(timeout=1.0)
    stderr.join(timeout=1.0)
    if temp_dir is not None:
        temp_dir.cleanup()


def _await_startup(
    process: subprocess.Popen[bytes],
    lines: queue.Queue[str | None],
    stderr: _Drain,
    executable: Path,
    timeout: float,
) -> str:
    """The startup line, or the error that the server's early exit means."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            line = lines.get(timeout=max(remaining, 0.0)) if remaining > 0 else lines.get_nowait()
        except queue.Empty:
            raise FeedTimeout(
                f"waitress printed no startup line within {timeout:g} s; stderr: "
                + (" | ".join(stderr.tail) or "(empty)")
            ) from None
        if line is None:  # stdout closed: the server is exiting
            break
        if line.startswith("waitress ") and _STARTUP_MARK in line:
            return line
    try:
        code = process.wait(timeout=max(deadline - time.monotonic(), 1.0))
    except subprocess.TimeoutExpired:
        raise FeedError("waitress closed its stdout without a startup line") from None
    stderr.join(timeout=1.0)
    message = " | ".join(line for line in stderr.tail if line.strip()) or "(no message)"
    if code == EXIT_INVALID_CONFIG:
        raise ConfigError(f"waitress rejected the config: {message}")
    if code == EXIT_BIND_FAILED:
        raise FeedError(f"waitress cannot bind its endpoint (exit 3; port in use?): {message}")
    raise FeedError(f"waitress ({executable}) exited with status {code} at startup: {message}")
