//! Stop requests: SIGINT/SIGTERM (or a test) set a flag and wake the pacing wait at once.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Exit status used when a second signal arrives during shutdown (128 + SIGINT).
pub const EXIT_SECOND_SIGNAL: i32 = 130;

/// Receiving side: asked by the streaming loop whether to stop.
#[derive(Debug)]
pub struct Stopper {
    flag: Arc<AtomicBool>,
    wake: Receiver<()>,
}

/// Sending side: requests a stop.
#[derive(Debug, Clone)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    wake: Sender<()>,
}

impl StopHandle {
    /// Requests a stop; the streaming loop notices within one wait slice.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::SeqCst);
        let _ = self.wake.send(());
    }
}

impl Stopper {
    /// A stopper and the handle that triggers it.
    pub fn new() -> (Stopper, StopHandle) {
        let flag = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        (
            Stopper {
                flag: flag.clone(),
                wake: rx,
            },
            StopHandle { flag, wake: tx },
        )
    }

    /// A stopper triggered by SIGINT or SIGTERM. A second signal exits the process at once with
    /// [`EXIT_SECOND_SIGNAL`].
    pub fn on_signals() -> io::Result<Stopper> {
        let (stopper, handle) = Stopper::new();
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        std::thread::Builder::new()
            .name("waitress-signals".into())
            .spawn(move || {
                let mut count = 0u32;
                for _sig in signals.forever() {
                    count += 1;
                    if count >= 2 {
                        let _ =
                            writeln!(io::stderr(), "waitress: second signal, exiting immediately");
                        std::process::exit(EXIT_SECOND_SIGNAL);
                    }
                    handle.stop();
                }
            })?;
        Ok(stopper)
    }

    /// True once a stop was requested.
    pub fn stopped(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Waits until `deadline` (`None`: until a stop) or a stop request, whichever comes first.
    /// Returns true when stopped.
    pub fn wait_until(&self, deadline: Option<Instant>) -> bool {
        loop {
            if self.stopped() {
                return true;
            }
            let timeout = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    d - now
                }
                None => Duration::from_secs(3600),
            };
            match self.wake.recv_timeout(timeout) {
                Ok(()) => return true,
                Err(RecvTimeoutError::Timeout) => {
                    if deadline.is_some() {
                        return self.stopped();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // No handle left: nobody can stop us; plain sleep in short slices.
                    std::thread::sleep(timeout.min(Duration::from_millis(50)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_returns_at_deadline_or_on_stop() {
        let (s, h) = Stopper::new();
        let t = Instant::now();
        assert!(!s.wait_until(Some(t + Duration::from_millis(20))));
        assert!(t.elapsed() >= Duration::from_millis(20));
        let h2 = h.clone();
        let th = std::thread::spawn(move || h2.stop());
        let t = Instant::now();
        assert!(s.wait_until(Some(t + Duration::from_secs(10))));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(s.stopped());
        th.join().expect("join");
        assert!(s.wait_until(None));
    }
}
