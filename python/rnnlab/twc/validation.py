"""Reference-vs-torch validation of the FIURI dynamics (``rnnlab twc validate``).

Like the upstream validation script, but on observation *trajectories* (MountainCar episodes
driven by random actions) as well as i.i.d. observations with resets every 5 steps, with the
soft-dynamics parameters actually applied, and asserting: exact float64 must equal the numpy
reference bit for bit, exact float32 within 1e-5, straight-through bit-equal to exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rnnlab.twc.circuit import TWC
from rnnlab.twc.mountain_car import BatchedMountainCar
from rnnlab.twc.reference import (
    ReferenceCircuit,
    reference_mountain_car_action,
    reference_mountain_car_sensors,
)

__all__ = ["ValidationResult", "run_validation"]


@dataclass
class ValidationResult:
    rows: list[dict[str, float | str | bool]]
    reference_actions: np.ndarray  # [runs, steps]
    model_actions: dict[str, np.ndarray]  # variant -> [runs, steps]

    @property
    def passed(self) -> bool:
        return all(bool(row["passed"]) for row in self.rows)

    def table(self) -> str:
        header = (
            f"{'variant':<22}{'max |Δaction|':>15}{'mean |Δaction|':>16}{'max |Δstate|':>14}  pass"
        )
        lines = [header, "-" * len(header)]
        for row in self.rows:
            lines.append(
                f"{row['variant']!s:<22}{row['max_action_diff']:>15.3g}"
                f"{row['mean_action_diff']:>16.3g}{row['max_state_diff']:>14.3g}  "
                f"{'yes' if row['passed'] else 'NO'}"
            )
        return "\n".join(lines)


def _observations(seed: int, runs: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = np.zeros((runs, steps, 2))
    resets = np.zeros((runs, steps), dtype=bool)
    half = runs // 2
    env = BatchedMountainCar(half, max_episode_steps=10**9)
    current = env.reset(rng.integers(0, 2**31 - 1, half))
    for t in range(steps):  # trajectories: random pumping actions
        obs[:half, t] = current
        current, *_ = env.step(rng.uniform(-1, 1, half).astype(np.float32))
    obs[half:, :, 0] = rng.uniform(-1.2, 0.6, (runs - half, steps))  # i.i.d. + resets (upstream)
    obs[half:, :, 1] = rng.uniform(-0.07, 0.07, (runs - half, steps))
    resets[half:, ::5] = True
    resets[:, 0] = True
    return obs.astype(np.float32).astype(np.float64), resets


def run_validation(seed: int = 0, runs: int = 10, steps: int = 300) -> ValidationResult:
    obs, resets = _observations(seed, runs, steps)
    generator = torch.Generator().manual_seed(seed)
    base = TWC(dtype=torch.float64, seed=seed)
    with torch.no_grad():
        base.threshold.copy_(-1.0 + 4.0 * torch.rand(7, generator=generator, dtype=torch.float64))
        base.decay_raw.normal_(0.0, 1.0, generator=generator)
        base.weight_raw.normal_(0.0, 1.0, generator=generator)
    params = base.parameters_json()
    wiring = base.wiring
    reference = ReferenceCircuit(
        list(zip(wiring.neuron_names, wiring.roles, strict=False)),
        [(s["from"], s["to"], s["type"], s["weight"]) for s in params["synapses"]],
        {n: v["threshold"] for n, v in params["neurons"].items()},
        {n: v["decay"] for n, v in params["neurons"].items()},
    )
    ref_actions = np.zeros((runs, steps))
    ref_states = np.zeros((runs, steps, 2, len(wiring.neuron_names)))
    for r in range(runs):
        for t in range(steps):
            if resets[r, t]:
                reference.reset()
            internal, output = reference.step(reference_mountain_car_sensors(*obs[r, t]))
            ref_actions[r, t] = reference_mountain_car_action(internal["FWD"], internal["REV"])
            ref_states[r, t, 0] = [internal[n] for n in wiring.neuron_names]
            ref_states[r, t, 1] = [output[n] for n in wiring.neuron_names]
    variants = {
        "exact float64": (TWC.from_parameters(params, dtype=torch.float64), 0.0),
        "exact float32": (TWC.from_parameters(params, dtype=torch.float32), 1e-5),
        "straight-through f64": (
            TWC.from_parameters(params, dtype=torch.float64, dynamics="straight_through"),
            0.0,
        ),
        "soft (V2) float64": (
            TWC.from_parameters(params, dtype=torch.float64, dynamics="soft"),
            None,
        ),
    }
    base_state = base.state_dict()
    rows: list[dict[str, float | str | bool]] = []
    model_actions: dict[str, np.ndarray] = {}
    for name, (circuit, tolerance) in variants.items():
        if circuit.threshold.dtype == torch.float64:
            circuit.load_state_dict(base_state)  # identical raw parameters, not a round trip
        with torch.no_grad():
            actions, _, trace = circuit.unroll(
                torch.from_numpy(obs).to(circuit.threshold.dtype),
                reset=torch.from_numpy(resets),
                return_states=True,
            )
        got = actions[..., 0].double().numpy()
        states = np.stack([trace.internal.double().numpy(), trace.output.double().numpy()], 2)
        action_diff = np.abs(got - ref_actions)
        state_diff = float(np.abs(states - ref_states).max())
        passed = (
            True
            if tolerance is None
            else bool(action_diff.max() <= tolerance and (tolerance > 0 or state_diff == 0.0))
        )
        rows.append(
            {
                "variant": name,
                "max_action_diff": float(action_diff.max()),
                "mean_action_diff": float(action_diff.mean()),
                "max_state_diff": state_diff,
                "tolerance": "report only" if tolerance is None else tolerance,
                "passed": passed,
            }
        )
        model_actions[name] = got
    return ValidationResult(rows, ref_actions, model_actions)


def validation_figure(result: ValidationResult) -> object:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result.model_actions)
    figure, axes = plt.subplots(2, len(names), figsize=(4 * len(names), 7))
    reference = result.reference_actions.reshape(-1)
    for i, name in enumerate(names):
        got = result.model_actions[name].reshape(-1)
        axes[0, i].scatter(reference, got, s=2, alpha=0.4)
        axes[0, i].plot([-1, 1], [-1, 1], color="grey", linewidth=0.8)
        axes[0, i].set_title(name)
        axes[0, i].set_xlabel("reference action")
        axes[0, i].set_ylabel("torch action")
        difference = np.abs(got - reference)
        axes[1, i].hist(np.log10(difference + 1e-18), bins=40)
        axes[1, i].set_xlabel("log10 |Δaction| (1e-18 = identical)")
    figure.tight_layout()
    return figure
