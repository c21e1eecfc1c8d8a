//! Compressed sparse row (CSR) storage of the recurrent weights, for the `sparse` backend.
//!
//! The seed's HashNetwork kept each neuron's incoming synapses in a hash map keyed by raw
//! pointers; here they are index arrays. Row i lists the presynaptic neurons j of neuron i
//! (`w[i*N + j]` present in the mask) in increasing order, so the three products of the time loop
//! cost one multiply-add per synapse:
//!
//! - drive:    d[b, i] = Σ_{j ∈ row i} W[i, j] · r[b, j]
//! - backward: back[b, j] = Σ_i μ[b, i] · W[i, j]        (scatter along each row)
//! - gradient: G[i, j] += Σ_b μ[b, i] · r[b, j]          (synapses only)

// Per-synapse index arithmetic reads clearer as index loops.
#![allow(clippy::needless_range_loop)]

use crate::linalg;
use crate::real::{Isa, Real};
use crate::scratch_pool::ScratchBuffer;

/// The synapses of an N×N weight matrix in CSR form.
#[derive(Clone, Debug, PartialEq)]
pub struct Csr<T> {
    pub n: usize,
    /// Row i's synapses are `row_start[i]..row_start[i + 1]`.
    pub row_start: Vec<usize>,
    /// Presynaptic neuron of each synapse.
    pub col: Vec<u32>,
    /// Weight of each synapse.
    pub value: Vec<T>,
    /// The same synapses by column (CSC), for the backward product as a gather:
    /// column j's synapses are `col_start[j]..col_start[j + 1]`, from rows `row_of`.
    pub col_start: Vec<usize>,
    pub row_of: Vec<u32>,
    pub value_by_col: Vec<T>,
}

impl<T: Real> Csr<T> {
    /// The synapses of `w` (N×N row-major): the entries where `mask` is non-zero, or where `w`
    /// is non-zero when there is no mask.
    pub fn from_dense(w: &[T], mask: Option<&[T]>, n: usize) -> Self {
        let mut row_start = Vec::with_capacity(n + 1);
        let mut col = Vec::new();
        let mut value = Vec::new();
        row_start.push(0);
        for i in 0..n {
            for j in 0..n {
                let present = match mask {
                    Some(m) => m[i * n + j] != T::ZERO,
                    None => w[i * n + j] != T::ZERO,
                };
                if present {
                    col.push(j as u32);
                    value.push(w[i * n + j]);
                }
            }
            row_start.push(col.len());
        }
        let mut col_start = vec![0usize; n + 1];
        for c in &col {
            col_start[*c as usize + 1] += 1;
        }
        for j in 0..n {
            col_start[j + 1] += col_start[j];
        }
        let mut fill = col_start.clone();
        let mut row_of = vec![0u32; col.len()];
        let mut value_by_col = vec![T::ZERO; col.len()];
        for i in 0..n {
            for k in row_start[i]..row_start[i + 1] {
                let j = col[k] as usize;
                row_of[fill[j]] = i as u32;
                value_by_col[fill[j]] = value[k];
                fill[j] += 1;
            }
        }
        Csr {
            n,
            row_start,
            col,
            value,
            col_start,
            row_of,
            value_by_col,
        }
    }

    /// Number of synapses.
    pub fn synapses(&self) -> usize {
        self.col.len()
    }

    /// Σ_k w[k] · x[idx[k]] with four independent accumulators.
    ///
    /// Every index is below `x.len()`: the indices come from [`Csr::from_dense`], which only
    /// stores neuron numbers < n, and callers pass rows of n values (checked in debug builds).
    #[inline(always)]
    fn gather_dot<I: Isa>(w: &[T], idx: &[u32], x: &[T]) -> T {
        debug_assert_eq!(w.len(), idx.len());
        debug_assert!(idx.iter().all(|&i| (i as usize) < x.len()));
        let mut acc = [T::ZERO; 4];
        let mut w4 = w.chunks_exact(4);
        let mut i4 = idx.chunks_exact(4);
        for (cw, ci) in (&mut w4).zip(&mut i4) {
            for l in 0..4 {
                // SAFETY: ci[l] < x.len() (see above).
                let xv = unsafe { *x.get_unchecked(ci[l] as usize) };
                acc[l] = I::mul_add(cw[l], xv, acc[l]);
            }
        }
        let mut tail = T::ZERO;
        for (a, b) in w4.remainder().iter().zip(i4.remainder()) {
            // SAFETY: as above.
            tail = I::mul_add(*a, unsafe { *x.get_unchecked(*b as usize) }, tail);
        }
        ((acc[0] + acc[1]) + (acc[2] + acc[3])) + tail
    }

    /// out[b, i] = Σ_j W[i, j] · rate[b, j] for `batch` rows (overwrites `out`).
    #[inline(always)]
    pub fn times_rows<I: Isa>(&self, out: &mut [T], rate: &[T], batch: usize) {
        let n = self.n;
        for b in 0..batch {
            let r = &rate[b * n..(b + 1) * n];
            let o = &mut out[b * n..(b + 1) * n];
            for i in 0..n {
                let span = self.row_start[i]..self.row_start[i + 1];
                o[i] = Self::gather_dot::<I>(&self.value[span.clone()], &self.col[span], r);
            }
        }
    }

    /// back[b, j] = Σ_i mu[b, i] · W[i, j] for `batch` rows (overwrites `back`).
    #[inline(always)]
    pub fn transposed_times_rows<I: Isa>(&self, back: &mut [T], mu: &[T], batch: usize) {
        let n = self.n;
        for b in 0..batch {
            let m = &mu[b * n..(b + 1) * n];
            let o = &mut back[b * n..(b + 1) * n];
            for j in 0..n {
                let span = self.col_start[j]..self.col_start[j + 1];
                o[j] =
                    Self::gather_dot::<I>(&self.value_by_col[span.clone()], &self.row_of[span], m);
            }
        }
    }

    /// grad_w[i, j] += Σ_r mu[r, i] · rate[r, j] over `rows` rows, on the synapses only
    /// (`grad_w` is the dense N×N gradient; entries off the pattern are not touched).
    ///
    /// μ and the rates are first transposed (N×rows each), so that every synapse's sum is one
    /// contiguous, vectorised dot product of two length-`rows` rows.
    #[inline(always)]
    pub fn add_gradient(&self, grad_w: &mut [T], mu: &[T], rate: &[T], rows: usize) {
        let n = self.n;
        let mut mu_t = ScratchBuffer::<T>::zeroed(n * rows);
        let mut rate_t = ScratchBuffer::<T>::zeroed(n * rows);
        linalg::transpose_into(&mu[..rows * n], rows, n, &mut mu_t);
        linalg::transpose_into(&rate[..rows * n], rows, n, &mut rate_t);
        for i in 0..n {
            let mu_i = &mu_t[i * rows..(i + 1) * rows];
            if mu_i.iter().all(|v| *v == T::ZERO) {
                continue;
            }
            for k in self.row_start[i]..self.row_start[i + 1] {
                let j = self.col[k] as usize;
                grad_w[i * n + j] += linalg::dot(mu_i, &rate_t[j * rows..(j + 1) * rows]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_the_dense_matrix() {
        let n = 4;
        let w: Vec<f64> = (0..n * n)
            .map(|k| {
                if k % 3 == 0 {
                    0.0
                } else {
                    k as f64 * 0.25 - 1.0
                }
            })
            .collect();
        let csr = Csr::from_dense(&w, None, n);
        assert_eq!(csr.synapses(), w.iter().filter(|v| **v != 0.0).count());
        let rate = [0.5, -1.0, 2.0, 0.25, 1.0, 0.0, -0.5, 3.0];
        let mut out = vec![0.0; 2 * n];
        csr.times_rows::<crate::real::Plain>(&mut out, &rate, 2);
        let mut back = vec![0.0; 2 * n];
        csr.transposed_times_rows::<crate::real::Plain>(&mut back, &rate, 2);
        let mut grad = vec![0.0; n * n];
        csr.add_gradient(&mut grad, &rate, &rate[..], 2);
        for b in 0..2 {
            for i in 0..n {
                let drive: f64 = (0..n).map(|j| w[i * n + j] * rate[b * n + j]).sum();
                assert!((out[b * n + i] - drive).abs() < 1e-14);
                let bk: f64 = (0..n).map(|k| rate[b * n + k] * w[k * n + i]).sum();
                assert!((back[b * n + i] - bk).abs() < 1e-14);
            }
        }
        for i in 0..n {
            for j in 0..n {
                let expected = if w[i * n + j] == 0.0 {
                    0.0
                } else {
                    (0..2).map(|b| rate[b * n + i] * rate[b * n + j]).sum()
                };
                assert!((grad[i * n + j] - expected).abs() < 1e-14);
            }
        }
    }
}
