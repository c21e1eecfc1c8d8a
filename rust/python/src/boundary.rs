//! The one place where Rust meets Python: release the GIL, catch panics, map errors.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::prelude::*;
use rnnlab_core::CoreError;

/// Build an instance of the exception class `name` from `rnnlab.errors`.
fn python_error(py: Python<'_>, name: &str, message: String) -> PyErr {
    let made = py
        .import("rnnlab.errors")
        .and_then(|module| module.getattr(name))
        .and_then(|class| class.call1((message.clone(),)));
    match made {
        Ok(instance) => PyErr::from_value(instance),
        // rnnlab.errors cannot be imported (a broken install): fall back to a builtin.
        Err(_) => pyo3::exceptions::PyRuntimeError::new_err(message),
    }
}

/// Map a core error to its Python class: `Shape` → `rnnlab.ShapeError`, `Config` →
/// `rnnlab.ConfigError` (both subclass `rnnlab.RnnlabError` and `ValueError`).
pub fn to_python(py: Python<'_>, error: CoreError) -> PyErr {
    let class = match error {
        CoreError::Shape { .. } => "ShapeError",
        CoreError::Config { .. } => "ConfigError",
    };
    python_error(py, class, error.to_string())
}

/// Run `work` with the GIL released; a core error becomes its Python exception and a panic
/// becomes `rnnlab.InternalError` instead of unwinding into the interpreter.
pub fn detached<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> Result<T, CoreError> + Send,
{
    match py.detach(|| catch_unwind(AssertUnwindSafe(work))) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(to_python(py, error)),
        Err(payload) => {
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(python_error(
                py,
                "InternalError",
                format!("internal error in rnnlab._native (please report): {text}"),
            ))
        }
    }
}

/// Panic inside the detach-and-catch helper (used by the test-suite to prove that a Rust panic
/// surfaces as `rnnlab.InternalError`, not as a crash).
#[pyfunction]
pub fn panic_for_test(py: Python<'_>) -> PyResult<()> {
    detached(py, || -> Result<(), CoreError> {
        panic!("deliberate panic for the test-suite")
    })
}
