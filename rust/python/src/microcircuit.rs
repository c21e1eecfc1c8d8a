//! Microcircuit kernel: `microcircuit_run` advances a batch of networks by many steps.

use numpy::{
    PyArray1, PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArray3, PyReadwriteArray2,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rnnlab_core::microcircuit::{
    self, Activation, BackwardModel, Config, Layout, Learning, NoiseMode, NoiseType, Regularizer,
};
use rnnlab_core::CoreError;

use crate::boundary::{detached, to_python};

fn field<'py, T: FromPyObjectOwned<'py>>(
    py: Python<'py>,
    config: &Bound<'py, PyDict>,
    name: &'static str,
) -> PyResult<T> {
    let value = config.get_item(name)?.ok_or_else(|| {
        to_python(
            py,
            CoreError::config(name, "missing from the kernel config"),
        )
    })?;
    value
        .extract::<T>()
        .map_err(|_| to_python(py, CoreError::config(name, "has the wrong type")))
}

fn code<T>(py: Python<'_>, name: &'static str, value: i64, options: &[T]) -> PyResult<T>
where
    T: Copy,
{
    usize::try_from(value)
        .ok()
        .and_then(|i| options.get(i).copied())
        .ok_or_else(|| {
            to_python(
                py,
                CoreError::config(name, format!("unknown code {value} (0..{})", options.len())),
            )
        })
}

fn parse_config(py: Python<'_>, c: &Bound<'_, PyDict>) -> PyResult<Config> {
    let activations: Vec<i64> = field(py, c, "activations")?;
    let activations = activations
        .into_iter()
        .map(Activation::from_code)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| to_python(py, e))?;
    Ok(Config {
        layers: field(py, c, "layers")?,
        skip: field(py, c, "skip")?,
        dt: field(py, c, "dt")?,
        gl: field(py, c, "gl")?,
        gbas: field(py, c, "gbas")?,
        gapi: field(py, c, "gapi")?,
        gden: field(py, c, "gden")?,
        gni: field(py, c, "gnI")?,
        gntgt: field(py, c, "gntgt")?,
        taur: field(py, c, "taur")?,
        tau_hp: field(py, c, "tauHP")?,
        tau_lo: field(py, c, "tauLO")?,
        tau_xi: field(py, c, "tauxi")?,
        xi_steps: field(py, c, "xi_steps")?,
        tbw_steps: field(py, c, "tbw_steps")?,
        model: code(
            py,
            "model",
            field(py, c, "model")?,
            &[
                BackwardModel::Backprop,
                BackwardModel::FeedbackAlignment,
                BackwardModel::Pal,
                BackwardModel::Dtpdrl,
            ],
        )?,
        noise_type: code(
            py,
            "noise_type",
            field(py, c, "noise_type")?,
            &[
                NoiseType::OrnsteinUhlenbeck,
                NoiseType::OrnsteinUhlenbeckEuler,
                NoiseType::HeldWhite,
            ],
        )?,
        ou_scale: field(py, c, "ou_scale")?,
        noise_mode: code(
            py,
            "noise_mode",
            field(py, c, "noise_mode")?,
            &[
                NoiseMode::Const,
                NoiseMode::Soma,
                NoiseMode::Prospective,
                NoiseMode::Apical,
            ],
        )?,
        activations,
        eta_fw: field(py, c, "eta_fw")?,
        eta_bw: field(py, c, "eta_bw")?,
        eta_ip: field(py, c, "eta_IP")?,
        eta_pi: field(py, c, "eta_PI")?,
        alpha: field(py, c, "alpha")?,
        noise_scale: field(py, c, "noise_scale")?,
        inter_low_pass: field(py, c, "inter_low_pass")?,
        pyr_hi_pass: field(py, c, "pyr_hi_pass")?,
        dwpp_low_pass: field(py, c, "dWPP_low_pass")?,
        regularizer: code(
            py,
            "regularizer",
            field(py, c, "regularizer")?,
            &[Regularizer::Plain, Regularizer::Gate, Regularizer::Varphi],
        )?,
        use_activation: field(py, c, "use_activation")?,
    })
}

/// Advance every network of `state` (batch, size) by `inputs.shape[1]` steps in place; returns
/// the summed squared output error per network.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (config, offsets, state, inputs, targets, seeds, step0, learn_fw, learn_lat, learn_bw))]
pub fn microcircuit_run<'py>(
    py: Python<'py>,
    config: &Bound<'py, PyDict>,
    offsets: PyReadonlyArray2<'py, i64>,
    mut state: PyReadwriteArray2<'py, f64>,
    inputs: PyReadonlyArray3<'py, f64>,
    targets: Option<PyReadonlyArray3<'py, f64>>,
    seeds: PyReadonlyArray1<'py, u64>,
    step0: u64,
    learn_fw: bool,
    learn_lat: bool,
    learn_bw: bool,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let cfg = parse_config(py, config)?;
    let layout = Layout::new(&cfg.layers, cfg.skip).map_err(|e| to_python(py, e))?;
    let columns = offsets.shape()[1];
    let table = offsets
        .as_slice()
        .map_err(|_| to_python(py, CoreError::config("offsets", "must be C-contiguous")))?;
    layout
        .check_table(table, columns)
        .map_err(|e| to_python(py, e))?;
    let steps = inputs.shape()[1];
    let state = state
        .as_slice_mut()
        .map_err(|_| to_python(py, CoreError::config("state", "must be C-contiguous")))?;
    let inputs = inputs
        .as_slice()
        .map_err(|_| to_python(py, CoreError::config("inputs", "must be C-contiguous")))?;
    let targets = match &targets {
        Some(t) => Some(
            t.as_slice()
                .map_err(|_| to_python(py, CoreError::config("targets", "must be C-contiguous")))?,
        ),
        None => None,
    };
    let seeds = seeds
        .as_slice()
        .map_err(|_| to_python(py, CoreError::config("seeds", "must be C-contiguous")))?;
    let learning = Learning {
        forward: learn_fw,
        lateral: learn_lat,
        backward: learn_bw,
    };
    let errors = detached(py, move || {
        microcircuit::run(
            &cfg, &layout, state, inputs, targets, seeds, step0, steps, learning,
        )
    })?;
    Ok(PyArray1::from_vec(py, errors))
}

/// `count` standard normals of the kernel's counter-based generator for (seed, step).
#[pyfunction]
pub fn microcircuit_normals(
    py: Python<'_>,
    seed: u64,
    step: u64,
    count: usize,
) -> Bound<'_, PyArray1<f64>> {
    let mut out = vec![0.0; count];
    microcircuit::counter_normals(seed, step, &mut out);
    PyArray1::from_vec(py, out)
}
