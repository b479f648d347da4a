//! What `watch` says: one line per event on stderr (plain text off a
//! terminal, so the journal and syslog read it as it is), and with
//! `--json` one JSON object per event on stdout. A run that found nothing
//! says nothing: a quiet mailbox makes a quiet log.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::schedule::Next;
use crate::engine::sync::SyncReport;
use crate::error::{Error, ExitKind};
use crate::ui::report::{error_chain, print_json_line, sync_record, sync_summary, Output};

pub struct Events {
    pub output: Output,
    /// Warnings said already: a server that says the same every few
    /// minutes is said once (stdout's JSON still carries each run).
    said: RefCell<HashSet<String>>,
}

impl Events {
    pub fn new(output: Output) -> Events {
        Events {
            output,
            said: RefCell::default(),
        }
    }

    pub fn start(&self, names: &[&str], config: &Path) {
        self.output.info(&format!(
            "popfetch: watching {} account{} ({}) of {}",
            names.len(),
            if names.len() == 1 { "" } else { "s" },
            names.join(", "),
            config.display()
        ));
        if self.output.json {
            print_json_line(&json!({
                "event": "start",
                "accounts": names,
                "config": config.display().to_string(),
                "pid": std::process::id(),
            }));
        }
    }

    /// A run ended. `before`: temporary failures in a row before it.
    /// Returns the account's line for systemd's STATUS.
    pub fn synced(&self, r: &SyncReport, next: Option<Next>, before: u32) -> String {
        // The engine's warnings name the account already.
        for w in &r.warnings {
            if self.said.borrow_mut().insert(w.clone()) {
                self.output.warn(w);
            }
        }
        let news = sync_summary(r);
        let after = next.map(|n| n.after);
        let status = match &r.error {
            Some(e) => {
                let when = match next {
                    Some(n) if e.kind() == ExitKind::TempFail => format!(
                        "; temporary (failure {} in a row), next try in {}",
                        n.failures,
                        human_duration(n.after)
                    ),
                    Some(n) => format!("; next try in {}", human_duration(n.after)),
                    None => String::new(),
                };
                self.output.error(&format!(
                    "{}: {} (exit {}){when}",
                    r.account,
                    error_chain(e),
                    e.kind().code()
                ));
                if !news.is_empty() {
                    self.output.info(&format!("{}: {news}", r.account));
                }
                format!("{}: error {}", r.account, e.kind().code())
            }
            None if r.stopped => {
                self.output.info(&format!(
                    "{}: stopped{}; the rest is fetched next time",
                    r.account,
                    if news.is_empty() {
                        String::new()
                    } else {
                        format!(" after {news}")
                    }
                ));
                format!("{}: stopped", r.account)
            }
            None => {
                let mut parts = Vec::new();
                if !news.is_empty() {
                    parts.push(news.clone());
                }
                if before > 0 {
                    parts.push(format!(
                        "ok again after {before} failed tr{}",
                        if before == 1 { "y" } else { "ies" }
                    ));
                }
                if !parts.is_empty() {
                    self.output
                        .info(&format!("{}: {}", r.account, parts.join("; ")));
                }
                if r.new > 0 {
                    format!("{}: ok, {} new", r.account, r.new)
                } else {
                    format!("{}: ok", r.account)
                }
            }
        };
        let said = !news.is_empty() || r.error.is_some() || r.stopped || before > 0;
        if self.output.json && said {
            let mut record = sync_record(r);
            record["event"] = json!("sync");
            record["failures"] = json!(next.map_or(0, |n| n.failures));
            record["next_in"] = json!(after.map(|d| d.as_secs_f64()));
            record["warnings"] = json!(r.warnings);
            print_json_line(&record);
        }
        status
    }

    pub fn reloaded(&self, added: &[String], removed: &[String]) {
        let mut parts = Vec::new();
        if !added.is_empty() {
            parts.push(format!("added {}", added.join(", ")));
        }
        if !removed.is_empty() {
            parts.push(format!("removed {}", removed.join(", ")));
        }
        if parts.is_empty() {
            parts.push("no account added or removed".to_string());
        }
        self.output
            .info(&format!("popfetch: config reloaded: {}", parts.join("; ")));
        if self.output.json {
            print_json_line(&json!({"event": "reload", "added": added, "removed": removed}));
        }
    }

    pub fn reload_failed(&self, e: &Error) {
        self.output.error(&format!(
            "config not reloaded, still watching with the one read before: {}",
            error_chain(e)
        ));
        if self.output.json {
            print_json_line(&json!({
                "event": "reload_failed",
                "error": error_chain(e),
                "exit_code": e.kind().code(),
            }));
        }
    }

    pub fn stopping(&self, running: usize) {
        let what = match running {
            0 => String::new(),
            1 => ": letting the running sync commit and log out".to_string(),
            n => format!(": letting the {n} running syncs commit and log out"),
        };
        self.output.info(&format!("popfetch: stopping{what}"));
        if self.output.json {
            print_json_line(&json!({"event": "stopping", "running": running}));
        }
    }

    /// What an IDLE connection had to say (it failed, it is back, the
    /// server has none).
    pub fn idle(&self, account: &str, folder: &str, what: &str) {
        self.output
            .info(&format!("{account}: IDLE on {folder}: {what}"));
        if self.output.json {
            print_json_line(&json!({
                "event": "idle",
                "account": account,
                "folder": folder,
                "message": what,
            }));
        }
    }

    pub fn stopped(&self) {
        self.output.info("popfetch: stopped");
        if self.output.json {
            print_json_line(&json!({"event": "stopped"}));
        }
    }
}

/// `45s`, `2m30s`, `1h5m`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 if s.is_multiple_of(60) => format!("{}m", s / 60),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ if s % 3600 / 60 == 0 => format!("{}h", s / 3600),
        _ => format!("{}h{}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human_duration(Duration::from_millis(400)), "0s");
        assert_eq!(human_duration(Duration::from_secs(45)), "45s");
        assert_eq!(human_duration(Duration::from_secs(150)), "2m30s");
        assert_eq!(human_duration(Duration::from_secs(300)), "5m");
        assert_eq!(human_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(human_duration(Duration::from_secs(3900)), "1h5m");
    }
}
