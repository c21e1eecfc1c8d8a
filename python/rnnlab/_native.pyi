"""Type stubs for the private Rust extension ``rnnlab._native`` (checked by mypy.stubtest).

Use the public API (:mod:`rnnlab.ctrnn`) instead of calling these directly: it validates and
reshapes arguments. Arrays share one float dtype (float32 or float64) and are C-contiguous.
"""

from typing import Any, final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "GraphNetCore",
    "Optimizer",
    "__version__",
    "ctrnn_forward",
    "ctrnn_forward_population",
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
    mask: NDArray[Any] | None = None,
    sparse: bool = False,
    threads: int | None = None,
) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any] | None]: ...
def ctrnn_forward_population(
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
    per_member: bool = False,
    threads: int | None = None,
) -> NDArray[Any]: ...
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
    sparse: bool = False,
    threads: int | None = None,
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

@final
class GraphNetCore:
    def __new__(cls, config: dict[str, Any], density: float, seed: int) -> GraphNetCore: ...
    @staticmethod
    def from_edges(
        config: dict[str, Any],
        source: NDArray[np.uint32],
        target: NDArray[np.uint32],
        weight: NDArray[np.float64],
        activation: NDArray[np.float64],
        streak: NDArray[np.uint32],
        seed: int,
    ) -> GraphNetCore: ...
    def config(self) -> dict[str, Any]: ...
    def set_config(self, config: dict[str, Any]) -> None: ...
    def run(
        self, observations: NDArray[np.float64], record_nodes: bool = False
    ) -> tuple[NDArray[np.bool_], NDArray[np.bool_] | None, tuple[int, int, int]]: ...
    def feedback(self, signal: float, at: list[int]) -> int: ...
    def grow(self) -> int: ...
    def prune(self) -> int: ...
    def mega_prune(self) -> int: ...
    def used_nodes(self) -> NDArray[np.bool_]: ...
    def reset_activity(self) -> None: ...
    def edges(
        self,
    ) -> tuple[
        NDArray[np.uint32],
        NDArray[np.uint32],
        NDArray[np.float64],
        NDArray[np.float64],
        NDArray[np.uint32],
    ]: ...
    def set_weights(self, weights: NDArray[np.float64]) -> None: ...
    def fired(self) -> NDArray[np.bool_]: ...
    def pool(self) -> NDArray[np.float64]: ...
    def get_state(self) -> dict[str, Any]: ...
    def set_state(self, state: dict[str, Any]) -> None: ...
    @property
    def n_edges(self) -> int: ...
    @property
    def steps(self) -> int: ...
    @property
    def feedback_updates(self) -> int: ...
    @property
    def grown_total(self) -> int: ...
    @property
    def pruned_total(self) -> int: ...

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
