"""Observation encoders and action decoders between an environment and a circuit.

The FIURI *binary interface* maps one observation variable x to a pair of sensory neurons
(reference note §2.4), with valley c, value bounds [m, M] and state range [−10, 10]:

* faithful: x ≥ c: positive = 20·(x/M) − 10, negative = −10; x < c: positive = −10,
  negative = 20·(x/m) − 10 (anchored at 0, not at c, and not clamped: PLM reaches −20);
* improved: anchored at the valley, positive = 20·(x−c)/(M−c) − 10, negative =
  20·(x−c)/(m−c) − 10, both clamped to [−10, 10] (continuous at the valley).

The MountainCarContinuous encoder uses position (c = −0.3, [−1.2, 0.6]) → PLM (+) / AVM (−)
and velocity (c = 0, [−0.1, 0.1]) → ALM (+) / PVD (−). The decoder reads the motor neurons'
*internal* states: a = f(E_FWD) − f(E_REV), f(e) = clip((e + 10)/20, 0, 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rnnlab.errors import ConfigError, ShapeError

__all__ = [
    "ENCODERS",
    "BinaryInterface",
    "DifferenceDecoder",
    "ObservationEncoder",
    "mountain_car_decoder",
    "mountain_car_encoder",
]

ENCODERS = ("faithful", "improved")


@dataclass(frozen=True)
class BinaryInterface:
    """One observation variable → (positive, negative) sensory neuron values."""

    valley: float
    bounds: tuple[float, float]
    improved: bool = False

    def __post_init__(self) -> None:
        low, high = self.bounds
        if not low < self.valley < high:
            raise ConfigError(
                f"BinaryInterface: need bounds[0] < valley < bounds[1], got valley "
                f"{self.valley} and bounds {self.bounds}"
            )
        if not self.improved and not low < 0.0 < high:
            raise ConfigError(
                f"BinaryInterface: the faithful map divides by the bounds and needs "
                f"bounds[0] < 0 < bounds[1], got {self.bounds}"
            )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = self.bounds
        floor = torch.full_like(x, -10.0)
        if self.improved:
            positive = (20.0 * ((x - self.valley) / (high - self.valley)) + -10.0).clamp(-10, 10)
            negative = (20.0 * ((x - self.valley) / (low - self.valley)) + -10.0).clamp(-10, 10)
        else:
            positive = 20.0 * (x / high) + -10.0
            negative = 20.0 * (x / low) + -10.0
        above = x >= self.valley
        return torch.where(above, positive, floor), torch.where(above, floor, negative)


class ObservationEncoder:
    """Encode observations [B, obs_dim] into sensory values [B, n_sensory] (wiring order)."""

    def __init__(
        self,
        channels: Sequence[tuple[int, BinaryInterface, str, str]],
        sensory_names: Sequence[str],
    ) -> None:
        self.channels = list(channels)
        self.sensory_names = list(sensory_names)
        covered = [name for _, _, pos, neg in self.channels for name in (pos, neg)]
        if sorted(covered) != sorted(self.sensory_names):
            raise ConfigError(
                f"encoder: channels drive {covered} but the wiring's sensory neurons are "
                f"{self.sensory_names}; each must be driven exactly once"
            )
        self.obs_dim = max(index for index, _, _, _ in self.channels) + 1

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.ndim != 2 or obs.shape[1] < self.obs_dim:
            raise ShapeError(f"obs: expected shape [B, {self.obs_dim}], got {list(obs.shape)}")
        values: dict[str, torch.Tensor] = {}
        for index, interface, positive_name, negative_name in self.channels:
            positive, negative = interface.encode(obs[:, index])
            values[positive_name] = positive
            values[negative_name] = negative
        return torch.stack([values[name] for name in self.sensory_names], dim=1)


@dataclass(frozen=True)
class DifferenceDecoder:
    """a = f(E_positive) − f(E_negative), f(e) = clip((e + 10)/20, 0, 1); or tanh if smooth."""

    positive: str
    negative: str
    smooth: bool = False

    def __call__(self, e_positive: torch.Tensor, e_negative: torch.Tensor) -> torch.Tensor:
        if self.smooth:
            return torch.tanh((e_positive - e_negative) / 10.0)
        squash_pos = ((e_positive + 10.0) / 20.0).clamp(0.0, 1.0)
        squash_neg = ((e_negative + 10.0) / 20.0).clamp(0.0, 1.0)
        return squash_pos - squash_neg


def mountain_car_encoder(
    sensory_names: Sequence[str], kind: str = "faithful"
) -> ObservationEncoder:
    """The MountainCarContinuous encoder of the note (§2.4) or the improved variant."""
    if kind not in ENCODERS:
        raise ConfigError(f"encoder: {kind!r} is not one of {ENCODERS}")
    improved = kind == "improved"
    return ObservationEncoder(
        [
            (0, BinaryInterface(-0.3, (-1.2, 0.6), improved), "PLM", "AVM"),
            (1, BinaryInterface(0.0, (-0.1, 0.1), improved), "ALM", "PVD"),
        ],
        sensory_names,
    )


def mountain_car_decoder(smooth: bool = False) -> DifferenceDecoder:
    """FWD − REV decoder (§2.5)."""
    return DifferenceDecoder("FWD", "REV", smooth)
