"""params.json: both templates load, defaults are listed, bad input names the field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rnnlab import ConfigError
from rnnlab.microcircuit.params import TEMPLATE, load_params, params_from_dict

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "microcircuit"


def test_seed_era_template_loads_with_documented_defaults():
    params = load_params(EXAMPLES / "seed_template_params.json")
    assert params["tauHP"] == params["tauLO"] == 0.01  # tausyn feeds both filters
    assert params["settling_time"] == 100.0  # missing in the seed template
    assert params["noise_type"] == "hold_white_noise"
    assert params["noise_scale"] == [0.1]  # extra entry ignored
    assert any(note.startswith("settling_time: missing") for note in params.notes)
    assert any(note.startswith("copy_teacher_weights: missing") for note in params.notes)


@pytest.mark.parametrize("path", sorted(EXAMPLES.rglob("params.json")), ids=lambda p: p.parent.name)
def test_shipped_configs_load(path):
    params = load_params(path)
    assert params.n_hidden >= 1


def test_old_model_names_map_to_pal():
    for name in ("LDRL", "phased_noise"):
        params = params_from_dict({**TEMPLATE, "model_type": name})
        assert params["model_type"] == "PAL"
        assert any("old name" in note for note in params.notes)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"eta_fw": [1.0]}, "eta_fw"),  # wrong length (2 layers)
        ({"eta_bw": [1.0, 2.0]}, "eta_bw"),
        ({"layers": [1, 1]}, "layers"),
        ({"layers": [1, "a", 1]}, "layers[1]"),
        ({"activation": "sigmoid"}, "activation[0]"),
        ({"model_type": "DFA"}, "model_type"),
        ({"noise_type": "pink"}, "noise_type"),
        ({"dt": "0.01"}, "dt"),
        ({"dt": -1}, "dt"),
        ({"Tpres": 0.015}, "Tpres"),
        ({"init_in_SPS": 1}, "init_in_SPS"),
        ({"init_WPP_range": [1, -1]}, "init_WPP_range"),
        ({"random_seed": []}, "random_seed"),
        ({"eta_PI": [-1.0]}, "eta_PI[0]"),
        ({"learning_rate": 1}, "learning_rate"),
    ],
)
def test_bad_fields_are_named(change, field):
    with pytest.raises(ConfigError, match="^" + re.escape(field) + ":"):
        params_from_dict({**TEMPLATE, **change})


def test_comments_are_ignored_and_bad_json_is_reported(tmp_path):
    path = tmp_path / "params.json"
    path.write_text(json.dumps({**TEMPLATE, "_comment2": "x"}))
    assert load_params(path)["layers"] == [1, 1, 1]
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_params(path)
