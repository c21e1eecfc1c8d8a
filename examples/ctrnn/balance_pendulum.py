"""Balance an inverted pendulum with a CTRNN trained online from injected losses.

The seed's ``balance.rs`` physics with its bugs fixed (reference note §6.2): mass 10, g = 9.8,
length 1, θ measured from hanging down (upright is θ = π), two thrusters (counter-clockwise and
clockwise) whose net torque is L·(cw − ccw), velocity damped by 0.99 per step, θ wrapped as
θ mod 2π (the seed computed 2π mod θ), the thrusters in the right order (the seed swapped them),
and no 0/0 share of the thrust.

The controller is a 16-neuron tanh CTRNN reading (sin e, cos e, v/5) with e = θ − π the angle
from upright; its two linear outputs, clipped at 0 and scaled by 150, are the thrusts. Nothing
gives it targets: after every physics step the caller computes the loss L = e² + 0.1·v² of the
next state and its one-step derivative with respect to each thrust output, and the network
learns from that injected gradient (``loss_and_grad(..., output_grad=G)``) over the last 8
steps, one Adam step per physics step. An episode ends when |e| > π/2 (the pendulum fell) or
after 400 steps; each starts at a random small angle. Writes ``balance.png`` (the angle over
time and the episode lengths) and ``metrics.json`` into ``runs/balance-<timestamp>/``.

    .venv/bin/python examples/ctrnn/balance_pendulum.py [--episodes 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from rnnlab import _native
from rnnlab.ctrnn import CTRNN
from rnnlab.run_folder import RunFolder

MASS, GRAVITY, LENGTH, DAMPING, DT, THRUST = 10.0, 9.8, 1.0, 0.99, 0.02, 150.0
WINDOW, MAX_STEPS = 8, 400


def physics(theta: float, v: float, ccw: float, cw: float) -> tuple[float, float]:
    """One step of the seed's pendulum, fixed (see the module docstring)."""
    torque = -MASS * GRAVITY * LENGTH * math.sin(theta) + LENGTH * (abs(cw) - abs(ccw))
    v = (v + torque / (MASS * LENGTH**2) * DT) * DAMPING
    return (theta + v * DT) % (2 * math.pi), v


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    parser.add_argument("--out", default="runs")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    net = CTRNN(
        16,
        3,
        2,
        activation="tanh",
        integrator="exp_euler",
        readout="linear",
        tau=0.05,
        tau_min=0.005,
        seed=args.seed,
    )
    raw = net.trainable_vector()
    opt = _native.Optimizer("adam", raw.size, args.lr, clip_norm=1.0)
    angles, lengths = [], []
    started = time.perf_counter()
    for _ in range(args.episodes):
        theta, v = math.pi + rng.uniform(-0.3, 0.3), 0.0
        state = np.zeros(net.n_neurons)
        frames: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        steps = 0
        while steps < MAX_STEPS:
            e = theta - math.pi
            obs = np.array([math.sin(e), math.cos(e), v / 5.0])
            start = state
            y = net.run(obs[None], dt=DT, s0=start)[0]
            state = net.state
            ccw, cw = THRUST * max(y[0], 0.0), THRUST * max(y[1], 0.0)
            theta, v = physics(theta, v, ccw, cw)
            e_next = (theta - math.pi + math.pi) % (2 * math.pi) - math.pi
            # injected gradient: dL/dthrust through one step, L = e² + 0.1 v²
            dv = DAMPING * DT * LENGTH / (MASS * LENGTH**2)
            dloss_dnet = 2 * e_next * dv * DT + 0.2 * v * dv
            grad = np.array([-dloss_dnet * THRUST * (y[0] > 0), dloss_dnet * THRUST * (y[1] > 0)])
            frames = ([*frames, (obs, grad, start)])[-WINDOW:]
            xs = np.stack([f[0] for f in frames])
            gs = np.stack([f[1] for f in frames])
            _, grads = net.loss_and_grad(xs, None, dt=DT, s0=frames[0][2], output_grad=gs)
            opt.step(raw, net.trainable_gradient(raw, grads))
            net.set_trainable_vector(raw)
            angles.append(e_next)
            steps += 1
            if abs(e_next) > math.pi / 2:
                break
        lengths.append(steps)
    seconds = time.perf_counter() - started
    folder = RunFolder.create(args.out, name="balance-" + time.strftime("%Y%m%d-%H%M%S"))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6))
    ax1.plot(np.arange(len(angles)) * DT, np.degrees(angles), lw=0.6)
    ax1.set(xlabel="simulated time (s, episodes back to back)", ylabel="angle from upright (°)")
    ax2.plot(lengths, marker="o")
    ax2.axhline(MAX_STEPS, color="gray", ls="--", lw=0.8)
    ax2.set(xlabel="episode", ylabel="steps balanced")
    fig.tight_layout()
    folder.save_figure("balance.png", fig)
    metrics = {"episode_steps": lengths, "seconds": seconds, **vars(args)}
    folder.write_json("metrics.json", metrics)
    print(
        f"steps per episode: first 5 {lengths[:5]}, last 5 {lengths[-5:]} "
        f"(max {MAX_STEPS}); {seconds:.1f} s; wrote {folder.path}/balance.png"
    )


if __name__ == "__main__":
    main()
