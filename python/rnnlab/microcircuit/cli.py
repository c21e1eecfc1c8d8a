"""``rnnlab microcircuit ...``: run / re-plot microcircuit experiments, write a template."""

from __future__ import annotations

import argparse
from typing import Any

TASKS = ("bw_only", "fw_bw")
BACKENDS = ("fast", "reference")

EXAMPLES = """\
examples:
  rnnlab microcircuit template run01/            # write a params.json that runs as is
  rnnlab microcircuit run --params run01/params.json --task bw_only
  rnnlab microcircuit run --params run01/params.json --task fw_bw --compare BP
  rnnlab microcircuit run --params run01/params.json --task fw_bw --load run01/model.npz
  rnnlab microcircuit run --params examples/microcircuit/fig3abc/params.json --task bw_only
  python -m rnnlab.microcircuit.runner --params run01/params.json --task bw_only
"""


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The seed runner's flags (plus --backend, --no-plots, --no-progress)."""
    parser.add_argument("--params", required=True, help="params.json (its folder gets the outputs)")
    parser.add_argument("--task", choices=TASKS, default="fw_bw", help="default: fw_bw")
    parser.add_argument(
        "--compare",
        choices=("BP",),
        default=None,
        help="also record ∠(ΔW of the microcircuit, ΔW of a backprop rate ANN) (fw_bw)",
    )
    parser.add_argument(
        "--load", default=None, metavar="MODEL_NPZ", help="re-plot a saved model.npz, no simulation"
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="fast",
        help="fast (the Rust kernel, default) or reference (the numpy per-step code)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _run(args: argparse.Namespace) -> int:
    from rnnlab.microcircuit.runner import run_from_args

    return run_from_args(args)


def _template(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rnnlab.atomic import write_json_atomic
    from rnnlab.microcircuit.params import TEMPLATE

    path = Path(args.folder) / "params.json"
    if path.exists() and not args.force:
        print(f"rnnlab: {path} exists (use --force to overwrite)")
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, TEMPLATE)
    print(f"wrote {path}; run: rnnlab microcircuit run --params {path} --task fw_bw")
    return 0


def register(systems: argparse._SubParsersAction[Any]) -> None:
    """Add ``rnnlab microcircuit run|template``."""
    system = systems.add_parser(
        "microcircuit",
        help="dendritic cortical microcircuits learning their backward weights (BP/FA/PAL)",
        description=(
            "Dendritic cortical microcircuits (Sacramento et al. 2018, prospective voltages) "
            "with backward weights copied (BP), fixed (FA) or learned (PAL, DTPDRL). "
            "Simulated by a fused Rust kernel, every seed of params.json in one batch."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = system.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="simulate a task (or re-plot with --load)",
        description=(
            "Run --task bw_only (learn B, W^IP, B^PI with no target) or fw_bw (teacher-student: "
            "forward, lateral and backward weights at once). Writes results.npz, model.npz, "
            "run.log and the plots into the folder of --params."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(run)
    run.set_defaults(handler=_run)
    template = commands.add_parser(
        "template",
        help="write a params.json that runs as is",
        description="Write the documented template params.json (1-1-1 teacher-student, PAL).",
        epilog="examples:\n  rnnlab microcircuit template run01/\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    template.add_argument("folder", help="folder that receives params.json")
    template.add_argument("--force", action="store_true", help="overwrite an existing file")
    template.set_defaults(handler=_template)
