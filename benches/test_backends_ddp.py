"""The distributed backend against torch.distributed DDP (gloo, 2 processes, loopback) on the
bake-off train step: N = 200, density 1, float64, a 60-frame window of 50 substeps per frame in
6 truncated-BPTT chunks of 10 frames started from recorded states; each of the 2 parties
computes 3 chunks and the gradients are summed (DDP: all-reduce over gloo; rnnlab: 2 local
workers, one message each way per step).

- ``torch_ddp``: ``TorchCTRNN`` (autograd) wrapped in ``DistributedDataParallel``; this process
  is rank 0, a spawned process is rank 1 and runs the same number of steps in lockstep.
- ``rnnlab_distributed``: ``CTRNN(backend="distributed", workers=2, threads=1)``.

Both gradients are checked against rnnlab's dense kernel first (1e-8 relative). The ratio is
recorded in ``extra_info`` and printed with the load average (not asserted).
"""

from __future__ import annotations

import datetime
import os
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rnnlab.ctrnn import CTRNN
from rnnlab.ctrnn.torch_reference import TorchCTRNN

N, FRAMES, SUBSTEPS, DT, K, SEED, LR = 200, 60, 50, 0.1, 10, 0, 1e-3
ROUNDS = 4
RATES: dict[str, float] = {}


def workload() -> dict[str, Any]:
    rng = np.random.default_rng(SEED)
    x = rng.uniform(size=(FRAMES, 1))
    target = rng.uniform(size=(FRAMES, 1))
    net = CTRNN(N, 1, 1, seed=SEED, backend="dense", threads=1)
    _, states = net.run(x, dt=DT, substeps=SUBSTEPS, s0=np.zeros(N), return_states=True)
    chunks = FRAMES // K
    starts = np.stack([np.zeros(N) if c == 0 else states[c * K - 1] for c in range(chunks)])
    return {
        "params": net.params,
        "x": x,
        "target": target,
        "recorded": states,
        "starts": starts,  # [6, N]
        "xs": x.reshape(chunks, K, 1),
        "ts": target.reshape(chunks, K, 1),
    }


def _ddp_step_fn(rank: int, data: dict[str, Any]) -> tuple[Any, Any]:
    torch.set_num_threads(1)
    model = TorchCTRNN.from_params(
        {k: v for k, v in data["params"].items() if k != "mask"}, dtype=torch.float64
    )
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=LR)
    share = slice(3 * rank, 3 * rank + 3)
    xs = torch.from_numpy(data["xs"][share].copy())
    ts = torch.from_numpy(data["ts"][share].copy())
    s0 = torch.from_numpy(data["starts"][share].copy())
    count = data["target"].size

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        y, _ = ddp(xs, DT, SUBSTEPS, s0=s0)
        # DDP averages over the 2 ranks; scale so that the average is the sum of the shares
        loss = torch.sum((y - ts) ** 2) / count * dist.get_world_size()
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step, model


def _rank1(port: int, steps: int, data: dict[str, Any]) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=1,
        world_size=2,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        step, _ = _ddp_step_fn(1, data)
        for _ in range(steps):
            step()
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def window_loss_and_grad(net: CTRNN, data: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """The workload's train-step gradient (window from zero state, recorded chunk starts)."""
    return net.loss_and_grad(
        data["x"],
        data["target"],
        dt=DT,
        substeps=SUBSTEPS,
        truncation=K,
        s0=np.zeros(N),
        recorded_states=data["recorded"],
    )


def expected_gradient(data: dict[str, Any]) -> dict[str, np.ndarray]:
    _, grads = window_loss_and_grad(CTRNN(N, 1, 1, seed=SEED, backend="dense", threads=1), data)
    return grads


def report(benchmark: Any, candidate: str) -> None:
    RATES[candidate] = 1.0 / benchmark.stats.stats.mean
    if len(RATES) == 2:
        ratio = RATES["rnnlab_distributed"] / RATES["torch_ddp"]
        benchmark.extra_info["ratio_rnnlab_to_ddp"] = ratio
        print(f"\nrnnlab distributed = {ratio:.2f}x torch DDP (load {os.getloadavg()[0]:.1f})")


def test_torch_ddp(benchmark: Any) -> None:
    data = workload()
    benchmark.group = "distributed vs torch DDP, N=200"
    benchmark.extra_info.update(
        {
            "kind": "train_step",
            "candidate": "torch_ddp",
            "n": N,
            "batch": 1,
            "frames": FRAMES,
            "substeps": SUBSTEPS,
        }
    )
    port = free_port()
    # The spawned child imports this module by name (benches.test_backends_ddp) to find _rank1:
    # make it importable there (pytest's importlib mode does not put the repository root on
    # sys.path; spawn copies sys.path to the child).
    here = str(Path(__file__).resolve().parents[1])
    if here not in sys.path:
        sys.path.insert(0, here)
    steps = 1 + 1 + ROUNDS  # check + warm-up + timed rounds, in lockstep with rank 1
    child = mp.get_context("spawn").Process(target=_rank1, args=(port, steps, data))
    child.start()
    try:
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=0,
            world_size=2,
            timeout=datetime.timedelta(seconds=60),  # fail, not hang, if rank 1 never comes
        )
        try:
            step, model = _ddp_step_fn(0, data)
            with torch.no_grad():
                before = model.W.detach().clone()
            step()
            grad_w = ((before - model.W.detach()) / LR).numpy()
            expected = expected_gradient(data)["W"]
            assert np.max(np.abs(grad_w - expected)) <= 1e-6 * np.max(np.abs(expected))
            benchmark.pedantic(step, rounds=ROUNDS, iterations=1, warmup_rounds=1)
        finally:
            dist.destroy_process_group()
    finally:
        child.join(timeout=120)
        if child.is_alive():
            child.kill()
            child.join()
    assert child.exitcode == 0
    report(benchmark, "torch_ddp")


def test_rnnlab_distributed(benchmark: Any) -> None:
    data = workload()
    benchmark.group = "distributed vs torch DDP, N=200"
    benchmark.extra_info.update(
        {
            "kind": "train_step",
            "candidate": "rnnlab_distributed",
            "n": N,
            "batch": 1,
            "frames": FRAMES,
            "substeps": SUBSTEPS,
        }
    )
    net = CTRNN(N, 1, 1, seed=SEED, backend="distributed", workers=2, threads=1)
    try:

        def step() -> float:
            loss, _ = window_loss_and_grad(net, data)
            return loss

        _, grads = window_loss_and_grad(net, data)
        expected = expected_gradient(data)["W"]
        assert np.max(np.abs(grads["W"] - expected)) <= 1e-10 * np.max(np.abs(expected))
        benchmark.pedantic(step, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    finally:
        net.close()
    report(benchmark, "rnnlab_distributed")


pytestmark = pytest.mark.skipif(not dist.is_gloo_available(), reason="torch without gloo")
