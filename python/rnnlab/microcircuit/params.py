"""``params.json`` for the microcircuit runner: load, validate, fill documented defaults.

Both the seed-era template (``tausyn``, ``Tbw``, ``phased_noise``/``LDRL``/``DTPDRL``, no
``settling_time``) and the later template (``tauHP``/``tauLO``/``tauxi``, ``noise_type``, teacher
ranges, ``PAL``) load. Missing keys get the defaults of :data:`DEFAULTS` and are listed in
:attr:`MicrocircuitParams.notes` (the runner writes them into ``run.log``). Unknown keys, wrong
types and lists of the wrong length raise :class:`rnnlab.ConfigError` naming the field.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnlab.errors import ConfigError

__all__ = [
    "ACTIVATIONS",
    "DEFAULTS",
    "MODEL_TYPES",
    "NOISE_MODES",
    "NOISE_TYPES",
    "MicrocircuitParams",
    "load_params",
    "params_from_dict",
]

ACTIVATIONS = ("linear", "relu", "soft_relu", "logistic", "tanh", "hard_sigmoid")
MODEL_TYPES = ("BP", "FA", "PAL", "DTPDRL")
MODEL_ALIASES = {"LDRL": "PAL", "phased_noise": "PAL", "noise_model": "PAL"}
NOISE_TYPES = ("OU", "OU_euler", "hold_white_noise")
NOISE_MODES = ("const", "uP", "uP_breve", "vapi")
OU_VARIANCES = ("sigma^2/2", "sigma^2")
CONNECTION_MODES = ("layered", "skip")

#: Every recording flag of the seed-era and later templates. All are accepted; the runner
#: records the weights (WPP, WIP, BPP, BPI), MSE, the output and target when the flag is on
#: and always records the angle metrics (see docs/microcircuit.md).
RECORD_FLAGS = (
    "rec_MSE",
    "rec_error",
    "rec_input",
    "rec_target",
    "rec_WPP",
    "rec_WIP",
    "rec_BPP",
    "rec_BPI",
    "rec_dWPP",
    "rec_dWIP",
    "rec_dBPP",
    "rec_dBPI",
    "rec_uP",
    "rec_uP_breve",
    "rec_rP_breve",
    "rec_rP_breve_HI",
    "rec_uI",
    "rec_uI_breve",
    "rec_rI_breve",
    "rec_vbas",
    "rec_vapi",
    "rec_vapi_noise",
    "rec_noise",
    "rec_epsilon",
    "rec_epsilon_LO",
    "rec_lat_mismatch",
)

#: Documented defaults (the later, "H" template where it has the key; see the docs page).
DEFAULTS: dict[str, Any] = {
    "dt": 0.01,
    "Tpres": 1.0,
    "dtxi": None,  # = dt
    "tauHP": None,  # = tausyn if given (seed era), else 10·dt
    "tauLO": None,  # = tausyn if given (seed era), else 1e4·dt
    "tauxi": None,  # = 10·dt
    "Tbw": None,  # seed-era phase length; None = all hidden layers noisy at once
    "taur": 1.0,
    "dataset_size": 100,
    "epochs": 1,
    "settling_time": 100.0,
    "layers": [1, 1, 1],
    "activation": "logistic",
    "model_type": "FA",
    "bw_connection_mode": "layered",
    "noise_type": "OU",
    "OU_variance": "sigma^2/2",
    "noise_scale": None,  # = [0.01] per hidden layer
    "noise_mode": "const",
    "noise_deg": 30.0,
    "gl": 0.03,
    "gbas": 0.1,
    "gapi": 0.06,
    "gden": 0.1,
    "gnI": 0.06,
    "gntgt": 0.06,
    "eta_fw": None,  # = [0] per layer
    "eta_bw": None,  # = [0] per hidden layer
    "eta_IP": None,  # = [0] per interneuron population
    "eta_PI": None,  # = [0] per hidden layer
    "alpha": None,  # = [0] per hidden layer
    "init_WPP_range": [-1.0, 1.0],
    "init_WIP_range": [-1.0, 1.0],
    "init_BPP_range": [-1.0, 1.0],
    "init_BPI_range": [-1.0, 1.0],
    "init_teacher_WPP_range": None,  # = init_WPP_range
    "init_teacher_WIP_range": None,
    "init_teacher_BPP_range": None,
    "init_teacher_BPI_range": None,
    "random_seed": [123],
    "init_in_SPS": True,
    "inter_low_pass": False,
    "pyr_hi_pass": True,
    "dWPP_low_pass": False,
    "dWPP_r_low_pass": False,
    "dWPP_post_low_pass": False,
    "gate_regularizer": False,
    "varphi_regularizer": False,
    "dWPP_use_activation": True,
    "input_signal": "step",
    "copy_teacher_weights": False,
    "copy_teacher_voltages": False,
    "shuffle": True,
    "rec_per_steps": 100,
    **{
        flag: flag in ("rec_MSE", "rec_WPP", "rec_WIP", "rec_BPP", "rec_BPI")
        for flag in RECORD_FLAGS
    },
}

#: Seed-era keys that are accepted and mapped (or ignored with a note).
LEGACY_KEYS = ("tausyn", "taueps")


@dataclass
class MicrocircuitParams:
    """Validated runner parameters. ``values`` holds every field (defaults filled in)."""

    values: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    source: str = "<dict>"

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def layers(self) -> list[int]:
        return list(self.values["layers"])

    @property
    def n_hidden(self) -> int:
        return len(self.values["layers"]) - 2

    @property
    def n_interneuron_populations(self) -> int:
        return 1 if self.values["bw_connection_mode"] == "skip" else self.n_hidden

    @property
    def seeds(self) -> list[int]:
        return list(self.values["random_seed"])

    def to_json_dict(self) -> dict[str, Any]:
        return dict(self.values)


def _number(name: str, value: Any, *, positive: bool = False, nonneg: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}: must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ConfigError(f"{name}: must be finite, got {value!r}")
    if positive and out <= 0:
        raise ConfigError(f"{name}: must be > 0, got {value!r}")
    if nonneg and out < 0:
        raise ConfigError(f"{name}: must be >= 0, got {value!r}")
    return out


def _integer(name: str, value: Any, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(f"{name}: must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name}: must be >= {minimum}, got {value!r}")
    return int(value)


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}: must be true or false, got {value!r}")
    return value


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name}: must be one of {', '.join(allowed)}; got {value!r}")
    return str(value)


def _number_list(
    name: str, value: Any, length: int, *, allow_extra: bool = False, notes: list[str]
) -> list[float]:
    if not isinstance(value, list):
        raise ConfigError(f"{name}: must be a list of {length} numbers, got {value!r}")
    numbers = [_number(f"{name}[{i}]", v) for i, v in enumerate(value)]
    if len(numbers) < length or (len(numbers) > length and not allow_extra):
        raise ConfigError(f"{name}: must have {length} entries (one per layer), got {len(numbers)}")
    if len(numbers) > length:
        notes.append(
            f"{name}: ignoring {len(numbers) - length} extra entries (uses the first {length})"
        )
    return numbers[:length]


def _range(name: str, value: Any) -> list[float]:
    if not isinstance(value, list) or len(value) != 2:
        raise ConfigError(f"{name}: must be a list [low, high], got {value!r}")
    low, high = _number(f"{name}[0]", value[0]), _number(f"{name}[1]", value[1])
    if high < low:
        raise ConfigError(f"{name}: low must be <= high, got {value!r}")
    return [low, high]


def params_from_dict(raw: dict[str, Any], source: str = "<dict>") -> MicrocircuitParams:
    """Validate a params dictionary (as read from ``params.json``) and fill defaults."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: params must be a JSON object")
    notes: list[str] = []
    known = set(DEFAULTS) | set(LEGACY_KEYS)
    for key in raw:
        if key.startswith("_comment"):
            continue
        if key not in known:
            raise ConfigError(
                f"{key}: unknown params.json field (see docs/microcircuit.md §params)"
            )
    values: dict[str, Any] = {}
    for key, default in DEFAULTS.items():
        if key in raw:
            values[key] = raw[key]
        else:
            values[key] = default
            if not key.startswith("rec_"):
                shown = "(derived, see below)" if default is None else json.dumps(default)
                if key == "Tbw":
                    shown = "none (all hidden layers noisy at once)"
                notes.append(f"{key}: missing, using default {shown}")
    v = values

    # time
    for key in ("dt", "Tpres", "settling_time"):
        v[key] = _number(
            key, v[key], nonneg=key == "settling_time", positive=key != "settling_time"
        )
    dt = v["dt"]
    tausyn = raw.get("tausyn")
    if tausyn is not None:
        tausyn = _number("tausyn", tausyn, positive=True)
    if "taueps" in raw:
        _number("taueps", raw["taueps"], positive=True)
        notes.append("taueps: accepted but unused (the adaptive noise mode is not implemented)")
    for key, fallback in (("tauHP", 10 * dt), ("tauLO", 1e4 * dt)):
        if v[key] is None:
            v[key] = tausyn if tausyn is not None else fallback
            if key not in raw:
                origin = "tausyn" if tausyn is not None else f"{fallback:g} ms"
                notes.append(f"{key}: set from {origin}")
        v[key] = _number(key, v[key], positive=True)
    v["tauxi"] = _number("tauxi", 10 * dt if v["tauxi"] is None else v["tauxi"], positive=True)
    v["dtxi"] = _number("dtxi", dt if v["dtxi"] is None else v["dtxi"], positive=True)
    v["taur"] = _number("taur", v["taur"], nonneg=True)
    for key in ("Tpres", "dtxi", "settling_time"):
        ratio = v[key] / dt
        if abs(ratio - round(ratio)) > 1e-6 * max(1.0, ratio):
            raise ConfigError(f"{key}: must be a whole multiple of dt={dt:g}, got {v[key]:g}")
    if v["Tbw"] is not None:
        v["Tbw"] = _number("Tbw", v["Tbw"], positive=True)
        ratio = v["Tbw"] / dt
        if abs(ratio - round(ratio)) > 1e-6 * max(1.0, ratio):
            raise ConfigError(f"Tbw: must be a whole multiple of dt={dt:g}, got {v['Tbw']:g}")

    # sizes
    layers = v["layers"]
    if not isinstance(layers, list) or len(layers) < 3:
        raise ConfigError(
            f"layers: must be a list of >= 3 sizes (input, hidden..., output), got {layers!r}"
        )
    v["layers"] = [_integer(f"layers[{i}]", n, minimum=1) for i, n in enumerate(layers)]
    n_layers = len(layers) - 1
    n_hidden = n_layers - 1
    v["dataset_size"] = _integer("dataset_size", v["dataset_size"], minimum=1)
    v["epochs"] = _integer("epochs", v["epochs"], minimum=0)
    v["rec_per_steps"] = _integer("rec_per_steps", v["rec_per_steps"], minimum=1)

    act = v["activation"]
    if isinstance(act, str):
        act = [act] * n_layers
    if not isinstance(act, list) or len(act) != n_layers:
        raise ConfigError(
            f"activation: must be a name or a list of {n_layers} names (layers 1..N), "
            f"got {v['activation']!r}"
        )
    v["activation"] = [_choice(f"activation[{i}]", a, ACTIVATIONS) for i, a in enumerate(act)]

    model = v["model_type"]
    if model in MODEL_ALIASES:
        notes.append(f"model_type: {model!r} is the old name of {MODEL_ALIASES[model]!r}")
        model = MODEL_ALIASES[model]
    v["model_type"] = _choice("model_type", model, MODEL_TYPES)
    v["bw_connection_mode"] = _choice(
        "bw_connection_mode", v["bw_connection_mode"], CONNECTION_MODES
    )
    if "noise_type" not in raw and ("tausyn" in raw or "Tbw" in raw):
        v["noise_type"] = "hold_white_noise"
        notes.append("noise_type: seed-era params (tausyn/Tbw): held white noise, as the seed did")
    v["noise_type"] = _choice("noise_type", v["noise_type"], NOISE_TYPES)
    v["OU_variance"] = _choice("OU_variance", v["OU_variance"], OU_VARIANCES)
    if v["noise_mode"] == "uP_adaptive":
        notes.append(
            "noise_mode: 'uP_adaptive' (seed era) runs as 'uP'; the adaptive switch-off by "
            "noise_deg/taueps is not implemented"
        )
        v["noise_mode"] = "uP"
    v["noise_mode"] = _choice("noise_mode", v["noise_mode"], NOISE_MODES)
    v["noise_deg"] = _number("noise_deg", v["noise_deg"])
    v["input_signal"] = _choice("input_signal", v["input_signal"], ("step",))

    for key in ("gl", "gbas", "gapi", "gden", "gnI", "gntgt"):
        v[key] = _number(key, v[key], nonneg=True)
    if v["gl"] + v["gbas"] <= 0:
        raise ConfigError("gl: gl + gbas must be > 0")
    if v["gl"] + v["gden"] + v["gnI"] <= 0:
        raise ConfigError("gden: gl + gden + gnI must be > 0")

    n_pops = 1 if v["bw_connection_mode"] == "skip" else n_hidden
    lengths = {"eta_fw": n_layers, "eta_bw": n_hidden, "eta_IP": n_pops, "eta_PI": n_hidden}
    for key, length in lengths.items():
        v[key] = (
            [0.0] * length if v[key] is None else _number_list(key, v[key], length, notes=notes)
        )
    v["alpha"] = (
        [0.0] * n_hidden
        if v["alpha"] is None
        else _number_list("alpha", v["alpha"], n_hidden, allow_extra=True, notes=notes)
    )
    v["noise_scale"] = (
        [0.01] * n_hidden
        if v["noise_scale"] is None
        else _number_list("noise_scale", v["noise_scale"], n_hidden, allow_extra=True, notes=notes)
    )
    for key in ("eta_fw", "eta_bw", "eta_IP", "eta_PI", "alpha", "noise_scale"):
        for i, value in enumerate(v[key]):
            if value < 0:
                raise ConfigError(f"{key}[{i}]: must be >= 0, got {value!r}")

    for name in ("WPP", "WIP", "BPP", "BPI"):
        v[f"init_{name}_range"] = _range(f"init_{name}_range", v[f"init_{name}_range"])
        key = f"init_teacher_{name}_range"
        v[key] = list(v[f"init_{name}_range"]) if v[key] is None else _range(key, v[key])

    seeds = v["random_seed"]
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(
            f"random_seed: must be a non-empty list of integer seeds, got {v['random_seed']!r}"
        )
    v["random_seed"] = [_integer(f"random_seed[{i}]", s) for i, s in enumerate(seeds)]

    for key in (
        "init_in_SPS",
        "inter_low_pass",
        "pyr_hi_pass",
        "dWPP_low_pass",
        "dWPP_r_low_pass",
        "dWPP_post_low_pass",
        "gate_regularizer",
        "varphi_regularizer",
        "dWPP_use_activation",
        "copy_teacher_weights",
        "copy_teacher_voltages",
        "shuffle",
        *RECORD_FLAGS,
    ):
        v[key] = _boolean(key, v[key])
    for key in ("dWPP_r_low_pass", "dWPP_post_low_pass"):
        if v[key]:
            raise ConfigError(f"{key}: only false is supported (off in every shipped config)")
    if v["gate_regularizer"] and v["varphi_regularizer"]:
        raise ConfigError("gate_regularizer: cannot be combined with varphi_regularizer")
    if v["Tbw"] is not None and v["model_type"] not in ("PAL", "DTPDRL"):
        notes.append("Tbw: ignored (only the noise models PAL/DTPDRL use the phase schedule)")
    return MicrocircuitParams(values=v, notes=notes, source=source)


def load_params(path: str | os.PathLike[str]) -> MicrocircuitParams:
    """Read and validate ``params.json`` (``_comment`` keys are ignored)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"params: cannot read {path}: {exc}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"params: {path} is not valid JSON: {exc}") from exc
    return params_from_dict(raw, source=str(path))


#: The template written by ``rnnlab microcircuit template``: the later (H) template's values
#: (1-1-1 teacher-student, PAL) with 200 epochs so that it finishes in seconds.
TEMPLATE: dict[str, Any] = {
    "_comment": "microcircuit runner parameters; every field is described in docs/microcircuit.md",
    "dt": 0.01,
    "Tpres": 1.0,
    "dtxi": 0.01,
    "tauHP": 0.1,
    "tauLO": 100.0,
    "tauxi": 0.1,
    "dataset_size": 100,
    "epochs": 200,
    "settling_time": 100.0,
    "layers": [1, 1, 1],
    "activation": "logistic",
    "model_type": "PAL",
    "bw_connection_mode": "layered",
    "noise_type": "OU",
    "OU_variance": "sigma^2/2",
    "noise_scale": [0.01],
    "noise_mode": "const",
    "gl": 0.03,
    "gbas": 0.1,
    "gapi": 0.06,
    "gden": 0.1,
    "gnI": 0.06,
    "gntgt": 0.06,
    "eta_fw": [2.0, 0.5],
    "eta_bw": [20.0],
    "eta_IP": [10.0],
    "eta_PI": [0.5],
    "alpha": [1e-6],
    "init_WPP_range": [-1.0, 0.0],
    "init_WIP_range": [-1.0, 1.0],
    "init_BPP_range": [-1.0, 0.0],
    "init_BPI_range": [-1.0, 1.0],
    "init_teacher_WPP_range": [0.0, 2.0],
    "init_teacher_WIP_range": [-1.0, 1.0],
    "init_teacher_BPP_range": [-1.0, 1.0],
    "init_teacher_BPI_range": [-1.0, 1.0],
    "random_seed": [123, 456, 789, 111, 222],
    "init_in_SPS": True,
    "inter_low_pass": False,
    "pyr_hi_pass": True,
    "dWPP_low_pass": True,
    "gate_regularizer": False,
    "dWPP_use_activation": True,
    "input_signal": "step",
    "copy_teacher_weights": False,
    "copy_teacher_voltages": False,
    "shuffle": True,
    "rec_per_steps": 1000,
    "rec_MSE": True,
    "rec_WPP": True,
    "rec_WIP": True,
    "rec_BPP": True,
    "rec_BPI": True,
}
