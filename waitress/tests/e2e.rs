//! End-to-end tests of the real binary over loopback TCP.
//!
//! Each server binds `tcp://127.0.0.1:*` (a free port chosen by the kernel) and the test reads the
//! real endpoint from the startup line. Every wait is bounded; nothing relies on sleeping.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use waitress::protocol::{decode, decode_seed_json, EosReason, Message};

const BIN: &str = env!("CARGO_BIN_EXE_waitress");

static COUNTER: AtomicU64 = AtomicU64::new(0);

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "waitress-e2e-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Server {
    child: Child,
    endpoint: String,
    stderr: PathBuf,
    _dir: TempDir,
}

impl Server {
    /// Starts the binary on `config` and waits (bounded) for its startup line.
    fn start(config: &str) -> Server {
        let dir = TempDir::new();
        let cfg = dir.write("cfg.json", config);
        let stderr = dir.0.join("stderr.txt");
        let err_file = std::fs::File::create(&stderr).expect("stderr file");
        let mut child = Command::new(BIN)
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::piped())
            .stderr(err_file)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn waitress");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("no startup line within 20 s");
            }
        };
        let endpoint = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("endpoint="))
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let _ = child.kill();
                let err = std::fs::read_to_string(&stderr).unwrap_or_default();
                panic!("startup line without endpoint: {line:?}; stderr: {err}")
            });
        assert!(line.contains("channels="), "{line}");
        assert!(line.contains("mode="), "{line}");
        assert!(line.contains("rate="), "{line}");
        Server {
            child,
            endpoint,
            stderr,
            _dir: dir,
        }
    }

    fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits at most `limit` for the process to exit.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            if t.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "waitress did not exit within {limit:?}; stderr: {}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn pull(ctx: &zmq::Context, endpoint: &str) -> zmq::Socket {
    let s = ctx.socket(zmq::PULL).expect("pull socket");
    s.set_rcvtimeo(5000).expect("rcvtimeo");
    s.set_linger(0).expect("linger");
    s.connect(endpoint).expect("connect");
    s
}

fn recv(sock: &zmq::Socket) -> Message {
    let parts = sock.recv_multipart(0).expect("message within 5 s");
    decode(&parts).expect("valid protocol message")
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run waitress")
}

#[test]
fn push_stream_values_seq_and_clean_sigterm() {
    let mut server = Server::start(
        r#"{"pub_to": "tcp://127.0.0.1:*", "mode": "push", "rate": 200, "chunk": 2, "seed": 7,
            "channels": [
              {"name": "saw", "offsetv": 0, "minv": 0, "maxv": 4,
               "waves": [{"wave": "Sawtooth", "period": 4}]},
              {"name": "spk", "offsetv": 10, "minv": 0, "maxv": 1,
               "waves": [{"wave": "Spike", "period": 3}]}]}"#,
    );
    let ctx = zmq::Context::new();
    let sock = pull(&ctx, &server.endpoint);
    let mut next_seq = 0u64;
    for _ in 0..5 {
        let m = recv(&sock);
        assert_eq!(m.topic, b"waitress");
        assert_eq!(m.header.v, 1);
        assert_eq!(m.header.seq, next_seq);
        assert_eq!(m.header.n_frames, 2);
        assert_eq!(m.header.channels, vec!["saw", "spk"]);
        assert!(!m.header.eos);
        assert_eq!(m.header.dt, 0.005);
        for i in 0..2 {
            let k = next_seq + i;
            let frame = m.frame(i as usize).expect("frame");
            assert_eq!(frame[0], (k % 4) as f64, "saw at frame {k}");
            let spike = if k.is_multiple_of(3) { 11.0 } else { 10.0 };
            assert_eq!(frame[1], spike, "spk at frame {k}");
        }
        next_seq += 2;
    }
    server.signal(libc::SIGTERM);
    let t = Instant::now();
    // PUSH loses nothing: everything up to the end-of-stream message arrives, in order.
    let eos = loop {
        let m = recv(&sock);
        assert_eq!(m.header.seq, next_seq, "no gap in seq");
        if m.header.eos {
            break m;
        }
        next_seq += m.header.n_frames;
        assert!(next_seq < 100_000, "no end of stream");
    };
    assert_eq!(eos.header.n_frames, 0);
    assert_eq!(eos.header.reason, Some(EosReason::Signal));
    let status = server.wait(Duration::from_secs(2));
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(status.code(), Some(0), "stderr: {}", server.stderr_text());
    assert!(server.stderr_text().contains("stopped (signal)"));
}

#[test]
fn push_without_peer_exits_promptly_on_sigterm() {
    let mut server = Server::start(
        r#"{"pub_to": "tcp://127.0.0.1:*", "mode": "push", "as_fast_as_possible": true,
            "hwm": 10, "linger_ms": 60000}"#,
    );
    server.signal(libc::SIGTERM);
    let t = Instant::now();
    let status = server.wait(Duration::from_secs(2));
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(status.code(), Some(0), "stderr: {}", server.stderr_text());
}

#[test]
fn pub_seed_json_and_sigint() {
    let mut server = Server::start(
        r#"{"pub_to": "tcp://127.0.0.1:*", "format": "seed-json", "rate": 100,
            "channel": "waitress", "offsetv": 100, "minv": 0, "maxv": 10,
            "waves": [{"wave": "Sinusoidal", "offset": 0, "period": 0}]}"#,
    );
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).expect("sub");
    sub.set_rcvtimeo(5000).expect("rcvtimeo");
    sub.set_linger(0).expect("linger");
    sub.set_subscribe(b"waitress").expect("subscribe");
    sub.connect(&server.endpoint).expect("connect");
    // PUB drops until the subscription reaches the server; the first messages that arrive are
    // whatever frame is current, so check the format and the value range (100 + 10·sin).
    for _ in 0..3 {
        let parts = sub.recv_multipart(0).expect("seed-json frame within 5 s");
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], b"waitress");
        assert_eq!(parts[1], b"feed");
        let f = decode_seed_json(&parts).expect("seed json");
        let v = f.channels["waitress"];
        assert!((90.0..=110.0).contains(&v), "{v}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        assert!((f.ts - now).abs() < 60.0, "ts {} is Unix time", f.ts);
    }
    server.signal(libc::SIGINT);
    let status = server.wait(Duration::from_secs(2));
    assert_eq!(status.code(), Some(0), "stderr: {}", server.stderr_text());
}

#[test]
fn max_frames_ends_with_eos_and_exit_0() {
    let mut server = Server::start(
        r#"{"pub_to": "tcp://127.0.0.1:*", "mode": "push", "as_fast_as_possible": true,
            "max_frames": 10, "chunk": 4, "dtype": "f32", "topic": "grp", "rate": 50,
            "channels": [{"name": "a", "offsetv": 0.5, "minv": 0, "maxv": 2,
                          "waves": [{"wave": "Pwm", "period": 1}]}]}"#,
    );
    let ctx = zmq::Context::new();
    let sock = pull(&ctx, &server.endpoint);
    let msgs: Vec<Message> = (0..4).map(|_| recv(&sock)).collect();
    assert_eq!(
        msgs.iter()
            .map(|m| (m.header.seq, m.header.n_frames, m.header.eos))
            .collect::<Vec<_>>(),
        vec![(0, 4, false), (4, 4, false), (8, 2, false), (10, 0, true)]
    );
    assert_eq!(msgs[3].header.reason, Some(EosReason::MaxFrames));
    assert!(msgs.iter().all(|m| m.topic == b"grp"));
    let values: Vec<f64> = msgs.iter().flat_map(|m| m.values.clone()).collect();
    assert_eq!(
        values,
        vec![2.5, 0.5, 2.5, 0.5, 2.5, 0.5, 2.5, 0.5, 2.5, 0.5]
    );
    let t0 = msgs[0].header.ts;
    assert!((msgs[2].header.ts - (t0 + 8.0 * 0.02)).abs() < 1e-6);
    let status = server.wait(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "stderr: {}", server.stderr_text());
}

#[test]
fn port_in_use_exits_3() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = holder.local_addr().expect("addr").port();
    let dir = TempDir::new();
    let cfg = dir.write(
        "cfg.json",
        &format!(r#"{{"pub_to": "tcp://127.0.0.1:{port}"}}"#),
    );
    let out = Command::new(BIN)
        .arg("-f")
        .arg(&cfg)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {err}");
    assert!(
        err.contains("cannot bind") && err.contains("in use"),
        "{err}"
    );
    drop(holder);
}

#[test]
fn invalid_configs_exit_2_naming_the_field() {
    let dir = TempDir::new();
    let cases = [
        (
            r#"{"channels": [{"name": "a", "waves": [{"wave": "Sinusoidal"}, {"wave": "Spike", "period": 0}]}]}"#,
            "channels[0].waves[1].period",
        ),
        (r#"{"rate": 10, "nosie": 1}"#, "unknown field `nosie`"),
        (r#"{"mode": "pull"}"#, "expected `pub` or `push`"),
        ("{not json", "invalid JSON"),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let cfg = dir.write(&format!("bad{i}.json"), text);
        for check in [true, false] {
            let mut cmd = Command::new(BIN);
            if check {
                cmd.arg("--check");
            }
            let out = cmd
                .arg("-f")
                .arg(&cfg)
                .stdin(Stdio::null())
                .output()
                .expect("run");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{text}: {err}");
            assert!(err.contains(needle), "{text}: {err}");
            assert!(!err.contains("panicked"), "{err}");
        }
    }
    let missing = dir.0.join("missing.json");
    let out = run(&["-f", missing.to_str().expect("utf8 path")]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn cli_generate_check_help_version() {
    let dir = TempDir::new();
    let path = dir.0.join("gen.json");
    let p = path.to_str().expect("utf8 path");
    assert_eq!(run(&["-g", p]).status.code(), Some(0));
    let again = run(&["-g", p]);
    assert_eq!(again.status.code(), Some(1), "refuses to overwrite");
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(run(&["-g", p, "--force"]).status.code(), Some(0));
    let check = run(&["--check", "-f", p]);
    assert_eq!(check.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&check.stdout).contains("OK"));

    let stdout = run(&["-g", "-"]);
    assert_eq!(stdout.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&stdout.stdout).expect("JSON on stdout");
    assert!(v.get("//").is_some());

    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("waitress.config.json");
    let out = run(&["--check", "-f", shipped.to_str().expect("utf8 path")]);
    assert_eq!(out.status.code(), Some(0));

    let help = run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let h = String::from_utf8_lossy(&help.stdout);
    assert!(h.contains("Examples:") && h.contains("Exit codes:"));
    let ver = run(&["--version"]);
    assert_eq!(
        String::from_utf8_lossy(&ver.stdout).trim(),
        format!("waitress {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(run(&[]).status.code(), Some(2));
    assert_eq!(run(&["--bogus"]).status.code(), Some(2));
}
