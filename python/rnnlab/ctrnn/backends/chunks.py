"""Truncated-BPTT chunks of a window: the unit of work the threaded and distributed backends split.

With ``truncation=K`` the gradient of a sequence is cut every K frames, and each chunk starts
from the forward state at its first frame, treated as a constant. So once one forward pass has
produced the states at the chunk boundaries, the chunks are independent sequences: chunk c of
batch row b is a sequence of (at most) K frames starting from ``states[b, cK − 1]`` (``s0[b]`` for
c = 0). Chunks of equal length and equal frame durations are stacked into one :class:`ChunkGroup`
(a batch for the Rust kernel), and the gradient of the window is the sum of the chunks'
gradients, each weighted by its share of the loss's element count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["ChunkGroup", "combine_results", "split_tasks", "split_window"]

Array = NDArray[np.floating[Any]]
GRAD_NAMES = ("W", "tau", "theta", "gain", "U", "V", "c")


@dataclass
class ChunkGroup:
    """Chunks of one length and one set of frame durations, stacked as a batch.

    ``rows[g] = (b, c)`` says that row g is chunk c of batch row b; ``weight`` is the group's
    share of the loss's element count, so that ``weight × (the group's mean loss)`` adds up to
    the window's mean loss.
    """

    rows: list[tuple[int, int]]
    starts: Array  # [G, N]
    x: Array  # [G, L, n_in]
    target: Array  # [G, L, n_out]
    dts: Array  # [L]
    weight: float

    def take(self, index: Sequence[int], total_count: int) -> ChunkGroup:
        """The rows ``index`` of this group as a group of their own (for one worker)."""
        idx = np.asarray(index, dtype=np.intp)
        target = np.ascontiguousarray(self.target[idx])
        return ChunkGroup(
            rows=[self.rows[i] for i in idx],
            starts=np.ascontiguousarray(self.starts[idx]),
            x=np.ascontiguousarray(self.x[idx]),
            target=target,
            dts=self.dts,
            weight=target.size / total_count,
        )


def split_window(
    xs: Array,
    targets: Array,
    durations: Array,
    start: Array,
    states: Array,
    truncation: int,
) -> list[ChunkGroup]:
    """Cut a batch of sequences ([B, T, ·]) into chunks of ``truncation`` frames.

    ``states`` are the forward states at the end of every frame ([B, T, N]), ``start`` the start
    states [B, N]. Returns the chunks grouped by (length, frame durations), in order of first
    appearance; every (row, chunk) appears exactly once.
    """
    batch, frames = xs.shape[0], xs.shape[1]
    total = targets.size
    groups: dict[tuple[int, bytes], list[tuple[int, int]]] = {}
    spans: list[tuple[int, int]] = []
    for c, first in enumerate(range(0, frames, truncation)):
        last = min(first + truncation, frames)
        spans.append((first, last))
        key = (last - first, durations[first:last].tobytes())
        groups.setdefault(key, []).extend((b, c) for b in range(batch))
    out = []
    for rows in groups.values():
        first, last = spans[rows[0][1]]
        starts = np.stack([start[b] if c == 0 else states[b, spans[c][0] - 1] for b, c in rows])
        x = np.stack([xs[b, spans[c][0] : spans[c][1]] for b, c in rows])
        target = np.stack([targets[b, spans[c][0] : spans[c][1]] for b, c in rows])
        out.append(
            ChunkGroup(
                rows=rows,
                starts=np.ascontiguousarray(starts),
                x=np.ascontiguousarray(x),
                target=np.ascontiguousarray(target),
                dts=np.ascontiguousarray(durations[first:last]),
                weight=target.size / total,
            )
        )
    return out


def combine_results(
    parts: Sequence[tuple[Sequence[tuple[int, int]], float, dict[str, Array], Array]],
    batch: int,
    shapes: dict[str, tuple[int, ...]],
    dtype: np.dtype[Any],
) -> tuple[float, dict[str, Array]]:
    """Sum weighted chunk results into the window's loss and gradients.

    Each part is ``(rows, weighted loss, weighted grads, start-state grads [G, N])`` for the
    chunks ``rows``. The gradient of ``s0[b]`` is that of chunk 0 of row b (the later chunks'
    start states are constants under truncation). Parts are summed in the order given, so the
    caller fixes the order (and with it the round-off).
    """
    loss = 0.0
    grads = {name: np.zeros(shapes[name], dtype=dtype) for name in GRAD_NAMES}
    s0 = np.zeros((batch, shapes["W"][0]), dtype=dtype)
    for rows, part_loss, part_grads, start_grads in parts:
        loss += part_loss
        for name in GRAD_NAMES:
            grads[name] += part_grads[name]
        for g, (b, c) in enumerate(rows):
            if c == 0:
                s0[b] = start_grads[g]
    grads["s0"] = s0
    return loss, grads


def split_tasks(
    groups: Sequence[ChunkGroup], parts: int, total_count: int
) -> list[list[ChunkGroup]]:
    """Share the chunks of ``groups`` among ``parts`` tasks (contiguous, nearly equal rows per
    group); tasks that would be empty are left out."""
    tasks: list[list[ChunkGroup]] = [[] for _ in range(parts)]
    for group in groups:
        for k, index in enumerate(np.array_split(np.arange(len(group.rows)), parts)):
            if index.size:
                tasks[k].append(group.take(index.tolist(), total_count))
    return [t for t in tasks if t]
