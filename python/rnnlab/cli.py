"""The ``rnnlab`` command line (also ``python -m rnnlab``)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

import rnnlab

EXAMPLES = """\
examples:
  rnnlab --version
  rnnlab demo                             # the main job: waitress -> online CTRNN, 60 s
  rnnlab demo --duration 20 --out /tmp/runs
  rnnlab ctrnn demo                       # fit the 32-neuron offline demo, write runs/<timestamp>/
  rnnlab ctrnn bakeoff                    # train steps/s of every CTRNN backend
  rnnlab worker --connect tcp://127.0.0.1:5555   # a worker for the distributed backends
  rnnlab feed watch tcp://127.0.0.1:1201  # rate, drops and values of a running feed
"""


def _stream_demo(args: argparse.Namespace) -> int:
    from rnnlab.stream_demo import StreamDemoConfig, run_stream_demo

    config = StreamDemoConfig(
        duration=args.duration,
        rate=args.rate,
        mode=args.mode,
        seed=args.seed,
        waitress_config=args.waitress_config,
    )
    folder, metrics = run_stream_demo(config, root=args.out, progress=not args.no_progress)
    print(
        f"held-back part ({metrics['held_back_frames']} frames, frozen weights): "
        f"CTRNN one-step MSE {metrics['held_back_mse']:.4g} vs repeat-last-value baseline "
        f"{metrics['held_back_baseline_mse']:.4g}"
    )
    print(
        f"{metrics['frames']} frames at {metrics['frames_per_second']:.0f} frames/s, "
        f"{metrics['updates']} updates, {metrics['dropped']} dropped"
    )
    print(f"wrote {folder.path}/: prediction.png loss.png metrics.json model.npz config.json")
    if not metrics["beats_baseline"]:
        print("rnnlab: the model did NOT beat the baseline on the held-back part", file=sys.stderr)
        return 1
    return 0


def _ctrnn_bakeoff(args: argparse.Namespace) -> int:
    from rnnlab.ctrnn.bakeoff import main_from_args

    return main_from_args(args)


def _ctrnn_demo(args: argparse.Namespace) -> int:
    from rnnlab.ctrnn.demo import DemoConfig, run_demo

    config = DemoConfig(epochs=args.epochs, seed=args.seed, lr=args.lr)
    folder, metrics = run_demo(config, root=args.out, progress=not args.no_progress)
    print(
        f"final loss {metrics['final_loss']:.3e} (from {metrics['initial_loss']:.3e}) after "
        f"{metrics['epochs']} epochs in {metrics['fit_seconds']:.1f} s"
    )
    print(f"wrote {folder.path}/: loss.png fit.png metrics.json config.json model.npz")
    return 0


SYSTEM_COMMAND_MODULES = (
    "rnnlab.feed.watch",  # rnnlab feed ...
    "rnnlab.gated.cli",  # rnnlab sweep ...
    "rnnlab.twc.cli",  # rnnlab twc ...
    "rnnlab.graphnet.cli",  # rnnlab graphnet ...
    "rnnlab.ctrnn.backends.cli",  # rnnlab worker ...
    "rnnlab.microcircuit.cli",  # rnnlab microcircuit ...
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnlab",
        description="rnnlab: Rust-accelerated research on recurrent neural dynamics.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rnnlab {rnnlab.__version__}")
    systems = parser.add_subparsers(dest="system", metavar="SYSTEM")

    demo_main = systems.add_parser(
        "demo",
        help="the main job: stream waitress into an online-trained CTRNN",
        description=(
            "Start the waitress feed server on loopback with its shipped config, train a CTRNN "
            "online (one-step-ahead prediction, truncated BPTT) for a bounded time, evaluate the "
            "last part with frozen weights against the repeat-last-value baseline, and write "
            "prediction.png, loss.png, metrics.json, model.npz and config.json into "
            "runs/demo-<timestamp>/. Exits 1 if the model does not beat the baseline."
        ),
        epilog="examples:\n  rnnlab demo\n  rnnlab demo --duration 20 --rate 200 --out /tmp/runs\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo_main.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    demo_main.add_argument("--rate", type=float, default=100.0, help="frames/s (default 100)")
    demo_main.add_argument(
        "--mode", choices=("pub", "push"), default="pub", help="waitress socket mode (default pub)"
    )
    demo_main.add_argument("--seed", type=int, default=0, help="network seed (default 0)")
    demo_main.add_argument(
        "--waitress-config", default=None, help="waitress config (default: the shipped one)"
    )
    demo_main.add_argument("--out", default="runs", help="folder for the run folder (default runs)")
    demo_main.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    demo_main.set_defaults(handler=_stream_demo)

    ctrnn = systems.add_parser(
        "ctrnn",
        help="continuous-time RNNs",
        description="Continuous-time RNNs with Rust kernels.",
        epilog="examples:\n  rnnlab ctrnn demo --epochs 500\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ctrnn_commands = ctrnn.add_subparsers(dest="command", metavar="COMMAND")
    demo = ctrnn_commands.add_parser(
        "demo",
        help="fit a CTRNN to a sine and a phase-shifted square wave",
        description=(
            "Fit a 32-neuron CTRNN to generate a sine and a phase-shifted square wave from a "
            "constant input; writes loss.png, fit.png, metrics.json, config.json and model.npz "
            "into a fresh run folder."
        ),
        epilog="examples:\n  rnnlab ctrnn demo\n  rnnlab ctrnn demo --epochs 300 --out /tmp/runs\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--epochs", type=int, default=1500, help="training epochs (default 1500)")
    demo.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default 0.01)")
    demo.add_argument("--seed", type=int, default=0, help="initialisation seed (default 0)")
    demo.add_argument(
        "--out", default="runs", help="folder that receives the run folder (default runs)"
    )
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    demo.set_defaults(handler=_ctrnn_demo)
    bakeoff = ctrnn_commands.add_parser(
        "bakeoff",
        help="train steps/s of every execution backend on the seed's churn workload",
        description=(
            "The seed's perf/churn_one workload: random input and target frames, 50 substeps\n"
            "per frame, one SGD step (lr 0.001) per frame on the truncated-BPTT gradient over\n"
            "the last 60 frames (3000 substeps). Each backend runs for --seconds; prints train\n"
            "steps/s and the ratio to dense, and writes bakeoff.json, config.json and table.txt\n"
            "into runs/bakeoff-<timestamp>/. Cases: n200 (N=200, density 1), n24 (the seed's\n"
            "PERF.md case), n1024 (N=1024, density 0.05)."
        ),
        epilog=(
            "examples:\n  rnnlab ctrnn bakeoff\n"
            "  rnnlab ctrnn bakeoff --cases n200 --backends dense,threaded --seconds 10\n"
            "  rnnlab ctrnn bakeoff --workers 16 --threads 16   # on a 16-core machine\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bakeoff.add_argument("--cases", default="n200,n24,n1024", help="comma-separated cases")
    bakeoff.add_argument(
        "--backends",
        default="dense,sparse,threaded,distributed",
        help="comma-separated backends (default dense,sparse,threaded,distributed)",
    )
    bakeoff.add_argument("--seconds", type=float, default=5.0, help="seconds per backend (5)")
    bakeoff.add_argument("--threads", type=int, default=2, help="threads of 'threaded' (2)")
    bakeoff.add_argument("--workers", type=int, default=2, help="workers of 'distributed' (2)")
    bakeoff.add_argument("--truncation", type=int, default=10, help="frames per chunk (10)")
    bakeoff.add_argument("--seed", type=int, default=0, help="seed of weights and stream (0)")
    bakeoff.add_argument(
        "--rerun",
        action="store_true",
        help="re-run each window with the current weights instead of using recorded states",
    )
    bakeoff.add_argument("--out", default="runs", help="folder for the run folder (runs)")
    bakeoff.add_argument("--json", action="store_true", help="also print the JSON report")
    bakeoff.add_argument("--no-progress", action="store_true", help="no per-backend lines")
    bakeoff.set_defaults(handler=_ctrnn_bakeoff)

    for module_name in SYSTEM_COMMAND_MODULES:
        # Each module's register(systems) adds its subcommands; heavy imports (torch, ...)
        # happen inside the handlers, so `rnnlab --help` stays fast.
        importlib.import_module(module_name).register(systems)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        # A system without a command, or nothing at all: show the relevant help.
        if args.system is not None:
            parser.parse_args([args.system, "--help"])
        parser.print_help()
        return 0
    try:
        return int(handler(args))
    except rnnlab.RnnlabError as error:
        print(f"rnnlab: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`rnnlab ... | head`): stop quietly, as other Unix tools do.
        # Point stdout at /dev/null so that the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
