"""The distributed backend under failure: a killed worker, a stalled worker and its late reply,
hostile messages, workers joining mid-run, the CLI worker, and no orphans on coordinator exit.

Every wait is bounded (pytest-timeout and explicit deadlines); nothing sleeps to synchronise:
the tests act from the pool's dispatch hook, on events, or poll a condition with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import zmq

from rnnlab.ctrnn import CTRNN
from rnnlab.ctrnn.backends.distributed import DistributedBackend
from rnnlab.ctrnn.backends.wire import decode, encode

GRADS = ("W", "tau", "theta", "gain", "U", "V", "c", "s0")


def workload(n: int = 24, batch: int = 2, frames: int = 40):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(batch, frames, 1))
    y = rng.uniform(size=(batch, frames, 1))
    kwargs = dict(dt=0.1, substeps=10, truncation=5)
    expected = CTRNN(n, 1, 1, seed=2, backend="dense").loss_and_grad(x, y, **kwargs)
    return x, y, kwargs, expected


def assert_same(got, expected, rtol=1e-10):
    assert got[0] == pytest.approx(expected[0], rel=rtol)
    for name in GRADS:
        np.testing.assert_allclose(got[1][name], expected[1][name], rtol=rtol, atol=1e-15)


def gone(pid: int) -> bool:
    """True when the process no longer runs (exited, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def wait_until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.02)  # polling a condition with a deadline, not synchronising on time


def test_sigkill_mid_step_still_completes_with_the_full_gradient():
    x, y, kwargs, expected = workload()
    backend = DistributedBackend(workers=2, threads=1, timeout=20.0, heartbeat=0.2)
    try:
        net = CTRNN(24, 1, 1, seed=2, backend=backend)
        victim = backend.pool.workers[0]
        killed = []

        def kill_once() -> None:
            if not killed:
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        backend.pool.on_dispatch = kill_once
        assert_same(net.loss_and_grad(x, y, **kwargs), expected)
        assert killed == [victim]
        assert backend.pool.dropped_workers == 1
        assert backend.pool.resent >= 1
        assert victim not in backend.pool.workers
        backend.pool.on_dispatch = None
        assert_same(net.loss_and_grad(x, y, **kwargs), expected)  # one worker left
    finally:
        backend.close()


class FakeWorker(threading.Thread):
    """A worker that takes its first task and sits on it (no heartbeats) until released, then
    replies to that task with a zero gradient."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.got_task = threading.Event()
        self.release = threading.Event()
        self.replied = threading.Event()

    def run(self) -> None:
        context = zmq.Context()
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 1000)
        sock.connect(self.endpoint)
        sock.send_multipart(encode("hello", pid=0, threads=1))
        try:
            while True:
                if not sock.poll(10_000):
                    return
                message = decode(sock.recv_multipart(), ("work", "ping", "shutdown"))
                if message.kind == "work":
                    break
            self.got_task.set()
            self.release.wait(60)
            h = message.header
            arrays = {k: np.zeros_like(message.arrays[k]) for k in GRADS[:-1]}
            for i in range(len(h["groups"])):
                arrays[f"g{i}.s0"] = np.zeros_like(message.arrays[f"g{i}.starts"])
            sock.send_multipart(
                encode(
                    "result",
                    arrays,
                    step=h["step"],
                    task=h["task"],
                    param_version=h["param_version"],
                    loss=0.0,
                )
            )
            self.replied.set()
        finally:
            sock.close()
            context.term()


def test_stalled_worker_chunks_are_resent_and_its_late_reply_is_ignored():
    x, y, kwargs, expected = workload()
    backend = DistributedBackend(workers=1, threads=1, timeout=1.0, heartbeat=0.2)
    fake = FakeWorker(backend.endpoint)
    try:
        fake.start()
        backend.pool.wait_for_workers(2, 30)
        net = CTRNN(24, 1, 1, seed=2, backend=backend)
        assert_same(net.loss_and_grad(x, y, **kwargs), expected)
        assert fake.got_task.is_set()
        assert backend.pool.resent >= 1
        fake.release.set()
        assert fake.replied.wait(30)
        late_before = backend.pool.late_replies
        # the late zero gradient must not leak into the next step
        assert_same(net.loss_and_grad(x, y, **kwargs), expected)
        wait_until(
            lambda: backend.pool.completed() == [] and backend.pool.late_replies > late_before,
            30,
            "the late reply to be counted",
        )
    finally:
        fake.release.set()
        backend.close()
        fake.join(30)


def test_garbage_and_wrong_version_messages_are_rejected_while_training_continues(
    distributed: DistributedBackend,
):
    x, y, kwargs, expected = workload(n=12, frames=20)
    context = zmq.Context()
    hostile = context.socket(zmq.DEALER)
    hostile.setsockopt(zmq.LINGER, 1000)
    hostile.connect(distributed.endpoint)
    before = distributed.pool.rejected
    header = json.loads(encode("heartbeat")[0])
    messages = [
        [b"garbage"],
        [b"\xff\xfe not utf-8"],
        [json.dumps({**header, "version": 99}).encode()],
        [json.dumps({**header, "schema": "pickle"}).encode()],
        [json.dumps({**header, "kind": "work"}).encode()],
        encode("result", {"W": np.zeros(3)}, step=0, task=0, param_version=0, loss=0.0)[:1],
        [
            json.dumps(
                {**header, "arrays": [{"name": "W", "dtype": "float64", "shape": [2]}]}
            ).encode(),
            b"123",
        ],
    ]
    try:
        for frames in messages:
            hostile.send_multipart(frames)
        net = CTRNN(12, 1, 1, seed=2, backend=distributed)
        expected = CTRNN(12, 1, 1, seed=2, backend="dense").loss_and_grad(x, y, **kwargs)
        assert_same(net.loss_and_grad(x, y, **kwargs), expected)
        wait_until(
            lambda: (
                distributed.pool.completed() == []
                and distributed.pool.rejected >= before + len(messages)
            ),
            30,
            "every hostile message to be rejected",
        )
        assert_same(net.loss_and_grad(x, y, **kwargs), expected)
    finally:
        hostile.close()
        context.term()


def test_a_worker_joining_mid_run_gets_the_parameters_and_work():
    x, y, kwargs, expected = workload(n=12, frames=20)
    expected = CTRNN(12, 1, 1, seed=2, backend="dense").loss_and_grad(x, y, **kwargs)
    backend = DistributedBackend(workers=1, threads=1, timeout=20.0, heartbeat=0.2)
    try:
        net = CTRNN(12, 1, 1, seed=2, backend=backend)
        assert_same(net.loss_and_grad(x, y, **kwargs), expected)
        # the CLI worker, as a user would start it on another machine
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rnnlab",
                "worker",
                "--connect",
                backend.endpoint,
                "--threads",
                "1",
                "--heartbeat",
                "0.2",
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            backend.pool.wait_for_workers(2, 60)
            batch_id, tasks = backend.submit(net._fit_problem(x, y, 0.1, None, 10, 5, None))
            done = backend.pool.wait(batch_id)
            assert len({r.worker for r in done.results}) == 2  # both workers got chunks
            assert_same(
                backend.combine(net._loss_problem(x, y, 0.1, None, 10, 5, None)[0], tasks, done),
                expected,
            )
        finally:
            backend.close()
            assert proc.wait(timeout=30) == 0  # the shutdown message stops the CLI worker
    finally:
        backend.close()


COORDINATOR = textwrap.dedent(
    """
    import json, os, signal, sys
    from rnnlab.ctrnn import CTRNN
    net = CTRNN(8, 1, 1, backend="distributed", workers=2, threads=1, heartbeat=0.2)
    print(json.dumps(net.backend.pool.workers), flush=True)
    if sys.argv[1] == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    elif sys.argv[1] == "raise":
        raise RuntimeError("coordinator crashed")
    # "exit": fall off the end without close()
    """
)


@pytest.mark.parametrize("how", ["exit", "raise", "crash"])
def test_no_worker_outlives_its_coordinator(how):
    proc = subprocess.Popen(
        [sys.executable, "-c", COORDINATOR, how],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    pids = json.loads(proc.stdout.readline())
    proc.stdout.close()
    proc.wait(timeout=60)
    assert len(pids) == 2
    wait_until(lambda: all(gone(pid) for pid in pids), 30, f"workers {pids} to exit")
