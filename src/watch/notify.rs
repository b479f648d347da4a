//! systemd's notify protocol (`Type=notify`, sd_notify(3)): one datagram
//! of `KEY=value` lines to the unix socket in `$NOTIFY_SOCKET` (a name
//! starting with `@` is in the abstract namespace). READY=1 once the loop
//! runs, STATUS= with each account's last result, WATCHDOG=1 at half of
//! `$WATCHDOG_USEC`, STOPPING=1 on the way out. Without the variables
//! (not under systemd) every call does nothing.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    /// How often to send WATCHDOG=1.
    pub watchdog: Option<Duration>,
}

impl Notifier {
    /// From the environment systemd gives the service.
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
            let addr = match bytes.strip_prefix(b"@") {
                Some(name) => SocketAddr::from_abstract_name(name).ok()?,
                None => SocketAddr::from_pathname(&path).ok()?,
            };
            Some((UnixDatagram::unbound().ok()?, addr))
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|p| p.parse() == Ok(std::process::id()));
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && for_us && socket.is_some())
            .map(|u| Duration::from_micros(u) / 2);
        Notifier { socket, watchdog }
    }

    /// Sends `state` (`KEY=value` lines); a lost datagram is not an error
    /// worth stopping for.
    pub fn send(&self, state: &str) {
        if let Some((socket, addr)) = &self.socket {
            let _ = socket.send_to_addr(state.as_bytes(), addr);
        }
    }

    /// STATUS= text on one line (the protocol ends a value at a newline).
    pub fn status(&self, text: &str) {
        if self.socket.is_some() {
            self.send(&format!("STATUS={}", text.replace('\n', " ")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_datagrams_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            socket: Some((
                UnixDatagram::unbound().unwrap(),
                SocketAddr::from_pathname(&path).unwrap(),
            )),
            watchdog: None,
        };
        notifier.send("READY=1");
        notifier.status("a: ok\nb: error");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STATUS=a: ok b: error");
    }
}
