//! Ctrl-C during `sync`. The first SIGINT asks the fetch loops to stop
//! after the message in hand: what was delivered is committed, nothing
//! more is fetched or deleted, the session ends with QUIT and the user is
//! told what was kept. A second SIGINT ends the process at once, as
//! Ctrl-C always does; the journal makes that safe too (SPEC §4).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::signals::{self, Action, Saved};

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// The first SIGINT came from the terminal (Ctrl-C), not from `kill`.
static FROM_TERMINAL: AtomicBool = AtomicBool::new(false);

/// Whether the user asked to stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Asks the fetch loops to stop after the message in hand, as the first
/// Ctrl-C does: for `watch`, whose own handler takes SIGTERM and SIGINT.
/// Async-signal-safe (an atomic store).
pub(crate) fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Whether the terminal echoed the Ctrl-C as `^C` on stderr's screen.
/// The progress display keeps the cursor past the end of its last line,
/// so that echo started a new line: one line more to clear above it.
pub fn echoed_on_terminal() -> bool {
    if !FROM_TERMINAL.load(Ordering::SeqCst) {
        return false;
    }
    let Ok(t) = rustix::termios::tcgetattr(std::io::stderr()) else {
        return false;
    };
    use rustix::termios::LocalModes;
    t.local_modes
        .contains(LocalModes::ECHO | LocalModes::ECHOCTL)
}

extern "C" fn on_sigint(sig: libc::c_int, info: &signals::siginfo_t, _: *mut libc::c_void) {
    // Only async-signal-safe calls: atomics, sigaction, kill.
    let from_terminal = info.si_code == libc::SI_KERNEL;
    if !REQUESTED.load(Ordering::SeqCst) {
        FROM_TERMINAL.store(from_terminal, Ordering::SeqCst);
    }
    if REQUESTED.swap(true, Ordering::SeqCst) {
        // The default action back and the signal again: the process ends
        // as Ctrl-C ends it (exit status 130).
        let _ = signals::set(sig, Action::Default);
        signals::raise(sig);
    }
}

/// The SIGINT handler of a sync; the previous action is put back when it
/// is dropped. (A password prompt that runs meanwhile puts its own handler
/// in and restores this one: see `term::read_hidden_line`.)
pub struct Catching {
    previous: Saved,
}

/// Installs the handler, unless SIGINT is ignored (`nohup`, a background
/// job of a script): then it stays ignored.
pub fn catch_sigint() -> Option<Catching> {
    // Reads and writes in progress go on: the loops look at the flag
    // between messages.
    let previous = signals::set(libc::SIGINT, Action::WithInfo(on_sigint)).ok()?;
    if previous.is_ignored() {
        let _ = signals::set(libc::SIGINT, Action::Saved(previous));
        return None;
    }
    Some(Catching { previous })
}

impl Drop for Catching {
    fn drop(&mut self) {
        let _ = signals::set(libc::SIGINT, Action::Saved(self.previous));
    }
}
