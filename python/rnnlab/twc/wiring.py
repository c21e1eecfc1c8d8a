"""Circuit wiring files: neurons with roles, synapses with types (no weights).

A wiring is JSON::

    {"name": "...",
     "neurons": [{"name": "PVD", "role": "sensory"}, ...],
     "synapses": [{"from": "PVD", "to": "DVA", "type": "IN"}, ...]}

Roles are ``sensory`` (overwritten by the observation encoder every step), ``inter``,
``command`` and ``motor`` (read by the action decoder). Synapse types are ``EX`` (chemical
excitatory, +w·O_pre), ``IN`` (chemical inhibitory, −w·O_pre) and ``GJ`` (one-way, sign-based gap
junction, w·O_pre·sgn(O_pre − E_post)). The tap-withdrawal circuit ships as ``wiring/twc.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from rnnlab.errors import ConfigError

__all__ = [
    "ROLES",
    "SYNAPSE_TYPES",
    "Synapse",
    "Wiring",
    "load_wiring",
    "twc_wiring",
]

ROLES = ("sensory", "inter", "command", "motor")
SYNAPSE_TYPES = ("EX", "IN", "GJ")


@dataclass(frozen=True)
class Synapse:
    """One directed synapse ``source -> target`` of type EX, IN or GJ."""

    source: str
    target: str
    type: str


@dataclass(frozen=True)
class Wiring:
    """Neurons (name, role) in file order and synapses in file order."""

    name: str
    neuron_names: tuple[str, ...]
    roles: tuple[str, ...]
    synapses: tuple[Synapse, ...]

    def __post_init__(self) -> None:
        if len(self.neuron_names) != len(self.roles):
            raise ConfigError("wiring: neuron_names and roles must have the same length")
        if len(set(self.neuron_names)) != len(self.neuron_names):
            raise ConfigError(f"wiring: duplicate neuron names in {list(self.neuron_names)}")
        for name, role in zip(self.neuron_names, self.roles, strict=False):
            if role not in ROLES:
                raise ConfigError(f"wiring: neuron {name!r} has role {role!r}; allowed: {ROLES}")
        if "sensory" not in self.roles or "motor" not in self.roles:
            raise ConfigError("wiring: needs at least one sensory and one motor neuron")
        known = set(self.neuron_names)
        seen: set[tuple[str, str, str]] = set()
        for synapse in self.synapses:
            if synapse.type not in SYNAPSE_TYPES:
                raise ConfigError(
                    f"wiring: synapse {synapse.source}->{synapse.target} has type "
                    f"{synapse.type!r}; allowed: {SYNAPSE_TYPES}"
                )
            for end in (synapse.source, synapse.target):
                if end not in known:
                    raise ConfigError(f"wiring: synapse names unknown neuron {end!r}")
            if self.role(synapse.target) == "sensory":
                raise ConfigError(
                    f"wiring: synapse {synapse.source}->{synapse.target} targets a sensory "
                    "neuron (sensory neurons are overwritten by the encoder)"
                )
            key = (synapse.source, synapse.target, synapse.type)
            if key in seen:
                raise ConfigError(f"wiring: duplicate synapse {key}")
            seen.add(key)

    def role(self, name: str) -> str:
        return self.roles[self.neuron_names.index(name)]

    def names_with_role(self, *roles: str) -> list[str]:
        return [n for n, r in zip(self.neuron_names, self.roles, strict=False) if r in roles]

    @property
    def sensory_names(self) -> list[str]:
        return self.names_with_role("sensory")

    @property
    def updated_names(self) -> list[str]:
        """Simulated (non-sensory) neurons in file order: these carry T and d."""
        return self.names_with_role("inter", "command", "motor")

    @property
    def motor_names(self) -> list[str]:
        return self.names_with_role("motor")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "neurons": [
                {"name": n, "role": r} for n, r in zip(self.neuron_names, self.roles, strict=False)
            ],
            "synapses": [{"from": s.source, "to": s.target, "type": s.type} for s in self.synapses],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Wiring:
        try:
            neurons = obj["neurons"]
            synapses = obj["synapses"]
            return cls(
                name=str(obj.get("name", "circuit")),
                neuron_names=tuple(str(n["name"]) for n in neurons),
                roles=tuple(str(n["role"]) for n in neurons),
                synapses=tuple(
                    Synapse(str(s["from"]), str(s["to"]), str(s["type"]).upper()) for s in synapses
                ),
            )
        except (KeyError, TypeError) as error:
            raise ConfigError(
                f"wiring: malformed JSON ({error!r}); expected neurons [{{name, role}}] and "
                "synapses [{from, to, type}]"
            ) from error


def load_wiring(path: str | os.PathLike[str]) -> Wiring:
    """Read a wiring JSON file."""
    return Wiring.from_json(json.loads(Path(path).read_text()))


def twc_wiring() -> Wiring:
    """The tap-withdrawal circuit shipped with the package (11 neurons, 26 synapses)."""
    text = resources.files("rnnlab.twc").joinpath("wiring/twc.json").read_text()
    return Wiring.from_json(json.loads(text))
