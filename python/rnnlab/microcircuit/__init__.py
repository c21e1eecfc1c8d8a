"""Dendritic cortical microcircuits with learned backward weights (BP, FA, PAL, DTPDRL).

- :mod:`rnnlab.microcircuit.params` — ``params.json`` loading and validation.
- :mod:`rnnlab.microcircuit.network` — state layout, options, initialisation, SPS, noise.
- :mod:`rnnlab.microcircuit.reference` — the straightforward numpy per-step reference.
- :mod:`rnnlab.microcircuit.fast` — the fused Rust kernel (same results, much faster).
- :mod:`rnnlab.microcircuit.runner` — the ``bw_only`` / ``fw_bw`` tasks, results and plots.

See ``docs/microcircuit.md`` for the equations, the params fields and the reproduction runs.
"""

from __future__ import annotations

from rnnlab.microcircuit.network import Layout, Options, init_batch
from rnnlab.microcircuit.params import MicrocircuitParams, load_params, params_from_dict

__all__ = [
    "Layout",
    "MicrocircuitParams",
    "Options",
    "init_batch",
    "load_params",
    "params_from_dict",
]
