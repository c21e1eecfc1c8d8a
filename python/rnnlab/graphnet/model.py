"""The graph network: an event-driven threshold network that grows, prunes and learns from reward.

The hot paths (the per-step firing/decay pass over all edges, the feedback wave, growth and
pruning) run in Rust (`rnnlab._native.GraphNetCore`), one call per batch of steps with the GIL
released. This module holds the documented Python API, validation, networkx conversion and
save/load. The rules are described in ``docs/graphnet.md`` and, executable, in
:mod:`rnnlab.graphnet.reference`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rnnlab._native import GraphNetCore
from rnnlab.atomic import write_json_atomic, write_npz_atomic
from rnnlab.errors import ConfigError, ShapeError

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["FEEDBACK_MODES", "FORMAT_VERSION", "GraphNet"]

FEEDBACK_MODES = ("on_reward", "every_step")
FORMAT_VERSION = 1
EDGE_FIELDS = ("source", "target", "weight", "activation", "streak")
_STATE_ARRAYS = ("pool", "fired", "frontier_nodes", "frontier_signals", "visited", "seen_patterns")
_STATE_INTS = ("rng_state", "steps", "grown_total", "pruned_total")


def _number(name: str, value: Any, low: float = -math.inf, high: float = math.inf) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: must be a number, got {value!r}") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise ConfigError(f"{name}: must be a finite number in [{low}, {high}], got {value!r}")
    return number


def _count(name: str, value: Any, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{name}: must be an integer ≥ {low}, got {value!r}")
    return int(value)


def make_config(
    n_inputs: int,
    n_hidden: int,
    n_outputs: int,
    *,
    threshold: float = 1.0,
    input_threshold: float = 0.5,
    spike: float = 1.0,
    decay: float = 0.5,
    lr: float = 1.0,
    feedback_floor: float = 1e-3,
    feedback_mode: str = "on_reward",
    grow_prob: float = 0.0,
    weight_range: tuple[float, float] = (0.5, 1.5),
    weight_max: float = 5.0,
    prune_below: float = 0.01,
    auto_prune: bool = True,
    mega_prune_every: int = 0,
    protect_after: int = 0,
    novelty_bonus: float = 0.0,
    threads: int = 1,
) -> dict[str, Any]:
    """Validate the settings and return them as the dict the core takes (see GraphNet)."""
    if feedback_mode not in FEEDBACK_MODES:
        raise ConfigError(
            f"feedback_mode: unknown value {feedback_mode!r}; allowed: 'on_reward', 'every_step'"
        )
    try:
        low, high = (float(v) for v in weight_range)
    except (TypeError, ValueError):
        raise ConfigError(f"weight_range: must be (low, high), got {weight_range!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ConfigError(f"weight_range: need finite low ≤ high, got {weight_range!r}")
    config = {
        "n_inputs": _count("n_inputs", n_inputs, 1),
        "n_hidden": _count("n_hidden", n_hidden, 0),
        "n_outputs": _count("n_outputs", n_outputs, 1),
        "threshold": _number("threshold", threshold),
        "input_threshold": _number("input_threshold", input_threshold),
        "spike": _number("spike", spike),
        "decay": _number("decay", decay, 0.0, 1.0),
        "lr": _number("lr", lr),
        "feedback_floor": _number("feedback_floor", feedback_floor, 1e-300),
        "feedback_mode": feedback_mode,
        "grow_prob": _number("grow_prob", grow_prob, 0.0, 1.0),
        "weight_low": low,
        "weight_high": high,
        "weight_max": math.inf
        if weight_max == math.inf
        else _number("weight_max", weight_max, 1e-300),
        "prune_below": _number("prune_below", prune_below),
        "auto_prune": bool(auto_prune),
        "mega_prune_every": _count("mega_prune_every", mega_prune_every),
        "protect_after": _count("protect_after", protect_after),
        "novelty_bonus": _number("novelty_bonus", novelty_bonus),
        "threads": _count("threads", threads, 1),
    }
    return config


def _public_config(core_config: Mapping[str, Any]) -> dict[str, Any]:
    """The core's dict in GraphNet keyword form (weight_low/high → weight_range)."""
    config = dict(core_config)
    config["weight_range"] = (config.pop("weight_low"), config.pop("weight_high"))
    return config


class GraphNet:
    """An event-driven threshold network over a directed graph that learns from reward.

    Nodes ``0..n_inputs`` are inputs, then ``n_hidden`` hidden nodes, then ``n_outputs``
    outputs. Each edge holds (source, target, weight, activation). Per step: input ``i`` fires
    iff ``observation[i] > input_threshold``; any other node fires iff the sum of
    ``activation·weight`` over its incoming edges (computed in the previous step) exceeds
    ``threshold``; every outgoing edge of a firing node gains ``spike`` activation; the target
    pools receive ``activation·weight``; activations are multiplied by ``decay``.

    Args:
        n_inputs, n_hidden, n_outputs: Node counts.
        density: Probability of each possible edge (source ≠ target, target not an input) in
            the initial random graph.
        threshold: Firing threshold of hidden and output nodes.
        input_threshold: Inputs fire when their observation exceeds this.
        spike: Activation a firing node adds to each outgoing edge.
        decay: Per-step multiplier of edge activations, in [0, 1].
        lr: Learning rate of the feedback rule ``w *= tanh(signal·lr·activation) + 1``.
        feedback_floor: A feedback signal with magnitude below this stops spreading.
        feedback_mode: ``"on_reward"`` (:meth:`feedback` runs the whole backward wave at once)
            or ``"every_step"`` (the wave advances one edge per step, during :meth:`run`).
        grow_prob: Probability per non-input node per step of gaining one random incoming edge.
        weight_range: Initial and grown weights are uniform in ``[low, high)``.
        weight_max: Feedback never raises a weight above this (``math.inf``: the notes'
            unbounded rule, under which weights and signals overflow within a few hundred
            rewards).
        prune_below: :meth:`prune` removes edges with weight below this.
        auto_prune: Prune automatically after feedback pushed a weight below ``prune_below``.
        mega_prune_every: Call :meth:`mega_prune` every this many steps (0: never).
        protect_after: Edges with this many net consecutive positive feedback updates are
            protected from negative feedback, pruning and new incoming edges at their target
            (0: off). See ``docs/graphnet.md``.
        novelty_bonus: Feedback signal given automatically at the outputs whenever they fire
            in a pattern never seen before (0: off).
        threads: Worker threads of the per-step edge pass (same results for any count).
        seed: Seed of the initial graph and of growth.

    Example:

    >>> net = GraphNet(4, 8, 2, density=0.3, seed=0)
    >>> fired = net.run(np.eye(4)[[0, 0, 0, 0]])  # four steps, input 0 on
    >>> fired.shape
    (4, 2)
    """

    def __init__(
        self,
        n_inputs: int,
        n_hidden: int,
        n_outputs: int,
        *,
        density: float = 0.2,
        threshold: float = 1.0,
        input_threshold: float = 0.5,
        spike: float = 1.0,
        decay: float = 0.5,
        lr: float = 1.0,
        feedback_floor: float = 1e-3,
        feedback_mode: str = "on_reward",
        grow_prob: float = 0.0,
        weight_range: tuple[float, float] = (0.5, 1.5),
        weight_max: float = 5.0,
        prune_below: float = 0.01,
        auto_prune: bool = True,
        mega_prune_every: int = 0,
        protect_after: int = 0,
        novelty_bonus: float = 0.0,
        threads: int = 1,
        seed: int = 0,
    ) -> None:
        config = make_config(
            n_inputs,
            n_hidden,
            n_outputs,
            threshold=threshold,
            input_threshold=input_threshold,
            spike=spike,
            decay=decay,
            lr=lr,
            feedback_floor=feedback_floor,
            feedback_mode=feedback_mode,
            grow_prob=grow_prob,
            weight_range=weight_range,
            weight_max=weight_max,
            prune_below=prune_below,
            auto_prune=auto_prune,
            mega_prune_every=mega_prune_every,
            protect_after=protect_after,
            novelty_bonus=novelty_bonus,
            threads=threads,
        )
        density = _number("density", density, 0.0, 1.0)
        seed = _count("seed", seed)
        self._core = GraphNetCore(config, density, seed)
        self.seed = seed
        self.density = density
        self.last_run_stats: dict[str, int] = {"edge_events": 0, "grown": 0, "pruned": 0}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_edges(
        cls,
        n_inputs: int,
        n_hidden: int,
        n_outputs: int,
        source: ArrayLike,
        target: ArrayLike,
        weight: ArrayLike,
        activation: ArrayLike | None = None,
        streak: ArrayLike | None = None,
        *,
        seed: int = 0,
        **settings: Any,
    ) -> GraphNet:
        """A network over explicit edges; ``settings`` are GraphNet's keyword arguments."""
        settings.pop("density", None)
        config = make_config(n_inputs, n_hidden, n_outputs, **settings)
        source_array = np.ascontiguousarray(source, dtype=np.int64)
        m = source_array.shape[0] if source_array.ndim == 1 else -1
        arrays: dict[str, NDArray[Any]] = {
            "source": source_array,
            "target": np.ascontiguousarray(target, dtype=np.int64),
            "weight": np.ascontiguousarray(weight, dtype=np.float64),
            "activation": np.zeros(max(m, 0))
            if activation is None
            else np.ascontiguousarray(activation, dtype=np.float64),
            "streak": np.zeros(max(m, 0), dtype=np.int64)
            if streak is None
            else np.ascontiguousarray(streak, dtype=np.int64),
        }
        for name, array in arrays.items():
            if array.ndim != 1 or array.shape[0] != m:
                raise ShapeError(f"{name}: expected shape ({m},) like source, got {array.shape}")
        for name in ("source", "target", "streak"):
            if m and (arrays[name].min() < 0 or arrays[name].max() >= 2**32):
                raise ConfigError(f"{name}: entries must be non-negative 32-bit integers")
        net = cls.__new__(cls)
        net._core = GraphNetCore.from_edges(
            config,
            arrays["source"].astype(np.uint32),
            arrays["target"].astype(np.uint32),
            arrays["weight"],
            arrays["activation"],
            arrays["streak"].astype(np.uint32),
            _count("seed", seed),
        )
        net.seed = int(seed)
        net.density = math.nan
        net.last_run_stats = {"edge_events": 0, "grown": 0, "pruned": 0}
        return net

    # ------------------------------------------------------------------ properties
    @property
    def config(self) -> dict[str, Any]:
        """The settings as GraphNet keyword arguments (without density and seed)."""
        return _public_config(self._core.config())

    def configure(self, **settings: Any) -> None:
        """Change settings between steps (e.g. ``lr``, ``grow_prob``); node counts stay."""
        config = self.config
        unknown = set(settings) - set(config)
        if unknown:
            raise ConfigError(
                f"{sorted(unknown)[0]}: unknown setting; allowed: {', '.join(sorted(config))}"
            )
        config.update(settings)
        self._core.set_config(make_config(**config))

    @property
    def feedback_mode(self) -> str:
        return str(self._core.config()["feedback_mode"])

    @feedback_mode.setter
    def feedback_mode(self, mode: str) -> None:
        self.configure(feedback_mode=mode)

    @property
    def n_inputs(self) -> int:
        return int(self._core.config()["n_inputs"])

    @property
    def n_hidden(self) -> int:
        return int(self._core.config()["n_hidden"])

    @property
    def n_outputs(self) -> int:
        return int(self._core.config()["n_outputs"])

    @property
    def n_nodes(self) -> int:
        return self.n_inputs + self.n_hidden + self.n_outputs

    @property
    def input_ids(self) -> list[int]:
        return list(range(self.n_inputs))

    @property
    def hidden_ids(self) -> list[int]:
        return list(range(self.n_inputs, self.n_inputs + self.n_hidden))

    @property
    def output_ids(self) -> list[int]:
        return list(range(self.n_nodes - self.n_outputs, self.n_nodes))

    @property
    def n_edges(self) -> int:
        return self._core.n_edges

    @property
    def steps(self) -> int:
        return self._core.steps

    @property
    def feedback_updates(self) -> int:
        """Edge updates made by feedback so far."""
        return self._core.feedback_updates

    @property
    def grown_total(self) -> int:
        return self._core.grown_total

    @property
    def pruned_total(self) -> int:
        return self._core.pruned_total

    def node_kind(self, node: int) -> str:
        if node < self.n_inputs:
            return "input"
        return "output" if node >= self.n_nodes - self.n_outputs else "hidden"

    # ------------------------------------------------------------------ dynamics
    def _observations(self, observations: ArrayLike) -> NDArray[np.float64]:
        x = np.ascontiguousarray(observations, dtype=np.float64)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise ShapeError(f"observations: expected [T, {self.n_inputs}], got {x.shape}")
        if not np.isfinite(x).all():
            raise ConfigError("observations: must be finite")
        return x

    def run(self, observations: ArrayLike) -> NDArray[np.bool_]:
        """Run one step per row of ``observations[T, n_inputs]``; returns fired[T, n_outputs]."""
        outputs, _, stats = self._core.run(self._observations(observations), False)
        self.last_run_stats = dict(zip(("edge_events", "grown", "pruned"), stats, strict=True))
        return np.asarray(outputs)

    def run_recording(self, observations: ArrayLike) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """Like :meth:`run`, also returning which nodes fired: (outputs[T, n_out], nodes[T, N])."""
        outputs, nodes, stats = self._core.run(self._observations(observations), True)
        self.last_run_stats = dict(zip(("edge_events", "grown", "pruned"), stats, strict=True))
        assert nodes is not None
        return np.asarray(outputs), np.asarray(nodes)

    def step(self, observation: ArrayLike) -> NDArray[np.bool_]:
        """One step; returns which outputs fired (bool[n_outputs])."""
        return self.run(np.asarray(observation, dtype=np.float64).reshape(1, -1))[0]

    def feedback(self, signal: float, at: int | Iterable[int] | None = None) -> int:
        """Send ``signal`` backwards from nodes ``at`` (default: all outputs).

        In ``on_reward`` mode the whole breadth-first wave runs now and the number of edges
        updated is returned; in ``every_step`` mode the signal is queued, the wave advances one
        level per step, and 0 is returned.
        """
        signal = _number("signal", signal)
        nodes = self.output_ids if at is None else [at] if isinstance(at, int) else list(at)
        for node in nodes:
            if isinstance(node, bool) or not isinstance(node, (int, np.integer)):
                raise ConfigError(f"at: node ids must be integers, got {node!r}")
            if not 0 <= node < self.n_nodes:
                raise ConfigError(f"at: node id {node} out of range 0..{self.n_nodes - 1}")
        return self._core.feedback(signal, [int(v) for v in nodes])

    def grow(self) -> int:
        """One growth round (see the class docs); returns the number of edges added."""
        return self._core.grow()

    def prune(self) -> int:
        """Remove unprotected edges with weight < prune_below; returns how many."""
        return self._core.prune()

    def mega_prune(self) -> int:
        """Remove edges into nodes not reachable backwards from any output (inputs kept)."""
        return self._core.mega_prune()

    def used_nodes(self) -> NDArray[np.bool_]:
        """Nodes reachable backwards from an output, plus inputs and outputs."""
        return np.asarray(self._core.used_nodes())

    def reset_activity(self) -> None:
        """Zero activations, pools and firing and drop a pending feedback wave."""
        self._core.reset_activity()

    def fired_nodes(self) -> NDArray[np.bool_]:
        """Which nodes fired in the last step."""
        return np.asarray(self._core.fired())

    def potentials(self) -> NDArray[np.float64]:
        """Each node's pool: what it compares with the threshold in the next step."""
        return np.asarray(self._core.pool())

    def edges(self) -> dict[str, NDArray[Any]]:
        """Copies of the edge arrays, sorted by (target, source)."""
        return dict(zip(EDGE_FIELDS, self._core.edges(), strict=True))

    def set_weights(self, weights: ArrayLike) -> None:
        """Overwrite all weights (in the order of :meth:`edges`)."""
        w = np.ascontiguousarray(weights, dtype=np.float64)
        if w.shape != (self.n_edges,):
            raise ShapeError(f"weights: expected ({self.n_edges},), got {w.shape}")
        self._core.set_weights(w)

    def state(self) -> dict[str, Any]:
        """The dynamic state besides the edges (pools, firing, random state, feedback wave)."""
        return dict(self._core.get_state())

    def set_state(self, state: Mapping[str, Any]) -> None:
        converted: dict[str, Any] = {
            "pool": np.ascontiguousarray(state["pool"], dtype=np.float64),
            "fired": np.ascontiguousarray(state["fired"], dtype=np.bool_),
            "frontier_nodes": np.ascontiguousarray(state["frontier_nodes"], dtype=np.uint32),
            "frontier_signals": np.ascontiguousarray(state["frontier_signals"], dtype=np.float64),
            "visited": np.ascontiguousarray(state["visited"], dtype=np.bool_),
            "seen_patterns": np.ascontiguousarray(state["seen_patterns"], dtype=np.bool_).reshape(
                -1, self.n_outputs
            ),
        }
        for name in _STATE_INTS:
            converted[name] = int(state[name])
        self._core.set_state(converted)

    # ------------------------------------------------------------------ conversion
    def to_networkx(self) -> nx.DiGraph:
        """A ``networkx.DiGraph``: nodes 0..N-1 with ``kind`` and ``fired``, edges with
        ``weight``, ``activation`` and ``streak``; ``graph["config"]`` holds the settings."""
        import networkx as nx

        graph = nx.DiGraph(config=self.config, seed=self.seed)
        fired = self.fired_nodes()
        for node in range(self.n_nodes):
            graph.add_node(node, kind=self.node_kind(node), fired=bool(fired[node]))
        e = self.edges()
        for k in range(self.n_edges):
            graph.add_edge(
                int(e["source"][k]),
                int(e["target"][k]),
                weight=float(e["weight"][k]),
                activation=float(e["activation"][k]),
                streak=int(e["streak"][k]),
            )
        return graph

    @classmethod
    def from_networkx(cls, graph: nx.DiGraph, *, seed: int = 0, **settings: Any) -> GraphNet:
        """Build from a DiGraph whose nodes are 0..N-1 with ``kind`` in input/hidden/output
        (inputs first, outputs last). Edge ``weight`` is required, ``activation``/``streak``
        optional. Settings come from ``graph.graph["config"]`` if present, then ``settings``."""
        nodes = sorted(graph.nodes)
        if nodes != list(range(len(nodes))):
            raise ConfigError("graph: nodes must be the integers 0..N-1")
        kinds = [graph.nodes[v].get("kind") for v in nodes]
        allowed = ("input", "hidden", "output")
        if any(k not in allowed for k in kinds):
            raise ConfigError("graph: every node needs kind 'input', 'hidden' or 'output'")
        counts = [kinds.count(k) for k in allowed]
        if kinds != [k for k, c in zip(allowed, counts, strict=True) for _ in range(c)]:
            raise ConfigError("graph: nodes must be ordered inputs, hidden, outputs")
        config = dict(graph.graph.get("config", {}))
        for key in ("n_inputs", "n_hidden", "n_outputs"):
            config.pop(key, None)
        config.update(settings)
        edges = sorted(graph.edges(data=True), key=lambda edge: (edge[1], edge[0]))
        try:
            weight = [float(data["weight"]) for _, _, data in edges]
        except KeyError:
            raise ConfigError("graph: every edge needs a 'weight'") from None
        return cls.from_edges(
            counts[0],
            counts[1],
            counts[2],
            [u for u, _, _ in edges],
            [v for _, v, _ in edges],
            weight,
            [float(data.get("activation", 0.0)) for _, _, data in edges],
            [int(data.get("streak", 0)) for _, _, data in edges],
            seed=seed,
            **config,
        )

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``graphnet.json`` (settings, counters) and ``graphnet.npz`` (edges, state)
        into ``folder``, each atomically; returns the folder."""
        path = Path(folder)
        state = self.state()
        arrays: dict[str, np.ndarray] = dict(self.edges())
        arrays.update({f"state_{name}": np.asarray(state[name]) for name in _STATE_ARRAYS})
        write_npz_atomic(path / "graphnet.npz", arrays)
        write_json_atomic(
            path / "graphnet.json",
            {
                "format": "rnnlab.graphnet",
                "version": FORMAT_VERSION,
                "config": self.config,
                "seed": self.seed,
                "density": None if math.isnan(self.density) else self.density,
                # rng_state is a full 64-bit integer: stored as a decimal string.
                "state": {name: str(state[name]) for name in _STATE_INTS},
                "n_edges": self.n_edges,
            },
        )
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> GraphNet:
        """Load what :meth:`save` wrote (no pickles: plain npz arrays and JSON)."""
        path = Path(folder)
        try:
            meta = json.loads((path / "graphnet.json").read_text())
        except FileNotFoundError:
            raise ConfigError(f"folder: {path} has no graphnet.json") from None
        if meta.get("format") != "rnnlab.graphnet" or meta.get("version") != FORMAT_VERSION:
            raise ConfigError(f"folder: {path}/graphnet.json is not a graphnet save (version 1)")
        with np.load(path / "graphnet.npz", allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        config = dict(meta["config"])
        counts = [config.pop(k) for k in ("n_inputs", "n_hidden", "n_outputs")]
        net = cls.from_edges(
            *counts,
            *(arrays[name] for name in EDGE_FIELDS),
            seed=int(meta["seed"]),
            **config,
        )
        net.density = math.nan if meta.get("density") is None else float(meta["density"])
        state: dict[str, Any] = {name: arrays[f"state_{name}"] for name in _STATE_ARRAYS}
        state.update({name: int(meta["state"][name]) for name in _STATE_INTS})
        net.set_state(state)
        return net

    def draw(
        self,
        path: str | os.PathLike[str],
        *,
        engine: str = "auto",
        fired: ArrayLike | None = None,
        title: str | None = None,
    ) -> Path:
        """Render the graph to ``path`` (format from the suffix, e.g. .png/.svg): edge width ∝
        weight, firing nodes highlighted. ``engine``: "dot" (graphviz), "matplotlib", or
        "auto" (dot if installed). ``fired`` overrides which nodes are highlighted."""
        from rnnlab.graphnet.drawing import draw_graph

        return draw_graph(self, path, engine=engine, fired=fired, title=title)

    def __repr__(self) -> str:
        return (
            f"GraphNet(n_inputs={self.n_inputs}, n_hidden={self.n_hidden}, "
            f"n_outputs={self.n_outputs}, n_edges={self.n_edges}, steps={self.steps})"
        )
