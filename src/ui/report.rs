//! What the user sees: progress bars (only on a terminal), the summary
//! lines on stderr, and `--json` records on stdout.
//!
//! The rule from cron: when nothing happened, print nothing.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget};
use serde_json::json;

use crate::commands::peek::CheckReport;
use crate::engine::sync::SyncReport;
use crate::error::ExitKind;
use crate::ui::notice::{paint, ERROR, NEW, WARNING};
pub use crate::ui::notice::{Alerts, Verbose};
pub use crate::ui::progress::Progress;
pub use crate::ui::units::human_bytes;

/// `--color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

/// How output is shaped for this run.
pub struct Output {
    pub quiet: bool,
    pub json: bool,
    /// Colour on stderr (errors, warnings).
    color: bool,
    /// Colour on stdout (`new` markers): decided apart from stderr, since
    /// `popfetch list | less` pipes one and leaves the other on a terminal.
    color_out: bool,
    multi: Option<MultiProgress>,
    /// The line a Ctrl-C echo left behind was cleared.
    echo_cleared: AtomicBool,
}

impl Output {
    pub fn new(quiet: bool, json: bool, color: ColorChoice, progress: bool) -> Output {
        let stderr_tty = std::io::stderr().is_terminal();
        let color_out = color.wanted(std::io::stdout().is_terminal());
        let color = color.wanted(stderr_tty);
        let multi = (progress && stderr_tty && !quiet)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)));
        Output {
            quiet,
            json,
            color,
            color_out,
            multi,
            echo_cleared: AtomicBool::new(false),
        }
    }

    /// Where `-v` lines go: on stderr above the progress bars, and only
    /// when `on` (else nothing is even formatted).
    pub fn verbose(&self, on: bool) -> Verbose {
        Verbose::new(self.multi.clone(), on)
    }

    /// A line of `list` or `top` for stdout, its trailing `new` marker
    /// coloured when stdout wants colour.
    pub fn mark_new(&self, line: &str) -> String {
        match line.strip_suffix(" new") {
            Some(rest) if self.color_out => format!("{rest} {}", paint(true, "new", NEW)),
            _ => line.to_string(),
        }
    }

    /// A progress display for one account (hidden when not on a terminal):
    /// its phase until the transfer starts, then a bar.
    pub fn progress(&self, account: &str) -> Progress {
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::hidden());
            bar.set_prefix(account.to_string());
            bar
        });
        Progress::with_bar(bar)
    }

    fn paint(&self, text: &str, code: &str) -> String {
        paint(self.color, text, code)
    }

    /// Where this run's security warnings go.
    pub fn alerts(&self) -> Alerts {
        Alerts::new(self.multi.clone(), self.color)
    }

    /// Prints an error line on stderr.
    pub fn error(&self, message: &str) {
        self.suspend(|| eprintln!("popfetch: {} {message}", self.paint("error:", ERROR)));
    }

    /// Prints a warning on stderr unless `--quiet`.
    pub fn warn(&self, message: &str) {
        if !self.quiet {
            self.suspend(|| eprintln!("popfetch: {} {message}", self.paint("warning:", WARNING)));
        }
    }

    /// Prints a plain informational line on stderr unless `--quiet`.
    pub fn info(&self, message: &str) {
        if !self.quiet {
            self.suspend(|| eprintln!("{message}"));
        }
    }

    fn suspend(&self, f: impl FnOnce()) {
        match &self.multi {
            Some(m) => m.suspend(f),
            None => f(),
        }
    }

    /// Reports one account's sync: the summary line (only if something
    /// happened), warnings, the error, and the JSON record.
    pub fn sync_report(&self, r: &SyncReport) {
        if r.dry_run {
            return self.dry_run_report(r);
        }
        for w in &r.warnings {
            self.warn(w);
        }
        if let Some(e) = &r.error {
            self.error(&format!("{}: {}", r.account, error_chain(e)));
        }
        let summary = sync_summary(r);
        if r.stopped {
            self.stopped(r);
        } else if !summary.is_empty() {
            self.info(&format!("{}: {summary}", r.account));
        }
        if self.json {
            print_json_line(&sync_record(r));
        }
    }
}

impl Output {
    /// Reports one account's `sync --dry-run`. The plan is what the user
    /// asked for, so it is data and goes to stdout (like `check`'s
    /// answer): one line per message, then the summary, or "nothing to
    /// do". With `--json`, the account's record carries the plan as
    /// `planned` instead. Warnings and the error go to stderr as usual.
    fn dry_run_report(&self, r: &SyncReport) {
        for w in &r.warnings {
            self.warn(w);
        }
        if let Some(e) = &r.error {
            self.error(&format!("{}: {}", r.account, error_chain(e)));
        }
        if self.json {
            let code = r.error.as_ref().map(|e| e.kind().code()).unwrap_or(0);
            let planned: Vec<serde_json::Value> = r
                .planned
                .iter()
                .map(|p| {
                    json!({
                        "action": p.action.json_name(),
                        "number": p.number,
                        "size": p.size,
                        "uidl": p.uidl,
                        "reason": p.reason,
                    })
                })
                .collect();
            print_json_line(&json!({
                "account": r.account,
                "status": if r.error.is_some() { "error" } else { "ok" },
                "dry_run": true,
                "new": r.new,
                "bytes": r.bytes,
                "deleted": r.deleted,
                "skipped": r.skipped,
                "left": r.left,
                "planned": planned,
                "target": r.target,
                "error": r.error.as_ref().map(error_chain),
                "exit_code": code,
            }));
            return;
        }
        if r.error.is_some() || self.quiet {
            return;
        }
        let mut lines = Vec::new();
        if r.target_is_server && !r.planned.is_empty() {
            lines.push(format!(
                "{}: delivers to {} (not contacted by a dry run)",
                r.account, r.target
            ));
        }
        lines.extend(plan_lines(&r.account, &r.planned));
        lines.push(format!("{}: {}", r.account, dry_run_summary(r)));
        // One write, so accounts finishing together do not interleave.
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        self.suspend(|| {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        });
    }

    /// Says what a sync stopped by Ctrl-C kept: the user pressed it and
    /// waits for this answer, so it shows even with `--quiet`.
    fn stopped(&self, r: &SyncReport) {
        let mut line = format!(
            "{}: stopped: {} message{} delivered and recorded",
            r.account,
            r.new,
            if r.new == 1 { "" } else { "s" }
        );
        if r.deleted > 0 {
            line.push_str(&format!(", {} deleted on the server", r.deleted));
        }
        line.push_str("; run sync again for the rest");
        self.suspend(|| {
            if self.multi.is_some()
                && crate::ui::interrupt::echoed_on_terminal()
                && !self.echo_cleared.swap(true, Ordering::Relaxed)
            {
                // The `^C` echo pushed the display down a line, leaving
                // its old first line behind: clear that one too.
                eprint!("\x1b[1A\x1b[2K");
            }
            eprintln!("{line}");
        });
    }
}

/// The text plan of one account, as a table: action, number, size, UIDL,
/// and why, when a message is deleted unread or left.
fn plan_lines(account: &str, planned: &[crate::engine::sync::Planned]) -> Vec<String> {
    let width = |f: &dyn Fn(&crate::engine::sync::Planned) -> usize| planned.iter().map(f).max();
    let aw = width(&|p| p.action.words().len()).unwrap_or(0);
    let nw = width(&|p| p.number.to_string().len()).unwrap_or(0);
    let sw = width(&|p| human_bytes(p.size).len()).unwrap_or(0);
    let uw = width(&|p| p.uidl.chars().count()).unwrap_or(0);
    planned
        .iter()
        .map(|p| {
            let line = format!(
                "{account}: {:<aw$}  {:>nw$}  {:>sw$}  {:<uw$}  {}",
                p.action.words(),
                p.number,
                human_bytes(p.size),
                crate::ui::term::escape_controls(&p.uidl),
                p.reason.map(|r| format!("({r})")).unwrap_or_default(),
            );
            line.trim_end().to_string()
        })
        .collect()
}

/// The last line of a dry run, e.g. "would fetch 3 messages (12.4 KiB)
/// and delete 2; 1 left on the server (larger than max_size)".
fn dry_run_summary(r: &SyncReport) -> String {
    use crate::engine::sync::Action;
    let count = |a: Action| r.planned.iter().filter(|p| p.action == a).count();
    let messages = |n: usize| format!("{n} message{}", if n == 1 { "" } else { "s" });
    let (fetch, fetch_delete, delete) = (
        count(Action::Fetch),
        count(Action::FetchAndDelete),
        count(Action::Delete),
    );
    let size = human_bytes(r.bytes);
    let mut text = match (fetch, fetch_delete, delete) {
        (0, 0, 0) => String::new(),
        (0, 0, d) => format!("would delete {}", messages(d)),
        (f, 0, 0) => format!("would fetch {} ({size})", messages(f)),
        (f, 0, d) => format!("would fetch {} ({size}) and delete {d}", messages(f)),
        (_, f, 0) => format!("would fetch and delete {} ({size})", messages(f)),
        (_, f, d) => format!(
            "would fetch and delete {} ({size}), and delete {d} fetched before",
            messages(f)
        ),
    };
    // Left on the server, grouped by why, in the order first met.
    let mut left: Vec<(&str, usize)> = Vec::new();
    for p in r.planned.iter().filter(|p| p.action == Action::Leave) {
        let why = p.reason.unwrap_or("left");
        match left.iter_mut().find(|(w, _)| *w == why) {
            Some((_, n)) => *n += 1,
            None => left.push((why, 1)),
        }
    }
    if text.is_empty() {
        text = if left.is_empty() {
            "nothing to do".to_string()
        } else {
            "nothing to fetch or delete".to_string()
        };
    }
    if !left.is_empty() {
        let total: usize = left.iter().map(|(_, n)| n).sum();
        let whys: Vec<String> = match left.as_slice() {
            [(why, _)] => vec![why.to_string()],
            _ => left.iter().map(|(why, n)| format!("{n} {why}")).collect(),
        };
        text.push_str(&format!(
            "; {total} left on the server ({})",
            whys.join(", ")
        ));
    }
    text
}

impl Output {
    /// Reports one account's `check`: the answer on stdout (a text line,
    /// or with `--json` the record), warnings and the error on stderr.
    pub fn check_report(&self, r: &CheckReport) {
        for w in &r.warnings {
            self.warn(w);
        }
        if let Some(e) = &r.error {
            self.error(&format!("{}: {}", r.account, error_chain(e)));
        }
        if self.json {
            print_json_line(&check_json(r));
        } else if r.error.is_none() && !self.quiet {
            let line = if r.new > 0 {
                let new = format!("{} new message{}", r.new, if r.new == 1 { "" } else { "s" });
                format!(
                    "{}: {} ({}), {} on the server ({})",
                    r.account,
                    paint(self.color_out, &new, NEW),
                    human_bytes(r.new_bytes),
                    r.total,
                    human_bytes(r.total_bytes)
                )
            } else {
                format!(
                    "{}: no new mail, {} on the server ({})",
                    r.account,
                    r.total,
                    human_bytes(r.total_bytes)
                )
            };
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }
}

/// The `check --json` record of one account (SPEC §1). `exit_code` is what
/// `check` would exit with for this account alone: 0 new mail, 1 none.
pub fn check_json(r: &CheckReport) -> serde_json::Value {
    let code = match &r.error {
        Some(e) => e.kind().code(),
        None if r.new > 0 => 0,
        None => 1,
    };
    json!({
        "account": r.account,
        "status": if r.error.is_some() { "error" } else { "ok" },
        "new": r.new,
        "new_bytes": r.new_bytes,
        "total": r.total,
        "total_bytes": r.total_bytes,
        "error": r.error.as_ref().map(error_chain),
        "exit_code": code,
    })
}

impl ColorChoice {
    /// Whether to colour a stream that is (or is not) a terminal: `auto`
    /// colours terminals only, and not when NO_COLOR is set (no-color.org).
    pub fn wanted(self, terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

/// The `error:` label of a line on stderr, coloured as `--color` says: for
/// the errors `main` prints itself.
pub fn error_label(color: ColorChoice) -> String {
    paint(
        color.wanted(std::io::stderr().is_terminal()),
        "error:",
        ERROR,
    )
}

/// One account's sync as `sync --json` prints it; `watch`'s `sync` events
/// are this record with a few fields more.
pub fn sync_record(r: &SyncReport) -> serde_json::Value {
    json!({
        "account": r.account,
        "status": match (&r.error, r.stopped) {
            (Some(_), _) => "error",
            (None, true) => "stopped",
            (None, false) => "ok",
        },
        "new": r.new,
        "bytes": r.bytes,
        "deleted": r.deleted,
        "skipped": r.skipped,
        "left": r.left,
        "target": r.target,
        "error": r.error.as_ref().map(error_chain),
        "exit_code": r.error.as_ref().map_or(0, |e| e.kind().code()),
    })
}

/// What a sync did, as its summary line says it ("3 new messages (12
/// KB), 3 deleted on the server"), or empty when it did nothing; `watch`
/// says it in the same words.
pub fn sync_summary(r: &SyncReport) -> String {
    let mut parts = Vec::new();
    if r.new > 0 {
        parts.push(format!(
            "{} new message{} ({})",
            r.new,
            if r.new == 1 { "" } else { "s" },
            human_bytes(r.bytes)
        ));
    }
    if r.deleted > 0 {
        parts.push(format!("{} deleted on the server", r.deleted));
    }
    if r.skipped > 0 {
        parts.push(format!("{} skipped", r.skipped));
    }
    if r.left > 0 {
        parts.push(format!("{} left on the server by the filter", r.left));
    }
    parts.join(", ")
}

/// Prints one JSON record on stdout. A closed stdout is not our problem.
pub fn print_json_line(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// The message and its causes, `: `-joined.
pub fn error_chain(e: &crate::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The exit code for several accounts (SPEC §6): the first failure that is
/// not temporary, else temporary if any, else success.
pub fn combined_exit(kinds: &[Option<ExitKind>]) -> Option<ExitKind> {
    kinds
        .iter()
        .flatten()
        .find(|k| **k != ExitKind::TempFail)
        .or_else(|| kinds.iter().flatten().next())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_rule() {
        use ExitKind::*;
        assert_eq!(combined_exit(&[None, None]), None);
        assert_eq!(combined_exit(&[Some(TempFail), None]), Some(TempFail));
        assert_eq!(
            combined_exit(&[Some(TempFail), Some(NoPerm), Some(Config)]),
            Some(NoPerm)
        );
    }
}
