"""Tasks for the graph network: the association task, CartPole-v1, and the waitress stream.

Each trainer drives a :class:`~rnnlab.graphnet.GraphNet` with observations, reads the actions
from the output nodes that fire, and turns the task's reward into :meth:`GraphNet.feedback`
calls. The encodings and reward rules are documented in ``docs/graphnet.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rnnlab.errors import ConfigError
from rnnlab.graphnet.model import GraphNet

__all__ = [
    "CARTPOLE_SCALES",
    "AssociationResult",
    "EpisodeLog",
    "association_net",
    "cartpole_encode",
    "cartpole_net",
    "choose_action",
    "evaluate_association",
    "run_cartpole",
    "stream_encode",
    "train_association",
]

# CartPole-v1 observation scales: cart position, cart velocity, pole angle, angular velocity.
CARTPOLE_SCALES = (2.4, 2.0, 0.21, 2.0)
CARTPOLE_REWARDS = ("survival", "upright")


@dataclass
class EpisodeLog:
    """Per-trial (or per-episode) curves a run folder plots."""

    reward: list[float] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    n_edges: list[int] = field(default_factory=list)
    grown: list[int] = field(default_factory=list)
    pruned: list[int] = field(default_factory=list)


@dataclass
class AssociationResult:
    log: EpisodeLog
    trials_to_criterion: int | None
    criterion: float
    window: int
    final_accuracy: float


def choose_action(fired: NDArray[np.bool_], rng: np.random.Generator) -> int | None:
    """The index of a fired output (uniformly among several), or None if none fired."""
    candidates = np.flatnonzero(fired)
    if candidates.size == 0:
        return None
    return (
        int(candidates[rng.integers(candidates.size)])
        if candidates.size > 1
        else int(candidates[0])
    )


def association_net(n_patterns: int, *, seed: int = 0, **settings: Any) -> GraphNet:
    """The network the association task uses by default (see docs/graphnet.md)."""
    defaults: dict[str, Any] = {
        "n_hidden": 2 * n_patterns,
        "density": 0.4,
        "lr": 1.0,
        "decay": 0.5,
        "grow_prob": 0.05,
    }
    defaults.update(settings)
    n_hidden = defaults.pop("n_hidden")
    return GraphNet(n_patterns, n_hidden, n_patterns, seed=seed, **defaults)


def _association_trial(
    net: GraphNet,
    pattern: int,
    trial_steps: int,
    rng: np.random.Generator,
) -> int | None:
    """Present one-hot ``pattern`` for up to ``trial_steps`` steps from rest; the action is the
    first output to fire (ties broken at random)."""
    net.reset_activity()
    observation = np.zeros((1, net.n_inputs))
    observation[0, pattern] = 1.0
    for _ in range(trial_steps):
        fired = net.run(observation)[0]
        action = choose_action(fired, rng)
        if action is not None:
            return action
    return None


def train_association(
    net: GraphNet,
    trials: int,
    *,
    trial_steps: int = 4,
    silence_signal: float = 0.5,
    criterion: float = 0.9,
    window: int = 100,
    growth_window: int | None = 20,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> AssociationResult:
    """Train on the association task: pattern ``p`` (one-hot over ``n_inputs = P`` inputs) must
    make output ``p`` fire first. Reward +1 at the chosen output when right, −1 when wrong.
    When no output fires within ``trial_steps``, the trial counts as wrong and
    ``silence_signal`` is sent to all outputs (an exploration drive that does not reveal the
    answer; 0 turns it off). ``trials_to_criterion`` is the first trial at which the accuracy of
    the last ``window`` trials reaches ``criterion``.

    Growth follows failure (the notes: grow "when lots of negative rewards"): with
    ``growth_window = k``, the network's ``grow_prob`` is scaled after every trial by the error
    rate of the last k trials, so a solved task stops growing random edges; ``None`` keeps
    ``grow_prob`` constant. The network's own ``grow_prob`` is restored at the end."""
    n_patterns = net.n_inputs
    if net.n_outputs != n_patterns:
        raise ConfigError(
            f"net: the association task needs n_outputs == n_inputs, got {net.n_outputs}"
        )
    if trials < 1 or trial_steps < 1 or window < 1:
        raise ConfigError("trials, trial_steps, window: must be ≥ 1")
    rng = np.random.default_rng(seed)
    log = EpisodeLog()
    reached: int | None = None
    first_output = net.n_nodes - net.n_outputs
    base_grow_prob = float(net.config["grow_prob"])
    if growth_window is not None and growth_window < 1:
        raise ConfigError(f"growth_window: must be ≥ 1 or None, got {growth_window}")
    for trial in range(trials):
        pattern = int(rng.integers(n_patterns))
        grown, pruned = net.grown_total, net.pruned_total
        action = _association_trial(net, pattern, trial_steps, rng)
        if action is None:
            reward = -1.0
            if silence_signal != 0.0:
                net.feedback(silence_signal)
        else:
            reward = 1.0 if action == pattern else -1.0
            net.feedback(reward, at=first_output + action)
        log.reward.append(reward)
        log.correct.append(reward > 0)
        log.n_edges.append(net.n_edges)
        log.grown.append(net.grown_total - grown)
        log.pruned.append(net.pruned_total - pruned)
        if growth_window is not None:
            errors = 1.0 - float(np.mean(log.correct[-growth_window:]))
            net.configure(grow_prob=base_grow_prob * errors)
        full = trial + 1 >= window
        if reached is None and full and float(np.mean(log.correct[-window:])) >= criterion:
            reached = trial + 1
        if progress is not None:
            progress(trial)
    net.configure(grow_prob=base_grow_prob)
    final = float(np.mean(log.correct[-window:]))
    return AssociationResult(log, reached, criterion, window, final)


def evaluate_association(
    net: GraphNet, *, trial_steps: int = 4, repeats: int = 10, seed: int = 0
) -> float:
    """Fraction correct over ``repeats`` presentations of every pattern, without feedback.
    Growth is paused; the network's state is restored afterwards."""
    saved_state = net.state()
    saved_edges = net.edges()
    grow_prob = net.config["grow_prob"]
    net.configure(grow_prob=0.0)
    rng = np.random.default_rng(seed)
    correct = 0
    for _ in range(repeats):
        for pattern in range(net.n_inputs):
            correct += _association_trial(net, pattern, trial_steps, rng) == pattern
    net.configure(grow_prob=grow_prob)
    if net.n_edges == saved_edges["weight"].size:
        net.set_weights(saved_edges["weight"])
    net.set_state(saved_state)
    return correct / (repeats * net.n_inputs)


# ---------------------------------------------------------------------------------- CartPole
def cartpole_encode(observation: NDArray[np.float64], bins: int) -> NDArray[np.float64]:
    """One-hot place code: each of the 4 variables, divided by its scale in
    :data:`CARTPOLE_SCALES` and clipped to [-1, 1], lights one of ``bins`` equal bins."""
    scaled = np.clip(np.asarray(observation, dtype=np.float64) / CARTPOLE_SCALES, -1.0, 1.0)
    index = np.minimum(((scaled + 1.0) / 2.0 * bins).astype(int), bins - 1)
    code = np.zeros(4 * bins)
    code[np.arange(4) * bins + index] = 1.0
    return code


def cartpole_net(bins: int = 6, *, seed: int = 0, **settings: Any) -> GraphNet:
    """The CartPole network by default: inputs straight to the two action outputs (no
    hidden nodes: with hidden nodes and the association task's weights every node fires every
    step, both actions tie and nothing is learned), light weights and a fast decay."""
    defaults: dict[str, Any] = {
        "n_hidden": 0,
        "density": 0.5,
        "weight_range": (0.2, 0.6),
        "lr": 0.5,
        "decay": 0.2,
        "grow_prob": 0.001,
    }
    defaults.update(settings)
    n_hidden = defaults.pop("n_hidden")
    return GraphNet(4 * bins, n_hidden, 2, seed=seed, **defaults)


def run_cartpole(
    net: GraphNet | None,
    episodes: int,
    *,
    bins: int = 6,
    steps_per_action: int = 3,
    learn: bool = True,
    step_signal: float = 0.05,
    failure_signal: float = -1.0,
    reward: str = "upright",
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> EpisodeLog:
    """Play CartPole-v1 episodes. Each environment step presents the encoded observation for
    ``steps_per_action`` network steps; the action is the output (0: push left, 1: push
    right) that fired more often, ties and silence broken at random; feedback goes to the
    chosen output if it fired. With ``learn``, the
    chosen output gets ``step_signal`` after every step the pole survives and
    ``failure_signal`` when the episode terminates (not when it is truncated at 500).
    ``net=None`` plays the uniformly random policy (the baseline).

    ``reward="upright"`` replaces the survival signal by a dense one computed from the
    observation: ``+step_signal·20`` if the step brought ``|angle + 0.5·angular velocity|``
    closer to zero, minus that otherwise (the failure signal stays)."""
    import gymnasium as gym

    if reward not in CARTPOLE_REWARDS:
        raise ConfigError(
            f"reward: unknown value {reward!r}; allowed: {', '.join(CARTPOLE_REWARDS)}"
        )

    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(seed)
    log = EpisodeLog()
    try:
        for episode in range(episodes):
            observation, _ = env.reset(seed=seed + episode)
            total = 0.0
            grown = net.grown_total if net is not None else 0
            pruned = net.pruned_total if net is not None else 0
            if net is not None:
                net.reset_activity()
            while True:
                if net is None:
                    action = int(rng.integers(2))
                    fired_action = False
                else:
                    code = cartpole_encode(observation, bins)
                    counts = net.run(np.tile(code, (steps_per_action, 1))).sum(axis=0)
                    decided = bool(counts[0] != counts[1])
                    action = int(np.argmax(counts)) if decided else int(rng.integers(2))
                    # Feedback goes to the chosen output whenever it fired (also on a tie).
                    fired_action = bool(counts[action] > 0)
                before = abs(observation[2] + 0.5 * observation[3])
                observation, gained, terminated, truncated, _ = env.step(action)
                total += float(gained)
                if net is not None and learn and fired_action:
                    output = net.output_ids[action]
                    if terminated:
                        signal = failure_signal
                    elif reward == "upright":
                        better = abs(observation[2] + 0.5 * observation[3]) < before
                        signal = 20 * step_signal if better else -20 * step_signal
                    else:
                        signal = step_signal
                    net.feedback(signal, at=output)
                if terminated or truncated:
                    break
            log.reward.append(total)
            log.correct.append(total >= 195.0)
            log.n_edges.append(net.n_edges if net is not None else 0)
            log.grown.append(net.grown_total - grown if net is not None else 0)
            log.pruned.append(net.pruned_total - pruned if net is not None else 0)
            if progress is not None:
                progress(episode)
    finally:
        env.close()
    return log


# ---------------------------------------------------------------------------------- stream
def stream_encode(change: NDArray[np.float64], dead_band: float) -> NDArray[np.float64]:
    """Two input nodes per channel: [went up, went down] (|change| ≤ dead_band: neither)."""
    change = np.asarray(change, dtype=np.float64)
    return np.stack([change > dead_band, change < -dead_band], axis=1).astype(np.float64).ravel()


def stream_rewards(
    predicted: list[int | None], change: NDArray[np.float64]
) -> Iterator[tuple[int, float]]:
    """(channel, reward) for each channel that made a prediction: +1 if the predicted direction
    (0: up, 1: down) has the sign of the next change, −1 otherwise (a zero change counts as
    wrong)."""
    for channel, direction in enumerate(predicted):
        if direction is None:
            continue
        agrees = change[channel] > 0 if direction == 0 else change[channel] < 0
        yield channel, 1.0 if agrees else -1.0


def stream_predictions(fired_counts: NDArray[np.int64]) -> list[int | None]:
    """Per channel, 0 (up) or 1 (down): the output of the pair that fired more; None on a tie."""
    pairs = fired_counts.reshape(-1, 2)
    return [None if a == b else (0 if a > b else 1) for a, b in pairs]


def sign_agreement(correct: list[bool]) -> float:
    return float(np.mean(correct)) if correct else math.nan
