"""Shared fixtures: one pool of two local worker processes per test module (spawning costs ~1 s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rnnlab.ctrnn.backends.distributed import DistributedBackend


@pytest.fixture(scope="module")
def distributed() -> Iterator[DistributedBackend]:
    backend = DistributedBackend(workers=2, threads=1, timeout=20.0, heartbeat=0.2)
    try:
        yield backend
    finally:
        backend.close()
