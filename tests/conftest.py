"""Shared pytest configuration: the `slow` marker is opt-in (`make test-slow` or `-m slow`), and
Hypothesis runs a bounded, reproducible number of examples.

Fuzz tests of decoders (tests/hostile/) use the ``default`` profile below: 200 derandomised
examples per property, no deadline (the machines are shared and slow), no example database on
disk. A ``-m slow`` twin of a property asks for more with ``@settings(max_examples=...)``.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "rnnlab",
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("rnnlab")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("-m"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with `make test-slow` (pytest -m slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)
