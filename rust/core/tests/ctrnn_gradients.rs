//! The adjoint gradient against central finite differences of the forward pass, and the
//! forward pass against hand-derived solutions.

use rnnlab_core::ctrnn::{
    forward, loss_and_grad, Activation, Integrator, Model, ParamsRef, Sequence,
};

struct Case {
    n: usize,
    n_in: usize,
    n_out: usize,
    batch: usize,
    frames: usize,
    substeps: usize,
    w: Vec<f64>,
    tau: Vec<f64>,
    theta: Vec<f64>,
    gain: Vec<f64>,
    u: Vec<f64>,
    v: Vec<f64>,
    c: Vec<f64>,
    x: Vec<f64>,
    dts: Vec<f64>,
    s0: Vec<f64>,
    target: Vec<f64>,
}

mod common;
use common::Lcg;

fn case(seed: u64) -> Case {
    let (n, n_in, n_out, batch, frames, substeps) = (5, 2, 2, 2, 7, 3);
    let mut r = Lcg(seed);
    Case {
        n,
        n_in,
        n_out,
        batch,
        frames,
        substeps,
        w: r.vec(n * n, 0.8, 0.0),
        tau: r.vec(n, 0.4, 1.0),
        theta: r.vec(n, 0.5, 0.0),
        gain: r.vec(n, 0.3, 1.0),
        u: r.vec(n * n_in, 1.0, 0.0),
        v: r.vec(n_out * n, 1.0, 0.0),
        c: r.vec(n_out, 0.5, 0.0),
        x: r.vec(batch * frames * n_in, 1.0, 0.0),
        dts: r.vec(frames, 0.1, 0.25),
        s0: r.vec(batch * n, 0.5, 0.0),
        target: r.vec(batch * frames * n_out, 1.0, 0.0),
    }
}

impl Case {
    fn params(&self) -> ParamsRef<'_, f64> {
        ParamsRef {
            n_neurons: self.n,
            n_inputs: self.n_in,
            n_outputs: self.n_out,
            w: &self.w,
            tau: &self.tau,
            theta: &self.theta,
            gain: &self.gain,
            u: &self.u,
            v: &self.v,
            c: &self.c,
        }
    }
    fn sequence(&self) -> Sequence<'_, f64> {
        Sequence {
            batch: self.batch,
            frames: self.frames,
            x: &self.x,
            dts: &self.dts,
            substeps: self.substeps,
            s0: &self.s0,
        }
    }
    fn loss(&self, model: Model) -> f64 {
        let out = forward(&self.params(), model, &self.sequence(), false).unwrap();
        let sum: f64 = out
            .y
            .iter()
            .zip(&self.target)
            .map(|(y, t)| (y - t) * (y - t))
            .sum();
        sum / out.y.len() as f64
    }
}

type Field = fn(&mut Case) -> &mut Vec<f64>;

fn check_against_finite_differences(model: Model) {
    let base = case(7);
    let (loss, grads) = loss_and_grad(
        &base.params(),
        model,
        &base.sequence(),
        &base.target,
        None,
        None,
    )
    .unwrap();
    assert!((loss - base.loss(model)).abs() < 1e-14);
    let fields: [(&str, Field, &Vec<f64>); 8] = [
        ("W", |c| &mut c.w, &grads.w),
        ("tau", |c| &mut c.tau, &grads.tau),
        ("theta", |c| &mut c.theta, &grads.theta),
        ("gain", |c| &mut c.gain, &grads.gain),
        ("U", |c| &mut c.u, &grads.u),
        ("V", |c| &mut c.v, &grads.v),
        ("c", |c| &mut c.c, &grads.c),
        ("s0", |c| &mut c.s0, &grads.s0),
    ];
    let eps = 1e-6;
    for (name, field, analytic) in fields {
        for (idx, want) in analytic.iter().enumerate() {
            let mut plus = case(7);
            field(&mut plus)[idx] += eps;
            let mut minus = case(7);
            field(&mut minus)[idx] -= eps;
            let numeric = (plus.loss(model) - minus.loss(model)) / (2.0 * eps);
            let err = (numeric - want).abs();
            assert!(
                err <= 1e-7 * (1.0 + numeric.abs()),
                "{model:?} d/d{name}[{idx}]: adjoint {want} vs finite difference {numeric}"
            );
        }
    }
}

#[test]
fn gradients_match_finite_differences_for_every_integrator_and_activation() {
    for integrator in [Integrator::Euler, Integrator::ExpEuler, Integrator::Rk4] {
        for activation in [Activation::Logistic, Activation::Tanh, Activation::Identity] {
            check_against_finite_differences(Model {
                activation,
                integrator,
            });
        }
    }
}

#[test]
fn truncation_keeps_the_loss_and_cuts_the_gradient() {
    let c = case(11);
    let model = Model {
        activation: Activation::Tanh,
        integrator: Integrator::Euler,
    };
    let full = loss_and_grad(&c.params(), model, &c.sequence(), &c.target, None, None).unwrap();
    let long = loss_and_grad(&c.params(), model, &c.sequence(), &c.target, Some(7), None).unwrap();
    let cut = loss_and_grad(&c.params(), model, &c.sequence(), &c.target, Some(3), None).unwrap();
    assert_eq!(full, long, "truncation >= T is full BPTT");
    assert_eq!(full.0, cut.0, "the loss does not depend on truncation");
    assert_ne!(full.1.w, cut.1.w);
    // One frame per chunk: s0 only sees the first frame's output error, through frame 0.
    let one = loss_and_grad(&c.params(), model, &c.sequence(), &c.target, Some(1), None).unwrap();
    assert_ne!(one.1.s0, full.1.s0);
}

#[test]
fn masked_weights_get_zero_gradient() {
    let c = case(3);
    let mut mask = vec![1.0; c.n * c.n];
    mask[1] = 0.0;
    mask[7] = 0.0;
    let model = Model {
        activation: Activation::Logistic,
        integrator: Integrator::Rk4,
    };
    let (_, g) = loss_and_grad(
        &c.params(),
        model,
        &c.sequence(),
        &c.target,
        None,
        Some(&mask),
    )
    .unwrap();
    assert_eq!(g.w[1], 0.0);
    assert_eq!(g.w[7], 0.0);
    assert!(g.w[0] != 0.0);
}

#[test]
fn exponential_euler_is_exact_for_a_leaky_integrator() {
    // One neuron, W = 0, identity: τ ds/dt = −s + U x, so s(t) = Ux + (s0 − Ux)·e^{−t/τ}.
    let (tau, u, x, s0, dt) = (0.7, 1.3, 0.9, -0.4, 0.37);
    let p = ParamsRef {
        n_neurons: 1,
        n_inputs: 1,
        n_outputs: 1,
        w: &[0.0],
        tau: &[tau],
        theta: &[0.0],
        gain: &[1.0],
        u: &[u],
        v: &[1.0],
        c: &[0.0],
    };
    let xs = [x; 4];
    let dts = [dt; 4];
    let seq = Sequence {
        batch: 1,
        frames: 4,
        x: &xs,
        dts: &dts,
        substeps: 1,
        s0: &[s0],
    };
    let model = Model {
        activation: Activation::Identity,
        integrator: Integrator::ExpEuler,
    };
    let out = forward(&p, model, &seq, true).unwrap();
    for (k, y) in out.y.iter().enumerate() {
        let t = dt * (k + 1) as f64;
        let exact = u * x + (s0 - u * x) * (-t / tau).exp();
        assert!((y - exact).abs() < 1e-14, "frame {k}: {y} vs {exact}");
    }
}

#[test]
fn one_euler_substep_by_hand() {
    // s' = s + (h/τ)(−s + W·σ(g(s+θ)) + U x) for two neurons, computed by hand.
    let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
    let (w, tau, theta, gain, u) = (
        [0.5, -1.0, 2.0, 0.25],
        [2.0, 0.5],
        [0.1, -0.2],
        [1.5, 0.5],
        [1.0, -1.0],
    );
    let s0 = [0.3, -0.6];
    let (x, h) = (0.8, 0.1);
    let r0 = sig(1.5 * (0.3 + 0.1));
    let r1 = sig(0.5 * (-0.6 - 0.2));
    let expect0 = 0.3 + h / 2.0 * (-0.3 + 0.5 * r0 - 1.0 * r1 + 1.0 * x);
    let expect1 = -0.6 + h / 0.5 * (0.6 + 2.0 * r0 + 0.25 * r1 - 1.0 * x);
    let p = ParamsRef {
        n_neurons: 2,
        n_inputs: 1,
        n_outputs: 2,
        w: &w,
        tau: &tau,
        theta: &theta,
        gain: &gain,
        u: &u,
        v: &[1.0, 0.0, 0.0, 1.0],
        c: &[0.0, 0.0],
    };
    let seq = Sequence {
        batch: 1,
        frames: 1,
        x: &[x],
        dts: &[h],
        substeps: 1,
        s0: &s0,
    };
    let model = Model {
        activation: Activation::Logistic,
        integrator: Integrator::Euler,
    };
    let out = forward(&p, model, &seq, false).unwrap();
    assert!((out.y[0] - expect0).abs() < 1e-15);
    assert!((out.y[1] - expect1).abs() < 1e-15);
}

#[test]
fn bad_inputs_name_their_field() {
    let c = case(1);
    let model = Model {
        activation: Activation::Logistic,
        integrator: Integrator::Euler,
    };
    let mut bad = case(1);
    bad.tau[2] = -1.0;
    let e = forward(&bad.params(), model, &bad.sequence(), false).unwrap_err();
    assert!(e.to_string().starts_with("tau:"), "{e}");
    let mut bad = case(1);
    bad.x[3] = f64::NAN;
    let e = forward(&bad.params(), model, &bad.sequence(), false).unwrap_err();
    assert!(e.to_string().starts_with("x:"), "{e}");
    let mut bad = case(1);
    bad.dts[0] = 0.0;
    let e = forward(&bad.params(), model, &bad.sequence(), false).unwrap_err();
    assert!(e.to_string().starts_with("dt:"), "{e}");
    let e = loss_and_grad(
        &c.params(),
        model,
        &c.sequence(),
        &c.target[1..],
        None,
        None,
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("target:"), "{e}");
    assert!(Integrator::parse("heun")
        .unwrap_err()
        .to_string()
        .contains("exp_euler"));
}

#[test]
fn splitting_the_batch_over_threads_gives_the_same_result() {
    use rnnlab_core::ctrnn::{forward_with_threads, loss_and_grad_with_threads};
    let (n, n_in, n_out, batch, frames) = (32, 3, 2, 8, 300);
    let mut r = Lcg(5);
    let w = r.vec(n * n, 0.3, 0.0);
    let (tau, theta, gain) = (r.vec(n, 0.3, 1.0), r.vec(n, 0.3, 0.0), r.vec(n, 0.2, 1.0));
    let (u, v, c) = (
        r.vec(n * n_in, 1.0, 0.0),
        r.vec(n_out * n, 1.0, 0.0),
        r.vec(n_out, 0.1, 0.0),
    );
    let x = r.vec(batch * frames * n_in, 1.0, 0.0);
    let dts = vec![0.1; frames];
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
        substeps: 1,
        s0: &s0,
    };
    let model = Model {
        activation: Activation::Tanh,
        integrator: Integrator::Euler,
    };
    let one = forward_with_threads(&p, model, &seq, true, 1).unwrap();
    let three = forward_with_threads(&p, model, &seq, true, 3).unwrap();
    // Fewer rows per thread may switch from the GEMM to the row kernel: equal to round-off.
    let close = |a: &[f64], b: &[f64]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() <= 1e-12 * (1.0 + x.abs()))
    };
    assert!(close(&one.y, &three.y), "outputs differ beyond round-off");
    assert!(close(&one.final_state, &three.final_state));
    assert!(close(
        one.states.as_deref().unwrap(),
        three.states.as_deref().unwrap()
    ));
    let (l1, g1) = loss_and_grad_with_threads(&p, model, &seq, &target, Some(50), None, 1).unwrap();
    let (l3, g3) = loss_and_grad_with_threads(&p, model, &seq, &target, Some(50), None, 3).unwrap();
    assert!((l1 - l3).abs() <= 1e-12 * l1.abs());
    assert!(close(&g1.s0, &g3.s0));
    for (a, b) in g1.w.iter().zip(&g3.w).chain(g1.tau.iter().zip(&g3.tau)) {
        assert!((a - b).abs() <= 1e-10 * (1.0 + a.abs()), "{a} vs {b}");
    }
}

#[test]
fn splitting_the_neurons_of_a_single_sequence_gives_the_same_states() {
    use rnnlab_core::ctrnn::forward_with_threads;
    // N not a multiple of the thread count; one and two batch rows (fewer rows than threads).
    let (n, n_in, n_out, frames, substeps) = (777, 3, 2, 5, 3);
    let mut r = Lcg(11);
    let w = r.vec(n * n, 1.5 / (n as f64).sqrt(), 0.0);
    let (tau, theta, gain) = (r.vec(n, 0.3, 1.0), r.vec(n, 0.3, 0.0), r.vec(n, 0.2, 1.0));
    let (u, v, c) = (
        r.vec(n * n_in, 1.0, 0.0),
        r.vec(n_out * n, 0.1, 0.0),
        r.vec(n_out, 0.1, 0.0),
    );
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
    for batch in [1usize, 2] {
        let x = r.vec(batch * frames * n_in, 1.0, 0.0);
        let dts: Vec<f64> = (0..frames).map(|k| 0.1 + 0.02 * k as f64).collect();
        let s0 = r.vec(batch * n, 0.5, 0.0);
        let seq = Sequence {
            batch,
            frames,
            x: &x,
            dts: &dts,
            substeps,
            s0: &s0,
        };
        for integrator in [Integrator::Euler, Integrator::ExpEuler, Integrator::Rk4] {
            for activation in [Activation::Tanh, Activation::Logistic, Activation::Relu] {
                let model = Model {
                    activation,
                    integrator,
                };
                let one = forward_with_threads(&p, model, &seq, true, 1).unwrap();
                let three = forward_with_threads(&p, model, &seq, true, 3).unwrap();
                // Each neuron's drive is summed in the same order: the states are identical.
                assert_eq!(
                    one.final_state, three.final_state,
                    "{model:?} batch {batch}"
                );
                assert_eq!(one.states, three.states, "{model:?} batch {batch}");
                // The readout is summed per block of neurons, then over blocks.
                for (a, b) in one.y.iter().zip(&three.y) {
                    assert!((a - b).abs() <= 1e-12 * (1.0 + a.abs()), "{a} vs {b}");
                }
            }
        }
    }
}
