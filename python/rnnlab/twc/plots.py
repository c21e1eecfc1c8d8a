"""Figures of a TWC run: return curve, neuron traces of an episode, the circuit with weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rnnlab.twc.circuit import FiuriCircuit

__all__ = ["circuit_figure", "return_curve_figure", "traces_figure"]

_LAYER_Y = {"sensory": 3.0, "inter": 2.0, "command": 1.0, "motor": 0.0}
_TYPE_COLOUR = {"EX": "tab:green", "IN": "tab:red", "GJ": "tab:blue"}


def _figure(*args: Any, **kwargs: Any) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def return_curve_figure(
    curves: dict[str, tuple[Sequence[float], Sequence[float]]], xlabel: str, target: float = 90.0
) -> Any:
    """One line per named curve (x, y), plus the solved threshold."""
    figure, axis = _figure(figsize=(7, 4))
    for name, (x, y) in curves.items():
        axis.plot(x, y, label=name, marker="." if len(x) < 60 else None)
    axis.axhline(target, color="grey", linestyle="--", label=f"solved ({target:g})")
    axis.set_xlabel(xlabel)
    axis.set_ylabel("return")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def traces_figure(
    names: Sequence[str], trace: dict[str, np.ndarray], title: str = "episode traces"
) -> Any:
    """Observations, action and every neuron's internal state E over one episode."""
    figure, axes = _figure(3, 1, figsize=(9, 8), sharex=True)
    steps = np.arange(trace["action"].shape[0])
    axes[0].plot(steps, trace["obs"][:, 0], label="position")
    axes[0].plot(steps, trace["obs"][:, 1] * 10, label="velocity ×10")
    axes[0].legend(loc="upper left")
    axes[0].set_title(title)
    axes[1].plot(steps, trace["action"].reshape(-1), color="black")
    axes[1].set_ylabel("action")
    for i, name in enumerate(names):
        axes[2].plot(steps, trace["internal"][:, i], label=name, linewidth=0.9)
    axes[2].set_ylabel("internal state E")
    axes[2].set_xlabel("step")
    axes[2].legend(ncol=6, fontsize=7, loc="upper left")
    figure.tight_layout()
    return figure


def circuit_figure(circuit: FiuriCircuit, title: str = "TWC with learned weights") -> Any:
    """Neurons by layer, synapses coloured by type with width ∝ weight; T and d annotated."""
    params = circuit.parameters_json()
    wiring = circuit.wiring
    positions: dict[str, tuple[float, float]] = {}
    for role, y in _LAYER_Y.items():
        members = [n for n, r in zip(wiring.neuron_names, wiring.roles, strict=False) if r == role]
        for i, name in enumerate(members):
            positions[name] = (i - (len(members) - 1) / 2, y)
    figure, axis = _figure(figsize=(8, 6))
    top = max(s["weight"] for s in params["synapses"]) or 1.0
    for synapse in params["synapses"]:
        (x0, y0), (x1, y1) = positions[synapse["from"]], positions[synapse["to"]]
        axis.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops={
                "arrowstyle": "-|>",
                "color": _TYPE_COLOUR[synapse["type"]],
                "lw": 0.5 + 3.5 * synapse["weight"] / top,
                "alpha": 0.7,
                "connectionstyle": "arc3,rad=0.15",
                "shrinkA": 12,
                "shrinkB": 12,
            },
        )
        axis.text((x0 + x1) / 2, (y0 + y1) / 2, f"{synapse['weight']:.2f}", fontsize=6, alpha=0.8)
    for name, (x, y) in positions.items():
        axis.scatter([x], [y], s=700, color="white", edgecolor="black", zorder=3)
        axis.text(x, y, name, ha="center", va="center", fontsize=8, zorder=4)
        if name in params["neurons"]:
            neuron = params["neurons"][name]
            axis.text(
                x,
                y - 0.28,
                f"T={neuron['threshold']:.2f}\nd={neuron['decay']:.2f}",
                ha="center",
                va="top",
                fontsize=6,
            )
    for kind, colour in _TYPE_COLOUR.items():
        axis.plot([], [], color=colour, label=kind)
    axis.legend(loc="lower left")
    axis.set_title(title)
    axis.set_axis_off()
    figure.tight_layout()
    return figure
