//! The one error type of the core. The binding maps each variant to a Python exception class
//! (`rnnlab.ShapeError`, `rnnlab.ConfigError`, ...) in a single place.

use thiserror::Error;

/// Everything that can go wrong in a core call. Messages name the offending argument and say
/// what was expected, because they reach the user unchanged.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CoreError {
    /// An array has the wrong shape or length.
    #[error("{field}: expected {expected}, got {got}")]
    Shape {
        field: &'static str,
        expected: String,
        got: String,
    },
    /// A setting or value is outside its allowed range.
    #[error("{field}: {message}")]
    Config {
        field: &'static str,
        message: String,
    },
}

impl CoreError {
    pub fn shape(field: &'static str, expected: impl Into<String>, got: impl Into<String>) -> Self {
        CoreError::Shape {
            field,
            expected: expected.into(),
            got: got.into(),
        }
    }

    pub fn config(field: &'static str, message: impl Into<String>) -> Self {
        CoreError::Config {
            field,
            message: message.into(),
        }
    }
}

pub type CoreResult<T> = Result<T, CoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_field() {
        let e = CoreError::shape("x", "[B, T, 2]", "[1, 5, 3]");
        assert_eq!(e.to_string(), "x: expected [B, T, 2], got [1, 5, 3]");
        let e = CoreError::config("tau", "every entry must be > 0");
        assert_eq!(e.to_string(), "tau: every entry must be > 0");
    }
}
