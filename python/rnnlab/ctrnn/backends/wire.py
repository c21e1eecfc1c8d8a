"""The wire format between the coordinator and its workers (schema ``rnnlab.ctrnn.work`` v1).

A message is a list of ZeroMQ frames: one UTF-8 JSON header, then one raw frame per array. The
header says what the message is and describes every array frame::

    {"schema": "rnnlab.ctrnn.work", "version": 1, "kind": "work", ...,
     "arrays": [{"name": "W", "dtype": "float64", "shape": [200, 200]}, ...]}

Arrays are little-endian float32/float64 (``<f4``/``<f8``), C order, rebuilt with
``np.frombuffer`` after their byte length has been checked against dtype and shape. Nothing is
ever unpickled. :func:`decode` validates the header (schema, version, kind, required fields and
their types, array descriptors) and raises :class:`WireError` on anything else, so a malformed
or hostile message is rejected without touching the receiver's state.

Kinds, coordinator → worker: ``work`` (a task: its step and id, the parameter version, optional
parameters, and chunk groups), ``ping`` (coordinator heartbeat), ``shutdown``. Worker →
coordinator: ``hello`` (pid, threads), ``heartbeat``, ``result`` (the weighted loss and
gradients of a task), ``error`` (a task that could not be computed, with a message).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rnnlab.errors import RnnlabError

__all__ = ["SCHEMA", "VERSION", "Message", "WireError", "decode", "encode"]

SCHEMA = "rnnlab.ctrnn.work"
VERSION = 1
MAX_HEADER_BYTES = 1 << 20
MAX_ARRAYS = 4096
MAX_DIMS = 4
DTYPES: dict[str, np.dtype[np.floating[Any]]] = {
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
}

# Required header fields (beyond schema, version, kind, arrays) and their JSON types.
_INT = (int,)
_NUM = (int, float)
REQUIRED: dict[str, dict[str, tuple[type, ...]]] = {
    "hello": {"pid": _INT, "threads": _INT},
    "heartbeat": {},
    "ping": {},
    "shutdown": {},
    "work": {
        "step": _INT,
        "task": _INT,
        "param_version": _INT,
        "activation": (str,),
        "integrator": (str,),
        "substeps": _INT,
        "sparse": (bool,),
        "groups": (list,),
    },
    "result": {"step": _INT, "task": _INT, "param_version": _INT, "loss": _NUM},
    "error": {"step": _INT, "task": _INT, "message": (str,)},
}


class WireError(RnnlabError, ValueError):
    """A message that does not follow the schema (rejected and logged by the receiver)."""


@dataclass
class Message:
    """A decoded message: the header fields and the arrays by name."""

    kind: str
    header: dict[str, Any]
    arrays: dict[str, NDArray[Any]] = field(default_factory=dict)


def encode(
    kind: str, arrays: Mapping[str, NDArray[Any]] | None = None, **fields: Any
) -> list[bytes]:
    """Frames of one message: the JSON header, then each array's raw bytes."""
    if kind not in REQUIRED:
        raise WireError(f"kind: unknown {kind!r}; allowed: {', '.join(REQUIRED)}")
    descriptors, frames = [], []
    for name, array in (arrays or {}).items():
        a = np.asarray(array)
        dtype = "float64" if a.dtype == np.float64 else "float32"
        a = np.ascontiguousarray(a, dtype=DTYPES[dtype])
        descriptors.append({"name": name, "dtype": dtype, "shape": list(a.shape)})
        frames.append(a.tobytes())
    header = {"schema": SCHEMA, "version": VERSION, "kind": kind, **fields, "arrays": descriptors}
    return [json.dumps(header, separators=(",", ":")).encode(), *frames]


def _check(condition: bool, problem: str) -> None:
    if not condition:
        raise WireError(problem)


def decode(frames: Sequence[bytes], allowed: Sequence[str]) -> Message:
    """Validate and decode a message whose kind must be in ``allowed``; raise :class:`WireError`."""
    _check(len(frames) >= 1, "empty message")
    raw = bytes(frames[0])
    _check(len(raw) <= MAX_HEADER_BYTES, f"header of {len(raw)} bytes is too large")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"header is not UTF-8 JSON: {exc}") from None
    _check(isinstance(header, dict), "header is not a JSON object")
    _check(header.get("schema") == SCHEMA, f"schema {header.get('schema')!r} is not {SCHEMA!r}")
    _check(
        header.get("version") == VERSION,
        f"schema version {header.get('version')!r}; this rnnlab speaks version {VERSION}",
    )
    kind = header.get("kind")
    _check(isinstance(kind, str) and kind in allowed, f"kind {kind!r} not allowed here")
    for name, types in REQUIRED[kind].items():
        value = header.get(name)
        _check(
            isinstance(value, types) and not (bool not in types and isinstance(value, bool)),
            f"field {name!r} missing or of the wrong type in a {kind!r} message",
        )
    descriptors = header.get("arrays")
    _check(isinstance(descriptors, list), "field 'arrays' must be a list")
    _check(len(descriptors) <= MAX_ARRAYS, "too many arrays")
    _check(
        len(descriptors) == len(frames) - 1,
        f"header describes {len(descriptors)} arrays, message has {len(frames) - 1} frames",
    )
    arrays: dict[str, NDArray[Any]] = {}
    for descriptor, frame in zip(descriptors, frames[1:], strict=False):
        _check(isinstance(descriptor, dict), "array descriptor is not an object")
        name, dtype, shape = (
            descriptor.get("name"),
            descriptor.get("dtype"),
            descriptor.get("shape"),
        )
        _check(isinstance(name, str) and name not in arrays, f"bad or repeated array name {name!r}")
        _check(dtype in DTYPES, f"array {name!r}: dtype {dtype!r} not in {sorted(DTYPES)}")
        _check(
            isinstance(shape, list)
            and len(shape) <= MAX_DIMS
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape),
            f"array {name!r}: bad shape {shape!r}",
        )
        count = int(np.prod(shape)) if shape else 1
        expected = count * DTYPES[dtype].itemsize
        data = memoryview(frame)
        _check(data.nbytes == expected, f"array {name!r}: {data.nbytes} bytes, expected {expected}")
        array = np.frombuffer(data, dtype=DTYPES[dtype]).reshape(shape)
        _check(bool(np.all(np.isfinite(array))), f"array {name!r} contains NaN or inf")
        arrays[name] = array
    return Message(kind=kind, header=header, arrays=arrays)
