//! Fast decoding of waitress binary messages for `rnnlab.feed` (protocol v1, PROTOCOL.md).
//!
//! A message is a few hundred bytes, so this neither releases the GIL (that would cost more
//! than the work) nor reports why a message is malformed: it returns `None`, and the Python
//! decoder (`rnnlab.feed.protocol`), which is the reference for what is accepted, decodes the
//! message again and names the problem.

use std::panic::{catch_unwind, AssertUnwindSafe};

use numpy::ndarray::Array2;
use numpy::{PyArray1, PyArray2, ToPyArray};
use pyo3::prelude::*;
use rnnlab_core::feed_protocol::{decode_binary, Header};

/// What `decode_feed_v1` hands to Python: seq, ts, dt, channels, eos, reason, times, values.
type Decoded<'py> = (
    u64,
    f64,
    f64,
    Vec<String>,
    bool,
    Option<&'static str>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray2<f64>>,
);

/// Decode the header and payload parts of a binary v1 message; `None` if it is malformed.
#[pyfunction]
pub fn decode_feed_v1<'py>(py: Python<'py>, header: &[u8], payload: &[u8]) -> Option<Decoded<'py>> {
    let decoded = catch_unwind(AssertUnwindSafe(|| decode_binary(header, payload)));
    let (head, values): (Header, Vec<f64>) = decoded.ok()?.ok()?;
    let rows = usize::try_from(head.n_frames).ok()?;
    let columns = head.channels.len();
    let values = Array2::from_shape_vec((rows, columns), values).ok()?;
    let times: Vec<f64> = (0..rows).map(|i| head.ts + head.dt * i as f64).collect();
    Some((
        head.seq,
        head.ts,
        head.dt,
        head.channels,
        head.eos,
        head.reason.map(|reason| reason.name()),
        times.to_pyarray(py),
        values.to_pyarray(py),
    ))
}
