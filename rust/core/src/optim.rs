//! Optimisers over a flat parameter vector: SGD (with momentum) and Adam, both with optional
//! gradient-norm clipping. The Python layer flattens the trainable parameters (τ through its
//! softplus parameterisation) into one `f64` vector and hands it here every step.

use crate::error::{CoreError, CoreResult};

/// Which update rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// v ← momentum·v + g; θ ← θ − lr·v  (plain SGD when momentum = 0).
    Sgd { momentum: f64 },
    /// Adam (Kingma & Ba) with bias correction.
    Adam { beta1: f64, beta2: f64, eps: f64 },
}

impl Rule {
    pub const NAMES: [&'static str; 2] = ["sgd", "adam"];
}

/// Optimiser state for one flat parameter vector.
#[derive(Clone, Debug)]
pub struct Optimizer {
    rule: Rule,
    lr: f64,
    clip_norm: Option<f64>,
    first: Vec<f64>,
    second: Vec<f64>,
    steps: u64,
}

impl Optimizer {
    pub fn new(rule: Rule, size: usize, lr: f64, clip_norm: Option<f64>) -> CoreResult<Self> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(CoreError::config(
                "lr",
                format!("must be finite and > 0, got {lr}"),
            ));
        }
        if let Some(c) = clip_norm {
            if !(c.is_finite() && c > 0.0) {
                return Err(CoreError::config(
                    "clip_norm",
                    format!("must be None or finite and > 0, got {c}"),
                ));
            }
        }
        match rule {
            Rule::Sgd { momentum } if !(0.0..1.0).contains(&momentum) => {
                return Err(CoreError::config(
                    "momentum",
                    format!("must be in [0, 1), got {momentum}"),
                ));
            }
            Rule::Adam { beta1, beta2, eps } => {
                if !(0.0..1.0).contains(&beta1) || !(0.0..1.0).contains(&beta2) {
                    return Err(CoreError::config(
                        "betas",
                        format!("both must be in [0, 1), got ({beta1}, {beta2})"),
                    ));
                }
                if eps.is_nan() || eps <= 0.0 {
                    return Err(CoreError::config("eps", format!("must be > 0, got {eps}")));
                }
            }
            _ => {}
        }
        let second = match rule {
            Rule::Adam { .. } => vec![0.0; size],
            Rule::Sgd { .. } => Vec::new(),
        };
        Ok(Optimizer {
            rule,
            lr,
            clip_norm,
            first: vec![0.0; size],
            second,
            steps: 0,
        })
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The moment estimates (SGD: velocity and an empty second moment) and the step count, for
    /// checkpoints.
    pub fn state(&self) -> (&[f64], &[f64], u64) {
        (&self.first, &self.second, self.steps)
    }

    /// Restore what [`Optimizer::state`] returned (sizes must match this optimiser's).
    pub fn restore(&mut self, first: &[f64], second: &[f64], steps: u64) -> CoreResult<()> {
        if first.len() != self.first.len() {
            return Err(CoreError::shape(
                "first_moment",
                format!("{} values", self.first.len()),
                first.len().to_string(),
            ));
        }
        if second.len() != self.second.len() {
            return Err(CoreError::shape(
                "second_moment",
                format!("{} values", self.second.len()),
                second.len().to_string(),
            ));
        }
        self.first.copy_from_slice(first);
        self.second.copy_from_slice(second);
        self.steps = steps;
        Ok(())
    }

    pub fn lr(&self) -> f64 {
        self.lr
    }

    pub fn set_lr(&mut self, lr: f64) -> CoreResult<()> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(CoreError::config(
                "lr",
                format!("must be finite and > 0, got {lr}"),
            ));
        }
        self.lr = lr;
        Ok(())
    }

    /// One update of `params` in place. Returns the gradient's L2 norm before clipping.
    pub fn step(&mut self, params: &mut [f64], grads: &[f64]) -> CoreResult<f64> {
        let size = self.first.len();
        if params.len() != size {
            return Err(CoreError::shape(
                "params",
                format!("{size} values"),
                params.len().to_string(),
            ));
        }
        if grads.len() != size {
            return Err(CoreError::shape(
                "grads",
                format!("{size} values"),
                grads.len().to_string(),
            ));
        }
        let norm = grads.iter().map(|g| g * g).sum::<f64>().sqrt();
        if !norm.is_finite() {
            return Err(CoreError::config(
                "grads",
                "gradient is not finite (NaN or inf); lower the learning rate or clip",
            ));
        }
        let scale = match self.clip_norm {
            Some(c) if norm > c => c / norm,
            _ => 1.0,
        };
        self.steps += 1;
        match self.rule {
            Rule::Sgd { momentum } => {
                for ((p, g), v) in params.iter_mut().zip(grads).zip(self.first.iter_mut()) {
                    *v = momentum * *v + g * scale;
                    *p -= self.lr * *v;
                }
            }
            Rule::Adam { beta1, beta2, eps } => {
                let t = self.steps as i32;
                let correction1 = 1.0 - beta1.powi(t);
                let correction2 = 1.0 - beta2.powi(t);
                for (((p, g), m), v) in params
                    .iter_mut()
                    .zip(grads)
                    .zip(self.first.iter_mut())
                    .zip(self.second.iter_mut())
                {
                    let g = g * scale;
                    *m = beta1 * *m + (1.0 - beta1) * g;
                    *v = beta2 * *v + (1.0 - beta2) * g * g;
                    let m_hat = *m / correction1;
                    let v_hat = *v / correction2;
                    *p -= self.lr * m_hat / (v_hat.sqrt() + eps);
                }
            }
        }
        Ok(norm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_without_momentum_is_plain_gradient_descent() {
        let mut opt = Optimizer::new(Rule::Sgd { momentum: 0.0 }, 2, 0.1, None).unwrap();
        let mut p = [1.0, -2.0];
        let norm = opt.step(&mut p, &[3.0, 4.0]).unwrap();
        assert_eq!(norm, 5.0);
        assert!((p[0] - 0.7).abs() < 1e-15 && (p[1] + 2.4).abs() < 1e-15);
    }

    #[test]
    fn momentum_accumulates_velocity() {
        let mut opt = Optimizer::new(Rule::Sgd { momentum: 0.5 }, 1, 1.0, None).unwrap();
        let mut p = [0.0];
        opt.step(&mut p, &[1.0]).unwrap(); // v = 1
        opt.step(&mut p, &[1.0]).unwrap(); // v = 1.5
        assert!((p[0] + 2.5).abs() < 1e-15);
    }

    #[test]
    fn adam_first_step_moves_by_lr_times_sign() {
        let rule = Rule::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-12,
        };
        let mut opt = Optimizer::new(rule, 3, 0.01, None).unwrap();
        let mut p = [0.0, 0.0, 0.0];
        opt.step(&mut p, &[2.0, -0.5, 1e-3]).unwrap();
        for (got, want) in p.iter().zip([-0.01, 0.01, -0.01]) {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
    }

    #[test]
    fn restoring_the_state_continues_identically() {
        let rule = Rule::Adam {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
        };
        let mut a = Optimizer::new(rule, 2, 0.1, None).unwrap();
        let mut pa = [1.0, 2.0];
        a.step(&mut pa, &[0.3, -0.2]).unwrap();
        let (m, v, t) = a.state();
        let mut b = Optimizer::new(rule, 2, 0.1, None).unwrap();
        b.restore(m, v, t).unwrap();
        let mut pb = pa;
        a.step(&mut pa, &[0.1, 0.4]).unwrap();
        b.step(&mut pb, &[0.1, 0.4]).unwrap();
        assert_eq!(pa, pb);
        assert!(b.restore(&[0.0], &[0.0, 0.0], 1).is_err());
    }

    #[test]
    fn clipping_rescales_to_the_norm() {
        let mut opt = Optimizer::new(Rule::Sgd { momentum: 0.0 }, 2, 1.0, Some(1.0)).unwrap();
        let mut p = [0.0, 0.0];
        opt.step(&mut p, &[3.0, 4.0]).unwrap();
        assert!((p[0] + 0.6).abs() < 1e-15 && (p[1] + 0.8).abs() < 1e-15);
    }

    #[test]
    fn bad_settings_name_their_field() {
        let e = Optimizer::new(Rule::Sgd { momentum: 0.0 }, 1, -1.0, None).unwrap_err();
        assert!(e.to_string().starts_with("lr:"));
        let e = Optimizer::new(Rule::Sgd { momentum: 1.5 }, 1, 1.0, None).unwrap_err();
        assert!(e.to_string().starts_with("momentum:"));
        let mut opt = Optimizer::new(Rule::Sgd { momentum: 0.0 }, 1, 1.0, None).unwrap();
        let e = opt.step(&mut [0.0], &[f64::NAN]).unwrap_err();
        assert!(e.to_string().starts_with("grads:"));
    }
}
