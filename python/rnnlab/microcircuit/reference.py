"""A straightforward numpy implementation of one microcircuit time step (the reference).

One network at a time, one Python call per step, float64, in the order of the reference note's
§1.8 (later "H" semantics). The Rust kernel (:func:`rnnlab.microcircuit.fast.run_steps`) must
reproduce this to 1e-10; the test-suite checks it for every model, noise type and topology.

Per step (``views`` are the per-layer arrays of :meth:`Layout.views`):

1. keep the old rates ``r``, ``rI``, the old input ``r0`` and old ``vbas``, ``vden``, ``vapi``;
2. prospective voltages ``ŭ = u_prev + taur·τ·(u − u_prev)/dt`` (τ = 1/g of the compartment:
   ``gl+gbas+gapi`` hidden, ``gl+gbas+gntgt`` output, ``gl+gden+gnI`` interneurons), rates
   ``r = φ(ŭ)``, new input, ``u_prev := u``;
3. dendrites: ``vbas = W·r_below``, ``vden = W^IP·r_inp`` (optionally low-passed with tauLO),
   ``vapi = B·r_pre + B^PI·rI``; the soma sees ``vapi + ξ`` with the *previous* ξ;
4. the noise ξ is updated (only while backward learning is on, for PAL/DTPDRL);
5. somatic increments (hidden, output free or nudged, interneurons nudged by ŭ of the layer
   they mirror);
6. plasticity increments (Urbanczik–Senn for W, W^IP; B^PI ← −η·vapi_old ⊗ rI_old; B by PAL:
   ``η·(ξ ⊗ r̃_pre − α·B)`` or DTPDRL), using the new ξ and last step's high-passed rates;
7. apply Δu, then the weight increments gated by the ``learn_*`` flags; BP copies B := Wᵀ and
   B^PI := −B;
8. high-pass: ``r̃ ← r̃ + (r − r_old) − dt/tauHP·r̃``.
"""

from __future__ import annotations

import math

import numpy as np

from rnnlab.microcircuit.network import (
    Layout,
    Options,
    activation,
    activation_derivative,
    counter_normals,
    set_backprop_weights,
)

__all__ = ["noise_active", "reference_run", "reference_step", "refresh_rates"]


def noise_active(opts: Options, layout: Layout, h: int, step: int, learn_bw: bool) -> bool:
    """Whether hidden layer ``h`` is noisy (and learns B) at global step ``step``."""
    if not (opts.noisy and learn_bw):
        return False
    if opts.tbw_steps > 0:
        return (step // opts.tbw_steps) % layout.n_hidden == h
    return True


def refresh_rates(opts: Options, layout: Layout, views: dict[str, list[np.ndarray]]) -> None:
    """Recompute ``r = φ(ŭ)`` and ``rI = φ(ŭI)`` with this implementation's φ, in place.

    The identity for a state this implementation made (every step leaves r = φ(ŭ)). A run starts
    with it, in the Rust kernel too, so that the first rate change of a network at rest is exactly
    0 in each implementation rather than the difference of two math libraries' last bits, on
    which the gate regulariser's mask 𝟙[r̃ > 0] would flip differently on each CPU.
    """
    for L in range(layout.N):
        views["r"][L][...] = activation(opts.activations[L], views["u_breve"][L])
    for j in range(layout.n_pops):
        views["rI"][j][...] = activation(opts.activations[layout.top(j)], views["uI_breve"][j])


def reference_step(
    opts: Options,
    layout: Layout,
    views: dict[str, list[np.ndarray]],
    x: np.ndarray,
    target: np.ndarray | None,
    *,
    seed: int,
    step: int,
    learn_fw: bool,
    learn_lat: bool,
    learn_bw: bool,
) -> float:
    """Advance one network by one step in place; returns ‖ŭ_N − target‖² (0 without target)."""
    N, n_hidden, dt = layout.N, layout.n_hidden, opts.dt
    u, u_prev, u_breve, r = views["u"], views["u_prev"], views["u_breve"], views["r"]
    vbas, vapi, xi, rhp = views["vbas"], views["vapi"], views["xi"], views["rhp"]
    uI, uI_prev, uI_breve, rI, vden = (
        views["uI"],
        views["uI_prev"],
        views["uI_breve"],
        views["rI"],
        views["vden"],
    )
    r0 = views["r0"][0]
    W, F, WIP, B, BPI = views["W"], views["F"], views["WIP"], views["B"], views["BPI"]
    act = opts.activations

    # 1. old values
    r_old = [a.copy() for a in r]
    rI_old = [a.copy() for a in rI]
    r0_old = r0.copy()
    vbas_old = [a.copy() for a in vbas]
    vden_old = [a.copy() for a in vden]
    vapi_old = [a.copy() for a in vapi]

    # 2. prospective voltages and rates
    for L in range(N):
        g = opts.g_output if L == N - 1 else opts.g_hidden
        u_breve[L][...] = u_prev[L] + opts.taur / g * (u[L] - u_prev[L]) / dt
        r[L][...] = activation(act[L], u_breve[L])
        u_prev[L][...] = u[L]
    for j in range(layout.n_pops):
        uI_breve[j][...] = uI_prev[j] + opts.taur / opts.g_inter * (uI[j] - uI_prev[j]) / dt
        rI[j][...] = activation(act[layout.top(j)], uI_breve[j])
        uI_prev[j][...] = uI[j]
    r0[...] = x

    # 3. dendritic potentials
    for L in range(N):
        vbas[L][...] = W[L] @ (r0 if L == 0 else r[L - 1])
    for j in range(layout.n_pops):
        drive = WIP[j] @ r[layout.inp(j)]
        if opts.inter_low_pass:
            vden[j][...] = vden[j] + dt / opts.tauLO * (drive - vden[j])
        else:
            vden[j][...] = drive
    for h in range(n_hidden):
        vapi[h][...] = B[h] @ r[layout.pre(h)] + BPI[h] @ rI[layout.pop(h)]
    vapi_noise = [vapi[h] + xi[h] for h in range(n_hidden)]

    # 4. noise
    active = [noise_active(opts, layout, h, step, learn_bw) for h in range(n_hidden)]
    if any(active) and step % opts.xi_steps == 0:
        normals = counter_normals(seed, step, sum(layout.n[:n_hidden]))
    else:
        normals = None
    start = 0
    for h in range(n_hidden):
        n_h = layout.n[h]
        if not active[h]:
            xi[h][...] = 0.0
        elif normals is not None:
            z = normals[start : start + n_h]
            if opts.noise_mode == "const":
                amplitude = opts.noise_scale[h] * np.ones(n_h)
            else:
                source = {"uP": u, "uP_breve": u_breve, "vapi": vapi}[opts.noise_mode]
                amplitude = opts.noise_scale[h] * np.abs(source[h])
            period = opts.xi_steps * dt
            if opts.noise_type == "OU":
                decay = math.exp(-period / opts.tauxi)
                xi[h][...] = decay * xi[h] + opts.ou_scale * math.sqrt(1.0 - decay * decay) * (
                    amplitude * z
                )
            elif opts.noise_type == "OU_euler":
                xi[h][...] = (
                    xi[h]
                    + (-period * xi[h] + math.sqrt(period * opts.tauxi) * (amplitude * z))
                    / opts.tauxi
                )
            else:
                xi[h][...] = amplitude * z
        start += n_h

    # 5. somatic increments
    du = []
    for L in range(N):
        if L < N - 1:
            du.append(
                dt * (-opts.g_hidden * u[L] + opts.gbas * vbas[L] + opts.gapi * vapi_noise[L])
            )
        elif target is not None:
            du.append(dt * (-opts.g_output * u[L] + opts.gbas * vbas[L] + opts.gntgt * target))
        else:
            du.append(dt * opts.g_output * (opts.k_output * vbas[L] - u[L]))
    duI = [
        dt * (-opts.g_inter * uI[j] + opts.gden * vden[j] + opts.gnI * u_breve[layout.top(j)])
        for j in range(layout.n_pops)
    ]

    # 6. plasticity increments
    dW = []
    for L in range(N):
        k = opts.k_output if L == N - 1 else opts.k_hidden
        if opts.use_activation:
            post = r[L] - activation(act[L], k * vbas_old[L])
        else:
            post = u_breve[L] - k * vbas_old[L]
        pre = r0_old if L == 0 else r_old[L - 1]
        dW.append(dt * opts.eta_fw[L] * np.outer(post, pre))
    dWIP = []
    for j in range(layout.n_pops):
        top = layout.top(j)
        post = rI[j] - activation(act[top], opts.k_inter * vden_old[j])
        dWIP.append(dt * opts.eta_IP[j] * np.outer(post, r_old[layout.inp(j)]))
    dBPI = [
        -dt * opts.eta_PI[h] * np.outer(vapi_old[h], rI_old[layout.pop(h)]) for h in range(n_hidden)
    ]
    dB = []
    for h in range(n_hidden):
        p = layout.pre(h)
        rate = rhp[p] if opts.pyr_hi_pass else r[p]
        if opts.model == "PAL":
            if opts.regularizer == "gate":
                regularization = opts.alpha[h] * B[h] * (rate > 0.0)
            elif opts.regularizer == "varphi":
                d_post = activation_derivative(act[h], u_breve[h])
                d_pre = activation_derivative(act[p], u_breve[p])
                regularization = opts.alpha[h] * (d_post[:, None] * B[h] * d_pre[None, :])
            else:
                regularization = opts.alpha[h] * B[h]
            dB.append(dt * opts.eta_bw[h] * (np.outer(xi[h], rate) - regularization))
        elif opts.model == "DTPDRL" and (active[h] or not opts.pyr_hi_pass):
            reconstruction = B[h] @ rate
            if not opts.pyr_hi_pass:
                reconstruction = reconstruction + BPI[h] @ rI[layout.pop(h)]
            dB.append(
                -dt * opts.eta_bw[h] * np.outer(reconstruction - xi[h], rate)
                - dt * opts.eta_bw[h] * opts.alpha[h] * B[h]
            )
        else:
            dB.append(np.zeros_like(B[h]))

    # 7. apply
    for L in range(N):
        u[L][...] = u[L] + du[L]
    for j in range(layout.n_pops):
        uI[j][...] = uI[j] + duI[j]
    if learn_fw:
        for L in range(N):
            if opts.dWPP_low_pass:
                F[L][...] = F[L] + dt / opts.tauLO * (dW[L] - F[L])
                W[L][...] = W[L] + F[L]
            else:
                W[L][...] = W[L] + dW[L]
    if learn_lat:
        for j in range(layout.n_pops):
            WIP[j][...] = WIP[j] + dWIP[j]
        for h in range(n_hidden):
            BPI[h][...] = BPI[h] + dBPI[h]
    if learn_bw:
        for h in range(n_hidden):
            if active[h] or (opts.model == "DTPDRL" and not opts.pyr_hi_pass):
                B[h][...] = B[h] + dB[h]
    if opts.model == "BP":
        set_backprop_weights(layout, views)

    # 8. high-pass of the rates
    for L in range(N):
        rhp[L][...] = rhp[L] + (r[L] - r_old[L]) - dt / opts.tauHP * rhp[L]

    if target is None:
        return 0.0
    return float(np.sum((u_breve[N - 1] - target) ** 2))


def reference_run(
    opts: Options,
    layout: Layout,
    state: np.ndarray,
    inputs: np.ndarray,
    targets: np.ndarray | None,
    *,
    seeds: list[int],
    step0: int,
    learn_fw: bool,
    learn_lat: bool,
    learn_bw: bool,
) -> np.ndarray:
    """Run ``inputs.shape[1]`` steps for every network of ``state`` (batch, size), in place.

    ``inputs``: (batch, steps, n_input); ``targets``: (batch, steps, n_output) or None.
    Returns the summed squared output error per network, the same as the Rust kernel.
    """
    errors = np.zeros(state.shape[0])
    for b in range(state.shape[0]):
        views = layout.views(state[b])
        refresh_rates(opts, layout, views)
        for t in range(inputs.shape[1]):
            errors[b] += reference_step(
                opts,
                layout,
                views,
                inputs[b, t],
                None if targets is None else targets[b, t],
                seed=seeds[b],
                step=step0 + t,
                learn_fw=learn_fw,
                learn_lat=learn_lat,
                learn_bw=learn_bw,
            )
    return errors
