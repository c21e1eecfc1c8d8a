"""TD3 and DDPG for a FIURI circuit actor, with sequence replay and truncated BPTT.

Follows the reference note §4 (twin 400-300 critics that see (obs, action), burn-in without
gradient, truncated BPTT through the circuit, target policy smoothing, policy delay, gradient
clipping, Gaussian or Ornstein-Uhlenbeck exploration with linear decay) with these fixes:

* several batched environments (:class:`BatchedMountainCar`) and a fresh seed per training
  episode (upstream reset every episode with the same seed);
* a flat ring buffer that stores whole episodes; sequences are drawn uniformly over valid start
  indices and never cross an episode; optional prioritised sequences (vectorised, no per-sample
  scan) and optional stored-state replay (the actor's (E, O) at each step, R2D2-style) so burn-in
  starts from the state the actor really had instead of zeros;
* the target actor is unrolled over [obs_0, next_obs_0, next_obs_1, ...], which is aligned with
  s' and starts from the same state as the online actor.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from rnnlab.atomic import write_atomic, write_json_atomic, write_npz_atomic
from rnnlab.errors import ConfigError
from rnnlab.twc.circuit import TWC, CircuitState
from rnnlab.twc.mountain_car import BatchedMountainCar
from rnnlab.twc.rollout import SELECTION_FIRST_SEED, evaluate

__all__ = ["Critic", "SequenceReplay", "TD3Config", "TD3Trainer"]

ALGORITHMS = ("td3", "ddpg")
EXPLORATION = ("gaussian", "ou")
SAMPLING = ("transition", "episode")
WARMUP_ACTIONS = ("uniform", "noise")


@dataclass
class TD3Config:
    """Hyper-parameters (defaults close to the note's tuned V2 runs, §4.5)."""

    algo: str = "td3"
    total_steps: int = 200_000
    n_envs: int = 8
    warmup_steps: int = 10_000
    warmup_actions: str = "uniform"
    batch_size: int = 256
    sequence_length: int = 8
    burn_in: int = 4
    updates_per_step: float = 0.5
    actor_lr: float = 2.2e-4
    critic_lr: float = 1.8e-4
    gamma: float = 0.98
    tau: float = 0.008
    policy_delay: int = 2
    target_noise: float = 0.28
    noise_clip: float = 0.32
    exploration: str = "ou"
    sigma_start: float = 0.4
    sigma_end: float = 0.08
    sigma_decay_fraction: float = 0.7
    ou_theta: float = 0.15
    grad_clip: float = 1.0
    capacity: int = 100_000
    prioritized: bool = False
    sampling: str = "transition"
    priority_alpha: float = 0.6
    priority_beta: float = 0.6
    stored_state: bool = False
    dynamics: str = "straight_through"
    delay: int = 1
    encoder: str = "faithful"
    seed: int = 0
    init_from: str | None = None  # start the actor from a policy file (load_policy formats)
    eval_every_steps: int = 5_000
    eval_episodes: int = 10
    max_episode_steps: int = 999  # training episodes only; evaluation always uses 999

    def validate(self) -> None:
        if self.algo not in ALGORITHMS:
            raise ConfigError(f"algo: {self.algo!r} is not one of {ALGORITHMS}")
        if self.exploration not in EXPLORATION:
            raise ConfigError(f"exploration: {self.exploration!r} is not one of {EXPLORATION}")
        if self.warmup_actions not in WARMUP_ACTIONS:
            raise ConfigError(
                f"warmup_actions: {self.warmup_actions!r} is not one of {WARMUP_ACTIONS}"
            )
        if self.sampling not in SAMPLING:
            raise ConfigError(f"sampling: {self.sampling!r} is not one of {SAMPLING}")
        if self.sampling == "episode" and self.prioritized:
            raise ConfigError(
                "sampling: 'episode' (upstream's uniform episode choice) cannot be combined with "
                "prioritized replay; use sampling='transition' with prioritized=True"
            )
        if not 0 <= self.burn_in < self.sequence_length:
            raise ConfigError(
                f"burn_in: must be in [0, sequence_length), got {self.burn_in} "
                f"with sequence_length {self.sequence_length}"
            )
        for name in ("total_steps", "n_envs", "batch_size", "policy_delay", "capacity"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")


class Critic(nn.Module):
    """Q(s, a): 400-300 ReLU MLP, the action joins at the second layer (DDPG-paper style)."""

    obs_center: torch.Tensor
    obs_scale: torch.Tensor

    def __init__(self, obs_dim: int = 2, action_dim: int = 1, hidden: tuple[int, int] = (400, 300)):
        super().__init__()
        self.first = nn.Linear(obs_dim, hidden[0])
        self.second = nn.Linear(hidden[0] + action_dim, hidden[1])
        self.out = nn.Linear(hidden[1], 1)
        # observation scaling to about [-1, 1] (MountainCar: position, velocity)
        self.register_buffer("obs_center", torch.tensor([-0.3, 0.0]))
        self.register_buffer("obs_scale", torch.tensor([0.9, 0.07]))
        for layer in (self.first, self.second):
            bound = 1.0 / math.sqrt(layer.in_features)  # true fan-in (upstream used fan-out)
            nn.init.uniform_(layer.weight, -bound, bound)
            nn.init.zeros_(layer.bias)
        nn.init.uniform_(self.out.weight, -3e-3, 3e-3)
        nn.init.uniform_(self.out.bias, -3e-3, 3e-3)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        hidden = functional.relu(self.first((obs - self.obs_center) / self.obs_scale))
        hidden = functional.relu(self.second(torch.cat([hidden, action], dim=-1)))
        return self.out(hidden)[..., 0]


class SequenceReplay:
    """Flat ring buffer of whole episodes; samples sequences that never cross an episode.

    An episode is written contiguously; if it does not fit before the end, the rest of the
    buffer is marked invalid and writing restarts at 0. ``remaining[i]`` is the number of steps
    from i to the end of i's episode (0 = empty), so i is a valid start iff remaining ≥ L.
    """

    def __init__(self, capacity: int, obs_dim: int, n_neurons: int, seed: int) -> None:
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.action = np.zeros((capacity, 1), np.float32)
        self.reward = np.zeros(capacity, np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.remaining = np.zeros(capacity, np.int64)
        self.state = np.zeros((capacity, 2 * n_neurons), np.float32)
        self.priority = np.zeros(capacity, np.float64)
        self.cursor = 0
        self.rng = np.random.default_rng(seed)
        self.size = 0

    def add_episode(self, episode: dict[str, np.ndarray]) -> None:
        length = episode["reward"].shape[0]
        if length > self.capacity:
            raise ConfigError(f"capacity: {self.capacity} is smaller than an episode ({length})")
        if self.cursor + length > self.capacity:
            self.remaining[self.cursor :] = 0
            self.cursor = 0
        where = slice(self.cursor, self.cursor + length)
        for name in ("obs", "action", "reward", "next_obs", "terminated", "state"):
            getattr(self, name)[where] = episode[name]
        self.remaining[where] = np.arange(length, 0, -1)
        top = float(self.priority.max()) if self.size else 1.0
        self.priority[where] = max(top, 1e-6)
        self.cursor += length
        self.size = int((self.remaining > 0).sum())

    def valid_starts(self, length: int) -> np.ndarray:
        return np.flatnonzero(self.remaining >= length)

    def episode_runs(self, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First position in ``starts`` and number of valid starts of each stored episode.

        ``starts`` are the valid start indices (sorted). Two neighbours belong to the same
        episode iff they are adjacent slots and ``remaining`` drops by exactly one between them
        (an episode is written contiguously; the next one starts with its full length).
        """
        if starts.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        same = (np.diff(starts) == 1) & (
            self.remaining[starts[:-1]] == self.remaining[starts[1:]] + 1
        )
        first = np.concatenate([[0], np.flatnonzero(~same) + 1])
        counts = np.diff(np.concatenate([first, [starts.size]]))
        return first, counts

    def sample(
        self,
        batch: int,
        length: int,
        alpha: float | None = None,
        beta: float = 0.0,
        by_episode: bool = False,
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """(arrays [B, L, ...], start indices [B], importance weights [B]).

        Uniform over valid start indices; with ``alpha`` proportional to priority^alpha; with
        ``by_episode`` (upstream's ``SequenceBuffer``) an episode holding a valid start is
        chosen uniformly, then a start inside it, which favours short (successful) episodes.
        """
        starts = self.valid_starts(length)
        if starts.size == 0:
            raise ConfigError(f"replay: no episode holds a sequence of length {length} yet")
        if by_episode:
            first, counts = self.episode_runs(starts)
            episode = self.rng.integers(0, first.size, batch)
            chosen = starts[first[episode] + self.rng.integers(0, counts[episode])]
            weights = np.ones(batch)
        elif alpha is None:
            chosen = starts[self.rng.integers(0, starts.size, batch)]
            weights = np.ones(batch)
        else:
            scaled = self.priority[starts] ** alpha
            probabilities = scaled / scaled.sum()
            pick = self.rng.choice(starts.size, size=batch, p=probabilities)
            chosen = starts[pick]
            weights = (starts.size * probabilities[pick]) ** (-beta)
            weights = weights / weights.max()
        index = chosen[:, None] + np.arange(length)[None, :]
        names = ("obs", "action", "reward", "next_obs", "terminated")
        arrays = {name: getattr(self, name)[index] for name in names}
        arrays["state"] = self.state[chosen]
        return arrays, chosen, weights

    def update_priorities(self, starts: np.ndarray, errors: np.ndarray) -> None:
        self.priority[starts] = np.abs(errors) + 1e-6

    def arrays(self) -> dict[str, np.ndarray]:
        names = ("obs", "action", "reward", "next_obs", "terminated", "remaining", "state")
        out = {name: getattr(self, name) for name in names}
        out["priority"] = self.priority
        out["cursor"] = np.array(self.cursor)
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        for name in ("obs", "action", "reward", "next_obs", "terminated", "remaining", "state"):
            getattr(self, name)[...] = arrays[name]
        self.priority[...] = arrays["priority"]
        self.cursor = int(arrays["cursor"])
        self.size = int((self.remaining > 0).sum())


def _soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters(), strict=False):
            t.mul_(1 - tau).add_(s, alpha=tau)


class TD3Trainer:
    """TD3 (or DDPG) training of a :class:`TWC` actor on batched MountainCarContinuous."""

    def __init__(self, config: TD3Config) -> None:
        config.validate()
        self.config = config
        torch.manual_seed(config.seed)
        self.actor = TWC(
            dynamics=config.dynamics, delay=config.delay, encoder=config.encoder, seed=config.seed
        )
        if config.init_from is not None:
            # fine-tuning: the 40 effective parameters of another policy (ES result, an imported
            # FIURI-engine XML model, a checkpoint); dynamics/encoder/delay stay this config's
            source = Path(config.init_from)
            if not source.is_file():
                raise ConfigError(f"init_from: no such policy file {str(source)!r}")
            self.actor.load_parameters_json(load_policy(source).parameters_json())
        self.actor_target = copy.deepcopy(self.actor)
        self.critics = nn.ModuleList([Critic() for _ in range(2 if config.algo == "td3" else 1)])
        self.critics_target = copy.deepcopy(self.critics)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_optimizer = torch.optim.Adam(self.critics.parameters(), lr=config.critic_lr)
        self.replay = SequenceReplay(config.capacity, 2, self.actor.n_neurons, config.seed)
        self.rng = np.random.default_rng(config.seed + 7)
        self.generator = torch.Generator().manual_seed(config.seed + 11)
        self.env = BatchedMountainCar(config.n_envs, config.max_episode_steps)
        self.env_steps = 0
        self.updates = 0
        self.episodes = 0
        self.history: list[dict[str, float]] = []
        self.best_eval = -math.inf
        self._update_credit = 0.0
        self._started = time.perf_counter()
        self._obs = self.env.reset(self._new_seeds(config.n_envs))
        self._state = self.actor.initial_state(config.n_envs)
        self._noise = np.zeros(config.n_envs)
        self._episode: list[list[dict[str, np.ndarray]]] = [[] for _ in range(config.n_envs)]
        self._episode_return = np.zeros(config.n_envs)

    def _new_seeds(self, n: int) -> np.ndarray:
        return self.rng.integers(1_000_000, 2**31 - 1, size=n)

    def sigma(self) -> float:
        cfg = self.config
        span = max(1.0, cfg.sigma_decay_fraction * cfg.total_steps)
        fraction = min(1.0, self.env_steps / span)
        return cfg.sigma_start + (cfg.sigma_end - cfg.sigma_start) * fraction

    # ------------------------------------------------------------------ acting
    def _act(self) -> np.ndarray:
        cfg = self.config
        with torch.no_grad():
            action, self._next_state = self.actor.step(torch.from_numpy(self._obs), self._state)
        action_np = action[:, 0].numpy().astype(np.float64)
        if self.env_steps < cfg.warmup_steps:
            if cfg.warmup_actions == "uniform":
                return self.rng.uniform(-1.0, 1.0, cfg.n_envs)
            action_np = np.zeros(cfg.n_envs)  # "noise": the exploration process alone
        sigma = self.sigma()
        if cfg.exploration == "ou":
            self._noise += cfg.ou_theta * (0.0 - self._noise) + sigma * self.rng.standard_normal(
                cfg.n_envs
            )
            noise = self._noise
        else:
            noise = sigma * self.rng.standard_normal(cfg.n_envs)
        return np.clip(action_np + noise, -1.0, 1.0)

    def _env_step(self) -> None:
        state_before = torch.cat([self._state.internal, self._state.output], dim=1).numpy()
        action = self._act().astype(np.float32)
        obs = self._obs
        next_obs, reward, terminated, truncated = self.env.step(action)
        for i in range(self.config.n_envs):
            self._episode[i].append(
                {
                    "obs": obs[i],
                    "action": action[i : i + 1],
                    "reward": np.array(reward[i], np.float32),
                    "next_obs": next_obs[i],
                    "terminated": np.array(terminated[i], np.float32),
                    "state": state_before[i],
                }
            )
        self._episode_return += reward
        self._state = self._next_state
        self._obs = next_obs
        self.env_steps += self.config.n_envs
        finished = terminated | truncated
        if finished.any():
            for i in np.flatnonzero(finished).tolist():
                steps = self._episode[i]
                self.replay.add_episode(
                    {key: np.stack([s[key] for s in steps]) for key in steps[0]}
                )
                self._episode[i] = []
                self.history.append(
                    {
                        "env_steps": self.env_steps,
                        "train_return": float(self._episode_return[i]),
                        "length": len(steps),
                    }
                )
                self._episode_return[i] = 0.0
                self.episodes += 1
            self._obs = self.env.reset(self._new_seeds(int(finished.sum())), finished)
            keep = torch.from_numpy(~finished)[:, None]
            self._state = CircuitState(
                torch.where(keep, self._state.internal, 0.0),
                torch.where(keep, self._state.output, 0.0),
            )
            self._noise[finished] = 0.0

    # ---------------------------------------------------------------- learning
    def _initial_states(self, stored: torch.Tensor) -> CircuitState | None:
        if not self.config.stored_state:
            return None
        n = self.actor.n_neurons
        return CircuitState(stored[:, :n].contiguous(), stored[:, n:].contiguous())

    def update(self) -> dict[str, float]:
        cfg = self.config
        alpha = cfg.priority_alpha if cfg.prioritized else None
        progress = min(1.0, self.env_steps / cfg.total_steps)
        beta = cfg.priority_beta + (1.0 - cfg.priority_beta) * progress
        arrays, starts, weights = self.replay.sample(
            cfg.batch_size, cfg.sequence_length, alpha, beta, cfg.sampling == "episode"
        )
        obs = torch.from_numpy(arrays["obs"])
        action = torch.from_numpy(arrays["action"])
        reward = torch.from_numpy(arrays["reward"])
        next_obs = torch.from_numpy(arrays["next_obs"])
        terminated = torch.from_numpy(arrays["terminated"])
        state0 = self._initial_states(torch.from_numpy(arrays["state"]))
        is_weight = torch.from_numpy(weights).float()[:, None]
        burn = cfg.burn_in
        with torch.no_grad():
            _, actor_state = self.actor.unroll(obs[:, :burn], state0) if burn else (None, state0)
            # [obs_0, next_obs_0, ..., next_obs_{L-1}]: output k+1 is the action for s'_k
            target_inputs = torch.cat([obs[:, :1], next_obs], dim=1)
            all_target_actions, _ = self.actor_target.unroll(target_inputs, state0)
            target_actions = all_target_actions[:, burn + 1 :]
            if cfg.algo == "td3":
                noise = torch.randn(target_actions.shape, generator=self.generator)
                noise = (noise * cfg.target_noise).clamp(-cfg.noise_clip, cfg.noise_clip)
                target_actions = (target_actions + noise).clamp(-1.0, 1.0)
            s_next = next_obs[:, burn:]
            q_next = torch.stack([q(s_next, target_actions) for q in self.critics_target]).min(0)[0]
            target = reward[:, burn:] + cfg.gamma * (1 - terminated[:, burn:]) * q_next
        s, a = obs[:, burn:], action[:, burn:]
        losses = []
        td_error = torch.zeros(obs.shape[0])
        for q in self.critics:
            error = q(s, a) - target
            if cfg.algo == "td3":
                losses.append((is_weight * error.pow(2)).mean())
            else:
                losses.append(
                    (
                        is_weight
                        * functional.smooth_l1_loss(
                            error, torch.zeros_like(error), reduction="none"
                        )
                    ).mean()
                )
            td_error = td_error + error.detach().abs().mean(1) / len(self.critics)
        critic_loss = sum(losses)
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        nn.utils.clip_grad_norm_(self.critics.parameters(), cfg.grad_clip)
        self.critic_optimizer.step()
        if cfg.prioritized:
            self.replay.update_priorities(starts, td_error.numpy())
        self.updates += 1
        record = {"critic_loss": float(critic_loss.detach())}
        delay = cfg.policy_delay if cfg.algo == "td3" else 1
        if self.updates % delay == 0:
            assert actor_state is not None or burn == 0
            actions, _ = self.actor.unroll(s, _detach(actor_state))
            for p in self.critics[0].parameters():
                p.requires_grad_(False)
            actor_loss = -self.critics[0](s, actions).mean()
            for p in self.critics[0].parameters():
                p.requires_grad_(True)
            self.actor_optimizer.zero_grad()
            actor_loss.backward()
            nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.grad_clip)
            self.actor_optimizer.step()
            _soft_update(self.actor_target, self.actor, cfg.tau)
            _soft_update(self.critics_target, self.critics, cfg.tau)
            record["actor_loss"] = float(actor_loss.detach())
        return record

    # -------------------------------------------------------------------- loop
    def evaluate(self, episodes: int | None = None) -> dict[str, float]:
        return evaluate(
            self.actor, episodes or self.config.eval_episodes, SELECTION_FIRST_SEED
        ).summary()

    def train(
        self,
        steps: int | None = None,
        on_eval: Callable[[TD3Trainer, dict[str, float]], None] | None = None,
        progress: Any = None,
        time_limit_s: float = float("inf"),
        stop_requested: Callable[[], bool] | None = None,
    ) -> None:
        """Run until ``total_steps`` env steps (or ``steps`` more), until ``time_limit_s``
        seconds of this call have passed, or until ``stop_requested()`` is true (both checked
        after every batch of env steps and its updates, so the trainer is consistent and can be
        saved and resumed)."""
        cfg = self.config
        stop = cfg.total_steps if steps is None else min(cfg.total_steps, self.env_steps + steps)
        next_eval = (self.env_steps // cfg.eval_every_steps + 1) * cfg.eval_every_steps
        deadline = time.perf_counter() + time_limit_s
        while (
            self.env_steps < stop
            and time.perf_counter() < deadline
            and not (stop_requested is not None and stop_requested())
        ):
            before = self.env_steps
            self._env_step()
            if progress is not None:
                progress.update(self.env_steps - before)
            if (
                self.env_steps >= cfg.warmup_steps
                and self.replay.valid_starts(cfg.sequence_length).size
            ):
                self._update_credit += cfg.updates_per_step * cfg.n_envs
                while self._update_credit >= 1.0:
                    self._update_credit -= 1.0
                    self.update()
            if self.env_steps >= next_eval:
                next_eval += cfg.eval_every_steps
                summary = self.evaluate()
                summary["env_steps"] = self.env_steps
                summary["seconds"] = time.perf_counter() - self._started
                self.history.append(
                    {"env_steps": self.env_steps, "eval_return": summary["mean_return"]}
                )
                if on_eval is not None:
                    on_eval(self, summary)

    # --------------------------------------------------------------- checkpoint
    def save(self, folder: Path, name: str) -> None:
        """``name``.safetensors (actor) + ``name``.json; ``name``-resume.pt/.npz for resuming."""
        from safetensors.torch import save as save_tensors

        folder.mkdir(parents=True, exist_ok=True)
        actor_bytes = save_tensors({k: v.contiguous() for k, v in self.actor.state_dict().items()})

        def write_actor(file: Any) -> None:
            file.write(actor_bytes)

        write_atomic(folder / f"{name}.safetensors", write_actor)
        write_json_atomic(
            folder / f"{name}.json",
            {
                "circuit": self.actor.config(),
                "parameters": self.actor.parameters_json(),
                "trainer": asdict(self.config),
                "env_steps": self.env_steps,
                "updates": self.updates,
                "episodes": self.episodes,
                "best_eval": self.best_eval,
                "rng": self.rng.bit_generator.state,
                "replay_rng": self.replay.rng.bit_generator.state,
                "history": self.history,
            },
        )
        resume = {
            "actor": self.actor.state_dict(),
            "actor_target": self.actor_target.state_dict(),
            "critics": self.critics.state_dict(),
            "critics_target": self.critics_target.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "generator": self.generator.get_state(),
        }

        def write_resume(file: Any) -> None:
            torch.save(resume, file)

        write_atomic(folder / f"{name}-resume.pt", write_resume)
        write_npz_atomic(folder / f"{name}-replay.npz", self.replay.arrays())

    @classmethod
    def resume(cls, folder: Path, name: str) -> TD3Trainer:
        """Rebuild a trainer from :meth:`save` output (weights_only loading, no pickle)."""
        import json

        meta = json.loads((folder / f"{name}.json").read_text())
        config = TD3Config(**meta["trainer"])
        # the actor comes from the checkpoint, so the init_from file need not exist any more
        trainer = cls(replace(config, init_from=None))
        trainer.config = config
        state = torch.load(folder / f"{name}-resume.pt", weights_only=True)
        trainer.actor.load_state_dict(state["actor"])
        trainer.actor_target.load_state_dict(state["actor_target"])
        trainer.critics.load_state_dict(state["critics"])
        trainer.critics_target.load_state_dict(state["critics_target"])
        trainer.actor_optimizer.load_state_dict(state["actor_optimizer"])
        trainer.critic_optimizer.load_state_dict(state["critic_optimizer"])
        trainer.generator.set_state(state["generator"])
        with np.load(folder / f"{name}-replay.npz") as arrays:
            trainer.replay.load_arrays(dict(arrays))
        trainer.env_steps = int(meta["env_steps"])
        trainer.updates = int(meta["updates"])
        trainer.episodes = int(meta["episodes"])
        trainer.best_eval = float(meta["best_eval"])
        trainer.history = list(meta["history"])
        trainer.rng.bit_generator.state = meta["rng"]
        trainer.replay.rng.bit_generator.state = meta["replay_rng"]
        return trainer


def _detach(state: CircuitState | None) -> CircuitState | None:
    if state is None:
        return None
    return CircuitState(state.internal.detach(), state.output.detach())


def load_policy(path: str | Path, dynamics: str | None = None) -> TWC:
    """Load an actor from ``X.safetensors`` (+ ``X.json``), a parameters/checkpoint JSON, or a
    FIURI-engine (Ariel) XML model (read with :func:`rnnlab.twc.ariel_xml.read_ariel_xml`;
    exact dynamics unless ``dynamics`` says otherwise)."""
    import json

    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix == ".safetensors":
        meta = json.loads(path.with_suffix(".json").read_text())
        overrides = {} if dynamics is None else {"dynamics": dynamics}
        circuit = TWC.from_config(meta["circuit"], **overrides)
        circuit.load_state_dict(load_file(str(path)))
        return circuit
    if path.suffix == ".json":
        meta = json.loads(path.read_text())
        config = meta.get("circuit", {})
        if dynamics is not None:
            config = {**config, "dynamics": dynamics}
        circuit = TWC.from_config(config)
        circuit.load_parameters_json(meta.get("parameters", meta))
        return circuit
    if path.suffix == ".xml":
        from rnnlab.twc.ariel_xml import read_ariel_xml

        return TWC.from_parameters(read_ariel_xml(path), dynamics=dynamics or "exact")
    raise ConfigError(
        f"checkpoint: expected a .safetensors, .json or FIURI-engine .xml file, got {str(path)!r}"
    )
