"""Pictures of a graph network: one drawing (graphviz ``dot`` or matplotlib) or an animation.

Edge width is proportional to weight; nodes that fired are filled orange. Inputs sit on the
left, outputs on the right, hidden nodes on a circle between them (matplotlib), or ranked
left-to-right by ``dot``.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rnnlab.atomic import write_atomic
from rnnlab.errors import ConfigError

if TYPE_CHECKING:
    from rnnlab.graphnet.model import GraphNet

__all__ = ["ENGINES", "Frame", "draw_graph", "layout", "write_animation"]

ENGINES = ("auto", "dot", "matplotlib")
FIRED_COLOUR = "#ff8c00"
KIND_COLOURS = {"input": "#9ecae1", "hidden": "#e0e0e0", "output": "#a1d99b"}


@dataclass
class Frame:
    """One picture: the edges (as :meth:`GraphNet.edges` returns them) and the fired nodes."""

    source: NDArray[np.uint32]
    target: NDArray[np.uint32]
    weight: NDArray[np.float64]
    fired: NDArray[np.bool_]
    title: str = ""


def layout(n_inputs: int, n_hidden: int, n_outputs: int) -> NDArray[np.float64]:
    """Fixed positions [N, 2]: inputs at x=0, outputs at x=3, hidden on a circle at x≈1.5."""
    positions = np.zeros((n_inputs + n_hidden + n_outputs, 2))
    for k in range(n_inputs):
        positions[k] = (0.0, 1.0 - 2.0 * (k + 0.5) / n_inputs)
    for k in range(n_hidden):
        angle = 2.0 * math.pi * k / max(n_hidden, 1)
        positions[n_inputs + k] = (1.5 + 0.9 * math.cos(angle), 0.9 * math.sin(angle))
    for k in range(n_outputs):
        positions[n_inputs + n_hidden + k] = (3.0, 1.0 - 2.0 * (k + 0.5) / n_outputs)
    return positions


def _kinds(n_inputs: int, n_hidden: int, n_outputs: int) -> list[str]:
    return ["input"] * n_inputs + ["hidden"] * n_hidden + ["output"] * n_outputs


def _widths(weight: NDArray[np.float64]) -> NDArray[np.float64]:
    top = float(weight.max()) if weight.size else 1.0
    return 0.3 + 4.0 * weight / max(top, 1e-12)


def _draw_axes(ax: Any, counts: tuple[int, int, int], frame: Frame) -> None:
    from matplotlib.collections import LineCollection

    positions = layout(*counts)
    kinds = _kinds(*counts)
    if frame.weight.size:
        segments = np.stack([positions[frame.source], positions[frame.target]], axis=1)
        ax.add_collection(
            LineCollection(
                list(segments),
                linewidths=_widths(frame.weight),
                colors="#555555",
                alpha=0.6,
                zorder=1,
            )
        )
        # Arrow heads: a short mark near each target.
        ends = positions[frame.target] - 0.08 * (positions[frame.target] - positions[frame.source])
        ax.scatter(ends[:, 0], ends[:, 1], s=6, c="#333333", zorder=2)
    colours = [
        FIRED_COLOUR if frame.fired[v] else KIND_COLOURS[kinds[v]] for v in range(len(kinds))
    ]
    ax.scatter(positions[:, 0], positions[:, 1], s=220, c=colours, edgecolors="black", zorder=3)
    for v, (x, y) in enumerate(positions):
        ax.text(x, y, str(v), ha="center", va="center", fontsize=7, zorder=4)
    ax.set_xlim(-0.4, 3.4)
    ax.set_ylim(-1.2, 1.2)
    ax.set_axis_off()
    ax.set_title(frame.title or f"{frame.weight.size} edges, {int(frame.fired.sum())} fired")


def _dot_source(counts: tuple[int, int, int], frame: Frame) -> str:
    kinds = _kinds(*counts)
    lines = ["digraph graphnet {", "  rankdir=LR;", "  node [shape=circle, style=filled];"]
    if frame.title:
        lines.append(f'  label="{frame.title}";')
    for kind, rank in (("input", "source"), ("output", "sink")):
        members = " ".join(str(v) for v, k in enumerate(kinds) if k == kind)
        lines.append(f"  {{ rank={rank}; {members} }}")
    for v, kind in enumerate(kinds):
        colour = FIRED_COLOUR if frame.fired[v] else KIND_COLOURS[kind]
        lines.append(f'  {v} [fillcolor="{colour}"];')
    for u, v, w in zip(frame.source, frame.target, _widths(frame.weight), strict=True):
        lines.append(f"  {u} -> {v} [penwidth={w:.3f}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _render_dot(source: str, path: Path, fmt: str, dot: str) -> None:
    with tempfile.TemporaryDirectory(prefix="rnnlab-dot-") as folder:
        rendered = Path(folder) / f"graph.{fmt}"
        result = subprocess.run(
            [dot, f"-T{fmt}", "-o", str(rendered)],
            input=source.encode(),
            capture_output=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise ConfigError(f"engine: dot failed: {result.stderr.decode(errors='replace')}")
        data = rendered.read_bytes()

    def save(file: Any) -> None:
        file.write(data)

    write_atomic(path, save)


def draw_frame(
    counts: tuple[int, int, int], frame: Frame, path: str | os.PathLike[str], engine: str = "auto"
) -> Path:
    """Draw one frame to ``path`` (format from the suffix)."""
    if engine not in ENGINES:
        raise ConfigError(f"engine: unknown value {engine!r}; allowed: {', '.join(ENGINES)}")
    target = Path(path)
    fmt = target.suffix.lstrip(".") or "png"
    dot = shutil.which("dot")
    if engine == "dot" and dot is None:
        raise ConfigError("engine: 'dot' requested but graphviz dot is not installed")
    if engine in ("auto", "dot") and dot is not None:
        _render_dot(_dot_source(counts, frame), target, fmt, dot)
        return target
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(7, 5))
    _draw_axes(ax, counts, frame)
    write_atomic(target, lambda file: figure.savefig(file, format=fmt, dpi=100))
    plt.close(figure)
    return target


def frame_of(net: GraphNet, fired: ArrayLike | None = None, title: str = "") -> Frame:
    edges = net.edges()
    fired_nodes = net.fired_nodes() if fired is None else np.asarray(fired, dtype=bool)
    if fired_nodes.shape != (net.n_nodes,):
        raise ConfigError(f"fired: expected ({net.n_nodes},) booleans, got {fired_nodes.shape}")
    return Frame(edges["source"], edges["target"], edges["weight"], fired_nodes, title)


def draw_graph(
    net: GraphNet,
    path: str | os.PathLike[str],
    *,
    engine: str = "auto",
    fired: ArrayLike | None = None,
    title: str | None = None,
) -> Path:
    counts = (net.n_inputs, net.n_hidden, net.n_outputs)
    return draw_frame(counts, frame_of(net, fired, title or ""), path, engine)


def _write_bytes(path: Path, data: bytes) -> Path:
    def save(file: Any) -> None:
        file.write(data)

    return write_atomic(path, save)


def write_animation(
    counts: tuple[int, int, int],
    frames: Sequence[Frame],
    path: str | os.PathLike[str],
    *,
    fps: float = 4.0,
) -> list[Path]:
    """A GIF (``path`` ending in .gif) or PNG frames ``<path>/frame_00000.png`` (otherwise).

    Returns the files written. Matplotlib renders every frame with the same fixed layout.
    """
    if not frames:
        raise ConfigError("frames: nothing to animate")
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt
    from PIL import Image

    target = Path(path)
    images: list[Image.Image] = []
    written: list[Path] = []
    figure, ax = plt.subplots(figsize=(6, 4.5))
    for index, frame in enumerate(frames):
        ax.clear()
        _draw_axes(ax, counts, frame)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80)
        if target.suffix.lower() == ".gif":
            buffer.seek(0)
            images.append(Image.open(buffer).convert("P", palette=Image.Palette.ADAPTIVE))
        else:
            written.append(_write_bytes(target / f"frame_{index:05d}.png", buffer.getvalue()))
    plt.close(figure)
    if images:
        duration = int(1000 / fps)

        def save_gif(file: Any) -> None:
            images[0].save(
                file,
                format="GIF",
                save_all=True,
                append_images=images[1:],
                duration=duration,
                loop=0,
            )

        written.append(write_atomic(target, save_gif))
    return written
