"""Analysis of a finished (or partly finished) sweep: plots, regression, report, derived sweeps.

:func:`examine` writes into ``SWEEP_DIR/examine/``:

* ``results_all.png``: every run's EMA training curve against the training step (optionally
  log-y), the data's order-1 conditional entropy as a reference line.
* ``hyperparameters.png``: one panel per hyperparameter; every run is a (jittered) point, with a
  box plot and the mean as a red diamond (upstream's swarm plots dropped 5–33 % of points).
* ``filtered_below_<thr>.png``: the same for the runs whose metric is below the threshold
  (by default the data's order-1 conditional entropy ``H1``: the best loss a model that sees
  only the current byte can reach on the training data, so a run below it uses memory).
* ``report.md``: the regression table (main effects and pairwise interactions of the
  hyperparameters on the metric, ordinary least squares with standard errors), the ranking of
  architectures by validation loss with the spread over seeds, and the reference levels.
"""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from rnnlab.atomic import write_atomic, write_text_atomic
from rnnlab.errors import ConfigError
from rnnlab.gated.model import UPSTREAM_FLAGS
from rnnlab.gated.sweep import Sweep, make_config

__all__ = ["derive_repeats", "derive_top", "examine", "regression_table"]

HYPERPARAMETERS = ("state_size", *UPSTREAM_FLAGS, "n_layers")
METRICS = ("val_loss", "min_ema", "mean_last_k", "final_ema")


def _save(figure: Any, path: Path) -> None:
    write_atomic(path, lambda file: figure.savefig(file, format="png", dpi=110))


def _metric(results: list[dict[str, Any]], metric: str) -> np.ndarray:
    if metric not in METRICS:
        raise ConfigError(f"metric: one of {', '.join(METRICS)}; got {metric!r}")
    return np.array([float(r[metric]) for r in results])


def regression_table(results: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """OLS of log(metric) on z-scored hyperparameters and their pairwise products.

    Constant columns (a hyperparameter with one value) are dropped. Returns the terms with
    coefficient and standard error, R², and the number of runs.
    """
    y = np.log(_metric(results, metric))
    columns: dict[str, np.ndarray] = {}
    for name in HYPERPARAMETERS:
        values = np.array([float(r["arch"].get(name, 0)) for r in results])
        if values.std() > 0:
            columns[name] = (values - values.mean()) / values.std()
    for a, b in itertools.combinations(list(columns), 2):
        product = columns[a] * columns[b]
        if product.std() > 0:
            columns[f"{a} × {b}"] = (product - product.mean()) / product.std()
    names = list(columns)
    design = (
        np.column_stack([np.ones(len(y)), *(columns[n] for n in names)])
        if names
        else (np.ones((len(y), 1)))
    )
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    fitted = design @ coef
    residual = y - fitted
    dof = max(len(y) - np.linalg.matrix_rank(design), 1)
    sigma2 = float(residual @ residual) / dof
    try:
        cov = sigma2 * np.linalg.pinv(design.T @ design)
        se = np.sqrt(np.clip(np.diag(cov), 0, None))
    except np.linalg.LinAlgError:  # pragma: no cover
        se = np.full(len(coef), math.nan)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - float(residual @ residual) / total if total > 0 else math.nan
    terms: list[dict[str, Any]] = [
        {"term": name, "coefficient": float(coef[i + 1]), "std_error": float(se[i + 1])}
        for i, name in enumerate(names)
    ]
    terms.sort(key=lambda t: -abs(t["coefficient"]))
    return {"terms": terms, "r2": r2, "n": len(y), "intercept": float(coef[0])}


def _panel_plot(results: list[dict[str, Any]], metric: str, title: str) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    values = _metric(results, metric)
    figure, axes = plt.subplots(3, 3, figsize=(12, 10))
    rng = np.random.default_rng(0)
    for ax, name in zip(axes.flat, HYPERPARAMETERS, strict=False):
        keys = np.array([r["arch"].get(name, 0) for r in results])
        categories = sorted({k for k in keys.tolist()})
        groups = [values[keys == c] for c in categories]
        if groups:
            ax.boxplot(groups, positions=range(len(categories)), widths=0.5, showfliers=False)
        for i, group in enumerate(groups):
            ax.scatter(
                i + rng.uniform(-0.18, 0.18, group.size), group, s=8, alpha=0.6, color="tab:blue"
            )
            ax.scatter([i], [group.mean()], marker="D", color="red", zorder=3, s=30)
        ax.set_xticks(range(len(categories)))
        ax.set_xticklabels([str(c) for c in categories])
        ax.set_title(name)
        ax.set_ylabel(metric)
        ax.grid(True, linestyle="--", alpha=0.4)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def examine(
    sweep_dir: str | os.PathLike[str],
    *,
    metric: str = "val_loss",
    threshold: float | None = None,
    log_y: bool = False,
    out: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Write the plots and ``report.md`` of a sweep; returns a summary dict."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    sweep = Sweep(sweep_dir)
    results = sweep.results()
    if not results:
        raise ConfigError(f"dir: no finished runs in {str(sweep.path)!r} yet")
    folder = Path(out) if out is not None else sweep.path / "examine"
    folder.mkdir(parents=True, exist_ok=True)
    data = sweep.data_summary()
    entropy = {int(k): v for k, v in data["ngram_conditional_entropy_nats"].items()}
    if threshold is None:
        threshold = round(entropy[1], 3)
    values = _metric(results, metric)

    figure, ax = plt.subplots(figsize=(10, 5))
    for result in results:
        steps = np.minimum(
            np.arange(1, len(result["curve_ema"]) + 1) * result["log_every"], result["steps"]
        )
        ax.plot(steps, result["curve_ema"], linewidth=0.8, alpha=0.7)
    for order in (0, 1, 2):
        ax.axhline(entropy[order], color="grey", linestyle=":", linewidth=1)
        ax.text(0, entropy[order], f" H{order}", va="bottom", color="grey")
    ax.set_xlabel("training step (byte positions)")
    ax.set_ylabel("EMA training loss (nats/byte)")
    if log_y:
        ax.set_yscale("log")
    ax.set_title(f"{len(results)} runs: EMA(0.95) of the online training loss")
    figure.tight_layout()
    _save(figure, folder / "results_all.png")
    plt.close(figure)

    figure = _panel_plot(results, metric, f"{metric} by hyperparameter ({len(results)} runs)")
    _save(figure, folder / "hyperparameters.png")
    plt.close(figure)

    below = [r for r, v in zip(results, values, strict=False) if v < threshold]
    filtered_name = f"filtered_below_{threshold:g}.png"
    if below:
        figure = _panel_plot(
            below, metric, f"runs with {metric} < {threshold:g} ({len(below)} of {len(results)})"
        )
    else:
        figure, ax = plt.subplots(figsize=(6, 3))
        ax.text(0.5, 0.5, f"no run has {metric} < {threshold:g}", ha="center")
        ax.axis("off")
    _save(figure, folder / filtered_name)
    plt.close(figure)

    regression = regression_table(results, metric) if len(results) > 2 else None
    report = _report(sweep, results, metric, threshold, entropy, regression, len(below))
    write_text_atomic(folder / "report.md", report)
    return {
        "folder": str(folder),
        "runs": len(results),
        "threshold": threshold,
        "below_threshold": len(below),
        "files": ["results_all.png", "hyperparameters.png", filtered_name, "report.md"],
        "regression": regression,
    }


def _architecture_groups(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault(result["arch_id"], []).append(result)
    rows = []
    for arch_id, runs in groups.items():
        val = np.array([r["val_loss"] for r in runs])
        rows.append(
            {
                "arch_id": arch_id,
                "arch": runs[0]["arch"],
                "n": len(runs),
                "mean": float(val.mean()),
                "sd": float(val.std(ddof=1)) if len(runs) > 1 else math.nan,
                "zeroed": float(np.mean([r["val_loss_state_zeroed"] for r in runs])),
                "min_ema": float(np.mean([r["min_ema"] for r in runs])),
            }
        )
    rows.sort(key=lambda row: row["mean"])
    return rows


def _flag_string(arch: dict[str, Any]) -> str:
    short = {
        "use_input_gate": "IG",
        "use_forget_gate": "FG",
        "use_output_gate": "OG",
        "use_state_gate": "SG",
        "use_new_state": "NS",
        "use_old_state": "OS",
        "use_residual": "RES",
    }
    on = [abbr for key, abbr in short.items() if arch.get(key)]
    return "+".join(on) or "-"


def _report(
    sweep: Sweep,
    results: list[dict[str, Any]],
    metric: str,
    threshold: float,
    entropy: dict[int, float],
    regression: dict[str, Any] | None,
    n_below: int,
) -> str:
    lines = [
        f"# Sweep report: {sweep.path}",
        "",
        f"{len(results)} finished runs; ranking metric for plots: `{metric}`; losses in nats/byte.",
        "",
        "## Reference levels (from the training data)",
        "",
        "| order k | H(X_t given k previous bytes) |",
        "|---|---|",
        *[f"| {k} | {v:.4f} |" for k, v in sorted(entropy.items())],
        "",
        f"A model predicting byte t+1 from byte t alone cannot beat H1 = {entropy[1]:.4f} on the "
        "training data; `val_loss_state_zeroed` is each model's own no-memory control. "
        f"Threshold used: {threshold:g} ({n_below} runs below it).",
        "",
        "## Architectures ranked by validation loss (frozen weights, carried state)",
        "",
        "| rank | val_loss mean | sd over seeds | n | state zeroed | min EMA | flags | layers | S |"
        " arch id |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rank, row in enumerate(_architecture_groups(results), 1):
        sd = "—" if math.isnan(row["sd"]) else f"{row['sd']:.4f}"
        lines.append(
            f"| {rank} | {row['mean']:.4f} | {sd} | {row['n']} | {row['zeroed']:.4f} | "
            f"{row['min_ema']:.4f} | {_flag_string(row['arch'])} | {row['arch']['n_layers']} | "
            f"{row['arch']['state_size']} | `{row['arch_id'][:12]}` |"
        )
    lines += ["", f"## Regression of log({metric}) on z-scored hyperparameters", ""]
    if regression is None:
        lines.append("Too few runs for a regression.")
    else:
        lines += [
            f"OLS with all pairwise interactions; n = {regression['n']}, "
            f"R² = {regression['r2']:.3f} (in-sample). Terms sorted by |coefficient|. Note that "
            "an unbalanced grid (e.g. upstream's S = 32 only with RES) confounds terms.",
            "",
            "| term | coefficient | std error |",
            "|---|---|---|",
            *[
                f"| {t['term']} | {t['coefficient']:+.4f} | {t['std_error']:.4f} |"
                for t in regression["terms"]
            ],
        ]
    untrained = sum(1 for r in results if r.get("untrained_parameters"))
    lines += [
        "",
        f"{untrained} runs had parameters that never received a gradient (OS-only "
        "configurations: the recurrence is a fixed random reservoir, as upstream).",
        "",
    ]
    return "\n".join(lines)


def _ranked_architectures(sweep: Sweep, metric: str) -> list[dict[str, Any]]:
    results = sweep.results()
    if not results:
        raise ConfigError(f"dir: no finished runs in {str(sweep.path)!r}")
    _metric(results, metric)
    groups: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault(result["arch_id"], []).append(result)
    ranked = sorted(groups.values(), key=lambda runs: float(np.mean([r[metric] for r in runs])))
    return [runs[0]["arch"] for runs in ranked]


def _derived_training(sweep: Sweep, steps: int | None) -> dict[str, Any]:
    training = dict(sweep.load()["training"])
    if steps is not None:
        training["steps"] = steps
    return training


def derive_top(
    sweep_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    top: float,
    state_size: int,
    layers: int,
    steps: int | None = None,
    metric: str = "val_loss",
) -> int:
    """Upstream experiment 02, de-duplicated: the top fraction, each also at a bigger size.

    For each of the best ``top`` fraction of architectures: the unchanged copy, a copy with
    ``state_size``, and (if it has fewer than ``layers`` layers) copies with ``layers`` layers at
    the original and at the new state size. Duplicate architectures collapse (ids hash the
    architecture only). Returns the number of configs written to ``out_dir``.
    """
    if not 0 < top <= 1:
        raise ConfigError(f"top: a fraction in (0, 1] for this form, got {top!r}")
    sweep = Sweep(sweep_dir)
    ranked = _ranked_architectures(sweep, metric)
    chosen = ranked[: max(1, int(top * len(ranked)))]
    configs = []
    for arch in chosen:
        variants = [arch, {**arch, "state_size": state_size}]
        if arch["n_layers"] < layers:
            variants += [
                {**arch, "n_layers": layers},
                {**arch, "n_layers": layers, "state_size": state_size},
            ]
        configs += [make_config(v, 0) for v in variants]
    return Sweep(out_dir).init(configs, _derived_training(sweep, steps))


def derive_repeats(
    sweep_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    top: int,
    repeats: int,
    steps: int | None = None,
    metric: str = "val_loss",
) -> int:
    """Upstream experiment 03, de-duplicated: the ``top`` best architectures × ``repeats`` seeds."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ConfigError(f"top: an integer >= 1 for this form, got {top!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"repeats: an integer >= 1, got {repeats!r}")
    sweep = Sweep(sweep_dir)
    chosen = _ranked_architectures(sweep, metric)[:top]
    configs = [make_config(arch, seed) for arch in chosen for seed in range(repeats)]
    return Sweep(out_dir).init(configs, _derived_training(sweep, steps))
