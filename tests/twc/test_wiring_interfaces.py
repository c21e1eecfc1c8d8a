"""The shipped TWC wiring, the MountainCar encoder/decoder anchor points, parameter JSON."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from rnnlab import ConfigError
from rnnlab.twc.circuit import TWC
from rnnlab.twc.interfaces import BinaryInterface, mountain_car_decoder, mountain_car_encoder
from rnnlab.twc.reference import reference_binary_encode
from rnnlab.twc.wiring import Wiring, twc_wiring


def test_twc_wiring_has_the_documented_synapses() -> None:
    wiring = twc_wiring()
    assert len(wiring.neuron_names) == 11
    assert wiring.sensory_names == ["PVD", "PLM", "AVM", "ALM"]
    assert wiring.motor_names == ["REV", "FWD"]
    assert len(wiring.synapses) == 26
    sensory = set(wiring.sensory_names)
    motor = set(wiring.motor_names)

    def block(s: object) -> str:
        source, target = s.source, s.target  # type: ignore[attr-defined]
        if source in sensory:
            return "in->hid"
        return "hid->out" if target in motor else "hid->hid"

    counts = Counter((s.type, block(s)) for s in wiring.synapses)
    assert counts == {
        ("IN", "in->hid"): 9,
        ("IN", "hid->hid"): 6,
        ("EX", "hid->hid"): 7,
        ("EX", "hid->out"): 2,
        ("GJ", "in->hid"): 2,
    }
    fan_in = Counter(s.target for s in wiring.synapses)
    assert fan_in == {"DVA": 3, "AVD": 6, "PVC": 7, "AVA": 5, "AVB": 3, "REV": 1, "FWD": 1}
    assert ("DVA", "PVC", "IN") in {(s.source, s.target, s.type) for s in wiring.synapses}
    assert all(s.source != s.target for s in wiring.synapses)
    circuit = TWC()
    assert sum(p.numel() for p in circuit.parameters()) == 40


def test_wiring_validation_names_the_problem() -> None:
    obj = twc_wiring().to_json()
    obj["synapses"].append({"from": "PVD", "to": "FWD", "type": "XX"})
    with pytest.raises(ConfigError, match="type"):
        Wiring.from_json(obj)
    obj = twc_wiring().to_json()
    obj["neurons"][4]["role"] = "hidden"
    with pytest.raises(ConfigError, match="role"):
        Wiring.from_json(obj)


@pytest.mark.parametrize(
    ("position", "plm", "avm"),
    [
        (0.6, 10.0, -10.0),
        (0.0, -10.0, -10.0),
        (-0.3, -20.0, -10.0),  # x >= valley: anchored at 0, so PLM reaches -20
        (-1.2, -10.0, 10.0),
        (-0.6, -10.0, 0.0),
    ],
)
def test_mountain_car_position_anchor_points(position: float, plm: float, avm: float) -> None:
    encoder = mountain_car_encoder(["PVD", "PLM", "AVM", "ALM"])
    values = encoder(torch.tensor([[position, 0.0]], dtype=torch.float64))[0].tolist()
    assert values[1] == pytest.approx(plm, abs=1e-12)
    assert values[2] == pytest.approx(avm, abs=1e-12)


@pytest.mark.parametrize(
    ("velocity", "alm", "pvd"),
    [(0.07, 4.0, -10.0), (0.0, -10.0, -10.0), (-0.07, -10.0, 4.0), (0.05, 0.0, -10.0)],
)
def test_mountain_car_velocity_anchor_points(velocity: float, alm: float, pvd: float) -> None:
    encoder = mountain_car_encoder(["PVD", "PLM", "AVM", "ALM"])
    values = encoder(torch.tensor([[-0.5, velocity]], dtype=torch.float64))[0].tolist()
    assert values[3] == pytest.approx(alm, abs=1e-12)
    assert values[0] == pytest.approx(pvd, abs=1e-12)


def test_encoder_equals_reference_formula_and_improved_is_clamped() -> None:
    xs = torch.linspace(-1.5, 0.9, 97, dtype=torch.float64)
    for improved in (False, True):
        interface = BinaryInterface(-0.3, (-1.2, 0.6), improved)
        positive, negative = interface.encode(xs)
        for x, p, n in zip(xs.tolist(), positive.tolist(), negative.tolist(), strict=False):
            assert (p, n) == reference_binary_encode(x, -0.3, -1.2, 0.6, improved)
    improved = BinaryInterface(-0.3, (-1.2, 0.6), True)
    positive, negative = improved.encode(torch.tensor([-0.3, 0.6, -1.2, 5.0], dtype=torch.float64))
    assert positive.tolist() == [-10.0, 10.0, -10.0, 10.0]
    assert negative.tolist() == [-10.0, -10.0, 10.0, -10.0]
    with pytest.raises(ConfigError, match="valley"):
        BinaryInterface(1.0, (-1.0, 0.5))


def test_decoder_anchor_points() -> None:
    decoder = mountain_car_decoder()
    fwd = torch.tensor([0.0, 10.0, -15.0, 0.0, 30.0], dtype=torch.float64)
    rev = torch.tensor([0.0, -10.0, -15.0, 5.0, -30.0], dtype=torch.float64)
    assert decoder(fwd, rev).tolist() == [0.0, 1.0, 0.0, -0.25, 1.0]


def test_parameter_json_round_trip() -> None:
    circuit = TWC(seed=11, dtype=torch.float64)
    obj = json.loads(json.dumps(circuit.parameters_json()))
    assert set(obj["neurons"]) == {"DVA", "AVD", "PVC", "AVA", "AVB", "REV", "FWD"}
    assert len(obj["synapses"]) == 26
    again = TWC.from_parameters(obj, dynamics="straight_through", dtype=torch.float64)
    assert again.dynamics == "straight_through"
    for a, b in zip(circuit.effective_parameters(), again.effective_parameters(), strict=False):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    obj["synapses"] = obj["synapses"][:-1]
    with pytest.raises(ConfigError, match="missing"):
        TWC.from_parameters(obj)
