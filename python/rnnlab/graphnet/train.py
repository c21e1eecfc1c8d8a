"""``rnnlab graphnet train``: one task, one run folder with curves, a drawing and metrics.

Every run writes into ``<root>/graphnet-<task>-<timestamp>/``: ``config.json``,
``reward.png`` (reward per trial/episode/frame and its running mean), ``edges.png`` (edge
count, edges grown and pruned), ``weights.png`` (final weight histogram), ``graph.png``
(final graph), ``metrics.json`` and ``model/`` (``GraphNet.save``).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rnnlab.errors import ConfigError
from rnnlab.graphnet.model import GraphNet
from rnnlab.graphnet.tasks import (
    EpisodeLog,
    association_net,
    cartpole_net,
    evaluate_association,
    run_cartpole,
    stream_encode,
    stream_predictions,
    stream_rewards,
    train_association,
)
from rnnlab.run_folder import RunFolder

__all__ = ["TASKS", "TrainConfig", "train"]

TASKS = ("association", "cartpole", "stream")


@dataclass
class TrainConfig:
    """Settings of one training run (fields that a task does not use are ignored)."""

    task: str = "association"
    seed: int = 0
    trials: int = 1000  # association trials
    patterns: int = 4  # association patterns (= inputs = outputs)
    episodes: int = 200  # CartPole training episodes
    eval_episodes: int = 100  # CartPole evaluation episodes (learning off), and random policy
    bins: int = 6  # CartPole bins per observation variable
    cartpole_reward: str = "upright"  # CartPole feedback: "upright" (dense) or "survival"
    duration: float = 20.0  # stream seconds
    rate: float = 200.0  # stream frames/s
    dead_band: float = 0.0  # stream: |change| ≤ dead_band encodes as "no change"
    steps_per_frame: int = 3  # stream: network steps per frame
    waitress_config: str | None = None
    threads: int = 1
    net: dict[str, Any] = field(default_factory=dict)  # extra GraphNet settings

    def validate(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task: unknown value {self.task!r}; allowed: {', '.join(TASKS)}")
        for name in ("trials", "patterns", "episodes", "eval_episodes", "bins", "steps_per_frame"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}: must be ≥ 1, got {getattr(self, name)}")
        if self.patterns < 2:
            raise ConfigError(f"patterns: must be ≥ 2, got {self.patterns}")
        if not (self.duration > 0 and self.rate > 0):
            raise ConfigError("duration, rate: must be > 0")


def _running_mean(values: list[float], window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each position (fewer at the start)."""
    data = np.asarray(values, dtype=np.float64)
    cumulative = np.cumsum(np.insert(data, 0, 0.0))
    upper = np.arange(1, data.size + 1)
    lower = np.maximum(upper - window, 0)
    return (cumulative[upper] - cumulative[lower]) / (upper - lower)


def _plots(folder: RunFolder, log: EpisodeLog, net: GraphNet, unit: str, window: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(1, len(log.reward) + 1)
    figure, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(x, log.reward, ".", markersize=2, alpha=0.4, label=f"reward per {unit}")
    ax.plot(x, _running_mean(log.reward, window), label=f"running mean ({window})")
    ax.set_xlabel(unit)
    ax.set_ylabel("reward")
    ax.legend()
    figure.tight_layout()
    folder.save_figure("reward.png", figure)
    plt.close(figure)

    figure, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(x, log.n_edges, label="edges")
    ax.plot(x, np.cumsum(log.grown), label="grown (cumulative)")
    ax.plot(x, np.cumsum(log.pruned), label="pruned (cumulative)")
    ax.set_xlabel(unit)
    ax.legend()
    figure.tight_layout()
    folder.save_figure("edges.png", figure)
    plt.close(figure)

    figure, ax = plt.subplots(figsize=(6, 3.5))
    weights = net.edges()["weight"]
    ax.hist(weights, bins=40)
    ax.set_xlabel("weight")
    ax.set_ylabel("edges")
    ax.set_title(f"{weights.size} edges")
    figure.tight_layout()
    folder.save_figure("weights.png", figure)
    plt.close(figure)

    net.draw(folder / "graph.png", title=f"final graph: {net.n_edges} edges")


def _association(config: TrainConfig, bar: Any) -> tuple[GraphNet, EpisodeLog, dict[str, Any]]:
    net = association_net(config.patterns, seed=config.seed, threads=config.threads, **config.net)
    result = train_association(
        net, config.trials, seed=config.seed, progress=lambda _: bar.update(1)
    )
    metrics = {
        "trials": config.trials,
        "trials_to_criterion": result.trials_to_criterion,
        "criterion": result.criterion,
        "window": result.window,
        "final_accuracy": result.final_accuracy,
        "eval_accuracy": evaluate_association(net, seed=config.seed),
    }
    return net, result.log, metrics


def _cartpole(config: TrainConfig, bar: Any) -> tuple[GraphNet, EpisodeLog, dict[str, Any]]:
    net = cartpole_net(config.bins, seed=config.seed, threads=config.threads, **config.net)
    log = run_cartpole(
        net,
        config.episodes,
        bins=config.bins,
        reward=config.cartpole_reward,
        seed=config.seed,
        progress=lambda _: bar.update(1),
    )
    # Evaluation on unseen episode seeds, learning off; the random policy on the same seeds.
    eval_seed = 1_000_000 + config.seed
    evaluation = run_cartpole(
        net, config.eval_episodes, bins=config.bins, learn=False, seed=eval_seed
    )
    random_policy = run_cartpole(None, config.eval_episodes, seed=eval_seed)
    # The same episodes with feedback still on (the network keeps adapting while it plays).
    adapting = run_cartpole(
        net, config.eval_episodes, bins=config.bins, reward=config.cartpole_reward, seed=eval_seed
    )
    metrics = {
        "episodes": config.episodes,
        "train_mean_return_last_20": float(np.mean(log.reward[-20:])),
        "eval_episodes": config.eval_episodes,
        "eval_mean_return": float(np.mean(evaluation.reward)),
        "eval_std_return": float(np.std(evaluation.reward)),
        "eval_learning_on_mean_return": float(np.mean(adapting.reward)),
        "random_mean_return": float(np.mean(random_policy.reward)),
        "random_std_return": float(np.std(random_policy.reward)),
    }
    return net, log, metrics


def _stream(config: TrainConfig, bar: Any) -> tuple[GraphNet, EpisodeLog, dict[str, Any]]:
    from rnnlab.feed import FeedClient, serve
    from rnnlab.stream_demo import default_waitress_config

    server_config = default_waitress_config(config.waitress_config)
    server_config.update(
        {
            "pub_to": "tcp://127.0.0.1:*",
            "mode": "pub",
            "rate": config.rate,
            "duration": config.duration + 30.0,
        }
    )
    n_channels = len(server_config["channels"])
    settings: dict[str, Any] = {"density": 0.2, "grow_prob": 0.002, "lr": 0.5}
    settings.update(config.net)
    density = settings.pop("density")
    net = GraphNet(
        2 * n_channels,
        settings.pop("n_hidden", 8 * n_channels),
        2 * n_channels,
        density=density,
        seed=config.seed,
        threads=config.threads,
        **settings,
    )
    rng = np.random.default_rng(config.seed)
    log = EpisodeLog()
    persistence: list[bool] = []
    previous: np.ndarray | None = None
    last_change: np.ndarray | None = None
    predicted: list[int | None] = []
    started = time.monotonic()
    shown = 0
    with serve(server_config) as server:
        with FeedClient(server.endpoint, topic=server_config["topic"], timeout=10.0) as client:
            for _, values in client.frames():
                elapsed = time.monotonic() - started
                if elapsed >= config.duration:
                    break
                if int(elapsed) > shown:
                    bar.update(int(elapsed) - shown)
                    shown = int(elapsed)
                values = np.asarray(values, dtype=np.float64)
                if previous is not None:
                    change = values - previous
                    grown, pruned = net.grown_total, net.pruned_total
                    total = 0.0
                    for channel, reward in stream_rewards(predicted, change):
                        output = net.output_ids[2 * channel + int(predicted[channel] or 0)]
                        net.feedback(reward, at=output)
                        total += reward
                        log.correct.append(reward > 0)
                    if last_change is not None:
                        persistence.extend(
                            bool(np.sign(c) == np.sign(p) and c != 0)
                            for c, p in zip(change, last_change, strict=True)
                        )
                    log.reward.append(total)
                    log.n_edges.append(net.n_edges)
                    log.grown.append(net.grown_total - grown)
                    log.pruned.append(net.pruned_total - pruned)
                    code = stream_encode(change, config.dead_band)
                    fired = net.run(np.tile(code, (config.steps_per_frame, 1)))
                    predicted = stream_predictions(fired.sum(axis=0))
                    # Silence or a tie: guess at random so that every frame is scored.
                    predicted = [int(rng.integers(2)) if p is None else p for p in predicted]
                    last_change = change
                previous = values
        server.stop()
    half = len(log.correct) // 2
    metrics = {
        "frames": len(log.reward) + 1,
        "sign_agreement": float(np.mean(log.correct)) if log.correct else None,
        "sign_agreement_second_half": float(np.mean(log.correct[half:])) if log.correct else None,
        "persistence_baseline": float(np.mean(persistence)) if persistence else None,
        "channels": n_channels,
    }
    return net, log, metrics


def train(
    config: TrainConfig, root: str | os.PathLike[str] = "runs", progress: bool = True
) -> tuple[RunFolder, dict[str, Any]]:
    """Run one task and write its run folder; returns (folder, metrics)."""
    from tqdm import tqdm

    config.validate()
    folder = RunFolder.create(root, f"graphnet-{config.task}-{time.strftime('%Y%m%d-%H%M%S')}")
    folder.write_json("config.json", asdict(config))
    total = {
        "association": config.trials,
        "cartpole": config.episodes,
        "stream": round(config.duration),
    }[config.task]
    unit = {"association": "trial", "cartpole": "episode", "stream": "frame"}[config.task]
    started = time.monotonic()
    with tqdm(total=total, desc=f"graphnet {config.task}", disable=not progress) as bar:
        runner = {"association": _association, "cartpole": _cartpole, "stream": _stream}
        net, log, metrics = runner[config.task](config, bar)
    metrics.update(
        {
            "task": config.task,
            "seconds": time.monotonic() - started,
            "final_edges": net.n_edges,
            "grown_total": net.grown_total,
            "pruned_total": net.pruned_total,
            "steps": net.steps,
        }
    )
    window = {"association": 100, "cartpole": 20, "stream": 200}[config.task]
    _plots(folder, log, net, unit, window)
    net.save(folder / "model")
    folder.write_json("metrics.json", metrics)
    return folder, metrics


def load_run_model(folder: str | os.PathLike[str]) -> GraphNet:
    """The network a run folder saved."""
    return GraphNet.load(Path(folder) / "model")
