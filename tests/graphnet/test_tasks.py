"""Tasks: the association task criterion, the encodings, CartPole and the CLI run folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rnnlab.cli import main
from rnnlab.graphnet.tasks import (
    association_net,
    cartpole_encode,
    cartpole_net,
    run_cartpole,
    stream_encode,
    stream_predictions,
    stream_rewards,
    train_association,
)

ASSOCIATION_TRIALS = 1000  # the stated budget (docs/graphnet.md)


@pytest.mark.parametrize("seed", range(5))
def test_association_reaches_90_percent_within_the_budget(seed: int) -> None:
    net = association_net(4, seed=seed)
    result = train_association(net, ASSOCIATION_TRIALS, seed=seed)
    assert result.trials_to_criterion is not None, result.final_accuracy
    assert result.trials_to_criterion <= ASSOCIATION_TRIALS
    # The criterion: the last 100 trials before it were ≥ 90 % correct.
    end = result.trials_to_criterion
    assert np.mean(result.log.correct[end - 100 : end]) >= 0.9
    # ... and it holds: the last 100 of the 1000 trials are ≥ 90 % correct as well.
    assert result.final_accuracy >= 0.9


def test_association_without_learning_stays_at_chance_or_below() -> None:
    net = association_net(4, seed=0, lr=0.0, grow_prob=0.0)
    result = train_association(net, 300, seed=0, silence_signal=0.0)
    assert result.trials_to_criterion is None
    assert result.final_accuracy < 0.6


def test_cartpole_encoding_is_a_place_code() -> None:
    code = cartpole_encode(np.array([0.0, -5.0, 0.21, 0.1]), bins=4)
    assert code.shape == (16,)
    assert code.reshape(4, 4).sum(axis=1).tolist() == [1, 1, 1, 1]
    # 0 -> bin 2 of [-1, 1]; -5/2 clipped to -1 -> bin 0; 0.21/0.21 = 1 -> last bin; 0.05 -> 2
    assert np.flatnonzero(code).tolist() == [2, 4, 11, 14]


def test_cartpole_runs_and_random_policy_is_seeded() -> None:
    pytest.importorskip("gymnasium")
    a = run_cartpole(None, 3, seed=7)
    b = run_cartpole(None, 3, seed=7)
    assert a.reward == b.reward
    assert all(r > 0 for r in a.reward)
    net = cartpole_net(seed=0)
    log = run_cartpole(net, 3, seed=0)
    assert len(log.reward) == 3
    assert net.steps > 0


def test_stream_encoding_and_rewards() -> None:
    code = stream_encode(np.array([0.5, -0.2, 0.0]), dead_band=0.1)
    assert code.tolist() == [1, 0, 0, 1, 0, 0]
    assert stream_predictions(np.array([3, 1, 0, 2, 1, 1])) == [0, 1, None]
    rewards = list(stream_rewards([0, 1, None], np.array([0.3, 0.4, 1.0])))
    assert rewards == [(0, 1.0), (1, -1.0)]


def test_cli_train_writes_the_run_folder(tmp_path: Path) -> None:
    code = main(
        [
            "graphnet",
            "train",
            "--task",
            "association",
            "--trials",
            "150",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert code == 0
    (folder,) = tmp_path.iterdir()
    names = sorted(p.name for p in folder.iterdir())
    for name in (
        "config.json",
        "edges.png",
        "graph.png",
        "metrics.json",
        "model",
        "reward.png",
        "weights.png",
    ):
        assert name in names
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["trials"] == 150
    assert metrics["task"] == "association"


def test_cli_animate_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graphnet", "animate", "--trials", "2", "--out", str(tmp_path / "a.gif")]) == 0
    assert (tmp_path / "a.gif").read_bytes()[:6] == b"GIF89a"
    assert main(["graphnet", "train", "--net", "[1]", "--out", str(tmp_path)]) == 2
    assert "--net" in capsys.readouterr().err


def test_stream_task_against_the_real_waitress(tmp_path: Path) -> None:
    from rnnlab import FeedError
    from rnnlab.feed.server import find_waitress
    from rnnlab.graphnet.train import TrainConfig, train

    try:
        find_waitress()
    except FeedError:
        pytest.skip("waitress binary not built")
    folder, metrics = train(
        TrainConfig(task="stream", duration=2.0, rate=200.0), root=tmp_path, progress=False
    )
    assert metrics["frames"] > 50
    assert 0.0 <= metrics["sign_agreement"] <= 1.0
    assert (folder / "reward.png").exists()
    assert (folder / "model" / "graphnet.npz").exists()


def test_cli_cartpole_reports_evaluation_and_random_baseline(tmp_path: Path) -> None:
    pytest.importorskip("gymnasium")
    args = ["graphnet", "train", "--task", "cartpole", "--episodes", "3", "--eval-episodes", "3"]
    assert main([*args, "--out", str(tmp_path), "--no-progress"]) == 0
    (folder,) = tmp_path.iterdir()
    metrics = json.loads((folder / "metrics.json").read_text())
    for key in ("eval_mean_return", "random_mean_return", "eval_learning_on_mean_return"):
        assert metrics[key] > 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_association_eight_patterns_within_3000_trials(seed: int) -> None:
    net = association_net(8, seed=seed)
    result = train_association(net, 3000, seed=seed)
    assert result.trials_to_criterion is not None
    assert result.trials_to_criterion <= 3000


@pytest.mark.slow
def test_cartpole_beats_the_random_policy() -> None:
    """The documented CartPole numbers (seed 0): trained 200 episodes, 100 evaluation episodes."""
    pytest.importorskip("gymnasium")
    net = cartpole_net(seed=0)
    run_cartpole(net, 200, seed=0)
    frozen = np.mean(run_cartpole(net, 100, learn=False, seed=1_000_000).reward)
    random_policy = np.mean(run_cartpole(None, 100, seed=1_000_000).reward)
    adapting = np.mean(run_cartpole(net, 100, seed=1_000_000).reward)
    assert frozen > 1.5 * random_policy
    assert adapting > 200
