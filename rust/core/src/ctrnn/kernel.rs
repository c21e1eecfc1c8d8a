//! The time loop: forward integration and the adjoint backward pass.
//!
//! Layout: states are B×N row-major (batch row b at `b*N`); `x` is B×T×n_in; outputs B×T×n_out.
//!
//! The backward pass keeps the state at every frame boundary from the forward pass and, frame by
//! frame in reverse, re-integrates the frame's substeps to recover the intermediate points
//! (one frame of substeps is cheap to store), then runs the adjoint recursion through them. The
//! weight gradient Σ μ rᵀ over all substeps is not accumulated as rank-1 updates: the (μ, r)
//! rows are buffered and added as one matrix product per buffer fill (usually once per call).

// The kernels index several per-neuron arrays with one index; iterator chains would hide the maths.
#![allow(clippy::needless_range_loop)]

use super::neuron_split;
use super::sparse::Csr;
use super::{Activation, Integrator, Model, ParamsRef, Sequence};
use crate::error::{CoreError, CoreResult};
use crate::float_env::FlushDenormals;
use crate::linalg;
use crate::real::{Fused, Isa, Plain, Real};
use crate::scratch_pool::ScratchBuffer;

/// What [`forward`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardOutput<T> {
    /// B×T×n_out outputs, read at the end of every frame.
    pub y: Vec<T>,
    /// B×N state after the last frame.
    pub final_state: Vec<T>,
    /// B×T×N states at the end of every frame, when asked for.
    pub states: Option<Vec<T>>,
}

/// Gradients of the loss, shaped like the parameters (row-major), plus the start state.
#[derive(Clone, Debug, PartialEq)]
pub struct Gradients<T> {
    pub w: Vec<T>,
    pub tau: Vec<T>,
    pub theta: Vec<T>,
    pub gain: Vec<T>,
    pub u: Vec<T>,
    pub v: Vec<T>,
    pub c: Vec<T>,
    pub s0: Vec<T>,
}

impl<T: Real> Gradients<T> {
    fn zeros(p: &ParamsRef<'_, T>, batch: usize) -> Self {
        let n = p.n_neurons;
        Gradients {
            w: vec![T::ZERO; n * n],
            tau: vec![T::ZERO; n],
            theta: vec![T::ZERO; n],
            gain: vec![T::ZERO; n],
            u: vec![T::ZERO; n * p.n_inputs],
            v: vec![T::ZERO; p.n_outputs * n],
            c: vec![T::ZERO; p.n_outputs],
            s0: vec![T::ZERO; batch * n],
        }
    }
}

/// Threads used when a call does not say: `RNNLAB_NUM_THREADS` if set (≥ 1), else the number
/// of available cores. Threads are started per call (no pool survives it), so this is safe
/// after `fork`.
pub fn default_threads() -> usize {
    std::env::var("RNNLAB_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&t| t >= 1)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Memory the backward pass may use to keep the forward pass's substeps instead of
/// re-integrating them: `RNNLAB_BPTT_MEMORY_MB` (per thread; default 256 MB; 0 forces
/// re-integration).
fn bptt_memory_bytes() -> usize {
    std::env::var("RNNLAB_BPTT_MEMORY_MB")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|mb| mb.is_finite() && *mb >= 0.0)
        .map_or(256 << 20, |mb| (mb * 1024.0 * 1024.0) as usize)
}

/// Below this many multiply-adds per call, splitting the batch across threads costs more than
/// it saves.
const MIN_WORK_PER_THREAD: usize = 1 << 20;

/// How many parts to split `batch` rows into.
fn parts_for(p: &ParamsRef<'_, impl Real>, seq: &Sequence<'_, impl Real>, threads: usize) -> usize {
    let work = seq.batch * seq.frames * seq.substeps * p.n_neurons * p.n_neurons;
    threads
        .min(seq.batch)
        .min((work / MIN_WORK_PER_THREAD).max(1))
        .max(1)
}

/// Batch rows [start, end) of a sequence.
fn rows_of<'a, T: Real>(
    p: &ParamsRef<'_, T>,
    seq: &Sequence<'a, T>,
    start: usize,
    end: usize,
) -> Sequence<'a, T> {
    let (xt, n) = (seq.frames * p.n_inputs, p.n_neurons);
    Sequence {
        batch: end - start,
        frames: seq.frames,
        x: &seq.x[start * xt..end * xt],
        dts: seq.dts,
        substeps: seq.substeps,
        s0: &seq.s0[start * n..end * n],
    }
}

/// Split `batch` rows into `parts` contiguous ranges of nearly equal size.
fn ranges(batch: usize, parts: usize) -> Vec<(usize, usize)> {
    (0..parts)
        .map(|k| (k * batch / parts, (k + 1) * batch / parts))
        .collect()
}

/// How a call stores the recurrent weights and how many threads it may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Threads over which batch rows are split (when the call is large enough).
    pub threads: usize,
    /// Use the CSR kernels: the products cost one multiply-add per synapse (the mask's non-zero
    /// entries, or W's when there is no mask) instead of N².
    pub sparse: bool,
}

impl Options {
    /// Dense kernels over [`default_threads`].
    pub fn dense() -> Self {
        Options {
            threads: default_threads(),
            sparse: false,
        }
    }
}

/// Run a batch of sequences from `seq.s0`, splitting batch rows over [`default_threads`].
pub fn forward<T: Real>(
    p: &ParamsRef<'_, T>,
    model: Model,
    seq: &Sequence<'_, T>,
    return_states: bool,
) -> CoreResult<ForwardOutput<T>> {
    forward_with_threads(p, model, seq, return_states, default_threads())
}

/// [`forward`] with an explicit thread count. Batch rows are independent, so each thread
/// integrates a contiguous block of rows; results agree across thread counts to round-off
/// (blocks of fewer than 8 rows use the row kernel instead of the GEMM).
pub fn forward_with_threads<T: Real>(
    p: &ParamsRef<'_, T>,
    model: Model,
    seq: &Sequence<'_, T>,
    return_states: bool,
    threads: usize,
) -> CoreResult<ForwardOutput<T>> {
    let options = Options {
        threads,
        sparse: false,
    };
    forward_with_options(p, model, seq, return_states, None, options)
}

fn check_mask<T: Real>(p: &ParamsRef<'_, T>, mask: Option<&[T]>) -> CoreResult<()> {
    if let Some(m) = mask {
        if m.len() != p.n_neurons * p.n_neurons {
            return Err(CoreError::shape(
                "mask",
                format!("[{0}, {0}]", p.n_neurons),
                format!("{} values", m.len()),
            ));
        }
    }
    Ok(())
}

/// [`forward`] with explicit [`Options`]; `mask` gives the synapses of the sparse kernels
/// (without one, the non-zero entries of W).
pub fn forward_with_options<T: Real>(
    p: &ParamsRef<'_, T>,
    model: Model,
    seq: &Sequence<'_, T>,
    return_states: bool,
    mask: Option<&[T]>,
    options: Options,
) -> CoreResult<ForwardOutput<T>> {
    p.validate()?;
    seq.validate(p)?;
    check_mask(p, mask)?;
    let csr = options
        .sparse
        .then(|| Csr::from_dense(p.w, mask, p.n_neurons));
    let sparse = csr.as_ref();
    let parts = parts_for(p, seq, options.threads);
    if parts < options.threads && sparse.is_none() {
        // Fewer batch rows than threads: split the neurons instead, when N is large enough.
        let neuron_blocks = neuron_split::neuron_parts(p.n_neurons, seq.batch, options.threads);
        let work = seq.batch * seq.frames * seq.substeps * p.n_neurons * p.n_neurons;
        if neuron_blocks > parts && work >= MIN_WORK_PER_THREAD * neuron_blocks {
            return Ok(neuron_split::forward_split_neurons(
                p,
                model,
                seq,
                return_states,
                neuron_blocks,
            ));
        }
    }
    if parts <= 1 {
        return Ok(forward_on_this_thread(p, model, seq, return_states, sparse));
    }
    let pieces: Vec<ForwardOutput<T>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ranges(seq.batch, parts)
            .into_iter()
            .map(|(start, end)| {
                let part = rows_of(p, seq, start, end);
                scope.spawn(move || forward_on_this_thread(p, model, &part, return_states, sparse))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut out = ForwardOutput {
        y: Vec::with_capacity(seq.batch * seq.frames * p.n_outputs),
        final_state: Vec::with_capacity(seq.batch * p.n_neurons),
        states: if return_states {
            Some(Vec::new())
        } else {
            None
        },
    };
    for piece in pieces {
        out.y.extend_from_slice(&piece.y);
        out.final_state.extend_from_slice(&piece.final_state);
        if let (Some(all), Some(st)) = (out.states.as_mut(), piece.states) {
            all.extend_from_slice(&st);
        }
    }
    Ok(out)
}

/// One member of a population: the outputs of a validated call, on this thread, dense.
pub(super) fn forward_member<T: Real>(
    p: &ParamsRef<'_, T>,
    model: Model,
    seq: &Sequence<'_, T>,
) -> Vec<T> {
    forward_on_this_thread(p, model, seq, false, None).y
}

fn forward_on_this_thread<T: Real>(
    p: &ParamsRef<'_, T>,
    model: Model,
    seq: &Sequence<'_, T>,
    return_states: bool,
    sparse: Option<&Csr<T>>,
) -> ForwardOutput<T> {
    let _flush = FlushDenormals::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { forward_avx2(p, model, seq, return_states, sparse) };
        }
    }
    forward_body::<T, Plain>(p, model, seq, return_states, sparse)
}

/// Mean squared error over (batch, frames, outputs) of the outputs against `targets`
/// (B×T×n_out), and its gradient. `truncation = Some(K)` cuts the gradient every K frames.
/// Batch rows are split over [`default_threads`].
pub fn loss_and_grad<T: Real>(
    p: &ParamsRef<'_, T>,
    model: Model,
    seq: &Sequence<'_, T>,
    targets: &[T],
    truncation: Option<usize>,
    mask: Option<&[T]>,
) -> CoreResult<(f64, Gradients<T>)> {
    loss_and_grad_with_threads(p, model, seq, targets, truncation, mask, default_threads())
}

/// [`loss_and_grad`] with an explicit thread count: each thread differentiates a block of
/// batch rows and the gradients are summed (equal to one thread up to round-off).
pub fn loss_and_grad_with_threads<T: Real>(
    p: &ParamsRef<'_, T>,
    model: Model,
    seq: &Sequence<'_, T>,
    targets: &[T],
    truncation: Option<usize>,
    mask: Option<&[T]>,
    threads: usize,
) -> CoreResult<(f64, Gradients<T>)> {
    let options = Options {
        threads,
        sparse: false,
    };
    loss_and_grad_with_options(p, model, seq, targets, truncation, mask, options)
}

/// [`loss_and_grad`] with explicit [`Options`]. With `options.sparse`, the synapses are the
/// non-zero entries of `mask` (or of W without a mask) and every product costs one multiply-add
/// per synapse; the result equals the dense kernels' on the same mask to round-off.
pub fn loss_and_grad_with_options<T: Real>(
    p: &ParamsRef<'_, T>,
    model: Model,
    seq: &Sequence<'_, T>,
    targets: &[T],
    truncation: Option<usize>,
    mask: Option<&[T]>,
    options: Options,
) -> CoreResult<(f64, Gradients<T>)> {
    p.validate()?;
    seq.validate(p)?;
    let expected = seq.batch * seq.frames * p.n_outputs;
    if targets.len() != expected {
        return Err(CoreError::shape(
            "target",
            format!(
                "[{}, {}, {}] ({expected} values)",
                seq.batch, seq.frames, p.n_outputs
            ),
            format!("{} values", targets.len()),
        ));
    }
    if let Some(pos) = targets.iter().position(|v| !v.is_finite()) {
        return Err(CoreError::config(
            "target",
            format!(
                "must be finite, found {:?} at flat index {pos}",
                targets[pos]
            ),
        ));
    }
    if truncation == Some(0) {
        return Err(CoreError::config(
            "truncation",
            "must be None (full BPTT) or an integer >= 1, got 0",
        ));
    }
    check_mask(p, mask)?;
    if seq.frames == 0 {
        return Ok((0.0, Gradients::zeros(p, seq.batch)));
    }
    let csr = options
        .sparse
        .then(|| Csr::from_dense(p.w, mask, p.n_neurons));
    let sparse = csr.as_ref();
    let count = expected as f64;
    let parts = parts_for(p, seq, options.threads);
    if parts <= 1 {
        return Ok(loss_and_grad_on_this_thread(
            p, model, seq, targets, truncation, mask, count, sparse,
        ));
    }
    let per_row = seq.frames * p.n_outputs;
    let pieces: Vec<(f64, Gradients<T>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = ranges(seq.batch, parts)
            .into_iter()
            .map(|(start, end)| {
                let part = rows_of(p, seq, start, end);
                let part_targets = &targets[start * per_row..end * per_row];
                scope.spawn(move || {
                    loss_and_grad_on_this_thread(
                        p,
                        model,
                        &part,
                        part_targets,
                        truncation,
                        mask,
                        count,
                        sparse,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let mut loss = 0.0;
    let mut total = Gradients::zeros(p, 0);
    for (part_loss, g) in pieces {
        loss += part_loss;
        for (acc, part) in [
            (&mut total.w, &g.w),
            (&mut total.tau, &g.tau),
            (&mut total.theta, &g.theta),
            (&mut total.gain, &g.gain),
            (&mut total.u, &g.u),
            (&mut total.v, &g.v),
            (&mut total.c, &g.c),
        ] {
            for (a, b) in acc.iter_mut().zip(part) {
                *a += *b;
            }
        }
        total.s0.extend_from_slice(&g.s0);
    }
    Ok((loss, total))
}

#[allow(clippy::too_many_arguments)]
fn loss_and_grad_on_this_thread<T: Real>(
    p: &ParamsRef<'_, T>,
    model: Model,
    seq: &Sequence<'_, T>,
    targets: &[T],
    truncation: Option<usize>,
    mask: Option<&[T]>,
    count: f64,
    sparse: Option<&Csr<T>>,
) -> (f64, Gradients<T>) {
    let _flush = FlushDenormals::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe {
                loss_and_grad_avx2(p, model, seq, targets, truncation, mask, count, sparse)
            };
        }
    }
    loss_and_grad_body::<T, Plain>(p, model, seq, targets, truncation, mask, count, sparse)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2<T: Real>(
    p: &ParamsRef<'_, T>,
    model: Model,
    seq: &Sequence<'_, T>,
    return_states: bool,
    sparse: Option<&Csr<T>>,
) -> ForwardOutput<T> {
    forward_body::<T, Fused>(p, model, seq, return_states, sparse)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn loss_and_grad_avx2<T: Real>(
    p: &ParamsRef<'_, T>,
    model: Model,
    seq: &Sequence<'_, T>,
    targets: &[T],
    truncation: Option<usize>,
    mask: Option<&[T]>,
    count: f64,
    sparse: Option<&Csr<T>>,
) -> (f64, Gradients<T>) {
    loss_and_grad_body::<T, Fused>(p, model, seq, targets, truncation, mask, count, sparse)
}

/// Per-frame constants of the integrator (they change only when the frame duration does).
pub(super) struct FrameCoefficients<T> {
    pub(super) h: T,
    dt: T,
    /// euler: h/τ; exp_euler: e^{−h/τ}; rk4: 1/τ.
    pub(super) a: Vec<T>,
    /// exp_euler: 1 − e^{−h/τ}; otherwise unused.
    pub(super) b: Vec<T>,
}

impl<T: Real> FrameCoefficients<T> {
    pub(super) fn new(n: usize) -> Self {
        FrameCoefficients {
            h: T::ZERO,
            dt: -T::ONE,
            a: vec![T::ZERO; n],
            b: vec![T::ZERO; n],
        }
    }

    #[inline(always)]
    pub(super) fn update(&mut self, integrator: Integrator, tau: &[T], dt: T, substeps: usize) {
        if dt == self.dt {
            return;
        }
        self.dt = dt;
        self.h = dt / T::from_f64(substeps as f64);
        let h = self.h;
        for i in 0..tau.len() {
            match integrator {
                Integrator::Euler => self.a[i] = h / tau[i],
                Integrator::ExpEuler => {
                    let e = (-(h / tau[i])).exp();
                    self.a[i] = e;
                    self.b[i] = T::ONE - e;
                }
                Integrator::Rk4 => self.a[i] = T::ONE / tau[i],
            }
        }
    }
}

/// The euler or exp_euler update of a block of states (rows of `coef.a.len()` neurons) from
/// their drives: s += a ⊙ (d − s), or s = a ⊙ s + b ⊙ d.
#[inline(always)]
pub(super) fn leak_update<T: Real>(
    integrator: Integrator,
    coef: &FrameCoefficients<T>,
    state: &mut [T],
    drive: &[T],
) {
    let width = coef.a.len();
    for (row, d) in state.chunks_exact_mut(width).zip(drive.chunks_exact(width)) {
        for i in 0..width {
            row[i] = if integrator == Integrator::Euler {
                row[i] + coef.a[i] * (d[i] - row[i])
            } else {
                coef.a[i] * row[i] + coef.b[i] * d[i]
            };
        }
    }
}

/// RK4 stage `q` (0..4) of a block of states, given the stage's drives at `point`: the slope
/// f = (d − point)/τ joins `slope_sum` with weight 1, 2, 2, 1, and `point` moves to the next
/// stage's point (state + h/2·f, state + h/2·f, state + h·f).
#[inline(always)]
pub(super) fn rk4_stage<T: Real>(
    q: usize,
    coef: &FrameCoefficients<T>,
    state: &[T],
    point: &mut [T],
    slope_sum: &mut [T],
    drive: &[T],
) {
    let h = coef.h;
    let half = h * T::from_f64(0.5);
    let two = T::from_f64(2.0);
    let (step, weight) = match q {
        0 => (half, T::ONE),
        1 => (half, two),
        2 => (h, two),
        _ => (T::ZERO, T::ONE),
    };
    let width = coef.a.len();
    for start in (0..state.len()).step_by(width) {
        let s = &state[start..start + width];
        let pt = &mut point[start..start + width];
        let sum = &mut slope_sum[start..start + width];
        let d = &drive[start..start + width];
        for i in 0..width {
            let f = (d[i] - pt[i]) * coef.a[i];
            if q == 0 {
                sum[i] = f;
            } else {
                sum[i] += weight * f;
            }
            if q < 3 {
                pt[i] = s[i] + step * f;
            }
        }
    }
}

/// Scratch space for one batch of states, and the transposed weights the row kernels read.
struct Scratch<'c, T: Real> {
    /// The CSR weights when the call runs the sparse kernels.
    sparse: Option<&'c Csr<T>>,
    /// Wᵀ (N×N) and Uᵀ (n_in×N), made once per call.
    wt: ScratchBuffer<T>,
    ut: Vec<T>,
    /// U·x for the current frame, B×N.
    ux: Vec<T>,
    /// the current frame's inputs gathered into B×n_in.
    xk: Vec<T>,
    rate: Vec<T>,
    drive: Vec<T>,
    /// rk4 stage point and slope accumulator.
    point: Vec<T>,
    slope_sum: Vec<T>,
}

impl<'c, T: Real> Scratch<'c, T> {
    fn new(p: &ParamsRef<'_, T>, batch: usize, sparse: Option<&'c Csr<T>>) -> Self {
        let (n, n_in) = (p.n_neurons, p.n_inputs);
        let bn = batch * n;
        Scratch {
            sparse,
            wt: if sparse.is_some() {
                ScratchBuffer::zeroed(0)
            } else {
                let mut wt = ScratchBuffer::zeroed(n * n);
                linalg::transpose_into(p.w, n, n, &mut wt);
                wt
            },
            ut: linalg::transpose(p.u, n, n_in),
            ux: vec![T::ZERO; bn],
            xk: vec![T::ZERO; batch * n_in],
            rate: vec![T::ZERO; bn],
            drive: vec![T::ZERO; bn],
            point: vec![T::ZERO; bn],
            slope_sum: vec![T::ZERO; bn],
        }
    }
}

/// Gather frame k's inputs and compute U·x_k into `scratch.ux`.
#[inline(always)]
fn prepare_frame<T: Real, I: Isa>(
    p: &ParamsRef<'_, T>,
    seq: &Sequence<'_, T>,
    k: usize,
    s: &mut Scratch<'_, T>,
) {
    let (n, n_in, frames) = (p.n_neurons, p.n_inputs, seq.frames);
    if n_in == 0 {
        s.ux.iter_mut().for_each(|v| *v = T::ZERO);
        return;
    }
    for b in 0..seq.batch {
        let src = (b * frames + k) * n_in;
        s.xk[b * n_in..(b + 1) * n_in].copy_from_slice(&seq.x[src..src + n_in]);
    }
    linalg::rows_times_transposed::<T, I>(&mut s.ux, &s.xk, p.u, &s.ut, seq.batch, n, n_in);
}

/// rate = φ(g ⊙ (point + θ)); drive = rate·Wᵀ + U·x.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn evaluate_drive<T: Real, I: Isa>(
    p: &ParamsRef<'_, T>,
    activation: Activation,
    batch: usize,
    point: &[T],
    ux: &[T],
    wt: &[T],
    sparse: Option<&Csr<T>>,
    rate: &mut [T],
    drive: &mut [T],
) {
    let n = p.n_neurons;
    // One loop per activation, so that each is a straight vectorisable loop.
    macro_rules! rates {
        ($act:expr) => {
            for b in 0..batch {
                let row = b * n;
                let out = &mut rate[row..row + n];
                let pt = &point[row..row + n];
                for i in 0..n {
                    out[i] = $act.value(p.gain[i] * (pt[i] + p.theta[i]));
                }
            }
        };
    }
    match activation {
        Activation::Logistic => rates!(Activation::Logistic),
        Activation::Tanh => rates!(Activation::Tanh),
        Activation::Relu => rates!(Activation::Relu),
        Activation::Identity => rates!(Activation::Identity),
    }
    match sparse {
        Some(csr) => csr.times_rows::<I>(drive, rate, batch),
        None => linalg::rows_times_transposed::<T, I>(drive, rate, p.w, wt, batch, n, n),
    }
    for (d, u) in drive.iter_mut().zip(ux) {
        *d += *u;
    }
}

/// Where a recording substep writes its stage points, rates and drives (each stages×B×N).
struct StageRecord<'r, T> {
    points: &'r mut [T],
    rates: &'r mut [T],
    drives: &'r mut [T],
}

/// Advance `state` (B×N) by one substep; with `record`, keep each stage's point, rate and drive.
#[inline(always)]
fn substep<T: Real, I: Isa>(
    p: &ParamsRef<'_, T>,
    model: Model,
    batch: usize,
    coef: &FrameCoefficients<T>,
    state: &mut [T],
    scratch: &mut Scratch<'_, T>,
    record: Option<StageRecord<'_, T>>,
) {
    let n = p.n_neurons;
    let bn = batch * n;
    match model.integrator {
        Integrator::Euler | Integrator::ExpEuler => {
            let (rate, drive): (&mut [T], &mut [T]) = match record {
                Some(rec) => {
                    rec.points[..bn].copy_from_slice(state);
                    (&mut rec.rates[..bn], &mut rec.drives[..bn])
                }
                None => (&mut scratch.rate[..], &mut scratch.drive[..]),
            };
            evaluate_drive::<T, I>(
                p,
                model.activation,
                batch,
                state,
                &scratch.ux,
                &scratch.wt,
                scratch.sparse,
                rate,
                drive,
            );
            leak_update(model.integrator, coef, state, drive);
        }
        Integrator::Rk4 => {
            let sixth = coef.h / T::from_f64(6.0);
            let mut record = record;
            // Stage q is evaluated at point_q; slope f_q = (−point_q + drive_q)/τ.
            scratch.point.copy_from_slice(state);
            for q in 0..4 {
                let (rate, drive): (&mut [T], &mut [T]) = match record.as_mut() {
                    Some(rec) => {
                        rec.points[q * bn..(q + 1) * bn].copy_from_slice(&scratch.point);
                        (
                            &mut rec.rates[q * bn..(q + 1) * bn],
                            &mut rec.drives[q * bn..(q + 1) * bn],
                        )
                    }
                    None => (&mut scratch.rate[..], &mut scratch.drive[..]),
                };
                evaluate_drive::<T, I>(
                    p,
                    model.activation,
                    batch,
                    &scratch.point,
                    &scratch.ux,
                    &scratch.wt,
                    scratch.sparse,
                    rate,
                    drive,
                );
                rk4_stage(
                    q,
                    coef,
                    state,
                    &mut scratch.point,
                    &mut scratch.slope_sum,
                    drive,
                );
            }
            for (s, k) in state.iter_mut().zip(&scratch.slope_sum) {
                *s += sixth * *k;
            }
        }
    }
}

#[inline(always)]
fn write_outputs<T: Real>(p: &ParamsRef<'_, T>, state_row: &[T], out: &mut [T]) {
    for (o, y) in out.iter_mut().enumerate() {
        *y = p.c[o] + linalg::dot(&p.v[o * p.n_neurons..(o + 1) * p.n_neurons], state_row);
    }
}

#[inline(always)]
fn forward_body<T: Real, I: Isa>(
    p: &ParamsRef<'_, T>,
    model: Model,
    seq: &Sequence<'_, T>,
    return_states: bool,
    sparse: Option<&Csr<T>>,
) -> ForwardOutput<T> {
    let (n, n_out, batch, frames) = (p.n_neurons, p.n_outputs, seq.batch, seq.frames);
    let mut state = seq.s0.to_vec();
    let mut y = vec![T::ZERO; batch * frames * n_out];
    let mut states = if return_states {
        Some(vec![T::ZERO; batch * frames * n])
    } else {
        None
    };
    let mut scratch = Scratch::new(p, batch, sparse);
    let mut coef = FrameCoefficients::new(n);
    for k in 0..frames {
        coef.update(model.integrator, p.tau, seq.dts[k], seq.substeps);
        prepare_frame::<T, I>(p, seq, k, &mut scratch);
        for _ in 0..seq.substeps {
            substep::<T, I>(p, model, batch, &coef, &mut state, &mut scratch, None);
        }
        for b in 0..batch {
            let row = &state[b * n..(b + 1) * n];
            let at = (b * frames + k) * n_out;
            write_outputs(p, row, &mut y[at..at + n_out]);
            if let Some(st) = states.as_mut() {
                let at = (b * frames + k) * n;
                st[at..at + n].copy_from_slice(row);
            }
        }
    }
    ForwardOutput {
        y,
        final_state: state,
        states,
    }
}

/// Rows (μ, r) whose outer products make the recurrent-weight gradient, added to it as one
/// matrix product whenever the buffer fills.
struct WeightGradientBuffer<T: Real> {
    mu: ScratchBuffer<T>,
    rate: ScratchBuffer<T>,
    rows: usize,
    capacity: usize,
    n: usize,
}

impl<T: Real> WeightGradientBuffer<T> {
    fn new(n: usize, rows_per_frame: usize, frames: usize) -> Self {
        const TARGET_VALUES: usize = 1 << 21;
        let wanted = (TARGET_VALUES / n.max(1)).min(rows_per_frame * frames);
        let frames_per_fill = (wanted / rows_per_frame).max(1);
        let capacity = frames_per_fill * rows_per_frame;
        WeightGradientBuffer {
            mu: ScratchBuffer::zeroed(capacity * n),
            rate: ScratchBuffer::zeroed(capacity * n),
            rows: 0,
            capacity,
            n,
        }
    }

    /// A buffer that holds all `rows` at once (the forward pass writes the rates in place).
    fn whole(n: usize, rows: usize) -> Self {
        WeightGradientBuffer {
            mu: ScratchBuffer::zeroed(rows * n),
            rate: ScratchBuffer::zeroed(rows * n),
            rows: 0,
            capacity: rows,
            n,
        }
    }

    /// Make room for `rows` more rows; returns the first row index to write to.
    #[inline(always)]
    fn reserve(&mut self, rows: usize, grad_w: &mut [T], sparse: Option<&Csr<T>>) -> usize {
        if self.rows + rows > self.capacity {
            self.flush(grad_w, sparse);
        }
        let start = self.rows;
        self.rows += rows;
        start
    }

    // Inlined into the caller, so that the AVX2 copy of the kernel compiles it with AVX2 too.
    #[inline(always)]
    fn flush(&mut self, grad_w: &mut [T], sparse: Option<&Csr<T>>) {
        match sparse {
            Some(csr) => csr.add_gradient(grad_w, &self.mu, &self.rate, self.rows),
            None => linalg::add_transposed_product(
                grad_w, &self.mu, &self.rate, self.rows, self.n, self.n,
            ),
        }
        self.rows = 0;
    }
}

/// Given μ (cotangent of the drive d = W·φ(z) + U·x at `point`, z = g ⊙ (point + θ)), add
/// ∂/∂point to `lambda_out` and the gain and bias gradients; the W and U parts are handled by the
/// caller through the buffered μ rows.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn drive_vjp<T: Real, I: Isa>(
    p: &ParamsRef<'_, T>,
    activation: Activation,
    batch: usize,
    point: &[T],
    rate: &[T],
    mu: &[T],
    back: &mut [T],
    lambda_out: &mut [T],
    grads: &mut Gradients<T>,
    sparse: Option<&Csr<T>>,
) {
    let n = p.n_neurons;
    match sparse {
        Some(csr) => csr.transposed_times_rows::<I>(back, mu, batch),
        None => linalg::rows_times::<T, I>(back, mu, p.w, batch, n, n),
    }
    for b in 0..batch {
        let row = b * n;
        for j in 0..n {
            let shifted = point[row + j] + p.theta[j];
            let z = p.gain[j] * shifted;
            let t = back[row + j] * activation.slope(z, rate[row + j]);
            lambda_out[row + j] += t * p.gain[j];
            grads.gain[j] += t * shifted;
            grads.theta[j] += t * p.gain[j];
        }
    }
}

/// The loss (normalised by `count`, the element count of the whole batch when this is one block
/// of it) and its gradient for the rows of `seq`, on the calling thread.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn loss_and_grad_body<T: Real, I: Isa>(
    p: &ParamsRef<'_, T>,
    model: Model,
    seq: &Sequence<'_, T>,
    targets: &[T],
    truncation: Option<usize>,
    mask: Option<&[T]>,
    count: f64,
    sparse: Option<&Csr<T>>,
) -> (f64, Gradients<T>) {
    let (n, n_in, n_out) = (p.n_neurons, p.n_inputs, p.n_outputs);
    let (batch, frames, substeps) = (seq.batch, seq.frames, seq.substeps);
    let bn = batch * n;
    let stages = model.integrator.stages();

    let rows_per_frame = substeps * stages * batch;
    let frame_values = substeps * stages * bn;
    // Keep every substep of the forward pass (stage points, drives and rates) when that fits the
    // memory budget; otherwise keep frame boundaries only and re-integrate each frame backwards.
    let store_all = 3 * frames * frame_values * std::mem::size_of::<T>() <= bptt_memory_bytes();
    let (mut wbuf, kept_frames) = if store_all {
        (
            WeightGradientBuffer::whole(n, frames * rows_per_frame),
            frames,
        )
    } else {
        (WeightGradientBuffer::new(n, rows_per_frame, frames), 1)
    };
    let mut points = ScratchBuffer::<T>::zeroed(kept_frames * frame_values);
    let mut drives = ScratchBuffer::<T>::zeroed(kept_frames * frame_values);

    // Forward pass, keeping every frame-boundary state.
    let mut boundary = ScratchBuffer::<T>::zeroed((frames + 1) * bn);
    boundary[..bn].copy_from_slice(seq.s0);
    let mut y = vec![T::ZERO; batch * frames * n_out];
    let mut scratch = Scratch::new(p, batch, sparse);
    let mut coef = FrameCoefficients::new(n);
    {
        let mut state = seq.s0.to_vec();
        for k in 0..frames {
            coef.update(model.integrator, p.tau, seq.dts[k], substeps);
            prepare_frame::<T, I>(p, seq, k, &mut scratch);
            for m in 0..substeps {
                let record = if store_all {
                    let at = k * frame_values + m * stages * bn;
                    let rate_at = (k * rows_per_frame + m * stages * batch) * n;
                    Some(StageRecord {
                        points: &mut points[at..at + stages * bn],
                        rates: &mut wbuf.rate[rate_at..rate_at + stages * bn],
                        drives: &mut drives[at..at + stages * bn],
                    })
                } else {
                    None
                };
                substep::<T, I>(p, model, batch, &coef, &mut state, &mut scratch, record);
            }
            boundary[(k + 1) * bn..(k + 2) * bn].copy_from_slice(&state);
            for b in 0..batch {
                let at = (b * frames + k) * n_out;
                write_outputs(p, &state[b * n..(b + 1) * n], &mut y[at..at + n_out]);
            }
        }
    }

    let mut loss = 0.0f64;
    for (yv, tv) in y.iter().zip(targets) {
        let e = (*yv - *tv).to_f64();
        loss += e * e;
    }
    loss /= count;
    let out_scale = T::from_f64(2.0 / count);

    let mut grads = Gradients::zeros(p, batch);
    if store_all {
        wbuf.rows = frames * rows_per_frame;
    }
    let mut lambda = vec![T::ZERO; bn];
    let mut lambda_next = vec![T::ZERO; bn];
    let mut back = vec![T::ZERO; bn];
    let mut mu_sum = vec![T::ZERO; bn];
    let mut stage_cot = vec![T::ZERO; 4 * bn];
    let mut stage_bar = vec![T::ZERO; bn];
    let mut state = vec![T::ZERO; bn];

    for k in (0..frames).rev() {
        // Output cotangent at the end of frame k.
        let end_state = &boundary[(k + 1) * bn..(k + 2) * bn];
        for b in 0..batch {
            let row = b * n;
            let at = (b * frames + k) * n_out;
            for o in 0..n_out {
                let dy = out_scale * (y[at + o] - targets[at + o]);
                if dy == T::ZERO {
                    continue;
                }
                let vrow = &p.v[o * n..(o + 1) * n];
                let gv = &mut grads.v[o * n..(o + 1) * n];
                for i in 0..n {
                    lambda[row + i] += dy * vrow[i];
                    gv[i] += dy * end_state[row + i];
                }
                grads.c[o] += dy;
            }
        }

        // The frame's stage points, rates and drives: kept from the forward pass, or
        // re-integrated from the frame's start state.
        coef.update(model.integrator, p.tau, seq.dts[k], substeps);
        prepare_frame::<T, I>(p, seq, k, &mut scratch);
        let (first_row, frame_base) = if store_all {
            (k * rows_per_frame, k * frame_values)
        } else {
            let first_row = wbuf.reserve(rows_per_frame, &mut grads.w, sparse);
            state.copy_from_slice(&boundary[k * bn..(k + 1) * bn]);
            for m in 0..substeps {
                let span = m * stages * bn..(m + 1) * stages * bn;
                let rate_rows = (first_row + m * stages * batch) * n;
                let record = StageRecord {
                    points: &mut points[span.clone()],
                    rates: &mut wbuf.rate[rate_rows..rate_rows + stages * bn],
                    drives: &mut drives[span],
                };
                substep::<T, I>(
                    p,
                    model,
                    batch,
                    &coef,
                    &mut state,
                    &mut scratch,
                    Some(record),
                );
            }
            (first_row, 0)
        };

        // Adjoint recursion through the substeps, newest first.
        mu_sum.iter_mut().for_each(|v| *v = T::ZERO);
        for m in (0..substeps).rev() {
            let base = frame_base + m * stages * bn;
            let row0 = (first_row + m * stages * batch) * n;
            match model.integrator {
                Integrator::Euler | Integrator::ExpEuler => {
                    let point = &points[base..base + bn];
                    let drive = &drives[base..base + bn];
                    let mu = &mut wbuf.mu[row0..row0 + bn];
                    let euler = model.integrator == Integrator::Euler;
                    for b in 0..batch {
                        let row = b * n;
                        for i in 0..n {
                            let l = lambda[row + i];
                            let (keep, pass) = if euler {
                                (T::ONE - coef.a[i], coef.a[i])
                            } else {
                                (coef.a[i], coef.b[i])
                            };
                            mu[row + i] = l * pass;
                            lambda_next[row + i] = l * keep;
                            // ∂s'/∂τ: euler −(a/τ)(d − s); exp_euler e·(a/τ)·(s − d), a = h/τ.
                            let ratio = coef.h / (p.tau[i] * p.tau[i]);
                            let dtau = if euler {
                                -ratio * (drive[row + i] - point[row + i])
                            } else {
                                coef.a[i] * ratio * (point[row + i] - drive[row + i])
                            };
                            grads.tau[i] += l * dtau;
                        }
                    }
                    let rate = &wbuf.rate[row0..row0 + bn];
                    let mu = &wbuf.mu[row0..row0 + bn];
                    drive_vjp::<T, I>(
                        p,
                        model.activation,
                        batch,
                        point,
                        rate,
                        mu,
                        &mut back,
                        &mut lambda_next,
                        &mut grads,
                        sparse,
                    );
                    for (s, v) in mu_sum.iter_mut().zip(mu) {
                        *s += *v;
                    }
                }
                Integrator::Rk4 => {
                    let h = coef.h;
                    let half = h * T::from_f64(0.5);
                    let third = h / T::from_f64(3.0);
                    let sixth = h / T::from_f64(6.0);
                    lambda_next.copy_from_slice(&lambda);
                    for (q, w) in [sixth, third, third, sixth].into_iter().enumerate() {
                        for (c, l) in stage_cot[q * bn..(q + 1) * bn].iter_mut().zip(&lambda) {
                            *c = *l * w;
                        }
                    }
                    for q in (0..4).rev() {
                        let point = &points[base + q * bn..base + (q + 1) * bn];
                        let drive = &drives[base + q * bn..base + (q + 1) * bn];
                        let mu_rows = row0 + q * bn;
                        {
                            let cot = &stage_cot[q * bn..(q + 1) * bn];
                            let mu = &mut wbuf.mu[mu_rows..mu_rows + bn];
                            for b in 0..batch {
                                let row = b * n;
                                for i in 0..n {
                                    let inv_tau = coef.a[i];
                                    let c = cot[row + i];
                                    mu[row + i] = c * inv_tau;
                                    stage_bar[row + i] = -(c * inv_tau);
                                    // f = (d − point)/τ, ∂f/∂τ = −f/τ.
                                    let f = (drive[row + i] - point[row + i]) * inv_tau;
                                    grads.tau[i] -= c * f * inv_tau;
                                }
                            }
                        }
                        let rate = &wbuf.rate[mu_rows..mu_rows + bn];
                        let mu = &wbuf.mu[mu_rows..mu_rows + bn];
                        drive_vjp::<T, I>(
                            p,
                            model.activation,
                            batch,
                            point,
                            rate,
                            mu,
                            &mut back,
                            &mut stage_bar,
                            &mut grads,
                            sparse,
                        );
                        for (s, v) in mu_sum.iter_mut().zip(mu) {
                            *s += *v;
                        }
                        for (l, sb) in lambda_next.iter_mut().zip(&stage_bar) {
                            *l += *sb;
                        }
                        if q > 0 {
                            // point_q = s + step·f_{q−1}: pass the cotangent on to stage q−1.
                            let step = if q == 3 { h } else { half };
                            let (prev, _) = stage_cot.split_at_mut(q * bn);
                            for (c, sb) in prev[(q - 1) * bn..].iter_mut().zip(&stage_bar) {
                                *c += step * *sb;
                            }
                        }
                    }
                }
            }
            std::mem::swap(&mut lambda, &mut lambda_next);
        }

        // Input weights: Σ over the frame's substeps of μ, times the held input x_k.
        if n_in > 0 {
            for b in 0..batch {
                let xk = &scratch.xk[b * n_in..(b + 1) * n_in];
                for i in 0..n {
                    let m = mu_sum[b * n + i];
                    if m == T::ZERO {
                        continue;
                    }
                    let gu = &mut grads.u[i * n_in..(i + 1) * n_in];
                    for (g, x) in gu.iter_mut().zip(xk) {
                        *g += m * *x;
                    }
                }
            }
        }

        if let Some(chunk) = truncation {
            if k % chunk == 0 && k > 0 {
                lambda.iter_mut().for_each(|v| *v = T::ZERO);
            }
        }
    }
    wbuf.flush(&mut grads.w, sparse);
    if let Some(m) = mask {
        for (g, keep) in grads.w.iter_mut().zip(m) {
            if *keep == T::ZERO {
                *g = T::ZERO;
            }
        }
    }
    grads.s0.copy_from_slice(&lambda);
    (loss, grads)
}
