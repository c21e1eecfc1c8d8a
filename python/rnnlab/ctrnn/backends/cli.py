"""``rnnlab worker``: a worker process for the ``distributed`` and ``async`` CTRNN backends."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]

EXAMPLES = """\
examples:
  # on the machine that trains (prints nothing; the endpoint is on the backend):
  #   net = CTRNN(200, 1, 1, backend="distributed", workers=0, min_workers=2,
  #               endpoint="tcp://127.0.0.1:5555")
  rnnlab worker --connect tcp://127.0.0.1:5555
  rnnlab worker --connect tcp://127.0.0.1:5555 --threads 4 --idle-timeout 300
  rnnlab worker keygen keys/            # CURVE keys; then CTRNN(..., curve_keys="keys/",
                                        #   endpoint="tcp://0.0.0.0:5555") on the coordinator
  rnnlab worker --connect tcp://trainer:5555 --curve-keys keys/
  # or reach a loopback-bound coordinator through an SSH tunnel:
  ssh -N -L 5555:127.0.0.1:5555 trainer-host &  rnnlab worker --connect tcp://127.0.0.1:5555
"""


def _worker(args: argparse.Namespace) -> int:
    from rnnlab.ctrnn.backends.worker import run_from_args

    return run_from_args(args)


def register(systems: Any) -> None:
    """Add the ``worker`` command to the ``rnnlab`` subparsers."""
    from rnnlab.ctrnn.backends.worker import add_arguments

    parser = systems.add_parser(
        "worker",
        help="a worker for the distributed/async CTRNN backends",
        description=(
            "Connect to a CTRNN coordinator (CTRNN(..., backend='distributed' or 'async')) and\n"
            "compute the truncated-BPTT chunks it sends, with the Rust kernels. Messages are a\n"
            "versioned JSON header plus raw array frames, validated on receipt (never pickle).\n"
            "The worker heartbeats every --heartbeat seconds and exits on the coordinator's\n"
            "shutdown, on Ctrl-C, or when the coordinator has been silent for --idle-timeout."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(handler=_worker)
