"""Command-line subcommands of this system (registered by rnnlab.cli)."""

from __future__ import annotations

import argparse
from typing import Any


def register(systems: argparse._SubParsersAction[Any]) -> None:
    """Add this system's subcommands to ``rnnlab`` (none yet)."""
