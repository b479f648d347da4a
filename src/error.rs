//! Errors that know which sysexits code (SPEC §6) they end in.
//!
//! Modules keep their own typed errors where the detail matters (the POP3
//! client keeps the server's words and response code); everything that leaves
//! an account's sync is turned into an [`Error`] with an [`ExitKind`], so the
//! binary's edge only has to ask `exit_kind()`.

use std::fmt;

use crate::source::pop3::codec::RespCode;

/// The outcome classes of SPEC §6, each with its sysexits code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitKind {
    /// 64: the command line was wrong.
    Usage,
    /// 69: connection refused, host not found, permanent `-ERR` greeting.
    Unavailable,
    /// 70: a bug in popfetch.
    Internal,
    /// 73: cannot create the Maildir, mbox or state files.
    CantCreate,
    /// 74: local I/O error: disk full, database error, MDA failed.
    Io,
    /// 75: try again later: timeout, dropped connection, busy lock, `[SYS/TEMP]`…
    TempFail,
    /// 76: the server broke the protocol.
    Protocol,
    /// 77: authentication failed, certificate not trusted, STLS missing.
    NoPerm,
    /// 78: configuration error.
    Config,
}

impl ExitKind {
    pub fn code(self) -> u8 {
        match self {
            ExitKind::Usage => 64,
            ExitKind::Unavailable => 69,
            ExitKind::Internal => 70,
            ExitKind::CantCreate => 73,
            ExitKind::Io => 74,
            ExitKind::TempFail => 75,
            ExitKind::Protocol => 76,
            ExitKind::NoPerm => 77,
            ExitKind::Config => 78,
        }
    }

    /// Classifies a local I/O error: a timeout or a reset connection is
    /// temporary, anything else is a local I/O failure.
    pub fn of_io(err: &std::io::Error) -> ExitKind {
        use std::io::ErrorKind as K;
        match err.kind() {
            K::TimedOut
            | K::WouldBlock
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::BrokenPipe
            | K::UnexpectedEof
            | K::Interrupted => ExitKind::TempFail,
            _ => ExitKind::Io,
        }
    }
}

/// Where an error came from, set where it is made, so callers decide what
/// happened by asking (`is_local`, `is_stop`…) instead of reading messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The server said no: its response code and its words, apart from the
    /// message written for the user (boxed: errors travel in every Result).
    Server(Box<ServerReply>),
    /// The connection failed: timeout, reset, closed early.
    Transport,
    /// Our side failed: the target, the MDA, the disk, the state database.
    Local,
    /// The user asked to stop (Ctrl-C).
    Stopped,
    /// The configuration or the command line is wrong.
    Config,
    /// Anything else: a protocol violation, a refused certificate…
    Other,
}

/// What a server said when it refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerReply {
    pub code: Option<RespCode>,
    pub text: String,
}

/// An error with its exit class and a message written for the user. The
/// cause chain is printed by the caller (`{:#}` on anyhow::Error).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ExitKind,
    origin: Origin,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    pub fn new(kind: ExitKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            origin: Origin::Other,
            message: message.into(),
            source: None,
        }
    }

    pub fn with_source(
        kind: ExitKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error {
            kind,
            origin: Origin::Other,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    pub fn kind(&self) -> ExitKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Sets where the error came from, keeping kind and message.
    pub fn with_origin(mut self, origin: Origin) -> Error {
        self.origin = origin;
        self
    }

    /// Marks an error raised on our side (target, MDA, disk, commit); a stop
    /// the user asked for stays a stop.
    pub fn local(self) -> Error {
        match self.origin {
            Origin::Stopped => self,
            _ => self.with_origin(Origin::Local),
        }
    }

    /// True when our side failed (or the user stopped it), not the server or
    /// the connection: the session is still in step and can QUIT.
    pub fn is_local(&self) -> bool {
        matches!(self.origin, Origin::Local | Origin::Stopped)
    }

    /// True for the stop the user asked for with Ctrl-C.
    pub fn is_stop(&self) -> bool {
        self.origin == Origin::Stopped
    }

    /// True when the connection failed.
    pub fn is_transport(&self) -> bool {
        self.origin == Origin::Transport
    }

    /// The server's response code and words, when the server refused.
    pub fn server_reply(&self) -> Option<(Option<&RespCode>, &str)> {
        match &self.origin {
            Origin::Server(said) => Some((said.code.as_ref(), &said.text)),
            _ => None,
        }
    }

    /// The server said no: `code` and `text` are its words, kept apart from
    /// the message written for the user.
    pub fn refused(
        kind: ExitKind,
        message: impl Into<String>,
        code: Option<RespCode>,
        text: impl Into<String>,
    ) -> Error {
        Error::new(kind, message).with_origin(Origin::Server(Box::new(ServerReply {
            code,
            text: text.into(),
        })))
    }

    /// A transport failure: the connection broke while talking.
    pub fn transport(
        kind: ExitKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::with_source(kind, message, source).with_origin(Origin::Transport)
    }

    /// The stop the user asked for with Ctrl-C (75: run again to go on).
    pub fn stopped(message: impl Into<String>) -> Error {
        Error::new(ExitKind::TempFail, message).with_origin(Origin::Stopped)
    }

    pub fn config(message: impl Into<String>) -> Error {
        Error::new(ExitKind::Config, message).with_origin(Origin::Config)
    }

    /// A local file-system error while `what` (e.g. "writing to ~/Mail/tmp/…").
    /// Disk full and friends are 74; permission or missing-folder problems
    /// while creating something are 73.
    pub fn local_io(what: impl Into<String>, err: std::io::Error) -> Error {
        use std::io::ErrorKind as K;
        let kind = match err.kind() {
            K::PermissionDenied | K::NotFound | K::ReadOnlyFilesystem | K::NotADirectory => {
                ExitKind::CantCreate
            }
            _ => ExitKind::Io,
        };
        Error::with_source(kind, what, err).with_origin(Origin::Local)
    }

    /// Adds context in front of the message, keeping the kind.
    pub fn context(mut self, what: impl fmt::Display) -> Error {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The exit class of any error chain: the first [`Error`] found in it, else
/// an I/O error's class, else internal.
pub fn exit_kind_of(err: &anyhow::Error) -> ExitKind {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Error>() {
            return e.kind();
        }
        if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            return ExitKind::of_io(e);
        }
    }
    ExitKind::Internal
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What happened is read from the origin set where the error was made,
    /// never from its message.
    #[test]
    fn origin_tells_our_failures_from_the_server_and_the_connection() {
        let disk = Error::local_io("writing", std::io::ErrorKind::StorageFull.into());
        assert!(disk.is_local() && !disk.is_stop() && !disk.is_transport());
        assert_eq!(disk.kind(), ExitKind::Io);

        // An MDA's error made as a plain Error becomes ours once the
        // delivery hands it back; the kind and message stay as they were.
        let mda = Error::new(ExitKind::TempFail, "the mda failed").local();
        assert!(mda.is_local());
        assert_eq!(mda.kind(), ExitKind::TempFail);
        assert_eq!(mda.to_string(), "the mda failed");

        let stop = Error::stopped("stopped by Ctrl-C").local();
        assert!(stop.is_stop() && stop.is_local(), "a stop stays a stop");
        assert_eq!(stop.kind(), ExitKind::TempFail);

        let drop = Error::transport(
            ExitKind::TempFail,
            "h: the server closed the connection while RETR 1",
            std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
        );
        assert!(drop.is_transport() && !drop.is_local());
        // Same kind and message as a local error would not fool anyone.
        let lookalike = Error::new(drop.kind(), drop.to_string());
        assert!(!lookalike.is_local() && !lookalike.is_transport());

        let refused = Error::refused(
            ExitKind::TempFail,
            "h: the server refused RETR 1: -ERR [SYS/TEMP] busy",
            Some(RespCode::SysTemp),
            "busy",
        );
        assert!(!refused.is_local() && !refused.is_transport());
        assert_eq!(
            refused.server_reply(),
            Some((Some(&RespCode::SysTemp), "busy"))
        );
        assert_eq!(drop.server_reply(), None);

        assert_eq!(Error::config("bad").origin(), &Origin::Config);
        // Context keeps the origin.
        assert!(disk.context("account a").is_local());
    }
}
