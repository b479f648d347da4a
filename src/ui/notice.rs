//! Lines on stderr that the engine and the protocol code print as they
//! go: `-v` ([`Verbose`]) and security warnings ([`Alerts`]). Above the
//! progress bars when there are some. Imports nothing of the engine.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use indicatif::MultiProgress;

/// SGR codes: errors bold red, warnings bold yellow, new mail bold green.
pub(crate) const ERROR: &str = "1;31";
pub(crate) const WARNING: &str = "1;33";
pub(crate) const NEW: &str = "1;32";

pub(crate) fn paint(color: bool, text: &str, code: &str) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Where security warnings go: a secret about to cross the network in
/// clear. They are printed at once, before the secret goes out, and even
/// with `--quiet`: the user must learn of it whatever else they silenced,
/// also when the login then fails and no report follows.
#[derive(Clone, Debug, Default)]
pub struct Alerts {
    multi: Option<MultiProgress>,
    color: bool,
    /// With [`Alerts::once_each`]: what was said already.
    said: Option<Arc<Mutex<HashSet<String>>>>,
}

impl Alerts {
    pub(crate) fn new(multi: Option<MultiProgress>, color: bool) -> Alerts {
        Alerts {
            multi,
            color,
            said: None,
        }
    }

    /// Says each warning once for the life of the process: `watch` logs in
    /// every few minutes, and the same warning each time would bury the
    /// log (the user was told when it started).
    pub fn once_each(self) -> Alerts {
        Alerts {
            said: Some(Arc::default()),
            ..self
        }
    }

    pub fn security(&self, message: &str) {
        if let Some(said) = &self.said {
            let mut said = said.lock().unwrap_or_else(|e| e.into_inner());
            if !said.insert(message.to_string()) {
                return;
            }
        }
        let line = format!(
            "popfetch: {} {message}",
            paint(self.color, "warning:", WARNING)
        );
        match &self.multi {
            Some(m) => m.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

/// `-v`: one line per phase of a session and per message delivered, on
/// stderr as it happens. Off, it does nothing, not even the formatting.
#[derive(Clone, Debug, Default)]
pub struct Verbose {
    multi: Option<MultiProgress>,
    on: bool,
}

impl Verbose {
    pub(crate) fn new(multi: Option<MultiProgress>, on: bool) -> Verbose {
        Verbose { multi, on }
    }

    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Prints the line `line` makes, when `-v` was given.
    pub fn say(&self, line: impl FnOnce() -> String) {
        if !self.on {
            return;
        }
        let line = line();
        match &self.multi {
            Some(m) => m.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}
