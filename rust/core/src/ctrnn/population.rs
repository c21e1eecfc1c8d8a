//! Forward passes of P networks of one architecture in one call, members spread over threads.
//!
//! Evolution strategies evaluate many small networks; one call per network pays the call's
//! fixed cost P times and leaves the spreading to the caller. Here the P parameter sets are
//! stacked (member p's W at `w[p·N²..]`, and so on), each member runs the single-thread forward
//! kernel on its own input (or the shared one), and threads take members from a shared counter,
//! so uneven members balance. Each member's outputs are bit-identical to a one-thread
//! [`super::forward_with_threads`] call on it.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::kernel::forward_member;
use super::{Model, ParamsRef, Sequence};
use crate::error::{CoreError, CoreResult};
use crate::real::Real;

/// P parameter sets of one architecture, each array stacked along a leading member axis.
#[derive(Clone, Copy, Debug)]
pub struct PopulationRef<'a, T> {
    pub members: usize,
    pub n_neurons: usize,
    pub n_inputs: usize,
    pub n_outputs: usize,
    /// P×N×N
    pub w: &'a [T],
    /// P×N each
    pub tau: &'a [T],
    pub theta: &'a [T],
    pub gain: &'a [T],
    /// P×N×n_in
    pub u: &'a [T],
    /// P×n_out×N
    pub v: &'a [T],
    /// P×n_out
    pub c: &'a [T],
}

impl<'a, T: Real> PopulationRef<'a, T> {
    /// Member `p`'s parameters (p < members).
    pub fn member(&self, p: usize) -> ParamsRef<'a, T> {
        let (n, i, o) = (self.n_neurons, self.n_inputs, self.n_outputs);
        ParamsRef {
            n_neurons: n,
            n_inputs: i,
            n_outputs: o,
            w: &self.w[p * n * n..(p + 1) * n * n],
            tau: &self.tau[p * n..(p + 1) * n],
            theta: &self.theta[p * n..(p + 1) * n],
            gain: &self.gain[p * n..(p + 1) * n],
            u: &self.u[p * n * i..(p + 1) * n * i],
            v: &self.v[p * o * n..(p + 1) * o * n],
            c: &self.c[p * o..(p + 1) * o],
        }
    }

    fn validate(&self) -> CoreResult<()> {
        let (p, n, i, o) = (self.members, self.n_neurons, self.n_inputs, self.n_outputs);
        if p == 0 {
            return Err(CoreError::config("members", "needs at least one member"));
        }
        let lengths: [(&'static str, usize, usize, String); 7] = [
            ("W", self.w.len(), p * n * n, format!("[{p}, {n}, {n}]")),
            ("tau", self.tau.len(), p * n, format!("[{p}, {n}]")),
            ("theta", self.theta.len(), p * n, format!("[{p}, {n}]")),
            ("gain", self.gain.len(), p * n, format!("[{p}, {n}]")),
            ("U", self.u.len(), p * n * i, format!("[{p}, {n}, {i}]")),
            ("V", self.v.len(), p * o * n, format!("[{p}, {o}, {n}]")),
            ("c", self.c.len(), p * o, format!("[{p}, {o}]")),
        ];
        for (field, got, expected, shape) in lengths {
            if got != expected {
                return Err(CoreError::shape(
                    field,
                    format!("{shape} ({expected} values)"),
                    format!("{got} values"),
                ));
            }
        }
        Ok(())
    }
}

/// Outputs of every member, P×B×T×n_out. `sequences` holds one sequence shared by all members
/// or one per member; members are spread over `threads` threads.
pub fn forward_population<T: Real>(
    population: &PopulationRef<'_, T>,
    model: Model,
    sequences: &[Sequence<'_, T>],
    threads: usize,
) -> CoreResult<Vec<T>> {
    population.validate()?;
    let members = population.members;
    if sequences.len() != 1 && sequences.len() != members {
        return Err(CoreError::shape(
            "x",
            format!("one shared input or one per member ({members})"),
            format!("{} inputs", sequences.len()),
        ));
    }
    let sequence_of = |p: usize| &sequences[if sequences.len() == 1 { 0 } else { p }];
    let first = sequence_of(0);
    for p in 0..members {
        let params = population.member(p);
        params.validate()?;
        let seq = sequence_of(p);
        seq.validate(&params)?;
        if (seq.batch, seq.frames) != (first.batch, first.frames) {
            return Err(CoreError::shape(
                "x",
                format!(
                    "every member's input with {} rows of {} frames",
                    first.batch, first.frames
                ),
                format!("member {p}: {} rows of {} frames", seq.batch, seq.frames),
            ));
        }
    }
    let per_member = first.batch * first.frames * population.n_outputs;
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let p = next.fetch_add(1, Ordering::Relaxed);
            if p >= members {
                return done;
            }
            let out = forward_member(&population.member(p), model, sequence_of(p));
            done.push((p, out));
        }
    };
    let threads = threads.clamp(1, members);
    let finished: Vec<Vec<(usize, Vec<T>)>> = if threads == 1 {
        vec![work()]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads).map(|_| scope.spawn(work)).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    };
    let mut y = vec![T::ZERO; members * per_member];
    for (p, out) in finished.into_iter().flatten() {
        y[p * per_member..(p + 1) * per_member].copy_from_slice(&out);
    }
    Ok(y)
}
