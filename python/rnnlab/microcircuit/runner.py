"""The microcircuit runner: ``bw_only`` and ``fw_bw`` tasks, streaming records, results, plots.

``python -m rnnlab.microcircuit.runner --params run01/params.json --task bw_only`` (the seed's
flags) is the same as ``rnnlab microcircuit run ...``. Outputs go to the folder of the params
file: ``results.npz`` (every recorded series), ``model.npz`` (final states + series + params, no
pickle), ``run.log`` and the PNG plots. ``--load run01/model.npz`` re-plots without simulating.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rnnlab.atomic import write_npz_atomic, write_text_atomic
from rnnlab.errors import ConfigError
from rnnlab.microcircuit.cli import BACKENDS, EXAMPLES, TASKS, add_run_arguments
from rnnlab.microcircuit.metrics import backprop_ann_updates, record_metrics
from rnnlab.microcircuit.network import Layout, Options, init_batch, set_self_predicting_state
from rnnlab.microcircuit.params import MicrocircuitParams, load_params, params_from_dict
from rnnlab.microcircuit.reference import reference_run

__all__ = ["TASKS", "RunResult", "compare_bw_only", "load_model", "main", "run_task"]


@dataclass
class RunResult:
    """What a run produced: the series (``results.npz``), final states and bookkeeping."""

    params: MicrocircuitParams
    task: str
    series: dict[str, np.ndarray]
    state: np.ndarray
    teacher_state: np.ndarray | None
    info: dict[str, Any] = field(default_factory=dict)


class _Stepper:
    """Runs chunks of steps on the fast kernel or the numpy reference."""

    def __init__(self, opts: Options, layout: Layout, seeds: list[int], backend: str) -> None:
        self.opts, self.layout, self.seeds, self.backend = opts, layout, list(seeds), backend
        self.kernel = None
        if backend == "fast":
            from rnnlab.microcircuit.fast import FastKernel

            self.kernel = FastKernel(opts, layout)

    def __call__(self, state, inputs, targets, step0, learn) -> np.ndarray:
        flags = {"learn_fw": learn[0], "learn_lat": learn[1], "learn_bw": learn[2]}
        if self.kernel is not None:
            return self.kernel.run(state, inputs, targets, seeds=self.seeds, step0=step0, **flags)
        return reference_run(
            self.opts, self.layout, state, inputs, targets, seeds=self.seeds, step0=step0, **flags
        )


def _expand(samples: np.ndarray, steps_per_sample: int) -> np.ndarray:
    """(batch, n_samples, n) held for ``steps_per_sample`` steps each → (batch, steps, n)."""
    return np.ascontiguousarray(np.repeat(samples, steps_per_sample, axis=1))


def _teacher_targets(params, dataset, steps_per_sample, settle_steps, backend, log):
    """Teacher: SPS, settled, one unshuffled epoch, no learning or noise; the target of each
    sample is the teacher's prospective output ŭ_N at the last step of its presentation."""
    teacher_seed = int(np.random.default_rng(params.seeds[0]).integers(100_000, 999_999))
    log(f"teacher seed {teacher_seed}")
    opts, layout, state = init_batch(params, [teacher_seed], teacher=True)
    stepper = _Stepper(opts, layout, [teacher_seed], backend)
    off = (False, False, False)
    step = 0
    if settle_steps:
        settle = _expand(dataset[None], steps_per_sample)
        reps = math.ceil(settle_steps / settle.shape[1])
        settle = np.ascontiguousarray(np.tile(settle, (1, reps, 1))[:, :settle_steps])
        stepper(state, settle, None, step, off)
        step += settle_steps
    views = layout.batch_views(state)
    targets = np.zeros((dataset.shape[0], layout.n[-1]))
    for k in range(dataset.shape[0]):
        x = np.ascontiguousarray(np.repeat(dataset[None, k : k + 1], steps_per_sample, axis=1))
        stepper(state, x, None, step, off)
        step += steps_per_sample
        targets[k] = views["u_breve"][layout.N - 1][0]
    return teacher_seed, state, targets


def run_task(
    params: MicrocircuitParams,
    task: str,
    *,
    compare: str | None = None,
    backend: str = "fast",
    progress: bool = True,
    log=print,
) -> RunResult:
    """Simulate every seed of ``params`` together (one batch) on ``task``; see the module doc."""
    if task not in TASKS:
        raise ConfigError(f"task: must be one of {', '.join(TASKS)}; got {task!r}")
    if backend not in BACKENDS:
        raise ConfigError(f"backend: must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if compare not in (None, "BP"):
        raise ConfigError(f"compare: must be BP or absent; got {compare!r}")
    v = params.values
    seeds = params.seeds
    dt = v["dt"]
    spp = round(v["Tpres"] / dt)
    settle_steps = round(v["settling_time"] / dt)
    rec = v["rec_per_steps"]
    epoch_steps = spp * v["dataset_size"]

    teacher_state = None
    teacher_seed = None
    data_seed = seeds[0]
    targets_per_sample = None
    if task == "fw_bw":
        teacher_seed = int(np.random.default_rng(seeds[0]).integers(100_000, 999_999))
        data_seed = teacher_seed
    dataset = np.random.default_rng(data_seed).uniform(
        0.0, 1.0, (v["dataset_size"], v["layers"][0])
    )
    if task == "fw_bw":
        teacher_seed, teacher_state, targets_per_sample = _teacher_targets(
            params, dataset, spp, settle_steps, backend, log
        )

    opts, layout, state = init_batch(params, seeds)
    if task == "fw_bw" and teacher_state is not None:
        t_views = layout.batch_views(teacher_state)
        s_views = layout.batch_views(state)
        if v["copy_teacher_weights"]:
            for name in ("W", "WIP", "B", "BPI"):
                for dst, src in zip(s_views[name], t_views[name], strict=True):
                    dst[...] = src
        if v["copy_teacher_voltages"]:
            for name in ("u", "u_prev", "uI", "uI_prev"):
                for dst, src in zip(s_views[name], t_views[name], strict=True):
                    dst[...] = src
    stepper = _Stepper(opts, layout, seeds, backend)
    batch = len(seeds)
    shuffle_rngs = [np.random.default_rng([seed, 1]) for seed in seeds]
    learn = (task == "fw_bw", True, True)
    replay_compare = compare == "BP" and task == "bw_only"
    if replay_compare:
        compare = None  # computed after the run by replaying the recorded B (compare_bw_only)

    records: dict[str, list[np.ndarray]] = {}
    views = layout.batch_views(state)

    def record(step: int, mse: np.ndarray | None, target_now: np.ndarray | None) -> None:
        records.setdefault("time_ms", []).append(np.full(batch, step * dt))
        for key, value in record_metrics(opts, layout, state).items():
            records.setdefault(key, []).append(value)
        if mse is not None:
            records.setdefault("MSE", []).append(mse)
        records.setdefault("output", []).append(views["u_breve"][layout.N - 1].copy())
        if target_now is not None:
            records.setdefault("target", []).append(target_now.copy())
            if compare == "BP":
                records.setdefault("angle_dW_BP", []).append(
                    backprop_ann_updates(opts, layout, state, target_now)
                )
        for flag, name, key in (
            ("rec_WPP", "W", "WPP"),
            ("rec_WIP", "WIP", "WIP"),
            ("rec_BPP", "B", "BPP"),
            ("rec_BPI", "BPI", "BPI"),
        ):
            if v[flag]:
                for i, array in enumerate(views[name]):
                    records.setdefault(f"{key}_layer{i}", []).append(array.copy())

    def run_span(inputs, targets, step, learn_flags, bar) -> int:
        """Run a span in chunks that end on record boundaries; returns the new step count."""
        total = inputs.shape[1]
        done = 0
        sq_sum = np.zeros(batch)
        sq_count = 0
        while done < total:
            stop = min(total, done + rec - (step % rec))
            chunk_targets = None if targets is None else targets[:, done:stop]
            errors = stepper(
                state,
                np.ascontiguousarray(inputs[:, done:stop]),
                None if chunk_targets is None else np.ascontiguousarray(chunk_targets),
                step,
                learn_flags,
            )
            sq_sum += errors
            sq_count += stop - done
            step += stop - done
            if bar is not None:
                bar.update(stop - done)
            done = stop
            if step % rec == 0:
                mse = sq_sum / sq_count if targets is not None else None
                record(step, mse, None if targets is None else targets[:, stop - 1])
                sq_sum = np.zeros(batch)
                sq_count = 0
        return step

    total_steps = settle_steps + v["epochs"] * epoch_steps
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, unit="step", desc=f"microcircuit {task}", smoothing=0.1)
    started = time.perf_counter()
    step = 0
    order0 = np.arange(v["dataset_size"])
    if settle_steps:
        base = _expand(np.broadcast_to(dataset[order0], (batch, *dataset.shape)), spp)
        reps = math.ceil(settle_steps / base.shape[1])
        settle_inputs = np.tile(base, (1, reps, 1))[:, :settle_steps]
        settle_targets = None
        if targets_per_sample is not None:
            tb = _expand(
                np.broadcast_to(targets_per_sample, (batch, *targets_per_sample.shape)), spp
            )
            settle_targets = np.tile(tb, (1, reps, 1))[:, :settle_steps]
        step = run_span(settle_inputs, settle_targets, step, (False, False, False), bar)
    for _epoch in range(v["epochs"]):
        if v["shuffle"]:
            orders = np.stack([rng.permutation(v["dataset_size"]) for rng in shuffle_rngs])
        else:
            orders = np.broadcast_to(order0, (batch, v["dataset_size"]))
        inputs = _expand(dataset[orders], spp)
        targets = None if targets_per_sample is None else _expand(targets_per_sample[orders], spp)
        step = run_span(inputs, targets, step, learn, bar)
        if bar is not None:
            elapsed = time.perf_counter() - started
            bar.set_postfix_str(f"{step * dt / max(elapsed, 1e-9):.0f} sim ms/s")
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - started
    series = {key: np.stack(values, axis=1) for key, values in records.items()}
    if teacher_state is not None:
        assert targets_per_sample is not None  # the teacher made both
        t_views = layout.batch_views(teacher_state)
        for name, key in (("W", "WPP"), ("WIP", "WIP"), ("B", "BPP"), ("BPI", "BPI")):
            for i, array in enumerate(t_views[name]):
                series[f"teacher_{key}_layer{i}"] = array[0].copy()
        series["teacher_targets"] = targets_per_sample
    series["seeds"] = np.asarray(seeds, dtype=np.int64)
    info = {
        "task": task,
        "backend": backend,
        "compare": compare,
        "steps": step,
        "settle_steps": settle_steps,
        "rec_per_steps": rec,
        "wall_seconds": wall,
        "simulated_ms": step * dt,
        "seed_steps_per_second": step * batch / max(wall, 1e-9),
        "teacher_seed": teacher_seed,
    }
    log(
        f"simulated {step * dt:.1f} ms × {batch} seeds ({step} steps) in {wall:.2f} s "
        f"({step * dt / max(wall, 1e-9):.0f} sim ms/s, "
        f"{info['seed_steps_per_second']:.3g} seed-steps/s)"
    )
    result = RunResult(params, task, series, state, teacher_state, info)
    if replay_compare:
        compare_bw_only(result, backend=backend, log=log)
    return result


def compare_bw_only(
    result: RunResult, *, backend: str = "fast", snapshots: int = 20, log=print
) -> None:
    """∠(microcircuit ΔW, BP-ANN ΔW) for a ``bw_only`` run, by replay (upstream's procedure).

    For ``snapshots`` records evenly spread over training: take the recorded B (``rec_BPP``; W
    is frozen in bw_only so the final W is the W of every record), re-impose the SPS, and run the
    network without noise or learning over the dataset, nudged towards a teacher's targets
    (teacher as in fw_bw). At the end of each presentation the angle between the microcircuit's
    ΔW_ℓ and the rate ANN's backprop ΔW_ℓ is taken (:func:`backprop_ann_updates`); the mean over
    presentations goes into ``angle_dW_BP`` (S, snapshots, N), at ``angle_dW_BP_time_ms``.
    """
    if result.task != "bw_only":
        raise ConfigError("compare: the replay comparison is for bw_only runs")
    params, series = result.params, result.series
    v = params.values
    opts, layout, _ = init_batch(params, params.seeds)
    n_hidden = layout.n_hidden
    if any(f"BPP_layer{h}" not in series for h in range(n_hidden)):
        raise ConfigError("compare: needs the recorded backward weights (set rec_BPP: true)")
    spp = round(v["Tpres"] / v["dt"])
    settle_steps = round(v["settling_time"] / v["dt"])
    dataset = np.random.default_rng(params.seeds[0]).uniform(
        0.0, 1.0, (v["dataset_size"], v["layers"][0])
    )
    _seed, _teacher, targets = _teacher_targets(params, dataset, spp, settle_steps, backend, log)
    times = series["time_ms"][0]
    trained = np.flatnonzero(times > v["settling_time"] + 1e-9)
    if trained.size == 0:
        raise ConfigError("compare: no records after settling")
    picks = np.unique(np.linspace(trained[0], trained[-1], min(snapshots, trained.size)).round())
    picks = picks.astype(int)
    stepper = _Stepper(opts, layout, params.seeds, backend)
    off = (False, False, False)
    angles = np.zeros((len(params.seeds), len(picks), layout.N))
    for column, record in enumerate(picks):
        state = result.state.copy()
        views = layout.batch_views(state)
        for h in range(n_hidden):
            views["B"][h][...] = series[f"BPP_layer{h}"][:, record]
        set_self_predicting_state(opts, layout, views)
        for x in views["xi"]:
            x[...] = 0.0
        for k in range(dataset.shape[0]):
            x_k = np.ascontiguousarray(
                np.broadcast_to(dataset[k], (len(params.seeds), spp, dataset.shape[1]))
            )
            t_k = np.ascontiguousarray(
                np.broadcast_to(targets[k], (len(params.seeds), spp, targets.shape[1]))
            )
            stepper(state, x_k, t_k, 0, off)
            angles[:, column] += backprop_ann_updates(opts, layout, state, t_k[:, -1])
        angles[:, column] /= dataset.shape[0]
    series["angle_dW_BP"] = angles
    series["angle_dW_BP_time_ms"] = times[picks]
    log(f"compare BP: replayed {len(picks)} snapshots of B over {dataset.shape[0]} samples each")


def save_result(result: RunResult, folder: Path) -> tuple[Path, Path]:
    """Write ``results.npz`` (series) and ``model.npz`` (states + series + params JSON)."""
    folder.mkdir(parents=True, exist_ok=True)
    results = write_npz_atomic(folder / "results.npz", result.series)
    model = {
        "state": result.state,
        "params_json": np.array(json.dumps(result.params.to_json_dict())),
        "info_json": np.array(json.dumps(result.info)),
        "task": np.array(result.task),
        **{f"series/{k}": value for k, value in result.series.items()},
    }
    if result.teacher_state is not None:
        model["teacher_state"] = result.teacher_state
    return results, write_npz_atomic(folder / "model.npz", model)


def load_model(path: str | os.PathLike[str]) -> RunResult:
    """Read a ``model.npz`` written by :func:`save_result` (``allow_pickle=False``)."""
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"load: cannot read {path}: {exc}") from exc
    with data:
        params = params_from_dict(json.loads(str(data["params_json"])), source=str(path))
        series = {k[len("series/") :]: data[k] for k in data.files if k.startswith("series/")}
        teacher = data["teacher_state"] if "teacher_state" in data.files else None
        return RunResult(
            params=params,
            task=str(data["task"]),
            series=series,
            state=data["state"],
            teacher_state=teacher,
            info=json.loads(str(data["info_json"])),
        )


def build_parser(prog: str = "python -m rnnlab.microcircuit.runner") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Simulate dendritic microcircuits (BP/FA/PAL/DTPDRL) on bw_only or fw_bw; "
        "all seeds run as one batch; outputs go to the folder of the params file.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(parser)
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """The handler behind both entry points; returns an exit code."""
    params_path = Path(args.params)
    folder = params_path.parent if str(params_path.parent) else Path.cwd()
    lines: list[str] = []

    def log(message: str) -> None:
        lines.append(message)
        print(message)

    if args.load:
        result = load_model(args.load)
        log(f"loaded {args.load} (task {result.task}); re-plotting without simulating")
        if args.compare == "BP" and result.task == "bw_only" and "angle_dW_BP" not in result.series:
            compare_bw_only(result, backend=args.backend, log=log)
            results_path, model_path = save_result(result, Path(args.load).parent)
            log(f"wrote {results_path} and {model_path} (with angle_dW_BP)")
    else:
        params = load_params(params_path)
        for note in params.notes:
            log(f"params: {note}")
        result = run_task(
            params,
            args.task,
            compare=args.compare,
            backend=args.backend,
            progress=not args.no_progress,
            log=log,
        )
        results_path, model_path = save_result(result, folder)
        log(f"wrote {results_path} and {model_path}")
    if not args.no_plots:
        from rnnlab.microcircuit.plots import plot_result

        written = plot_result(result, folder)
        log(f"wrote {len(written)} plots into {folder}/")
    summary = summarize(result)
    for line in summary:
        log(line)
    log_name = "replot.log" if args.load else "run.log"
    write_text_atomic(folder / log_name, "\n".join(lines) + "\n")
    return 0


def summarize(result: RunResult) -> list[str]:
    """Final angles (mean ± std over seeds) per hidden layer, and the last MSE."""
    out = []
    for key in ("angle_B_WT", "angle_B_RHS", "angle_jacobians", "angle_BPI_negB", "angle_dW_BP"):
        if key in result.series:
            final = result.series[key][:, -1]
            text = " / ".join(
                f"{m:.1f}±{s:.1f}" for m, s in zip(final.mean(0), final.std(0), strict=True)
            )
            out.append(f"final {key} [deg] per layer: {text}")
    if "MSE" in result.series:
        final = result.series["MSE"][:, -1]
        out.append(f"final MSE: {final.mean():.3g} ± {final.std():.3g}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run_from_args(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
