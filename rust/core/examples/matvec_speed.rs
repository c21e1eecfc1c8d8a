//! Quick timing of the matrix-vector kernel: `cargo run --release --example matvec_speed`.
use rnnlab_core::linalg::{combine_rows, matvec};
use std::time::Instant;

fn main() {
    for n in [64usize, 256, 1024] {
        let w: Vec<f32> = (0..n * n).map(|i| ((i % 17) as f32) * 0.01).collect();
        let a: Vec<f32> = (0..n).map(|i| ((i % 5) as f32) * 0.1).collect();
        let mut y = vec![0f32; n];
        let reps = (20_000_000 / (n * n)).max(10);
        let t = Instant::now();
        for _ in 0..reps {
            matvec(&mut y, &w, std::hint::black_box(&a), false);
            std::hint::black_box(&mut y);
        }
        let per = t.elapsed().as_secs_f64() / reps as f64;
        println!(
            "f32 N={n}: dot {:.3} us per matvec, {:.1} GFLOP/s",
            per * 1e6,
            2.0 * (n * n) as f64 / per / 1e9
        );
        let t = Instant::now();
        for _ in 0..reps {
            combine_rows(&mut y, &w, std::hint::black_box(&a));
            std::hint::black_box(&mut y);
        }
        let per = t.elapsed().as_secs_f64() / reps as f64;
        println!(
            "f32 N={n}: combine {:.3} us per matvec, {:.1} GFLOP/s",
            per * 1e6,
            2.0 * (n * n) as f64 / per / 1e9
        );
    }
}
