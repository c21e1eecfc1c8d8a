"""``rnnlab feed watch``: print a feed's rate, drops and last values; optionally plot it live.

:func:`watch` does the work and returns the statistics (testable); :func:`register` adds the
``feed`` command group to the ``rnnlab`` command line.

Example:

>>> stats = watch("tcp://127.0.0.1:1201", seconds=3)  # doctest: +SKIP
  1.0 s  10.0 frames/s  frames 10  dropped 0  bad 0  last sine=101.3 pulses=0.02
...
"""

from __future__ import annotations

import argparse
import contextlib
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from rnnlab.errors import FeedTimeout
from rnnlab.feed.client import FeedClient
from rnnlab.feed.protocol import FeedChunk

__all__ = ["RingBuffer", "register", "watch"]

EXAMPLES = """\
examples:
  rnnlab feed watch tcp://127.0.0.1:1201                 # a pub server (the default mode)
  rnnlab feed watch tcp://127.0.0.1:1201 --seconds 10    # stop after 10 s
  rnnlab feed watch tcp://127.0.0.1:1201 --mode pull     # a server with "mode": "push"
  rnnlab feed watch tcp://127.0.0.1:1201 --plot --window 1000
"""


class RingBuffer:
    """The last ``capacity`` frames (times and ``[C]`` values): bounded memory at any rate.

    Example:

    >>> ring = RingBuffer(3, 1)
    >>> ring.extend(np.arange(5.0), np.arange(5.0)[:, None])
    >>> ring.times().tolist(), len(ring)
    ([2.0, 3.0, 4.0], 3)
    """

    def __init__(self, capacity: int, n_channels: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be ≥ 1, got {capacity}")
        self.capacity = capacity
        self._times = np.zeros(capacity)
        self._values = np.zeros((capacity, n_channels))
        self._next = 0  # total frames written
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def extend(self, times: np.ndarray, values: np.ndarray) -> None:
        """Append frames (only the last ``capacity`` of them are kept)."""
        n = len(times)
        if n == 0:
            return
        if n > self.capacity:
            times, values = times[-self.capacity :], values[-self.capacity :]
            self._next += n - self.capacity
            n = self.capacity
        index = (self._next + np.arange(n)) % self.capacity
        self._times[index] = times
        self._values[index] = values
        self._next += n
        self._size = min(self.capacity, self._size + n)

    def _order(self) -> np.ndarray:
        return (self._next - self._size + np.arange(self._size)) % self.capacity

    def times(self) -> np.ndarray:
        """The kept times, oldest first."""
        times: np.ndarray = self._times[self._order()]
        return times

    def values(self) -> np.ndarray:
        """The kept values ``[len, C]``, oldest first."""
        values: np.ndarray = self._values[self._order()]
        return values


class _LivePlot:
    """One stacked subplot per channel showing the ring buffer, redrawn on demand."""

    def __init__(self, channels: tuple[str, ...], window: int, title: str) -> None:
        import matplotlib.pyplot as plt

        self._plt = plt
        self.ring = RingBuffer(window, len(channels))
        rows = max(1, len(channels))
        self.figure, axes = plt.subplots(
            rows, 1, sharex=True, squeeze=False, figsize=(8, 1.8 * rows + 1)
        )
        self.axes = list(axes[:, 0])
        self.lines = [ax.plot([], [], lw=1)[0] for ax in self.axes]
        for ax, name in zip(self.axes, channels, strict=True):
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
        self.axes[-1].set_xlabel("time since the first frame shown (s)")
        self.figure.suptitle(title)
        self._t0: float | None = None
        from matplotlib.backend_bases import FigureManagerBase

        # A non-interactive backend (Agg: no display) has the bare base manager: no window.
        self.interactive = type(self.figure.canvas.manager) is not FigureManagerBase
        with warnings.catch_warnings():  # non-interactive backends (Agg) warn that they cannot show
            warnings.simplefilter("ignore", UserWarning)
            plt.show(block=False)

    @property
    def open(self) -> bool:
        """False once the user closed the window."""
        return bool(self._plt.fignum_exists(self.figure.number))

    def add(self, chunk: FeedChunk) -> None:
        if self._t0 is None and chunk.n_frames:
            self._t0 = float(chunk.times[0])
        self.ring.extend(chunk.times, chunk.values)

    def draw(self) -> None:
        if not len(self.ring) or self._t0 is None:
            return
        t = self.ring.times() - self._t0
        values = self.ring.values()
        for c, (ax, line) in enumerate(zip(self.axes, self.lines, strict=True)):
            line.set_data(t, values[:, c])
            ax.relim()
            ax.autoscale_view()
        self.figure.canvas.draw_idle()
        self.figure.canvas.flush_events()

    def close(self) -> None:
        self._plt.close(self.figure)


def matplotlib_backend() -> str:
    """The name of matplotlib's current backend."""
    import matplotlib

    return str(matplotlib.get_backend())


def _format_values(channels: tuple[str, ...], values: np.ndarray | None, limit: int = 8) -> str:
    if values is None or not channels:
        return "-"
    shown = [
        f"{name}={value:.4g}" for name, value in zip(channels[:limit], values[:limit], strict=True)
    ]
    return " ".join(shown) + (f" (+{len(channels) - limit} more)" if len(channels) > limit else "")


def watch(
    endpoint: str,
    *,
    topic: str | None = "waitress",
    mode: str = "sub",
    seconds: float | None = None,
    plot: bool = False,
    window: int = 500,
    interval: float = 1.0,
    hwm: int = 1000,
    out: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Receive a feed, report once per ``interval`` seconds, and return the statistics.

    Each report line holds the elapsed time, the frame rate over the last interval, the
    totals of frames, dropped frames (``seq`` gaps) and malformed messages, and the last
    value of each channel. A quiet feed reports 0 frames/s rather than failing. The run ends
    after ``seconds`` (None: no limit), at the end-of-stream message, on Ctrl-C (which
    ends it normally: the totals are still printed and returned) or, with ``plot``, when the
    window is closed.

    With ``plot``, a matplotlib window shows the last ``window`` frames of each channel (a
    ring buffer: memory stays bounded whatever the rate), redrawn with each report and at
    most ~10 times per second; it is closed when the run ends.

    Returns:
        ``{"endpoint", "seconds", "frames", "messages", "frames_per_second", "dropped",
        "bad_messages", "last_error", "channels", "last_values", "eos", "reason",
        "first_seq", "plotted_frames", "interrupted"}``; ``last_values`` maps channel →
        value (empty when nothing arrived), ``plotted_frames`` is the ring buffer's fill (0
        without ``plot``), ``interrupted`` is True when Ctrl-C ended the run.

    Example:

    >>> watch("tcp://127.0.0.1:1201", seconds=2, out=lambda line: None)["frames"]  # doctest: +SKIP
    20
    """
    if seconds is not None and seconds < 0:
        raise ValueError(f"seconds must be ≥ 0, got {seconds}")
    if window < 1:
        raise ValueError(f"window must be ≥ 1, got {window}")
    if interval <= 0:
        raise ValueError(f"interval must be > 0, got {interval}")
    started = time.monotonic()
    end = None if seconds is None else started + seconds
    channels: tuple[str, ...] = ()
    last: np.ndarray | None = None
    eos: FeedChunk | None = None
    live: _LivePlot | None = None
    next_report = started + interval
    next_draw = started
    last_report, frames_at_report = started, 0
    interrupted = False
    with FeedClient(endpoint, topic=topic, mode=mode, timeout=interval, hwm=hwm) as client:
        try:
            while True:
                now = time.monotonic()
                if end is not None and now >= end:
                    break
                if live is not None and not live.open:
                    break
                wake = min(next_report, end if end is not None else next_report)
                if live is not None:
                    wake = min(wake, next_draw)
                chunk: FeedChunk | None = None
                with contextlib.suppress(FeedTimeout):  # a quiet feed: report 0 frames/s
                    chunk = client.recv(timeout=max(wake - now, 0.001))
                if chunk is not None:
                    if chunk.eos:
                        eos = chunk
                        break
                    if chunk.n_frames:
                        channels, last = chunk.channels, chunk.values[-1]
                        if plot and live is None and channels:
                            live = _LivePlot(channels, window, f"{endpoint} ({topic})")
                            if not live.interactive:
                                out(
                                    f"note: matplotlib backend {matplotlib_backend()!r} is "
                                    "not interactive: no plot window is shown"
                                )
                        if live is not None:
                            live.add(chunk)
                now = time.monotonic()
                if live is not None and now >= next_draw:
                    live.draw()
                    next_draw = now + min(0.1, interval)
                if now >= next_report:
                    rate = (client.received_frames - frames_at_report) / (now - last_report)
                    last_report, frames_at_report = now, client.received_frames
                    next_report = now + interval
                    out(
                        f"{now - started:6.1f} s  {rate:10.1f} frames/s  "
                        f"frames {client.received_frames}  dropped {client.dropped}  "
                        f"bad {client.bad_messages}  last {_format_values(channels, last)}"
                    )
        except KeyboardInterrupt:  # Ctrl-C ends the run normally, with the totals
            interrupted = True
        finally:
            plotted = len(live.ring) if live is not None else 0
            if live is not None:
                live.close()
        elapsed = time.monotonic() - started
        if eos is not None:
            out(f"end of stream ({eos.reason}) after {eos.seq} frame(s) produced")
        stats: dict[str, Any] = {
            "endpoint": endpoint,
            "seconds": elapsed,
            "frames": client.received_frames,
            "messages": client.received_messages,
            "frames_per_second": client.received_frames / elapsed if elapsed > 0 else 0.0,
            "dropped": client.dropped,
            "bad_messages": client.bad_messages,
            "last_error": str(client.last_error) if client.last_error else None,
            "channels": list(channels),
            "last_values": (
                {}
                if last is None
                else {name: float(v) for name, v in zip(channels, last, strict=True)}
            ),
            "eos": eos is not None,
            "reason": eos.reason if eos is not None else None,
            "first_seq": client.first_seq,
            "plotted_frames": plotted,
            "interrupted": interrupted,
        }
    out(
        f"total: {stats['frames']} frame(s) in {elapsed:.1f} s "
        f"({stats['frames_per_second']:.1f} frames/s), dropped {stats['dropped']}, "
        f"bad messages {stats['bad_messages']}"
    )
    return stats


def _watch_command(args: argparse.Namespace) -> int:
    try:
        watch(
            args.endpoint,
            topic=args.topic or None,
            mode=args.mode,
            seconds=args.seconds,
            plot=args.plot,
            window=args.window,
            hwm=args.hwm,
        )
    except KeyboardInterrupt:
        return 130
    return 0


def register(subparsers: Any) -> None:
    """Add the ``feed`` command group (``feed watch``) to an ``add_subparsers()`` object.

    Example:

    >>> parser = argparse.ArgumentParser(prog="rnnlab")
    >>> register(parser.add_subparsers(dest="system"))
    >>> args = parser.parse_args(["feed", "watch", "tcp://127.0.0.1:1201", "--seconds", "5"])
    >>> args.endpoint, args.seconds, args.mode
    ('tcp://127.0.0.1:1201', 5.0, 'sub')
    """
    feed = subparsers.add_parser(
        "feed",
        help="waitress feed tools (watch a stream)",
        description="Tools for waitress feeds (see waitress/README.md and waitress/PROTOCOL.md).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = feed.add_subparsers(dest="command", metavar="COMMAND")
    watch_parser = commands.add_parser(
        "watch",
        help="print a feed's rate, drops and last values once per second",
        description=(
            "Connect to a waitress feed and print, once per second, the frame rate, the\n"
            "frames dropped (from seq gaps) and the last value of each channel. Stops at\n"
            "the end of stream, after --seconds, on Ctrl-C, or when the plot window is\n"
            "closed. Reads the rnnlab binary protocol and the seed's JSON frames."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    watch_parser.add_argument("endpoint", metavar="ENDPOINT", help="e.g. tcp://127.0.0.1:1201")
    watch_parser.add_argument(
        "--topic", default="waitress", help="topic (part 0) to accept; '' = any (default waitress)"
    )
    watch_parser.add_argument(
        "--mode",
        choices=("sub", "pull"),
        default="sub",
        help="sub for a pub server, pull for a push server (default sub)",
    )
    watch_parser.add_argument(
        "--seconds", type=float, default=None, help="stop after this long (default: no limit)"
    )
    watch_parser.add_argument(
        "--plot", action="store_true", help="live matplotlib plot of the last --window frames"
    )
    watch_parser.add_argument(
        "--window", type=int, default=500, help="frames per channel in the plot (default 500)"
    )
    watch_parser.add_argument(
        "--hwm", type=int, default=1000, help="receive high-water mark, messages (default 1000)"
    )
    watch_parser.set_defaults(handler=_watch_command)
