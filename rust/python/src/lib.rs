//! `rnnlab._native`: the thin PyO3 layer over `rnnlab-core`.
//!
//! Every function here converts arrays, calls one core function inside [`boundary::detached`]
//! (GIL released, panics caught, errors mapped to `rnnlab.errors`), and converts back. No
//! numerics live in this crate.

mod boundary;
mod ctrnn;
mod feed;
mod graphnet;
mod microcircuit;
mod optim;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(ctrnn::ctrnn_forward, m)?)?;
    m.add_function(wrap_pyfunction!(ctrnn::ctrnn_loss_and_grad, m)?)?;
    m.add_function(wrap_pyfunction!(ctrnn::ctrnn_forward_population, m)?)?;
    m.add_function(wrap_pyfunction!(feed::decode_feed_v1, m)?)?;
    m.add_function(wrap_pyfunction!(microcircuit::microcircuit_run, m)?)?;
    m.add_function(wrap_pyfunction!(microcircuit::microcircuit_normals, m)?)?;
    m.add_function(wrap_pyfunction!(boundary::panic_for_test, m)?)?;
    m.add_class::<optim::Optimizer>()?;
    m.add_class::<graphnet::GraphNetCore>()?;
    Ok(())
}
