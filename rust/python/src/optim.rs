//! `rnnlab._native.Optimizer`: SGD/Adam state over one flat float64 parameter vector.

use numpy::{PyArray1, PyReadonlyArray1, PyReadwriteArray1};
use pyo3::prelude::*;
use rnnlab_core::optim::{self, Rule};
use rnnlab_core::CoreError;

use crate::boundary::{detached, to_python};

#[pyclass(module = "rnnlab._native")]
pub struct Optimizer {
    inner: optim::Optimizer,
}

#[pymethods]
impl Optimizer {
    #[new]
    #[pyo3(signature = (rule, size, lr, *, momentum=0.0, beta1=0.9, beta2=0.999, eps=1e-8, clip_norm=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        rule: &str,
        size: usize,
        lr: f64,
        momentum: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        clip_norm: Option<f64>,
    ) -> PyResult<Self> {
        let rule = match rule {
            "sgd" => Rule::Sgd { momentum },
            "adam" => Rule::Adam { beta1, beta2, eps },
            other => {
                return Err(to_python(
                    py,
                    CoreError::config(
                        "optimizer",
                        format!(
                            "unknown optimizer {other:?}; allowed: {}",
                            Rule::NAMES.join(", ")
                        ),
                    ),
                ))
            }
        };
        let inner =
            optim::Optimizer::new(rule, size, lr, clip_norm).map_err(|e| to_python(py, e))?;
        Ok(Optimizer { inner })
    }

    /// Update `params` in place from `grads`; returns the gradient norm before clipping.
    fn step(
        &mut self,
        py: Python<'_>,
        mut params: PyReadwriteArray1<'_, f64>,
        grads: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<f64> {
        let params = params
            .as_slice_mut()
            .map_err(|_| to_python(py, CoreError::config("params", "must be C-contiguous")))?;
        let grads = grads
            .as_slice()
            .map_err(|_| to_python(py, CoreError::config("grads", "must be C-contiguous")))?;
        let inner = &mut self.inner;
        detached(py, move || inner.step(params, grads))
    }

    /// (first moment, second moment, steps): copies of the optimiser state, for checkpoints.
    #[allow(clippy::type_complexity)]
    fn state<'py>(
        &self,
        py: Python<'py>,
    ) -> (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>, u64) {
        let (first, second, steps) = self.inner.state();
        (
            PyArray1::from_slice(py, first),
            PyArray1::from_slice(py, second),
            steps,
        )
    }

    /// Restore a state returned by `state()`.
    fn restore(
        &mut self,
        py: Python<'_>,
        first: PyReadonlyArray1<'_, f64>,
        second: PyReadonlyArray1<'_, f64>,
        steps: u64,
    ) -> PyResult<()> {
        let first = first.as_slice().map_err(|_| {
            to_python(
                py,
                CoreError::config("first_moment", "must be C-contiguous"),
            )
        })?;
        let second = second.as_slice().map_err(|_| {
            to_python(
                py,
                CoreError::config("second_moment", "must be C-contiguous"),
            )
        })?;
        self.inner
            .restore(first, second, steps)
            .map_err(|e| to_python(py, e))
    }

    /// Number of steps taken so far.
    #[getter]
    fn steps(&self) -> u64 {
        self.inner.steps()
    }

    /// The learning rate (settable, for schedules).
    #[getter]
    fn get_lr(&self) -> f64 {
        self.inner.lr()
    }

    #[setter]
    fn set_lr(&mut self, py: Python<'_>, lr: f64) -> PyResult<()> {
        self.inner.set_lr(lr).map_err(|e| to_python(py, e))
    }
}
