"""Online training of a CTRNN on a live stream: one-step-ahead prediction, truncated BPTT.

The seed's prototype ("proto v2") integrated the network from the previous frame's time to the
current one with the previous value as input and trained it to output the current value. This
module does that properly: the stream is normalised online (running mean and standard deviation,
so a 90–110 raw scale does not defeat the network), the gradient is the exact truncated BPTT of
the Rust kernel over a window of recent frames, memory is bounded over any run length, and the
trainer checkpoints atomically and resumes.

Example::

    net = CTRNN(48, n_inputs=2, n_outputs=2, activation="tanh", readout="linear", seed=0)
    trainer = OnlineTrainer(net, substeps=10, window=100, update_every=5, lr=3e-3)
    for times, values in feed:             # chunks: times [F], values [F, 2]
        trainer.process(times, values)
    print(trainer.metrics())

Prediction protocol (``predict_ahead = k``): when frame j (time t_j, value v_j) arrives, the
network is advanced over [t_{j−1}, t_j] with input v_{j−1}; its output at t_j is the prediction
of v_{j−1+k}. With k = 1 (the seed's setting) it is scored against v_j at once; with k > 1 it is
scored, and becomes trainable, when v_{j−1+k} arrives. Inputs, predictions and targets are
normalised with the statistics known *before* the frame's own value, so no prediction sees its
target. The naive baseline ("repeat the last value") is scored the same way.
"""

from __future__ import annotations

import collections
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rnnlab import _native
from rnnlab.atomic import write_npz_atomic
from rnnlab.ctrnn.backends import Backend
from rnnlab.ctrnn.model import CTRNN, OPTIMIZERS
from rnnlab.errors import ConfigError, ShapeError

__all__ = ["OnlineConfig", "OnlineTrainer", "RunningNormalizer"]

CHECKPOINT_FORMAT = "rnnlab.online-trainer"
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class OnlineConfig:
    """Settings of an :class:`OnlineTrainer` (saved in checkpoints)."""

    predict_ahead: int = 1
    substeps: int = 10
    window: int = 100
    truncation: int | None = None
    update_every: int = 1
    lr: float = 1e-3
    optimizer: str = "adam"
    clip_norm: float | None = 1.0
    normalize: bool = True
    history: int = 100_000
    checkpoint_every: int | None = None

    def validate(self) -> None:
        for field, low in (
            ("predict_ahead", 1),
            ("substeps", 1),
            ("window", 1),
            ("update_every", 1),
        ):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{field}: must be an integer >= {low}, got {value!r}")
        if self.truncation is not None and (
            not isinstance(self.truncation, int) or self.truncation < 1
        ):
            raise ConfigError(
                f"truncation: must be None or an integer >= 1, got {self.truncation!r}"
            )
        if not (isinstance(self.history, int) and self.history >= 1):
            raise ConfigError(f"history: must be an integer >= 1, got {self.history!r}")
        if self.checkpoint_every is not None and not (
            isinstance(self.checkpoint_every, int) and self.checkpoint_every >= 1
        ):
            raise ConfigError(
                f"checkpoint_every: must be None or an integer >= 1, got {self.checkpoint_every!r}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"optimizer: unknown value {self.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}"
            )
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr: must be finite and > 0, got {self.lr!r}")


class RunningNormalizer:
    """Per-channel running mean and standard deviation (Welford's algorithm).

    Until two values have been seen the scale is 1; the standard deviation is floored at
    ``floor`` so a constant channel does not divide by zero.
    """

    def __init__(self, channels: int, enabled: bool = True, floor: float = 1e-6) -> None:
        self.enabled = enabled
        self.floor = floor
        self.count = 0
        self.mean = np.zeros(channels)
        self.m2 = np.zeros(channels)

    def update(self, value: NDArray[np.float64]) -> None:
        self.count += 1
        delta = value - self.mean
        self.mean = self.mean + delta / self.count
        self.m2 = self.m2 + delta * (value - self.mean)

    @property
    def scale(self) -> NDArray[np.float64]:
        if not self.enabled or self.count < 2:
            return np.ones_like(self.mean)
        return np.maximum(np.sqrt(self.m2 / (self.count - 1)), self.floor)

    @property
    def center(self) -> NDArray[np.float64]:
        return self.mean if self.enabled and self.count >= 1 else np.zeros_like(self.mean)

    def state(self) -> dict[str, np.ndarray]:
        return {"count": np.array(self.count), "mean": self.mean, "m2": self.m2}

    def restore(self, state: dict[str, np.ndarray]) -> None:
        self.count = int(state["count"])
        self.mean = np.array(state["mean"], dtype=np.float64)
        self.m2 = np.array(state["m2"], dtype=np.float64)


class _Ring:
    """A fixed-capacity ring of rows (oldest overwritten), read back in arrival order."""

    def __init__(self, capacity: int, width: int) -> None:
        self.data = np.zeros((capacity, width))
        self.capacity = capacity
        self.size = 0
        self.head = 0

    def push(self, row: ArrayLike) -> None:
        self.data[self.head] = row
        self.head = (self.head + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def ordered(self) -> NDArray[np.float64]:
        if self.size < self.capacity:
            return self.data[: self.size].copy()
        return np.concatenate([self.data[self.head :], self.data[: self.head]])


class OnlineTrainer:
    """Train ``net`` online, one-step-ahead, on frames as they arrive.

    Args:
        net: a CTRNN with ``n_inputs == n_outputs ==`` the number of stream channels (any
            backend: only ``run`` and ``loss_and_grad`` are used).
        predict_ahead: k, the prediction horizon in frames.
        substeps: integrator substeps per frame.
        window: frames of truncated BPTT per update (the most recent scored frames).
        truncation: cut the gradient every this many frames inside the window (None = whole
            window).
        update_every: an optimiser step every this many frames.
        lr, optimizer, clip_norm: the optimiser (Rust Adam or SGD) and gradient-norm clipping.
        normalize: online normalisation of the stream (on by default).
        history: how many frames of predictions, targets and losses are kept (ring buffers).
        checkpoint_every, checkpoint_path: write a checkpoint atomically every N frames.
        loss_fn: loss injection: ``loss_fn(predictions, targets) -> G`` (all ``[window,
            n_out]``, normalised units) returns ∂L/∂prediction for every frame of the update
            window, and the update follows ``net.loss_and_grad(..., output_grad=G)`` instead
            of the mean squared error. Not saved in checkpoints (pass it to :meth:`resume`).
    """

    def __init__(
        self,
        net: CTRNN,
        *,
        predict_ahead: int = 1,
        substeps: int = 10,
        window: int = 100,
        truncation: int | None = None,
        update_every: int = 1,
        lr: float = 1e-3,
        optimizer: str = "adam",
        clip_norm: float | None = 1.0,
        normalize: bool = True,
        history: int = 100_000,
        checkpoint_every: int | None = None,
        checkpoint_path: str | os.PathLike[str] | None = None,
        loss_fn: Callable[[NDArray[np.float64], NDArray[np.float64]], ArrayLike] | None = None,
    ) -> None:
        if loss_fn is not None and not callable(loss_fn):
            raise ConfigError(f"loss_fn: must be callable or None, got {loss_fn!r}")
        self.loss_fn = loss_fn
        self.config = OnlineConfig(
            predict_ahead=predict_ahead,
            substeps=substeps,
            window=window,
            truncation=truncation,
            update_every=update_every,
            lr=lr,
            optimizer=optimizer,
            clip_norm=clip_norm,
            normalize=normalize,
            history=history,
            checkpoint_every=checkpoint_every,
        )
        self.config.validate()
        if net.n_inputs != net.n_outputs:
            raise ConfigError(
                f"net: one-step-ahead prediction needs n_inputs == n_outputs (the channel count), "
                f"got {net.n_inputs} and {net.n_outputs}"
            )
        if checkpoint_every is not None and checkpoint_path is None:
            raise ConfigError("checkpoint_path: required when checkpoint_every is set")
        self.net = net
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.channels = net.n_inputs
        self._parameters = net.trainable_vector()
        self._optimizer = _native.Optimizer(
            optimizer, self._parameters.size, lr, clip_norm=clip_norm
        )
        self.normalizer = RunningNormalizer(self.channels, enabled=normalize)
        c, n = self.channels, net.n_neurons
        # Scored frames available for training: input, duration, start state, target.
        self._window_inputs = _Ring(window, c)
        self._window_durations = _Ring(window, 1)
        self._window_starts = _Ring(window, n)
        self._window_targets = _Ring(window, c)
        # Frames whose target has not arrived yet (predict_ahead > 1).
        self._pending: collections.deque[tuple[np.ndarray, float, np.ndarray, np.ndarray]] = (
            collections.deque()
        )
        # The last k + 1 values: the oldest is what "repeat the last value" predicts.
        self._recent_values: collections.deque[np.ndarray] = collections.deque(
            maxlen=predict_ahead + 1
        )
        # Records (bounded).
        self._record_time = _Ring(history, 1)
        self._record_prediction = _Ring(history, c)
        self._record_target = _Ring(history, c)
        self._record_loss = _Ring(history, 1)
        self._record_baseline = _Ring(history, 1)
        self._update_losses = _Ring(history, 1)
        self.state = np.zeros(n)
        #: When False, frames are still predicted and scored but nothing is learned (held-back
        #: evaluation with frozen weights).
        self.learning = True
        self.last_time: float | None = None
        self.last_value: np.ndarray | None = None
        self.frames = 0
        self.scored = 0
        self.updates = 0
        self.skipped = 0
        self._since_update = 0
        self._since_checkpoint = 0
        self._seconds = 0.0

    # ------------------------------------------------------------------ stream input
    def process(self, times: ArrayLike, values: ArrayLike) -> None:
        """Consume a chunk of frames: ``times`` [F] (seconds, increasing), ``values`` [F, C].

        The result does not depend on how the stream is cut into chunks.
        """
        started = time.perf_counter()
        t = np.atleast_1d(np.asarray(times, dtype=np.float64))
        v = np.asarray(values, dtype=np.float64)
        if v.ndim == 1:
            v = v[None, :] if t.size == 1 else v[:, None]
        if v.shape != (t.size, self.channels):
            raise ShapeError(
                f"values: expected shape ({t.size}, {self.channels}) for {t.size} frames of "
                f"{self.channels} channels, got {np.shape(values)}"
            )
        if not np.all(np.isfinite(v)) or not np.all(np.isfinite(t)):
            raise ShapeError("values/times: must be finite")
        every = self.config.checkpoint_every
        for k in range(t.size):
            if self._frame(float(t[k]), v[k]) and every is not None:
                self._since_checkpoint += 1
                if self._since_checkpoint >= every:
                    self.save_checkpoint()
        self._seconds += time.perf_counter() - started

    def step(self, t: float, value: ArrayLike) -> None:
        """Consume one frame (time in seconds, value of shape [C])."""
        self.process([t], np.asarray(value, dtype=np.float64).reshape(1, -1))

    def _frame(self, t: float, value: NDArray[np.float64]) -> bool:
        """Consume one frame; False if it was skipped."""
        cfg = self.config
        if self.last_time is not None and t <= self.last_time:
            self.skipped += 1  # duplicate or out-of-order time stamp: nothing to integrate
            return False
        self.frames += 1
        self._recent_values.append(value)
        if self.last_time is None or self.last_value is None:
            self.normalizer.update(value)
            self.last_time, self.last_value = t, value
            return True
        center, scale = self.normalizer.center, self.normalizer.scale
        x = (self.last_value - center) / scale
        duration = t - self.last_time
        start = self.state
        y = self.net.run(x[None, :], dt=duration, substeps=cfg.substeps, s0=start)[0].astype(
            np.float64
        )
        self.state = np.asarray(self.net.state, dtype=np.float64)
        # Output of this frame predicts v_{j-1+k}; with k = 1 that is `value`.
        self._pending.append((x, duration, start, y))
        if len(self._pending) == cfg.predict_ahead:
            x_p, d_p, s_p, y_p = self._pending.popleft()
            target = (value - center) / scale
            baseline = (self._recent_values[0] - center) / scale
            self._score(t, y_p, target, baseline, center, scale)
            if self.learning:
                self._window_inputs.push(x_p)
                self._window_durations.push([d_p])
                self._window_starts.push(s_p)
                self._window_targets.push(target)
        self.normalizer.update(value)
        self.last_time, self.last_value = t, value
        if not self.learning:
            return True
        self._since_update += 1
        if self._since_update >= cfg.update_every and self._window_inputs.size > 0:
            self._update()
        return True

    def _score(
        self,
        t: float,
        prediction: NDArray[np.float64],
        target: NDArray[np.float64],
        baseline: NDArray[np.float64],
        center: NDArray[np.float64],
        scale: NDArray[np.float64],
    ) -> None:
        self.scored += 1
        self._record_time.push([t])
        self._record_prediction.push(prediction * scale + center)
        self._record_target.push(target * scale + center)
        self._record_loss.push([float(np.mean((prediction - target) ** 2))])
        self._record_baseline.push([float(np.mean((baseline - target) ** 2))])

    def _update(self) -> None:
        cfg = self.config
        self._since_update = 0
        inputs = self._window_inputs.ordered()
        durations = self._window_durations.ordered()[:, 0]
        start = self._window_starts.ordered()[0]
        targets = self._window_targets.ordered()
        if self.loss_fn is None:
            loss, grads = self.net.loss_and_grad(
                inputs,
                targets,
                dt=durations,
                substeps=cfg.substeps,
                truncation=cfg.truncation,
                s0=start,
            )
        else:
            running = self.net.state
            predictions = self.net.run(inputs, dt=durations, substeps=cfg.substeps, s0=start)
            self.net.state = running
            injected = np.asarray(self.loss_fn(np.asarray(predictions), targets))
            _, grads = self.net.loss_and_grad(
                inputs,
                None,
                dt=durations,
                substeps=cfg.substeps,
                truncation=cfg.truncation,
                s0=start,
                output_grad=injected,
            )
            loss = float(np.mean((predictions - targets) ** 2))
        gradient = self.net.trainable_gradient(self._parameters, grads)
        self._optimizer.step(self._parameters, gradient)
        self.net.set_trainable_vector(self._parameters)
        self.updates += 1
        self._update_losses.push([loss])

    # ------------------------------------------------------------------ results
    def history(self) -> dict[str, NDArray[np.float64]]:
        """The kept records in arrival order: time, prediction, target (raw units), loss and
        baseline loss (normalised units), and the loss of each update's window."""
        return {
            "time": self._record_time.ordered()[:, 0],
            "prediction": self._record_prediction.ordered(),
            "target": self._record_target.ordered(),
            "loss": self._record_loss.ordered()[:, 0],
            "baseline_loss": self._record_baseline.ordered()[:, 0],
            "update_loss": self._update_losses.ordered()[:, 0],
        }

    def metrics(self, last: int | None = None) -> dict[str, Any]:
        """Summary over the last ``last`` scored frames (default: all kept)."""
        h = self.history()
        k = h["loss"].size if last is None else min(last, h["loss"].size)
        loss = h["loss"][-k:] if k else np.zeros(0)
        base = h["baseline_loss"][-k:] if k else np.zeros(0)
        return {
            "frames": self.frames,
            "scored": self.scored,
            "updates": self.updates,
            "skipped": self.skipped,
            "frames_per_second": self.frames / self._seconds if self._seconds > 0 else None,
            "evaluated_frames": int(k),
            "mse": float(loss.mean()) if k else None,
            "baseline_mse": float(base.mean()) if k else None,
        }

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the model, optimiser, normaliser, training window and stream position to one
        ``.npz`` (atomic; no pickle). Records (history) are not part of a checkpoint."""
        target = Path(path) if path is not None else self.checkpoint_path
        if target is None:
            raise ConfigError("checkpoint_path: no path given and none configured")
        self._since_checkpoint = 0
        first, second, steps = self._optimizer.state()
        meta = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": asdict(self.config),
            "frames": self.frames,
            "scored": self.scored,
            "updates": self.updates,
            "skipped": self.skipped,
            "since_update": self._since_update,
            "since_checkpoint": self._since_checkpoint,
            "last_time": self.last_time,
            "optimizer_steps": int(steps),
            "pending": len(self._pending),
        }
        arrays: dict[str, np.ndarray] = self.net.to_arrays(prefix="model.")
        arrays.update(
            {
                "trainer.metadata": np.array(json.dumps(meta, sort_keys=True)),
                "trainer.state": self.state,
                "trainer.parameters": self._parameters,
                "trainer.first_moment": first,
                "trainer.second_moment": second,
                "trainer.last_value": (np.zeros(0) if self.last_value is None else self.last_value),
                "trainer.recent_values": np.array(list(self._recent_values)).reshape(
                    -1, self.channels
                ),
            }
        )
        for name, ring in (
            ("inputs", self._window_inputs),
            ("durations", self._window_durations),
            ("starts", self._window_starts),
            ("targets", self._window_targets),
        ):
            arrays[f"trainer.window.{name}"] = ring.ordered()
        for k, (x, d, s, y) in enumerate(self._pending):
            arrays[f"trainer.pending.{k}"] = np.concatenate([x, [d], s, y])
        for name, value in self.normalizer.state().items():
            arrays[f"trainer.normalizer.{name}"] = value
        return write_npz_atomic(target, arrays)

    @classmethod
    def resume(
        cls,
        path: str | os.PathLike[str],
        checkpoint_path: str | os.PathLike[str] | None = None,
        loss_fn: Callable[[NDArray[np.float64], NDArray[np.float64]], ArrayLike] | None = None,
        backend: str | Backend | None = None,
        **backend_options: Any,
    ) -> OnlineTrainer:
        """Rebuild a trainer from :meth:`save_checkpoint`; it continues exactly where it was.

        The network gets the backend it was saved with (e.g. ``threaded`` with 2 threads, or
        ``distributed`` with 2 local workers, which are spawned again) unless ``backend`` names
        another one (with ``backend_options``).
        """
        with np.load(path, allow_pickle=False) as data:
            arrays = dict(data)
        if "trainer.metadata" not in arrays:
            raise ConfigError(f"{path}: not an rnnlab online-trainer checkpoint")
        meta = json.loads(str(arrays["trainer.metadata"]))
        if meta.get("format") != CHECKPOINT_FORMAT or meta.get("version") != CHECKPOINT_VERSION:
            raise ConfigError(
                f"{path}: checkpoint format {meta.get('format')!r} version {meta.get('version')!r}"
                f"; this rnnlab reads {CHECKPOINT_FORMAT!r} version {CHECKPOINT_VERSION}"
            )
        net = CTRNN.from_arrays(
            arrays, prefix="model.", source=str(path), backend=backend, **backend_options
        )
        trainer = cls(
            net,
            **meta["config"],
            checkpoint_path=checkpoint_path if checkpoint_path is not None else path,
            loss_fn=loss_fn,
        )
        trainer._parameters = np.array(arrays["trainer.parameters"], dtype=np.float64)
        trainer._optimizer.restore(
            np.ascontiguousarray(arrays["trainer.first_moment"]),
            np.ascontiguousarray(arrays["trainer.second_moment"]),
            int(meta["optimizer_steps"]),
        )
        trainer.state = np.array(arrays["trainer.state"], dtype=np.float64)
        last_value = arrays["trainer.last_value"]
        trainer.last_value = None if last_value.size == 0 else np.array(last_value)
        trainer.last_time = meta["last_time"]
        for row in arrays["trainer.recent_values"]:
            trainer._recent_values.append(np.array(row))
        for name, ring in (
            ("inputs", trainer._window_inputs),
            ("durations", trainer._window_durations),
            ("starts", trainer._window_starts),
            ("targets", trainer._window_targets),
        ):
            for row in arrays[f"trainer.window.{name}"]:
                ring.push(row)
        c, n = trainer.channels, net.n_neurons
        for k in range(int(meta["pending"])):
            row = arrays[f"trainer.pending.{k}"]
            trainer._pending.append(
                (row[:c], float(row[c]), row[c + 1 : c + 1 + n], row[c + 1 + n :])
            )
        trainer.normalizer.restore(
            {name: arrays[f"trainer.normalizer.{name}"] for name in ("count", "mean", "m2")}
        )
        trainer.frames = int(meta["frames"])
        trainer.scored = int(meta["scored"])
        trainer.updates = int(meta["updates"])
        trainer.skipped = int(meta["skipped"])
        trainer._since_update = int(meta["since_update"])
        trainer._since_checkpoint = int(meta.get("since_checkpoint", 0))
        return trainer
