"""The async backend's staleness rule and accounting, and the wire schema's validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rnnlab.ctrnn import CTRNN
from rnnlab.ctrnn.backends.distributed import AsyncBackend, DistributedBackend, StalenessGate
from rnnlab.ctrnn.backends.wire import SCHEMA, WireError, decode, encode
from rnnlab.errors import ConfigError


def test_staleness_gate_counts_applied_and_dropped():
    gate = StalenessGate(max_staleness=2)
    decisions = [
        gate.admit(computed, current)
        for computed, current in [(0, 0), (0, 1), (0, 2), (0, 3), (5, 5), (1, 7)]
    ]
    assert decisions == [True, True, True, False, True, False]
    assert gate.stats() == {"applied": 4, "dropped": 2, "staleness": {0: 2, 1: 1, 2: 1}}
    with pytest.raises(ConfigError, match="max_staleness"):
        StalenessGate(-1)


def fit_data():
    rng = np.random.default_rng(3)
    return rng.uniform(size=(2, 30, 1)), rng.uniform(size=(2, 30, 1))


@pytest.fixture(scope="module")
def async_backend():
    backend = AsyncBackend(workers=2, threads=1, max_staleness=0, heartbeat=0.2)
    try:
        yield backend
    finally:
        backend.close()


def test_max_staleness_zero_is_synchronous_training(async_backend, distributed: DistributedBackend):
    x, y = fit_data()
    histories = []
    for backend in ("dense", distributed, async_backend):
        net = CTRNN(10, 1, 1, seed=6, backend=backend)
        h = net.fit(x, y, dt=0.1, substeps=3, epochs=6, lr=5e-3, truncation=6)
        histories.append((h["loss"], net.params["W"].copy()))
    for loss, w in histories[1:]:
        np.testing.assert_allclose(loss, histories[0][0], rtol=1e-10)
        np.testing.assert_allclose(w, histories[0][1], rtol=1e-9, atol=1e-13)
    assert async_backend.gate.stats() == {"applied": 6, "dropped": 0, "staleness": {0: 6}}


def test_bounded_staleness_accounting(async_backend):
    x, y = fit_data()
    async_backend.gate = StalenessGate(2)
    net = CTRNN(10, 1, 1, seed=6, backend=async_backend)
    h = net.fit(x, y, dt=0.1, substeps=3, epochs=12, lr=5e-3, truncation=6)
    stats = async_backend.gate.stats()
    assert stats["applied"] + stats["dropped"] == 12
    assert len(h["loss"]) == stats["applied"] == sum(stats["staleness"].values())
    assert max(stats["staleness"]) <= 2
    assert all(0 <= s <= 2 for s in h["staleness"])
    assert async_backend.pool.in_flight == 0  # fit drains what it submitted
    async_backend.gate = StalenessGate(0)


def test_wire_round_trip_and_validation():
    arrays = {"a": np.arange(6.0).reshape(2, 3), "b": np.ones(2, dtype=np.float32)}
    frames = encode("result", arrays, step=1, task=2, param_version=3, loss=0.5)
    message = decode(frames, ("result",))
    assert message.kind == "result"
    assert message.header["task"] == 2
    np.testing.assert_array_equal(message.arrays["a"], arrays["a"])
    assert message.arrays["b"].dtype == np.float32

    header = json.loads(frames[0])
    bad = {
        "not allowed here": (frames, ("work",)),
        "schema": ([json.dumps({**header, "schema": "x"}).encode(), *frames[1:]], ("result",)),
        "speaks version": (
            [json.dumps({**header, "version": 2}).encode(), *frames[1:]],
            ("result",),
        ),
        "missing or of the wrong type": (
            [json.dumps({**header, "task": True}).encode(), *frames[1:]],
            ("result",),
        ),
        "bytes, expected": ([frames[0], frames[1][:-8], frames[2]], ("result",)),
        "describes 2 arrays": (frames[:2], ("result",)),
        "dtype": (
            [
                json.dumps(
                    {**header, "arrays": [{"name": "a", "dtype": "object", "shape": [1]}]}
                ).encode(),
                b"x",
            ],
            ("result",),
        ),
        "NaN": (
            encode("result", {"a": np.array([np.nan])}, step=1, task=2, param_version=3, loss=0.0),
            ("result",),
        ),
        "not UTF-8 JSON": ([b"\x80\x81"], ("result",)),
        "not a JSON object": ([b"[1, 2]"], ("result",)),
    }
    for expected, (message_frames, allowed) in bad.items():
        with pytest.raises(WireError, match=expected):
            decode(message_frames, allowed)
    assert SCHEMA == "rnnlab.ctrnn.work"


def test_bakeoff_cli_writes_table_and_json(tmp_path, capsys):
    from rnnlab.cli import main

    code = main(
        [
            "ctrnn",
            "bakeoff",
            "--cases",
            "n24",
            "--backends",
            "dense,threaded,sparse",
            "--seconds",
            "0.05",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "steps/s" in out
    assert "threaded" in out
    (folder,) = tmp_path.iterdir()
    report = json.loads((folder / "bakeoff.json").read_text())
    rows = {r["backend"]: r for r in report["results"]}
    assert set(rows) == {"dense", "threaded", "sparse"}
    assert rows["dense"]["ratio_to_dense"] == 1.0
    assert all(r["steps"] >= 2 and r["steps_per_second"] > 0 for r in rows.values())
    # every backend trained on the same seeded stream: the same losses to round-off
    assert rows["threaded"]["mean_loss"] == pytest.approx(rows["dense"]["mean_loss"], rel=1e-9) or (
        rows["threaded"]["steps"] != rows["dense"]["steps"]
    )
    assert (folder / "table.txt").exists()
    assert (folder / "config.json").exists()
