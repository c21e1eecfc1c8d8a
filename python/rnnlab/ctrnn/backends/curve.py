"""ZeroMQ CURVE keys for the distributed backends (``rnnlab worker keygen DIR``).

CURVE encrypts every message and authenticates both ends: workers must know the coordinator's
public key, and the coordinator only accepts workers whose public key it has authorised (ZAP,
checked by pyzmq's authenticator thread), so a client without a key neither receives work nor
gets a message through. ``keygen`` writes four JSON files (mode 0600, atomically):

- ``coordinator_secret.json`` — the coordinator's key pair (stays on the training machine);
- ``coordinator_public.json`` — its public key (copy to every worker machine);
- ``worker_secret.json`` — a worker key pair (copy to every worker machine);
- ``authorized_workers.json`` — the worker public keys the coordinator accepts.

Keys are Z85 text, as ``zmq.curve_keypair`` makes them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import zmq

from rnnlab.atomic import write_text_atomic
from rnnlab.errors import ConfigError

__all__ = ["CoordinatorKeys", "WorkerKeys", "keygen", "load_coordinator_keys", "load_worker_keys"]

FORMAT = "rnnlab.curve"
VERSION = 1


class CoordinatorKeys:
    def __init__(self, public: bytes, secret: bytes, authorized: set[bytes]) -> None:
        self.public, self.secret, self.authorized = public, secret, authorized


class WorkerKeys:
    def __init__(self, public: bytes, secret: bytes, server_public: bytes) -> None:
        self.public, self.secret, self.server_public = public, secret, server_public


def _write(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps({"format": FORMAT, "version": VERSION, **data}, indent=1))
    os.chmod(path, 0o600)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"curve_keys: cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        raise ConfigError(f"curve_keys: {path} is not an {FORMAT} v{VERSION} key file")
    return data


def keygen(folder: str | os.PathLike[str]) -> list[Path]:
    """Write a coordinator key pair and one worker key pair into ``folder``; returns the files."""
    if not zmq.has("curve"):
        raise ConfigError("curve_keys: this libzmq was built without CURVE support")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    server_public, server_secret = zmq.curve_keypair()
    worker_public, worker_secret = zmq.curve_keypair()
    files: dict[str, dict[str, Any]] = {
        "coordinator_secret.json": {
            "public": server_public.decode(),
            "secret": server_secret.decode(),
        },
        "coordinator_public.json": {"public": server_public.decode()},
        "worker_secret.json": {"public": worker_public.decode(), "secret": worker_secret.decode()},
        "authorized_workers.json": {"public_keys": [worker_public.decode()]},
    }
    previous = os.umask(0o077)  # the temporary files are private from the start too
    try:
        for name, data in files.items():
            _write(out / name, data)
    finally:
        os.umask(previous)
    return [out / name for name in files]


def load_coordinator_keys(folder: str | os.PathLike[str]) -> CoordinatorKeys:
    base = Path(folder)
    pair = _read(base / "coordinator_secret.json")
    allowed = _read(base / "authorized_workers.json")
    keys = allowed.get("public_keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ConfigError("curve_keys: authorized_workers.json needs a list 'public_keys'")
    return CoordinatorKeys(
        pair["public"].encode(), pair["secret"].encode(), {k.encode() for k in keys}
    )


def load_worker_keys(folder: str | os.PathLike[str]) -> WorkerKeys:
    base = Path(folder)
    pair = _read(base / "worker_secret.json")
    server = _read(base / "coordinator_public.json")
    return WorkerKeys(pair["public"].encode(), pair["secret"].encode(), server["public"].encode())


class _Allowlist:
    """ZAP credentials provider: accept exactly the authorised worker keys."""

    def __init__(self, authorized: set[bytes]) -> None:
        self.authorized = authorized

    def callback(self, domain: str, key: bytes) -> bool:
        return key in self.authorized


def secure_server(context: zmq.Context, socket: zmq.Socket, keys: CoordinatorKeys) -> Any:
    """Make ``socket`` a CURVE server that only admits authorised workers; returns the
    authenticator thread (stop it before closing the context)."""
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=_Allowlist(keys.authorized))
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public
    socket.curve_server = True
    return auth


def secure_client(socket: zmq.Socket, keys: WorkerKeys) -> None:
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public
    socket.curve_serverkey = keys.server_public
