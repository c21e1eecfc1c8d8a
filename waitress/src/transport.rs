//! ZeroMQ socket: bind, send multipart messages with bounded blocking, close with bounded linger.

use std::fmt;

use crate::config::Mode;

/// A blocking PUSH send wakes up this often to check for a stop request.
pub const SEND_SLICE_MS: i32 = 50;

/// Failure to set up the socket.
#[derive(Debug)]
pub enum TransportError {
    /// `bind` failed (address in use, bad endpoint, permission...).
    Bind {
        /// Endpoint as configured.
        endpoint: String,
        /// libzmq's error.
        source: zmq::Error,
    },
    /// Creating or configuring the socket failed.
    Setup(zmq::Error),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Bind { endpoint, source } => {
                write!(f, "cannot bind {endpoint}: {source}")?;
                match source {
                    zmq::Error::EADDRINUSE => write!(
                        f,
                        " (another process, perhaps another waitress, uses this port; \
                         change `pub_to` or stop it)"
                    ),
                    zmq::Error::EINVAL | zmq::Error::EPROTONOSUPPORT => write!(
                        f,
                        " (check `pub_to`, e.g. \"tcp://127.0.0.1:1201\" or \"ipc:///tmp/waitress\")"
                    ),
                    _ => Ok(()),
                }
            }
            TransportError::Setup(e) => write!(f, "cannot create the ZeroMQ socket: {e}"),
        }
    }
}

impl std::error::Error for TransportError {}

/// Result of one send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Queued in full.
    Queued,
    /// PUB could not queue it (never happens with libzmq's PUB, which drops silently; kept for
    /// completeness).
    Dropped,
    /// PUSH was blocked at the high-water mark and the caller gave up; nothing was queued.
    GaveUp,
}

/// The bound socket. Field order matters: the socket is dropped before the context.
pub struct Transport {
    sock: zmq::Socket,
    ctx: zmq::Context,
    mode: Mode,
    endpoint: String,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("mode", &self.mode)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl Transport {
    /// Creates a PUB or PUSH socket with send high-water mark `hwm` and linger `linger_ms`, and
    /// binds it to `endpoint` (`tcp://host:*` picks a free port; see [`Transport::endpoint`]).
    pub fn bind(
        endpoint: &str,
        mode: Mode,
        hwm: u32,
        linger_ms: u32,
    ) -> Result<Transport, TransportError> {
        let ctx = zmq::Context::new();
        let kind = match mode {
            Mode::Pub => zmq::PUB,
            Mode::Push => zmq::PUSH,
        };
        let sock = ctx.socket(kind).map_err(TransportError::Setup)?;
        let hwm = i32::try_from(hwm).unwrap_or(i32::MAX);
        let linger = i32::try_from(linger_ms).unwrap_or(i32::MAX);
        sock.set_sndhwm(hwm).map_err(TransportError::Setup)?;
        // Bounded from the start, so that no error path can hang in zmq_ctx_term.
        sock.set_linger(linger).map_err(TransportError::Setup)?;
        if mode == Mode::Push {
            sock.set_sndtimeo(SEND_SLICE_MS)
                .map_err(TransportError::Setup)?;
        }
        sock.bind(endpoint).map_err(|source| TransportError::Bind {
            endpoint: endpoint.to_owned(),
            source,
        })?;
        let resolved = match sock.get_last_endpoint() {
            Ok(Ok(s)) if !s.is_empty() => s,
            _ => endpoint.to_owned(),
        };
        Ok(Transport {
            sock,
            ctx,
            mode,
            endpoint: resolved,
        })
    }

    /// The endpoint actually bound (the real port when `*` was given).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Socket type.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Sends `parts` as one multipart message.
    ///
    /// PUB never blocks. PUSH blocks while the high-water mark is reached (or no peer is
    /// connected), waking every [`SEND_SLICE_MS`] to ask `give_up`; when it answers true before
    /// the first part is queued, returns [`Sent::GaveUp`] and nothing was sent. Once the first
    /// part is queued the remaining parts are always accepted (libzmq counts whole messages
    /// against the high-water mark).
    pub fn send(
        &self,
        parts: &[Vec<u8>],
        give_up: &mut dyn FnMut() -> bool,
    ) -> Result<Sent, zmq::Error> {
        let n = parts.len();
        for (i, part) in parts.iter().enumerate() {
            let more = if i + 1 < n { zmq::SNDMORE } else { 0 };
            let flags = match self.mode {
                Mode::Pub => more | zmq::DONTWAIT,
                Mode::Push => more,
            };
            let mut retries = 0u32;
            loop {
                match self.sock.send(part.as_slice(), flags) {
                    Ok(()) => break,
                    Err(e @ (zmq::Error::EAGAIN | zmq::Error::EINTR)) => {
                        if i == 0 {
                            if self.mode == Mode::Pub && e == zmq::Error::EAGAIN {
                                return Ok(Sent::Dropped);
                            }
                            if give_up() {
                                return Ok(Sent::GaveUp);
                            }
                        } else {
                            retries += 1;
                            if retries > 40 {
                                return Err(e);
                            }
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(Sent::Queued)
    }

    /// Closes the socket, waiting at most `linger_ms` for queued messages to leave.
    pub fn close(self, linger_ms: u32) {
        let linger = i32::try_from(linger_ms).unwrap_or(i32::MAX);
        let _ = self.sock.set_linger(linger);
        let Transport { sock, ctx, .. } = self;
        drop(sock);
        drop(ctx);
    }

    /// The context (tests open peer sockets on it for `inproc://`).
    pub fn context(&self) -> &zmq::Context {
        &self.ctx
    }
}
