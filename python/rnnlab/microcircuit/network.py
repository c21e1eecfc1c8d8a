"""The microcircuit's state layout, options, activations, initialisation and noise generator.

Everything a batch of networks holds lives in one float64 array ``state`` of shape
``(batch, size)``; :class:`Layout` names the slices (``u``, ``W``, ``B``, ...) per layer. The numpy
reference (:mod:`rnnlab.microcircuit.reference`) works on per-instance views of one row, the Rust
kernel on the whole array, so both paths share one memory layout and can be compared directly.

Indexing (0-based, the code's convention): pyramidal layer ``L = 0..N-1`` is the paper's layer
``L+1`` with ``n[L] = layers[L+1]`` cells; ``L = N-1`` is the output; hidden layers are
``h = 0..N-2``. ``W[L]`` maps layer ``L-1`` (or the input for ``L = 0``) to layer ``L``.
Interneuron population ``j`` mirrors pyramidal layer ``top(j)`` and is driven by ``inp(j)``:
layered mode has one population per hidden layer (``top = j+1``, ``inp = j``); skip mode has one
population mirroring the output (``top = N-1``, ``inp = N-2``). Hidden layer ``h`` receives
top-down input from ``pre(h)`` (``h+1`` layered, ``N-1`` skip) through ``B[h]`` and from
population ``pop(h)`` (``h`` layered, ``0`` skip) through ``BPI[h]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnlab.microcircuit.params import ACTIVATIONS, MicrocircuitParams

__all__ = [
    "FIELDS",
    "Layout",
    "Options",
    "activation",
    "activation_derivative",
    "counter_normals",
    "init_batch",
    "set_backprop_weights",
    "set_self_predicting_state",
]

PYRAMIDAL_FIELDS = ("u", "u_prev", "u_breve", "r", "vbas", "vapi", "xi", "rhp")
INTERNEURON_FIELDS = ("uI", "uI_prev", "uI_breve", "rI", "vden")
#: Row order of the offset table handed to the Rust kernel (keep in sync with its FIELD_* ids).
FIELDS = (*PYRAMIDAL_FIELDS, *INTERNEURON_FIELDS, "r0", "W", "F", "WIP", "B", "BPI")
MODEL_CODES = {"BP": 0, "FA": 1, "PAL": 2, "DTPDRL": 3}
NOISE_TYPE_CODES = {"OU": 0, "OU_euler": 1, "hold_white_noise": 2}
NOISE_MODE_CODES = {"const": 0, "uP": 1, "uP_breve": 2, "vapi": 3}


class Layout:
    """Offsets and shapes of every named slice of one network's state vector."""

    def __init__(self, layers: list[int], skip: bool = False) -> None:
        if len(layers) < 3:
            raise ValueError("layers: need input, at least one hidden layer and an output")
        self.layers = list(layers)
        self.skip = skip
        self.n = self.layers[1:]
        self.n_input = self.layers[0]
        self.N = len(self.n)
        self.n_hidden = self.N - 1
        self.n_pops = 1 if skip else self.n_hidden
        self.entries: dict[str, list[tuple[int, tuple[int, ...]]]] = {}
        offset = 0

        def add(name: str, shape: tuple[int, ...]) -> None:
            nonlocal offset
            self.entries.setdefault(name, []).append((offset, shape))
            offset += int(np.prod(shape))

        for name in PYRAMIDAL_FIELDS:
            for L in range(self.N):
                add(name, (self.n[L],))
        for name in INTERNEURON_FIELDS:
            for j in range(self.n_pops):
                add(name, (self.n[self.top(j)],))
        add("r0", (self.n_input,))
        for name in ("W", "F"):
            for L in range(self.N):
                add(name, (self.n[L], self.layers[L]))
        for j in range(self.n_pops):
            add("WIP", (self.n[self.top(j)], self.n[self.inp(j)]))
        for h in range(self.n_hidden):
            add("B", (self.n[h], self.n[self.pre(h)]))
        for h in range(self.n_hidden):
            add("BPI", (self.n[h], self.n[self.top(self.pop(h))]))
        self.size = offset

    def top(self, j: int) -> int:
        return self.N - 1 if self.skip else j + 1

    def inp(self, j: int) -> int:
        return self.N - 2 if self.skip else j

    def pre(self, h: int) -> int:
        return self.N - 1 if self.skip else h + 1

    def pop(self, h: int) -> int:
        return 0 if self.skip else h

    def views(self, row: np.ndarray) -> dict[str, list[np.ndarray]]:
        """Per-layer views (no copies) into one state row of length :attr:`size`."""
        if row.shape != (self.size,):
            raise ValueError(f"state row: expected shape ({self.size},), got {row.shape}")
        return {
            name: [row[o : o + int(np.prod(s))].reshape(s) for o, s in items]
            for name, items in self.entries.items()
        }

    def batch_views(self, state: np.ndarray) -> dict[str, list[np.ndarray]]:
        """Views ``(batch, *shape)`` into a whole batch state."""
        return {
            name: [
                state[:, o : o + int(np.prod(s))].reshape((state.shape[0], *s)) for o, s in items
            ]
            for name, items in self.entries.items()
        }

    def offset_table(self) -> np.ndarray:
        """int64 ``(len(FIELDS), N)``: offset of each field per layer index, -1 where absent."""
        table = np.full((len(FIELDS), self.N), -1, dtype=np.int64)
        for row, name in enumerate(FIELDS):
            for index, (offset, _shape) in enumerate(self.entries.get(name, [])):
                table[row, index] = offset
        return table


@dataclass
class Options:
    """Numeric options of the dynamics, derived from :class:`MicrocircuitParams`."""

    layers: list[int]
    skip: bool
    dt: float
    gl: float
    gbas: float
    gapi: float
    gden: float
    gnI: float  # noqa: N815 (the params.json name)
    gntgt: float
    taur: float
    tauHP: float  # noqa: N815 (the params.json name)
    tauLO: float  # noqa: N815 (the params.json name)
    tauxi: float
    xi_steps: int
    tbw_steps: int
    model: str
    noise_type: str
    ou_scale: float
    noise_mode: str
    activations: list[str]
    eta_fw: list[float]
    eta_bw: list[float]
    eta_IP: list[float]  # noqa: N815 (the params.json name)
    eta_PI: list[float]  # noqa: N815 (the params.json name)
    alpha: list[float]
    noise_scale: list[float]
    inter_low_pass: bool
    pyr_hi_pass: bool
    dWPP_low_pass: bool  # noqa: N815 (the params.json name)
    regularizer: str
    use_activation: bool

    @classmethod
    def from_params(cls, params: MicrocircuitParams) -> Options:
        v = params.values
        tbw = v["Tbw"]
        return cls(
            layers=list(v["layers"]),
            skip=v["bw_connection_mode"] == "skip",
            dt=v["dt"],
            gl=v["gl"],
            gbas=v["gbas"],
            gapi=v["gapi"],
            gden=v["gden"],
            gnI=v["gnI"],
            gntgt=v["gntgt"],
            taur=v["taur"],
            tauHP=v["tauHP"],
            tauLO=v["tauLO"],
            tauxi=v["tauxi"],
            xi_steps=round(v["dtxi"] / v["dt"]),
            tbw_steps=0 if tbw is None else round(tbw / v["dt"]),
            model=v["model_type"],
            noise_type=v["noise_type"],
            ou_scale=math.sqrt(0.5) if v["OU_variance"] == "sigma^2/2" else 1.0,
            noise_mode=v["noise_mode"],
            activations=list(v["activation"]),
            eta_fw=list(v["eta_fw"]),
            eta_bw=list(v["eta_bw"]),
            eta_IP=list(v["eta_IP"]),
            eta_PI=list(v["eta_PI"]),
            alpha=list(v["alpha"]),
            noise_scale=list(v["noise_scale"]),
            inter_low_pass=v["inter_low_pass"],
            pyr_hi_pass=v["pyr_hi_pass"],
            dWPP_low_pass=v["dWPP_low_pass"],
            regularizer="gate"
            if v["gate_regularizer"]
            else ("varphi" if v["varphi_regularizer"] else "none"),
            use_activation=v["dWPP_use_activation"],
        )

    # derived constants (§1.2 of the reference note)
    @property
    def g_hidden(self) -> float:
        return self.gl + self.gbas + self.gapi

    @property
    def g_output(self) -> float:
        return self.gl + self.gbas + self.gntgt

    @property
    def g_inter(self) -> float:
        return self.gl + self.gden + self.gnI

    @property
    def k_hidden(self) -> float:
        return self.gbas / self.g_hidden

    @property
    def k_output(self) -> float:
        return self.gbas / (self.gl + self.gbas)

    @property
    def k_inter(self) -> float:
        return self.gden / (self.gl + self.gden)

    @property
    def noisy(self) -> bool:
        return self.model in ("PAL", "DTPDRL")

    def kernel_config(self) -> dict[str, Any]:
        """The dictionary the Rust kernel reads (names match its fields)."""
        return {
            "layers": list(self.layers),
            "skip": self.skip,
            "dt": self.dt,
            "gl": self.gl,
            "gbas": self.gbas,
            "gapi": self.gapi,
            "gden": self.gden,
            "gnI": self.gnI,
            "gntgt": self.gntgt,
            "taur": self.taur,
            "tauHP": self.tauHP,
            "tauLO": self.tauLO,
            "tauxi": self.tauxi,
            "xi_steps": self.xi_steps,
            "tbw_steps": self.tbw_steps,
            "model": MODEL_CODES[self.model],
            "noise_type": NOISE_TYPE_CODES[self.noise_type],
            "ou_scale": self.ou_scale,
            "noise_mode": NOISE_MODE_CODES[self.noise_mode],
            "activations": [ACTIVATIONS.index(a) for a in self.activations],
            "eta_fw": list(self.eta_fw),
            "eta_bw": list(self.eta_bw),
            "eta_IP": list(self.eta_IP),
            "eta_PI": list(self.eta_PI),
            "alpha": list(self.alpha),
            "noise_scale": list(self.noise_scale),
            "inter_low_pass": self.inter_low_pass,
            "pyr_hi_pass": self.pyr_hi_pass,
            "dWPP_low_pass": self.dWPP_low_pass,
            "regularizer": {"none": 0, "gate": 1, "varphi": 2}[self.regularizer],
            "use_activation": self.use_activation,
        }


# ----------------------------------------------------------------------------- activations


def activation(name: str, x: np.ndarray) -> np.ndarray:
    """φ(x) for the names of :data:`ACTIVATIONS`, overflow-free formulations."""
    if name == "linear":
        return np.array(x, dtype=np.float64, copy=True)
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "soft_relu":
        return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))
    if name == "logistic":
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    if name == "tanh":
        return np.tanh(x)
    if name == "hard_sigmoid":
        return np.clip(x / 6.0 + 0.5, 0.0, 1.0)
    raise ValueError(f"activation: must be one of {', '.join(ACTIVATIONS)}; got {name!r}")


def activation_derivative(name: str, x: np.ndarray) -> np.ndarray:
    """φ′(x) (used by the metrics and the BP-ANN comparison)."""
    if name == "linear":
        return np.ones_like(x)
    if name == "relu":
        return (x > 0).astype(np.float64)
    if name == "soft_relu":
        return activation("logistic", x)
    if name == "logistic":
        s = activation("logistic", x)
        return s * (1.0 - s)
    if name == "tanh":
        return 1.0 - np.tanh(x) ** 2
    if name == "hard_sigmoid":
        return ((x > -3.0) & (x < 3.0)).astype(np.float64) / 6.0
    raise ValueError(f"activation: must be one of {', '.join(ACTIVATIONS)}; got {name!r}")


# ----------------------------------------------------------------------------- noise

_GOLDEN = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def counter_normals(seed: int, step: int, count: int) -> np.ndarray:
    """``count`` standard normals for (seed, step): the counter-based generator of the kernel.

    ``key = mix(seed·G + 0xD1B54A32D192ED03)``, ``base = mix(key ^ mix(step·G + G))``; pair
    ``p`` uses the uniforms ``u1 = mix(base + (2p+1)·G)`` and ``u2 = mix(base + (2p+2)·G)``
    (top 53 bits; u1 shifted by half a unit to exclude 0) in a Box–Muller transform: normal
    ``2p`` is ``√(−2 ln u1)·cos(2π u2)`` and normal ``2p+1`` is ``√(−2 ln u1)·sin(2π u2)``.
    G = 0x9E3779B97F4A7C15, mix = SplitMix64's finaliser. Each instance (seed) has its own
    stream and any step can be drawn without drawing the others, so the Rust kernel and this
    reference draw the same numbers.
    """
    seed_word = np.array([(seed * _GOLDEN + 0xD1B54A32D192ED03) & _MASK], dtype=np.uint64)
    key = _mix(seed_word)
    step_word = np.array([(step * _GOLDEN + _GOLDEN) & _MASK], dtype=np.uint64)
    base = _mix(key ^ _mix(step_word))
    pairs = np.arange((count + 1) // 2, dtype=np.uint64)
    first = _mix(base + (np.uint64(2) * pairs + np.uint64(1)) * np.uint64(_GOLDEN))
    second = _mix(base + (np.uint64(2) * pairs + np.uint64(2)) * np.uint64(_GOLDEN))
    u1 = ((first >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    u2 = (second >> np.uint64(11)).astype(np.float64) * 2.0**-53
    radius = np.sqrt(-2.0 * np.log(u1))
    angle = 2.0 * math.pi * u2
    out = np.empty(2 * pairs.size)
    out[0::2] = radius * np.cos(angle)
    out[1::2] = radius * np.sin(angle)
    return out[:count]


# ----------------------------------------------------------------------------- initialisation


def set_self_predicting_state(
    opts: Options, layout: Layout, views: dict[str, list[np.ndarray]]
) -> None:
    """B^PI := −B and W^IP := W_top · c, so that apical potentials vanish without a target (§1.6).

    Works on single-instance views or on batch views (leading batch axis).
    """
    for h in range(layout.n_hidden):
        views["BPI"][h][...] = -views["B"][h]
    for j in range(layout.n_pops):
        top = layout.top(j)
        if top == layout.N - 1:
            scale = opts.gbas * (opts.gl + opts.gden) / (opts.gden * (opts.gl + opts.gbas))
        else:
            scale = opts.gbas * (opts.gl + opts.gden) / (opts.gden * opts.g_hidden)
        views["WIP"][j][...] = views["W"][top] * scale


def backprop_target(layout: Layout, views: dict[str, list[np.ndarray]], h: int) -> np.ndarray:
    """What BP copies into B[h]: W[h+1]ᵀ (layered) or (W[N-1]···W[h+1])ᵀ (skip)."""
    product = views["W"][h + 1]
    if layout.skip:
        for L in range(h + 2, layout.N):
            product = views["W"][L] @ product
    return np.swapaxes(product, -1, -2)


def set_backprop_weights(layout: Layout, views: dict[str, list[np.ndarray]]) -> None:
    """BP: B := Wᵀ (chain in skip mode) and B^PI := −B."""
    for h in range(layout.n_hidden):
        views["B"][h][...] = backprop_target(layout, views, h)
        views["BPI"][h][...] = -views["B"][h]


def init_batch(
    params: MicrocircuitParams,
    seeds: list[int],
    *,
    teacher: bool = False,
) -> tuple[Options, Layout, np.ndarray]:
    """Initial state for one network per seed: u ~ N(0,1), weights ~ U(ranges), then SPS / BP.

    Each instance draws from its own ``numpy.random.default_rng(seed)`` (voltages first, then
    W, W^IP, B, B^PI layer by layer). ``teacher=True`` uses the ``init_teacher_*`` ranges.
    """
    opts = Options.from_params(params)
    layout = Layout(opts.layers, skip=opts.skip)
    state = np.zeros((len(seeds), layout.size), dtype=np.float64)
    prefix = "init_teacher_" if teacher else "init_"
    v = params.values
    for b, seed in enumerate(seeds):
        rng = np.random.default_rng(seed)
        views = layout.views(state[b])
        for L in range(layout.N):
            views["u"][L][...] = rng.standard_normal(layout.n[L])
        for j in range(layout.n_pops):
            views["uI"][j][...] = rng.standard_normal(views["uI"][j].shape)
        for name in ("W", "WIP", "B", "BPI"):
            low, high = v[
                f"{prefix}{'WPP' if name == 'W' else 'BPP' if name == 'B' else name}_range"
            ]
            for array in views[name]:
                array[...] = rng.uniform(low, high, size=array.shape)
        for L in range(layout.N):
            views["u_prev"][L][...] = views["u"][L]
            views["u_breve"][L][...] = views["u"][L]
            views["r"][L][...] = activation(opts.activations[L], views["u"][L])
        for j in range(layout.n_pops):
            views["uI_prev"][j][...] = views["uI"][j]
            views["uI_breve"][j][...] = views["uI"][j]
            views["rI"][j][...] = activation(opts.activations[layout.top(j)], views["uI"][j])
        if v["init_in_SPS"]:
            set_self_predicting_state(opts, layout, views)
        if opts.model == "BP":
            set_backprop_weights(layout, views)
    return opts, layout, state
