"""Exact FIURI dynamics: torch layers against the independent numpy reference and hand traces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnlab import ConfigError
from rnnlab.twc.circuit import TWC, FiuriCircuit
from rnnlab.twc.interfaces import BinaryInterface, DifferenceDecoder, ObservationEncoder
from rnnlab.twc.reference import (
    ReferenceCircuit,
    reference_mountain_car_action,
    reference_mountain_car_sensors,
    reference_neuron_update,
)
from rnnlab.twc.wiring import Synapse, Wiring


def _reference_for(circuit: FiuriCircuit) -> ReferenceCircuit:
    params = circuit.parameters_json()
    wiring = circuit.wiring
    return ReferenceCircuit(
        list(zip(wiring.neuron_names, wiring.roles, strict=False)),
        [(s["from"], s["to"], s["type"], s["weight"]) for s in params["synapses"]],
        {name: v["threshold"] for name, v in params["neurons"].items()},
        {name: v["decay"] for name, v in params["neurons"].items()},
        delay=circuit.delay,
    )


def _random_observations(rng: np.random.Generator, steps: int) -> np.ndarray:
    return np.stack([rng.uniform(-1.2, 0.6, steps), rng.uniform(-0.07, 0.07, steps)], axis=1)


def _randomise(circuit: FiuriCircuit, rng: np.random.Generator) -> None:
    n_sim = len(circuit.simulated_names)
    n_syn = len(circuit.synapse_keys)
    with torch.no_grad():
        circuit.threshold.copy_(torch.from_numpy(rng.uniform(-2.0, 6.0, n_sim)))
        circuit.decay_raw.copy_(torch.from_numpy(rng.normal(0.0, 1.5, n_sim)))
        circuit.weight_raw.copy_(torch.from_numpy(rng.normal(0.0, 1.5, n_syn)))


@pytest.mark.parametrize("delay", [1, 0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_float64_equals_reference_bit_for_bit(delay: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    circuit = TWC(dtype=torch.float64, delay=delay, seed=seed)
    _randomise(circuit, rng)
    reference = _reference_for(circuit)
    batch, steps = 3, 120
    obs = np.stack([_random_observations(rng, steps) for _ in range(batch)])
    resets = rng.random((batch, steps)) < 0.05
    resets[:, 0] = True
    actions, _, trace = circuit.unroll(
        torch.from_numpy(obs), reset=torch.from_numpy(resets), return_states=True
    )
    names = circuit.wiring.neuron_names
    branch_seen = {"decay": 0, "fire": 0}
    for row in range(batch):
        reference.reset()
        for t in range(steps):
            if resets[row, t]:
                reference.reset()
            previous = dict(reference.internal)
            internal, output = reference.step(reference_mountain_car_sensors(*obs[row, t]))
            expected_action = reference_mountain_car_action(internal["FWD"], internal["REV"])
            assert actions[row, t, 0].item() == expected_action
            assert trace.internal[row, t].tolist() == [internal[n] for n in names]
            assert trace.output[row, t].tolist() == [output[n] for n in names]
            for name in circuit.simulated_names:
                branch_seen["fire"] += output[name] > 0
                threshold = reference.thresholds[name]
                decayed = previous[name] - reference.decays[name]
                branch_seen["decay"] += (
                    internal[name] == decayed
                    and output[name] == 0
                    and (decayed != min(max(previous[name], -10), 10) or threshold < 0)
                )
    assert branch_seen["fire"] > 0
    assert branch_seen["decay"] > 0


def test_exact_float32_close_to_float64_reference() -> None:
    rng = np.random.default_rng(7)
    circuit64 = TWC(dtype=torch.float64, seed=7)
    _randomise(circuit64, rng)
    circuit32 = TWC.from_parameters(circuit64.parameters_json(), dtype=torch.float32)
    reference = _reference_for(
        TWC.from_parameters(circuit32.parameters_json(), dtype=torch.float64)
    )
    obs = _random_observations(rng, 200)
    actions32, _ = circuit32.unroll(torch.from_numpy(obs)[None].float())
    got = actions32[0, :, 0].detach().double().numpy()
    expected = []
    for t in range(obs.shape[0]):
        internal, _ = reference.step(
            reference_mountain_car_sensors(*obs[t].astype(np.float32).astype(np.float64))
        )
        expected.append(reference_mountain_car_action(internal["FWD"], internal["REV"]))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_straight_through_forward_equals_exact_and_has_gradients() -> None:
    rng = np.random.default_rng(3)
    exact = TWC(dtype=torch.float64, seed=3)
    _randomise(exact, rng)
    st = TWC.from_parameters(
        exact.parameters_json(), dtype=torch.float64, dynamics="straight_through"
    )
    exact.load_state_dict(st.state_dict())
    obs = torch.from_numpy(np.stack([_random_observations(rng, 60) for _ in range(4)]))
    a_exact, s_exact = exact.unroll(obs)
    a_st, s_st = st.unroll(obs)
    assert torch.equal(a_exact, a_st)
    assert torch.equal(s_exact.internal, s_st.internal)
    assert torch.equal(s_exact.output, s_st.output)
    a_st.sum().backward()
    for name, parameter in st.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_soft_dynamics_matches_its_formula() -> None:
    circuit = TWC(dtype=torch.float64, dynamics="soft")
    cfg = circuit.soft
    internal = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64)
    current = torch.tensor([[0.0, 0.5, 3.0]], dtype=torch.float64)
    threshold = torch.tensor([1.0, 0.2, 1.5], dtype=torch.float64)
    decay = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    new_internal, new_output = circuit._update(internal, current, threshold, decay)
    for i in range(3):
        e, c, t, d = (float(x) for x in (internal[0, i], current[0, i], threshold[i], decay[i]))
        s = min(max(e + c, -10.0), 10.0)
        out = s - t if s - t > 0 else cfg.leaky_slope * (s - t)
        fire = 1 / (1 + np.exp(-cfg.steepness_fire * (s - t)))
        gate = 1 / (1 + np.exp(-cfg.steepness_input * (abs(s - e) - cfg.input_threshold)))
        expected = fire * out + (1 - fire) * (gate * s + (1 - gate) * (e - d))
        assert new_output[0, i].item() == pytest.approx(out, abs=1e-14)
        assert new_internal[0, i].item() == pytest.approx(expected, abs=1e-14)


@pytest.mark.parametrize(
    ("internal", "current", "threshold", "decay", "expected"),
    [
        (0.5, 1.0, 1.0, 0.1, (0.5, 0.5)),  # fire: S = 1.5 > 1, reset by subtraction
        (0.3, 0.0, 1.0, 0.1, (0.3 - 0.1, 0.0)),  # decay: S == E exactly
        (0.2, 0.5, 1.0, 0.1, (0.7, 0.0)),  # integrate: no leak
        (5.0, 20.0, 12.0, 0.1, (10.0, 0.0)),  # clamp at +10, below threshold
        (5.0, 20.0, -1.0, 0.1, (11.0, 11.0)),  # clamp then fire: E exceeds 10
        (-10.0, -3.0, 1.0, 0.25, (-10.25, 0.0)),  # clamp maps E + I back onto E -> decay
        (-10.25, -3.0, 1.0, 0.25, (-10.0, 0.0)),  # next step: S = -10 != E -> integrate
    ],
)
def test_single_neuron_branches_by_hand(
    internal: float, current: float, threshold: float, decay: float, expected: tuple
) -> None:
    assert reference_neuron_update(internal, current, threshold, decay) == expected
    circuit = TWC(dtype=torch.float64)
    new_internal, new_output = circuit._update(
        torch.tensor([[internal]], dtype=torch.float64),
        torch.tensor([[current]], dtype=torch.float64),
        torch.tensor([threshold], dtype=torch.float64),
        torch.tensor([decay], dtype=torch.float64),
    )
    assert (new_internal.item(), new_output.item()) == expected


def _gap_junction_circuit(weight: float, decay: float) -> FiuriCircuit:
    wiring = Wiring(
        "gj test",
        ("P", "Q", "FWD", "REV"),
        ("sensory", "sensory", "motor", "motor"),
        (Synapse("P", "FWD", "GJ"), Synapse("Q", "REV", "EX")),
    )
    encoder = ObservationEncoder([(0, BinaryInterface(0.0, (-1.0, 1.0)), "P", "Q")], ["P", "Q"])
    circuit = FiuriCircuit(wiring, encoder, DifferenceDecoder("FWD", "REV"), dtype=torch.float64)
    circuit.requires_grad_(False)
    circuit.load_parameters_json(
        {
            "neurons": {n: {"threshold": 100.0, "decay": decay} for n in ("FWD", "REV")},
            "synapses": [
                {"from": "P", "to": "FWD", "type": "GJ", "weight": weight},
                {"from": "Q", "to": "REV", "type": "EX", "weight": weight},
            ],
        }
    )
    return circuit


def test_gap_junction_sign_trace_by_hand() -> None:
    circuit = _gap_junction_circuit(weight=0.5, decay=0.25)
    effective = circuit.effective_parameters()
    weight = effective.weight[0].item()
    decay = effective.decay[0].item()
    fwd = circuit.wiring.neuron_names.index("FWD")
    # x = 0.6: P = 20 * 0.6 - 10 = 2 -> GJ current w * 2 * sgn(2 - E_FWD)
    p = 20.0 * (0.6 / 1.0) + -10.0
    expected = []
    e = 0.0
    for _ in range(5):
        sign = 1.0 if p > e else (-1.0 if p < e else 0.0)
        current = weight * p * sign
        e = e - decay if current == 0.0 else e + current
        expected.append(e)
    state = None
    got = []
    for _ in range(5):
        _, state = circuit.step(torch.tensor([[0.6]], dtype=torch.float64), state)
        got.append(state.internal[0, fwd].item())
    assert got == expected
    assert 0.0 in [weight * p * (1.0 if p > x else -1.0 if p < x else 0.0) for x in [0.0, *got]]
    # negative presynaptic output (x = -0.5 -> P = -10) with E = 0: sgn(-10 - 0) = -1 -> +5 w/0.5
    _, state = circuit.step(torch.tensor([[-0.5]], dtype=torch.float64), None)
    assert state.internal[0, fwd].item() == weight * -10.0 * -1.0


def test_bad_dynamics_and_delay_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="dynamics"):
        TWC(dynamics="fast")
    with pytest.raises(ConfigError, match="delay"):
        TWC(delay=2)


def test_delay_one_action_ignores_current_observation() -> None:
    circuit = TWC(dtype=torch.float64, seed=5)
    obs_a = torch.tensor([[-0.5, 0.0], [-0.5, 0.0]], dtype=torch.float64)
    _, state = circuit.step(obs_a)
    different = torch.tensor([[-0.5, 0.0], [0.5, 0.06]], dtype=torch.float64)
    action, _ = circuit.step(different, state)
    assert action[0].item() == action[1].item()
    fast = TWC(dtype=torch.float64, seed=5, delay=0)
    action0, _ = fast.step(torch.tensor([[-1.0, -0.07], [0.5, 0.07]], dtype=torch.float64))
    slow_action, _ = circuit.step(torch.tensor([[-1.0, -0.07], [0.5, 0.07]], dtype=torch.float64))
    assert slow_action[0].item() == slow_action[1].item()
    assert fast.delay == 0
    assert action0.shape == (2, 1)
