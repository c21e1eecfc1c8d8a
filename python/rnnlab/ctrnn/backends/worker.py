"""A worker process of the distributed backends (``rnnlab worker --connect tcp://HOST:PORT``).

It connects a DEALER socket to a coordinator, says hello, and then computes the tasks it is
sent with the Rust kernels (``--threads`` threads each), one at a time, in a compute thread,
while the main thread keeps the socket: it answers with heartbeats every ``--heartbeat``
seconds (also while computing), validates every message (a malformed one is logged and
ignored), and exits on ``shutdown``, when the coordinator has been silent for
``--idle-timeout`` seconds after first contact (0: never), or when its parent process
(``--parent-pid``, set for workers the coordinator spawns) is gone.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import queue
import signal
import sys
import threading
import time
from typing import Any

import numpy as np
import zmq

from rnnlab.ctrnn.backends.chunks import ChunkGroup
from rnnlab.ctrnn.backends.local import group_loss_and_grad
from rnnlab.ctrnn.backends.wire import Message, WireError, decode, encode
from rnnlab.errors import ConfigError

__all__ = ["compute", "main", "serve"]

log = logging.getLogger("rnnlab.worker")
GRAD_NAMES = ("W", "tau", "theta", "gain", "U", "V", "c")
PARAM_NAMES = ("W", "mask", "tau", "theta", "gain", "U", "V", "c")


def compute(params: dict[str, np.ndarray], message: Message, threads: int | None) -> list[bytes]:
    """The ``result`` frames for one ``work`` message (``error`` frames if it cannot be done)."""
    h = message.header
    try:
        total_loss = 0.0
        total: dict[str, np.ndarray] = {}
        arrays: dict[str, np.ndarray] = {}
        for i, spec in enumerate(h["groups"]):
            if not isinstance(spec, dict) or not isinstance(spec.get("weight"), (int, float)):
                raise WireError(f"group {i}: needs a numeric 'weight'")
            group = ChunkGroup(
                rows=[],
                starts=message.arrays[f"g{i}.starts"],
                x=message.arrays[f"g{i}.x"],
                target=message.arrays[f"g{i}.target"],
                dts=message.arrays[f"g{i}.dts"],
                weight=float(spec["weight"]),
            )
            loss, grads, start_grads = group_loss_and_grad(
                params,
                h["activation"],
                h["integrator"],
                h["substeps"],
                group,
                sparse=h["sparse"],
                threads=threads,
            )
            total_loss += loss
            for name in GRAD_NAMES:
                total[name] = total[name] + grads[name] if name in total else grads[name]
            arrays[f"g{i}.s0"] = start_grads
        return encode(
            "result",
            {**total, **arrays},
            step=h["step"],
            task=h["task"],
            param_version=h["param_version"],
            loss=total_loss,
        )
    except Exception as exc:  # reported to the coordinator, which re-sends the task elsewhere
        return encode(
            "error", step=h["step"], task=h["task"], message=f"{type(exc).__name__}: {exc}"
        )


def _die_with_parent(parent_pid: int) -> bool:
    """Ask Linux to SIGTERM us when the parent dies; False if it is already gone."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    return os.getppid() == parent_pid


def serve(
    connect: str,
    *,
    threads: int | None = None,
    parent_pid: int | None = None,
    heartbeat: float = 0.5,
    idle_timeout: float = 600.0,
    curve_keys: str | None = None,
) -> int:
    """Run a worker until told to stop; returns the exit code."""
    if parent_pid is not None and not _die_with_parent(parent_pid):
        return 0
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if curve_keys is not None:
        from rnnlab.ctrnn.backends.curve import load_worker_keys, secure_client

        secure_client(sock, load_worker_keys(curve_keys))
    sock.connect(connect)
    # The compute thread hands finished result frames back through an inproc pair.
    inbox = context.socket(zmq.PAIR)
    inbox.bind(f"inproc://results-{id(inbox)}")
    tasks: queue.Queue[tuple[dict[str, np.ndarray], Message] | None] = queue.Queue()

    def compute_loop() -> None:
        outbox = context.socket(zmq.PAIR)
        outbox.connect(f"inproc://results-{id(inbox)}")
        try:
            while (item := tasks.get()) is not None:
                outbox.send_multipart(compute(item[0], item[1], threads))
        finally:
            outbox.close(linger=0)

    computer = threading.Thread(target=compute_loop, name="rnnlab-worker-compute", daemon=True)
    computer.start()
    params: dict[str, np.ndarray] = {}
    version: int | None = None
    sock.send_multipart(encode("hello", pid=os.getpid(), threads=threads or 0))
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(inbox, zmq.POLLIN)
    last_beat = time.monotonic()
    last_contact: float | None = None
    code = 0
    try:
        while True:
            events = dict(poller.poll(int(heartbeat * 1000)))
            now = time.monotonic()
            if inbox in events:
                sock.send_multipart(inbox.recv_multipart())
            if sock in events:
                frames = sock.recv_multipart()
                try:
                    message = decode(frames, ("work", "ping", "shutdown"))
                except WireError as exc:
                    log.warning("rejected a message: %s", exc)
                    continue
                last_contact = now
                if message.kind == "shutdown":
                    break
                if message.kind == "work":
                    if all(name in message.arrays for name in PARAM_NAMES):
                        params = {name: message.arrays[name] for name in PARAM_NAMES}
                        version = message.header["param_version"]
                    if version != message.header["param_version"]:
                        sock.send_multipart(
                            encode(
                                "error",
                                step=message.header["step"],
                                task=message.header["task"],
                                message="no parameters of version "
                                + str(message.header["param_version"]),
                            )
                        )
                        continue
                    tasks.put((params, message))
            if now - last_beat >= heartbeat:
                sock.send_multipart(encode("heartbeat"))
                last_beat = now
            if idle_timeout > 0 and last_contact is not None and now - last_contact > idle_timeout:
                log.warning("coordinator silent for %.0f s; exiting", idle_timeout)
                code = 3
                break
            if parent_pid is not None and os.getppid() != parent_pid:
                break
    finally:
        tasks.put(None)
        sock.close(linger=0)
        inbox.close(linger=0)
        computer.join(timeout=2.0)
        if not computer.is_alive():
            context.term()
    return code


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "keygen",
        nargs="*",
        metavar="keygen DIR",
        help="instead of working: write CURVE keys into DIR (see docs/backends.md)",
    )
    parser.add_argument(
        "--connect",
        default=None,
        metavar="ENDPOINT",
        help="coordinator address, e.g. tcp://127.0.0.1:5555",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="Rust threads per task (default: RNNLAB_NUM_THREADS or all cores)",
    )
    parser.add_argument(
        "--heartbeat", type=float, default=0.5, help="seconds between heartbeats (default 0.5)"
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=600.0,
        help="exit when the coordinator has been silent this long (default 600 s; 0: never)",
    )
    parser.add_argument(
        "--curve-keys",
        default=None,
        metavar="DIR",
        help="folder from `rnnlab worker keygen` (worker_secret.json, coordinator_public.json)",
    )
    parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)


def run_from_args(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="rnnlab worker %(process)d: %(message)s")
    if args.keygen:
        if len(args.keygen) != 2 or args.keygen[0] != "keygen":
            raise ConfigError(
                "usage: rnnlab worker keygen DIR (or rnnlab worker --connect ENDPOINT)"
            )
        from rnnlab.ctrnn.backends.curve import keygen

        for path in keygen(args.keygen[1]):
            print(f"wrote {path}")
        print(
            "give the coordinator curve_keys=DIR (it reads coordinator_secret.json and "
            "authorized_workers.json); copy worker_secret.json and coordinator_public.json to "
            "each worker machine and start it with --curve-keys"
        )
        return 0
    if args.connect is None:
        raise ConfigError("--connect: required (e.g. --connect tcp://127.0.0.1:5555)")

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        return serve(
            args.connect,
            threads=args.threads,
            parent_pid=args.parent_pid,
            heartbeat=args.heartbeat,
            idle_timeout=args.idle_timeout,
            curve_keys=args.curve_keys,
        )
    except KeyboardInterrupt:
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnlab.ctrnn.backends.worker")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
