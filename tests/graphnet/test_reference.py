"""The Rust core against the pure-Python/networkx reference on random graphs (bit-identical)."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlab.graphnet import GraphNet, make_config
from rnnlab.graphnet.reference import ReferenceGraphNet, SplitMix64

SETTINGS = [
    {},
    {"feedback_mode": "every_step", "lr": 2.0},
    {"grow_prob": 0.05, "mega_prune_every": 7},
    {"grow_prob": 0.05, "protect_after": 2, "novelty_bonus": 0.3, "feedback_mode": "every_step"},
    {"decay": 0.9, "threshold": 0.7, "spike": 0.5, "weight_max": 3.0, "prune_below": 0.2},
]


def test_splitmix64_matches_the_published_sequence() -> None:
    rng = SplitMix64(0)
    assert rng.next_u64() == 0xE220A8397B1DCDAF
    assert rng.next_u64() == 0x6E789E6AA1B965F4


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("settings", SETTINGS)
def test_core_and_reference_agree(settings: dict[str, object], seed: int) -> None:
    n_inputs, n_hidden, n_outputs, density = 5, 20, 3, 0.15
    net = GraphNet(n_inputs, n_hidden, n_outputs, density=density, seed=seed, **settings)
    config = make_config(n_inputs, n_hidden, n_outputs, **settings)  # type: ignore[arg-type]
    reference = ReferenceGraphNet.random(config, density, seed)
    for key, value in reference.edges().items():
        np.testing.assert_array_equal(net.edges()[key], value, err_msg=key)
    rng = np.random.default_rng(100 + seed)
    first_output = n_inputs + n_hidden
    for trial in range(25):
        observations = (rng.random((5, n_inputs)) > 0.5).astype(float)
        np.testing.assert_array_equal(net.run(observations), reference.run(observations))
        signal = float(rng.choice([-1.0, 0.5, 1.0]))
        at = [first_output + int(rng.integers(n_outputs))]
        assert net.feedback(signal, at) == reference.feedback(signal, at), trial
        if trial % 10 == 9:
            assert net.prune() == reference.prune()
            assert net.mega_prune() == reference.mega_prune()
    assert net.feedback_updates == reference.feedback_updates > 0
    np.testing.assert_array_equal(net.potentials(), reference.pool)
    for key, value in reference.edges().items():
        np.testing.assert_array_equal(net.edges()[key], value, err_msg=key)
