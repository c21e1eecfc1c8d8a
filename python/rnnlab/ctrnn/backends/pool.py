"""The coordinator side of the distributed backends: a pool of worker processes over ZeroMQ.

The coordinator binds one ROUTER socket (loopback and a port the kernel chooses, by default) and
every worker connects a DEALER to it, so any number of pools can run on one host. Work is
submitted in *batches* (one per train step): a batch is a list of tasks, each a list of chunk
groups, and completes when every task has a result. Liveness:

- workers send a heartbeat every ``heartbeat`` seconds and the coordinator pings them back;
- a worker that is silent for ``timeout`` seconds, whose local process has exited, or that holds
  a task for more than ``timeout`` seconds is taken off the task, and the task is re-sent to
  another worker (a silent or exited worker is forgotten; a slow one gets no new work until it
  speaks again), so a batch always completes with every chunk's gradient;
- replies for tasks that are no longer pending (already answered, from an old step or an old
  parameter version) are counted in ``late_replies`` and ignored;
- malformed messages are counted in ``rejected``, logged, and ignored;
- a worker that joins mid-run (``hello``) gets the current parameters with its first task.

Parameters travel only when a worker does not have the current version. ``close()`` (also run at
interpreter exit) tells every worker to shut down and reaps local processes; local workers also
die with the coordinator's process (Linux parent-death signal), and remote workers exit when the
coordinator has been silent for their idle timeout.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import subprocess
import sys
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from rnnlab.ctrnn.backends.chunks import ChunkGroup
from rnnlab.ctrnn.backends.wire import WireError, decode, encode
from rnnlab.errors import ConfigError, RnnlabError

__all__ = ["BatchResult", "TaskResult", "WorkerError", "WorkerPool", "is_loopback"]

log = logging.getLogger("rnnlab.ctrnn.backends")
GRAD_NAMES = ("W", "tau", "theta", "gain", "U", "V", "c")
PARAM_NAMES = ("W", "mask", "tau", "theta", "gain", "U", "V", "c")
MAX_ATTEMPTS = 4


class WorkerError(RnnlabError, RuntimeError):
    """The pool could not get a batch computed (no live worker within the timeout, or a task that
    failed on every worker)."""


def is_loopback(endpoint: str) -> bool:
    """Whether a ``tcp://HOST:PORT`` (or ``ipc://``/``inproc://``) endpoint stays on this host."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = endpoint[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


@dataclass
class TaskResult:
    """One task's weighted loss, gradients and start-state gradients (one array per group)."""

    loss: float
    grads: dict[str, np.ndarray]
    start_grads: list[np.ndarray]
    worker: bytes


@dataclass
class BatchResult:
    batch: int
    param_version: int
    results: list[TaskResult]


@dataclass
class _Task:
    batch: int
    index: int
    task_id: int
    groups: list[ChunkGroup]
    worker: bytes | None = None
    sent_at: float = 0.0
    attempts: int = 0
    result: TaskResult | None = None


@dataclass
class _Worker:
    identity: bytes
    pid: int = 0
    threads: int = 1
    known_version: int | None = None
    last_seen: float = 0.0
    last_ping: float = 0.0
    stalled: bool = False
    tasks: set[int] = field(default_factory=set)


@dataclass
class _Batch:
    batch: int
    param_version: int
    tasks: list[_Task]


def _close_pool(
    socket: zmq.Socket,
    context: zmq.Context,
    processes: list[subprocess.Popen[bytes]],
    workers: dict[bytes, Any],
    authenticator: list[Any],
) -> None:
    for identity in list(workers):
        with contextlib.suppress(zmq.ZMQError):
            socket.send_multipart([identity, *encode("shutdown")], flags=zmq.NOBLOCK)
    deadline = time.monotonic() + 3.0
    for proc in processes:
        try:
            proc.wait(timeout=max(0.05, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    socket.close(linger=0)
    for auth in authenticator:
        auth.stop()
    context.term()


class WorkerPool:
    """A ROUTER socket, the workers attached to it, and the batches in flight.

    Args:
        workers: local worker processes to spawn (``rnnlab worker --connect ...``); 0 for none.
        endpoint: where to bind; default ``tcp://127.0.0.1:*`` (a free loopback port). A
            non-loopback address needs ``curve_keys``.
        curve_keys: a folder made by ``rnnlab worker keygen``: encrypt everything and admit
            only the authorised workers (spawned local workers get the same folder).
        threads: Rust threads per local worker (default: cores / workers, at least 1).
        timeout: seconds after which a silent worker is dropped and a task is re-sent.
        heartbeat: seconds between heartbeats (both directions).
        start_timeout: seconds to wait for the spawned workers to say hello.
    """

    def __init__(
        self,
        workers: int = 0,
        *,
        endpoint: str = "tcp://127.0.0.1:*",
        threads: int | None = None,
        timeout: float = 30.0,
        heartbeat: float = 0.5,
        start_timeout: float = 60.0,
        curve_keys: str | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
            raise ConfigError(f"workers: must be an integer >= 0, got {workers!r}")
        if not is_loopback(endpoint) and curve_keys is None:
            raise ConfigError(
                f"endpoint: {endpoint!r} is not a loopback address; binding it would let anyone "
                "on the network submit or receive work. Make CURVE keys with `rnnlab worker "
                "keygen DIR` and pass curve_keys=DIR, or bind tcp://127.0.0.1:PORT."
            )
        for name, value in (("timeout", timeout), ("heartbeat", heartbeat)):
            if not (isinstance(value, (int, float)) and value > 0):
                raise ConfigError(f"{name}: must be a number of seconds > 0, got {value!r}")
        self.timeout = float(timeout)
        self.heartbeat = float(heartbeat)
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._authenticator: list[Any] = []
        self.curve_keys = None if curve_keys is None else os.fspath(curve_keys)
        if self.curve_keys is not None:
            from rnnlab.ctrnn.backends.curve import load_coordinator_keys, secure_server

            keys = load_coordinator_keys(self.curve_keys)
            self._authenticator.append(secure_server(self._context, self._socket, keys))
        self._socket.bind(endpoint)
        self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self._workers: dict[bytes, _Worker] = {}
        self._processes: list[subprocess.Popen[bytes]] = []
        self._process_of: dict[int, subprocess.Popen[bytes]] = {}
        self._batches: dict[int, _Batch] = {}
        self._tasks: dict[int, _Task] = {}
        self._queue: collections.deque[int] = collections.deque()
        self._next_batch = 0
        self._next_task = 0
        self._params: dict[str, np.ndarray] = {}
        self._param_version = -1
        self._model: dict[str, Any] = {}
        self.rejected = 0
        self.late_replies = 0
        self.resent = 0
        self.dropped_workers = 0
        #: test hook: called after a batch's tasks have been sent.
        self.on_dispatch: Any = None
        self._closed = False
        # Runs on close(), on garbage collection, and at interpreter exit.
        self._finalizer = weakref.finalize(
            self,
            _close_pool,
            self._socket,
            self._context,
            self._processes,
            self._workers,
            self._authenticator,
        )
        if workers:
            per_worker = threads or max(1, (os.cpu_count() or 1) // workers)
            self.spawn(workers, threads=per_worker)
            self.wait_for_workers(workers, start_timeout)

    # ------------------------------------------------------------------ membership
    def spawn(self, count: int, *, threads: int = 1) -> list[int]:
        """Start ``count`` local worker processes connected to this pool; returns their pids."""
        pids = []
        for _ in range(count):
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "rnnlab.ctrnn.backends.worker",
                    "--connect",
                    self.endpoint,
                    "--threads",
                    str(threads),
                    "--parent-pid",
                    str(os.getpid()),
                    "--heartbeat",
                    str(self.heartbeat),
                    # they die with this process (parent-death signal), so no idle timeout:
                    # a coordinator may pause between steps for as long as it likes
                    "--idle-timeout",
                    "0",
                    *(["--curve-keys", self.curve_keys] if self.curve_keys else []),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
            )
            self._processes.append(proc)
            self._process_of[proc.pid] = proc
            pids.append(proc.pid)
        return pids

    @property
    def workers(self) -> list[int]:
        """Pids of the live workers (as they reported them)."""
        return [w.pid for w in self._workers.values()]

    def wait_for_workers(self, count: int, timeout: float) -> None:
        """Block until ``count`` workers have said hello (at most ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while len(self._workers) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError(
                    f"only {len(self._workers)} of {count} workers connected to {self.endpoint} "
                    f"within {timeout} s"
                )
            self._progress(min(left, self.heartbeat))

    def _drop(self, worker: _Worker, why: str) -> None:
        log.warning("worker pid %s dropped: %s", worker.pid, why)
        self.dropped_workers += 1
        self._workers.pop(worker.identity, None)
        for task_id in sorted(worker.tasks):
            self._requeue(task_id)
        worker.tasks.clear()
        proc = self._process_of.get(worker.pid)
        if proc is not None and proc.poll() is None and why.startswith("silent"):
            proc.kill()
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5.0)

    def _requeue(self, task_id: int) -> None:
        task = self._tasks.get(task_id)
        if task is None or task.result is not None:
            return
        task.worker = None
        self.resent += 1
        self._queue.appendleft(task_id)

    # ------------------------------------------------------------------ work
    def set_params(
        self, params: dict[str, np.ndarray], version: int, model: dict[str, Any]
    ) -> None:
        """The parameters (and model settings) that tasks from now on are computed with."""
        self._params = {name: params[name] for name in PARAM_NAMES}
        self._param_version = int(version)
        self._model = dict(model)

    def submit(self, tasks: list[list[ChunkGroup]]) -> int:
        """Queue one batch of tasks at the current parameter version; returns the batch id."""
        batch_id = self._next_batch
        self._next_batch += 1
        batch = _Batch(batch_id, self._param_version, [])
        for index, groups in enumerate(tasks):
            task = _Task(batch_id, index, self._next_task, groups)
            self._next_task += 1
            batch.tasks.append(task)
            self._tasks[task.task_id] = task
            self._queue.append(task.task_id)
        self._batches[batch_id] = batch
        self._dispatch()
        if self.on_dispatch is not None:
            self.on_dispatch()
        return batch_id

    def wait(self, batch_id: int) -> BatchResult:
        """Block until batch ``batch_id`` has every task's result."""
        started = time.monotonic()
        while True:
            done = self._take_if_done(batch_id)
            if done is not None:
                return done
            if not self._workers and time.monotonic() - started > self.timeout:
                raise WorkerError(f"no live worker on {self.endpoint} for {self.timeout} s")
            if self._workers:
                started = time.monotonic()
            self._progress(self.heartbeat)

    def completed(self, block: bool = False) -> list[BatchResult]:
        """Batches finished so far (removed from the pool), in submission order; with ``block``,
        wait until at least one is finished."""
        while True:
            self._progress(self.heartbeat if block else 0.0)
            done = [r for b in sorted(self._batches) if (r := self._take_if_done(b)) is not None]
            if done or not block:
                return done

    @property
    def in_flight(self) -> int:
        return len(self._batches)

    def _take_if_done(self, batch_id: int) -> BatchResult | None:
        batch = self._batches[batch_id]
        if any(t.result is None for t in batch.tasks):
            return None
        del self._batches[batch_id]
        for t in batch.tasks:
            self._tasks.pop(t.task_id, None)
        return BatchResult(
            batch_id, batch.param_version, [t.result for t in batch.tasks if t.result]
        )

    def _send_task(self, worker: _Worker, task: _Task) -> None:
        batch = self._batches[task.batch]
        arrays: dict[str, np.ndarray] = {}
        include = worker.known_version != batch.param_version
        if include:
            if batch.param_version != self._param_version:
                # The batch's parameters are gone (a newer version was set): it cannot be
                # recomputed exactly, so it is computed at the current version and marked so.
                batch.param_version = self._param_version
            arrays.update(self._params)
        groups = []
        for i, group in enumerate(task.groups):
            arrays[f"g{i}.starts"] = group.starts
            arrays[f"g{i}.x"] = group.x
            arrays[f"g{i}.target"] = group.target
            arrays[f"g{i}.dts"] = group.dts
            groups.append({"weight": group.weight})
        frames = encode(
            "work",
            arrays,
            step=task.batch,
            task=task.task_id,
            param_version=batch.param_version,
            groups=groups,
            **self._model,
        )
        self._socket.send_multipart([worker.identity, *frames])
        if include:
            worker.known_version = batch.param_version
        task.worker = worker.identity
        task.sent_at = time.monotonic()
        task.attempts += 1
        worker.tasks.add(task.task_id)

    def _dispatch(self) -> None:
        """Give queued tasks to workers: idle ones first, then the least loaded."""
        while self._queue:
            candidates = [w for w in self._workers.values() if not w.stalled]
            if not candidates:
                return
            worker = min(candidates, key=lambda w: (len(w.tasks), w.pid))
            task_id = self._queue.popleft()
            task = self._tasks.get(task_id)
            if task is None or task.result is not None:
                continue
            if task.attempts >= MAX_ATTEMPTS:
                raise WorkerError(f"task {task_id} failed on {task.attempts} attempts")
            self._send_task(worker, task)

    # ------------------------------------------------------------------ event loop
    def _progress(self, timeout: float) -> None:
        """Handle what has arrived (waiting at most ``timeout`` s), then run the liveness checks."""
        if self._socket.poll(int(timeout * 1000)):
            while True:
                try:
                    frames = self._socket.recv_multipart(flags=zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._handle(frames[0], frames[1:])
        self._check_liveness()
        self._dispatch()

    def _handle(self, identity: bytes, frames: list[bytes]) -> None:
        now = time.monotonic()
        try:
            message = decode(frames, ("hello", "heartbeat", "result", "error"))
        except WireError as exc:
            self.rejected += 1
            log.warning("rejected a message from %r: %s", identity[:8], exc)
            return
        worker = self._workers.get(identity)
        if message.kind == "hello" or (worker is None and message.kind == "heartbeat"):
            if worker is None:
                worker = _Worker(identity)
                self._workers[identity] = worker
            worker.pid = int(message.header.get("pid", 0))
            worker.threads = int(message.header.get("threads", 1))
            worker.known_version = None
        if worker is None:
            # A result or error from a worker that was dropped: too late.
            self.late_replies += 1
            return
        worker.last_seen = now
        if message.kind == "result":
            worker.stalled = False
            self._accept(worker, message)
        elif message.kind == "error":
            task_id = int(message.header["task"])
            log.warning(
                "worker pid %s failed task %s: %s", worker.pid, task_id, message.header["message"]
            )
            worker.known_version = None
            if task_id in worker.tasks:
                worker.tasks.discard(task_id)
                self._requeue(task_id)

    def _accept(self, worker: _Worker, message: Any) -> None:
        task_id = int(message.header["task"])
        worker.tasks.discard(task_id)
        task = self._tasks.get(task_id)
        if (
            task is None
            or task.result is not None
            or int(message.header["step"]) != task.batch
            or int(message.header["param_version"]) != self._batches[task.batch].param_version
        ):
            self.late_replies += 1
            return
        try:
            grads = {}
            for name in GRAD_NAMES:
                grad = message.arrays[name]
                if grad.shape != self._params[name].shape:
                    raise WireError(f"gradient {name} has shape {grad.shape}")
                grads[name] = grad
            starts = []
            for i, group in enumerate(task.groups):
                s = message.arrays[f"g{i}.s0"]
                if s.shape != group.starts.shape:
                    raise WireError(f"start gradient {i} has shape {s.shape}")
                starts.append(s)
        except (KeyError, WireError) as exc:
            self.rejected += 1
            log.warning("rejected a result from worker pid %s: %s", worker.pid, exc)
            self._requeue(task_id)
            return
        task.result = TaskResult(float(message.header["loss"]), grads, starts, worker.identity)
        if task.worker is not None and task.worker != worker.identity:
            other = self._workers.get(task.worker)
            if other is not None:
                other.tasks.discard(task_id)

    def _check_liveness(self) -> None:
        now = time.monotonic()
        for worker in list(self._workers.values()):
            proc = self._process_of.get(worker.pid)
            if proc is not None and proc.poll() is not None:
                self._drop(worker, f"process exited with {proc.returncode}")
                continue
            if now - worker.last_seen > self.timeout:
                self._drop(worker, f"silent for {now - worker.last_seen:.1f} s")
                continue
            if now - worker.last_ping >= self.heartbeat:
                self._socket.send_multipart([worker.identity, *encode("ping")])
                worker.last_ping = now
            for task_id in sorted(worker.tasks):
                task = self._tasks.get(task_id)
                if task is not None and task.result is None and now - task.sent_at > self.timeout:
                    log.warning("worker pid %s stalled on task %s; re-sending", worker.pid, task_id)
                    worker.stalled = True
                    worker.tasks.discard(task_id)
                    self._requeue(task_id)

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Shut every worker down and reap the local processes (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._finalizer()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
