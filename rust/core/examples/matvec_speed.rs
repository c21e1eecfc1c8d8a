//! Quick timing of the matrix-vector kernel that drives the B = 1 time loop:
//! `cargo run --release -p rnnlab-core --example matvec_speed` (add
//! `RUSTFLAGS="-C target-cpu=native"` to see the AVX2/FMA copy the kernels dispatch to).
use rnnlab_core::linalg::{combine_rows, transpose};
use rnnlab_core::real::{Fused, Isa, Plain};
use std::time::Instant;

fn time<I: Isa>(label: &str, n: usize) {
    let w: Vec<f32> = (0..n * n).map(|i| ((i % 17) as f32) * 0.01).collect();
    let wt = transpose(&w, n, n);
    let a: Vec<f32> = (0..n).map(|i| ((i % 5) as f32) * 0.1).collect();
    let mut y = vec![0f32; n];
    let reps = (20_000_000 / (n * n)).max(10);
    let t = Instant::now();
    for _ in 0..reps {
        combine_rows::<f32, I>(&mut y, &wt, std::hint::black_box(&a));
        std::hint::black_box(&mut y);
    }
    let per = t.elapsed().as_secs_f64() / reps as f64;
    println!(
        "f32 N={n} {label}: {:.3} us per matvec, {:.1} GFLOP/s",
        per * 1e6,
        2.0 * (n * n) as f64 / per / 1e9
    );
}

fn main() {
    for n in [64usize, 256, 1024] {
        time::<Plain>("multiply+add", n);
        if cfg!(target_feature = "fma") {
            time::<Fused>("fused", n);
        }
    }
}
