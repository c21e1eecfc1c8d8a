//! Forward integration of fewer sequences than threads, with the neurons split over threads.
//!
//! Splitting batch rows over threads gives nothing to a single sequence. For it, each thread
//! owns a contiguous block of neurons: it keeps their states, the columns of Wᵀ that produce
//! their drive and their rows of U, and the threads meet once per integrator stage, after each
//! has published the rates φ(g ⊙ (s + θ)) of its neurons. The rates live in two shared buffers
//! used in alternation, so one barrier per stage is enough: a thread that is already writing
//! the next stage's rates writes the other buffer, and it cannot get two stages ahead of a
//! thread still reading, because that would need the reader at the barrier in between.
//!
//! Each output neuron's drive Σ_r rate[r]·W[i, r] is summed in the same order as in the
//! single-thread kernel, so the states are bit-identical to it; the readout y = V·s + c is summed
//! per block of neurons and then over blocks, so it agrees to round-off.

#![allow(clippy::needless_range_loop)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::kernel::{leak_update, rk4_stage, ForwardOutput, FrameCoefficients};
use super::{Activation, Integrator, Model, ParamsRef, Sequence};
use crate::float_env::FlushDenormals;
use crate::linalg;
use crate::real::{Isa, Plain, Real};
use crate::scratch_pool::ScratchBuffer;

/// Each thread gets at least this many neurons: below it, meeting once per stage costs more
/// than the thread's share of the matrix-vector product saves.
pub(super) const MIN_NEURONS_PER_THREAD: usize = 128;

/// How many neuron blocks a call of `batch` rows should use with `threads` threads (1 = do not
/// split the neurons).
pub(super) fn neuron_parts(n_neurons: usize, batch: usize, threads: usize) -> usize {
    if batch >= threads {
        return 1;
    }
    threads.min(n_neurons / MIN_NEURONS_PER_THREAD).max(1)
}

/// A barrier for a fixed number of threads that spins briefly, then yields, and lets a thread
/// that is unwinding release the others (they then panic too, instead of waiting forever).
struct StageBarrier {
    parties: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    poisoned: AtomicBool,
}

impl StageBarrier {
    fn new(parties: usize) -> Self {
        StageBarrier {
            parties,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
        }
    }

    fn wait(&self) {
        const SPINS_BEFORE_YIELD: u32 = 2_000;
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.parties {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            if self.poisoned.load(Ordering::Relaxed) {
                panic!("another thread of the neuron-split forward pass panicked");
            }
            if spins < SPINS_BEFORE_YIELD {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// Marks the barrier poisoned when the thread holding it unwinds.
struct PoisonOnPanic<'b>(&'b StageBarrier);

impl Drop for PoisonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poisoned.store(true, Ordering::Relaxed);
        }
    }
}

/// The two B×N rate buffers the threads share (see the module docs for the protocol).
struct SharedRates<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: the buffers are only accessed under the stage protocol: between two barriers every
// thread either writes its own disjoint columns of one buffer or reads the other buffer.
unsafe impl<T: Send> Send for SharedRates<T> {}
unsafe impl<T: Sync> Sync for SharedRates<T> {}

impl<T> SharedRates<T> {
    /// # Safety
    /// No other thread may read buffer `which` between the previous and the next barrier, and
    /// no other thread may write `[row + lo, row + hi)` of it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn columns_mut(&self, which: usize, at: usize, width: usize) -> &mut [T] {
        debug_assert!((which + 1) * self.len / 2 >= which * self.len / 2 + at + width);
        std::slice::from_raw_parts_mut(self.ptr.add(which * self.len / 2 + at), width)
    }

    /// # Safety
    /// No thread may write buffer `which` until the next barrier.
    unsafe fn whole(&self, which: usize) -> &[T] {
        std::slice::from_raw_parts(self.ptr.add(which * self.len / 2), self.len / 2)
    }
}

/// What one thread returns: its neurons' final states and recorded states (B×T×width) and its
/// share of the readout (B×T×n_out, without c).
struct BlockOutput<T> {
    y_partial: Vec<T>,
    final_state: Vec<T>,
    states: Option<Vec<T>>,
}

/// Run `seq` with the neurons split into `parts` contiguous blocks, one thread each.
pub(super) fn forward_split_neurons<T: Real>(
    p: &ParamsRef<'_, T>,
    model: Model,
    seq: &Sequence<'_, T>,
    return_states: bool,
    parts: usize,
) -> ForwardOutput<T> {
    let (n, n_out, batch, frames) = (p.n_neurons, p.n_outputs, seq.batch, seq.frames);
    let mut rate_buffers = vec![T::ZERO; 2 * batch * n];
    let shared = SharedRates {
        ptr: rate_buffers.as_mut_ptr(),
        len: rate_buffers.len(),
    };
    let barrier = StageBarrier::new(parts);
    let blocks: Vec<(usize, usize)> = (0..parts)
        .map(|k| (k * n / parts, (k + 1) * n / parts))
        .collect();
    let outputs: Vec<BlockOutput<T>> = std::thread::scope(|scope| {
        let handles: Vec<_> = blocks
            .iter()
            .map(|&(lo, hi)| {
                let (shared, barrier) = (&shared, &barrier);
                scope.spawn(move || {
                    let _poison = PoisonOnPanic(barrier);
                    let _flush = FlushDenormals::new();
                    run_block(p, model, seq, return_states, lo, hi, shared, barrier)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    drop(rate_buffers);

    let mut y = vec![T::ZERO; batch * frames * n_out];
    for (i, value) in y.iter_mut().enumerate() {
        let mut sum = p.c[i % n_out.max(1)];
        for block in &outputs {
            sum += block.y_partial[i];
        }
        *value = sum;
    }
    let mut final_state = vec![T::ZERO; batch * n];
    let mut states = return_states.then(|| vec![T::ZERO; batch * frames * n]);
    for (block, &(lo, hi)) in outputs.iter().zip(&blocks) {
        let width = hi - lo;
        for b in 0..batch {
            final_state[b * n + lo..b * n + hi]
                .copy_from_slice(&block.final_state[b * width..(b + 1) * width]);
        }
        if let (Some(all), Some(own)) = (states.as_mut(), block.states.as_ref()) {
            for row in 0..batch * frames {
                all[row * n + lo..row * n + hi]
                    .copy_from_slice(&own[row * width..(row + 1) * width]);
            }
        }
    }
    ForwardOutput {
        y,
        final_state,
        states,
    }
}

#[allow(clippy::too_many_arguments)]
fn run_block<T: Real>(
    p: &ParamsRef<'_, T>,
    model: Model,
    seq: &Sequence<'_, T>,
    return_states: bool,
    lo: usize,
    hi: usize,
    shared: &SharedRates<T>,
    barrier: &StageBarrier,
) -> BlockOutput<T> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe {
                run_block_avx2(p, model, seq, return_states, lo, hi, shared, barrier)
            };
        }
    }
    run_block_body::<T, Plain>(p, model, seq, return_states, lo, hi, shared, barrier)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn run_block_avx2<T: Real>(
    p: &ParamsRef<'_, T>,
    model: Model,
    seq: &Sequence<'_, T>,
    return_states: bool,
    lo: usize,
    hi: usize,
    shared: &SharedRates<T>,
    barrier: &StageBarrier,
) -> BlockOutput<T> {
    run_block_body::<T, crate::real::Fused>(p, model, seq, return_states, lo, hi, shared, barrier)
}

/// One thread's neurons [lo, hi) and everything it keeps for them.
struct Block<'a, T: Real> {
    p: &'a ParamsRef<'a, T>,
    activation: Activation,
    batch: usize,
    lo: usize,
    width: usize,
    /// Wᵀ restricted to this block's output columns: N×width.
    wt: ScratchBuffer<T>,
    /// U·x of the current frame for this block, B×width.
    ux: Vec<T>,
    drive: Vec<T>,
    shared: &'a SharedRates<T>,
    barrier: &'a StageBarrier,
    /// Which rate buffer the next stage uses.
    parity: usize,
}

impl<T: Real> Block<'_, T> {
    /// drive = W[block, :]·φ(g ⊙ (point + θ)) + U·x for this block's neurons, given their
    /// stage point (B×width); meets the other threads once.
    #[inline(always)]
    fn evaluate_drive<I: Isa>(&mut self, point: &[T]) {
        let (n, w, lo) = (self.p.n_neurons, self.width, self.lo);
        let gain = &self.p.gain[lo..lo + w];
        let theta = &self.p.theta[lo..lo + w];
        for b in 0..self.batch {
            // SAFETY: between the previous barrier and the next one, this thread is the only
            // writer of these columns and no thread reads this buffer (module docs).
            let out = unsafe { self.shared.columns_mut(self.parity, b * n + lo, w) };
            let pt = &point[b * w..(b + 1) * w];
            macro_rules! rates {
                ($act:expr) => {
                    for i in 0..w {
                        out[i] = $act.value(gain[i] * (pt[i] + theta[i]));
                    }
                };
            }
            match self.activation {
                Activation::Logistic => rates!(Activation::Logistic),
                Activation::Tanh => rates!(Activation::Tanh),
                Activation::Relu => rates!(Activation::Relu),
                Activation::Identity => rates!(Activation::Identity),
            }
        }
        self.barrier.wait();
        // SAFETY: every thread has passed the barrier after writing this buffer, and none
        // writes it again before the next barrier.
        let rates = unsafe { self.shared.whole(self.parity) };
        for b in 0..self.batch {
            let drive = &mut self.drive[b * w..(b + 1) * w];
            linalg::combine_rows::<T, I>(drive, &self.wt, &rates[b * n..(b + 1) * n]);
            for (d, u) in drive.iter_mut().zip(&self.ux[b * w..(b + 1) * w]) {
                *d += *u;
            }
        }
        self.parity ^= 1;
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn run_block_body<T: Real, I: Isa>(
    p: &ParamsRef<'_, T>,
    model: Model,
    seq: &Sequence<'_, T>,
    return_states: bool,
    lo: usize,
    hi: usize,
    shared: &SharedRates<T>,
    barrier: &StageBarrier,
) -> BlockOutput<T> {
    let (n, n_in, n_out) = (p.n_neurons, p.n_inputs, p.n_outputs);
    let (batch, frames, width) = (seq.batch, seq.frames, hi - lo);
    let bw = batch * width;
    // This block's columns of Wᵀ and Uᵀ (rows lo..hi of W and U, transposed).
    let mut wt = ScratchBuffer::zeroed(width * n);
    linalg::transpose_into(&p.w[lo * n..hi * n], width, n, &mut wt);
    let ut = linalg::transpose(&p.u[lo * n_in..hi * n_in], width, n_in);
    let tau = &p.tau[lo..hi];
    let mut block = Block {
        p,
        activation: model.activation,
        batch,
        lo,
        width,
        wt,
        ux: vec![T::ZERO; bw],
        drive: vec![T::ZERO; bw],
        shared,
        barrier,
        parity: 0,
    };
    let mut state = vec![T::ZERO; bw];
    for b in 0..batch {
        state[b * width..(b + 1) * width].copy_from_slice(&seq.s0[b * n + lo..b * n + hi]);
    }
    let mut point = vec![T::ZERO; bw];
    let mut slope_sum = vec![T::ZERO; bw];
    let mut y_partial = vec![T::ZERO; batch * frames * n_out];
    let mut states = return_states.then(|| vec![T::ZERO; batch * frames * width]);
    let mut coef = FrameCoefficients::new(width);
    for k in 0..frames {
        coef.update(model.integrator, tau, seq.dts[k], seq.substeps);
        for b in 0..batch {
            let ux = &mut block.ux[b * width..(b + 1) * width];
            if n_in == 0 {
                ux.iter_mut().for_each(|v| *v = T::ZERO);
            } else {
                let at = (b * frames + k) * n_in;
                linalg::combine_rows::<T, I>(ux, &ut, &seq.x[at..at + n_in]);
            }
        }
        for _ in 0..seq.substeps {
            match model.integrator {
                Integrator::Euler | Integrator::ExpEuler => {
                    block.evaluate_drive::<I>(&state);
                    leak_update(model.integrator, &coef, &mut state, &block.drive);
                }
                Integrator::Rk4 => {
                    point.copy_from_slice(&state);
                    for q in 0..4 {
                        block.evaluate_drive::<I>(&point);
                        rk4_stage(q, &coef, &state, &mut point, &mut slope_sum, &block.drive);
                    }
                    let sixth = coef.h / T::from_f64(6.0);
                    for (s, slope) in state.iter_mut().zip(&slope_sum) {
                        *s += sixth * *slope;
                    }
                }
            }
        }
        for b in 0..batch {
            let row = &state[b * width..(b + 1) * width];
            let at = (b * frames + k) * n_out;
            for o in 0..n_out {
                y_partial[at + o] = linalg::dot(&p.v[o * n + lo..o * n + hi], row);
            }
            if let Some(st) = states.as_mut() {
                let at = (b * frames + k) * width;
                st[at..at + width].copy_from_slice(row);
            }
        }
    }
    BlockOutput {
        y_partial,
        final_state: state,
        states,
    }
}
