//! Configuration: JSON text → validated [`Config`].
//!
//! Loading happens in three steps:
//! 1. the text is parsed as JSON and every object key starting with `//` is removed, at any depth
//!    (the comment convention: `"//": "..."`, `"//rate": "..."`);
//! 2. the result is deserialized into the raw structs below with `deny_unknown_fields`, through
//!    `serde_path_to_error`, so an unknown or mistyped field is reported with its path;
//! 3. [`validate`] checks ranges and cross-field rules, fills in defaults, loads CSV files and
//!    returns a [`Config`] in which every value is known to be usable (no panics later).
//!
//! Every error is a [`ConfigError`] carrying the field path, e.g. `channels[0].waves[1].period`.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use rnnlab_core::feed_protocol::Dtype;

use crate::waves::{Shape, WaveCfg};

/// Defaults, shared by the loader, `-g` and the README.
pub mod defaults {
    /// ZeroMQ endpoint the socket binds to (the seed's).
    pub const PUB_TO: &str = "tcp://127.0.0.1:1201";
    /// Topic (first message part) = channel-group name.
    pub const TOPIC: &str = "waitress";
    /// Send high-water mark, in messages (libzmq's own default).
    pub const HWM: u32 = 1000;
    /// Linger when closing the socket at a normal end, in milliseconds.
    pub const LINGER_MS: u32 = 1000;
    /// Frames per second (the seed's committed `sleep: 0.1`).
    pub const RATE: f64 = 10.0;
    /// Frames per message.
    pub const CHUNK: u64 = 1;
    /// Increment of the wave argument per frame.
    pub const STEP: f64 = 1.0;
    /// Constant added to the sum of a channel's waves.
    pub const OFFSETV: f64 = 100.0;
    /// Low level of a channel's waves (offset of the sine).
    pub const MINV: f64 = 0.0;
    /// High level of a channel's waves (amplitude of the sine).
    pub const MAXV: f64 = 10.0;
    /// Chirp start / end frequency, cycles per unit of the wave argument.
    pub const CHIRP_F0: f64 = 0.02;
    /// See [`CHIRP_F0`].
    pub const CHIRP_F1: f64 = 0.2;
    /// SpikeDecay: default time constant = period / this.
    pub const DECAY_DIVISOR: f64 = 5.0;
    /// RandomWalk: default per-frame standard deviation = (maxv − minv) / this.
    pub const WALK_SIGMA_DIVISOR: f64 = 20.0;
}

/// Largest absolute value accepted for any numeric wave/channel parameter; keeps every sum of
/// waves finite.
pub const MAX_ABS: f64 = 1e100;
/// Largest accepted `rate` (frames per second).
pub const MAX_RATE: f64 = 1e9;
/// Smallest accepted `rate` (one frame every ~11.6 days).
pub const MIN_RATE: f64 = 1e-6;
/// Largest accepted `chunk` × number of channels (values held in one message).
pub const MAX_VALUES_PER_MESSAGE: u64 = 16 * 1024 * 1024;
/// Largest accepted number of channels.
pub const MAX_CHANNELS: usize = 4096;
/// Largest accepted `linger_ms`.
pub const MAX_LINGER_MS: u32 = 60_000;

// ---------------------------------------------------------------------------------------------
// Enumerations shared with the protocol.

/// Socket type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// PUB: fan-out to any number of subscribers; drops for slow ones (the seed's behaviour).
    #[default]
    Pub,
    /// PUSH: one consumer at a time gets each message; blocks at the high-water mark.
    Push,
}

/// Message format on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Format {
    /// `[topic, JSON header, binary payload]`, protocol v1 (PROTOCOL.md).
    #[default]
    #[serde(rename = "binary")]
    Binary,
    /// The seed's `["waitress", "feed", {"ts": .., "channels": {..}}]`, one frame per message.
    #[serde(rename = "seed-json")]
    SeedJson,
}

/// How noise combines with the clean value `v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseMode {
    /// `v · (1 + noise · u)` (the seed's intent).
    #[default]
    Multiplicative,
    /// `v + noise · u`.
    Additive,
}

/// Distribution of the unit noise sample `u`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseDist {
    /// `u ~ U(-1, 1)`.
    #[default]
    Uniform,
    /// `u ~ N(0, 1)`.
    Gaussian,
}

/// Wave kinds, spelled as in the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum WaveKind {
    /// `maxv·sin(2π·x/period) + minv`; period 0: `maxv·sin(x) + minv`.
    #[default]
    Sinusoidal,
    /// `maxv` when `floor(x) mod period == 0`, else `minv`.
    Spike,
    /// Spike train with exponential decay between spikes.
    SpikeDecay,
    /// Square wave: `maxv` when `floor(x/period)` is even, else `minv`.
    Pwm,
    /// Ramp from `minv` to `maxv` over each period.
    Sawtooth,
    /// Seeded Gaussian random walk reflected into `[minv, maxv]`.
    RandomWalk,
    /// Linear chirp `f0 → f1` repeated every period.
    Chirp,
    /// Replay of one CSV column, looping.
    Csv,
}

impl WaveKind {
    /// Name as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            WaveKind::Sinusoidal => "Sinusoidal",
            WaveKind::Spike => "Spike",
            WaveKind::SpikeDecay => "SpikeDecay",
            WaveKind::Pwm => "Pwm",
            WaveKind::Sawtooth => "Sawtooth",
            WaveKind::RandomWalk => "RandomWalk",
            WaveKind::Chirp => "Chirp",
            WaveKind::Csv => "Csv",
        }
    }
}

/// CSV column selector: 0-based index or header name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    /// 0-based column index.
    Index(usize),
    /// Column name, looked up in the header line.
    Name(String),
}

impl<'de> Deserialize<'de> for Column {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ColumnVisitor;
        impl Visitor<'_> for ColumnVisitor {
            type Value = Column;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a column index (integer >= 0) or a column name (string)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Column, E> {
                usize::try_from(v)
                    .map(Column::Index)
                    .map_err(|_| E::custom("column index too large"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Column, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Column, E> {
                Ok(Column::Name(v.to_owned()))
            }
        }
        d.deserialize_any(ColumnVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Raw (as written) configuration.

/// One wave as written in the config. Only `wave` and the fields that kind uses may be given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWave {
    /// Wave kind (default `Sinusoidal`).
    pub wave: Option<WaveKind>,
    /// Added to the wave argument `k·step` (default 0).
    pub offset: Option<f64>,
    /// Period in units of the wave argument (= frames when step is 1). Default 0.
    pub period: Option<f64>,
    /// Per-wave override of the channel's `minv`.
    pub minv: Option<f64>,
    /// Per-wave override of the channel's `maxv`.
    pub maxv: Option<f64>,
    /// SpikeDecay time constant (default period / 5).
    pub decay: Option<f64>,
    /// RandomWalk per-frame standard deviation.
    pub sigma: Option<f64>,
    /// RandomWalk value of frame 0.
    pub start: Option<f64>,
    /// Chirp start frequency (cycles per unit of the argument).
    pub f0: Option<f64>,
    /// Chirp end frequency.
    pub f1: Option<f64>,
    /// Csv file, relative to the config file's directory.
    pub path: Option<String>,
    /// Csv column (index or name, default 0).
    pub column: Option<Column>,
    /// Csv delimiter, one character (default ",").
    pub delimiter: Option<String>,
}

/// One channel as written in `channels`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannel {
    /// Channel name (default `ch<index>`).
    pub name: Option<String>,
    /// Increment of the wave argument per frame.
    pub step: Option<f64>,
    /// Constant added to the sum of the waves.
    pub offsetv: Option<f64>,
    /// Low level of the waves.
    pub minv: Option<f64>,
    /// High level of the waves.
    pub maxv: Option<f64>,
    /// Noise amplitude (0 = none).
    pub noise: Option<f64>,
    /// `multiplicative` or `additive`.
    pub noise_mode: Option<NoiseMode>,
    /// `uniform` or `gaussian`.
    pub noise_dist: Option<NoiseDist>,
    /// The waves summed into this channel.
    pub waves: Option<Vec<RawWave>>,
}

/// The whole file as written. See the README for the meaning of each field.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub pub_to: Option<String>,
    pub mode: Option<Mode>,
    pub hwm: Option<u32>,
    pub linger_ms: Option<u32>,
    pub topic: Option<String>,
    pub format: Option<Format>,
    pub dtype: Option<Dtype>,
    pub chunk: Option<u64>,
    pub rate: Option<f64>,
    pub sleep: Option<f64>,
    pub as_fast_as_possible: Option<bool>,
    pub max_frames: Option<u64>,
    pub duration: Option<f64>,
    pub seed: Option<u64>,
    // Seed single-channel form, and defaults inherited by every entry of `channels`.
    pub channel: Option<String>,
    pub step: Option<f64>,
    pub offsetv: Option<f64>,
    pub minv: Option<f64>,
    pub maxv: Option<f64>,
    pub noise: Option<f64>,
    pub noise_mode: Option<NoiseMode>,
    pub noise_dist: Option<NoiseDist>,
    pub waves: Option<Vec<RawWave>>,
    pub channels: Option<Vec<RawChannel>>,
}

// ---------------------------------------------------------------------------------------------
// Validated configuration.

/// Frame pacing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// Frame `k` is due `k / rate` seconds after the start.
    Rate(f64),
    /// No waiting; timestamps still advance by the nominal `dt` per frame.
    AsFastAsPossible {
        /// Nominal frame spacing in seconds (1 / rate).
        dt: f64,
    },
}

impl Pacing {
    /// Nominal seconds between frames (header `dt`).
    pub fn dt(self) -> f64 {
        match self {
            Pacing::Rate(r) => 1.0 / r,
            Pacing::AsFastAsPossible { dt } => dt,
        }
    }
}

/// Noise of one channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noise {
    /// Amplitude: half-width of the uniform or standard deviation of the Gaussian (0 = none).
    pub amount: f64,
    /// How it combines with the clean value.
    pub mode: NoiseMode,
    /// Distribution of the unit sample.
    pub dist: NoiseDist,
}

/// One validated channel.
#[derive(Debug, Clone)]
pub struct ChannelCfg {
    /// Unique, non-empty name.
    pub name: String,
    /// Increment of the wave argument per frame.
    pub step: f64,
    /// Constant added to the sum of the waves.
    pub offsetv: f64,
    /// Noise applied to the final value.
    pub noise: Noise,
    /// Waves summed into the channel.
    pub waves: Vec<WaveCfg>,
}

/// A validated configuration: every value is in range.
#[derive(Debug, Clone)]
pub struct Config {
    /// Endpoint to bind.
    pub endpoint: String,
    /// Socket type.
    pub mode: Mode,
    /// Send high-water mark (0 = unlimited).
    pub hwm: u32,
    /// Linger at a normal end, ms.
    pub linger_ms: u32,
    /// First message part.
    pub topic: String,
    /// Wire format.
    pub format: Format,
    /// Payload element type.
    pub dtype: Dtype,
    /// Frames per message (always 1 for seed-json).
    pub chunk: usize,
    /// Pacing.
    pub pacing: Pacing,
    /// Stop after this many frames.
    pub max_frames: Option<u64>,
    /// Stop after this many seconds.
    pub duration: Option<f64>,
    /// Seed; `None` = taken from the clock at start (and printed).
    pub seed: Option<u64>,
    /// Channels, in order (= payload column order).
    pub channels: Vec<ChannelCfg>,
}

impl Config {
    /// Channel names in payload order.
    pub fn channel_names(&self) -> Vec<String> {
        self.channels.iter().map(|c| c.name.clone()).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Errors.

/// A configuration error: the field path (empty for the file as a whole) and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Path of the offending field, e.g. `channels[0].waves[1].period`.
    pub path: String,
    /// What is wrong and, where possible, what is allowed.
    pub message: String,
}

impl ConfigError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------------------------------------
// Loading.

/// True for keys that are comments (`"//"`, `"//rate"`, ...).
pub fn is_comment_key(key: &str) -> bool {
    key.starts_with("//")
}

/// Removes comment keys from every object, recursively.
pub fn strip_comments(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !is_comment_key(k));
            for v in map.values_mut() {
                strip_comments(v);
            }
        }
        Value::Array(items) => {
            for v in items {
                strip_comments(v);
            }
        }
        _ => {}
    }
}

/// Parses JSON text into a [`RawConfig`] (comments stripped, unknown fields rejected).
pub fn parse_raw(text: &str) -> Result<RawConfig, ConfigError> {
    let mut value: Value = serde_json::from_str(text).map_err(|e| {
        ConfigError::new(
            "",
            format!(
                "invalid JSON at line {} column {}: {}",
                e.line(),
                e.column(),
                e
            ),
        )
    })?;
    if !value.is_object() {
        return Err(ConfigError::new(
            "",
            "the config must be a JSON object ({ ... })",
        ));
    }
    strip_comments(&mut value);
    serde_path_to_error::deserialize::<_, RawConfig>(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ConfigError::new(path, e.inner().to_string())
    })
}

/// Parses and validates config text; relative CSV paths resolve against `base_dir`.
pub fn parse(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
    let raw = parse_raw(text)?;
    validate(&raw, base_dir)
}

/// Reads, parses and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    parse(&text, &base)
}

// ---------------------------------------------------------------------------------------------
// Validation.

fn num(path: &str, v: f64) -> Result<f64, ConfigError> {
    if !v.is_finite() || v.abs() > MAX_ABS {
        return Err(ConfigError::new(
            path,
            format!("must be a finite number with |value| <= {MAX_ABS:e}, got {v}"),
        ));
    }
    Ok(v)
}

fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

/// Channel-level values inherited from the top level.
#[derive(Debug, Clone, Copy)]
struct ChannelDefaults {
    step: f64,
    offsetv: f64,
    minv: f64,
    maxv: f64,
    noise: f64,
    noise_mode: NoiseMode,
    noise_dist: NoiseDist,
}

/// Checks every rule and produces a [`Config`].
pub fn validate(raw: &RawConfig, base_dir: &Path) -> Result<Config, ConfigError> {
    // Socket.
    let endpoint = raw
        .pub_to
        .clone()
        .unwrap_or_else(|| defaults::PUB_TO.into());
    if endpoint.trim().is_empty() || !endpoint.contains("://") {
        return Err(ConfigError::new(
            "pub_to",
            format!(
                "must be a ZeroMQ endpoint such as \"tcp://127.0.0.1:1201\" \
                 (\"tcp://127.0.0.1:*\" picks a free port), got {endpoint:?}"
            ),
        ));
    }
    check_tcp_port(&endpoint)?;
    let mode = raw.mode.unwrap_or_default();
    let hwm = raw.hwm.unwrap_or(defaults::HWM);
    if hwm > i32::MAX as u32 {
        return Err(ConfigError::new(
            "hwm",
            format!("must be at most {}, got {hwm}", i32::MAX),
        ));
    }
    let linger_ms = raw.linger_ms.unwrap_or(defaults::LINGER_MS);
    if linger_ms > MAX_LINGER_MS {
        return Err(ConfigError::new(
            "linger_ms",
            format!("must be at most {MAX_LINGER_MS}, got {linger_ms}"),
        ));
    }
    let topic = raw.topic.clone().unwrap_or_else(|| defaults::TOPIC.into());
    if topic.is_empty() {
        return Err(ConfigError::new("topic", "must not be empty"));
    }
    let format = raw.format.unwrap_or_default();
    let dtype = raw.dtype.unwrap_or_default();

    // Pacing.
    if raw.rate.is_some() && raw.sleep.is_some() {
        return Err(ConfigError::new(
            "sleep",
            "give either `rate` (frames/s) or the seed's `sleep` (seconds per frame), not both",
        ));
    }
    let rate = match (raw.rate, raw.sleep) {
        (Some(r), _) => {
            if !(r.is_finite() && (MIN_RATE..=MAX_RATE).contains(&r)) {
                return Err(ConfigError::new(
                    "rate",
                    format!(
                        "must be between {MIN_RATE:e} and {MAX_RATE:e} frames/s, got {r} \
                         (for no pacing use \"as_fast_as_possible\": true)"
                    ),
                ));
            }
            r
        }
        (None, Some(s)) => {
            if !(s.is_finite() && (1.0 / MAX_RATE..=1.0 / MIN_RATE).contains(&s)) {
                return Err(ConfigError::new(
                    "sleep",
                    format!(
                        "must be between {:e} and {:e} seconds, got {s} \
                         (for no pacing use \"as_fast_as_possible\": true)",
                        1.0 / MAX_RATE,
                        1.0 / MIN_RATE
                    ),
                ));
            }
            1.0 / s
        }
        (None, None) => defaults::RATE,
    };
    let pacing = if raw.as_fast_as_possible.unwrap_or(false) {
        Pacing::AsFastAsPossible { dt: 1.0 / rate }
    } else {
        Pacing::Rate(rate)
    };

    let chunk_raw = raw.chunk.unwrap_or(defaults::CHUNK);
    if chunk_raw == 0 {
        return Err(ConfigError::new(
            "chunk",
            "must be at least 1 (frames per message)",
        ));
    }
    if format == Format::SeedJson && chunk_raw != 1 {
        return Err(ConfigError::new(
            "chunk",
            format!("format \"seed-json\" sends one frame per message; chunk must be 1, got {chunk_raw}"),
        ));
    }

    let duration = match raw.duration {
        Some(d) if !(d.is_finite() && d >= 0.0) => {
            return Err(ConfigError::new(
                "duration",
                format!("must be >= 0 seconds, got {d}"),
            ))
        }
        other => other,
    };

    // Channel defaults (top level).
    let top = ChannelDefaults {
        step: num("step", raw.step.unwrap_or(defaults::STEP))?,
        offsetv: num("offsetv", raw.offsetv.unwrap_or(defaults::OFFSETV))?,
        minv: num("minv", raw.minv.unwrap_or(defaults::MINV))?,
        maxv: num("maxv", raw.maxv.unwrap_or(defaults::MAXV))?,
        noise: noise_amount("noise", raw.noise)?,
        noise_mode: raw.noise_mode.unwrap_or_default(),
        noise_dist: raw.noise_dist.unwrap_or_default(),
    };

    let channels = match &raw.channels {
        None => {
            // The seed's single-channel form.
            let name = raw.channel.clone().unwrap_or_else(|| "waitress".into());
            if name.is_empty() {
                return Err(ConfigError::new("channel", "must not be empty"));
            }
            let single = RawChannel {
                name: Some(name),
                waves: raw.waves.clone(),
                ..RawChannel::default()
            };
            vec![channel(&single, 0, "", &top, base_dir)?]
        }
        Some(list) => {
            if raw.channel.is_some() {
                return Err(ConfigError::new(
                    "channel",
                    "give either the seed's `channel` + `waves` (one channel) or `channels`, not both",
                ));
            }
            if raw.waves.is_some() {
                return Err(ConfigError::new(
                    "waves",
                    "with `channels`, put the waves inside each channel (channels[i].waves)",
                ));
            }
            if list.is_empty() {
                return Err(ConfigError::new("channels", "needs at least one channel"));
            }
            if list.len() > MAX_CHANNELS {
                return Err(ConfigError::new(
                    "channels",
                    format!("at most {MAX_CHANNELS} channels, got {}", list.len()),
                ));
            }
            let mut out = Vec::with_capacity(list.len());
            let mut seen = HashSet::new();
            for (i, rc) in list.iter().enumerate() {
                let prefix = format!("channels[{i}]");
                let ch = channel(rc, i, &prefix, &top, base_dir)?;
                if !seen.insert(ch.name.clone()) {
                    return Err(ConfigError::new(
                        join(&prefix, "name"),
                        format!("duplicate channel name {:?}", ch.name),
                    ));
                }
                out.push(ch);
            }
            out
        }
    };

    let values = chunk_raw.saturating_mul(channels.len() as u64);
    if values > MAX_VALUES_PER_MESSAGE {
        return Err(ConfigError::new(
            "chunk",
            format!(
                "chunk × channels = {values} values per message; at most {MAX_VALUES_PER_MESSAGE}"
            ),
        ));
    }
    let chunk = usize::try_from(chunk_raw)
        .map_err(|_| ConfigError::new("chunk", format!("too large: {chunk_raw}")))?;

    Ok(Config {
        endpoint,
        mode,
        hwm,
        linger_ms,
        topic,
        format,
        dtype,
        chunk,
        pacing,
        max_frames: raw.max_frames,
        duration,
        seed: raw.seed,
        channels,
    })
}

/// libzmq silently wraps out-of-range TCP ports (99999 binds 34463): reject them here.
fn check_tcp_port(endpoint: &str) -> Result<(), ConfigError> {
    let Some(rest) = endpoint.strip_prefix("tcp://") else {
        return Ok(());
    };
    let port = rest.rsplit_once(':').map(|(_, p)| p);
    match port {
        Some("*") => Ok(()),
        Some(p) if p.parse::<u16>().is_ok_and(|n| n > 0) => Ok(()),
        _ => Err(ConfigError::new(
            "pub_to",
            format!(
                "a tcp endpoint needs a port 1..65535 or * (any free port): \
                 \"tcp://HOST:PORT\", got {endpoint:?}"
            ),
        )),
    }
}

fn noise_amount(path: &str, v: Option<f64>) -> Result<f64, ConfigError> {
    let n = num(path, v.unwrap_or(0.0))?;
    if n < 0.0 {
        return Err(ConfigError::new(
            path,
            format!("must be >= 0 (noise amplitude), got {n}"),
        ));
    }
    Ok(n)
}

fn channel(
    rc: &RawChannel,
    index: usize,
    prefix: &str,
    top: &ChannelDefaults,
    base_dir: &Path,
) -> Result<ChannelCfg, ConfigError> {
    let p = |f: &str| join(prefix, f);
    let name = rc.name.clone().unwrap_or_else(|| format!("ch{index}"));
    if name.is_empty() {
        return Err(ConfigError::new(p("name"), "must not be empty"));
    }
    let step = match rc.step {
        Some(s) => num(&p("step"), s)?,
        None => top.step,
    };
    let offsetv = match rc.offsetv {
        Some(v) => num(&p("offsetv"), v)?,
        None => top.offsetv,
    };
    let minv = match rc.minv {
        Some(v) => num(&p("minv"), v)?,
        None => top.minv,
    };
    let maxv = match rc.maxv {
        Some(v) => num(&p("maxv"), v)?,
        None => top.maxv,
    };
    let noise = Noise {
        amount: match rc.noise {
            Some(_) => noise_amount(&p("noise"), rc.noise)?,
            None => top.noise,
        },
        mode: rc.noise_mode.unwrap_or(top.noise_mode),
        dist: rc.noise_dist.unwrap_or(top.noise_dist),
    };
    let default_waves = [RawWave::default()];
    let raw_waves: &[RawWave] = match &rc.waves {
        Some(w) => w,
        None => &default_waves,
    };
    let mut waves = Vec::with_capacity(raw_waves.len());
    for (j, rw) in raw_waves.iter().enumerate() {
        let wp = join(prefix, &format!("waves[{j}]"));
        waves.push(wave(rw, &wp, minv, maxv, base_dir)?);
    }
    Ok(ChannelCfg {
        name,
        step,
        offsetv,
        noise,
        waves,
    })
}

/// Field names of [`RawWave`] that each kind accepts besides `wave`.
fn allowed_fields(kind: WaveKind) -> &'static [&'static str] {
    match kind {
        WaveKind::Sinusoidal | WaveKind::Spike | WaveKind::Pwm | WaveKind::Sawtooth => {
            &["offset", "period", "minv", "maxv"]
        }
        WaveKind::SpikeDecay => &["offset", "period", "minv", "maxv", "decay"],
        WaveKind::RandomWalk => &["minv", "maxv", "sigma", "start"],
        WaveKind::Chirp => &["offset", "period", "minv", "maxv", "f0", "f1"],
        WaveKind::Csv => &["offset", "path", "column", "delimiter"],
    }
}

fn given_fields(rw: &RawWave) -> Vec<&'static str> {
    let mut v = Vec::new();
    let mut add = |given: bool, name: &'static str| {
        if given {
            v.push(name);
        }
    };
    add(rw.offset.is_some(), "offset");
    add(rw.period.is_some(), "period");
    add(rw.minv.is_some(), "minv");
    add(rw.maxv.is_some(), "maxv");
    add(rw.decay.is_some(), "decay");
    add(rw.sigma.is_some(), "sigma");
    add(rw.start.is_some(), "start");
    add(rw.f0.is_some(), "f0");
    add(rw.f1.is_some(), "f1");
    add(rw.path.is_some(), "path");
    add(rw.column.is_some(), "column");
    add(rw.delimiter.is_some(), "delimiter");
    v
}

fn wave(
    rw: &RawWave,
    prefix: &str,
    ch_minv: f64,
    ch_maxv: f64,
    base_dir: &Path,
) -> Result<WaveCfg, ConfigError> {
    let p = |f: &str| join(prefix, f);
    let kind = rw.wave.unwrap_or_default();
    let allowed = allowed_fields(kind);
    for f in given_fields(rw) {
        if !allowed.contains(&f) {
            return Err(ConfigError::new(
                p(f),
                format!(
                    "not used by {} waves (they accept: wave, {})",
                    kind.name(),
                    allowed.join(", ")
                ),
            ));
        }
    }
    let offset = num(&p("offset"), rw.offset.unwrap_or(0.0))?;
    let period = num(&p("period"), rw.period.unwrap_or(0.0))?;
    let minv = match rw.minv {
        Some(v) => num(&p("minv"), v)?,
        None => ch_minv,
    };
    let maxv = match rw.maxv {
        Some(v) => num(&p("maxv"), v)?,
        None => ch_maxv,
    };
    let need_positive_period = |what: &str| -> Result<f64, ConfigError> {
        if period > 0.0 {
            Ok(period)
        } else {
            Err(ConfigError::new(
                p("period"),
                format!("{} needs period > 0 ({what}), got {period}", kind.name()),
            ))
        }
    };
    let shape = match kind {
        WaveKind::Sinusoidal => {
            if period < 0.0 {
                return Err(ConfigError::new(
                    p("period"),
                    format!(
                        "Sinusoidal needs period >= 0 (0 = one radian per unit of argument), got {period}"
                    ),
                ));
            }
            Shape::Sinusoidal { period }
        }
        WaveKind::Spike => {
            let period = need_positive_period("frames between spikes")?;
            if period.fract() != 0.0 {
                return Err(ConfigError::new(
                    p("period"),
                    format!("Spike needs an integer period (frames between spikes), got {period}"),
                ));
            }
            Shape::Spike { period }
        }
        WaveKind::SpikeDecay => {
            let period = need_positive_period("distance between spikes")?;
            let decay = match rw.decay {
                Some(d) => {
                    let d = num(&p("decay"), d)?;
                    if d <= 0.0 {
                        return Err(ConfigError::new(
                            p("decay"),
                            format!("must be > 0 (exponential time constant), got {d}"),
                        ));
                    }
                    d
                }
                None => period / defaults::DECAY_DIVISOR,
            };
            Shape::SpikeDecay { period, decay }
        }
        WaveKind::Pwm => Shape::Pwm {
            period: need_positive_period("half the square-wave cycle")?,
        },
        WaveKind::Sawtooth => Shape::Sawtooth {
            period: need_positive_period("length of one ramp")?,
        },
        WaveKind::Chirp => {
            let period = need_positive_period("length of one sweep")?;
            let f0 = num(&p("f0"), rw.f0.unwrap_or(defaults::CHIRP_F0))?;
            let f1 = num(&p("f1"), rw.f1.unwrap_or(defaults::CHIRP_F1))?;
            Shape::Chirp { period, f0, f1 }
        }
        WaveKind::RandomWalk => {
            let (lo, hi) = if minv <= maxv {
                (minv, maxv)
            } else {
                (maxv, minv)
            };
            let sigma = match rw.sigma {
                Some(s) => {
                    let s = num(&p("sigma"), s)?;
                    if s < 0.0 {
                        return Err(ConfigError::new(
                            p("sigma"),
                            format!("must be >= 0, got {s}"),
                        ));
                    }
                    s
                }
                None => (hi - lo) / defaults::WALK_SIGMA_DIVISOR,
            };
            let start = match rw.start {
                Some(s) => {
                    let s = num(&p("start"), s)?;
                    if s < lo || s > hi {
                        return Err(ConfigError::new(
                            p("start"),
                            format!("must lie in [minv, maxv] = [{lo}, {hi}], got {s}"),
                        ));
                    }
                    s
                }
                None => lo + (hi - lo) / 2.0,
            };
            Shape::RandomWalk {
                sigma,
                start,
                lo,
                hi,
            }
        }
        WaveKind::Csv => {
            let Some(rel) = rw.path.as_deref() else {
                return Err(ConfigError::new(
                    p("path"),
                    "Csv waves need `path` (CSV file, relative to the config file)",
                ));
            };
            let column = rw.column.clone().unwrap_or(Column::Index(0));
            let delimiter = match rw.delimiter.as_deref() {
                None => ',',
                Some(d) => {
                    let mut it = d.chars();
                    match (it.next(), it.next()) {
                        (Some(c), None) if c != '"' && c != '\n' && c != '\r' => c,
                        _ => {
                            return Err(ConfigError::new(
                                p("delimiter"),
                                format!(
                                "must be exactly one character (e.g. \",\" or \"\\t\"), got {d:?}"
                            ),
                            ))
                        }
                    }
                }
            };
            let file = base_dir.join(rel);
            let data =
                load_csv(&file, &column, delimiter).map_err(|m| ConfigError::new(p("path"), m))?;
            Shape::Csv {
                data: Arc::from(data),
                source: file.display().to_string(),
            }
        }
    };
    Ok(WaveCfg {
        kind,
        shape,
        offset,
        minv,
        maxv,
    })
}

/// Loads one numeric column of a CSV file.
///
/// Blank lines and lines starting with `#` are skipped. Cells are trimmed and may be wrapped in
/// double quotes (no embedded delimiters). With a column name, the first remaining line is the
/// header. With an index, the first line is taken as a header when its cell is not a number.
pub fn load_csv(path: &Path, column: &Column, delimiter: char) -> Result<Vec<f64>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read CSV file {}: {e}", path.display()))?;
    let mut index = match column {
        Column::Index(i) => Some(*i),
        Column::Name(_) => None,
    };
    let mut data = Vec::new();
    let mut first = true;
    for (n, line) in text.lines().enumerate() {
        let lineno = n + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cells: Vec<&str> = line
            .split(delimiter)
            .map(|c| c.trim().trim_matches('"').trim())
            .collect();
        if first {
            first = false;
            match column {
                Column::Name(name) => {
                    let pos = cells.iter().position(|c| c == name).ok_or_else(|| {
                        format!(
                            "{}: column {name:?} not in the header line {lineno} (columns: {})",
                            path.display(),
                            cells.join(", ")
                        )
                    })?;
                    index = Some(pos);
                    continue;
                }
                Column::Index(i) => {
                    if let Some(cell) = cells.get(*i) {
                        if cell.parse::<f64>().is_err() {
                            continue; // header line
                        }
                    }
                }
            }
        }
        let Some(i) = index else {
            return Err(format!("{}: no header line", path.display()));
        };
        let cell = cells.get(i).ok_or_else(|| {
            format!(
                "{} line {lineno}: has {} column(s), column index {i} requested",
                path.display(),
                cells.len()
            )
        })?;
        let v: f64 = cell
            .parse()
            .map_err(|_| format!("{} line {lineno}: {cell:?} is not a number", path.display()))?;
        if !v.is_finite() || v.abs() > MAX_ABS {
            return Err(format!(
                "{} line {lineno}: {cell:?} is not a finite number with |value| <= {MAX_ABS:e}",
                path.display()
            ));
        }
        data.push(v);
    }
    if data.is_empty() {
        return Err(format!("{}: no data rows", path.display()));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Config {
        match parse(text, Path::new(".")) {
            Ok(c) => c,
            Err(e) => panic!("expected a valid config, got: {e}"),
        }
    }

    fn err(text: &str) -> ConfigError {
        match parse(text, Path::new(".")) {
            Ok(_) => panic!("expected an error for {text}"),
            Err(e) => e,
        }
    }

    #[test]
    fn empty_object_is_all_defaults() {
        let c = ok("{}");
        assert_eq!(c.endpoint, defaults::PUB_TO);
        assert_eq!(c.mode, Mode::Pub);
        assert_eq!(c.hwm, 1000);
        assert_eq!(c.topic, "waitress");
        assert_eq!(c.format, Format::Binary);
        assert_eq!(c.dtype, Dtype::F64);
        assert_eq!(c.chunk, 1);
        assert_eq!(c.pacing, Pacing::Rate(10.0));
        assert_eq!(c.max_frames, None);
        assert_eq!(c.seed, None);
        assert_eq!(c.channels.len(), 1);
        let ch = &c.channels[0];
        assert_eq!(ch.name, "waitress");
        assert_eq!(ch.step, 1.0);
        assert_eq!(ch.offsetv, 100.0);
        assert_eq!(ch.noise.amount, 0.0);
        assert_eq!(ch.waves.len(), 1);
        assert_eq!(ch.waves[0].kind, WaveKind::Sinusoidal);
        assert_eq!(ch.waves[0].shape, Shape::Sinusoidal { period: 0.0 });
    }

    #[test]
    fn unknown_field_is_named_with_its_path() {
        let e = err(r#"{"rate": 5, "nosie": 0.1}"#);
        assert_eq!(e.path, "nosie");
        assert!(e.message.contains("unknown field `nosie`"), "{e}");
        let e = err(
            r#"{"channels": [{"name": "a", "waves": [{"wave": "Spike", "period": 2, "perod": 3}]}]}"#,
        );
        assert_eq!(e.path, "channels[0].waves[0].perod");
        assert!(e.to_string().contains("unknown field `perod`"), "{e}");
    }

    #[test]
    fn period_zero_is_an_error_with_path() {
        for kind in ["Spike", "SpikeDecay", "Pwm", "Sawtooth", "Chirp"] {
            let text = format!(
                r#"{{"channels": [{{"name": "a", "waves": [{{"wave": "Sinusoidal"}}, {{"wave": "{kind}", "period": 0}}]}}]}}"#
            );
            let e = err(&text);
            assert_eq!(e.path, "channels[0].waves[1].period", "{kind}: {e}");
            assert!(e.message.contains("period > 0"), "{e}");
        }
        // Absent period defaults to 0, which is also rejected, and the seed form names `waves[i]`.
        let e = err(r#"{"waves": [{"wave": "Pwm", "offset": 1}]}"#);
        assert_eq!(e.path, "waves[0].period");
        let e = err(r#"{"waves": [{"wave": "Spike", "period": 2.5}]}"#);
        assert!(e.message.contains("integer"), "{e}");
    }

    #[test]
    fn bad_mode_lists_allowed_values() {
        let e = err(r#"{"mode": "pull"}"#);
        assert_eq!(e.path, "mode");
        assert!(
            e.message.contains("`pub`") && e.message.contains("`push`"),
            "{e}"
        );
        let e = err(r#"{"format": "msgpack"}"#);
        assert!(
            e.message.contains("`binary`") && e.message.contains("`seed-json`"),
            "{e}"
        );
        let e = err(r#"{"waves": [{"wave": "Square"}]}"#);
        assert_eq!(e.path, "waves[0].wave");
        assert!(e.message.contains("`Sawtooth`"), "{e}");
        let e = err(r#"{"dtype": "f16"}"#);
        assert!(e.message.contains("`f32`"), "{e}");
    }

    #[test]
    fn comments_are_ignored_everywhere() {
        let c = ok(r#"{"//": "top", "//rate": "x", "rate": 20,
                     "channels": [{"//": "c", "name": "a", "waves": [{"//": "w", "wave": "Pwm", "period": 3}]}]}"#);
        assert_eq!(c.pacing, Pacing::Rate(20.0));
        assert_eq!(c.channels[0].waves[0].shape, Shape::Pwm { period: 3.0 });
    }

    #[test]
    fn field_of_another_kind_is_rejected() {
        let e = err(r#"{"waves": [{"wave": "Spike", "period": 3, "decay": 1}]}"#);
        assert_eq!(e.path, "waves[0].decay");
        assert!(e.message.contains("not used by Spike"), "{e}");
    }

    #[test]
    fn seed_config_loads_with_seed_meaning() {
        // The seed's committed waitress.cfg.json and its `-g` output.
        let c = ok(
            r#"{"pub_to": "tcp://127.0.0.1:1201", "channel": "waitress", "sleep": 0.1,
                     "step": 1.0, "offsetv": 100.0, "minv": 0.0, "maxv": 10.0, "noise": 0.0,
                     "waves": [{"wave": "Sinusoidal", "offset": 0.0, "period": 0}]}"#,
        );
        assert_eq!(c.pacing, Pacing::Rate(10.0));
        assert_eq!(c.channels.len(), 1);
        assert_eq!(c.channels[0].name, "waitress");
        assert_eq!(c.mode, Mode::Pub);
        let g = ok(
            r#"{"pub_to": "tcp://127.0.0.1:1201", "channel": "waitress", "sleep": 1.0,
                     "step": 1.0, "offsetv": 100.0, "minv": 0.0, "maxv": 10.0, "noise": 0.0,
                     "waves": [{"wave": "Sinusoidal", "offset": 0.0, "period": 0},
                               {"wave": "Spike", "offset": 5.0, "period": 10},
                               {"wave": "SpikeDecay", "offset": 10.0, "period": 8},
                               {"wave": "Pwm", "offset": 1.0, "period": 12}]}"#,
        );
        assert_eq!(g.pacing, Pacing::Rate(1.0));
        assert_eq!(g.channels[0].waves.len(), 4);
    }

    #[test]
    fn cross_field_rules() {
        assert_eq!(err(r#"{"rate": 10, "sleep": 0.1}"#).path, "sleep");
        assert_eq!(err(r#"{"rate": 0}"#).path, "rate");
        assert_eq!(err(r#"{"sleep": 0}"#).path, "sleep");
        assert_eq!(err(r#"{"chunk": 0}"#).path, "chunk");
        assert_eq!(err(r#"{"format": "seed-json", "chunk": 4}"#).path, "chunk");
        assert_eq!(err(r#"{"channel": "a", "channels": [{}]}"#).path, "channel");
        assert_eq!(err(r#"{"waves": [], "channels": [{}]}"#).path, "waves");
        assert_eq!(err(r#"{"channels": []}"#).path, "channels");
        assert_eq!(
            err(r#"{"channels": [{"name": "a"}, {"name": "a"}]}"#).path,
            "channels[1].name"
        );
        assert_eq!(err(r#"{"noise": -1}"#).path, "noise");
        assert_eq!(
            err(r#"{"channels": [{"noise": -1}]}"#).path,
            "channels[0].noise"
        );
        assert_eq!(err(r#"{"pub_to": "localhost"}"#).path, "pub_to");
        assert_eq!(err(r#"{"pub_to": "tcp://127.0.0.1:99999"}"#).path, "pub_to");
        assert_eq!(err(r#"{"pub_to": "tcp://127.0.0.1"}"#).path, "pub_to");
        assert_eq!(
            ok(r#"{"pub_to": "tcp://[::1]:*"}"#).endpoint,
            "tcp://[::1]:*"
        );
        assert_eq!(ok(r#"{"pub_to": "ipc:///tmp/w"}"#).endpoint, "ipc:///tmp/w");
        assert_eq!(err(r#"{"rate": 1e-300}"#).path, "rate");
        assert_eq!(err(r#"{"hwm": -1}"#).path, "hwm");
        assert_eq!(err(r#"{"duration": -1}"#).path, "duration");
        assert_eq!(err(r#"{"waves": [{"wave": "Csv"}]}"#).path, "waves[0].path");
        assert_eq!(err("[1, 2]").path, "");
        assert!(err("{\"rate\": ").message.contains("line 1"));
    }

    #[test]
    fn channels_inherit_top_level_values() {
        let c = ok(
            r#"{"offsetv": 5, "maxv": 2, "noise": 0.5, "noise_mode": "additive",
                     "channels": [{"name": "a"}, {"name": "b", "offsetv": 1, "noise_dist": "gaussian"}]}"#,
        );
        assert_eq!(c.channels[0].offsetv, 5.0);
        assert_eq!(c.channels[0].waves[0].maxv, 2.0);
        assert_eq!(c.channels[0].noise.mode, NoiseMode::Additive);
        assert_eq!(c.channels[1].offsetv, 1.0);
        assert_eq!(c.channels[1].noise.amount, 0.5);
        assert_eq!(c.channels[1].noise.dist, NoiseDist::Gaussian);
        let c = ok(r#"{"channels": [{}, {}]}"#);
        assert_eq!(c.channel_names(), vec!["ch0", "ch1"]);
    }

    #[test]
    fn pacing_options() {
        assert_eq!(ok(r#"{"sleep": 0.5}"#).pacing, Pacing::Rate(2.0));
        assert_eq!(
            ok(r#"{"as_fast_as_possible": true, "rate": 100}"#).pacing,
            Pacing::AsFastAsPossible { dt: 0.01 }
        );
        assert_eq!(
            ok(r#"{"as_fast_as_possible": true}"#).pacing,
            Pacing::AsFastAsPossible { dt: 0.1 }
        );
        let c = ok(r#"{"max_frames": 7, "duration": 1.5, "seed": 4}"#);
        assert_eq!(
            (c.max_frames, c.duration, c.seed),
            (Some(7), Some(1.5), Some(4))
        );
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let d =
            std::env::temp_dir().join(format!("waitress-cfg-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn csv_column_by_name_and_index() {
        let dir = temp_dir("csv");
        std::fs::write(
            dir.join("d.csv"),
            "# comment\ntime,price\n0,1.5\n1,\"2.5\"\n\n2,3.5\n",
        )
        .expect("write");
        let by_name = load_csv(&dir.join("d.csv"), &Column::Name("price".into()), ',');
        assert_eq!(by_name, Ok(vec![1.5, 2.5, 3.5]));
        let by_index = load_csv(&dir.join("d.csv"), &Column::Index(0), ',');
        assert_eq!(by_index, Ok(vec![0.0, 1.0, 2.0]));
        let missing = load_csv(&dir.join("d.csv"), &Column::Name("volume".into()), ',');
        assert!(missing.is_err_and(|m| m.contains("volume")));
        let wide = load_csv(&dir.join("d.csv"), &Column::Index(5), ',');
        assert!(wide.is_err_and(|m| m.contains("column index 5")));
        std::fs::write(dir.join("bad.csv"), "1\n2\nx\n").expect("write");
        let bad = load_csv(&dir.join("bad.csv"), &Column::Index(0), ',');
        assert!(bad.is_err_and(|m| m.contains("line 3")));

        // Relative path resolves against the config's directory.
        let c = parse(
            r#"{"channels": [{"name": "p", "waves": [{"wave": "Csv", "path": "d.csv", "column": "price"}]}]}"#,
            &dir,
        )
        .expect("valid");
        match &c.channels[0].waves[0].shape {
            Shape::Csv { data, .. } => assert_eq!(&data[..], &[1.5, 2.5, 3.5]),
            other => panic!("unexpected {other:?}"),
        }
        let e = parse(r#"{"waves": [{"wave": "Csv", "path": "nope.csv"}]}"#, &dir)
            .expect_err("missing file");
        assert_eq!(e.path, "waves[0].path");
        let e = parse(
            r#"{"waves": [{"wave": "Csv", "path": "d.csv", "column": -1}]}"#,
            &dir,
        )
        .expect_err("negative column");
        assert_eq!(e.path, "waves[0].column");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
