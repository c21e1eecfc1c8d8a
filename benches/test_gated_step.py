"""Per-training-step time of the gated byte LM: rnnlab.gated vs upstream's structure in torch.

One step = forward one byte for the whole batch, mean cross-entropy, backward, Adam update,
detach the state (the upstream one-step scheme). Candidate ``rnnlab``: what
:func:`rnnlab.gated.train.train_run` does: :class:`ByteLM` (embedding lookup, fused gate
matrices), the closed-form one-step gradient :class:`rnnlab.gated.one_step.OneStepGradient` (no
autograd graph) and :class:`rnnlab.gated.train.Adam` (fused kernel); ``rnnlab-autograd``: the
same model and Adam with ``loss.backward()`` (the step before the closed-form gradient).
Baseline ``upstream-structure``: one-hot input × Linear(256→S), one ``nn.Linear`` per gate,
concatenations as in the equations, ``torch.optim.Adam`` with its defaults. Same weights, same
bytes, float32, CPU, 1 torch thread (as in a sweep worker). Config: the README's best flags
2 layers. Run: ``.venv/bin/python -m pytest benches/test_gated_step.py --benchmark-only``.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.nn import functional

from rnnlab.gated import ByteLM
from rnnlab.gated.one_step import OneStepGradient
from rnnlab.gated.reference import UpstreamStyleByteLM, one_hot
from rnnlab.gated.train import Adam

FLAGS = {
    "use_forget_gate": True,
    "use_state_gate": True,
    "use_new_state": True,
    "use_residual": True,
}
LAYERS = 2
BATCH = 256
STEPS = 10  # training steps per timed call
THREADS = 1  # one torch thread: what each sweep worker uses (the shared 2-core box is loaded)


def _bytes(batch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (STEPS + 1, batch), generator=generator)


def _ours(model: ByteLM, data: torch.Tensor) -> Any:
    optimizer = Adam(list(model.named_parameters()), lr=1e-3)
    states = model.initial_state(data.shape[1])
    step = OneStepGradient(model)

    def run() -> float:
        nonlocal states
        total = 0.0
        for j in range(STEPS):
            loss, states = step(data[j], data[j + 1], states)
            optimizer.step()
            total += float(loss)
        return total / STEPS

    return run


def _ours_autograd(model: ByteLM, data: torch.Tensor) -> Any:
    optimizer = Adam(list(model.named_parameters()), lr=1e-3)
    states = model.initial_state(data.shape[1])

    def run() -> float:
        nonlocal states
        total = 0.0
        for j in range(STEPS):
            logits, states = model(data[j], states)
            loss = functional.cross_entropy(logits, data[j + 1])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            states = [s.detach() for s in states]
            total += float(loss.detach())
        return total / STEPS

    return run


def _upstream(model: UpstreamStyleByteLM, data: torch.Tensor) -> Any:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    states = model.initial_state(data.shape[1])

    def run() -> float:
        nonlocal states
        total = 0.0
        for j in range(STEPS):
            logits, states = model(one_hot(data[j]), states)
            target = one_hot(data[j + 1]).argmax(dim=1)  # upstream: argmax of the next one-hot
            loss = functional.cross_entropy(logits, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            states = [s.detach() for s in states]
            total += float(loss.detach())
        return total / STEPS

    return run


def _info(candidate: str, state_size: int) -> dict[str, Any]:
    return {
        "kind": "gated-train-step",
        "candidate": candidate,
        "n": state_size,
        "batch": BATCH,
        "steps": STEPS,
        "layers": LAYERS,
        "dtype": "float32",
    }


CANDIDATES = {"rnnlab": _ours, "rnnlab-autograd": _ours_autograd}


@pytest.mark.parametrize("state_size", [64, 256])
@pytest.mark.parametrize("candidate", ["rnnlab", "rnnlab-autograd", "upstream-structure"])
def test_gated_train_step(benchmark: Any, measure: Any, candidate: str, state_size: int) -> None:
    torch.set_num_threads(THREADS)
    data = _bytes(BATCH)
    reference = UpstreamStyleByteLM.from_byte_lm(ByteLM(LAYERS, state_size, seed=0, **FLAGS))
    check_ref = _upstream(reference, data)
    if candidate == "upstream-structure":
        run = check_ref
    else:
        # check first: from the same weights and bytes, a few steps give the same losses
        run = CANDIDATES[candidate](ByteLM(LAYERS, state_size, seed=0, **FLAGS), data)
        assert run() == pytest.approx(check_ref(), rel=1e-4)
    benchmark.extra_info.update(_info(candidate, state_size))
    measure(run, budget_s=3.0, min_rounds=3, max_rounds=50)


def interleaved(state_size: int, rounds: int = 15) -> dict[str, tuple[float, float]]:
    """Median and minimum ms/step of each candidate, timed in alternation (noisy machines)."""
    import time

    torch.set_num_threads(THREADS)
    data = _bytes(BATCH)
    runs = {
        name: make(ByteLM(LAYERS, state_size, seed=0, **FLAGS), data)
        for name, make in CANDIDATES.items()
    }
    reference = UpstreamStyleByteLM.from_byte_lm(ByteLM(LAYERS, state_size, seed=0, **FLAGS))
    runs["upstream-structure"] = _upstream(reference, data)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - started) / STEPS * 1e3)
    return {name: (sorted(t)[len(t) // 2], min(t)) for name, t in times.items()}


if __name__ == "__main__":
    # PYTHONPATH=python .venv/bin/python benches/test_gated_step.py: interleaved timings
    for size in (64, 256):
        result = interleaved(size, rounds=15 if size == 64 else 5)
        upstream_median, upstream_min = result["upstream-structure"]
        for name, (median, minimum) in result.items():
            print(
                f"S={size} {name:20s} median {median:7.2f} ms/step (min {minimum:7.2f}); upstream/"
                f"this {upstream_median / median:4.2f}x (min {upstream_min / minimum:4.2f}x)"
            )
