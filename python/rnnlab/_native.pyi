"""Type stubs for the private Rust extension ``rnnlab._native`` (checked by mypy.stubtest).

Use the public API (:mod:`rnnlab.ctrnn`) instead of calling these directly: it validates and
reshapes arguments. Arrays share one float dtype (float32 or float64) and are C-contiguous.
"""

from typing import Any, final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Optimizer",
    "__version__",
    "ctrnn_forward",
    "ctrnn_loss_and_grad",
    "decode_feed_v1",
    "microcircuit_normals",
    "microcircuit_run",
    "panic_for_test",
]

__version__: str

def ctrnn_forward(
    w: NDArray[Any],
    tau: NDArray[Any],
    theta: NDArray[Any],
    gain: NDArray[Any],
    u: NDArray[Any],
    v: NDArray[Any],
    c: NDArray[Any],
    x: NDArray[Any],
    dts: NDArray[Any],
    s0: NDArray[Any],
    substeps: int,
    activation: str,
    integrator: str,
    return_states: bool = False,
) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any] | None]: ...
def ctrnn_loss_and_grad(
    w: NDArray[Any],
    tau: NDArray[Any],
    theta: NDArray[Any],
    gain: NDArray[Any],
    u: NDArray[Any],
    v: NDArray[Any],
    c: NDArray[Any],
    x: NDArray[Any],
    dts: NDArray[Any],
    s0: NDArray[Any],
    target: NDArray[Any],
    substeps: int,
    activation: str,
    integrator: str,
    truncation: int | None = None,
    mask: NDArray[Any] | None = None,
) -> tuple[float, dict[str, NDArray[Any]]]: ...
def decode_feed_v1(
    header: bytes, payload: bytes
) -> (
    tuple[int, float, float, list[str], bool, str | None, NDArray[np.float64], NDArray[np.float64]]
    | None
): ...
def panic_for_test() -> None: ...

@final
class Optimizer:
    def __new__(
        cls,
        rule: str,
        size: int,
        lr: float,
        *,
        momentum: float = 0.0,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        clip_norm: float | None = None,
    ) -> Optimizer: ...
    def step(self, params: NDArray[np.float64], grads: NDArray[np.float64]) -> float: ...
    def state(self) -> tuple[NDArray[np.float64], NDArray[np.float64], int]: ...
    def restore(
        self, first: NDArray[np.float64], second: NDArray[np.float64], steps: int
    ) -> None: ...
    @property
    def steps(self) -> int: ...
    @property
    def lr(self) -> float: ...
    @lr.setter
    def lr(self, lr: float) -> None: ...

def microcircuit_run(
    config: dict[str, Any],
    offsets: NDArray[np.int64],
    state: NDArray[np.float64],
    inputs: NDArray[np.float64],
    targets: NDArray[np.float64] | None,
    seeds: NDArray[np.uint64],
    step0: int,
    learn_fw: bool,
    learn_lat: bool,
    learn_bw: bool,
) -> NDArray[np.float64]: ...
def microcircuit_normals(seed: int, step: int, count: int) -> NDArray[np.float64]: ...
