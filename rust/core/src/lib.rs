//! `rnnlab-core`: the pure-Rust kernels behind rnnlab.
//!
//! Nothing here knows about Python. The binding crate (`rust/python`) converts arrays and errors
//! at the boundary; everything else (integrators, the adjoint backward pass, optimisers) lives
//! here and is tested with `cargo test`.

pub mod ctrnn;
pub mod error;
pub mod feed_protocol;
pub mod float_env;
pub mod graphnet;
pub mod linalg;
pub mod microcircuit;
pub mod optim;
pub mod real;
pub mod scratch_pool;

pub use error::{CoreError, CoreResult};
pub use real::Real;
