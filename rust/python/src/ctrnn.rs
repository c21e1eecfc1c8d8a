//! CTRNN kernels: `ctrnn_forward` and `ctrnn_loss_and_grad` over whole batches of sequences.

use numpy::{Element, PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rnnlab_core::ctrnn::{self, Activation, Integrator, Model, Options, ParamsRef, Sequence};
use rnnlab_core::{CoreError, Real};

use crate::boundary::{detached, to_python};

/// The arrays of one call, borrowed read-only from numpy (C-contiguous, one dtype).
struct Borrowed<'py, T: Element> {
    w: PyReadonlyArrayDyn<'py, T>,
    tau: PyReadonlyArrayDyn<'py, T>,
    theta: PyReadonlyArrayDyn<'py, T>,
    gain: PyReadonlyArrayDyn<'py, T>,
    u: PyReadonlyArrayDyn<'py, T>,
    v: PyReadonlyArrayDyn<'py, T>,
    c: PyReadonlyArrayDyn<'py, T>,
    x: PyReadonlyArrayDyn<'py, T>,
    dts: PyReadonlyArrayDyn<'py, T>,
    s0: PyReadonlyArrayDyn<'py, T>,
}

fn borrow<'py, T: Element>(
    py: Python<'py>,
    field: &'static str,
    obj: &Bound<'py, PyAny>,
    ndim: usize,
) -> PyResult<PyReadonlyArrayDyn<'py, T>> {
    let array: PyReadonlyArrayDyn<'py, T> = obj.extract().map_err(|_| {
        to_python(
            py,
            CoreError::config(
                field,
                "must be a numpy array with the same float dtype as x",
            ),
        )
    })?;
    if array.ndim() != ndim {
        return Err(to_python(
            py,
            CoreError::shape(
                field,
                format!("{ndim}-D array"),
                format!("shape {:?}", array.shape()),
            ),
        ));
    }
    if !array.is_c_contiguous() {
        return Err(to_python(
            py,
            CoreError::config(field, "must be C-contiguous"),
        ));
    }
    Ok(array)
}

#[allow(clippy::too_many_arguments)]
fn borrow_all<'py, T: Element>(
    py: Python<'py>,
    w: &Bound<'py, PyAny>,
    tau: &Bound<'py, PyAny>,
    theta: &Bound<'py, PyAny>,
    gain: &Bound<'py, PyAny>,
    u: &Bound<'py, PyAny>,
    v: &Bound<'py, PyAny>,
    c: &Bound<'py, PyAny>,
    x: &Bound<'py, PyAny>,
    dts: &Bound<'py, PyAny>,
    s0: &Bound<'py, PyAny>,
) -> PyResult<Borrowed<'py, T>> {
    Ok(Borrowed {
        w: borrow(py, "W", w, 2)?,
        tau: borrow(py, "tau", tau, 1)?,
        theta: borrow(py, "theta", theta, 1)?,
        gain: borrow(py, "gain", gain, 1)?,
        u: borrow(py, "U", u, 2)?,
        v: borrow(py, "V", v, 2)?,
        c: borrow(py, "c", c, 1)?,
        x: borrow(py, "x", x, 3)?,
        dts: borrow(py, "dt", dts, 1)?,
        s0: borrow(py, "s0", s0, 2)?,
    })
}

fn as_slice<'a, T: Element>(array: &'a PyReadonlyArrayDyn<'_, T>) -> &'a [T] {
    // Contiguity was checked in `borrow`.
    array.as_slice().unwrap_or(&[])
}

impl<T: Element + Real> Borrowed<'_, T> {
    fn params(&self) -> ParamsRef<'_, T> {
        let u_shape = self.u.shape();
        ParamsRef {
            n_neurons: self.tau.len(),
            n_inputs: u_shape[1],
            n_outputs: self.v.shape()[0],
            w: as_slice(&self.w),
            tau: as_slice(&self.tau),
            theta: as_slice(&self.theta),
            gain: as_slice(&self.gain),
            u: as_slice(&self.u),
            v: as_slice(&self.v),
            c: as_slice(&self.c),
        }
    }

    fn check_shapes(&self, py: Python<'_>) -> PyResult<()> {
        let n = self.tau.len();
        let u_shape = self.u.shape();
        let x_shape = self.x.shape();
        if u_shape[0] != n {
            return Err(to_python(
                py,
                CoreError::shape("U", format!("[{n}, n_inputs]"), format!("{u_shape:?}")),
            ));
        }
        if x_shape[2] != u_shape[1] {
            return Err(to_python(
                py,
                CoreError::shape(
                    "x",
                    format!("last axis of length n_inputs = {}", u_shape[1]),
                    format!("shape {x_shape:?}"),
                ),
            ));
        }
        Ok(())
    }

    fn sequence(&self, substeps: usize) -> Sequence<'_, T> {
        let x_shape = self.x.shape();
        Sequence {
            batch: x_shape[0],
            frames: x_shape[1],
            x: as_slice(&self.x),
            dts: as_slice(&self.dts),
            substeps,
            s0: as_slice(&self.s0),
        }
    }
}

fn model(py: Python<'_>, activation: &str, integrator: &str) -> PyResult<Model> {
    Ok(Model {
        activation: Activation::parse(activation).map_err(|e| to_python(py, e))?,
        integrator: Integrator::parse(integrator).map_err(|e| to_python(py, e))?,
    })
}

fn options(py: Python<'_>, sparse: bool, threads: Option<usize>) -> PyResult<Options> {
    let threads = match threads {
        Some(0) => {
            return Err(to_python(
                py,
                CoreError::config("threads", "must be None or an integer >= 1, got 0"),
            ))
        }
        Some(t) => t,
        None => ctrnn::default_threads(),
    };
    Ok(Options { threads, sparse })
}

fn to_numpy<'py, T: Element>(
    py: Python<'py>,
    values: Vec<T>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyArray1::from_vec(py, values)
        .reshape(shape.to_vec())?
        .into_any())
}

fn is_f64(x: &Bound<'_, PyAny>) -> bool {
    x.extract::<PyReadonlyArrayDyn<'_, f64>>().is_ok()
}

type ForwardResult<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Option<Bound<'py, PyAny>>,
);

#[allow(clippy::too_many_arguments)]
fn forward_typed<'py, T: Element + Real>(
    py: Python<'py>,
    arrays: Borrowed<'py, T>,
    substeps: usize,
    model: Model,
    return_states: bool,
    mask: Option<&Bound<'py, PyAny>>,
    options: Options,
) -> PyResult<ForwardResult<'py>> {
    arrays.check_shapes(py)?;
    let mask = match mask {
        Some(m) => Some(borrow::<T>(py, "mask", m, 2)?),
        None => None,
    };
    let params = arrays.params();
    let seq = arrays.sequence(substeps);
    let (b, t, n, o) = (seq.batch, seq.frames, params.n_neurons, params.n_outputs);
    let mask_slice = mask.as_ref().map(as_slice);
    let out = detached(py, || {
        ctrnn::forward_with_options(&params, model, &seq, return_states, mask_slice, options)
    })?;
    let states = match out.states {
        Some(st) => Some(to_numpy(py, st, &[b, t, n])?),
        None => None,
    };
    Ok((
        to_numpy(py, out.y, &[b, t, o])?,
        to_numpy(py, out.final_state, &[b, n])?,
        states,
    ))
}

/// Integrate a batch of sequences. Arrays share one float dtype (float32 or float64):
/// W [N,N], tau/theta/gain [N], U [N,n_in], V [n_out,N], c [n_out], x [B,T,n_in], dts [T],
/// s0 [B,N]. Returns (y [B,T,n_out], final state [B,N], states [B,T,N] or None).
/// `sparse=True` runs the CSR kernels on the synapses of `mask` (or W's non-zeros); `threads`
/// caps the threads over which batch rows are split (default: RNNLAB_NUM_THREADS or all cores).
#[pyfunction]
#[pyo3(signature = (w, tau, theta, gain, u, v, c, x, dts, s0, substeps, activation, integrator, return_states=false, mask=None, sparse=false, threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn ctrnn_forward<'py>(
    py: Python<'py>,
    w: &Bound<'py, PyAny>,
    tau: &Bound<'py, PyAny>,
    theta: &Bound<'py, PyAny>,
    gain: &Bound<'py, PyAny>,
    u: &Bound<'py, PyAny>,
    v: &Bound<'py, PyAny>,
    c: &Bound<'py, PyAny>,
    x: &Bound<'py, PyAny>,
    dts: &Bound<'py, PyAny>,
    s0: &Bound<'py, PyAny>,
    substeps: usize,
    activation: &str,
    integrator: &str,
    return_states: bool,
    mask: Option<&Bound<'py, PyAny>>,
    sparse: bool,
    threads: Option<usize>,
) -> PyResult<ForwardResult<'py>> {
    let model = model(py, activation, integrator)?;
    let options = options(py, sparse, threads)?;
    if is_f64(x) {
        let arrays = borrow_all::<f64>(py, w, tau, theta, gain, u, v, c, x, dts, s0)?;
        forward_typed(py, arrays, substeps, model, return_states, mask, options)
    } else {
        let arrays = borrow_all::<f32>(py, w, tau, theta, gain, u, v, c, x, dts, s0)?;
        forward_typed(py, arrays, substeps, model, return_states, mask, options)
    }
}

#[allow(clippy::too_many_arguments)]
fn loss_and_grad_typed<'py, T: Element + Real>(
    py: Python<'py>,
    arrays: Borrowed<'py, T>,
    target: &Bound<'py, PyAny>,
    mask: Option<&Bound<'py, PyAny>>,
    substeps: usize,
    truncation: Option<usize>,
    model: Model,
    options: Options,
) -> PyResult<(f64, Bound<'py, PyDict>)> {
    arrays.check_shapes(py)?;
    let target = borrow::<T>(py, "target", target, 3)?;
    let mask = match mask {
        Some(m) => Some(borrow::<T>(py, "mask", m, 2)?),
        None => None,
    };
    let params = arrays.params();
    let seq = arrays.sequence(substeps);
    let (b, n, n_in, o) = (
        seq.batch,
        params.n_neurons,
        params.n_inputs,
        params.n_outputs,
    );
    let target_slice = as_slice(&target);
    let mask_slice = mask.as_ref().map(as_slice);
    let (loss, g) = detached(py, || {
        ctrnn::loss_and_grad_with_options(
            &params,
            model,
            &seq,
            target_slice,
            truncation,
            mask_slice,
            options,
        )
    })?;
    let grads = PyDict::new(py);
    grads.set_item("W", to_numpy(py, g.w, &[n, n])?)?;
    grads.set_item("tau", to_numpy(py, g.tau, &[n])?)?;
    grads.set_item("theta", to_numpy(py, g.theta, &[n])?)?;
    grads.set_item("gain", to_numpy(py, g.gain, &[n])?)?;
    grads.set_item("U", to_numpy(py, g.u, &[n, n_in])?)?;
    grads.set_item("V", to_numpy(py, g.v, &[o, n])?)?;
    grads.set_item("c", to_numpy(py, g.c, &[o])?)?;
    grads.set_item("s0", to_numpy(py, g.s0, &[b, n])?)?;
    Ok((loss, grads))
}

/// Mean squared error of the outputs against `target` [B,T,n_out] and its exact gradient
/// (adjoint BPTT, cut every `truncation` frames when given). `mask` [N,N] zeroes the gradient of
/// absent synapses. Returns (loss, {"W", "tau", "theta", "gain", "U", "V", "c", "s0"}).
#[pyfunction]
#[pyo3(signature = (w, tau, theta, gain, u, v, c, x, dts, s0, target, substeps, activation, integrator, truncation=None, mask=None, sparse=false, threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn ctrnn_loss_and_grad<'py>(
    py: Python<'py>,
    w: &Bound<'py, PyAny>,
    tau: &Bound<'py, PyAny>,
    theta: &Bound<'py, PyAny>,
    gain: &Bound<'py, PyAny>,
    u: &Bound<'py, PyAny>,
    v: &Bound<'py, PyAny>,
    c: &Bound<'py, PyAny>,
    x: &Bound<'py, PyAny>,
    dts: &Bound<'py, PyAny>,
    s0: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    substeps: usize,
    activation: &str,
    integrator: &str,
    truncation: Option<usize>,
    mask: Option<&Bound<'py, PyAny>>,
    sparse: bool,
    threads: Option<usize>,
) -> PyResult<(f64, Bound<'py, PyDict>)> {
    let model = model(py, activation, integrator)?;
    let options = options(py, sparse, threads)?;
    if is_f64(x) {
        let arrays = borrow_all::<f64>(py, w, tau, theta, gain, u, v, c, x, dts, s0)?;
        loss_and_grad_typed(
            py, arrays, target, mask, substeps, truncation, model, options,
        )
    } else {
        let arrays = borrow_all::<f32>(py, w, tau, theta, gain, u, v, c, x, dts, s0)?;
        loss_and_grad_typed(
            py, arrays, target, mask, substeps, truncation, model, options,
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn forward_population_typed<'py, T: Element + Real>(
    py: Python<'py>,
    arrays: [&Bound<'py, PyAny>; 10],
    substeps: usize,
    model: Model,
    per_member: bool,
    threads: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let [w, tau, theta, gain, u, v, c, x, dts, s0] = arrays;
    let w = borrow::<T>(py, "W", w, 3)?;
    let tau = borrow::<T>(py, "tau", tau, 2)?;
    let theta = borrow::<T>(py, "theta", theta, 2)?;
    let gain = borrow::<T>(py, "gain", gain, 2)?;
    let u = borrow::<T>(py, "U", u, 3)?;
    let v = borrow::<T>(py, "V", v, 3)?;
    let c = borrow::<T>(py, "c", c, 2)?;
    let x = borrow::<T>(py, "x", x, if per_member { 4 } else { 3 })?;
    let dts = borrow::<T>(py, "dt", dts, 1)?;
    let s0 = borrow::<T>(py, "s0", s0, 2)?;
    let (w_shape, u_shape, v_shape, x_shape) = (w.shape(), u.shape(), v.shape(), x.shape());
    let population = ctrnn::PopulationRef {
        members: w_shape[0],
        n_neurons: w_shape[1],
        n_inputs: u_shape[2],
        n_outputs: v_shape[1],
        w: as_slice(&w),
        tau: as_slice(&tau),
        theta: as_slice(&theta),
        gain: as_slice(&gain),
        u: as_slice(&u),
        v: as_slice(&v),
        c: as_slice(&c),
    };
    let inputs = if per_member { x_shape[0] } else { 1 };
    if per_member && inputs != population.members {
        return Err(to_python(
            py,
            CoreError::shape(
                "x",
                format!("a leading axis of {} members", population.members),
                format!("shape {x_shape:?}"),
            ),
        ));
    }
    let row_shape = &x_shape[x_shape.len() - 3..];
    let (batch, frames) = (row_shape[0], row_shape[1]);
    let x_all = as_slice(&x);
    let per_input = x_all.len() / inputs.max(1);
    let sequences: Vec<Sequence<'_, T>> = (0..inputs)
        .map(|k| Sequence {
            batch,
            frames,
            x: &x_all[k * per_input..(k + 1) * per_input],
            dts: as_slice(&dts),
            substeps,
            s0: as_slice(&s0),
        })
        .collect();
    if row_shape[2] != population.n_inputs {
        return Err(to_python(
            py,
            CoreError::shape(
                "x",
                format!("last axis of length n_inputs = {}", population.n_inputs),
                format!("shape {x_shape:?}"),
            ),
        ));
    }
    let (members, n_out) = (population.members, population.n_outputs);
    let y = detached(py, || {
        ctrnn::forward_population(&population, model, &sequences, threads)
    })?;
    to_numpy(py, y, &[members, batch, frames, n_out])
}

/// Outputs of P networks of one architecture, members spread over threads (each member on one
/// thread, bit-identical to a one-thread `ctrnn_forward` of it). Parameters carry a leading
/// member axis: W [P,N,N], tau/theta/gain [P,N], U [P,N,n_in], V [P,n_out,N], c [P,n_out].
/// x is [B,T,n_in] shared by all members, or [P,B,T,n_in] with `per_member=True`; dts [T];
/// s0 [B,N]. Returns y [P,B,T,n_out].
#[pyfunction]
#[pyo3(signature = (w, tau, theta, gain, u, v, c, x, dts, s0, substeps, activation, integrator, per_member=false, threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn ctrnn_forward_population<'py>(
    py: Python<'py>,
    w: &Bound<'py, PyAny>,
    tau: &Bound<'py, PyAny>,
    theta: &Bound<'py, PyAny>,
    gain: &Bound<'py, PyAny>,
    u: &Bound<'py, PyAny>,
    v: &Bound<'py, PyAny>,
    c: &Bound<'py, PyAny>,
    x: &Bound<'py, PyAny>,
    dts: &Bound<'py, PyAny>,
    s0: &Bound<'py, PyAny>,
    substeps: usize,
    activation: &str,
    integrator: &str,
    per_member: bool,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let model = model(py, activation, integrator)?;
    let threads = options(py, false, threads)?.threads;
    let arrays = [w, tau, theta, gain, u, v, c, x, dts, s0];
    if is_f64(x) {
        forward_population_typed::<f64>(py, arrays, substeps, model, per_member, threads)
    } else {
        forward_population_typed::<f32>(py, arrays, substeps, model, per_member, threads)
    }
}
