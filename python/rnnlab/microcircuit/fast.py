"""The fused Rust kernel: many steps for a whole batch of networks in one call (GIL released)."""

from __future__ import annotations

import numpy as np

from rnnlab import _native
from rnnlab.microcircuit.network import Layout, Options

__all__ = ["FastKernel"]


class FastKernel:
    """Binds :class:`Options` and :class:`Layout` once; :meth:`run` calls the Rust loop."""

    def __init__(self, opts: Options, layout: Layout) -> None:
        self.opts = opts
        self.layout = layout
        self._config = opts.kernel_config()
        self._offsets = layout.offset_table()

    def run(
        self,
        state: np.ndarray,
        inputs: np.ndarray,
        targets: np.ndarray | None,
        *,
        seeds: list[int] | np.ndarray,
        step0: int,
        learn_fw: bool,
        learn_lat: bool,
        learn_bw: bool,
    ) -> np.ndarray:
        """Same contract as :func:`rnnlab.microcircuit.reference.reference_run` (in place)."""
        return _native.microcircuit_run(
            self._config,
            self._offsets,
            state,
            np.ascontiguousarray(inputs, dtype=np.float64),
            None if targets is None else np.ascontiguousarray(targets, dtype=np.float64),
            np.asarray(seeds, dtype=np.uint64),
            int(step0),
            learn_fw,
            learn_lat,
            learn_bw,
        )
