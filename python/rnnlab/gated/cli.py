"""``rnnlab sweep ...``: the gated-RNN sweep (registered by rnnlab.cli)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from rnnlab.errors import ConfigError

EXAMPLES = """\
examples:
  rnnlab sweep demo --dir /tmp/demo-sweep          # 12 tiny configs, all plots, a few minutes
  rnnlab sweep init --preset systematic-01 --dir sweep01 --data enwik8
  rnnlab sweep init --grid grid.toml --dir mysweep
  rnnlab sweep train --dir sweep01 --workers 2     # run on every machine sharing sweep01/
  rnnlab sweep train --dir demo --stack 12         # small same-shape configs, stacked
  rnnlab sweep train --dir sweep01 --executor ray --address auto
  rnnlab sweep status --dir sweep01
  rnnlab sweep examine --dir sweep01 --log-y
  rnnlab sweep derive --dir sweep01 --out sweep02 --top 0.1 --state-size 512 --layers 3 \\
      --steps 50000
  rnnlab sweep derive --dir sweep02 --out sweep03 --top 10 --repeats 10
"""


def _init(args: argparse.Namespace) -> int:
    from rnnlab.gated.sweep import (
        SYSTEMATIC_01_TRAINING,
        Sweep,
        grid_configs,
        load_grid_toml,
        systematic_01_configs,
    )

    if (args.preset is None) == (args.grid is None):
        raise ConfigError("init: give exactly one of --preset systematic-01 or --grid GRID.toml")
    training: dict[str, Any]
    if args.preset is not None:
        configs = systematic_01_configs()
        training = dict(SYSTEMATIC_01_TRAINING)
    else:
        grid = load_grid_toml(args.grid)
        configs = grid_configs(grid)
        training = dict(grid.get("training", {}))
    if args.data is not None:
        training["data"] = args.data
    if args.steps is not None:
        training["steps"] = args.steps
    sweep = Sweep(args.dir)
    existed = sweep.configs_path.exists()
    if not existed and training.get("data", "embedded") != "embedded":
        from rnnlab.gated.data import load_corpus

        load_corpus(training["data"])  # a missing enwik8 fails here, with instructions
    added = sweep.init(
        configs,
        None if existed and args.data is None and args.steps is None else training,
        max_attempts=args.max_attempts,
        stale_after_s=args.stale_after,
    )
    total = len(sweep.load()["configs"])
    print(f"{sweep.configs_path}: {total} configs ({added} added)")
    return 0


def _train(args: argparse.Namespace) -> int:
    if args.executor == "ray":
        from rnnlab.gated.executors import run_ray

        finished = run_ray(
            args.dir,
            address=args.address,
            gpus_per_trial=args.gpus_per_trial,
            heartbeat_s=args.heartbeat,
        )
        print(f"ray: {len(finished)} runs finished")
        return 0
    from rnnlab.gated.executors import run_local

    failed = run_local(
        args.dir,
        workers=args.workers,
        threads=args.threads,
        progress=not args.no_progress,
        heartbeat_s=args.heartbeat,
        stack=args.stack,
    )
    return 1 if failed else 0


def status_summary(sweep_dir: str) -> dict[str, Any]:
    from rnnlab.gated.sweep import Sweep

    sweep = Sweep(sweep_dir)
    states = sweep.states()
    counts = {name: 0 for name in ("done", "running", "stale", "pending", "failed")}
    for state in states:
        counts[state.status] += 1
    durations = [s.result["wall_seconds"] for s in states if s.result is not None]
    mean = sum(durations) / len(durations) if durations else None
    remaining = counts["running"] + counts["stale"] + counts["pending"]
    parallel = max(counts["running"], 1)
    eta = mean * remaining / parallel if mean is not None else None
    return {
        "counts": counts,
        "total": len(states),
        "mean_run_seconds": mean,
        "eta_seconds": eta,
        "parallel": parallel,
    }


def _status(args: argparse.Namespace) -> int:
    summary = status_summary(args.dir)
    counts = summary["counts"]
    print(" ".join(f"{k} {v}" for k, v in counts.items()) + f" (of {summary['total']})")
    if summary["mean_run_seconds"] is None:
        print("ETA: unknown until a run finishes")
    else:
        eta = summary["eta_seconds"]
        clock = time.strftime("%H:%M:%S", time.gmtime(eta))
        print(
            f"mean run {summary['mean_run_seconds']:.1f} s; ETA {clock} "
            f"with {summary['parallel']} running in parallel"
        )
    return 0


def _examine(args: argparse.Namespace) -> int:
    from rnnlab.gated.analysis import examine

    summary = examine(
        args.dir, metric=args.metric, threshold=args.threshold, log_y=args.log_y, out=args.out
    )
    print(
        f"{summary['runs']} runs, {summary['below_threshold']} below {summary['threshold']:g}; "
        f"wrote {summary['folder']}/: {' '.join(summary['files'])}"
    )
    return 0


def _derive(args: argparse.Namespace) -> int:
    from rnnlab.gated.analysis import derive_repeats, derive_top

    if args.repeats is not None:
        if args.top != int(args.top):
            raise ConfigError("top: with --repeats, --top is a count (an integer)")
        added = derive_repeats(
            args.dir,
            args.out,
            top=int(args.top),
            repeats=args.repeats,
            steps=args.steps,
            metric=args.metric,
        )
    else:
        if args.state_size is None or args.layers is None:
            raise ConfigError("derive: --top FRACTION needs --state-size and --layers")
        added = derive_top(
            args.dir,
            args.out,
            top=args.top,
            state_size=args.state_size,
            layers=args.layers,
            steps=args.steps,
            metric=args.metric,
        )
    print(f"{args.out}/configs.json: {added} configs added")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from rnnlab.gated.demo import run_sweep_demo

    summary = run_sweep_demo(
        args.dir,
        workers=args.workers,
        steps=args.steps,
        stack=args.stack,
        state_size=args.state_size,
    )
    print(
        f"{summary['runs']} runs in {summary['train_seconds']:.1f} s "
        f"({summary['configs_per_hour']:.0f} configs/hour with {args.workers} workers); "
        f"{summary['below_threshold']} below H1 = {summary['threshold']:g}"
    )
    print(f"wrote {summary['folder']}/: {' '.join(summary['files'])}")
    return 0


def _formatter() -> Any:
    return argparse.RawDescriptionHelpFormatter


def register(systems: argparse._SubParsersAction[Any]) -> None:
    """Add ``rnnlab sweep init|train|status|derive|examine|demo``."""
    sweep = systems.add_parser(
        "sweep",
        help="gated byte-level RNNs trained without BPTT: a resumable, parallel sweep",
        description=(
            "Sweep gated RNN layers (input/forget/output/state gates, new/old state read-out, "
            "residual) trained online with a one-step gradient on bytes. The sweep folder is "
            "the work queue: start `train` on any number of machines that share it."
        ),
        epilog=EXAMPLES,
        formatter_class=_formatter(),
    )
    commands = sweep.add_subparsers(dest="command", metavar="COMMAND")

    def dir_arg(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--dir", default=".", help="the sweep folder (default: .)")

    init = commands.add_parser(
        "init",
        help="write configs.json (idempotent: only missing configs are added)",
        description="Create or extend SWEEP_DIR/configs.json from a preset or a TOML grid.",
        epilog=(
            "examples:\n  rnnlab sweep init --preset systematic-01 --dir sweep01\n"
            "  rnnlab sweep init --preset systematic-01 --dir sweep01 --data enwik8\n"
            "  rnnlab sweep init --grid examples/gated/grid.toml --dir mysweep\n"
        ),
        formatter_class=_formatter(),
    )
    dir_arg(init)
    init.add_argument("--preset", choices=("systematic-01",), help="upstream's 432 configs")
    init.add_argument("--grid", help="a TOML grid ([grid], [training], [[exclude]])")
    init.add_argument("--data", help="training bytes: a file (e.g. enwik8) or 'embedded'")
    init.add_argument("--steps", type=int, help="training steps (byte positions) per run")
    init.add_argument("--max-attempts", type=int, default=3, help="tries per run (default 3)")
    init.add_argument(
        "--stale-after",
        type=float,
        default=120.0,
        help="seconds without heartbeat before a run is retried (default 120)",
    )
    init.set_defaults(handler=_init)

    train = commands.add_parser(
        "train",
        help="claim and train configs until none is left",
        description=(
            "Claim configs atomically, train them (heartbeat, checkpoints), write results "
            "atomically; retry stale runs from their checkpoints up to the attempt limit."
        ),
        epilog=(
            "examples:\n  rnnlab sweep train --dir sweep01 --workers 2\n"
            "  rnnlab sweep train --dir sweep01 --executor ray --address auto\n"
        ),
        formatter_class=_formatter(),
    )
    dir_arg(train)
    train.add_argument("--workers", type=int, default=1, help="local processes (default 1)")
    train.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    train.add_argument("--executor", choices=("local", "ray"), default="local")
    train.add_argument("--address", help="ray cluster address (default: start a local one)")
    train.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        help="ray: GPUs per trial (default 0.5 with CUDA, else 0)",
    )
    train.add_argument("--heartbeat", type=float, default=10.0, help="heartbeat period (s)")
    train.add_argument(
        "--stack",
        type=int,
        default=1,
        help="train up to N same-shape configs together in one process (default 1)",
    )
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.set_defaults(handler=_train)

    status = commands.add_parser(
        "status",
        help="done/running/stale/pending/failed counts and an ETA",
        description="Count runs by state; ETA from the mean measured run time.",
        epilog="examples:\n  rnnlab sweep status --dir sweep01\n",
        formatter_class=_formatter(),
    )
    dir_arg(status)
    status.set_defaults(handler=_status)

    examine = commands.add_parser(
        "examine",
        help="plots, regression table and report.md",
        description=(
            "Write results_all.png, hyperparameters.png, filtered_below_<thr>.png and "
            "report.md into SWEEP_DIR/examine/ (or --out)."
        ),
        epilog=(
            "examples:\n  rnnlab sweep examine --dir sweep01\n"
            "  rnnlab sweep examine --dir sweep01 --metric min_ema --threshold 1.9 --log-y\n"
        ),
        formatter_class=_formatter(),
    )
    dir_arg(examine)
    examine.add_argument(
        "--metric", default="val_loss", choices=("val_loss", "min_ema", "mean_last_k", "final_ema")
    )
    examine.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="filter threshold (default: the data's order-1 conditional entropy)",
    )
    examine.add_argument("--log-y", action="store_true", help="log-scale loss axis")
    examine.add_argument("--out", help="output folder (default SWEEP_DIR/examine)")
    examine.set_defaults(handler=_examine)

    derive = commands.add_parser(
        "derive",
        help="a follow-up sweep from the best configs (upstream experiments 02 and 03)",
        description=(
            "--top FRACTION --state-size S --layers L: the best fraction, each also with S and "
            "with L layers (experiment 02). --top K --repeats R: the K best architectures × R "
            "seeds (experiment 03). Duplicate architectures collapse."
        ),
        epilog=(
            "examples:\n  rnnlab sweep derive --dir sweep01 --out sweep02 --top 0.1 "
            "--state-size 512 --layers 3 --steps 50000\n"
            "  rnnlab sweep derive --dir sweep02 --out sweep03 --top 10 --repeats 10\n"
        ),
        formatter_class=_formatter(),
    )
    dir_arg(derive)
    derive.add_argument("--out", required=True, help="the new sweep folder")
    derive.add_argument(
        "--top", type=float, required=True, help="fraction, or count with --repeats"
    )
    derive.add_argument("--state-size", type=int)
    derive.add_argument("--layers", type=int)
    derive.add_argument("--repeats", type=int)
    derive.add_argument("--steps", type=int, help="training steps of the new sweep")
    derive.add_argument(
        "--metric", default="val_loss", choices=("val_loss", "min_ema", "mean_last_k", "final_ema")
    )
    derive.set_defaults(handler=_derive)

    demo = commands.add_parser(
        "demo",
        help="12 tiny configs on the embedded corpus, end to end with all plots",
        description=(
            "Init a 12-config grid (1 layer, S = 32), train it with 2 worker processes on the "
            "embedded corpus and examine it."
        ),
        epilog=(
            "examples:\n  rnnlab sweep demo --dir /tmp/demo-sweep\n"
            "  rnnlab sweep demo --dir /tmp/demo-s64 --workers 1 --stack 12 --state-size 64\n"
        ),
        formatter_class=_formatter(),
    )
    demo.add_argument("--dir", default="runs/sweep-demo", help="sweep folder")
    demo.add_argument("--workers", type=int, default=2)
    demo.add_argument("--steps", type=int, default=None, help="override the training steps")
    demo.add_argument("--stack", type=int, default=1, help="configs trained together per worker")
    demo.add_argument(
        "--state-size", type=int, default=32, help="state size S of the 12 configs (default 32)"
    )
    demo.set_defaults(handler=_demo)
