"""Import and export the original FIURI engine's ("Ariel", BiMPuRLE) XML models.

The FIURI author's engine stores a model as XML (reference note §5.1, §7)::

    <Model name="...">
      <NeuralNetwork name="...">
        <neuron name="PVD" th="0.1" df="0.2" internalstate="0.0" outputstate="0.0"/>
        ...
        <connection connType="ConnectionType.ChemIn" connSource="PVD" connTarget="AVA"
                    connWeight="0.5" testWeight="0.5"/>
        ...
      </NeuralNetwork>
      <Interfaces>
        <interface name="IN1" type="IN" positiveNeuron="PLM" negativeNeuron="AVM"
                   valleyVal="-0.3" minVal="-1.2" maxVal="0.6" value="0.0"
                   minState="-10.0" maxState="10.0"/>
        ...
      </Interfaces>
    </Model>

:func:`read_ariel_xml` turns such a file into the effective-parameter JSON interchange object of
:meth:`~rnnlab.twc.circuit.FiuriCircuit.parameters_json` (``{"neurons": {NAME: {"threshold",
"decay"}}, "synapses": [{"from", "to", "type", "weight"}]}``) plus what the file says about
interfaces and roles, so ``TWC.from_parameters(read_ariel_xml(path), dynamics="exact")`` runs a
TW model file. :func:`write_ariel_xml` writes the same object back (atomically).

Connection types: ``ChemEx`` → ``EX``, ``ChemIn`` → ``IN``, and both ``SGJ`` ("symmetric" gap
junction) and ``AGJ`` ("asymmetric" gap junction) → ``GJ``. In the engine's FIURI model both
gap-junction types run the *same* one-way, sign-based rule (only the listed target receives
current), so the mapping is exact; a two-way coupling needs two connections. The original type
of each gap junction is kept under ``"ariel"`` so an export writes it back; new gap junctions are
written as ``AGJ``, the type of every upstream TW file.

The engine's loader quirk (note §5.1): its neuron loader stores ``th`` and then overwrites the
threshold with the ``internalstate`` attribute, and puts ``df`` into a field the dynamics never
read, so every loaded neuron runs with T = ``internalstate`` (0.0 in every upstream file) and
d = 0 until the optimiser sets parameters. By default this module reads T = ``th`` and
d = ``df``, as the file means them (the fix); ``ariel_loader_quirk=True`` reproduces what the
engine simulates right after loading (T = ``internalstate``, d = 0, and the ``testWeight`` copy of
each weight, which is the one its dynamics read). Weights are ``connWeight`` (the committed value)
by default; ``testWeight`` is the random search's trial copy and equals ``connWeight`` in every
upstream file. Exports write both as the same value.

Parsing is safe: the file is read with expat directly, any DOCTYPE or ENTITY declaration is
rejected (so no entity is ever expanded and nothing external is fetched), and every problem is a
:class:`~rnnlab.errors.ConfigError` naming the file, the line, the element and what is wrong.
"""

from __future__ import annotations

import math
import os
import xml.parsers.expat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from rnnlab.atomic import write_text_atomic
from rnnlab.errors import ConfigError

__all__ = [
    "ARIEL_CONNECTION_TYPES",
    "read_ariel_xml",
    "twc_wiring_differences",
    "write_ariel_xml",
]

#: Ariel connection type → interchange synapse type.
ARIEL_CONNECTION_TYPES = {"ChemEx": "EX", "ChemIn": "IN", "SGJ": "GJ", "AGJ": "GJ"}
_TYPE_PREFIX = "ConnectionType."
_MAX_BYTES = 16 * 1024 * 1024

#: The MountainCarContinuous interfaces of the TWC (note §2.4), as the engine's files state them.
TWC_INTERFACES: tuple[dict[str, Any], ...] = (
    {
        "name": "IN1",
        "type": "IN",
        "positive": "PLM",
        "negative": "AVM",
        "valley": -0.3,
        "low": -1.2,
        "high": 0.6,
        "min_state": -10.0,
        "max_state": 10.0,
    },
    {
        "name": "IN2",
        "type": "IN",
        "positive": "ALM",
        "negative": "PVD",
        "valley": 0.0,
        "low": -0.1,
        "high": 0.1,
        "min_state": -10.0,
        "max_state": 10.0,
    },
    {
        "name": "OUT1",
        "type": "OUT",
        "positive": "FWD",
        "negative": "REV",
        "valley": 0.0,
        "low": -1.0,
        "high": 1.0,
        "min_state": -10.0,
        "max_state": 10.0,
    },
)
# interface attribute in the file → key in the interchange object
_INTERFACE_NUMBERS = {
    "valleyVal": "valley",
    "minVal": "low",
    "maxVal": "high",
    "value": "value",
    "minState": "min_state",
    "maxState": "max_state",
}
_INTERFACE_TYPES = ("IN", "OUT")


# --------------------------------------------------------------------------- safe XML parsing
@dataclass
class _Element:
    tag: str
    attrib: dict[str, str]
    line: int
    children: list[_Element] = field(default_factory=list)


def _parse_xml(path: Path) -> _Element:
    """Parse ``path`` into a small element tree with expat; no DTDs, no entities."""
    try:
        size = path.stat().st_size
        if size > _MAX_BYTES:
            raise ConfigError(f"{path}: {size} bytes; an Ariel XML model is at most {_MAX_BYTES}")
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the Ariel XML file ({error.strerror})") from error
    parser = xml.parsers.expat.ParserCreate()
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[_Element] = []
    roots: list[_Element] = []

    def refuse(what: str) -> None:
        raise ConfigError(
            f"{path}:{parser.CurrentLineNumber}: {what} declarations are not allowed in an "
            "Ariel XML model (refused so that no entity is ever expanded or fetched)"
        )

    def start_doctype(*_: Any) -> None:
        refuse("DOCTYPE")

    def entity_declaration(*_: Any) -> None:
        refuse("ENTITY")

    def start(tag: str, attrib: dict[str, str]) -> None:
        element = _Element(tag, dict(attrib), parser.CurrentLineNumber)
        (stack[-1].children if stack else roots).append(element)
        stack.append(element)

    def end(_: str) -> None:
        stack.pop()

    parser.StartDoctypeDeclHandler = start_doctype
    parser.EntityDeclHandler = entity_declaration
    parser.UnparsedEntityDeclHandler = entity_declaration
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(data, True)
    except xml.parsers.expat.ExpatError as error:
        reason = xml.parsers.expat.ErrorString(error.code)
        raise ConfigError(
            f"{path}:{error.lineno}: not well-formed XML ({reason}, column {error.offset})"
        ) from error
    if not roots:
        raise ConfigError(f"{path}: no XML element found")
    return roots[0]


# --------------------------------------------------------------------------------- reading
def _where(path: Path, element: _Element) -> str:
    name = element.attrib.get("name")
    label = f"<{element.tag} name={name!r}>" if name is not None else f"<{element.tag}>"
    return f"{path}:{element.line}: {label}"


def _attribute(path: Path, element: _Element, key: str) -> str:
    if key not in element.attrib:
        present = sorted(element.attrib)
        raise ConfigError(
            f"{_where(path, element)} has no {key!r} attribute (it has {present})"
            + _model_hint(element)
        )
    return element.attrib[key]


def _model_hint(element: _Element) -> str:
    if element.tag != "neuron":
        return ""
    if {"gleak", "vleak", "cm"} & set(element.attrib):
        return "; this is an integrate-and-fire model, only FIURI models (th, df) can be imported"
    if {"a", "b", "c", "d"} <= set(element.attrib):
        return "; this is an Izhikevich model, only FIURI models (th, df) can be imported"
    return ""


def _number(path: Path, element: _Element, key: str) -> float:
    text = _attribute(path, element, key)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigError(
            f"{_where(path, element)}: attribute {key}={text!r} is not a finite number"
        )
    return value


def _optional_number(path: Path, element: _Element, key: str, default: float) -> float:
    return _number(path, element, key) if key in element.attrib else default


def _connection_type(path: Path, element: _Element) -> str:
    text = _attribute(path, element, "connType")
    bare = text.removeprefix(_TYPE_PREFIX)
    if bare not in ARIEL_CONNECTION_TYPES:
        allowed = [_TYPE_PREFIX + name for name in ARIEL_CONNECTION_TYPES]
        raise ConfigError(
            f"{_where(path, element)}: connType={text!r} is not a known connection type; "
            f"allowed: {allowed} (the prefix {_TYPE_PREFIX!r} may be left out)"
        )
    return bare


def _single_child(path: Path, parent: _Element, tag: str, required: bool) -> _Element | None:
    found = [child for child in parent.children if child.tag == tag]
    if len(found) > 1:
        raise ConfigError(f"{_where(path, parent)} has {len(found)} <{tag}> elements; expected 1")
    if not found and required:
        raise ConfigError(f"{_where(path, parent)} has no <{tag}> element")
    return found[0] if found else None


def read_ariel_xml(
    path: str | os.PathLike[str],
    *,
    ariel_loader_quirk: bool = False,
    check_twc: bool = True,
) -> dict[str, Any]:
    """Read a FIURI engine ("Ariel") XML model into the effective-parameter interchange object.

    Returns ``{"name", "neurons": {NAME: {"threshold", "decay"}}, "synapses": [{"from", "to",
    "type", "weight"}], "interfaces": [...], "roles": {NAME: role}, "ariel": {...}}``: neurons
    and synapses in file order, every neuron of the file (sensory ones included: their T and d
    are unused by the circuit), ``interfaces`` as in the file (``positive``/``negative`` neuron,
    ``valley``, ``low``, ``high``, ``min_state``, ``max_state``, ``value``), ``roles`` derived
    from them (``sensory`` for IN interface neurons, ``motor`` for OUT ones, else ``inter``),
    and under ``ariel`` the model and network names, the original type of each gap junction and
    the initial states the file stores.

    ``ariel_loader_quirk=False`` (default, the fix): T = ``th``, d = ``df``, w = ``connWeight``.
    ``ariel_loader_quirk=True`` (faithful to the engine's loader): T = ``internalstate``, d = 0,
    w = ``testWeight`` (falling back to ``connWeight``).

    ``check_twc``: a file whose neurons are exactly the tap-withdrawal circuit's must have the
    shipped TWC wiring and interfaces (see :func:`twc_wiring_differences`); otherwise a
    :class:`~rnnlab.errors.ConfigError` lists every difference. Files of other circuits are
    returned unchecked.
    """
    source = Path(path)
    root = _parse_xml(source)
    if root.tag != "Model":
        raise ConfigError(f"{_where(source, root)}: the root element must be <Model>")
    network = _single_child(source, root, "NeuralNetwork", required=True)
    assert network is not None
    neurons: dict[str, dict[str, float]] = {}
    initial_states: dict[str, dict[str, float]] = {}
    synapses: list[dict[str, Any]] = []
    gap_junction_types: dict[str, str] = {}
    connections: list[_Element] = []
    for child in network.children:
        if child.tag == "connection":
            connections.append(child)
            continue
        if child.tag != "neuron":
            raise ConfigError(
                f"{_where(source, child)}: unexpected element inside <NeuralNetwork>; "
                "allowed: ['neuron', 'connection']"
            )
        name = _attribute(source, child, "name")
        if name in neurons:
            raise ConfigError(f"{_where(source, child)}: duplicate neuron name {name!r}")
        threshold = _number(source, child, "th")
        decay = _number(source, child, "df")
        internal = _optional_number(source, child, "internalstate", 0.0)
        output = _optional_number(source, child, "outputstate", 0.0)
        if ariel_loader_quirk:
            threshold, decay = _number(source, child, "internalstate"), 0.0
        neurons[name] = {"threshold": threshold, "decay": decay}
        initial_states[name] = {"internal": internal, "output": output}
    if not neurons:
        raise ConfigError(f"{_where(source, network)} has no <neuron> elements")
    seen: set[tuple[str, str, str]] = set()
    for child in connections:
        ariel_type = _connection_type(source, child)
        kind = ARIEL_CONNECTION_TYPES[ariel_type]
        ends = []
        for key in ("connSource", "connTarget"):
            end = _attribute(source, child, key)
            if end not in neurons:
                raise ConfigError(
                    f"{_where(source, child)}: {key}={end!r} names no <neuron> of the network "
                    f"(known: {list(neurons)})"
                )
            ends.append(end)
        weight = _number(source, child, "connWeight")
        if ariel_loader_quirk:
            weight = _optional_number(source, child, "testWeight", weight)
        else:
            _optional_number(source, child, "testWeight", weight)  # still must be a number
        key_triple = (ends[0], ends[1], kind)
        if key_triple in seen:
            raise ConfigError(
                f"{_where(source, child)}: a second {ariel_type} connection "
                f"{ends[0]}->{ends[1]} (the interchange format holds one synapse per "
                "source, target and type; merge their weights)"
            )
        seen.add(key_triple)
        synapses.append({"from": ends[0], "to": ends[1], "type": kind, "weight": weight})
        if kind == "GJ":
            gap_junction_types[f"{ends[0]}->{ends[1]}"] = ariel_type
    interfaces = _read_interfaces(source, root, neurons)
    roles = {name: "inter" for name in neurons}
    for interface in interfaces:
        role = "sensory" if interface["type"] == "IN" else "motor"
        for end in (interface["positive"], interface["negative"]):
            roles[end] = role
    result: dict[str, Any] = {
        "name": network.attrib.get("name", ""),
        "neurons": neurons,
        "synapses": synapses,
        "interfaces": interfaces,
        "roles": roles,
        "ariel": {
            "model": root.attrib.get("name", ""),
            "gap_junction_types": gap_junction_types,
            "initial_states": initial_states,
        },
    }
    if check_twc and sorted(neurons) == sorted(_twc_neuron_names()):
        differences = twc_wiring_differences(result)
        if differences:
            raise ConfigError(
                f"{source}: has the tap-withdrawal circuit's neurons but differs from the shipped "
                "TWC wiring (python/rnnlab/twc/wiring/twc.json): "
                + "; ".join(differences)
                + " (pass check_twc=False / --no-check-twc to import it anyway)"
            )
    return result


def _read_interfaces(
    source: Path, root: _Element, neurons: dict[str, dict[str, float]]
) -> list[dict[str, Any]]:
    block = _single_child(source, root, "Interfaces", required=False)
    interfaces: list[dict[str, Any]] = []
    if block is None:
        return interfaces
    for child in block.children:
        if child.tag != "interface":
            raise ConfigError(
                f"{_where(source, child)}: unexpected element inside <Interfaces>; "
                "allowed: ['interface']"
            )
        kind = _attribute(source, child, "type")
        if kind not in _INTERFACE_TYPES:
            raise ConfigError(
                f"{_where(source, child)}: type={kind!r}; allowed: {list(_INTERFACE_TYPES)}"
            )
        entry: dict[str, Any] = {"name": _attribute(source, child, "name"), "type": kind}
        for key, label in (("positiveNeuron", "positive"), ("negativeNeuron", "negative")):
            end = _attribute(source, child, key)
            if end not in neurons:
                raise ConfigError(
                    f"{_where(source, child)}: {key}={end!r} names no <neuron> of the network"
                )
            entry[label] = end
        for key, label in _INTERFACE_NUMBERS.items():
            if key in child.attrib:
                entry[label] = _number(source, child, key)
        interfaces.append(entry)
    return interfaces


# ------------------------------------------------------------------------- TWC comparison
def _twc_neuron_names() -> tuple[str, ...]:
    from rnnlab.twc.wiring import twc_wiring

    return twc_wiring().neuron_names


def twc_wiring_differences(obj: dict[str, Any]) -> list[str]:
    """How an imported object differs from the shipped TWC wiring and interfaces ([] if not).

    Compares the neuron names, the synapses as (from, to, type) sets (order does not matter)
    and, when the object has interfaces, their neurons, valleys and bounds with the TWC's
    MountainCar interfaces (note §2.4).
    """
    from rnnlab.twc.wiring import twc_wiring

    wiring = twc_wiring()
    differences: list[str] = []
    names = set(obj.get("neurons", {}))
    expected_names = set(wiring.neuron_names)
    if names != expected_names:
        if expected_names - names:
            differences.append(f"neurons missing: {sorted(expected_names - names)}")
        if names - expected_names:
            differences.append(f"neurons not in the TWC: {sorted(names - expected_names)}")
    got = {(str(s["from"]), str(s["to"]), str(s["type"])) for s in obj.get("synapses", [])}
    expected = {(s.source, s.target, s.type) for s in wiring.synapses}
    missing = [f"{s}->{t} {k}" for s, t, k in sorted(expected - got)]
    extra = [f"{s}->{t} {k}" for s, t, k in sorted(got - expected)]
    if missing:
        differences.append(f"synapses missing from the file: {missing}")
    if extra:
        differences.append(f"synapses not in the TWC wiring: {extra}")
    interfaces = obj.get("interfaces") or []
    if interfaces:
        by_name = {entry["name"]: entry for entry in interfaces}
        for reference in TWC_INTERFACES:
            entry = by_name.get(reference["name"])
            if entry is None:
                differences.append(f"interface {reference['name']} missing")
                continue
            for key in ("type", "positive", "negative", "valley", "low", "high"):
                if key in entry and entry[key] != reference[key]:
                    differences.append(
                        f"interface {reference['name']}: {key} {entry[key]!r} "
                        f"(the TWC uses {reference[key]!r})"
                    )
    return differences


# --------------------------------------------------------------------------------- writing
def _float(value: Any, where: str) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {value!r} is not a number") from error
    if not math.isfinite(number):
        raise ConfigError(f"{where}: {value!r} is not a finite number")
    return repr(number)


def _attributes(pairs: list[tuple[str, str]]) -> str:
    return " ".join(f"{key}={quoteattr(value)}" for key, value in pairs)


def write_ariel_xml(obj: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the interchange object ``obj`` as an Ariel XML model (atomically); returns the path.

    ``obj`` is what :func:`read_ariel_xml` returns or what ``circuit.parameters_json()`` returns.
    Neurons named by synapses or interfaces but absent from ``obj["neurons"]`` (the sensory
    neurons of ``parameters_json()``, which carry no parameters) are written first with
    th = df = 0. Without ``interfaces``, a circuit with the TWC's neurons gets the TWC's
    MountainCar interfaces (IN1, IN2, OUT1), so the engine can run the file. Gap junctions are
    written as ``AGJ`` unless ``obj["ariel"]["gap_junction_types"]`` says ``SGJ``; both
    ``connWeight`` and ``testWeight`` are the synapse's weight. Floats are written with
    ``repr`` so a read gives back the same numbers.
    """
    neurons = obj.get("neurons")
    synapses = obj.get("synapses")
    if not isinstance(neurons, dict) or not isinstance(synapses, list):
        raise ConfigError(
            "write_ariel_xml: expected {'neurons': {NAME: {threshold, decay}}, "
            "'synapses': [{from, to, type, weight}]}"
        )
    ariel = obj.get("ariel") or {}
    gap_junction_types: dict[str, str] = dict(ariel.get("gap_junction_types") or {})
    initial_states: dict[str, dict[str, Any]] = dict(ariel.get("initial_states") or {})
    interfaces = list(obj.get("interfaces") or [])
    mentioned: list[str] = []
    for entry in interfaces:
        mentioned += [str(entry.get("positive")), str(entry.get("negative"))]
    for synapse in synapses:
        if not isinstance(synapse, dict):
            raise ConfigError(f"write_ariel_xml: synapse {synapse!r} is not an object")
        mentioned += [str(synapse.get("from")), str(synapse.get("to"))]
    extra_names = [n for n in dict.fromkeys(mentioned) if n not in neurons]
    if not interfaces and sorted([*extra_names, *neurons]) == sorted(_twc_neuron_names()):
        interfaces = [dict(entry) for entry in TWC_INTERFACES]
        extra_names = [n for n in _twc_neuron_names() if n not in neurons]
    lines = ['<?xml version="1.0" ?>']
    lines.append(f"<Model {_attributes([('name', str(ariel.get('model') or 'rnnlab'))])}>")
    lines.append(f"   <NeuralNetwork {_attributes([('name', str(obj.get('name') or 'circuit'))])}>")
    rows = [(name, {"threshold": 0.0, "decay": 0.0}) for name in extra_names]
    rows += list(neurons.items())
    for name, values in rows:
        where = f"write_ariel_xml: neurons[{name!r}]"
        if not isinstance(values, dict) or "threshold" not in values or "decay" not in values:
            raise ConfigError(f"{where}: expected {{'threshold': T, 'decay': d}}, got {values!r}")
        state = initial_states.get(name, {})
        pairs = [
            ("name", str(name)),
            ("th", _float(values["threshold"], f"{where}.threshold")),
            ("df", _float(values["decay"], f"{where}.decay")),
            ("internalstate", _float(state.get("internal", 0.0), f"{where} initial internal")),
            ("outputstate", _float(state.get("output", 0.0), f"{where} initial output")),
        ]
        lines.append(f"      <neuron {_attributes(pairs)}/>")
    to_ariel = {"EX": "ChemEx", "IN": "ChemIn", "GJ": "AGJ"}
    for index, synapse in enumerate(synapses):
        where = f"write_ariel_xml: synapses[{index}]"
        missing = [key for key in ("from", "to", "type", "weight") if key not in synapse]
        if missing:
            raise ConfigError(f"{where}: missing {missing}; expected {{from, to, type, weight}}")
        kind = str(synapse["type"]).upper()
        if kind not in to_ariel:
            raise ConfigError(f"{where}: type {synapse['type']!r}; allowed: {list(to_ariel)}")
        ariel_type = to_ariel[kind]
        if kind == "GJ":
            ariel_type = gap_junction_types.get(f"{synapse['from']}->{synapse['to']}", "AGJ")
            if ariel_type not in ("AGJ", "SGJ"):
                raise ConfigError(
                    f"write_ariel_xml: ariel.gap_junction_types: {ariel_type!r}; "
                    "allowed: ['AGJ', 'SGJ']"
                )
        weight = _float(synapse["weight"], f"{where}.weight")
        pairs = [
            ("connType", _TYPE_PREFIX + ariel_type),
            ("connSource", str(synapse["from"])),
            ("connTarget", str(synapse["to"])),
            ("connWeight", weight),
            ("testWeight", weight),
        ]
        lines.append(f"      <connection {_attributes(pairs)}/>")
    lines.append("   </NeuralNetwork>")
    lines.append("   <Interfaces>")
    for index, entry in enumerate(interfaces):
        where = f"write_ariel_xml: interfaces[{index}]"
        missing = [key for key in ("name", "type", "positive", "negative") if key not in entry]
        if missing:
            raise ConfigError(f"{where}: missing {missing}")
        if entry["type"] not in _INTERFACE_TYPES:
            raise ConfigError(f"{where}: type {entry['type']!r}; allowed: {list(_INTERFACE_TYPES)}")
        pairs = [("name", str(entry["name"]))]
        for key, label in _INTERFACE_NUMBERS.items():
            if label in entry:
                pairs.append((key, _float(entry[label], f"{where}.{label}")))
        pairs += [
            ("positiveNeuron", str(entry["positive"])),
            ("negativeNeuron", str(entry["negative"])),
            ("type", str(entry["type"])),
        ]
        lines.append(f"      <interface {_attributes(pairs)}/>")
    lines.append("   </Interfaces>")
    lines.append("</Model>")
    return write_text_atomic(path, "\n".join(lines) + "\n")
