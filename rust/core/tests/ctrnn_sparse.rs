//! The CSR kernels against the dense kernels on the same mask (float64, every integrator,
//! with and without truncation, one and several threads).

use rnnlab_core::ctrnn::{
    forward_with_options, loss_and_grad_with_options, Activation, Integrator, Model, Options,
    ParamsRef, Sequence,
};

mod common;
use common::Lcg;

fn relative_difference(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(1e-300f64, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

#[test]
fn sparse_equals_dense_on_the_same_mask() {
    let (n, n_in, n_out, batch, frames, substeps) = (17, 2, 3, 3, 11, 4);
    let mut r = Lcg(42);
    let mask: Vec<f64> = (0..n * n)
        .map(|_| if r.next() > 0.5 { 1.0 } else { 0.0 })
        .collect();
    let w: Vec<f64> = r
        .vec(n * n, 0.6, 0.0)
        .iter()
        .zip(&mask)
        .map(|(w, m)| w * m)
        .collect();
    let (tau, theta, gain) = (r.vec(n, 0.3, 0.8), r.vec(n, 0.5, 0.0), r.vec(n, 0.2, 1.0));
    let (u, v, c) = (
        r.vec(n * n_in, 1.0, 0.0),
        r.vec(n_out * n, 1.0, 0.0),
        r.vec(n_out, 0.5, 0.0),
    );
    let x = r.vec(batch * frames * n_in, 1.0, 0.0);
    let dts = r.vec(frames, 0.05, 0.12);
    let s0 = r.vec(batch * n, 0.5, 0.0);
    let target = r.vec(batch * frames * n_out, 1.0, 0.0);
    let p = ParamsRef {
        n_neurons: n,
        n_inputs: n_in,
        n_outputs: n_out,
        w: &w,
        tau: &tau,
        theta: &theta,
        gain: &gain,
        u: &u,
        v: &v,
        c: &c,
    };
    let seq = Sequence {
        batch,
        frames,
        x: &x,
        dts: &dts,
        substeps,
        s0: &s0,
    };
    for integrator in [Integrator::Euler, Integrator::ExpEuler, Integrator::Rk4] {
        for activation in [Activation::Logistic, Activation::Tanh] {
            let model = Model {
                activation,
                integrator,
            };
            for truncation in [None, Some(3)] {
                let dense = Options {
                    threads: 1,
                    sparse: false,
                };
                let (l_dense, g_dense) = loss_and_grad_with_options(
                    &p,
                    model,
                    &seq,
                    &target,
                    truncation,
                    Some(&mask),
                    dense,
                )
                .unwrap();
                for threads in [1, 3] {
                    let sparse = Options {
                        threads,
                        sparse: true,
                    };
                    let (l_sparse, g_sparse) = loss_and_grad_with_options(
                        &p,
                        model,
                        &seq,
                        &target,
                        truncation,
                        Some(&mask),
                        sparse,
                    )
                    .unwrap();
                    assert!((l_sparse - l_dense).abs() <= 1e-12 * l_dense.abs());
                    for (name, a, b) in [
                        ("W", &g_sparse.w, &g_dense.w),
                        ("tau", &g_sparse.tau, &g_dense.tau),
                        ("theta", &g_sparse.theta, &g_dense.theta),
                        ("gain", &g_sparse.gain, &g_dense.gain),
                        ("U", &g_sparse.u, &g_dense.u),
                        ("V", &g_sparse.v, &g_dense.v),
                        ("s0", &g_sparse.s0, &g_dense.s0),
                    ] {
                        let d = relative_difference(a, b);
                        assert!(d <= 1e-12, "{integrator:?} {name}: {d}");
                    }
                    for (g, m) in g_sparse.w.iter().zip(&mask) {
                        if *m == 0.0 {
                            assert_eq!(*g, 0.0);
                        }
                    }
                    let f_sparse =
                        forward_with_options(&p, model, &seq, false, Some(&mask), sparse).unwrap();
                    let f_dense =
                        forward_with_options(&p, model, &seq, false, Some(&mask), dense).unwrap();
                    assert!(relative_difference(&f_sparse.y, &f_dense.y) <= 1e-13);
                }
            }
        }
    }
}
