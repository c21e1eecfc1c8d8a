"""Importing and exporting the original FIURI engine's (Ariel) XML models."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnlab import ConfigError
from rnnlab.cli import main as rnnlab_main
from rnnlab.twc import TWC, read_ariel_xml, twc_wiring, twc_wiring_differences, write_ariel_xml
from rnnlab.twc.cli import register
from rnnlab.twc.reference import (
    ReferenceCircuit,
    reference_mountain_car_action,
    reference_mountain_car_sensors,
)

KNOWN = Path(__file__).resolve().parent / "data" / "tw_fiuri_known.xml"

# The values written into tests/twc/data/tw_fiuri_known.xml, in file order.
KNOWN_NEURONS = {
    "PVD": (0.05, 0.5),
    "ALM": (0.06, 0.6),
    "PLM": (0.07, 0.7),
    "AVM": (0.08, 0.8),
    "AVA": (0.25, 0.11),
    "AVD": (-0.35, 0.12),
    "PVC": (0.45, 0.13),
    "AVB": (0.55, 0.14),
    "DVA": (-0.15, 0.15),
    "FWD": (0.75, 0.16),
    "REV": (0.85, 0.17),
}
KNOWN_SYNAPSES = [
    ("PVD", "AVA", "IN", 0.31),
    ("PLM", "AVA", "IN", 0.351),
    ("PVC", "AVA", "EX", 0.392),
    ("AVB", "AVA", "IN", 0.433),
    ("AVD", "AVA", "EX", 0.474),
    ("PLM", "AVD", "IN", 0.515),
    ("PVC", "AVD", "EX", 0.556),
    ("AVA", "AVD", "IN", 0.597),
    ("AVB", "AVD", "IN", 0.638),
    ("AVM", "AVD", "GJ", 0.679),
    ("ALM", "AVD", "IN", 0.72),
    ("PVD", "PVC", "IN", 0.761),
    ("PLM", "PVC", "GJ", 0.802),
    ("AVA", "PVC", "IN", 0.843),
    ("AVD", "PVC", "EX", 0.884),
    ("AVM", "PVC", "IN", 0.925),
    ("ALM", "PVC", "IN", 0.966),
    ("DVA", "PVC", "IN", 1.007),
    ("PVC", "AVB", "EX", 1.048),
    ("AVA", "AVB", "IN", 1.089),
    ("AVD", "AVB", "EX", 1.13),
    ("PVD", "DVA", "IN", 1.171),
    ("PLM", "DVA", "IN", 1.212),
    ("PVC", "DVA", "EX", 1.253),
    ("AVB", "FWD", "EX", 1.294),
    ("AVA", "REV", "EX", 1.335),
]
SENSORY = {"PVD", "PLM", "AVM", "ALM"}
HIDDEN = {"DVA", "AVD", "PVC", "AVA", "AVB"}
MOTOR = {"REV", "FWD"}


def _block(source: str, target: str) -> str:
    if source in SENSORY and target in HIDDEN:
        return "in->hid"
    if source in HIDDEN and target in HIDDEN:
        return "hid->hid"
    assert source in HIDDEN
    assert target in MOTOR
    return "hid->out"


def _twc_main(argv: list[str]) -> int:
    """``rnnlab`` with only this system registered (as in test_cli_and_example)."""
    parser = argparse.ArgumentParser(prog="rnnlab")
    register(parser.add_subparsers(dest="system"))
    args = parser.parse_args(argv)
    return int(args.handler(args))


def _edited(tmp_path: Path, old: str, new: str, name: str = "edited.xml") -> Path:
    text = KNOWN.read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new, 1))
    return path


def test_import_of_the_known_tw_file_gives_its_values_and_the_tw_counts() -> None:
    obj = read_ariel_xml(KNOWN)
    assert obj["name"] == "TW_known_values"
    assert {n: (v["threshold"], v["decay"]) for n, v in obj["neurons"].items()} == KNOWN_NEURONS
    assert list(obj["neurons"]) == list(KNOWN_NEURONS)  # file order
    got = [(s["from"], s["to"], s["type"], s["weight"]) for s in obj["synapses"]]
    assert got == KNOWN_SYNAPSES
    # §2.2 counts: 15 IN (9 in->hid, 6 hid->hid), 9 EX (7 hid->hid, 2 hid->out), 2 GJ (in->hid)
    counts: dict[tuple[str, str], int] = {}
    for source, target, kind, _ in got:
        key = (kind, _block(source, target))
        counts[key] = counts.get(key, 0) + 1
    assert counts == {
        ("IN", "in->hid"): 9,
        ("IN", "hid->hid"): 6,
        ("EX", "hid->hid"): 7,
        ("EX", "hid->out"): 2,
        ("GJ", "in->hid"): 2,
    }
    assert obj["roles"] == {n: "sensory" for n in SENSORY} | {n: "inter" for n in HIDDEN} | {
        n: "motor" for n in MOTOR
    }
    assert [(i["name"], i["positive"], i["negative"], i["valley"]) for i in obj["interfaces"]] == [
        ("IN1", "PLM", "AVM", -0.3),
        ("IN2", "ALM", "PVD", 0.0),
        ("OUT1", "FWD", "REV", 0.0),
    ]
    assert obj["ariel"]["gap_junction_types"] == {"AVM->AVD": "AGJ", "PLM->PVC": "AGJ"}
    assert twc_wiring_differences(obj) == []


def test_write_then_read_is_identical_and_deterministic(tmp_path: Path) -> None:
    obj = read_ariel_xml(KNOWN)
    first = write_ariel_xml(obj, tmp_path / "first.xml")
    assert read_ariel_xml(first) == obj
    second = write_ariel_xml(read_ariel_xml(first), tmp_path / "second.xml")
    assert second.read_bytes() == first.read_bytes()
    # atomic writes leave no temporary files behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.xml", "second.xml"]


def test_circuit_parameters_export_and_import_round_trip(tmp_path: Path) -> None:
    circuit = TWC(dtype=torch.float64, seed=5)
    params = circuit.parameters_json()
    path = write_ariel_xml(params, tmp_path / "circuit.xml")
    text = path.read_text()
    assert text.count("<neuron ") == 11
    assert text.count("<connection ") == 26
    assert text.count('connType="ConnectionType.AGJ"') == 2
    assert 'name="IN1"' in text  # the TWC's interfaces are added
    assert 'name="OUT1"' in text
    back = read_ariel_xml(path)
    for name in SENSORY:
        assert back["neurons"][name] == {"threshold": 0.0, "decay": 0.0}
    for name, values in params["neurons"].items():
        assert back["neurons"][name] == values
    assert back["synapses"] == params["synapses"]
    again = TWC.from_parameters(back, dtype=torch.float64).parameters_json()
    for name, values in params["neurons"].items():
        assert again["neurons"][name]["threshold"] == values["threshold"]
        assert again["neurons"][name]["decay"] == pytest.approx(values["decay"], rel=1e-12)
    for mine, theirs in zip(again["synapses"], params["synapses"], strict=True):
        assert mine["weight"] == pytest.approx(theirs["weight"], rel=1e-12)


def test_imported_circuit_exact_dynamics_equal_the_numpy_reference() -> None:
    obj = read_ariel_xml(KNOWN)
    circuit = TWC.from_parameters(obj, dynamics="exact", dtype=torch.float64)
    # The reference is built from the imported values directly (not from the circuit), with the
    # synapses summed in the shipped wiring's order, as the circuit does. The circuit stores d and
    # w as softplus(raw), so its effective values differ from the file's in the last bit
    # (0.14 -> 0.14000000000000007): states agree to 1e-12, not bit for bit.
    weights = {(s["from"], s["to"], s["type"]): s["weight"] for s in obj["synapses"]}
    order = [(s.source, s.target, s.type) for s in twc_wiring().synapses]
    reference = ReferenceCircuit(
        list(obj["roles"].items()),
        [(*key, weights[key]) for key in order],
        {n: v["threshold"] for n, v in obj["neurons"].items()},
        {n: v["decay"] for n, v in obj["neurons"].items()},
    )
    rng = np.random.default_rng(11)
    steps = 80
    obs = np.stack([rng.uniform(-1.2, 0.6, steps), rng.uniform(-0.07, 0.07, steps)], axis=1)
    with torch.no_grad():
        actions, _, trace = circuit.unroll(torch.from_numpy(obs)[None], return_states=True)
    names = circuit.wiring.neuron_names
    fired = 0
    for t in range(steps):
        internal, output = reference.step(reference_mountain_car_sensors(*obs[t]))
        expected_action = reference_mountain_car_action(internal["FWD"], internal["REV"])
        assert actions[0, t, 0].item() == pytest.approx(expected_action, rel=0, abs=1e-12)
        np.testing.assert_allclose(
            trace.internal[0, t].numpy(), [internal[n] for n in names], rtol=0, atol=1e-12
        )
        np.testing.assert_allclose(
            trace.output[0, t].numpy(), [output[n] for n in names], rtol=0, atol=1e-12
        )
        fired += sum(output[n] > 0 for n in HIDDEN | MOTOR)
    assert fired > 0
    assert float(actions.abs().max()) > 0.0


def test_loader_quirk_option_gives_zero_thresholds_and_decays(tmp_path: Path) -> None:
    quirk = read_ariel_xml(KNOWN, ariel_loader_quirk=True)
    assert all(v == {"threshold": 0.0, "decay": 0.0} for v in quirk["neurons"].values())
    assert [s["weight"] for s in quirk["synapses"]] == [w for *_, w in KNOWN_SYNAPSES]
    circuit = TWC.from_parameters(quirk, dynamics="exact", dtype=torch.float64)
    threshold, decay, _ = circuit.effective_parameters()
    assert threshold.tolist() == [0.0] * 7
    assert decay.tolist() == [0.0] * 7
    circuit.unroll(torch.zeros(1, 3, 2, dtype=torch.float64))  # runs with d = 0
    # Precisely: T comes from `internalstate`, and the weight from `testWeight`.
    path = _edited(
        tmp_path,
        '<neuron name="AVA" th="0.25" df="0.11" internalstate="0.0"',
        '<neuron name="AVA" th="0.25" df="0.11" internalstate="0.4"',
    )
    path.write_text(
        path.read_text().replace(
            'connWeight="0.31" testWeight="0.31"', 'connWeight="0.31" testWeight="0.9"'
        )
    )
    assert read_ariel_xml(path, ariel_loader_quirk=True)["neurons"]["AVA"]["threshold"] == 0.4
    assert read_ariel_xml(path, ariel_loader_quirk=True)["synapses"][0]["weight"] == 0.9
    fixed = read_ariel_xml(path)
    assert fixed["neurons"]["AVA"] == {"threshold": 0.25, "decay": 0.11}
    assert fixed["synapses"][0]["weight"] == 0.31
    assert fixed["ariel"]["initial_states"]["AVA"] == {"internal": 0.4, "output": 0.0}


def test_symmetric_gap_junction_maps_to_gj_and_is_written_back(tmp_path: Path) -> None:
    path = _edited(
        tmp_path,
        'connType="ConnectionType.AGJ" connSource="PLM"',
        'connType="ConnectionType.SGJ" connSource="PLM"',
    )
    obj = read_ariel_xml(path)
    assert ("PLM", "PVC", "GJ") in [(s["from"], s["to"], s["type"]) for s in obj["synapses"]]
    assert obj["ariel"]["gap_junction_types"]["PLM->PVC"] == "SGJ"
    out = write_ariel_xml(obj, tmp_path / "out.xml")
    assert out.read_text().count("ConnectionType.SGJ") == 1
    assert read_ariel_xml(out) == obj
    # the prefix is optional on input
    bare = _edited(tmp_path, '"ConnectionType.ChemIn"', '"ChemIn"', "bare.xml")
    assert read_ariel_xml(bare)["synapses"] == read_ariel_xml(KNOWN)["synapses"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            '"ConnectionType.ChemIn" connSource="PVD" connTarget="AVA"',
            '"ConnectionType.ChemFoo" connSource="PVD" connTarget="AVA"',
            ["<connection>", "connType='ConnectionType.ChemFoo'", "ConnectionType.SGJ", "allowed"],
        ),
        (
            '<neuron name="PVC" th="0.45" ',
            '<neuron name="PVC" ',
            ["<neuron name='PVC'>", "no 'th' attribute"],
        ),
        (
            '<neuron name="AVB" th="0.55" df="0.14"',
            '<neuron name="AVB" gleak="1.0" vleak="-70.0" cm="0.05"',
            ["'AVB'", "integrate-and-fire", "only FIURI models"],
        ),
        (
            'connTarget="REV" connWeight="1.335"',
            'connTarget="RVE" connWeight="1.335"',
            ["connTarget='RVE'", "names no <neuron>"],
        ),
        ('df="0.17"', 'df="fast"', ["df='fast'", "not a finite number"]),
        (
            'name="IN1" valleyVal="-0.3"',
            'name="IN1" valleyVal="-0.2"',
            ["interface IN1: valley -0.2 (the TWC uses -0.3)"],
        ),
        ('type="OUT"', 'type="MOTOR"', ["type='MOTOR'", "allowed: ['IN', 'OUT']"]),
        ('connWeight="0.31"', 'connWeight="nan"', ["connWeight='nan'", "not a finite number"]),
        ("</Model>", "</Modell>", ["not well-formed XML", "mismatched tag"]),
        (
            'connType="ConnectionType.ChemIn" connSource="PVD" connTarget="AVA"',
            'connType="ConnectionType.ChemEx" connSource="PVD" connTarget="AVA"',
            ["shipped TWC wiring", "PVD->AVA IN", "PVD->AVA EX", "--no-check-twc"],
        ),
    ],
)
def test_bad_files_raise_config_errors_that_say_what_is_wrong(
    tmp_path: Path, old: str, new: str, expected: list[str]
) -> None:
    path = _edited(tmp_path, old, new, "bad_model.xml")
    with pytest.raises(ConfigError) as error:
        read_ariel_xml(path)
    message = str(error.value)
    assert "bad_model.xml" in message
    for part in expected:
        assert part in message


def test_changed_tw_wiring_imports_with_the_check_off(tmp_path: Path) -> None:
    path = _edited(
        tmp_path,
        'connType="ConnectionType.ChemIn" connSource="PVD" connTarget="AVA"',
        'connType="ConnectionType.ChemEx" connSource="PVD" connTarget="AVA"',
    )
    obj = read_ariel_xml(path, check_twc=False)
    assert twc_wiring_differences(obj) == [
        "synapses missing from the file: ['PVD->AVA IN']",
        "synapses not in the TWC wiring: ['PVD->AVA EX']",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '<?xml version="1.0"?>\n<!DOCTYPE Model [\n <!ENTITY a "aaaaaaaaaa">\n'
            ' <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">\n]>\n<Model name="&b;"/>\n',
            ["DOCTYPE", "not allowed"],
        ),
        (
            '<?xml version="1.0"?>\n<!DOCTYPE Model SYSTEM "http://example.invalid/x.dtd">\n'
            "<Model/>\n",
            ["DOCTYPE", "not allowed"],
        ),
        ('<Model name="&x;"/>', ["not well-formed XML", "undefined entity"]),
        ("neuron PVD th 0.1 df 0.2\n", ["not well-formed XML"]),
        ("", ["not well-formed XML"]),
        ("<Network/>", ["root element must be <Model>"]),
        ('<Model name="m"/>', ["has no <NeuralNetwork> element"]),
    ],
)
def test_unsafe_or_non_xml_files_are_refused(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = tmp_path / "model.xml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        read_ariel_xml(path)
    message = str(error.value)
    assert "model.xml" in message
    for part in expected:
        assert part in message


def test_missing_file_or_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"absent\.xml: cannot read the Ariel XML file"):
        read_ariel_xml(tmp_path / "absent.xml")
    with pytest.raises(ConfigError, match="cannot read the Ariel XML file"):
        read_ariel_xml(tmp_path)


def test_other_circuits_round_trip_unchecked(tmp_path: Path) -> None:
    obj = {
        "name": "three",
        "neurons": {"S": {"threshold": 0.0, "decay": 0.0}, "H": {"threshold": -0.5, "decay": 2.5}},
        "synapses": [
            {"from": "S", "to": "H", "type": "GJ", "weight": 0.1 + 0.2},
            {"from": "H", "to": "M", "type": "EX", "weight": 1e-300},
            {"from": "H", "to": "H", "type": "IN", "weight": 3.0},
        ],
        "interfaces": [{"name": "IN1", "type": "IN", "positive": "S", "negative": "S"}],
    }
    path = write_ariel_xml(obj, tmp_path / "three.xml")
    back = read_ariel_xml(path)
    assert list(back["neurons"]) == ["M", "S", "H"]  # M has no parameters: written first, 0/0
    assert back["neurons"]["M"] == {"threshold": 0.0, "decay": 0.0}
    assert back["neurons"]["H"] == obj["neurons"]["H"]
    assert back["synapses"] == obj["synapses"]
    assert back["roles"] == {"M": "inter", "S": "sensory", "H": "inter"}
    assert back["ariel"]["gap_junction_types"] == {"S->H": "AGJ"}
    assert read_ariel_xml(write_ariel_xml(back, tmp_path / "again.xml")) == back


def test_write_rejects_bad_objects(tmp_path: Path) -> None:
    obj = read_ariel_xml(KNOWN)
    obj["synapses"][3]["type"] = "XX"
    with pytest.raises(ConfigError, match=r"synapses\[3\]: type 'XX'; allowed"):
        write_ariel_xml(obj, tmp_path / "x.xml")
    obj = read_ariel_xml(KNOWN)
    obj["neurons"]["AVA"]["threshold"] = float("inf")
    with pytest.raises(ConfigError, match=r"neurons\['AVA'\].threshold"):
        write_ariel_xml(obj, tmp_path / "x.xml")
    with pytest.raises(ConfigError, match="expected"):
        write_ariel_xml({"neurons": []}, tmp_path / "x.xml")
    assert not (tmp_path / "x.xml").exists()


def test_cli_import_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _twc_main(["twc", "import-xml", "--help"])
    assert exit_info.value.code == 0
    assert "rnnlab twc import-xml TWFiuriBaseFIU.xml --out params.json" in capsys.readouterr().out
    params = tmp_path / "params.json"
    assert _twc_main(["twc", "import-xml", str(KNOWN), "--out", str(params)]) == 0
    assert "26 synapses (9 EX, 15 IN, 2 GJ)" in capsys.readouterr().out
    assert json.loads(params.read_text()) == read_ariel_xml(KNOWN)
    assert _twc_main(["twc", "import-xml", str(KNOWN), "--ariel-loader-quirk"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["neurons"]["AVA"] == {"threshold": 0.0, "decay": 0.0}
    model = tmp_path / "model.xml"
    assert _twc_main(["twc", "export-xml", str(params), "--out", str(model)]) == 0
    assert read_ariel_xml(model) == read_ariel_xml(KNOWN)
    # a checkpoint-style JSON ({"circuit": ..., "parameters": ...}) exports too
    checkpoint = tmp_path / "best.json"
    circuit = TWC(seed=2)
    checkpoint.write_text(
        json.dumps({"circuit": circuit.config(), "parameters": circuit.parameters_json()})
    )
    assert _twc_main(["twc", "export-xml", str(checkpoint), "--out", str(model)]) == 0
    assert read_ariel_xml(model)["synapses"] == circuit.parameters_json()["synapses"]
    # through the full rnnlab entry point, errors are one line and exit code 2
    capsys.readouterr()
    bad = tmp_path / "bad.xml"
    bad.write_text("not xml")
    assert rnnlab_main(["twc", "import-xml", str(bad)]) == 2
    assert "bad.xml:1: not well-formed XML" in capsys.readouterr().err


def test_xml_models_load_as_policies_for_evaluation() -> None:
    from rnnlab.twc.td3 import load_policy

    policy = load_policy(KNOWN)
    expected = TWC.from_parameters(read_ariel_xml(KNOWN), dynamics="exact")
    assert policy.dynamics == "exact"
    assert torch.equal(policy.flat_raw(), expected.flat_raw())
    assert load_policy(KNOWN, dynamics="soft").dynamics == "soft"
