"""Online training of a :class:`ByteLM` without BPTT, with evaluation, checkpoints and resume.

The upstream scheme (reference note §1.3, §2.2): batches of random byte windows; inside a window
one forward step per byte position, mean cross-entropy (nats per byte) against the next byte,
``backward`` and one Adam step, with the state *detached* before the next step (gradient
truncation k = 1; computed in closed form by :class:`~rnnlab.gated.one_step.OneStepGradient`,
the same gradient as autograd with less overhead). ``truncation = k > 1`` is true truncated
BPTT (autograd): the state stays attached for k positions, the k losses are averaged and one
Adam step is taken per k positions, then the state is detached. The state is reset to zero at
the start of every window.

Step accounting: ``steps`` counts trained byte positions and is honoured exactly (upstream only
checked its budget between windows, so its 10 000 became 11 × 999 = 10 989; the
``systematic-01`` preset asks for 10 989 to match it).

Metrics (:func:`train_run` returns them): the upstream EMA curve (``m ← 0.95 m + 0.05 ℓ``, from
3.0) and its minimum ``min_ema`` for comparison; the mean loss of each log interval and the
mean of the last ``last_k`` of them; validation loss with frozen weights over long windows with
the state carried (``val_loss``) and the same with the state zeroed at every step
(``val_loss_state_zeroed``, the no-memory control); and ``untrained_parameters`` (parameters that
never received a gradient: the recurrence of OS-only configurations, note §1.3).

Checkpoints (at window boundaries, every ``checkpoint_every_s`` seconds) hold the model, the
Adam state, the data RNG, the step and the metrics so far: ``checkpoint-<step>.safetensors``
(tensors) and ``checkpoint.json`` (everything else, the tensor file's name and SHA-256; a
mismatch means a damaged checkpoint, which is ignored). No pickle anywhere. A resumed run
continues bit-for-bit like an uninterrupted one on the same device.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import torch
from numpy.typing import NDArray
from torch.nn import functional

from rnnlab.atomic import write_atomic, write_json_atomic
from rnnlab.errors import ConfigError
from rnnlab.gated.data import load_corpus, sample_windows, split_bytes
from rnnlab.gated.model import ByteLM
from rnnlab.gated.one_step import OneStepGradient

__all__ = [
    "Adam",
    "TrainConfig",
    "build_model",
    "evaluate_loss",
    "parameters_without_gradient",
    "remove_checkpoint",
    "resolve_device",
    "train_run",
]

CHECKPOINT_FORMAT = "rnnlab.gated-checkpoint"
# torch's fused Adam kernel (what ``torch.optim.Adam(fused=True)`` calls), if this torch has it
_FUSED_ADAM = getattr(torch, "_fused_adam_", None)
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    """Training settings shared by every run of a sweep (saved in ``configs.json``)."""

    steps: int = 10_989
    batch_size: int = 256
    window: int = 1000
    lr: float = 1e-3
    truncation: int = 1
    log_every: int = 50
    ema_decay: float = 0.95
    ema_init: float = 3.0
    last_k: int = 10
    eval_windows: int = 16
    eval_length: int = 4096
    data: str = "embedded"
    split: tuple[float, float, float] = (0.9, 0.05, 0.05)
    device: str = "auto"
    checkpoint_every_s: float = 300.0

    def __post_init__(self) -> None:
        for name, low in (
            ("steps", 1),
            ("batch_size", 1),
            ("window", 2),
            ("truncation", 1),
            ("log_every", 1),
            ("last_k", 1),
            ("eval_windows", 1),
            ("eval_length", 2),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name}: must be an integer >= {low}, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr: must be a positive number, got {self.lr!r}")
        if not 0.0 <= float(self.ema_decay) < 1.0:
            raise ConfigError(f"ema_decay: must be in [0, 1), got {self.ema_decay!r}")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ConfigError(f"device: one of auto, cpu, cuda, cuda:N; got {self.device!r}")
        if float(self.checkpoint_every_s) < 0:
            raise ConfigError(f"checkpoint_every_s: must be >= 0, got {self.checkpoint_every_s!r}")
        object.__setattr__(self, "split", tuple(float(f) for f in self.split))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ConfigError(f"training.{unknown[0]}: unknown setting; allowed: {sorted(allowed)}")
        values = dict(data)
        if "split" in values:
            values["split"] = tuple(values["split"])
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["split"] = list(self.split)
        return data


ARCHITECTURE_KEYS = ("n_layers", "state_size", "embedding_size")


def build_model(architecture: dict[str, Any], seed: int) -> ByteLM:
    """A :class:`ByteLM` from an architecture dict (flags, ``n_layers``, ``state_size``...)."""
    arch = dict(architecture)
    try:
        n_layers = arch.pop("n_layers")
        state_size = arch.pop("state_size")
    except KeyError as missing:
        raise ConfigError(f"{missing.args[0]}: missing from the architecture") from None
    embedding_size = arch.pop("embedding_size", None)
    return ByteLM(n_layers, state_size, embedding_size=embedding_size, seed=seed, **arch)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def parameters_without_gradient(model: torch.nn.Module) -> list[str]:
    """Names of parameters whose ``.grad`` is ``None`` (call after a ``backward``)."""
    return [name for name, p in model.named_parameters() if p.grad is None]


@torch.no_grad()
def evaluate_loss(
    model: ByteLM,
    data: NDArray[np.uint8],
    *,
    windows: int,
    length: int,
    zero_state: bool = False,
    device: torch.device | None = None,
) -> float:
    """Mean next-byte cross-entropy (nats) with frozen weights over evenly spaced windows.

    The state starts at zero and is carried through each ``length``-byte window; with
    ``zero_state`` it is zeroed at every step instead (the no-memory control).
    """
    device = device or next(model.parameters()).device
    length = min(length, int(data.size))
    if length < 2:
        raise ConfigError("eval_length: the evaluation split is shorter than 2 bytes")
    starts = np.linspace(0, data.size - length, windows).astype(np.int64)
    batch = data[starts[:, None] + np.arange(length)[None, :]].astype(np.int64)
    sequence = torch.from_numpy(batch.T.copy()).to(device)  # [length, windows]
    states = model.initial_state(windows, device)
    total = torch.zeros((), device=device, dtype=torch.float64)
    for j in range(length - 1):
        if zero_state:
            states = model.initial_state(windows, device)
        logits, states = model(sequence[j], states)
        total += functional.cross_entropy(logits, sequence[j + 1], reduction="sum").double()
    return float(total.item() / ((length - 1) * windows))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Adam:
    """Adam (torch's defaults: betas 0.9/0.999, eps 1e-8, bias correction, no weight decay).

    The same update as ``torch.optim.Adam`` (tested against it), written out because
    ``torch.optim`` imports ``torch._dynamo`` on first use, which costs seconds in every sweep
    worker process. Parameters whose ``.grad`` is ``None`` are skipped (their state is not
    created), as in torch. The update is torch's fused Adam kernel (one call per step; the
    ``torch._foreach_*`` kernels where that kernel is missing or the device is neither CPU nor
    CUDA).
    """

    def __init__(
        self,
        named_parameters: list[tuple[str, torch.nn.Parameter]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.named_parameters = list(named_parameters)
        self.lr, self.betas, self.eps = float(lr), betas, float(eps)
        self.steps: dict[str, int] = {}
        self.exp_avg: dict[str, torch.Tensor] = {}
        self.exp_avg_sq: dict[str, torch.Tensor] = {}

    def zero_grad(self) -> None:
        for _, p in self.named_parameters:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        beta1, beta2 = self.betas
        groups: dict[int, list[tuple[str, torch.nn.Parameter]]] = {}
        for name, p in self.named_parameters:
            if p.grad is None:
                continue
            if name not in self.steps:
                self.steps[name] = 0
                self.exp_avg[name] = torch.zeros_like(p)
                self.exp_avg_sq[name] = torch.zeros_like(p)
            self.steps[name] += 1
            groups.setdefault(self.steps[name], []).append((name, p))
        for step, members in groups.items():
            params: list[torch.Tensor] = [p for _, p in members]
            grads = [cast(torch.Tensor, p.grad) for p in params]
            m = [self.exp_avg[n] for n, _ in members]
            v = [self.exp_avg_sq[n] for n, _ in members]
            if _FUSED_ADAM is not None and params[0].device.type in ("cpu", "cuda"):
                # one kernel for the whole update (torch's fused Adam; same formula)
                steps = [torch.tensor(float(step), device=params[0].device)] * len(params)
                _FUSED_ADAM(
                    params,
                    grads,
                    m,
                    v,
                    [],
                    steps,
                    lr=self.lr,
                    beta1=beta1,
                    beta2=beta2,
                    weight_decay=0.0,
                    eps=self.eps,
                    amsgrad=False,
                    maximize=False,
                )
                continue
            torch._foreach_lerp_(m, grads, 1 - beta1)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, grads, grads, 1 - beta2)
            bias1 = 1 - beta1**step
            bias2_sqrt = math.sqrt(1 - beta2**step)
            denom = torch._foreach_sqrt(v)
            torch._foreach_div_(denom, bias2_sqrt)
            torch._foreach_add_(denom, self.eps)
            torch._foreach_addcdiv_(params, m, denom, -self.lr / bias1)

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
        tensors = {}
        for name in self.steps:
            tensors[f"adam.exp_avg.{name}"] = self.exp_avg[name].detach().cpu().contiguous()
            tensors[f"adam.exp_avg_sq.{name}"] = self.exp_avg_sq[name].detach().cpu().contiguous()
        return tensors, dict(self.steps)

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], steps: dict[str, int]) -> None:
        params = dict(self.named_parameters)
        self.steps = {name: int(count) for name, count in steps.items()}
        self.exp_avg = {n: tensors[f"adam.exp_avg.{n}"].to(params[n].device) for n in steps}
        self.exp_avg_sq = {n: tensors[f"adam.exp_avg_sq.{n}"].to(params[n].device) for n in steps}


def save_checkpoint(folder: Path, model: ByteLM, optimizer: Adam, progress: dict[str, Any]) -> None:
    """Write ``checkpoint-<step>.safetensors``, then ``checkpoint.json`` naming it (with its hash),
    then delete older tensor files: a crash at any point leaves a complete, consistent pair."""
    optimizer_tensors, optimizer_scalars = optimizer.state_tensors()
    save_checkpoint_tensors(
        folder, dict(model.state_dict()), optimizer_tensors, optimizer_scalars, progress
    )


def save_checkpoint_tensors(
    folder: Path,
    model_tensors: dict[str, torch.Tensor],
    optimizer_tensors: dict[str, torch.Tensor],
    optimizer_steps: dict[str, int],
    progress: dict[str, Any],
) -> None:
    """:func:`save_checkpoint` from tensors: ``model_tensors`` a :class:`ByteLM` state dict,
    ``optimizer_tensors``/``optimizer_steps`` as :meth:`Adam.state_tensors` returns them (used by
    stacked runs, which write each member's checkpoint in the single-run format)."""
    from safetensors.torch import save

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model_tensors.items()}
    tensors.update({k: v.detach().cpu().contiguous() for k, v in optimizer_tensors.items()})
    blob = save(tensors)
    tensor_name = f"checkpoint-{int(progress['step'])}.safetensors"

    def write(file: IO[bytes]) -> None:
        file.write(blob)

    write_atomic(folder / tensor_name, write)
    write_json_atomic(
        folder / "checkpoint.json",
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "tensors_file": tensor_name,
            "tensors_sha256": hashlib.sha256(blob).hexdigest(),
            "optimizer": optimizer_steps,
            "progress": progress,
        },
    )
    for old in folder.glob("checkpoint-*.safetensors"):
        if old.name != tensor_name:
            old.unlink(missing_ok=True)


def remove_checkpoint(folder: Path) -> None:
    """Delete a run folder's checkpoint files (after its result is written)."""
    (folder / "checkpoint.json").unlink(missing_ok=True)
    for old in folder.glob("checkpoint-*.safetensors"):
        old.unlink(missing_ok=True)


def load_checkpoint(folder: Path, model: ByteLM, optimizer: Adam) -> dict[str, Any] | None:
    """Restore a checkpoint into ``model`` and ``optimizer``; ``None`` if absent or incomplete."""
    from safetensors.torch import load

    meta_path = folder / "checkpoint.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        name = str(meta["tensors_file"])
        if "/" in name or not name.startswith("checkpoint-"):
            return None
        blob = (folder / name).read_bytes()
        if (
            meta.get("format") != CHECKPOINT_FORMAT
            or meta.get("tensors_sha256") != hashlib.sha256(blob).hexdigest()
        ):
            return None
        tensors = load(blob)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    device = next(model.parameters()).device
    model.load_state_dict(
        {k[len("model.") :]: v.to(device) for k, v in tensors.items() if k.startswith("model.")}
    )
    optimizer.load_state_tensors(tensors, meta["optimizer"])
    return dict(meta["progress"])


def train_run(
    architecture: dict[str, Any],
    config: TrainConfig,
    *,
    seed: int = 0,
    folder: str | Path | None = None,
    progress: bool = False,
    corpus: NDArray[np.uint8] | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Train one configuration; resume from ``folder``'s checkpoint if there is a valid one.

    Returns the metrics dict (see the module docstring). ``corpus`` overrides ``config.data``
    (the bytes are split with ``config.split``). ``on_checkpoint(step)`` is called after each
    checkpoint is written.
    """
    started = time.time()
    device = resolve_device(config.device)
    data = corpus if corpus is not None else load_corpus(config.data)
    splits = split_bytes(data, config.split)
    model = build_model(architecture, seed).to(device)
    optimizer = Adam(list(model.named_parameters()), lr=config.lr)
    rng = np.random.Generator(np.random.PCG64(seed))
    run_folder = Path(folder) if folder is not None else None
    one_step = OneStepGradient(model) if config.truncation == 1 else None

    step = 0
    ema = float(config.ema_init)
    curve_ema: list[float] = []
    curve_mean: list[float] = []
    pending: list[float] = []
    untrained: list[str] | None = None
    resumed_from = 0
    elapsed_before = 0.0
    if run_folder is not None:
        saved = load_checkpoint(run_folder, model, optimizer)
        if saved is not None:
            step = resumed_from = int(saved["step"])
            ema = float(saved["ema"])
            curve_ema, curve_mean = list(saved["curve_ema"]), list(saved["curve_mean"])
            pending = list(saved["pending"])
            untrained = saved["untrained_parameters"]
            rng.bit_generator.state = saved["rng"]
            elapsed_before = float(saved.get("train_seconds", 0.0))

    def flush(losses: torch.Tensor) -> None:
        nonlocal ema
        for value in losses.tolist():
            pending.append(value)
            ema = config.ema_decay * ema + (1.0 - config.ema_decay) * value
            if len(pending) == config.log_every:
                curve_ema.append(ema)
                curve_mean.append(sum(pending) / len(pending))
                pending.clear()

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=config.steps, initial=step, unit="step", leave=False)
    last_checkpoint = time.monotonic()
    segment_start = time.monotonic()
    try:
        while step < config.steps:
            windows = sample_windows(splits.train, config.batch_size, config.window, rng)
            sequence = torch.from_numpy(windows.T.copy()).to(device)  # [window, batch]
            states = model.initial_state(config.batch_size, device)
            positions = min(config.window - 1, config.steps - step)
            window_losses: list[torch.Tensor] = []
            j = 0
            if one_step is not None:  # k = 1: the closed-form gradient, no autograd graph
                for j in range(positions):
                    loss, states = one_step(sequence[j], sequence[j + 1], states)
                    if untrained is None:
                        untrained = parameters_without_gradient(model)
                    optimizer.step()
                    window_losses.append(loss)
                j = positions
            while j < positions:
                length = min(config.truncation, positions - j)
                losses = []
                for offset in range(length):
                    logits, states = model(sequence[j + offset], states)
                    losses.append(functional.cross_entropy(logits, sequence[j + offset + 1]))
                loss = losses[0] if length == 1 else torch.stack(losses).mean()
                optimizer.zero_grad()
                loss.backward()
                if untrained is None:
                    untrained = parameters_without_gradient(model)
                optimizer.step()
                states = [s.detach() for s in states]
                window_losses.extend(item.detach() for item in losses)
                j += length
            step += positions
            flush(torch.stack(window_losses).double().cpu())
            if bar is not None:
                bar.update(positions)
                if curve_ema:
                    bar.set_postfix(ema=f"{curve_ema[-1]:.3f}")
            due = time.monotonic() - last_checkpoint >= config.checkpoint_every_s
            if run_folder is not None and step < config.steps and due:
                save_checkpoint(
                    run_folder,
                    model,
                    optimizer,
                    {
                        "step": step,
                        "ema": ema,
                        "curve_ema": curve_ema,
                        "curve_mean": curve_mean,
                        "pending": pending,
                        "untrained_parameters": untrained,
                        "rng": rng.bit_generator.state,
                        "train_seconds": elapsed_before + time.monotonic() - segment_start,
                    },
                )
                last_checkpoint = time.monotonic()
                if on_checkpoint is not None:
                    on_checkpoint(step)
    finally:
        if bar is not None:
            bar.close()
    train_seconds = elapsed_before + time.monotonic() - segment_start
    if pending:  # a last, shorter interval
        curve_ema.append(ema)
        curve_mean.append(sum(pending) / len(pending))
        pending.clear()

    model.eval()
    eval_started = time.monotonic()
    val_loss = evaluate_loss(
        model, splits.validation, windows=config.eval_windows, length=config.eval_length
    )
    val_zeroed = evaluate_loss(
        model,
        splits.validation,
        windows=config.eval_windows,
        length=config.eval_length,
        zero_state=True,
    )
    last = curve_mean[-config.last_k :]
    return {
        "steps": step,
        "log_every": config.log_every,
        "curve_ema": curve_ema,
        "curve_mean": curve_mean,
        "min_ema": min(curve_ema),
        "final_ema": curve_ema[-1],
        "mean_last_k": sum(last) / len(last),
        "last_k": len(last),
        "val_loss": val_loss,
        "val_loss_state_zeroed": val_zeroed,
        "memory_gain": val_zeroed - val_loss,
        "untrained_parameters": untrained or [],
        "n_parameters": model.n_parameters(),
        "resumed_from_step": resumed_from,
        "train_seconds": train_seconds,
        "eval_seconds": time.monotonic() - eval_started,
        "wall_seconds": time.time() - started,
        "device": str(device),
    }
