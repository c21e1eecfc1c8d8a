"""The main job's pieces on the real waitress binary: online learning from a live feed, and the
demo's run folder. (The full 60 s demo, which must beat the baseline, is `make demo`; the
`slow` test below runs it too.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rnnlab.ctrnn import CTRNN, OnlineTrainer
from rnnlab.feed import FeedClient, serve
from rnnlab.stream_demo import StreamDemoConfig, run_stream_demo

# Stated threshold: a clean sine (period 20 frames) learned from the live feed reaches a
# one-step MSE below 0.02 (normalised units) over the last 300 of 2000 frames, and beats the
# repeat-last-value baseline (~0.1) by 5x.
THRESHOLD = 0.02


def test_online_trainer_learns_a_clean_sine_from_the_live_feed() -> None:
    config = {
        "pub_to": "tcp://127.0.0.1:*",
        "mode": "push",
        "chunk": 50,
        "rate": 100,
        "as_fast_as_possible": True,
        "max_frames": 2000,
        "seed": 1,
        "channels": [
            {
                "name": "sine",
                "offsetv": 100.0,
                "maxv": 10.0,
                "waves": [{"wave": "Sinusoidal", "period": 20}],
            }
        ],
    }
    net = CTRNN(
        24,
        1,
        1,
        activation="tanh",
        integrator="exp_euler",
        readout="linear",
        tau=0.03,
        tau_min=0.002,
        seed=0,
    )
    trainer = OnlineTrainer(net, substeps=4, window=40, update_every=2, lr=5e-3)
    with serve(config) as server, FeedClient(server.endpoint, mode="pull", timeout=10.0) as client:
        for chunk in client:
            trainer.process(chunk.times, chunk.values)
        assert client.dropped == 0
    m = trainer.metrics(last=300)
    assert m["frames"] == 2000
    assert m["mse"] < THRESHOLD
    assert m["mse"] < 0.2 * m["baseline_mse"]


def test_demo_writes_its_run_folder(tmp_path: Path) -> None:
    folder, _ = run_stream_demo(
        StreamDemoConfig(duration=4.0, rate=100.0), root=str(tmp_path), progress=False
    )
    assert folder.path.name.startswith("demo-")
    names = sorted(p.name for p in folder.path.iterdir())
    assert names == ["config.json", "loss.png", "metrics.json", "model.npz", "prediction.png"]
    saved = json.loads((folder.path / "metrics.json").read_text())
    assert saved["server_exit_code"] == 0
    assert saved["frames"] > 200
    assert saved["held_back_frames"] > 0
    assert np.isfinite(saved["held_back_mse"])
    config = json.loads((folder.path / "config.json").read_text())
    assert config["waitress"]["channels"][0]["name"] == "sine"


@pytest.mark.slow
def test_full_demo_beats_the_baseline(tmp_path: Path) -> None:
    _, metrics = run_stream_demo(StreamDemoConfig(), root=str(tmp_path), progress=False)
    assert metrics["beats_baseline"], metrics
