//! Errors that know which sysexits code (SPEC §6) they end in.
//!
//! Modules keep their own typed errors where the detail matters (the POP3
//! client keeps the server's words and response code); everything that leaves
//! an account's sync is turned into an [`Error`] with an [`ExitKind`], so the
//! binary's edge only has to ask `exit_kind()`.

use std::fmt;

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

/// An error with its exit class and a message written for the user. The
/// cause chain is printed by the caller (`{:#}` on anyhow::Error).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ExitKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    pub fn new(kind: ExitKind, message: impl Into<String>) -> Error {
        Error {
            kind,
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

    pub fn config(message: impl Into<String>) -> Error {
        Error::new(ExitKind::Config, message)
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
        Error::with_source(kind, what, err)
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
