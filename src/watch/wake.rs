//! The one place `watch` waits: a socket pair whose read end the main loop
//! blocks on, with a timeout to the next due run. Whatever has news writes
//! a byte to the other end: a signal handler (`write` is async-signal-safe),
//! a run that ended, an IDLE connection that saw new mail. No polling: a
//! process with nothing due sleeps in one `recv` until the next run.

use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::signals::{self, Action};

/// The write end the signal handlers use.
static HANDLER_END: OnceLock<UnixStream> = OnceLock::new();

/// Set by the handlers, read and cleared by the main loop.
static STOP: AtomicBool = AtomicBool::new(false);
/// A stop not yet reported by [`Waiter::wait`] (`STOP` stays set, for the
/// second signal; this one is cleared, so waiting goes on blocking while
/// the running syncs finish).
static STOP_NEWS: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);
static SYNC_NOW: AtomicBool = AtomicBool::new(false);

/// What woke the main loop (several at once, possibly).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Woken {
    pub stop: bool,
    pub reload: bool,
    pub sync_now: bool,
}

pub struct Waiter {
    read: UnixStream,
    write: UnixStream,
}

/// A handle for a thread to wake the main loop with.
#[derive(Debug)]
pub struct Waker(UnixStream);

impl Waker {
    pub fn wake(&self) {
        // A full buffer already holds a wake-up: nothing is lost.
        let _ = rustix::io::write(&self.0, b"w");
    }
}

impl Waiter {
    pub fn new() -> std::io::Result<Waiter> {
        let (read, write) = UnixStream::pair()?;
        // The writers never block: a handler must not, and a full buffer
        // means the loop will wake anyway.
        write.set_nonblocking(true)?;
        Ok(Waiter { read, write })
    }

    pub fn waker(&self) -> std::io::Result<Waker> {
        Ok(Waker(self.write.try_clone()?))
    }

    /// Takes SIGTERM, SIGINT, SIGHUP and SIGUSR1 for this loop. The first
    /// SIGTERM or SIGINT asks running syncs to stop after the message in
    /// hand (as Ctrl-C during `sync`); a second ends the process at once
    /// (the journal makes that safe: SPEC §4).
    pub fn catch_signals(&self) -> std::io::Result<()> {
        let _ = HANDLER_END.set(self.write.try_clone()?);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1] {
            signals::set(sig, Action::WithInfo(on_signal))?;
        }
        Ok(())
    }

    /// Blocks until something wakes the loop or `timeout` passes (`None`:
    /// no timeout), and says what came by signal.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Woken {
        let pending = STOP_NEWS.load(Ordering::SeqCst)
            || RELOAD.load(Ordering::SeqCst)
            || SYNC_NOW.load(Ordering::SeqCst);
        if !pending {
            // A zero timeout is an error to SO_RCVTIMEO: a millisecond is as good.
            let timeout = timeout.map(|t| t.max(Duration::from_millis(1)));
            if self.read.set_read_timeout(timeout).is_ok() {
                let mut buf = [0u8; 256];
                match self.read.read(&mut buf) {
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => {}
                }
            }
        }
        Woken {
            stop: STOP_NEWS.swap(false, Ordering::SeqCst),
            reload: RELOAD.swap(false, Ordering::SeqCst),
            sync_now: SYNC_NOW.swap(false, Ordering::SeqCst),
        }
    }
}

extern "C" fn on_signal(sig: libc::c_int, _: &signals::siginfo_t, _: *mut libc::c_void) {
    // Only async-signal-safe calls: atomics, write, sigaction, kill.
    match sig {
        libc::SIGTERM | libc::SIGINT => {
            if STOP.swap(true, Ordering::SeqCst) {
                let _ = signals::set(sig, Action::Default);
                signals::raise(sig);
                return;
            }
            crate::ui::interrupt::request();
            STOP_NEWS.store(true, Ordering::SeqCst);
        }
        libc::SIGHUP => RELOAD.store(true, Ordering::SeqCst),
        libc::SIGUSR1 => SYNC_NOW.store(true, Ordering::SeqCst),
        _ => {}
    }
    if let Some(end) = HANDLER_END.get() {
        let _ = rustix::io::write(end, b"s");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn waits_for_the_timeout_or_a_waker_whichever_comes_first() {
        let mut waiter = Waiter::new().unwrap();
        let t0 = Instant::now();
        assert_eq!(
            waiter.wait(Some(Duration::from_millis(50))),
            Woken::default()
        );
        assert!(t0.elapsed() >= Duration::from_millis(45));
        let waker = waiter.waker().unwrap();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            waker.wake();
        });
        let t0 = Instant::now();
        waiter.wait(Some(Duration::from_secs(10)));
        assert!(t0.elapsed() < Duration::from_secs(5));
        thread.join().unwrap();
        // Many wake-ups pile up as one.
        let waker = waiter.waker().unwrap();
        for _ in 0..10_000 {
            waker.wake();
        }
        waiter.wait(None);
    }
}
