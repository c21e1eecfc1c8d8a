"""The ``rnnlab`` command line (also ``python -m rnnlab``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import rnnlab

EXAMPLES = """\
examples:
  rnnlab --version
  rnnlab ctrnn demo                       # fit the 32-neuron demo, write runs/<timestamp>/
  rnnlab ctrnn demo --epochs 300 --out /tmp/runs --no-progress
"""


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnlab",
        description="rnnlab: Rust-accelerated research on recurrent neural dynamics.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rnnlab {rnnlab.__version__}")
    systems = parser.add_subparsers(dest="system", metavar="SYSTEM")

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        # A system without a command, or nothing at all: show the relevant help.
        if args.system == "ctrnn":
            parser.parse_args(["ctrnn", "--help"])
        parser.print_help()
        return 0
    try:
        return int(handler(args))
    except rnnlab.RnnlabError as error:
        print(f"rnnlab: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
