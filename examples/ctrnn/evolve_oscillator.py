"""Evolve a 6-neuron CTRNN into a free-running oscillator (no input) with rnnlab.ctrnn.evolve.

The target is a sine of period 4 time units; fitness is minus the mean squared error of the
output over 20 time units from a fixed start state, against the best of 16 phases of the sine
(the oscillator may settle into any phase). Writes evolve.png and metrics.json into
runs/evolve-<timestamp>/.

    .venv/bin/python examples/ctrnn/evolve_oscillator.py [--generations 150] [--popsize 48]
"""

from __future__ import annotations

import argparse
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from rnnlab.ctrnn import CTRNN, Population, evolve
from rnnlab.run_folder import RunFolder

N, T, DT, SUBSTEPS, PERIOD = 6, 200, 0.1, 2, 4.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=600)
    parser.add_argument("--popsize", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs")
    args = parser.parse_args()

    net = CTRNN(N, 0, 1, activation="tanh", readout="linear", tau=0.5, gain=3.0, seed=args.seed)
    t = np.arange(1, T + 1) * DT
    # sines of the target period at 16 phases: the oscillator may settle into any phase
    phases = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    targets = np.sin(2 * np.pi * t[None, :] / PERIOD + phases[:, None])  # [16, T]
    s0 = np.linspace(-0.5, 0.5, N)
    x = np.zeros((T, 0))

    def fitness(population: Population) -> np.ndarray:
        y = population.run(x, dt=DT, substeps=SUBSTEPS, s0=s0)[:, :, 0]  # [P, T]
        return -phase_free_mse(y)

    def phase_free_mse(y: np.ndarray) -> np.ndarray:
        """Per member: the MSE against the best-matching phase of the target sine."""
        return np.min(np.mean((y[:, None, :] - targets[None]) ** 2, axis=2), axis=1)

    started = time.perf_counter()
    history = evolve(
        net,
        fitness,
        popsize=args.popsize,
        generations=args.generations,
        sigma=0.1,
        lr=0.1,
        seed=args.seed,
        progress=True,
    )
    seconds = time.perf_counter() - started
    y = net.run(x, dt=DT, substeps=SUBSTEPS, s0=s0)
    mse = float(phase_free_mse(y[None, :, 0])[0])
    target = targets[int(np.argmin(np.mean((y[None, :, 0] - targets) ** 2, axis=1)))]

    folder = RunFolder.create(args.out, name="evolve-" + time.strftime("%Y%m%d-%H%M%S"))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6))
    ax1.plot(history["center_fitness"], label="centre")
    ax1.plot(history["best_fitness"], label="best member")
    ax1.set(xlabel="generation", ylabel="fitness (−MSE)")
    ax1.legend()
    ax2.plot(t, target, label="target (best phase)")
    ax2.plot(t, y[:, 0], label="evolved CTRNN")
    ax2.set(xlabel="time", ylabel="output")
    ax2.legend()
    fig.tight_layout()
    folder.save_figure("evolve.png", fig)
    folder.write_json(
        "metrics.json",
        {
            "final_mse": mse,
            "initial_mse": -history["center_fitness"][0],
            "seconds": seconds,
            **vars(args),
        },
    )
    print(
        f"MSE {-history['center_fitness'][0]:.4f} -> {mse:.4f} in {seconds:.1f} s; "
        f"wrote {folder.path}/evolve.png"
    )


if __name__ == "__main__":
    main()
