//! `rnnlab._native.GraphNetCore`: the graph network of `rnnlab-core` behind a Python class.
//!
//! Settings travel as one dict (built and documented by `rnnlab.graphnet.GraphNet`); arrays are
//! copied at the boundary; every call that loops over edges runs with the GIL released.

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rnnlab_core::graphnet::{self, Config, Edges, FeedbackMode, State};
use rnnlab_core::CoreError;

use crate::boundary::{detached, to_python};

fn config_error(py: Python<'_>, field: &'static str, message: impl Into<String>) -> PyErr {
    to_python(py, CoreError::config(field, message))
}

fn item<'py, T: FromPyObjectOwned<'py>>(
    py: Python<'py>,
    dict: &Bound<'py, PyDict>,
    key: &'static str,
) -> PyResult<T> {
    match dict.get_item(key)? {
        Some(value) => value
            .extract::<T>()
            .map_err(|_| config_error(py, key, "has the wrong type")),
        None => Err(config_error(py, key, "missing from the config")),
    }
}

fn parse_config(py: Python<'_>, dict: &Bound<'_, PyDict>) -> PyResult<Config> {
    let mode: String = item(py, dict, "feedback_mode")?;
    Ok(Config {
        n_inputs: item(py, dict, "n_inputs")?,
        n_hidden: item(py, dict, "n_hidden")?,
        n_outputs: item(py, dict, "n_outputs")?,
        threshold: item(py, dict, "threshold")?,
        input_threshold: item(py, dict, "input_threshold")?,
        spike: item(py, dict, "spike")?,
        decay: item(py, dict, "decay")?,
        lr: item(py, dict, "lr")?,
        feedback_floor: item(py, dict, "feedback_floor")?,
        feedback_mode: FeedbackMode::parse(&mode).map_err(|e| to_python(py, e))?,
        grow_prob: item(py, dict, "grow_prob")?,
        weight_low: item(py, dict, "weight_low")?,
        weight_high: item(py, dict, "weight_high")?,
        weight_max: item(py, dict, "weight_max")?,
        prune_below: item(py, dict, "prune_below")?,
        auto_prune: item(py, dict, "auto_prune")?,
        mega_prune_every: item(py, dict, "mega_prune_every")?,
        protect_after: item(py, dict, "protect_after")?,
        novelty_bonus: item(py, dict, "novelty_bonus")?,
        threads: item(py, dict, "threads")?,
    })
}

fn config_dict<'py>(py: Python<'py>, c: &Config) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("n_inputs", c.n_inputs)?;
    d.set_item("n_hidden", c.n_hidden)?;
    d.set_item("n_outputs", c.n_outputs)?;
    d.set_item("threshold", c.threshold)?;
    d.set_item("input_threshold", c.input_threshold)?;
    d.set_item("spike", c.spike)?;
    d.set_item("decay", c.decay)?;
    d.set_item("lr", c.lr)?;
    d.set_item("feedback_floor", c.feedback_floor)?;
    d.set_item("feedback_mode", c.feedback_mode.name())?;
    d.set_item("grow_prob", c.grow_prob)?;
    d.set_item("weight_low", c.weight_low)?;
    d.set_item("weight_high", c.weight_high)?;
    d.set_item("weight_max", c.weight_max)?;
    d.set_item("prune_below", c.prune_below)?;
    d.set_item("auto_prune", c.auto_prune)?;
    d.set_item("mega_prune_every", c.mega_prune_every)?;
    d.set_item("protect_after", c.protect_after)?;
    d.set_item("novelty_bonus", c.novelty_bonus)?;
    d.set_item("threads", c.threads)?;
    Ok(d)
}

fn slice<'a, T: numpy::Element>(
    py: Python<'_>,
    field: &'static str,
    array: &'a PyReadonlyArray1<'_, T>,
) -> PyResult<&'a [T]> {
    array
        .as_slice()
        .map_err(|_| config_error(py, field, "must be C-contiguous"))
}

/// The network; see `rnnlab.graphnet.GraphNet` for the documented Python API.
#[pyclass(module = "rnnlab._native")]
pub struct GraphNetCore {
    inner: graphnet::GraphNet,
}

#[pymethods]
impl GraphNetCore {
    /// A random graph with edge probability `density` (seeded).
    #[new]
    fn new(py: Python<'_>, config: &Bound<'_, PyDict>, density: f64, seed: u64) -> PyResult<Self> {
        let config = parse_config(py, config)?;
        let inner = detached(py, move || {
            graphnet::GraphNet::random(config, density, seed)
        })?;
        Ok(GraphNetCore { inner })
    }

    /// A network over explicit edges (any order; stored sorted by (target, source)).
    #[staticmethod]
    #[allow(clippy::too_many_arguments)]
    fn from_edges(
        py: Python<'_>,
        config: &Bound<'_, PyDict>,
        source: PyReadonlyArray1<'_, u32>,
        target: PyReadonlyArray1<'_, u32>,
        weight: PyReadonlyArray1<'_, f64>,
        activation: PyReadonlyArray1<'_, f64>,
        streak: PyReadonlyArray1<'_, u32>,
        seed: u64,
    ) -> PyResult<Self> {
        let config = parse_config(py, config)?;
        let edges = Edges {
            source: slice(py, "source", &source)?.to_vec(),
            target: slice(py, "target", &target)?.to_vec(),
            weight: slice(py, "weight", &weight)?.to_vec(),
            activation: slice(py, "activation", &activation)?.to_vec(),
            streak: slice(py, "streak", &streak)?.to_vec(),
        };
        let inner = detached(py, move || {
            graphnet::GraphNet::from_edges(config, edges, seed)
        })?;
        Ok(GraphNetCore { inner })
    }

    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        config_dict(py, self.inner.config())
    }

    fn set_config(&mut self, py: Python<'_>, config: &Bound<'_, PyDict>) -> PyResult<()> {
        let config = parse_config(py, config)?;
        self.inner.set_config(config).map_err(|e| to_python(py, e))
    }

    /// Run T steps. Returns (fired outputs bool[T, n_outputs], fired nodes bool[T, n_nodes] or
    /// None, (edge events, edges grown, edges pruned)).
    #[pyo3(signature = (observations, record_nodes=false))]
    #[allow(clippy::type_complexity)]
    fn run<'py>(
        &mut self,
        py: Python<'py>,
        observations: PyReadonlyArray2<'py, f64>,
        record_nodes: bool,
    ) -> PyResult<(
        Bound<'py, PyAny>,
        Option<Bound<'py, PyAny>>,
        (u64, u64, u64),
    )> {
        let shape = observations.shape().to_vec();
        let ni = self.inner.config().n_inputs;
        if shape[1] != ni {
            return Err(to_python(
                py,
                CoreError::shape("observations", format!("[T, {ni}]"), format!("{shape:?}")),
            ));
        }
        let obs = observations
            .as_slice()
            .map_err(|_| config_error(py, "observations", "must be C-contiguous"))?;
        let steps = shape[0];
        let no = self.inner.config().n_outputs;
        let n = self.inner.config().n_nodes();
        let mut outputs = vec![false; steps * no];
        let mut nodes = if record_nodes {
            Some(vec![false; steps * n])
        } else {
            None
        };
        let inner = &mut self.inner;
        let stats = {
            let outputs = &mut outputs;
            let nodes = &mut nodes;
            detached(py, move || inner.run(obs, outputs, nodes.as_deref_mut()))?
        };
        let outputs = PyArray1::from_vec(py, outputs)
            .reshape([steps, no])?
            .into_any();
        let nodes = match nodes {
            Some(v) => Some(PyArray1::from_vec(py, v).reshape([steps, n])?.into_any()),
            None => None,
        };
        Ok((
            outputs,
            nodes,
            (stats.edge_events, stats.grown, stats.pruned),
        ))
    }

    /// Feedback `signal` at nodes `at`; returns the number of edges updated (0 in every_step
    /// mode, where the wave advances during the following steps).
    fn feedback(&mut self, py: Python<'_>, signal: f64, at: Vec<u32>) -> PyResult<usize> {
        let inner = &mut self.inner;
        detached(py, move || inner.feedback(signal, &at))
    }

    fn grow(&mut self, py: Python<'_>) -> PyResult<usize> {
        let inner = &mut self.inner;
        detached(py, move || Ok(inner.grow()))
    }

    fn prune(&mut self, py: Python<'_>) -> PyResult<usize> {
        let inner = &mut self.inner;
        detached(py, move || Ok(inner.prune()))
    }

    fn mega_prune(&mut self, py: Python<'_>) -> PyResult<usize> {
        let inner = &mut self.inner;
        detached(py, move || Ok(inner.mega_prune()))
    }

    fn used_nodes<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<bool>> {
        PyArray1::from_vec(py, self.inner.used_nodes())
    }

    fn reset_activity(&mut self) {
        self.inner.reset_activity();
    }

    /// Copies of the edge arrays: (source, target, weight, activation, streak).
    #[allow(clippy::type_complexity)]
    fn edges<'py>(
        &self,
        py: Python<'py>,
    ) -> (
        Bound<'py, PyArray1<u32>>,
        Bound<'py, PyArray1<u32>>,
        Bound<'py, PyArray1<f64>>,
        Bound<'py, PyArray1<f64>>,
        Bound<'py, PyArray1<u32>>,
    ) {
        let e = self.inner.edges();
        (
            PyArray1::from_slice(py, &e.source),
            PyArray1::from_slice(py, &e.target),
            PyArray1::from_slice(py, &e.weight),
            PyArray1::from_slice(py, &e.activation),
            PyArray1::from_slice(py, &e.streak),
        )
    }

    fn set_weights(&mut self, py: Python<'_>, weights: PyReadonlyArray1<'_, f64>) -> PyResult<()> {
        let weights = slice(py, "weights", &weights)?;
        self.inner
            .set_weights(weights)
            .map_err(|e| to_python(py, e))
    }

    fn fired<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<bool>> {
        PyArray1::from_slice(py, self.inner.fired())
    }

    fn pool<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        PyArray1::from_slice(py, self.inner.pool())
    }

    /// The dynamic state besides the edges, as a dict of arrays and ints (for save/load).
    fn get_state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.state();
        let d = PyDict::new(py);
        d.set_item("pool", PyArray1::from_vec(py, s.pool))?;
        d.set_item("fired", PyArray1::from_vec(py, s.fired))?;
        d.set_item("rng_state", s.rng_state)?;
        d.set_item("steps", s.steps)?;
        d.set_item("frontier_nodes", PyArray1::from_vec(py, s.frontier_nodes))?;
        d.set_item(
            "frontier_signals",
            PyArray1::from_vec(py, s.frontier_signals),
        )?;
        d.set_item("visited", PyArray1::from_vec(py, s.visited))?;
        let no = self.inner.config().n_outputs;
        let rows = s.seen_patterns.len();
        let flat: Vec<bool> = s.seen_patterns.into_iter().flatten().collect();
        d.set_item(
            "seen_patterns",
            PyArray1::from_vec(py, flat).reshape([rows, no])?,
        )?;
        d.set_item("grown_total", s.grown_total)?;
        d.set_item("pruned_total", s.pruned_total)?;
        Ok(d)
    }

    fn set_state(&mut self, py: Python<'_>, state: &Bound<'_, PyDict>) -> PyResult<()> {
        let seen: numpy::PyReadonlyArray2<'_, bool> = item(py, state, "seen_patterns")?;
        let seen_patterns: Vec<Vec<bool>> = seen
            .as_array()
            .rows()
            .into_iter()
            .map(|r| r.to_vec())
            .collect();
        let pool: PyReadonlyArray1<'_, f64> = item(py, state, "pool")?;
        let fired: PyReadonlyArray1<'_, bool> = item(py, state, "fired")?;
        let nodes: PyReadonlyArray1<'_, u32> = item(py, state, "frontier_nodes")?;
        let signals: PyReadonlyArray1<'_, f64> = item(py, state, "frontier_signals")?;
        let visited: PyReadonlyArray1<'_, bool> = item(py, state, "visited")?;
        let state = State {
            pool: pool.as_array().to_vec(),
            fired: fired.as_array().to_vec(),
            rng_state: item(py, state, "rng_state")?,
            steps: item(py, state, "steps")?,
            frontier_nodes: nodes.as_array().to_vec(),
            frontier_signals: signals.as_array().to_vec(),
            visited: visited.as_array().to_vec(),
            seen_patterns,
            grown_total: item(py, state, "grown_total")?,
            pruned_total: item(py, state, "pruned_total")?,
        };
        self.inner.set_state(state).map_err(|e| to_python(py, e))
    }

    #[getter]
    fn n_edges(&self) -> usize {
        self.inner.n_edges()
    }

    #[getter]
    fn steps(&self) -> u64 {
        self.inner.steps()
    }

    #[getter]
    fn feedback_updates(&self) -> u64 {
        self.inner.feedback_updates()
    }

    #[getter]
    fn grown_total(&self) -> u64 {
        self.inner.grown_total()
    }

    #[getter]
    fn pruned_total(&self) -> u64 {
        self.inner.pruned_total()
    }
}
