//! The streaming loop: pacing, chunking, sending, end of stream.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{Config, Format, Mode, Pacing};
use crate::protocol::{self, EosReason, Header, ProtocolError, PROTOCOL_VERSION};
use crate::shutdown::Stopper;
use crate::transport::{Sent, Transport};
use crate::waves::FrameGen;

/// After a stop request, the remaining frames and the end-of-stream message get this long to be
/// queued (a PUSH socket with no reader would otherwise block forever).
pub const STOP_SEND_BUDGET: Duration = Duration::from_millis(300);
/// After a stop request, the socket lingers at most this long.
pub const STOP_LINGER_MS: u32 = 200;

/// Streaming failure (libzmq or encoding).
#[derive(Debug)]
pub enum RunError {
    /// libzmq refused a send.
    Zmq(zmq::Error),
    /// A message could not be encoded.
    Protocol(ProtocolError),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Zmq(e) => write!(f, "send failed: {e}"),
            RunError::Protocol(e) => write!(f, "encoding failed: {e}"),
        }
    }
}

impl std::error::Error for RunError {}

impl From<zmq::Error> for RunError {
    fn from(e: zmq::Error) -> Self {
        RunError::Zmq(e)
    }
}

impl From<ProtocolError> for RunError {
    fn from(e: ProtocolError) -> Self {
        RunError::Protocol(e)
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Frames handed to the socket (= `seq` of the end-of-stream message).
    pub frames: u64,
    /// Data messages handed to the socket.
    pub messages: u64,
    /// Frames generated but not sent: PUB refusals, or PUSH sends abandoned after a stop.
    pub unsent_frames: u64,
    /// Why it ended.
    pub reason: EosReason,
    /// Whether the end-of-stream message was queued (always false for seed-json).
    pub eos_sent: bool,
}

/// Current Unix-epoch time in seconds (0 if the clock is before 1970).
pub fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Seed taken from the clock when the config gives none.
pub fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32))
        .unwrap_or(0)
}

fn deadline_after(start: Instant, secs: f64) -> Option<Instant> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .and_then(|d| start.checked_add(d))
}

struct Sender<'a> {
    cfg: &'a Config,
    transport: &'a Transport,
    names: Vec<String>,
    dt: f64,
    t_start: f64,
    frames: u64,
    messages: u64,
    unsent: u64,
}

impl Sender<'_> {
    fn ts_of(&self, seq: u64) -> f64 {
        self.t_start + seq as f64 * self.dt
    }

    /// Sends `buf` (whole frames) and clears it. Returns false when the caller's `give_up`
    /// abandoned the send.
    fn send_frames(
        &mut self,
        buf: &mut Vec<f64>,
        give_up: &mut dyn FnMut() -> bool,
    ) -> Result<bool, RunError> {
        let width = self.names.len();
        if width == 0 || buf.is_empty() {
            buf.clear();
            return Ok(true);
        }
        let n_frames = (buf.len() / width) as u64;
        let seq = self.frames;
        let parts = match self.cfg.format {
            Format::Binary => {
                let header = Header {
                    v: PROTOCOL_VERSION,
                    seq,
                    ts: self.ts_of(seq),
                    dt: self.dt,
                    n_frames,
                    channels: self.names.clone(),
                    dtype: self.cfg.dtype,
                    eos: false,
                    reason: None,
                };
                protocol::encode(&self.cfg.topic, &header, buf)?
            }
            Format::SeedJson => {
                // chunk is 1 for seed-json (validated), so buf holds exactly one frame.
                protocol::encode_seed_json(&self.cfg.topic, self.ts_of(seq), &self.names, buf)?
            }
        };
        buf.clear();
        match self.transport.send(&parts, give_up)? {
            Sent::Queued => {
                self.frames += n_frames;
                self.messages += 1;
                Ok(true)
            }
            Sent::Dropped => {
                // The frames keep their numbers: receivers see the gap in `seq`.
                self.frames += n_frames;
                self.unsent += n_frames;
                Ok(true)
            }
            Sent::GaveUp => {
                self.unsent += n_frames;
                Ok(false)
            }
        }
    }

    fn send_eos(
        &mut self,
        reason: EosReason,
        give_up: &mut dyn FnMut() -> bool,
    ) -> Result<bool, RunError> {
        if self.cfg.format != Format::Binary {
            return Ok(false);
        }
        let header = Header {
            v: PROTOCOL_VERSION,
            seq: self.frames,
            ts: self.ts_of(self.frames),
            dt: self.dt,
            n_frames: 0,
            channels: self.names.clone(),
            dtype: self.cfg.dtype,
            eos: true,
            reason: Some(reason),
        };
        let parts = protocol::encode(&self.cfg.topic, &header, &[])?;
        Ok(self.transport.send(&parts, give_up)? == Sent::Queued)
    }
}

/// Streams frames according to `cfg` until `max_frames`, `duration` or a stop request, then sends
/// the end-of-stream message. Does not close the transport (see [`close_linger_ms`]).
pub fn run(
    cfg: &Config,
    seed: u64,
    transport: &Transport,
    stopper: &Stopper,
) -> Result<Summary, RunError> {
    let mut gen = FrameGen::new(&cfg.channels, seed);
    let width = gen.width();
    let dt = cfg.pacing.dt();
    let start = Instant::now();
    let mut out = Sender {
        cfg,
        transport,
        names: cfg.channel_names(),
        dt,
        t_start: epoch_now(),
        frames: 0,
        messages: 0,
        unsent: 0,
    };
    let mut buf: Vec<f64> = Vec::with_capacity(cfg.chunk.saturating_mul(width));
    let mut stop_deadline: Option<Instant> = None;

    let reason = loop {
        let k = gen.next_index();
        if cfg.max_frames.is_some_and(|m| k >= m) {
            break EosReason::MaxFrames;
        }
        match cfg.pacing {
            Pacing::Rate(rate) => {
                let due = k as f64 / rate;
                if cfg.duration.is_some_and(|d| due >= d) {
                    break EosReason::Duration;
                }
                if stopper.wait_until(deadline_after(start, due)) {
                    break EosReason::Signal;
                }
            }
            Pacing::AsFastAsPossible { .. } => {
                if cfg
                    .duration
                    .is_some_and(|d| start.elapsed().as_secs_f64() >= d)
                {
                    break EosReason::Duration;
                }
                if stopper.stopped() {
                    break EosReason::Signal;
                }
            }
        }
        gen.next_frame(&mut buf);
        if buf.len() >= cfg.chunk * width {
            let mut give_up = || stopper.stopped();
            if !out.send_frames(&mut buf, &mut give_up)? {
                stop_deadline = Some(Instant::now() + STOP_SEND_BUDGET);
                break EosReason::Signal;
            }
        }
    };

    // Bounded sends after a stop request; unbounded (but interruptible) at a normal end.
    let stopping = reason == EosReason::Signal;
    let deadline = stop_deadline.unwrap_or_else(|| Instant::now() + STOP_SEND_BUDGET);
    let mut give_up = || {
        if stopping {
            Instant::now() >= deadline
        } else {
            stopper.stopped()
        }
    };
    // A partial chunk (stop, max_frames or duration in the middle of a chunk) still goes out.
    if !buf.is_empty() {
        out.send_frames(&mut buf, &mut give_up)?;
    }
    let eos_sent = out.send_eos(reason, &mut give_up)?;
    Ok(Summary {
        frames: out.frames,
        messages: out.messages,
        unsent_frames: out.unsent,
        reason,
        eos_sent,
    })
}

/// Linger to use when closing after a run that ended for `reason`.
pub fn close_linger_ms(cfg: &Config, reason: EosReason) -> u32 {
    match reason {
        EosReason::Signal => cfg.linger_ms.min(STOP_LINGER_MS),
        _ => cfg.linger_ms,
    }
}

/// Human description of the pacing, for the startup line.
pub fn describe_rate(p: Pacing) -> String {
    match p {
        Pacing::Rate(r) => format!("{r}/s"),
        Pacing::AsFastAsPossible { dt } => format!("as-fast-as-possible(dt={dt})"),
    }
}

/// Mode name for messages.
pub fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Pub => "pub",
        Mode::Push => "push",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::protocol::decode;
    use std::path::Path;
    use std::sync::atomic::{AtomicU64, Ordering};

    static N: AtomicU64 = AtomicU64::new(0);

    fn inproc() -> String {
        format!("inproc://stream-test-{}", N.fetch_add(1, Ordering::SeqCst))
    }

    fn setup(text: &str) -> (Config, Transport, zmq::Socket) {
        let cfg = parse(text, Path::new(".")).expect("valid config");
        let ep = inproc();
        let t = Transport::bind(&ep, Mode::Push, cfg.hwm, 0).expect("bind");
        let pull = t.context().socket(zmq::PULL).expect("pull");
        pull.set_rcvtimeo(5000).expect("rcvtimeo");
        pull.connect(&ep).expect("connect");
        (cfg, t, pull)
    }

    #[test]
    fn chunks_seq_ts_and_eos() {
        let (cfg, t, pull) = setup(
            r#"{"mode": "push", "as_fast_as_possible": true, "rate": 4, "max_frames": 7,
                "chunk": 3, "dtype": "f32", "topic": "grp",
                "channels": [{"name": "saw", "offsetv": 0, "minv": 0, "maxv": 4,
                              "waves": [{"wave": "Sawtooth", "period": 4}]},
                             {"name": "k", "offsetv": 0,
                              "waves": [{"wave": "Pwm", "period": 1, "minv": 0, "maxv": 1}]}]}"#,
        );
        let (stopper, _h) = Stopper::new();
        let s = run(&cfg, 1, &t, &stopper).expect("run");
        assert_eq!(s.frames, 7);
        assert_eq!(s.messages, 3);
        assert_eq!(s.reason, EosReason::MaxFrames);
        assert!(s.eos_sent);
        let mut msgs = Vec::new();
        for _ in 0..4 {
            let parts = pull.recv_multipart(0).expect("recv");
            msgs.push(decode(&parts).expect("decode"));
        }
        assert_eq!(
            msgs.iter().map(|m| m.header.seq).collect::<Vec<_>>(),
            vec![0, 3, 6, 7]
        );
        assert_eq!(
            msgs.iter().map(|m| m.header.n_frames).collect::<Vec<_>>(),
            vec![3, 3, 1, 0]
        );
        assert!(msgs[3].header.eos && !msgs[2].header.eos);
        assert_eq!(msgs[3].header.reason, Some(EosReason::MaxFrames));
        assert_eq!(msgs[0].topic, b"grp");
        assert_eq!(msgs[0].header.dt, 0.25);
        let t0 = msgs[0].header.ts;
        assert!((msgs[1].header.ts - (t0 + 0.75)).abs() < 1e-6);
        // Values: saw = k mod 4, pwm(period 1) = 1 for even k.
        let all: Vec<f64> = msgs.iter().flat_map(|m| m.values.clone()).collect();
        assert_eq!(
            all,
            vec![0.0, 1.0, 1.0, 0.0, 2.0, 1.0, 3.0, 0.0, 0.0, 1.0, 1.0, 0.0, 2.0, 1.0]
        );
        t.close(0);
    }

    #[test]
    fn seed_json_frames_and_no_eos() {
        let (cfg, t, pull) = setup(
            r#"{"mode": "push", "format": "seed-json", "as_fast_as_possible": true,
                "max_frames": 2, "channel": "waitress", "offsetv": 100, "maxv": 10, "minv": 0,
                "waves": [{"wave": "Spike", "period": 2}]}"#,
        );
        let (stopper, _h) = Stopper::new();
        let s = run(&cfg, 0, &t, &stopper).expect("run");
        assert!(!s.eos_sent);
        for want in [110.0, 100.0] {
            let parts = pull.recv_multipart(0).expect("recv");
            assert_eq!(parts[0], b"waitress");
            assert_eq!(parts[1], b"feed");
            let f = protocol::decode_seed_json(&parts).expect("decode");
            assert_eq!(f.channels["waitress"], want);
            assert!(f.ts > 1.0e9);
        }
        pull.set_rcvtimeo(50).expect("rcvtimeo");
        assert!(
            pull.recv_multipart(0).is_err(),
            "no end-of-stream in seed-json"
        );
        t.close(0);
    }

    #[test]
    fn stop_request_ends_paced_stream_promptly() {
        let (cfg, t, pull) = setup(r#"{"mode": "push", "rate": 1, "chunk": 5}"#);
        let (stopper, h) = Stopper::new();
        // Frame 0 is due at once, frame 1 after a second: stop while waiting for it.
        let th = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            h.stop();
        });
        let t_run = Instant::now();
        let s = run(&cfg, 0, &t, &stopper).expect("run");
        th.join().expect("join");
        assert!(t_run.elapsed() < Duration::from_millis(900));
        assert_eq!(s.reason, EosReason::Signal);
        // The partial chunk (frame 0, unless the stop beat it) is flushed, then end of stream.
        assert!(s.frames <= 1);
        if s.frames == 1 {
            let m = decode(&pull.recv_multipart(0).expect("recv")).expect("decode");
            assert_eq!(
                (m.header.seq, m.header.n_frames, m.header.eos),
                (0, 1, false)
            );
        }
        let e = decode(&pull.recv_multipart(0).expect("recv")).expect("decode");
        assert!(e.header.eos);
        assert_eq!(e.header.seq, s.frames);
        assert_eq!(e.header.reason, Some(EosReason::Signal));
        t.close(0);
    }

    #[test]
    fn push_without_peer_gives_up_after_stop() {
        let cfg = parse(
            r#"{"mode": "push", "as_fast_as_possible": true}"#,
            Path::new("."),
        )
        .expect("valid");
        let t = Transport::bind(&inproc(), Mode::Push, 10, 0).expect("bind");
        let (stopper, h) = Stopper::new();
        h.stop();
        let t_run = Instant::now();
        let s = run(&cfg, 0, &t, &stopper).expect("run");
        assert_eq!(s.reason, EosReason::Signal);
        assert!(!s.eos_sent);
        assert!(t_run.elapsed() < Duration::from_secs(1));
        t.close(close_linger_ms(&cfg, s.reason));
    }

    #[test]
    fn duration_limits_paced_frames() {
        let (cfg, t, _pull) = setup(r#"{"mode": "push", "rate": 100, "duration": 0.05}"#);
        let (stopper, _h) = Stopper::new();
        let s = run(&cfg, 0, &t, &stopper).expect("run");
        assert_eq!(s.reason, EosReason::Duration);
        assert_eq!(s.frames, 5); // frames due at 0, .01, .02, .03, .04
        t.close(0);
    }
}
