//! Dendritic cortical microcircuits (Sacramento et al. 2018 with prospective/Latent-Equilibrium
//! voltages) and the learning rules for their backward weights (BP, FA, PAL, DTPDRL).
//!
//! [`run`] advances a whole batch of independent networks by many explicit-Euler steps in one
//! call. It mirrors `rnnlab.microcircuit.reference.reference_step` operation by operation (the
//! order of the reference note's §1.8), so both agree to rounding; see `docs/microcircuit.md`
//! for the equations. The state of one network is one contiguous `f64` row whose layout
//! ([`Layout`]) is the same as the Python `Layout`: the caller hands in its offset table and
//! [`run`] checks it against its own.
//!
//! Noise comes from a counter-based generator ([`counter_normal`]): the normal for (seed, step,
//! neuron) is a pure function of those three numbers, so every instance has its own stream and
//! Python can draw the same numbers without running the kernel.

// The step is written with explicit layer/neuron indices on purpose: it mirrors the numpy
// reference line by line, which is what the 1e-10 equivalence test relies on.
#![allow(clippy::needless_range_loop)]

mod noise;

pub use noise::{counter_normal, counter_normals};

use crate::error::{CoreError, CoreResult};

/// Neuron nonlinearity, codes as in `rnnlab.microcircuit.params.ACTIVATIONS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Linear,
    Relu,
    SoftRelu,
    Logistic,
    Tanh,
    HardSigmoid,
}

impl Activation {
    pub fn from_code(code: i64) -> CoreResult<Self> {
        Ok(match code {
            0 => Activation::Linear,
            1 => Activation::Relu,
            2 => Activation::SoftRelu,
            3 => Activation::Logistic,
            4 => Activation::Tanh,
            5 => Activation::HardSigmoid,
            _ => {
                return Err(CoreError::config(
                    "activations",
                    format!("unknown activation code {code} (allowed 0..=5)"),
                ))
            }
        })
    }

    /// φ(x), overflow-free formulations (the same as the numpy reference).
    #[inline]
    pub fn value(self, x: f64) -> f64 {
        match self {
            Activation::Linear => x,
            Activation::Relu => x.max(0.0),
            Activation::SoftRelu => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            Activation::Logistic => {
                let e = (-x.abs()).exp();
                if x >= 0.0 {
                    1.0 / (1.0 + e)
                } else {
                    e / (1.0 + e)
                }
            }
            Activation::Tanh => x.tanh(),
            Activation::HardSigmoid => (x / 6.0 + 0.5).clamp(0.0, 1.0),
        }
    }

    /// φ′(x).
    #[inline]
    pub fn derivative(self, x: f64) -> f64 {
        match self {
            Activation::Linear => 1.0,
            Activation::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::SoftRelu => Activation::Logistic.value(x),
            Activation::Logistic => {
                let s = Activation::Logistic.value(x);
                s * (1.0 - s)
            }
            Activation::Tanh => {
                let t = x.tanh();
                1.0 - t * t
            }
            Activation::HardSigmoid => {
                if x > -3.0 && x < 3.0 {
                    1.0 / 6.0
                } else {
                    0.0
                }
            }
        }
    }
}

/// Backward-weight model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackwardModel {
    /// B := Wᵀ (and B^PI := −B) after every step.
    Backprop,
    /// B fixed.
    FeedbackAlignment,
    /// ΔB = dt·η·(ξ ⊗ r̃ − α·B): Phaseless Alignment Learning (old names LDRL, phased_noise).
    Pal,
    /// ΔB = −dt·η·(B r̃ − ξ) ⊗ r̃ − dt·η·α·B.
    Dtpdrl,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoiseType {
    /// Exact OU discretisation, stationary variance ou_scale²·amplitude².
    OrnsteinUhlenbeck,
    /// The upstream Euler form ξ ← ξ + (−Δ·ξ + √(Δ·τ)·a·z)/τ (variance ≈ a²/2).
    OrnsteinUhlenbeckEuler,
    /// ξ := a·z, resampled every `xi_steps` and held in between.
    HeldWhite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoiseMode {
    Const,
    Soma,
    Prospective,
    Apical,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Regularizer {
    Plain,
    Gate,
    Varphi,
}

/// Every option of the dynamics (see `rnnlab.microcircuit.network.Options`).
#[derive(Clone, Debug)]
pub struct Config {
    pub layers: Vec<usize>,
    pub skip: bool,
    pub dt: f64,
    pub gl: f64,
    pub gbas: f64,
    pub gapi: f64,
    pub gden: f64,
    pub gni: f64,
    pub gntgt: f64,
    pub taur: f64,
    pub tau_hp: f64,
    pub tau_lo: f64,
    pub tau_xi: f64,
    pub xi_steps: u64,
    pub tbw_steps: u64,
    pub model: BackwardModel,
    pub noise_type: NoiseType,
    pub ou_scale: f64,
    pub noise_mode: NoiseMode,
    pub activations: Vec<Activation>,
    pub eta_fw: Vec<f64>,
    pub eta_bw: Vec<f64>,
    pub eta_ip: Vec<f64>,
    pub eta_pi: Vec<f64>,
    pub alpha: Vec<f64>,
    pub noise_scale: Vec<f64>,
    pub inter_low_pass: bool,
    pub pyr_hi_pass: bool,
    pub dwpp_low_pass: bool,
    pub regularizer: Regularizer,
    pub use_activation: bool,
}

/// Which plasticity is applied during a call.
#[derive(Clone, Copy, Debug, Default)]
pub struct Learning {
    pub forward: bool,
    pub lateral: bool,
    pub backward: bool,
}

/// Field ids: the row order of the offset table (Python `network.FIELDS`).
pub const FIELD_NAMES: [&str; 19] = [
    "u", "u_prev", "u_breve", "r", "vbas", "vapi", "xi", "rhp", "uI", "uI_prev", "uI_breve", "rI",
    "vden", "r0", "W", "F", "WIP", "B", "BPI",
];
const U: usize = 0;
const U_PREV: usize = 1;
const U_BREVE: usize = 2;
const R: usize = 3;
const VBAS: usize = 4;
const VAPI: usize = 5;
const XI: usize = 6;
const RHP: usize = 7;
const UI: usize = 8;
const UI_PREV: usize = 9;
const UI_BREVE: usize = 10;
const RI: usize = 11;
const VDEN: usize = 12;
const R0: usize = 13;
const W: usize = 14;
const F: usize = 15;
const WIP: usize = 16;
const B: usize = 17;
const BPI: usize = 18;

/// Offsets of every slice of one network's state row (0-based layer indices, see the Python
/// `Layout` docstring for the topology conventions).
#[derive(Clone, Debug)]
pub struct Layout {
    /// Pyramidal sizes n[L], L = 0..N-1.
    pub n: Vec<usize>,
    pub n_input: usize,
    pub skip: bool,
    /// `offsets[field][index]`.
    pub offsets: Vec<Vec<usize>>,
    pub size: usize,
}

impl Layout {
    pub fn new(layers: &[usize], skip: bool) -> CoreResult<Self> {
        if layers.len() < 3 || layers.contains(&0) {
            return Err(CoreError::config(
                "layers",
                format!("need >= 3 positive sizes (input, hidden..., output), got {layers:?}"),
            ));
        }
        let n: Vec<usize> = layers[1..].to_vec();
        let big_n = n.len();
        let n_pops = if skip { 1 } else { big_n - 1 };
        let mut layout = Layout {
            n,
            n_input: layers[0],
            skip,
            offsets: vec![Vec::new(); FIELD_NAMES.len()],
            size: 0,
        };
        let mut offset = 0usize;
        let mut add = |field: usize, len: usize, offsets: &mut Vec<Vec<usize>>| {
            offsets[field].push(offset);
            offset += len;
        };
        let mut offsets = vec![Vec::new(); FIELD_NAMES.len()];
        for field in U..=RHP {
            for l in 0..big_n {
                add(field, layout.n[l], &mut offsets);
            }
        }
        for field in UI..=VDEN {
            for j in 0..n_pops {
                add(field, layout.n[layout.top(j)], &mut offsets);
            }
        }
        add(R0, layout.n_input, &mut offsets);
        for field in [W, F] {
            for l in 0..big_n {
                add(field, layout.n[l] * layers[l], &mut offsets);
            }
        }
        for j in 0..n_pops {
            add(
                WIP,
                layout.n[layout.top(j)] * layout.n[layout.inp(j)],
                &mut offsets,
            );
        }
        for h in 0..big_n - 1 {
            add(B, layout.n[h] * layout.n[layout.pre(h)], &mut offsets);
        }
        for h in 0..big_n - 1 {
            add(
                BPI,
                layout.n[h] * layout.n[layout.top(layout.pop(h))],
                &mut offsets,
            );
        }
        layout.offsets = offsets;
        layout.size = offset;
        Ok(layout)
    }

    pub fn depth(&self) -> usize {
        self.n.len()
    }
    pub fn n_hidden(&self) -> usize {
        self.n.len() - 1
    }
    pub fn n_pops(&self) -> usize {
        if self.skip {
            1
        } else {
            self.n_hidden()
        }
    }
    pub fn top(&self, j: usize) -> usize {
        if self.skip {
            self.depth() - 1
        } else {
            j + 1
        }
    }
    pub fn inp(&self, j: usize) -> usize {
        if self.skip {
            self.depth() - 2
        } else {
            j
        }
    }
    pub fn pre(&self, h: usize) -> usize {
        if self.skip {
            self.depth() - 1
        } else {
            h + 1
        }
    }
    pub fn pop(&self, h: usize) -> usize {
        if self.skip {
            0
        } else {
            h
        }
    }
    /// Size of the layer feeding W[l] (the input for l = 0).
    fn below(&self, l: usize) -> usize {
        if l == 0 {
            self.n_input
        } else {
            self.n[l - 1]
        }
    }

    /// Compare with a caller's offset table (`FIELD_NAMES.len()` rows × N columns, −1 absent).
    pub fn check_table(&self, table: &[i64], columns: usize) -> CoreResult<()> {
        if columns != self.depth() || table.len() != FIELD_NAMES.len() * columns {
            return Err(CoreError::shape(
                "offsets",
                format!("[{}, {}]", FIELD_NAMES.len(), self.depth()),
                format!("{} entries with {columns} columns", table.len()),
            ));
        }
        for (field, name) in FIELD_NAMES.iter().enumerate() {
            for c in 0..columns {
                let want = self.offsets[field].get(c).map_or(-1, |&o| o as i64);
                if table[field * columns + c] != want {
                    return Err(CoreError::config(
                        "offsets",
                        format!(
                            "field {name}[{c}] is at {} here but {want} in the kernel's layout",
                            table[field * columns + c]
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Config {
    /// Check list lengths and ranges against the layout.
    pub fn validate(&self, layout: &Layout) -> CoreResult<()> {
        let n_layers = layout.depth();
        let n_hidden = layout.n_hidden();
        let checks: [(&'static str, usize, usize); 7] = [
            ("activations", self.activations.len(), n_layers),
            ("eta_fw", self.eta_fw.len(), n_layers),
            ("eta_bw", self.eta_bw.len(), n_hidden),
            ("eta_IP", self.eta_ip.len(), layout.n_pops()),
            ("eta_PI", self.eta_pi.len(), n_hidden),
            ("alpha", self.alpha.len(), n_hidden),
            ("noise_scale", self.noise_scale.len(), n_hidden),
        ];
        for (field, got, want) in checks {
            if got != want {
                return Err(CoreError::shape(
                    field,
                    format!("{want} entries"),
                    format!("{got}"),
                ));
            }
        }
        let positive = [
            ("dt", self.dt),
            ("tauHP", self.tau_hp),
            ("tauLO", self.tau_lo),
            ("tauxi", self.tau_xi),
        ];
        for (field, value) in positive {
            if !(value > 0.0 && value.is_finite()) {
                return Err(CoreError::config(
                    field,
                    format!("must be > 0, got {value}"),
                ));
            }
        }
        if self.xi_steps == 0 {
            return Err(CoreError::config("xi_steps", "must be >= 1"));
        }
        Ok(())
    }

    fn g_hidden(&self) -> f64 {
        self.gl + self.gbas + self.gapi
    }
    fn g_output(&self) -> f64 {
        self.gl + self.gbas + self.gntgt
    }
    fn g_inter(&self) -> f64 {
        self.gl + self.gden + self.gni
    }
    fn noisy(&self) -> bool {
        matches!(self.model, BackwardModel::Pal | BackwardModel::Dtpdrl)
    }
}

/// `out[i] = Σ_k row[m + i·cols + k] · row[x + k]`, with four interleaved partial sums (so the
/// additions are not one long dependency chain; numpy's BLAS also sums in its own order, and the
/// equivalence tests allow for that at 1e-10).
#[inline]
fn matvec(row: &[f64], m: usize, x: usize, rows: usize, cols: usize, out: &mut [f64]) {
    let xs = &row[x..x + cols];
    let split = cols - cols % 4;
    for (i, slot) in out[..rows].iter_mut().enumerate() {
        let weights = &row[m + i * cols..m + (i + 1) * cols];
        let mut acc = [0.0f64; 4];
        for (w4, x4) in weights[..split]
            .chunks_exact(4)
            .zip(xs[..split].chunks_exact(4))
        {
            acc[0] += w4[0] * x4[0];
            acc[1] += w4[1] * x4[1];
            acc[2] += w4[2] * x4[2];
            acc[3] += w4[3] * x4[3];
        }
        let mut total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
        for (w, v) in weights[split..].iter().zip(&xs[split..]) {
            total += w * v;
        }
        *slot = total;
    }
}

/// Scratch buffers of one call, reused for every network and step.
struct Scratch {
    old: Vec<f64>,
    vapi_noise: Vec<f64>,
    normals: Vec<f64>,
    a: Vec<f64>,
    b: Vec<f64>,
    d_post: Vec<f64>,
    d_pre: Vec<f64>,
    product: Vec<f64>,
    product_next: Vec<f64>,
    active: Vec<bool>,
}

/// Run `steps` steps for every network of the batch in place.
///
/// * `state`: `batch × layout.size`, one row per network;
/// * `inputs`: `batch × steps × n_input`; `targets`: `batch × steps × n_output` or `None`;
/// * `seeds`: one per network (its noise stream); `step0`: global step index of the first step
///   (noise counter and phase schedule).
///
/// Returns the summed ‖ŭ_N − target‖² per network (zeros without targets).
#[allow(clippy::too_many_arguments)]
pub fn run(
    cfg: &Config,
    layout: &Layout,
    state: &mut [f64],
    inputs: &[f64],
    targets: Option<&[f64]>,
    seeds: &[u64],
    step0: u64,
    steps: usize,
    learning: Learning,
) -> CoreResult<Vec<f64>> {
    cfg.validate(layout)?;
    let batch = seeds.len();
    let n_out = layout.n[layout.depth() - 1];
    if state.len() != batch * layout.size {
        return Err(CoreError::shape(
            "state",
            format!("[{batch}, {}]", layout.size),
            format!("{} values", state.len()),
        ));
    }
    if inputs.len() != batch * steps * layout.n_input {
        return Err(CoreError::shape(
            "inputs",
            format!("[{batch}, {steps}, {}]", layout.n_input),
            format!("{} values", inputs.len()),
        ));
    }
    if let Some(t) = targets {
        if t.len() != batch * steps * n_out {
            return Err(CoreError::shape(
                "targets",
                format!("[{batch}, {steps}, {n_out}]"),
                format!("{} values", t.len()),
            ));
        }
    }
    let n_hidden_cells: usize = layout.n[..layout.n_hidden()].iter().sum();
    let widest = layout
        .n
        .iter()
        .copied()
        .max()
        .unwrap_or(1)
        .max(layout.n_input);
    let mut scratch = Scratch {
        old: vec![0.0; layout.size],
        vapi_noise: vec![0.0; n_hidden_cells],
        normals: vec![0.0; n_hidden_cells],
        a: vec![0.0; widest],
        b: vec![0.0; widest],
        d_post: vec![0.0; widest],
        d_pre: vec![0.0; widest],
        product: vec![0.0; widest * widest],
        product_next: vec![0.0; widest * widest],
        active: vec![false; layout.n_hidden()],
    };
    let mut errors = vec![0.0; batch];
    let n_in = layout.n_input;
    for (b, error) in errors.iter_mut().enumerate() {
        let row = &mut state[b * layout.size..(b + 1) * layout.size];
        refresh_rates(cfg, layout, row);
        for t in 0..steps {
            let at = b * steps + t;
            let x = &inputs[at * n_in..(at + 1) * n_in];
            let target = targets.map(|all| &all[at * n_out..(at + 1) * n_out]);
            *error += step(
                cfg,
                layout,
                row,
                x,
                target,
                seeds[b],
                step0 + t as u64,
                learning,
                &mut scratch,
            );
        }
    }
    Ok(errors)
}

/// Recompute the stored rates from the stored prospective voltages, r = φ(ŭ) and rI = φ(ŭI),
/// with this kernel's φ. Within one implementation this is the identity (every step leaves
/// r = φ(ŭ)); it matters for a state made elsewhere (numpy's initialisation): without it, the
/// first step's rate change r − r_old of a network at rest is the difference of two math
/// libraries' last bits instead of exactly 0, and the gate regulariser's mask 𝟙[r̃ > 0] (r̃ the
/// high-passed rate) flips on that rounding noise, differently on each CPU.
fn refresh_rates(cfg: &Config, lay: &Layout, row: &mut [f64]) {
    let o = &lay.offsets;
    for l in 0..lay.depth() {
        let act = cfg.activations[l];
        for i in 0..lay.n[l] {
            row[o[R][l] + i] = act.value(row[o[U_BREVE][l] + i]);
        }
    }
    for j in 0..lay.n_pops() {
        let act = cfg.activations[lay.top(j)];
        for i in 0..lay.n[lay.top(j)] {
            row[o[RI][j] + i] = act.value(row[o[UI_BREVE][j] + i]);
        }
    }
}

/// One step of one network (the order of the reference note's §1.8; see the Python reference
/// for the same computation written out with numpy).
#[allow(clippy::too_many_arguments)]
fn step(
    cfg: &Config,
    lay: &Layout,
    row: &mut [f64],
    x: &[f64],
    target: Option<&[f64]>,
    seed: u64,
    global_step: u64,
    learning: Learning,
    s: &mut Scratch,
) -> f64 {
    let big_n = lay.depth();
    let n_hidden = lay.n_hidden();
    let dt = cfg.dt;
    let o = &lay.offsets;
    let g_hidden = cfg.g_hidden();
    let g_output = cfg.g_output();
    let g_inter = cfg.g_inter();
    let k_hidden = cfg.gbas / g_hidden;
    let k_output = cfg.gbas / (cfg.gl + cfg.gbas);
    let k_inter = cfg.gden / (cfg.gl + cfg.gden);
    let last_pop = lay.n_pops() - 1;

    // 1. old rates, input and dendritic potentials (r, vbas, vapi are adjacent; so are rI, vden)
    let r_span = o[R][0]..o[VAPI][big_n - 1] + lay.n[big_n - 1];
    s.old[r_span.clone()].copy_from_slice(&row[r_span]);
    let ri_span = o[RI][0]..o[VDEN][last_pop] + lay.n[lay.top(last_pop)];
    s.old[ri_span.clone()].copy_from_slice(&row[ri_span]);
    let r0 = o[R0][0];
    s.old[r0..r0 + lay.n_input].copy_from_slice(&row[r0..r0 + lay.n_input]);

    // 2. prospective voltages and rates
    for l in 0..big_n {
        let g = if l == big_n - 1 { g_output } else { g_hidden };
        let scale = cfg.taur / g;
        let act = cfg.activations[l];
        for i in 0..lay.n[l] {
            let u = row[o[U][l] + i];
            let up = row[o[U_PREV][l] + i];
            let ub = up + scale * (u - up) / dt;
            row[o[U_BREVE][l] + i] = ub;
            row[o[R][l] + i] = act.value(ub);
            row[o[U_PREV][l] + i] = u;
        }
    }
    for j in 0..lay.n_pops() {
        let scale = cfg.taur / g_inter;
        let act = cfg.activations[lay.top(j)];
        for i in 0..lay.n[lay.top(j)] {
            let u = row[o[UI][j] + i];
            let up = row[o[UI_PREV][j] + i];
            let ub = up + scale * (u - up) / dt;
            row[o[UI_BREVE][j] + i] = ub;
            row[o[RI][j] + i] = act.value(ub);
            row[o[UI_PREV][j] + i] = u;
        }
    }
    row[r0..r0 + lay.n_input].copy_from_slice(x);

    // 3. dendritic potentials
    for l in 0..big_n {
        let (rows, cols) = (lay.n[l], lay.below(l));
        let src = if l == 0 { r0 } else { o[R][l - 1] };
        matvec(row, o[W][l], src, rows, cols, &mut s.a);
        row[o[VBAS][l]..o[VBAS][l] + rows].copy_from_slice(&s.a[..rows]);
    }
    for j in 0..lay.n_pops() {
        let (rows, cols) = (lay.n[lay.top(j)], lay.n[lay.inp(j)]);
        matvec(row, o[WIP][j], o[R][lay.inp(j)], rows, cols, &mut s.a);
        let v = o[VDEN][j];
        for i in 0..rows {
            if cfg.inter_low_pass {
                row[v + i] = row[v + i] + dt / cfg.tau_lo * (s.a[i] - row[v + i]);
            } else {
                row[v + i] = s.a[i];
            }
        }
    }
    let mut start = 0;
    for h in 0..n_hidden {
        let (pre, pop) = (lay.pre(h), lay.pop(h));
        let n_pop = lay.n[lay.top(pop)];
        matvec(row, o[B][h], o[R][pre], lay.n[h], lay.n[pre], &mut s.a);
        matvec(row, o[BPI][h], o[RI][pop], lay.n[h], n_pop, &mut s.b);
        for i in 0..lay.n[h] {
            let v = s.a[i] + s.b[i];
            row[o[VAPI][h] + i] = v;
            s.vapi_noise[start + i] = v + row[o[XI][h] + i];
        }
        start += lay.n[h];
    }

    // 4. noise
    let mut any_active = false;
    for h in 0..n_hidden {
        let on = cfg.noisy()
            && learning.backward
            && (cfg.tbw_steps == 0 || (global_step / cfg.tbw_steps) % n_hidden as u64 == h as u64);
        s.active[h] = on;
        any_active |= on;
    }
    let fresh = any_active && global_step.is_multiple_of(cfg.xi_steps);
    if fresh {
        counter_normals(seed, global_step, &mut s.normals);
    }
    let period = cfg.xi_steps as f64 * dt;
    let decay = (-period / cfg.tau_xi).exp();
    let ou_gain = cfg.ou_scale * (1.0 - decay * decay).sqrt();
    let euler_gain = (period * cfg.tau_xi).sqrt();
    let mut start = 0;
    for h in 0..n_hidden {
        let xi = o[XI][h];
        if !s.active[h] {
            row[xi..xi + lay.n[h]].fill(0.0);
        } else if fresh {
            let sigma = cfg.noise_scale[h];
            for i in 0..lay.n[h] {
                let z = s.normals[start + i];
                let magnitude = match cfg.noise_mode {
                    NoiseMode::Const => 1.0,
                    NoiseMode::Soma => row[o[U][h] + i].abs(),
                    NoiseMode::Prospective => row[o[U_BREVE][h] + i].abs(),
                    NoiseMode::Apical => row[o[VAPI][h] + i].abs(),
                };
                let amplitude = sigma * magnitude;
                let old = row[xi + i];
                row[xi + i] = match cfg.noise_type {
                    NoiseType::OrnsteinUhlenbeck => decay * old + ou_gain * (amplitude * z),
                    NoiseType::OrnsteinUhlenbeckEuler => {
                        old + (-period * old + euler_gain * (amplitude * z)) / cfg.tau_xi
                    }
                    NoiseType::HeldWhite => amplitude * z,
                };
            }
        }
        start += lay.n[h];
    }

    // 5. somatic dynamics (applied at once: nothing below reads u or uI)
    let mut squared_error = 0.0;
    let mut start = 0;
    for l in 0..big_n {
        for i in 0..lay.n[l] {
            let u = row[o[U][l] + i];
            let vb = row[o[VBAS][l] + i];
            let du = if l < big_n - 1 {
                dt * (-g_hidden * u + cfg.gbas * vb + cfg.gapi * s.vapi_noise[start + i])
            } else if let Some(t) = target {
                dt * (-g_output * u + cfg.gbas * vb + cfg.gntgt * t[i])
            } else {
                dt * g_output * (k_output * vb - u)
            };
            row[o[U][l] + i] = u + du;
        }
        if l < big_n - 1 {
            start += lay.n[l];
        }
    }
    if let Some(t) = target {
        let ub = o[U_BREVE][big_n - 1];
        for (i, ti) in t.iter().enumerate() {
            let e = row[ub + i] - ti;
            squared_error += e * e;
        }
    }
    for j in 0..lay.n_pops() {
        let top = lay.top(j);
        for i in 0..lay.n[top] {
            let u = row[o[UI][j] + i];
            let du = dt
                * (-g_inter * u
                    + cfg.gden * row[o[VDEN][j] + i]
                    + cfg.gni * row[o[U_BREVE][top] + i]);
            row[o[UI][j] + i] = u + du;
        }
    }

    // 6./7. plasticity, applied in an order that reads every weight before it changes
    if learning.backward {
        for h in 0..n_hidden {
            let dtpdrl_always = cfg.model == BackwardModel::Dtpdrl && !cfg.pyr_hi_pass;
            if !(s.active[h] || dtpdrl_always) {
                continue;
            }
            let pre = lay.pre(h);
            let (rows, cols) = (lay.n[h], lay.n[pre]);
            let rate_at = if cfg.pyr_hi_pass {
                o[RHP][pre]
            } else {
                o[R][pre]
            };
            let bo = o[B][h];
            let gain = dt * cfg.eta_bw[h];
            let alpha = cfg.alpha[h];
            // s.b: presynaptic rate, s.a: noise (PAL) or residual (DTPDRL)
            s.b[..cols].copy_from_slice(&row[rate_at..rate_at + cols]);
            match cfg.model {
                BackwardModel::Pal => {
                    s.a[..rows].copy_from_slice(&row[o[XI][h]..o[XI][h] + rows]);
                    if cfg.regularizer == Regularizer::Varphi {
                        for i in 0..rows {
                            s.d_post[i] = cfg.activations[h].derivative(row[o[U_BREVE][h] + i]);
                        }
                        for k in 0..cols {
                            s.d_pre[k] = cfg.activations[pre].derivative(row[o[U_BREVE][pre] + k]);
                        }
                    } else if cfg.regularizer == Regularizer::Gate {
                        for k in 0..cols {
                            s.d_pre[k] = if s.b[k] > 0.0 { 1.0 } else { 0.0 };
                        }
                    }
                    let weights = &mut row[bo..bo + rows * cols];
                    let rates = &s.b[..cols];
                    for (i, w_row) in weights.chunks_exact_mut(cols).enumerate() {
                        let noise = s.a[i];
                        match cfg.regularizer {
                            Regularizer::Plain => {
                                for (w, &rate) in w_row.iter_mut().zip(rates) {
                                    *w += gain * (noise * rate - alpha * *w);
                                }
                            }
                            Regularizer::Gate => {
                                for ((w, &rate), &mask) in
                                    w_row.iter_mut().zip(rates).zip(&s.d_pre[..cols])
                                {
                                    *w += gain * (noise * rate - alpha * *w * mask);
                                }
                            }
                            Regularizer::Varphi => {
                                let dp = s.d_post[i];
                                for ((w, &rate), &dq) in
                                    w_row.iter_mut().zip(rates).zip(&s.d_pre[..cols])
                                {
                                    *w += gain * (noise * rate - alpha * (dp * *w * dq));
                                }
                            }
                        }
                    }
                }
                BackwardModel::Dtpdrl => {
                    matvec(row, bo, rate_at, rows, cols, &mut s.a);
                    if !cfg.pyr_hi_pass {
                        let pop = lay.pop(h);
                        let n_pop = lay.n[lay.top(pop)];
                        matvec(row, o[BPI][h], o[RI][pop], rows, n_pop, &mut s.d_post);
                        for i in 0..rows {
                            s.a[i] += s.d_post[i];
                        }
                    }
                    for i in 0..rows {
                        s.a[i] -= row[o[XI][h] + i];
                    }
                    let decay_gain = dt * cfg.eta_bw[h] * alpha;
                    let step_gain = -dt * cfg.eta_bw[h];
                    let weights = &mut row[bo..bo + rows * cols];
                    for (i, w_row) in weights.chunks_exact_mut(cols).enumerate() {
                        let residual = s.a[i];
                        for (w, &rate) in w_row.iter_mut().zip(&s.b[..cols]) {
                            *w += step_gain * (residual * rate) - decay_gain * *w;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    if learning.lateral {
        for h in 0..n_hidden {
            let pop = lay.pop(h);
            let n_pop = lay.n[lay.top(pop)];
            let gain = -dt * cfg.eta_pi[h];
            let bo = o[BPI][h];
            let v_old = &s.old[o[VAPI][h]..o[VAPI][h] + lay.n[h]];
            let r_old = &s.old[o[RI][pop]..o[RI][pop] + n_pop];
            let weights = &mut row[bo..bo + lay.n[h] * n_pop];
            for (w_row, &v) in weights.chunks_exact_mut(n_pop).zip(v_old) {
                for (w, &r) in w_row.iter_mut().zip(r_old) {
                    *w += gain * (v * r);
                }
            }
        }
        for j in 0..lay.n_pops() {
            let (top, inp) = (lay.top(j), lay.inp(j));
            let (rows, cols) = (lay.n[top], lay.n[inp]);
            let gain = dt * cfg.eta_ip[j];
            let act = cfg.activations[top];
            for i in 0..rows {
                s.a[i] = row[o[RI][j] + i] - act.value(k_inter * s.old[o[VDEN][j] + i]);
            }
            let r_old = &s.old[o[R][inp]..o[R][inp] + cols];
            let wo = o[WIP][j];
            let weights = &mut row[wo..wo + rows * cols];
            for (w_row, &post) in weights.chunks_exact_mut(cols).zip(&s.a[..rows]) {
                for (w, &r) in w_row.iter_mut().zip(r_old) {
                    *w += gain * (post * r);
                }
            }
        }
    }
    if learning.forward {
        for l in 0..big_n {
            let (rows, cols) = (lay.n[l], lay.below(l));
            let k_gain = if l == big_n - 1 { k_output } else { k_hidden };
            let gain = dt * cfg.eta_fw[l];
            let act = cfg.activations[l];
            let pre = if l == 0 { r0 } else { o[R][l - 1] };
            for i in 0..rows {
                let vb_old = s.old[o[VBAS][l] + i];
                s.a[i] = if cfg.use_activation {
                    row[o[R][l] + i] - act.value(k_gain * vb_old)
                } else {
                    row[o[U_BREVE][l] + i] - k_gain * vb_old
                };
            }
            let r_old = &s.old[pre..pre + cols];
            let (wo, fo) = (o[W][l], o[F][l]);
            let len = rows * cols;
            // the W block precedes the F block in the layout
            let (head, tail) = row.split_at_mut(fo);
            let weights = &mut head[wo..wo + len];
            let filtered = &mut tail[..len];
            let lo = dt / cfg.tau_lo;
            for ((w_row, f_row), &post) in weights
                .chunks_exact_mut(cols)
                .zip(filtered.chunks_exact_mut(cols))
                .zip(&s.a[..rows])
            {
                if cfg.dwpp_low_pass {
                    for ((w, f), &r) in w_row.iter_mut().zip(f_row.iter_mut()).zip(r_old) {
                        let dw = gain * (post * r);
                        *f += lo * (dw - *f);
                        *w += *f;
                    }
                } else {
                    for (w, &r) in w_row.iter_mut().zip(r_old) {
                        *w += gain * (post * r);
                    }
                }
            }
        }
    }
    if cfg.model == BackwardModel::Backprop {
        copy_transposes(lay, row, s);
    }

    // 8. high-pass of the rates
    for l in 0..big_n {
        for i in 0..lay.n[l] {
            let at = o[R][l] + i;
            let hp = o[RHP][l] + i;
            row[hp] = row[hp] + (row[at] - s.old[at]) - dt / cfg.tau_hp * row[hp];
        }
    }
    squared_error
}

/// BP: B[h] := W[h+1]ᵀ (skip mode: (W[N-1]···W[h+1])ᵀ) and B^PI[h] := −B[h].
fn copy_transposes(lay: &Layout, row: &mut [f64], s: &mut Scratch) {
    let o = &lay.offsets;
    for h in 0..lay.n_hidden() {
        let cols = lay.n[h];
        // product: (rows × cols), starts as W[h+1]
        let mut rows = lay.n[h + 1];
        s.product[..rows * cols].copy_from_slice(&row[o[W][h + 1]..o[W][h + 1] + rows * cols]);
        if lay.skip {
            for l in h + 2..lay.depth() {
                let next_rows = lay.n[l];
                let wo = o[W][l];
                for i in 0..next_rows {
                    for k in 0..cols {
                        let mut acc = 0.0;
                        for m in 0..rows {
                            acc += row[wo + i * rows + m] * s.product[m * cols + k];
                        }
                        s.product_next[i * cols + k] = acc;
                    }
                }
                rows = next_rows;
                s.product[..rows * cols].copy_from_slice(&s.product_next[..rows * cols]);
            }
        }
        let (bo, bpi) = (o[B][h], o[BPI][h]);
        for i in 0..cols {
            for k in 0..rows {
                let value = s.product[k * cols + i];
                row[bo + i * rows + k] = value;
                row[bpi + i * rows + k] = -value;
            }
        }
    }
}
