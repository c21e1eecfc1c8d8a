"""PNG plots of a microcircuit run (the seed's plot set, fixed): one colour per seed, teacher
values dashed black, angle plots per seed and as ``_mean.png`` with a ± std band."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from rnnlab.atomic import write_atomic

__all__ = ["ANGLE_TITLES", "plot_result"]

ANGLE_TITLES = {
    "angle_B_WT": "∠(B, Wᵀ)",
    "angle_B_RHS": "∠(B, φ′Wᵀφ′)",
    "angle_jacobians": "∠(J_g, J_fᵀ)",
    "angle_BPI_negB": "∠(B^PI, −B)",
    "angle_WIP_W": "∠(W^IP, W)",
    "angle_dW_BP": "∠(ΔW microcircuit, ΔW BP-ANN)",
}


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)
    return path


def _colours(n: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["rainbow"]
    return [cmap(i / max(1, n - 1)) for i in range(n)]


def _time_axis(series: dict[str, np.ndarray]) -> tuple[np.ndarray, str]:
    if "time_ms" in series:
        return series["time_ms"][0], "simulated time [ms]"
    return np.arange(next(iter(series.values())).shape[1]), "record"


def plot_result(result: Any, folder: str | Path) -> list[Path]:
    """Write every plot of ``result`` (a :class:`~rnnlab.microcircuit.runner.RunResult`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    series = result.series
    params = result.params.values
    written: list[Path] = []
    t, xlabel = _time_axis(series)
    seeds = series.get("seeds", np.arange(result.state.shape[0]))
    colours = _colours(len(seeds))

    if "MSE" in series:
        window = max(1, round(10 * params["Tpres"] / (params["rec_per_steps"] * params["dt"])))
        window = min(window, series["MSE"].shape[1])
        fig, ax = plt.subplots(figsize=(6, 4))
        for b, seed in enumerate(seeds):
            values = series["MSE"][b]
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(
                t[window - 1 :], np.maximum(smooth, 1e-300), color=colours[b], label=f"seed {seed}"
            )
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"MSE (moving average over {window} records)")
        ax.legend(fontsize=6)
        written.append(_save(fig, folder / "MSE.png"))

    pattern = re.compile(r"^(WPP|WIP|BPP|BPI)_layer(\d+)$")
    for key in sorted(series):
        match = pattern.match(key)
        if not match:
            continue
        values = series[key]  # (seeds, records, rows, cols)
        fig, ax = plt.subplots(figsize=(6, 4))
        for b in range(values.shape[0]):
            flat = values[b].reshape(values.shape[1], -1)
            ax.plot(t, flat, color=colours[b], linewidth=0.6, alpha=0.7)
        teacher = series.get(f"teacher_{key}")
        if teacher is not None:
            for value in np.ravel(teacher):
                ax.axhline(value, color="black", linestyle="--", linewidth=0.8)
        ax.set_xlabel(xlabel)
        ax.set_title(f"{match.group(1)} layer {match.group(2)} (one colour per seed)")
        written.append(_save(fig, folder / f"{key}.png"))

    for key, title in ANGLE_TITLES.items():
        if key not in series:
            continue
        values = series[key]  # (seeds, records, layers)
        t_key = series.get(f"{key}_time_ms", t)
        for layer in range(values.shape[2]):
            fig, ax = plt.subplots(figsize=(6, 4))
            for b, seed in enumerate(seeds):
                ax.plot(t_key, values[b, :, layer], color=colours[b], label=f"seed {seed}")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("degrees")
            ax.set_title(f"{title}, layer {layer}")
            ax.legend(fontsize=6)
            written.append(_save(fig, folder / f"{key}_layer{layer}.png"))
            mean = values[:, :, layer].mean(axis=0)
            std = values[:, :, layer].std(axis=0)
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.plot(t_key, mean, color="black")
            ax.fill_between(t_key, mean - std, mean + std, color="grey", alpha=0.4)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("degrees (mean ± std over seeds)")
            ax.set_title(f"{title}, layer {layer}")
            written.append(_save(fig, folder / f"{key}_layer{layer}_mean.png"))
    return written
