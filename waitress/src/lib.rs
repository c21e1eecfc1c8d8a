//! `waitress`: the rnnlab feed server. Streams synthetic (or CSV-replayed) multi-channel time
//! series over ZeroMQ, paced in real time or as fast as possible.
//!
//! Modules: [`config`] (JSON → validated config), [`waves`] (shapes and the frame generator),
//! [`rng`] (seeded streams), [`protocol`] (wire format, PROTOCOL.md), [`transport`] (ZeroMQ
//! socket), [`stream`] (the loop), [`shutdown`] (signals), [`cli`] (arguments).

pub mod cli;
pub mod config;
pub use rnnlab_core::feed_protocol as protocol;
pub mod rng;
pub mod shutdown;
pub mod stream;
pub mod transport;
pub mod waves;

/// Exit status: success, including a clean stop on SIGINT/SIGTERM.
pub const EXIT_OK: u8 = 0;
/// Exit status: runtime failure (send error, cannot write the `-g` file, ...).
pub const EXIT_RUNTIME: u8 = 1;
/// Exit status: usage error or invalid config.
pub const EXIT_CONFIG: u8 = 2;
/// Exit status: the endpoint cannot be bound (e.g. address already in use).
pub const EXIT_BIND: u8 = 3;

/// The commented default config written by `waitress -g`.
pub const DEFAULT_CONFIG: &str = include_str!("default.config.json");

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn generated_config_is_valid_and_its_top_level_values_are_the_defaults() {
        let generated = config::parse(DEFAULT_CONFIG, Path::new(".")).expect("valid");
        let empty = config::parse("{}", Path::new(".")).expect("valid");
        assert_eq!(generated.endpoint, empty.endpoint);
        assert_eq!(generated.mode, empty.mode);
        assert_eq!(generated.hwm, empty.hwm);
        assert_eq!(generated.linger_ms, empty.linger_ms);
        assert_eq!(generated.topic, empty.topic);
        assert_eq!(generated.format, empty.format);
        assert_eq!(generated.dtype, empty.dtype);
        assert_eq!(generated.chunk, empty.chunk);
        assert_eq!(generated.pacing, empty.pacing);
        assert_eq!(generated.max_frames, empty.max_frames);
        assert_eq!(generated.duration, empty.duration);
        assert_eq!(generated.seed, empty.seed);
        assert_eq!(generated.channels.len(), 2);
        assert_eq!(generated.channels[0].waves.len(), 4);
        // Every documented top-level field appears in it, so it documents all of them.
        let raw: serde_json::Value = serde_json::from_str(DEFAULT_CONFIG).expect("json");
        for key in [
            "pub_to",
            "mode",
            "hwm",
            "linger_ms",
            "topic",
            "format",
            "dtype",
            "chunk",
            "rate",
            "as_fast_as_possible",
            "max_frames",
            "duration",
            "seed",
            "step",
            "offsetv",
            "minv",
            "maxv",
            "noise",
            "noise_mode",
            "noise_dist",
            "channels",
        ] {
            assert!(raw.get(key).is_some(), "{key} missing");
            assert!(
                raw.get(format!("//{key}")).is_some(),
                "//{key} comment missing"
            );
        }
    }

    #[test]
    fn shipped_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("waitress.config.json");
        let c = config::load(&path).expect("shipped config is valid");
        assert_eq!(c.channel_names(), vec!["sine", "pulses"]);
        assert_eq!(c.endpoint, "tcp://127.0.0.1:1201");
        assert_eq!(c.seed, Some(42));
        assert!(c.channels.iter().all(|ch| ch.noise.amount > 0.0));
    }
}
