//! The waitress feed wire format (see `waitress/PROTOCOL.md`, which is normative; this module
//! implements it). It lives in the core crate so that the server (`waitress`) and the Python
//! client (`rnnlab._native.decode_feed_v1`) share one implementation.
//!
//! Binary format, protocol version 1: a three-part ZeroMQ message
//! `[topic, header, payload]`:
//! - `topic`: UTF-8 bytes of the configured topic (default `waitress`);
//! - `header`: UTF-8 JSON object [`Header`];
//! - `payload`: `n_frames × len(channels)` little-endian `f32`/`f64`, frame-major.
//!
//! End of stream: a header with `"eos": true`, `n_frames` 0 and an empty payload.
//!
//! Seed format (`format: "seed-json"`): `[topic, "feed", {"ts": .., "channels": {name: value}}]`,
//! one frame per message, no end-of-stream message.

use std::fmt;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

/// Element type of the binary payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// IEEE-754 binary32, little-endian.
    F32,
    /// IEEE-754 binary64, little-endian.
    #[default]
    F64,
}

impl Dtype {
    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }

    /// Name used in the header and the config.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
        }
    }
}

/// Protocol version carried in every header (`v`).
pub const PROTOCOL_VERSION: u32 = 1;
/// Second part of a seed-json message.
pub const SEED_FEED_PART: &[u8] = b"feed";

/// Why the stream ended (header field `reason` of the end-of-stream message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EosReason {
    /// `max_frames` frames were sent.
    MaxFrames,
    /// `duration` seconds elapsed.
    Duration,
    /// SIGINT or SIGTERM.
    Signal,
}

impl EosReason {
    /// Name as sent in the header.
    pub fn name(self) -> &'static str {
        match self {
            EosReason::MaxFrames => "max_frames",
            EosReason::Duration => "duration",
            EosReason::Signal => "signal",
        }
    }
}

/// Message header (JSON, second part).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Protocol version, [`PROTOCOL_VERSION`].
    pub v: u32,
    /// Index of the first frame in this message (frames are numbered 0, 1, 2, … from the start of
    /// the stream). In the end-of-stream message: the total number of frames sent before it.
    pub seq: u64,
    /// Unix-epoch seconds (UTC) of the first frame: `t_start + seq·dt`.
    pub ts: f64,
    /// Nominal spacing between consecutive frames, seconds: frame `seq + i` has time `ts + i·dt`.
    pub dt: f64,
    /// Frames in the payload (0 in the end-of-stream message).
    pub n_frames: u64,
    /// Channel names = payload columns, in order.
    pub channels: Vec<String>,
    /// Payload element type.
    pub dtype: Dtype,
    /// True only in the end-of-stream message.
    #[serde(default)]
    pub eos: bool,
    /// Only in the end-of-stream message: why the stream ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<EosReason>,
}

/// A decoded binary message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// First part, as bytes.
    pub topic: Vec<u8>,
    /// Parsed header.
    pub header: Header,
    /// `n_frames × channels` values, frame-major, widened to f64.
    pub values: Vec<f64>,
}

impl Message {
    /// Values of frame `i` (one per channel).
    pub fn frame(&self, i: usize) -> Option<&[f64]> {
        let w = self.header.channels.len();
        self.values.get(i * w..(i + 1) * w)
    }
}

/// Encoding or decoding failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtocolError {}

fn perr(msg: impl Into<String>) -> ProtocolError {
    ProtocolError(msg.into())
}

/// Little-endian payload bytes for `values` in `dtype`.
pub fn encode_payload(values: &[f64], dtype: Dtype) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * dtype.size());
    match dtype {
        Dtype::F64 => {
            for v in values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        Dtype::F32 => {
            for v in values {
                out.extend_from_slice(&(*v as f32).to_le_bytes());
            }
        }
    }
    out
}

/// Values from little-endian payload bytes.
pub fn decode_payload(bytes: &[u8], dtype: Dtype) -> Result<Vec<f64>, ProtocolError> {
    let size = dtype.size();
    if !bytes.len().is_multiple_of(size) {
        return Err(perr(format!(
            "payload length {} is not a multiple of {size} ({})",
            bytes.len(),
            dtype.name()
        )));
    }
    Ok(match dtype {
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                f64::from_le_bytes(b)
            })
            .collect(),
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| {
                let mut b = [0u8; 4];
                b.copy_from_slice(c);
                f64::from(f32::from_le_bytes(b))
            })
            .collect(),
    })
}

/// Encodes a binary data or end-of-stream message. `values.len()` must equal
/// `header.n_frames × header.channels.len()`.
pub fn encode(topic: &str, header: &Header, values: &[f64]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let expected = (header.n_frames as u128) * (header.channels.len() as u128);
    if values.len() as u128 != expected {
        return Err(perr(format!(
            "{} values for {} frames × {} channels",
            values.len(),
            header.n_frames,
            header.channels.len()
        )));
    }
    let head = serde_json::to_vec(header).map_err(|e| perr(format!("header: {e}")))?;
    Ok(vec![
        topic.as_bytes().to_vec(),
        head,
        encode_payload(values, header.dtype),
    ])
}

/// Decodes a binary message and checks it against the protocol.
pub fn decode(parts: &[Vec<u8>]) -> Result<Message, ProtocolError> {
    if parts.len() != 3 {
        return Err(perr(format!(
            "expected 3 message parts [topic, header, payload], got {}",
            parts.len()
        )));
    }
    let (header, values) = decode_binary(&parts[1], &parts[2])?;
    Ok(Message {
        topic: parts[0].clone(),
        header,
        values,
    })
}

/// Decodes the header and payload parts of a binary message and checks them against the
/// protocol (version, payload length, empty end-of-stream message).
pub fn decode_binary(header: &[u8], payload: &[u8]) -> Result<(Header, Vec<f64>), ProtocolError> {
    let header: Header =
        serde_json::from_slice(header).map_err(|e| perr(format!("header: {e}")))?;
    if header.v != PROTOCOL_VERSION {
        return Err(perr(format!(
            "unsupported protocol version {} (this decoder speaks {PROTOCOL_VERSION})",
            header.v
        )));
    }
    let values = decode_payload(payload, header.dtype)?;
    let expected = (header.n_frames as u128) * (header.channels.len() as u128);
    if values.len() as u128 != expected {
        return Err(perr(format!(
            "payload holds {} values, header says {} frames × {} channels",
            values.len(),
            header.n_frames,
            header.channels.len()
        )));
    }
    if header.eos && header.n_frames != 0 {
        return Err(perr("end-of-stream message with n_frames != 0"));
    }
    Ok((header, values))
}

/// `{"ts": .., "channels": {name: value, ...}}` with the channels in configuration order.
struct SeedBody<'a> {
    ts: f64,
    names: &'a [String],
    values: &'a [f64],
}

struct SeedChannels<'a> {
    names: &'a [String],
    values: &'a [f64],
}

impl Serialize for SeedChannels<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.names.len()))?;
        for (n, v) in self.names.iter().zip(self.values) {
            m.serialize_entry(n, v)?;
        }
        m.end()
    }
}

impl Serialize for SeedBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("ts", &self.ts)?;
        m.serialize_entry(
            "channels",
            &SeedChannels {
                names: self.names,
                values: self.values,
            },
        )?;
        m.end()
    }
}

/// Encodes one frame in the seed's format: `[topic, "feed", {"ts": .., "channels": {..}}]`.
pub fn encode_seed_json(
    topic: &str,
    ts: f64,
    names: &[String],
    values: &[f64],
) -> Result<Vec<Vec<u8>>, ProtocolError> {
    if names.len() != values.len() {
        return Err(perr(format!(
            "{} values for {} channels",
            values.len(),
            names.len()
        )));
    }
    let body = serde_json::to_vec(&SeedBody { ts, names, values })
        .map_err(|e| perr(format!("seed-json body: {e}")))?;
    Ok(vec![
        topic.as_bytes().to_vec(),
        SEED_FEED_PART.to_vec(),
        body,
    ])
}

/// A decoded seed-json frame.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SeedFrame {
    /// Unix-epoch seconds.
    pub ts: f64,
    /// Channel name → value.
    pub channels: std::collections::BTreeMap<String, f64>,
}

/// Decodes a seed-json message.
pub fn decode_seed_json(parts: &[Vec<u8>]) -> Result<SeedFrame, ProtocolError> {
    if parts.len() != 3 || parts[1] != SEED_FEED_PART {
        return Err(perr("expected [topic, \"feed\", json]"));
    }
    serde_json::from_slice(&parts[2]).map_err(|e| perr(format!("seed-json body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(n_frames: u64, dtype: Dtype) -> Header {
        Header {
            v: PROTOCOL_VERSION,
            seq: 40,
            ts: 1_700_000_000.25,
            dt: 0.1,
            n_frames,
            channels: vec!["a".into(), "b".into()],
            dtype,
            eos: false,
            reason: None,
        }
    }

    #[test]
    fn round_trip_f64_exact() {
        let h = header(3, Dtype::F64);
        let values = [1.0, -2.5, 3.25e10, f64::MIN_POSITIVE, 0.1, -0.0];
        let parts = encode("waitress", &h, &values).expect("encode");
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], b"waitress");
        assert_eq!(parts[2].len(), 6 * 8);
        // Little-endian, frame-major: first 8 bytes are frame 0, channel a.
        assert_eq!(parts[2][..8], 1.0f64.to_le_bytes());
        assert_eq!(parts[2][8..16], (-2.5f64).to_le_bytes());
        let m = decode(&parts).expect("decode");
        assert_eq!(m.header, h);
        assert_eq!(m.values, values);
        assert_eq!(m.frame(1), Some(&[3.25e10, f64::MIN_POSITIVE][..]));
        assert_eq!(m.frame(3), None);
    }

    #[test]
    fn round_trip_f32_rounds() {
        let h = header(1, Dtype::F32);
        let parts = encode("t", &h, &[0.1, 2.0]).expect("encode");
        assert_eq!(parts[2].len(), 8);
        let m = decode(&parts).expect("decode");
        assert_eq!(m.values, vec![f64::from(0.1f32), 2.0]);
    }

    #[test]
    fn header_json_fields() {
        let parts = encode("waitress", &header(1, Dtype::F64), &[1.0, 2.0]).expect("encode");
        let v: serde_json::Value = serde_json::from_slice(&parts[1]).expect("json");
        assert_eq!(v["v"], 1);
        assert_eq!(v["seq"], 40);
        assert_eq!(v["ts"], 1_700_000_000.25);
        assert_eq!(v["dt"], 0.1);
        assert_eq!(v["n_frames"], 1);
        assert_eq!(v["channels"], serde_json::json!(["a", "b"]));
        assert_eq!(v["dtype"], "f64");
        assert_eq!(v["eos"], false);
        assert!(v.get("reason").is_none());
    }

    #[test]
    fn eos_message() {
        let mut h = header(0, Dtype::F32);
        h.eos = true;
        h.reason = Some(EosReason::Signal);
        let parts = encode("waitress", &h, &[]).expect("encode");
        assert!(parts[2].is_empty());
        let v: serde_json::Value = serde_json::from_slice(&parts[1]).expect("json");
        assert_eq!(v["eos"], true);
        assert_eq!(v["reason"], "signal");
        let m = decode(&parts).expect("decode");
        assert!(m.header.eos);
        assert_eq!(m.header.reason, Some(EosReason::Signal));
    }

    #[test]
    fn decode_rejects_bad_messages() {
        let good = encode("t", &header(1, Dtype::F64), &[1.0, 2.0]).expect("encode");
        assert!(decode(&good[..2]).is_err());
        let mut short = good.clone();
        short[2].truncate(8);
        assert!(decode(&short).is_err());
        let mut odd = good.clone();
        odd[2].push(0);
        assert!(decode(&odd).is_err());
        let mut v2 = good.clone();
        v2[1] =
            br#"{"v":2,"seq":0,"ts":0,"dt":0.1,"n_frames":0,"channels":[],"dtype":"f64"}"#.to_vec();
        assert!(decode(&v2)
            .expect_err("v2")
            .0
            .contains("unsupported protocol version 2"));
        // Unknown header keys are ignored (forward compatibility); `eos` may be absent.
        let mut extra = good.clone();
        extra[1] = br#"{"v":1,"seq":0,"ts":0,"dt":0.1,"n_frames":1,"channels":["a","b"],"dtype":"f64","future":1}"#.to_vec();
        assert!(!decode(&extra).expect("extra keys").header.eos);
        assert!(encode("t", &header(2, Dtype::F64), &[1.0]).is_err());
    }

    #[test]
    fn seed_json_shape() {
        let names = vec!["waitress".to_string(), "b".to_string()];
        let parts = encode_seed_json("waitress", 12.5, &names, &[100.0, -1.5]).expect("encode");
        assert_eq!(parts[0], b"waitress");
        assert_eq!(parts[1], b"feed");
        assert_eq!(
            std::str::from_utf8(&parts[2]).expect("utf8"),
            r#"{"ts":12.5,"channels":{"waitress":100.0,"b":-1.5}}"#
        );
        let f = decode_seed_json(&parts).expect("decode");
        assert_eq!(f.ts, 12.5);
        assert_eq!(f.channels["waitress"], 100.0);
        assert!(encode_seed_json("w", 0.0, &names, &[1.0]).is_err());
    }
}
