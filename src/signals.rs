//! Signal dispositions: the one place popfetch changes what a signal does
//! (neither std nor rustix wraps `sigaction`). Used by Ctrl-C during a
//! sync (`interrupt`), the password prompt that must put echo back
//! (`term`) and commands given the terminal (`command`). Handlers make only
//! async-signal-safe calls.

use std::io;

pub use libc::siginfo_t;

/// What a signal is made to do.
#[derive(Clone, Copy)]
pub enum Action {
    Default,
    Ignore,
    /// Runs the handler; the default action is back for the next signal
    /// (`SA_RESETHAND`).
    Once(extern "C" fn(libc::c_int)),
    /// Runs the handler with where the signal came from; reads and writes
    /// in progress go on (`SA_RESTART`).
    WithInfo(extern "C" fn(libc::c_int, &siginfo_t, *mut libc::c_void)),
    /// What [`set`] returned, put back.
    Saved(Saved),
}

/// A signal's disposition as it was, to put back with [`Action::Saved`].
#[derive(Clone, Copy)]
pub struct Saved(libc::sigaction);

impl Saved {
    /// Whether the signal was ignored (`nohup`, a background job).
    pub fn is_ignored(&self) -> bool {
        self.0.sa_sigaction == libc::SIG_IGN
    }
}

/// Makes `sig` do `action`; returns what it did before.
pub fn set(sig: libc::c_int, action: Action) -> io::Result<Saved> {
    let (handler, flags) = match action {
        Action::Default => (libc::SIG_DFL, 0),
        Action::Ignore => (libc::SIG_IGN, 0),
        Action::Once(f) => (f as libc::sighandler_t, libc::SA_RESETHAND),
        Action::WithInfo(f) => (f as libc::sighandler_t, libc::SA_SIGINFO | libc::SA_RESTART),
        Action::Saved(Saved(old)) => (old.sa_sigaction, old.sa_flags),
    };
    // SAFETY: sigaction reads `new` and writes `old`, both ours and valid
    // when zeroed; `sigemptyset` initialises the mask. Every handler given
    // here is an `extern "C" fn` of the shape its flags announce, and with
    // SA_SIGINFO the kernel passes a valid siginfo, so the handler's
    // `&siginfo_t` is sound. A saved action is put back as it was.
    let (rc, old) = unsafe {
        let mut new: libc::sigaction = match action {
            Action::Saved(Saved(old)) => old,
            _ => std::mem::zeroed(),
        };
        new.sa_sigaction = handler;
        new.sa_flags = flags;
        if !matches!(action, Action::Saved(_)) {
            libc::sigemptyset(&mut new.sa_mask);
        }
        let mut old: libc::sigaction = std::mem::zeroed();
        (libc::sigaction(sig, &new, &mut old), old)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Saved(old))
}

/// Sends `sig` to this process: after [`Action::Default`] (or
/// [`Action::Once`]) it ends the process as the signal would have.
pub fn raise(sig: libc::c_int) {
    if let Some(sig) = rustix::process::Signal::from_named_raw(sig) {
        let _ = rustix::process::kill_process(rustix::process::getpid(), sig);
    }
}
