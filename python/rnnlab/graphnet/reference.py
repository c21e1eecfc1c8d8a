"""A straightforward pure-Python/networkx implementation of the graph network's rules.

It is what the seed notes planned (a ``networkx.DiGraph`` with attributes on the edges and
plain loops), written independently of the Rust core from the rules in ``docs/graphnet.md``.
It serves as the correctness reference (the tests run both on random graphs, growth and
feedback included, and require identical results: same operation order, same SplitMix64
random stream) and as the baseline of ``benches/test_graphnet_events.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import networkx as nx
import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["ReferenceGraphNet", "SplitMix64"]

_MASK = (1 << 64) - 1


class SplitMix64:
    """SplitMix64 with the same three operations as the Rust core."""

    def __init__(self, seed: int) -> None:
        self.state = seed & _MASK

    def next_u64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & _MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def uniform(self) -> float:
        return (self.next_u64() >> 11) * (1.0 / 9007199254740992.0)

    def below(self, n: int) -> int:
        return (self.next_u64() * n) >> 64


class ReferenceGraphNet:
    """The rules of :class:`rnnlab.graphnet.GraphNet` over a networkx DiGraph (single thread).

    ``config`` is the core's settings dict (``make_config``). The predecessors of every node are
    kept in ascending source order so that sums run in the same order as in the core.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        edges: Iterable[tuple[int, int, float, float, int]],
        seed: int = 0,
    ) -> None:
        self.config = dict(config)
        self.n_inputs = int(config["n_inputs"])
        self.n_outputs = int(config["n_outputs"])
        self.n_nodes = self.n_inputs + int(config["n_hidden"]) + self.n_outputs
        self.graph = nx.DiGraph()
        self.graph.add_nodes_from(range(self.n_nodes))
        for source, target, weight, activation, streak in sorted(
            edges, key=lambda edge: (edge[1], edge[0])
        ):
            self.graph.add_edge(source, target, weight=weight, activation=activation, streak=streak)
        self.rng = SplitMix64(seed)
        self.pool = [0.0] * self.n_nodes
        self.fired = [False] * self.n_nodes
        self.frontier: list[list[Any]] = []
        self.visited: set[int] = set()
        self.seen_patterns: set[tuple[bool, ...]] = set()
        self.maybe_prunable = False
        self.steps = 0
        self.feedback_updates = 0

    @classmethod
    def random(cls, config: Mapping[str, Any], density: float, seed: int) -> ReferenceGraphNet:
        """The same random graph the core builds: targets then sources ascending, one uniform
        per pair, one more for the weight of each created edge."""
        rng = SplitMix64(seed)
        n = int(config["n_inputs"]) + int(config["n_hidden"]) + int(config["n_outputs"])
        low, high = float(config["weight_low"]), float(config["weight_high"])
        edges = []
        for target in range(int(config["n_inputs"]), n):
            for source in range(n):
                if source != target and rng.uniform() < density:
                    edges.append((source, target, low + (high - low) * rng.uniform(), 0.0, 0))
        net = cls(config, edges, seed)
        net.rng = rng
        return net

    # ------------------------------------------------------------------ rules
    def _protected(self, data: Mapping[str, Any]) -> bool:
        after = self.config["protect_after"]
        return bool(after > 0 and data["streak"] >= after)

    def step(self, observation: Sequence[float]) -> list[bool]:
        c = self.config
        for i in range(self.n_inputs):
            self.fired[i] = observation[i] > c["input_threshold"]
        for v in range(self.n_inputs, self.n_nodes):
            self.fired[v] = self.pool[v] > c["threshold"]
        first_output = self.n_nodes - self.n_outputs
        if c["novelty_bonus"] != 0.0:
            pattern = tuple(self.fired[first_output:])
            if any(pattern) and pattern not in self.seen_patterns:
                self.seen_patterns.add(pattern)
                at = [first_output + k for k, f in enumerate(pattern) if f]
                self.inject(c["novelty_bonus"], at)
        spike, decay = c["spike"], c["decay"]
        for v in range(self.n_nodes):
            total = 0.0
            for u, data in self.graph.pred[v].items():
                a = data["activation"]
                if self.fired[u]:
                    a += spike
                total += a * data["weight"]
                data["activation"] = a * decay
            self.pool[v] = total
        if c["feedback_mode"] == "on_reward":
            self.run_wave()
        elif self.frontier:
            self.feedback_level()
            if not self.frontier:
                self.end_wave()
        if c["auto_prune"] and self.maybe_prunable:
            self.prune()
        if c["grow_prob"] > 0.0:
            self.grow()
        self.steps += 1
        every = c["mega_prune_every"]
        if every > 0 and self.steps % every == 0:
            self.mega_prune()
        return self.fired[first_output:]

    def run(self, observations: ArrayLike) -> NDArray[np.bool_]:
        rows = np.asarray(observations, dtype=np.float64)
        return np.array([self.step(list(row)) for row in rows], dtype=bool).reshape(
            len(rows), self.n_outputs
        )

    def inject(self, signal: float, at: Iterable[int]) -> None:
        if abs(signal) < self.config["feedback_floor"]:
            return
        for v in at:
            self.visited.add(v)
            for entry in self.frontier:
                if entry[0] == v:
                    entry[1] += signal
                    break
            else:
                self.frontier.append([v, signal])

    def feedback(self, signal: float, at: Iterable[int]) -> int:
        before = self.feedback_updates
        self.inject(signal, list(at))
        if self.config["feedback_mode"] == "on_reward":
            self.run_wave()
            if self.config["auto_prune"] and self.maybe_prunable:
                self.prune()
        return self.feedback_updates - before

    def run_wave(self) -> None:
        while self.frontier:
            self.feedback_level()
        self.end_wave()

    def end_wave(self) -> None:
        self.frontier = []
        self.visited = set()

    def feedback_level(self) -> None:
        c = self.config
        lr = c["lr"]
        pending: dict[int, float] = {}
        for v, s in sorted(self.frontier, key=lambda entry: entry[0]):
            for u, data in self.graph.pred[v].items():
                a = data["activation"]
                if s * a != 0.0:
                    if s < 0.0 and self._protected(data):
                        data["streak"] -= 1
                    else:
                        data["weight"] = min(
                            data["weight"] * (math.tanh(s * lr * a) + 1.0), c["weight_max"]
                        )
                        data["streak"] = data["streak"] + 1 if s > 0.0 else 0
                        if data["weight"] < c["prune_below"]:
                            self.maybe_prunable = True
                self.feedback_updates += 1
                if u not in self.visited:
                    pending[u] = pending.get(u, 0.0) + s * a * data["weight"]
        self.frontier = []
        for u in sorted(pending):
            if abs(pending[u]) >= c["feedback_floor"]:
                self.visited.add(u)
                self.frontier.append([u, pending[u]])

    def prune(self) -> int:
        self.maybe_prunable = False
        weak = [
            (u, v)
            for u, v, data in self.graph.edges(data=True)
            if data["weight"] < self.config["prune_below"] and not self._protected(data)
        ]
        self.graph.remove_edges_from(weak)
        return len(weak)

    def used_nodes(self) -> set[int]:
        outputs = range(self.n_nodes - self.n_outputs, self.n_nodes)
        used: set[int] = set(outputs)
        for output in outputs:
            used |= nx.ancestors(self.graph, output)
        return used | set(range(self.n_inputs))

    def mega_prune(self) -> int:
        used = self.used_nodes()
        dead = [(u, v) for u, v in self.graph.edges() if v not in used]
        self.graph.remove_edges_from(dead)
        return len(dead)

    def grow(self) -> int:
        c = self.config
        low, high = c["weight_low"], c["weight_high"]
        added = 0
        for target in range(self.n_inputs, self.n_nodes):
            if self.rng.uniform() >= c["grow_prob"]:
                continue
            source = self.rng.below(self.n_nodes - 1)
            if source >= target:
                source += 1
            weight = low + (high - low) * self.rng.uniform()
            incoming = self.graph.pred[target]
            guarded = c["protect_after"] > 0 and any(
                self._protected(data) for data in incoming.values()
            )
            if source in incoming or guarded:
                continue
            # Re-insert the target's in-edges so its predecessors stay in ascending order.
            kept = sorted(incoming.items())
            self.graph.remove_edges_from([(u, target) for u, _ in kept])
            kept.append((source, {"weight": weight, "activation": 0.0, "streak": 0}))
            for u, data in sorted(kept, key=lambda item: item[0]):
                self.graph.add_edge(u, target, **data)
            added += 1
        return added

    def edges(self) -> dict[str, NDArray[Any]]:
        """Edge arrays sorted by (target, source), like the core's."""
        rows = sorted(self.graph.edges(data=True), key=lambda edge: (edge[1], edge[0]))
        return {
            "source": np.array([u for u, _, _ in rows], dtype=np.uint32),
            "target": np.array([v for _, v, _ in rows], dtype=np.uint32),
            "weight": np.array([d["weight"] for _, _, d in rows], dtype=np.float64),
            "activation": np.array([d["activation"] for _, _, d in rows], dtype=np.float64),
            "streak": np.array([d["streak"] for _, _, d in rows], dtype=np.uint32),
        }
