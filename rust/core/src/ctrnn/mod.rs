//! Continuous-time recurrent neural networks:
//!
//! ```text
//! τ ⊙ ds/dt = −s + W·φ(g ⊙ (s + θ)) + U·x(t),      y = V·s + c
//! ```
//!
//! Inputs arrive as frames held constant over a time interval; each frame is integrated with an
//! exact integer number of synchronous substeps (`euler`, `exp_euler` or `rk4`). [`forward`]
//! runs a whole batch of sequences; [`loss_and_grad`] returns the mean squared error at frame
//! ends and its exact gradient by adjoint backpropagation through every substep, optionally
//! truncated every K frames. See `docs/ctrnn.md` for the full statement of the model.

mod kernel;
mod neuron_split;
mod population;
pub mod sparse;

pub use population::{forward_population, PopulationRef};

pub use kernel::{
    default_threads, forward, forward_with_options, forward_with_threads, loss_and_grad,
    loss_and_grad_with_options, loss_and_grad_with_threads, ForwardOutput, Gradients, Options,
};

use crate::error::{CoreError, CoreResult};
use crate::real::Real;

/// The neuron nonlinearity φ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Logistic,
    Tanh,
    Relu,
    Identity,
}

impl Activation {
    pub const NAMES: [&'static str; 4] = ["logistic", "tanh", "relu", "identity"];

    pub fn parse(name: &str) -> CoreResult<Self> {
        match name {
            "logistic" => Ok(Activation::Logistic),
            "tanh" => Ok(Activation::Tanh),
            "relu" => Ok(Activation::Relu),
            "identity" => Ok(Activation::Identity),
            other => Err(CoreError::config(
                "activation",
                format!(
                    "unknown activation {other:?}; allowed: {}",
                    Self::NAMES.join(", ")
                ),
            )),
        }
    }

    /// φ(z).
    #[inline(always)]
    pub fn value<T: Real>(self, z: T) -> T {
        match self {
            Activation::Logistic => z.logistic(),
            Activation::Tanh => z.tanh_activation(),
            Activation::Relu => {
                if z > T::ZERO {
                    z
                } else {
                    T::ZERO
                }
            }
            Activation::Identity => z,
        }
    }

    /// φ′(z), given z and r = φ(z).
    #[inline(always)]
    pub fn slope<T: Real>(self, z: T, r: T) -> T {
        match self {
            Activation::Logistic => r * (T::ONE - r),
            Activation::Tanh => T::ONE - r * r,
            Activation::Relu => {
                if z > T::ZERO {
                    T::ONE
                } else {
                    T::ZERO
                }
            }
            Activation::Identity => T::ONE,
        }
    }
}

/// How one substep advances the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Integrator {
    /// s ← s + (h/τ) ⊙ (−s + d(s))
    Euler,
    /// s ← e^{−h/τ} ⊙ s + (1 − e^{−h/τ}) ⊙ d(s): exact leak, drive held over the step.
    ExpEuler,
    /// Classical fourth-order Runge–Kutta with the input held over the step.
    Rk4,
}

impl Integrator {
    pub const NAMES: [&'static str; 3] = ["euler", "exp_euler", "rk4"];

    pub fn parse(name: &str) -> CoreResult<Self> {
        match name {
            "euler" => Ok(Integrator::Euler),
            "exp_euler" => Ok(Integrator::ExpEuler),
            "rk4" => Ok(Integrator::Rk4),
            other => Err(CoreError::config(
                "integrator",
                format!(
                    "unknown integrator {other:?}; allowed: {}",
                    Self::NAMES.join(", ")
                ),
            )),
        }
    }

    /// Drive evaluations per substep.
    pub fn stages(self) -> usize {
        match self {
            Integrator::Euler | Integrator::ExpEuler => 1,
            Integrator::Rk4 => 4,
        }
    }
}

/// The choices that are not arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Model {
    pub activation: Activation,
    pub integrator: Integrator,
}

/// Borrowed parameters, all row-major: `w` N×N (`w[i*N + j]` is the weight from j to i), `tau`,
/// `theta`, `gain` of length N, `u` N×n_in, `v` n_out×N, `c` n_out.
#[derive(Clone, Copy, Debug)]
pub struct ParamsRef<'a, T> {
    pub n_neurons: usize,
    pub n_inputs: usize,
    pub n_outputs: usize,
    pub w: &'a [T],
    pub tau: &'a [T],
    pub theta: &'a [T],
    pub gain: &'a [T],
    pub u: &'a [T],
    pub v: &'a [T],
    pub c: &'a [T],
}

fn check_len(field: &'static str, got: usize, expected: usize, shape: String) -> CoreResult<()> {
    if got != expected {
        return Err(CoreError::shape(
            field,
            format!("{shape} ({expected} values)"),
            format!("{got} values"),
        ));
    }
    Ok(())
}

fn check_finite<T: Real>(field: &'static str, values: &[T]) -> CoreResult<()> {
    if let Some(pos) = values.iter().position(|v| !v.is_finite()) {
        return Err(CoreError::config(
            field,
            format!(
                "must be finite, found {:?} at flat index {pos}",
                values[pos]
            ),
        ));
    }
    Ok(())
}

impl<T: Real> ParamsRef<'_, T> {
    pub fn validate(&self) -> CoreResult<()> {
        let (n, i, o) = (self.n_neurons, self.n_inputs, self.n_outputs);
        if n == 0 {
            return Err(CoreError::config("n_neurons", "must be at least 1"));
        }
        check_len("W", self.w.len(), n * n, format!("[{n}, {n}]"))?;
        check_len("tau", self.tau.len(), n, format!("[{n}]"))?;
        check_len("theta", self.theta.len(), n, format!("[{n}]"))?;
        check_len("gain", self.gain.len(), n, format!("[{n}]"))?;
        check_len("U", self.u.len(), n * i, format!("[{n}, {i}]"))?;
        check_len("V", self.v.len(), o * n, format!("[{o}, {n}]"))?;
        check_len("c", self.c.len(), o, format!("[{o}]"))?;
        check_finite("W", self.w)?;
        check_finite("theta", self.theta)?;
        check_finite("gain", self.gain)?;
        check_finite("U", self.u)?;
        check_finite("V", self.v)?;
        check_finite("c", self.c)?;
        if let Some(pos) = self
            .tau
            .iter()
            .position(|t| !(t.is_finite() && *t > T::ZERO))
        {
            return Err(CoreError::config(
                "tau",
                format!(
                    "every time constant must be finite and > 0, found {:?} at index {pos}",
                    self.tau[pos]
                ),
            ));
        }
        Ok(())
    }
}

/// A batch of input sequences: `x` is B×T×n_in, `dts` the T frame durations, `s0` the B×N start
/// states.
#[derive(Clone, Copy, Debug)]
pub struct Sequence<'a, T> {
    pub batch: usize,
    pub frames: usize,
    pub x: &'a [T],
    pub dts: &'a [T],
    pub substeps: usize,
    pub s0: &'a [T],
}

impl<T: Real> Sequence<'_, T> {
    pub fn validate(&self, p: &ParamsRef<'_, T>) -> CoreResult<()> {
        let (b, t) = (self.batch, self.frames);
        if b == 0 {
            return Err(CoreError::shape("x", "at least one batch row", "B = 0"));
        }
        check_len(
            "x",
            self.x.len(),
            b * t * p.n_inputs,
            format!("[{b}, {t}, {}]", p.n_inputs),
        )?;
        check_len("dt", self.dts.len(), t, format!("[{t}]"))?;
        check_len(
            "s0",
            self.s0.len(),
            b * p.n_neurons,
            format!("[{b}, {}]", p.n_neurons),
        )?;
        if self.substeps == 0 {
            return Err(CoreError::config(
                "substeps",
                "must be an integer >= 1, got 0",
            ));
        }
        check_finite("x", self.x)?;
        check_finite("s0", self.s0)?;
        if let Some(pos) = self
            .dts
            .iter()
            .position(|d| !(d.is_finite() && *d > T::ZERO))
        {
            return Err(CoreError::config(
                "dt",
                format!(
                    "frame durations must be finite and > 0 (frame times strictly increasing), \
                     found {:?} at frame {pos}",
                    self.dts[pos]
                ),
            ));
        }
        Ok(())
    }
}
