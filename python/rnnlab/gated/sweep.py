"""A resumable, parallel sweep over gated-RNN configurations, safe on a shared folder.

Folder layout (``SWEEP_DIR``)::

    configs.json                 training settings + every config (run id, arch id, arch, seed)
    data.json                    corpus size and its n-gram conditional entropies (orders 0-3)
    runs/<run id>/claim.<a>      attempt a's claim, created with O_CREAT|O_EXCL (host, pid, time)
    runs/<run id>/heartbeat.<a>  attempt a's heartbeat (rewritten atomically every few seconds)
    runs/<run id>/checkpoint.json + checkpoint-<step>.safetensors   the latest checkpoint
    runs/<run id>/result.json    the result, written atomically, with a SHA-256 of its payload
    runs/<run id>/failed.json    written when the attempts are used up
    runs/<run id>/result.corrupt.<a>  a result that failed its check (kept for inspection)

A run is *done* when ``result.json`` parses and its checksum matches; *failed* when
``failed.json`` exists; *running* when its newest claim has a fresh heartbeat; *stale* when that
heartbeat is older than ``stale_after_s`` (or the claiming process is gone, on this host); else
*pending*. A worker takes a pending run by creating ``claim.1`` and a stale one by creating
``claim.<a+1>``: exclusive creation lets exactly one process win each attempt, on any number of
machines sharing the folder (any file system where ``O_EXCL`` is atomic: local disks, NFSv3+).
After ``max_attempts`` the run is marked failed. A retried run resumes from its checkpoint.

Run ids: ``arch_id`` is the SHA-256 of the JSON of the sorted-key architecture fields (the seven
flags, ``n_layers``, ``state_size``, plus any non-default extra option), serialised with
Python's default separators exactly as upstream did, so the upstream ids reproduce and duplicate
architectures collapse; ``run_id = "<arch_id>-s<seed>"``.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import random
import socket
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnlab.atomic import write_json_atomic
from rnnlab.errors import ConfigError
from rnnlab.gated.model import UPSTREAM_FLAGS, LayerFlags

__all__ = [
    "Sweep",
    "architecture_id",
    "grid_configs",
    "load_grid_toml",
    "systematic_01_configs",
]

CONFIGS_FORMAT = "rnnlab.gated-sweep"
RESULT_FORMAT = "rnnlab.gated-result"
EXTRA_KEYS = ("always_swish", "additive_residual", "carried_forget_gate", "gate_bias")
ARCH_KEYS = (*UPSTREAM_FLAGS, "n_layers", "state_size")


def architecture_id(architecture: dict[str, Any]) -> str:
    """SHA-256 hex of ``json.dumps(arch, sort_keys=True)`` (upstream's exact serialisation)."""
    return hashlib.sha256(json.dumps(architecture, sort_keys=True).encode()).hexdigest()


def normalise_architecture(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate an architecture and drop extra options left at their defaults."""
    allowed = set(ARCH_KEYS) | set(EXTRA_KEYS) | {"embedding_size"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown architecture field; allowed: {sorted(allowed)}")
    for key in ("n_layers", "state_size"):
        value = raw.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key}: must be an integer >= 1, got {value!r}")
    flag_values = {k: raw[k] for k in (*UPSTREAM_FLAGS, *EXTRA_KEYS) if k in raw}
    flags = LayerFlags(**flag_values)  # validates
    arch: dict[str, Any] = {k: getattr(flags, k) for k in UPSTREAM_FLAGS}
    arch.update(flags.non_default_extras())
    arch["n_layers"] = raw["n_layers"]
    arch["state_size"] = raw["state_size"]
    embedding = raw.get("embedding_size")
    if embedding is not None and embedding != raw["state_size"]:
        if isinstance(embedding, bool) or not isinstance(embedding, int) or embedding < 1:
            raise ConfigError(f"embedding_size: must be an integer >= 1, got {embedding!r}")
        arch["embedding_size"] = embedding
    return arch


def make_config(arch: dict[str, Any], seed: int) -> dict[str, Any]:
    arch = normalise_architecture(arch)
    arch_id = architecture_id(arch)
    return {"run_id": f"{arch_id}-s{seed}", "arch_id": arch_id, "seed": seed, "arch": arch}


def systematic_01_configs() -> list[dict[str, Any]]:
    """The 432 architectures of upstream experiment 01, in upstream's order (note §3.1)."""
    configs = []
    for bits in itertools.product([True, False], repeat=len(UPSTREAM_FLAGS)):
        flags = dict(zip(UPSTREAM_FLAGS, bits, strict=False))
        if not (flags["use_new_state"] or flags["use_old_state"]):
            continue
        for n_layers in (1, 2, 3):
            for state_size in (32, 256):
                if state_size < 256 and not flags["use_residual"]:
                    continue
                configs.append(
                    make_config({**flags, "n_layers": n_layers, "state_size": state_size}, 0)
                )
    return configs


SYSTEMATIC_01_TRAINING = {"steps": 10_989, "batch_size": 256, "window": 1000, "log_every": 50}


def grid_configs(grid: dict[str, Any]) -> list[dict[str, Any]]:
    """Configs of a grid: ``{"grid": {field: [values]}, "exclude": [{field: value}], ...}``.

    Every field of :data:`ARCH_KEYS` (and the extra options, ``embedding_size``) may be listed;
    missing flags take their defaults; ``seeds`` (default ``[0]``) repeats each architecture.
    Combinations with both ``use_new_state`` and ``use_old_state`` false are always skipped.
    Each ``exclude`` entry drops the combinations that match all of its fields.
    """
    table = grid.get("grid")
    if not isinstance(table, dict) or not table:
        raise ConfigError("grid: a [grid] table of field = [values] is required")
    fields = {key: value if isinstance(value, list) else [value] for key, value in table.items()}
    seeds = fields.pop("seeds", [0])
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ConfigError(f"grid.seeds: a list of integers >= 0, got {seeds!r}")
    for key in ("n_layers", "state_size"):
        if key not in fields:
            raise ConfigError(f"grid.{key}: required (a list of integers)")
    excludes = grid.get("exclude", [])
    if not isinstance(excludes, list) or not all(isinstance(e, dict) for e in excludes):
        raise ConfigError("exclude: must be a list of tables ([[exclude]] in TOML)")
    names = list(fields)
    configs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for values in itertools.product(*(fields[n] for n in names)):
        raw = dict(zip(names, values, strict=False))
        if not raw.get("use_new_state", True) and not raw.get("use_old_state", False):
            continue
        if any(all(raw.get(k) == v for k, v in e.items()) for e in excludes):
            continue
        for seed in seeds:
            config = make_config(raw, seed)
            if config["run_id"] not in seen:
                seen.add(config["run_id"])
                configs.append(config)
    return configs


def load_grid_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"grid: no file at {str(file)!r}")
    try:
        return tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"grid: {file} is not valid TOML: {error}") from None


def _result_checksum(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class RunState:
    run_id: str
    status: str  # done | failed | running | stale | pending
    attempt: int  # number of the newest claim (0: none)
    result: dict[str, Any] | None = None
    corrupt: bool = False


class Sweep:
    """A sweep folder (see the module docstring for its layout)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.configs_path = self.path / "configs.json"
        self.runs = self.path / "runs"

    # ---------------------------------------------------------------------------- configuration
    def init(
        self,
        configs: Iterable[dict[str, Any]],
        training: dict[str, Any] | None = None,
        *,
        max_attempts: int = 3,
        stale_after_s: float = 120.0,
    ) -> int:
        """Create or extend ``configs.json``; returns how many configs were added."""
        from rnnlab.gated.train import TrainConfig

        if self.configs_path.exists():
            data = self.load()
            if (
                training is not None
                and TrainConfig.from_dict(training).as_dict() != data["training"]
            ):
                raise ConfigError(
                    f"training: differs from the settings already in {self.configs_path}; use "
                    "a new --dir for different training settings"
                )
        else:
            if (
                isinstance(max_attempts, bool)
                or not isinstance(max_attempts, int)
                or (max_attempts < 1)
            ):
                raise ConfigError(f"max_attempts: must be an integer >= 1, got {max_attempts!r}")
            data = {
                "format": CONFIGS_FORMAT,
                "version": 1,
                "training": TrainConfig.from_dict(training or {}).as_dict(),
                "max_attempts": max_attempts,
                "stale_after_s": float(stale_after_s),
                "configs": [],
            }
        known = {c["run_id"] for c in data["configs"]}
        added = 0
        for config in configs:
            if config["run_id"] not in known:
                data["configs"].append(config)
                known.add(config["run_id"])
                added += 1
        self.path.mkdir(parents=True, exist_ok=True)
        self.runs.mkdir(exist_ok=True)
        write_json_atomic(self.configs_path, data)
        return added

    def load(self) -> dict[str, Any]:
        if not self.configs_path.is_file():
            raise ConfigError(
                f"dir: no configs.json in {str(self.path)!r}; run `rnnlab sweep init` first"
            )
        data = json.loads(self.configs_path.read_text())
        if data.get("format") != CONFIGS_FORMAT:
            raise ConfigError(f"dir: {self.configs_path} is not an rnnlab sweep file")
        return data

    def training_config(self) -> Any:
        from rnnlab.gated.train import TrainConfig

        return TrainConfig.from_dict(self.load()["training"])

    # ---------------------------------------------------------------------------- run state
    def run_folder(self, run_id: str) -> Path:
        return self.runs / run_id

    def read_result(self, run_id: str) -> tuple[dict[str, Any] | None, bool]:
        """``(result, corrupt)``: the checked result, or ``None``; ``corrupt`` if one failed."""
        path = self.run_folder(run_id) / "result.json"
        if not path.exists():
            return None, False
        try:
            data = json.loads(path.read_text())
            payload = data["payload"]
            if data.get("format") != RESULT_FORMAT or data["sha256"] != _result_checksum(payload):
                return None, True
            if payload.get("run_id") != run_id:
                return None, True
            return payload, False
        except (OSError, ValueError, KeyError, TypeError):
            return None, True

    def _newest_attempt(self, folder: Path) -> int:
        attempts = [
            int(p.name.split(".", 1)[1])
            for p in folder.glob("claim.*")
            if p.name.split(".", 1)[1].isdigit()
        ]
        return max(attempts, default=0)

    def run_state(self, run_id: str, stale_after_s: float, now: float | None = None) -> RunState:
        folder = self.run_folder(run_id)
        result, corrupt = self.read_result(run_id)
        if result is not None:
            return RunState(run_id, "done", self._newest_attempt(folder), result)
        if (folder / "failed.json").exists():
            return RunState(run_id, "failed", self._newest_attempt(folder))
        attempt = self._newest_attempt(folder) if folder.exists() else 0
        if attempt == 0:
            return RunState(run_id, "pending", 0, corrupt=corrupt)
        if corrupt:  # the writer of an (atomic) result is finished with it: redo at once
            return RunState(run_id, "stale", attempt, corrupt=True)
        now = time.time() if now is None else now
        claim = folder / f"claim.{attempt}"
        try:
            info = json.loads(claim.read_text() or "{}")
        except (OSError, ValueError):
            info = {}
        beat = folder / f"heartbeat.{attempt}"
        try:
            last = beat.stat().st_mtime if beat.exists() else claim.stat().st_mtime
        except OSError:
            last = now
        same_host = info.get("host") == socket.gethostname()
        if same_host and isinstance(info.get("pid"), int) and not _pid_alive(info["pid"]):
            return RunState(run_id, "stale", attempt)
        if now - last > stale_after_s:
            return RunState(run_id, "stale", attempt)
        return RunState(run_id, "running", attempt)

    def states(self) -> list[RunState]:
        data = self.load()
        return [self.run_state(c["run_id"], data["stale_after_s"]) for c in data["configs"]]

    def try_claim(self, run_id: str, attempt: int, worker: str) -> bool:
        """Create ``claim.<attempt>`` exclusively; ``True`` if this process won it."""
        folder = self.run_folder(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(folder / f"claim.{attempt}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as file:
            json.dump(
                {
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "worker": worker,
                    "time": time.time(),
                    "attempt": attempt,
                },
                file,
            )
        return True

    def claim_next(
        self, worker: str, rng: random.Random, only: set[str] | None = None
    ) -> tuple[dict[str, Any], int] | None:
        """Claim one pending or stale run (marking over-limit stale runs failed), or ``None``.

        ``only`` restricts the choice to those run ids (the Ray executor's one run per task).
        """
        data = self.load()
        configs = [c for c in data["configs"] if only is None or c["run_id"] in only]
        rng.shuffle(configs)
        max_attempts = int(data["max_attempts"])
        for config in configs:
            state = self.run_state(config["run_id"], data["stale_after_s"])
            if state.status not in ("pending", "stale"):
                continue
            if state.corrupt:
                bad = self.run_folder(config["run_id"]) / "result.json"
                with contextlib.suppress(OSError):
                    os.replace(bad, bad.with_name(f"result.corrupt.{state.attempt}"))
            attempt = state.attempt + 1
            if attempt > max_attempts:
                write_json_atomic(
                    self.run_folder(config["run_id"]) / "failed.json",
                    {
                        "attempts": state.attempt,
                        "time": time.time(),
                        "reason": f"stale after {state.attempt} attempts (limit {max_attempts})",
                    },
                )
                continue
            if self.try_claim(config["run_id"], attempt, worker):
                return config, attempt
        return None

    def write_result(self, config: dict[str, Any], attempt: int, metrics: dict[str, Any]) -> None:
        payload = {
            "run_id": config["run_id"],
            "arch_id": config["arch_id"],
            "seed": config["seed"],
            "arch": config["arch"],
            "attempt": attempt,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "end_time": time.time(),
            **metrics,
        }
        write_json_atomic(
            self.run_folder(config["run_id"]) / "result.json",
            {"format": RESULT_FORMAT, "sha256": _result_checksum(payload), "payload": payload},
        )

    def results(self) -> list[dict[str, Any]]:
        data = self.load()
        found = []
        for config in data["configs"]:
            result, _ = self.read_result(config["run_id"])
            if result is not None:
                found.append(result)
        return found

    def data_summary(self) -> dict[str, Any]:
        """``data.json``: corpus size and n-gram entropies (computed once, then cached)."""
        path = self.path / "data.json"
        if path.is_file():
            try:
                return dict(json.loads(path.read_text()))
            except ValueError:
                pass
        from rnnlab.gated.data import load_corpus, ngram_conditional_entropies, split_bytes

        config = self.training_config()
        splits = split_bytes(load_corpus(config.data), config.split)
        entropies = ngram_conditional_entropies(splits.train, 3)
        summary = {
            "data": config.data,
            "train_bytes": int(splits.train.size),
            "validation_bytes": int(splits.validation.size),
            "test_bytes": int(splits.test.size),
            "ngram_conditional_entropy_nats": {str(k): v for k, v in entropies.items()},
        }
        write_json_atomic(path, summary)
        return summary


class Heartbeat:
    """A daemon thread rewriting ``heartbeat.<attempt>`` every ``interval_s`` seconds."""

    def __init__(self, path: Path, interval_s: float) -> None:
        self.path = path
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.step = 0

    def set_step(self, step: int) -> None:
        """Record the training step (reported in the next heartbeat)."""
        self.step = step

    def _beat(self) -> None:
        write_json_atomic(self.path, {"time": time.time(), "pid": os.getpid(), "step": self.step})

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._beat()

    def __enter__(self) -> Heartbeat:
        self._beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_worker(
    sweep_dir: str | os.PathLike[str],
    *,
    worker: str | None = None,
    max_runs: int | None = None,
    only: set[str] | None = None,
    progress: bool = False,
    threads: int | None = 1,
    heartbeat_s: float = 10.0,
    stack: int = 1,
) -> list[str]:
    """Claim and train runs until none is left to claim; returns the finished run ids.

        With ``stack > 1`` the worker claims up to ``stack`` runs of the same shape (``n_layers``,
        ``state_size``) and trains them together (:mod:`rnnlab.gated.stacked`; each run checkpoints
    in its own folder, in the format of a run trained alone).
    """
    import torch

    from rnnlab.gated.data import load_corpus
    from rnnlab.gated.stacked import stack_key, train_stacked
    from rnnlab.gated.train import remove_checkpoint, train_run

    if isinstance(stack, bool) or not isinstance(stack, int) or stack < 1:
        raise ConfigError(f"stack: must be an integer >= 1, got {stack!r}")
    if threads is not None:
        torch.set_num_threads(threads)
    sweep = Sweep(sweep_dir)
    config = sweep.training_config()
    worker = worker or f"{socket.gethostname()}:{os.getpid()}"
    rng = random.Random(f"{worker}-{time.time_ns()}")
    corpus = load_corpus(config.data)
    finished: list[str] = []
    while max_runs is None or len(finished) < max_runs:
        claimed = sweep.claim_next(worker, rng, only=only)
        if claimed is None:
            break
        group = [claimed]
        key = stack_key(claimed[0]["arch"])
        if stack > 1 and key is not None:
            same_shape = {
                c["run_id"]
                for c in sweep.load()["configs"]
                if stack_key(c["arch"]) == key and (only is None or c["run_id"] in only)
            }
            while len(group) < stack:
                more = sweep.claim_next(worker, rng, only=same_shape)
                if more is None:
                    break
                group.append(more)
        with contextlib.ExitStack() as beats:
            hearts = [
                beats.enter_context(
                    Heartbeat(sweep.run_folder(run["run_id"]) / f"heartbeat.{attempt}", heartbeat_s)
                )
                for run, attempt in group
            ]
            if len(group) == 1:
                run, _ = group[0]
                beat = hearts[0]
                all_metrics = [
                    train_run(
                        run["arch"],
                        config,
                        seed=run["seed"],
                        folder=sweep.run_folder(run["run_id"]),
                        progress=progress,
                        corpus=corpus,
                        on_checkpoint=beat.set_step,
                    )
                ]
            else:

                def beat_all(step: int, hearts: list[Heartbeat] = hearts) -> None:
                    for heart in hearts:
                        heart.set_step(step)

                all_metrics = train_stacked(
                    [run["arch"] for run, _ in group],
                    config,
                    seeds=[run["seed"] for run, _ in group],
                    corpus=corpus,
                    folders=[sweep.run_folder(run["run_id"]) for run, _ in group],
                    on_checkpoint=beat_all,
                )
        for (run, attempt), metrics in zip(group, all_metrics, strict=True):
            sweep.write_result(run, attempt, metrics)
            remove_checkpoint(sweep.run_folder(run["run_id"]))
            finished.append(run["run_id"])
            print(
                f"done {run['run_id']} attempt {attempt} val_loss {metrics['val_loss']:.4f}",
                flush=True,
            )
    return finished
