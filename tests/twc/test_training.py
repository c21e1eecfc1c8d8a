"""Sequence replay, TD3/DDPG updates, checkpoints and resume, CMA-ES, batched evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rnnlab.twc.circuit import TWC
from rnnlab.twc.evolution import CMAES, EvolutionConfig, train_evolution
from rnnlab.twc.rollout import SELECTION_FIRST_SEED, evaluate, run_episodes
from rnnlab.twc.td3 import SequenceReplay, TD3Config, TD3Trainer, load_policy


def _episode(episode_id: int, length: int) -> dict[str, np.ndarray]:
    steps = np.arange(length, dtype=np.float32)
    obs = np.stack([np.full(length, episode_id, np.float32), steps], axis=1)
    return {
        "obs": obs,
        "action": np.zeros((length, 1), np.float32),
        "reward": steps.copy(),
        "next_obs": obs + np.array([0, 1], np.float32),
        "terminated": np.zeros(length, np.float32),
        "state": np.zeros((length, 22), np.float32),
    }


def test_sequences_never_cross_episodes_including_wraparound() -> None:
    replay = SequenceReplay(capacity=20, obs_dim=2, n_neurons=11, seed=0)
    for episode_id, length in enumerate([7, 9, 3, 8, 6, 2]):
        replay.add_episode(_episode(episode_id, length))
    for alpha in (None, 0.6):
        arrays, _starts, weights = replay.sample(500, 4, alpha=alpha, beta=0.5)
        obs = arrays["obs"]
        assert (obs[:, :, 0] == obs[:, :1, 0]).all()  # one episode per sequence
        assert (np.diff(obs[:, :, 1], axis=1) == 1).all()  # consecutive steps
        assert weights.shape == (500,)
        assert weights.max() == pytest.approx(1.0)
    assert set(np.unique(arrays["obs"][:, 0, 0])) <= {
        3.0,
        4.0,
        1.0,
    }  # episodes 0 and 2 too short or overwritten


def test_episode_sampling_chooses_episodes_uniformly_as_upstream() -> None:
    replay = SequenceReplay(capacity=100, obs_dim=2, n_neurons=11, seed=2)
    for episode_id, length in enumerate([40, 6, 6, 6]):
        replay.add_episode(_episode(episode_id, length))
    arrays, _, weights = replay.sample(8000, 4, by_episode=True)
    obs = arrays["obs"]
    assert (obs[:, :, 0] == obs[:, :1, 0]).all()
    assert (np.diff(obs[:, :, 1], axis=1) == 1).all()
    assert (weights == 1.0).all()
    share = np.bincount(obs[:, 0, 0].astype(int), minlength=4) / 8000
    np.testing.assert_allclose(share, 0.25, atol=0.03)  # by transition: 37/46 for episode 0
    inside = obs[obs[:, 0, 0] == 1, 0, 1]
    np.testing.assert_allclose(np.bincount(inside.astype(int)) / inside.size, 1 / 3, atol=0.05)
    by_transition = replay.sample(8000, 4)[0]["obs"][:, 0, 0]
    assert (by_transition == 0).mean() == pytest.approx(37 / 46, abs=0.03)


@pytest.mark.parametrize("length", [1, 3])
def test_episode_runs_split_adjacent_episodes_and_wraparound(length: int) -> None:
    replay = SequenceReplay(capacity=20, obs_dim=2, n_neurons=11, seed=0)
    for episode_id, steps in enumerate([7, 9, 3, 8, 6, 2]):
        replay.add_episode(_episode(episode_id, steps))
    starts = replay.valid_starts(length)
    first, counts = replay.episode_runs(starts)
    episode_of_start = replay.obs[starts, 0]
    for begin, count in zip(first, counts, strict=True):
        run = episode_of_start[begin : begin + count]
        assert (run == run[0]).all()
    assert len(set(episode_of_start[first].tolist())) == first.size  # one run per episode
    arrays, _, _ = replay.sample(500, length, by_episode=True)
    assert (arrays["obs"][:, :, 0] == arrays["obs"][:, :1, 0]).all()


def test_sampling_is_validated() -> None:
    from rnnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="sampling"):
        TD3Config(sampling="episodes").validate()
    with pytest.raises(ConfigError, match="prioritized"):
        TD3Config(sampling="episode", prioritized=True).validate()
    with pytest.raises(ConfigError, match="warmup_actions"):
        TD3Config(warmup_actions="random").validate()


def test_prioritised_sampling_follows_priorities() -> None:
    replay = SequenceReplay(capacity=100, obs_dim=2, n_neurons=11, seed=1)
    replay.add_episode(_episode(0, 50))
    starts = replay.valid_starts(5)
    replay.update_priorities(starts, np.full(starts.size, 1e-3))
    replay.update_priorities(starts[:1], np.array([10.0]))
    _, chosen, weights = replay.sample(400, 5, alpha=1.0, beta=1.0)
    assert (chosen == starts[0]).mean() > 0.9
    assert weights[chosen == starts[0]].max() < weights[chosen != starts[0]].min()


def _tiny_config(**overrides: object) -> TD3Config:
    base = {
        "total_steps": 300,
        "n_envs": 2,
        "warmup_steps": 200,
        "max_episode_steps": 100,
        "batch_size": 8,
        "sequence_length": 5,
        "burn_in": 2,
        "updates_per_step": 1.0,
        "eval_every_steps": 10**9,
        "seed": 3,
    }
    base.update(overrides)
    return TD3Config(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"algo": "ddpg", "exploration": "gaussian"},
        {"prioritized": True, "stored_state": True},
        {"sampling": "episode", "dynamics": "soft"},
    ],
)
def test_td3_updates_change_the_actor_and_resume_restores_everything(
    tmp_path: Path, overrides: dict[str, object]
) -> None:
    torch.set_num_threads(1)
    trainer = TD3Trainer(_tiny_config(**overrides))
    before = trainer.actor.flat_raw().clone()
    trainer.train()
    assert trainer.updates > 50
    assert not torch.equal(before, trainer.actor.flat_raw())
    trainer.save(tmp_path, "final")
    resumed = TD3Trainer.resume(tmp_path, "final")
    assert (resumed.env_steps, resumed.updates) == (trainer.env_steps, trainer.updates)
    for a, b in zip(trainer.critics.parameters(), resumed.critics.parameters(), strict=False):
        assert torch.equal(a, b)
    assert torch.equal(trainer.actor.flat_raw(), resumed.actor.flat_raw())
    np.testing.assert_array_equal(trainer.replay.remaining, resumed.replay.remaining)
    policy = load_policy(tmp_path / "final.safetensors")
    assert torch.equal(policy.flat_raw(), trainer.actor.flat_raw())
    resumed.config.total_steps += 10
    resumed.train()
    assert resumed.env_steps >= trainer.env_steps + 10


def test_noise_warmup_reaches_the_goal_where_uniform_actions_never_do() -> None:
    """Warm-up only (no updates): OU noise around 0 finds the goal, i.i.d. uniform actions don't."""
    torch.set_num_threads(1)
    reached = {}
    for warmup_actions in ("uniform", "noise"):
        steps = 16 * 999
        trainer = TD3Trainer(
            _tiny_config(
                n_envs=16,
                total_steps=10 * steps,  # σ stays near its start (0.4) during these steps
                warmup_steps=10 * steps,
                max_episode_steps=999,
                warmup_actions=warmup_actions,
                exploration="ou",
            )
        )
        trainer.train(steps=steps)
        assert trainer.updates == 0
        returns = [h["train_return"] for h in trainer.history if "train_return" in h]
        reached[warmup_actions] = np.mean([r > 0 for r in returns])
    assert reached["uniform"] == 0.0
    assert reached["noise"] >= 0.3


def test_td3_time_limit_stops_training() -> None:
    trainer = TD3Trainer(_tiny_config())
    trainer.train(time_limit_s=0.0)
    assert trainer.env_steps == 0
    trainer.train(steps=40, time_limit_s=60.0)
    assert 40 <= trainer.env_steps < 300


def test_actor_update_raises_the_critic_value_of_its_actions() -> None:
    torch.set_num_threads(1)
    trainer = TD3Trainer(_tiny_config(total_steps=300, policy_delay=1, actor_lr=3e-2))
    trainer.train()
    arrays, _, _ = trainer.replay.sample(64, 5)
    obs = torch.from_numpy(arrays["obs"])

    def value() -> float:
        with torch.no_grad():
            actions, _ = trainer.actor.unroll(obs)
            return float(trainer.critics[0](obs, actions).mean())

    for _ in range(30):  # critic first, then actor steps against a fixed critic
        trainer.update()
    start = value()
    critic = [p.detach().clone() for p in trainer.critics[0].parameters()]
    for _ in range(20):
        actions, _ = trainer.actor.unroll(obs)
        loss = -trainer.critics[0](obs, actions).mean()
        trainer.actor_optimizer.zero_grad()
        loss.backward()
        trainer.actor_optimizer.step()
    for p, q in zip(trainer.critics[0].parameters(), critic, strict=False):
        p.data.copy_(q)
    assert value() > start


@pytest.mark.slow
def test_td3_short_run_improves_over_initial_policy() -> None:
    torch.set_num_threads(1)
    trainer = TD3Trainer(TD3Config(total_steps=30_000, warmup_steps=8_000, batch_size=64))
    initial = trainer.evaluate(20)["mean_return"]
    trainer.train()
    assert trainer.evaluate(20)["mean_return"] > initial


def test_cmaes_minimises_a_shifted_sphere() -> None:
    strategy = CMAES(np.zeros(6), sigma=1.0, population=12, seed=0)
    optimum = np.arange(6) * 0.5
    for _ in range(120):
        candidates = strategy.ask()
        strategy.tell(-((candidates - optimum) ** 2).sum(axis=1))
    np.testing.assert_allclose(strategy.mean, optimum, atol=1e-3)


def test_evolution_runs_and_keeps_the_best_evaluated_vector() -> None:
    torch.set_num_threads(1)
    config = EvolutionConfig(
        generations=1,
        population=4,
        episodes_per_candidate=2,
        random_search=8,
        eval_every=1,
        eval_episodes=3,
        seed=1,
    )
    result = train_evolution(config)
    assert len(result.history) == 1
    assert result.best_eval["mean_return"] == pytest.approx(
        evaluate(result.best, 3, first_seed=SELECTION_FIRST_SEED).summary()["mean_return"]
    )


def test_batched_evaluation_equals_gymnasium_episodes() -> None:
    torch.set_num_threads(1)
    circuit = TWC(seed=4)
    with torch.no_grad():
        circuit.threshold.fill_(0.5)
    batched = evaluate(circuit, 2, first_seed=42, backend="batched")
    stepped = evaluate(circuit, 2, first_seed=42, backend="gymnasium")
    np.testing.assert_array_equal(batched.returns, stepped.returns)
    np.testing.assert_array_equal(batched.steps, stepped.steps)


def test_population_rows_use_their_own_parameters() -> None:
    torch.set_num_threads(1)
    circuit = TWC(seed=2)
    flat = torch.stack([circuit.flat_raw(), TWC(seed=9).flat_raw()])
    params = circuit.effective_from_flat_raw(flat.repeat_interleave(2, 0))
    together = run_episodes(circuit, np.array([5, 6, 5, 6]), params)
    alone = run_episodes(TWC(seed=9), np.array([5, 6]))
    np.testing.assert_array_equal(together.returns[2:], alone.returns)


@pytest.mark.slow
def test_es_reaches_90_over_100_fixed_seeds_within_15_minutes() -> None:
    torch.set_num_threads(1)
    result = train_evolution(EvolutionConfig(seed=3, time_limit_s=900))
    assert result.seconds_to_target is not None
    assert result.seconds_to_target < 900
    assert evaluate(result.best, 100).summary()["mean_return"] >= 90.0


def test_td3_init_from_a_policy_file_and_resume_without_it(tmp_path: Path) -> None:
    import json
    import shutil

    example = Path(__file__).resolve().parents[2] / "examples" / "twc" / "es_seed0_final.json"
    source = tmp_path / "start.json"
    shutil.copy(example, source)
    trainer = TD3Trainer(_tiny_config(init_from=str(source), warmup_steps=0, total_steps=40))
    wanted = TWC.from_parameters(json.loads(example.read_text())["parameters"])
    torch.testing.assert_close(trainer.actor.flat_raw(), wanted.flat_raw())
    torch.testing.assert_close(trainer.actor_target.flat_raw(), wanted.flat_raw())
    trainer.train()
    trainer.save(tmp_path / "run", "final")
    source.unlink()  # the checkpoint holds the actor; resuming must not need the start file
    resumed = TD3Trainer.resume(tmp_path / "run", "final")
    assert resumed.config.init_from == str(source)
    assert torch.equal(resumed.actor.flat_raw(), trainer.actor.flat_raw())
    from rnnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="init_from"):
        TD3Trainer(_tiny_config(init_from=str(source)))
