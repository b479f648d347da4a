//! External commands: the MDA, `filter` and `password_command`. Each runs
//! as `sh -c COMMAND` in a process group of its own and under the
//! account's `command_timeout`; past it the whole group is killed
//! (SIGKILL), so neither a hung command nor a child it started can hold
//! the mailbox lock.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::process::{getpgrp, getpid, kill_process_group, setpgid, Pid, Signal};
use rustix::termios::{tcgetpgrp, tcsetpgrp};

use crate::signals::{self, Action};

/// `sh -c command`, to be started in a process group of its own.
pub fn shell(command: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(command).process_group(0);
    cmd
}

/// How a command ended.
#[derive(Debug)]
pub enum Ended {
    Exited(ExitStatus),
    /// The time limit passed and its process group was killed.
    TimedOut,
}

/// Starts `cmd` (from [`shell`]), lets `talk` exchange data with it (feed
/// its stdin, read its stdout), waits for it to exit, and returns how it
/// ended with what `talk` returned. Past `limit` the command's process
/// group is killed, which also ends a `talk` blocked on a pipe that only
/// the group holds (one that a daemon it started may hold too, `talk`
/// must not wait on past `limit`).
///
/// With `terminal`, a command may ask on the terminal popfetch runs in
/// (`read -s`, gpg's loopback pinentry): its group is made the terminal's
/// foreground group while it runs, as a shell does, since a background
/// group that reads the terminal is stopped (SIGTTIN); a Ctrl-C there
/// interrupts popfetch too.
pub fn run<T>(
    cmd: &mut Command,
    limit: Duration,
    terminal: bool,
    talk: impl FnOnce(&mut Child) -> T,
) -> io::Result<(Ended, T)> {
    let tty = if terminal { Foreground::ours() } else { None };
    // One command at a time gets the terminal, and never during a prompt.
    let _turn = tty.as_ref().map(|_| crate::ui::term::terminal_turn());
    if let Some(tty) = &tty {
        let fd = tty.file.as_raw_fd();
        // SAFETY: between fork and exec only async-signal-safe calls
        // (setpgid, sigaction, tcsetpgrp, getpid) that allocate nothing;
        // `fd` is the terminal `tty` holds open past the spawn.
        unsafe {
            cmd.pre_exec(move || {
                let fd = BorrowedFd::borrow_raw(fd);
                setpgid(None, None)?;
                // A background group taking the terminal would get SIGTTOU.
                let old = signals::set(libc::SIGTTOU, Action::Ignore)?;
                let _ = tcsetpgrp(fd, getpid());
                signals::set(libc::SIGTTOU, Action::Saved(old))?;
                Ok(())
            })
        };
    }
    let mut child = cmd.spawn()?;
    let pid = Pid::from_child(&child);
    let restore = tty.map(|tty| tty.hand_to(pid));
    let watchdog = Watchdog::start(pid, limit);
    let said = talk(&mut child);
    // Wait without reaping: until the child is reaped its pid, which is
    // the group's id, cannot be reused, so the watchdog never kills a
    // stranger's group.
    let exited = wait_exited(pid);
    let fired = watchdog.stop();
    let had_terminal = restore.is_some();
    drop(restore);
    let status = child.wait();
    exited?;
    let status = status?;
    if had_terminal {
        // Ctrl-C (or Ctrl-\) at the command's prompt reached only its
        // group: pass it on to popfetch, as a shell does for its jobs.
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig @ (libc::SIGINT | libc::SIGQUIT)) = status.signal() {
            signals::raise(sig);
        }
    }
    // A command that exited by itself just as the limit passed keeps its
    // own exit status.
    if fired && status.code().is_none() {
        return Ok((Ended::TimedOut, said));
    }
    Ok((Ended::Exited(status), said))
}

/// The usual name of a signal that ends a command, for messages.
pub fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return None,
    })
}

/// Blocks until `pid` has exited, leaving it to be reaped.
fn wait_exited(pid: Pid) -> io::Result<()> {
    use rustix::process::{waitid, WaitId, WaitIdOptions};
    loop {
        match waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        ) {
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Kills a process group when a time limit passes before [`Watchdog::stop`].
struct Watchdog {
    stopped: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<bool>,
}

impl Watchdog {
    fn start(pgid: Pid, limit: Duration) -> Watchdog {
        let stopped = Arc::new((Mutex::new(false), Condvar::new()));
        let shared = stopped.clone();
        let thread = std::thread::spawn(move || {
            let (lock, cvar) = &*shared;
            let guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
            let (guard, _) = cvar
                .wait_timeout_while(guard, limit, |stopped| !*stopped)
                .unwrap_or_else(PoisonError::into_inner);
            if *guard {
                return false;
            }
            // Killed while holding the lock: once `stop` has it, no kill
            // can follow.
            let _ = kill_process_group(pgid, Signal::KILL);
            true
        });
        Watchdog { stopped, thread }
    }

    /// Disarms the watchdog; true if it had already killed the group.
    fn stop(self) -> bool {
        let (lock, cvar) = &*self.stopped;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        cvar.notify_one();
        self.thread.join().unwrap_or(true)
    }
}

/// The controlling terminal, when popfetch is in its foreground.
struct Foreground {
    file: File,
    ours: Pid,
}

impl Foreground {
    fn ours() -> Option<Foreground> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()?;
        let ours = getpgrp();
        (tcgetpgrp(&file).ok()? == ours).then_some(Foreground { file, ours })
    }

    /// Makes `pgid` the terminal's foreground group (the child does it too,
    /// before exec; whichever comes first wins the race harmlessly).
    fn hand_to(self, pgid: Pid) -> Restore {
        let _ = tcsetpgrp(&self.file, pgid);
        Restore(self)
    }
}

/// Takes the terminal back on drop.
struct Restore(Foreground);

impl Drop for Restore {
    fn drop(&mut self) {
        // popfetch is in the background now: SIGTTOU is ignored during
        // the call, as a shell does. (For the whole process, for that
        // moment: no other asker has the terminal, we hold its turn.)
        let old = signals::set(libc::SIGTTOU, Action::Ignore);
        let _ = tcsetpgrp(&self.0.file, self.0.ours);
        if let Ok(old) = old {
            let _ = signals::set(libc::SIGTTOU, Action::Saved(old));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::process::Stdio;
    use std::time::Instant;

    #[test]
    fn exit_status_and_talk_result_come_back() {
        let mut cmd = shell("read x; echo \"got $x\"; exit 3");
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let (ended, out) = run(&mut cmd, Duration::from_secs(10), false, |child| {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(b"hi\n").unwrap();
            drop(stdin);
            let mut out = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            out
        })
        .unwrap();
        assert!(matches!(ended, Ended::Exited(s) if s.code() == Some(3)));
        assert_eq!(out, "got hi\n");
    }

    #[test]
    fn a_hung_group_is_killed_at_the_limit_even_while_talking() {
        // The background child holds stdout open: reading it to the end
        // returns only because the whole group is killed.
        let mut cmd = shell("sleep 1000 & sleep 1000");
        cmd.stdout(Stdio::piped());
        let started = Instant::now();
        let (ended, _) = run(&mut cmd, Duration::from_millis(300), false, |child| {
            let mut out = Vec::new();
            let _ = child.stdout.take().unwrap().read_to_end(&mut out);
        })
        .unwrap();
        assert!(matches!(ended, Ended::TimedOut), "{ended:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
