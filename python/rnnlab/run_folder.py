"""Run folders: every long job writes its config, metrics and plots into one folder."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

from rnnlab.atomic import write_atomic, write_json_atomic

__all__ = ["RunFolder"]


class RunFolder:
    """A folder ``<root>/<timestamp>`` (or an explicit path) holding one job's outputs."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    @classmethod
    def create(cls, root: str | os.PathLike[str] = "runs", name: str | None = None) -> RunFolder:
        """Make a fresh folder under ``root``, named by the time unless ``name`` is given."""
        stamp = name or _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path(root) / stamp
        suffix = 1
        while path.exists():
            suffix += 1
            path = Path(root) / f"{stamp}-{suffix}"
        return cls(path)

    def write_json(self, name: str, data: Any) -> Path:
        return write_json_atomic(self.path / name, data)

    def save_figure(self, name: str, figure: Any) -> Path:
        """Save a matplotlib figure atomically (format from the file name)."""
        fmt = Path(name).suffix.lstrip(".") or "png"
        return write_atomic(
            self.path / name, lambda file: figure.savefig(file, format=fmt, dpi=120)
        )

    def __truediv__(self, name: str) -> Path:
        return self.path / name
