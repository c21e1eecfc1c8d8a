"""OnlineTrainer: learns one-step-ahead, is independent of chunking, resumes exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import rnnlab
from rnnlab.ctrnn import CTRNN
from rnnlab.ctrnn.online import OnlineTrainer, RunningNormalizer


def _stream(
    frames: int, offset: float = 100.0, amplitude: float = 10.0
) -> tuple[np.ndarray, np.ndarray]:
    """A clean sine on the seed's 90–110 scale, 20 frames per period, with a second channel."""
    t = 0.05 * np.arange(frames)
    phase = 2 * np.pi * np.arange(frames) / 20
    values = np.stack([offset + amplitude * np.sin(phase), np.cos(phase)], axis=1)
    return t, values


def _trainer(**options: object) -> OnlineTrainer:
    net = CTRNN(
        24, 2, 2, activation="tanh", integrator="exp_euler", readout="linear", tau=0.2, seed=1
    )
    settings: dict[str, object] = {"substeps": 4, "window": 40, "update_every": 2, "lr": 5e-3}
    settings.update(options)
    return OnlineTrainer(net, **settings)  # type: ignore[arg-type]


# Stated threshold: after 1500 frames the one-step-ahead MSE (normalised units) over the last
# 300 frames is below 0.02, and below a tenth of the repeat-last-value baseline (~0.1).
def test_learns_a_clean_sine_one_step_ahead() -> None:
    trainer = _trainer()
    times, values = _stream(1500)
    trainer.process(times, values)
    m = trainer.metrics(last=300)
    assert m["frames"] == 1500
    assert m["scored"] == 1499
    assert m["mse"] < 0.02
    assert m["mse"] < 0.1 * m["baseline_mse"]


def test_result_does_not_depend_on_chunking() -> None:
    times, values = _stream(300)
    whole = _trainer()
    whole.process(times, values)
    pieces = _trainer()
    for start in range(0, 300, 37):
        pieces.process(times[start : start + 37], values[start : start + 37])
    for name, value in whole.net.params.items():
        np.testing.assert_array_equal(pieces.net.params[name], value)
    np.testing.assert_array_equal(pieces.history()["prediction"], whole.history()["prediction"])


def test_resume_from_checkpoint_continues_with_the_same_parameters(tmp_path: Path) -> None:
    times, values = _stream(400)
    path = tmp_path / "online.npz"
    straight = _trainer(predict_ahead=2)
    straight.process(times, values)

    first = _trainer(predict_ahead=2, checkpoint_every=50, checkpoint_path=path)
    first.process(times[:200], values[:200])
    assert path.exists()
    resumed = OnlineTrainer.resume(path)
    assert resumed.net.backend.name == first.net.backend.name
    for name, value in first.net.params.items():
        np.testing.assert_array_equal(resumed.net.params[name], value)
    threaded = OnlineTrainer.resume(path, backend="threaded", threads=2)
    assert threaded.net.backend.name == "threaded"
    resumed.process(times[200:], values[200:])
    for name, value in straight.net.params.items():
        np.testing.assert_array_equal(resumed.net.params[name], value)
    assert resumed.frames == straight.frames
    assert resumed.updates == straight.updates


def test_memory_is_bounded_by_history() -> None:
    trainer = _trainer(history=50, update_every=10)
    times, values = _stream(500)
    trainer.process(times, values)
    h = trainer.history()
    assert h["loss"].shape == (50,)
    assert h["prediction"].shape == (50, 2)
    np.testing.assert_allclose(h["time"][-1], times[-1])


def test_out_of_order_frames_are_skipped_and_counted() -> None:
    trainer = _trainer()
    trainer.process([0.0, 0.1, 0.1, 0.05, 0.2], np.ones((5, 2)))
    assert trainer.skipped == 2
    assert trainer.frames == 3


def test_bad_settings_and_shapes_name_their_field() -> None:
    net = CTRNN(8, 2, 1)
    with pytest.raises(rnnlab.ConfigError, match="n_inputs == n_outputs"):
        OnlineTrainer(net)
    with pytest.raises(rnnlab.ConfigError, match="window"):
        _trainer(window=0)
    with pytest.raises(rnnlab.ConfigError, match="checkpoint_path"):
        _trainer(checkpoint_every=10)
    with pytest.raises(rnnlab.ShapeError, match="values"):
        _trainer().process([0.0, 1.0], np.ones((2, 3)))


def test_running_normalizer_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(5.0, 3.0, size=(200, 3))
    norm = RunningNormalizer(3)
    for row in data:
        norm.update(row)
    np.testing.assert_allclose(norm.center, data.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(norm.scale, data.std(axis=0, ddof=1), rtol=1e-12)
