//! Ctrl-C during `sync`. The first SIGINT asks the fetch loops to stop
//! after the message in hand: what was delivered is committed, nothing
//! more is fetched or deleted, the session ends with QUIT and the user is
//! told what was kept. A second SIGINT ends the process at once, as
//! Ctrl-C always does; the journal makes that safe too (SPEC §4).

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// The first SIGINT came from the terminal (Ctrl-C), not from `kill`.
static FROM_TERMINAL: AtomicBool = AtomicBool::new(false);

/// Whether the user asked to stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Whether the terminal echoed the Ctrl-C as `^C` on stderr's screen.
/// The progress display keeps the cursor past the end of its last line,
/// so that echo started a new line: one line more to clear above it.
pub fn echoed_on_terminal() -> bool {
    if !FROM_TERMINAL.load(Ordering::SeqCst) {
        return false;
    }
    // SAFETY: tcgetattr fills a termios we own; it fails off a terminal.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::tcgetattr(libc::STDERR_FILENO, &mut t) } == 0;
    ok && t.c_lflag & libc::ECHO != 0 && t.c_lflag & libc::ECHOCTL != 0
}

extern "C" fn on_sigint(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Only async-signal-safe calls: atomics, signal, raise.
    // SAFETY: with SA_SIGINFO the kernel passes a valid siginfo.
    let from_terminal = !info.is_null() && unsafe { (*info).si_code } == libc::SI_KERNEL;
    if !REQUESTED.load(Ordering::SeqCst) {
        FROM_TERMINAL.store(from_terminal, Ordering::SeqCst);
    }
    if REQUESTED.swap(true, Ordering::SeqCst) {
        // SAFETY: puts the default action back and raises the signal again:
        // the process ends as Ctrl-C ends it (exit status 130).
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
}

/// The SIGINT handler of a sync; the previous action is put back when it
/// is dropped. (A password prompt that runs meanwhile puts its own handler
/// in and restores this one: see `term::read_hidden_line`.)
pub struct Catching {
    previous: libc::sigaction,
}

/// Installs the handler, unless SIGINT is ignored (`nohup`, a background
/// job of a script): then it stays ignored.
pub fn catch_sigint() -> Option<Catching> {
    // SAFETY: a plain sigaction with a handler that only makes
    // async-signal-safe calls; the old action is kept to be put back.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigint
            as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
            as usize;
        // Reads and writes in progress go on: the loops look at the flag
        // between messages.
        action.sa_flags = libc::SA_RESTART | libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGINT, &action, &mut previous) != 0 {
            return None;
        }
        if previous.sa_sigaction == libc::SIG_IGN {
            libc::sigaction(libc::SIGINT, &previous, std::ptr::null_mut());
            return None;
        }
        Some(Catching { previous })
    }
}

impl Drop for Catching {
    fn drop(&mut self) {
        // SAFETY: puts back the action saved above.
        unsafe { libc::sigaction(libc::SIGINT, &self.previous, std::ptr::null_mut()) };
    }
}
