"""An independent numpy/Python reference of the exact FIURI circuit dynamics.

Written directly from the equations (reference note §1.2-§2.5), one neuron and one synapse at a
time in float64, with no vectorisation, so it shares no code with the torch layers it checks.

Per environment step (the Ariel schedule, ``delay=1``):

1. sensory neurons: E = O = encoded observation (no clamp);
2. every simulated neuron n computes, from the *previous* committed states (sensory: fresh),
   I_n = Σ_EX w·O_j − Σ_IN w·O_j + Σ_GJ w·O_j·sgn(O_j − E_n)   (sgn(0) = 0), then
   S = clip(E_n + I_n, −10, 10);
   S > T: E' = O' = S − T  |  S == E exactly: E' = E − d, O' = 0  |  else: E' = S, O' = 0;
3. all simulated neurons commit together; action = f(E_FWD) − f(E_REV),
   f(e) = clip((e + 10)/20, 0, 1).

With ``delay=0`` the motor neurons are updated after the others and read their new outputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = [
    "CLAMP",
    "ReferenceCircuit",
    "reference_binary_encode",
    "reference_mountain_car_action",
    "reference_mountain_car_sensors",
    "reference_neuron_update",
]

CLAMP = 10.0


def reference_neuron_update(
    internal: float, current: float, threshold: float, decay: float
) -> tuple[float, float]:
    """One FIURI update of a single neuron: returns (E', O')."""
    stimulus = min(max(internal + current, -CLAMP), CLAMP)
    if stimulus > threshold:
        return stimulus - threshold, stimulus - threshold
    if stimulus == internal:
        return internal - decay, 0.0
    return stimulus, 0.0


def _sign(value: float) -> float:
    if value > 0.0:
        return 1.0
    if value < 0.0:
        return -1.0
    return 0.0


class ReferenceCircuit:
    """A single (unbatched) FIURI circuit with explicit per-neuron loops.

    ``neurons``: list of (name, role); ``synapses``: list of (source, target, type, weight) in
    the wiring order; ``thresholds`` / ``decays``: effective values per simulated neuron name.
    """

    def __init__(
        self,
        neurons: Sequence[tuple[str, str]],
        synapses: Sequence[tuple[str, str, str, float]],
        thresholds: Mapping[str, float],
        decays: Mapping[str, float],
        delay: int = 1,
    ) -> None:
        self.names = [name for name, _ in neurons]
        self.roles = {name: role for name, role in neurons}
        self.synapses = [(s, t, kind, float(w)) for s, t, kind, w in synapses]
        self.thresholds = {k: float(v) for k, v in thresholds.items()}
        self.decays = {k: float(v) for k, v in decays.items()}
        self.delay = delay
        self.internal = dict.fromkeys(self.names, 0.0)
        self.output = dict.fromkeys(self.names, 0.0)

    def reset(self) -> None:
        self.internal = dict.fromkeys(self.names, 0.0)
        self.output = dict.fromkeys(self.names, 0.0)

    def _current(self, target: str, output: Mapping[str, float]) -> float:
        total = 0.0
        for source, post, kind, weight in self.synapses:
            if post != target:
                continue
            if kind == "EX":
                total += weight * output[source]
            elif kind == "IN":
                total += -(weight * output[source])
            else:  # one-way gap junction, sign of (O_pre - E_post), 0 on equality
                total += weight * output[source] * _sign(output[source] - self.internal[target])
        return total

    def step(self, sensory: Mapping[str, float]) -> tuple[dict[str, float], dict[str, float]]:
        """Clamp the sensory neurons, update all others; returns the new (E, O) dicts."""
        for name, value in sensory.items():
            self.internal[name] = float(value)
            self.output[name] = float(value)
        simulated = [n for n in self.names if self.roles[n] != "sensory"]
        first = simulated if self.delay == 1 else [n for n in simulated if self.roles[n] != "motor"]
        new_internal: dict[str, float] = {}
        new_output: dict[str, float] = {}
        for name in first:
            current = self._current(name, self.output)
            new_internal[name], new_output[name] = reference_neuron_update(
                self.internal[name], current, self.thresholds[name], self.decays[name]
            )
        if self.delay == 0:
            fresh = dict(self.output)
            fresh.update(new_output)
            for name in simulated:
                if self.roles[name] == "motor":
                    current = self._current(name, fresh)
                    new_internal[name], new_output[name] = reference_neuron_update(
                        self.internal[name], current, self.thresholds[name], self.decays[name]
                    )
        self.internal.update(new_internal)
        self.output.update(new_output)
        return dict(self.internal), dict(self.output)


def reference_binary_encode(
    x: float, valley: float, low: float, high: float, improved: bool = False
) -> tuple[float, float]:
    """(positive, negative) sensory values of the FIURI binary interface (§2.4)."""
    span, floor = 20.0, -10.0
    if improved:
        if x >= valley:
            positive = span * ((x - valley) / (high - valley)) + floor
            return min(max(positive, -10.0), 10.0), floor
        negative = span * ((x - valley) / (low - valley)) + floor
        return floor, min(max(negative, -10.0), 10.0)
    if x >= valley:
        return span * (x / high) + floor, floor
    return floor, span * (x / low) + floor


def reference_mountain_car_sensors(
    position: float, velocity: float, improved: bool = False
) -> dict[str, float]:
    """Sensory values for MountainCarContinuous: PLM/AVM from position, ALM/PVD from velocity."""
    plm, avm = reference_binary_encode(position, -0.3, -1.2, 0.6, improved)
    alm, pvd = reference_binary_encode(velocity, 0.0, -0.1, 0.1, improved)
    return {"PVD": pvd, "PLM": plm, "AVM": avm, "ALM": alm}


def reference_mountain_car_action(internal_fwd: float, internal_rev: float) -> float:
    """a = f(E_FWD) − f(E_REV) with f(e) = clip((e + 10)/20, 0, 1) (§2.5)."""

    def squash(e: float) -> float:
        return min(max((e + 10.0) / 20.0, 0.0), 1.0)

    return squash(internal_fwd) - squash(internal_rev)
