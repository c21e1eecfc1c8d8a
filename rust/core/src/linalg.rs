//! Small dense kernels for the CTRNN time loop (generic over the float type and the [`Isa`]).
//!
//! Row-major everywhere. For a handful of batch rows the products are written as dot products
//! and row-axpys that the compiler vectorises (with several accumulators, so no serial
//! dependency chain); from [`GEMM_MIN_ROWS`] rows on they go to `matrixmultiply`'s blocked GEMM.
//! Everything is `#[inline(always)]` so that the AVX2 copy of a kernel (see
//! `ctrnn::dispatch`) compiles these loops with AVX2 too.

use crate::real::{Isa, Real};

/// From this many batch rows on, products use the blocked GEMM instead of the row kernels.
pub const GEMM_MIN_ROWS: usize = 8;

const LANES: usize = 8;

/// Σ_k a[k]·b[k] with eight independent accumulators.
#[inline(always)]
pub fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [T::ZERO; LANES];
    let mut a_chunks = a.chunks_exact(LANES);
    let mut b_chunks = b.chunks_exact(LANES);
    for (ca, cb) in (&mut a_chunks).zip(&mut b_chunks) {
        for l in 0..LANES {
            acc[l] += ca[l] * cb[l];
        }
    }
    let mut tail = T::ZERO;
    for (x, y) in a_chunks.remainder().iter().zip(b_chunks.remainder()) {
        tail += *x * *y;
    }
    let s0 = (acc[0] + acc[4]) + (acc[1] + acc[5]);
    let s1 = (acc[2] + acc[6]) + (acc[3] + acc[7]);
    (s0 + s1) + tail
}

/// Bytes of the output block kept in registers by [`combine_rows`]: 8 AVX registers, i.e. 64
/// f32 or 32 f64 (more would spill the accumulators to the stack).
const BLOCK_BYTES: usize = 256;

/// y = Σ_k a[k]·m[k, :] (overwrite) for a row-major `m` of shape (a.len() × y.len()).
///
/// This is the broadcast-and-accumulate form of a matrix-vector product: each output block of
/// [`BLOCK_BYTES`] stays in registers while the rows of `m` stream past, so there is no
/// horizontal reduction and the loop vectorises without reassociating sums. Used with `m = Wᵀ`
/// for the forward drive and with `m = W` for the backward Wᵀμ. Every output is summed in the
/// order k = 0, 1, …, whatever the block it falls in.
#[inline(always)]
pub fn combine_rows<T: Real, I: Isa>(y: &mut [T], m: &[T], a: &[T]) {
    if std::mem::size_of::<T>() >= 8 {
        combine_rows_in_blocks::<T, I, { BLOCK_BYTES / 8 }>(y, m, a);
    } else {
        combine_rows_in_blocks::<T, I, { BLOCK_BYTES / 4 }>(y, m, a);
    }
}

#[inline(always)]
fn combine_rows_in_blocks<T: Real, I: Isa, const BLOCK: usize>(y: &mut [T], m: &[T], a: &[T]) {
    let n = y.len();
    let k = a.len();
    debug_assert_eq!(m.len(), k * n);
    let mut start = 0;
    while start + BLOCK <= n {
        let mut acc = [T::ZERO; BLOCK];
        for (r, &ar) in a.iter().enumerate() {
            let row = &m[r * n + start..r * n + start + BLOCK];
            for l in 0..BLOCK {
                acc[l] = I::mul_add(ar, row[l], acc[l]);
            }
        }
        y[start..start + BLOCK].copy_from_slice(&acc);
        start += BLOCK;
    }
    const SMALL: usize = 8;
    while start + SMALL <= n {
        let mut acc = [T::ZERO; SMALL];
        for (r, &ar) in a.iter().enumerate() {
            let row = &m[r * n + start..r * n + start + SMALL];
            for l in 0..SMALL {
                acc[l] = I::mul_add(ar, row[l], acc[l]);
            }
        }
        y[start..start + SMALL].copy_from_slice(&acc);
        start += SMALL;
    }
    for j in start..n {
        let mut acc = T::ZERO;
        for (r, &ar) in a.iter().enumerate() {
            acc = I::mul_add(ar, m[r * n + j], acc);
        }
        y[j] = acc;
    }
}

/// The transpose of a row-major rows×cols matrix, in square tiles so that both the reads and
/// the writes stay within a few cache lines and pages at a time.
pub fn transpose<T: Real>(m: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut t = vec![T::ZERO; rows * cols];
    transpose_into(m, rows, cols, &mut t);
    t
}

/// [`transpose`] into `t` (cols×rows).
pub fn transpose_into<T: Real>(m: &[T], rows: usize, cols: usize, t: &mut [T]) {
    const TILE: usize = 32;
    debug_assert_eq!(m.len(), rows * cols);
    debug_assert_eq!(t.len(), rows * cols);
    for i0 in (0..rows).step_by(TILE) {
        let i1 = (i0 + TILE).min(rows);
        for j0 in (0..cols).step_by(TILE) {
            let j1 = (j0 + TILE).min(cols);
            for i in i0..i1 {
                for j in j0..j1 {
                    t[j * rows + i] = m[i * cols + j];
                }
            }
        }
    }
}

/// out (rows×n) = a (rows×k) · wᵀ for `rows` batch rows, where w is n×k and `wt` (k×n) is its
/// transpose (used by the row kernel; the GEMM reads `w` directly).
#[inline(always)]
pub fn rows_times_transposed<T: Real, I: Isa>(
    out: &mut [T],
    a: &[T],
    w: &[T],
    wt: &[T],
    rows: usize,
    n: usize,
    k: usize,
) {
    if rows >= GEMM_MIN_ROWS && k > 0 {
        // SAFETY: a is rows×k, w is n×k (so wᵀ is k×n with strides (1, k)), out is rows×n; all
        // three are distinct, correctly sized slices.
        unsafe {
            T::gemm(
                rows,
                k,
                n,
                T::ONE,
                a.as_ptr(),
                k as isize,
                1,
                w.as_ptr(),
                1,
                k as isize,
                T::ZERO,
                out.as_mut_ptr(),
                n as isize,
                1,
            );
        }
        return;
    }
    for b in 0..rows {
        combine_rows::<T, I>(&mut out[b * n..(b + 1) * n], wt, &a[b * k..(b + 1) * k]);
    }
}

/// out[b, :] = a[b, :] · w for `rows` batch rows: out (rows×n) = a (rows×m) · w (m×n).
#[inline(always)]
pub fn rows_times<T: Real, I: Isa>(
    out: &mut [T],
    a: &[T],
    w: &[T],
    rows: usize,
    m: usize,
    n: usize,
) {
    if rows >= GEMM_MIN_ROWS {
        // SAFETY: a is rows×m, w is m×n, out is rows×n; distinct, correctly sized slices.
        unsafe {
            T::gemm(
                rows,
                m,
                n,
                T::ONE,
                a.as_ptr(),
                m as isize,
                1,
                w.as_ptr(),
                n as isize,
                1,
                T::ZERO,
                out.as_mut_ptr(),
                n as isize,
                1,
            );
        }
        return;
    }
    for b in 0..rows {
        combine_rows::<T, I>(&mut out[b * n..(b + 1) * n], w, &a[b * m..(b + 1) * m]);
    }
}

/// acc (m×n) += aᵀ · b where a is rows×m and b is rows×n: a sum of `rows` outer products done as
/// one matrix product.
#[inline(always)]
pub fn add_transposed_product<T: Real>(
    acc: &mut [T],
    a: &[T],
    b: &[T],
    rows: usize,
    m: usize,
    n: usize,
) {
    if rows == 0 {
        return;
    }
    debug_assert!(a.len() >= rows * m && b.len() >= rows * n && acc.len() == m * n);
    // SAFETY: aᵀ is m×rows with strides (1, m); b is rows×n; acc is m×n; distinct slices.
    unsafe {
        T::gemm(
            m,
            rows,
            n,
            T::ONE,
            a.as_ptr(),
            1,
            m as isize,
            b.as_ptr(),
            n as isize,
            1,
            T::ONE,
            acc.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_matvec(w: &[f64], a: &[f64], n: usize) -> Vec<f64> {
        let k = a.len();
        (0..n)
            .map(|i| (0..k).map(|j| w[i * k + j] * a[j]).sum())
            .collect()
    }

    fn sequence(len: usize, scale: f64) -> Vec<f64> {
        (0..len)
            .map(|i| ((i * 37 % 101) as f64 - 50.0) * scale)
            .collect()
    }

    #[test]
    fn combine_rows_matches_naive_for_ragged_sizes() {
        use crate::real::{Fused, Plain};
        for &(n, k) in &[
            (1, 1),
            (3, 5),
            (4, 8),
            (7, 19),
            (13, 64),
            (65, 33),
            (130, 7),
        ] {
            let w = sequence(n * k, 0.01);
            let wt = transpose(&w, n, k);
            let a = sequence(k, 0.03);
            let mut y = vec![0.0; n];
            combine_rows::<f64, Plain>(&mut y, &wt, &a);
            let mut fused = vec![0.0; n];
            combine_rows::<f64, Fused>(&mut fused, &wt, &a);
            let expected = naive_matvec(&w, &a, n);
            for (got, want) in fused.iter().zip(&expected) {
                assert!((got - want).abs() < 1e-12, "fused {n}x{k}: {got} vs {want}");
            }
            for (got, want) in y.iter().zip(&expected) {
                assert!((got - want).abs() < 1e-12, "{n}x{k}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn batched_products_agree_between_row_kernels_and_gemm() {
        let (n, k) = (11, 9);
        let w = sequence(n * k, 0.02);
        for rows in [1usize, 3, GEMM_MIN_ROWS, 17] {
            let a = sequence(rows * k, 0.05);
            let mut out = vec![0.0; rows * n];
            let wt = transpose(&w, n, k);
            rows_times_transposed::<f64, crate::real::Plain>(&mut out, &a, &w, &wt, rows, n, k);
            for b in 0..rows {
                let expected = naive_matvec(&w, &a[b * k..(b + 1) * k], n);
                for i in 0..n {
                    assert!((out[b * n + i] - expected[i]).abs() < 1e-12);
                }
            }
            // out2 = a2 · w with a2 rows×n (so w is n×k): compare against explicit sums.
            let a2 = sequence(rows * n, 0.07);
            let mut out2 = vec![0.0; rows * k];
            rows_times::<f64, crate::real::Plain>(&mut out2, &a2, &w, rows, n, k);
            for b in 0..rows {
                for j in 0..k {
                    let want: f64 = (0..n).map(|i| a2[b * n + i] * w[i * k + j]).sum();
                    assert!((out2[b * k + j] - want).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn transposed_product_sums_outer_products() {
        let (rows, m, n) = (5, 3, 4);
        let a = sequence(rows * m, 0.1);
        let b = sequence(rows * n, 0.2);
        let mut acc = vec![1.0; m * n];
        add_transposed_product(&mut acc, &a, &b, rows, m, n);
        for i in 0..m {
            for j in 0..n {
                let want = 1.0 + (0..rows).map(|r| a[r * m + i] * b[r * n + j]).sum::<f64>();
                assert!((acc[i * n + j] - want).abs() < 1e-12);
            }
        }
    }
}
