//! Small terminal helpers for the human-readable tables: how wide stdout
//! is, local time without a date crate or libc, and text that is safe to show
//! (a mail header or a server's reply is untrusted input: no escape
//! sequences reach the terminal) and cut to a display width; and reading
//! a password with echo off that puts echo back even when interrupted.

use std::io::{BufRead, Write};
use std::os::fd::OwnedFd;
use std::sync::Mutex;

use rustix::termios::{LocalModes, OptionalActions, Termios};

use crate::signals::{self, Action};

use super::zone::Zone;
use crate::calendar::civil_from_days;

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// The width to cut lines to: the terminal's when stdout is one, else
/// `$COLUMNS` if set, else `None` (no cutting, e.g. into a pipe).
pub fn stdout_width() -> Option<usize> {
    if let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size_of(std::io::stdout()) {
        return Some(w as usize);
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&w| w > 0)
}

/// Broken-down local time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalTime {
    pub year: i32,
    /// 1–12
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
}

/// Unix time → local time, with the system's time zone (`TZ` honoured,
/// as the C library reads it: see [`zone`](super::zone)).
pub fn local_time(secs: i64) -> Option<LocalTime> {
    local_time_in(&Zone::local(), secs)
}

fn local_time_in(zone: &Zone, secs: i64) -> Option<LocalTime> {
    let local = secs.checked_add(i64::from(zone.offset_at(secs)))?;
    let (year, month, day) = civil_from_days(local.div_euclid(86400));
    let of_day = local.rem_euclid(86400) as u32;
    Some(LocalTime {
        year: i32::try_from(year).ok()?,
        month,
        day,
        hour: of_day / 3600,
        minute: of_day / 60 % 60,
    })
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A compact local date, 12 columns wide, the way `ls -l` shows it:
/// `Mar  5 14:02` within the last half year (and up to a day ahead),
/// `Mar  5  2021` otherwise.
pub fn compact_date(secs: i64, now: i64) -> String {
    let Some(t) = local_time(secs) else {
        return String::new();
    };
    let month = MONTHS[(t.month as usize - 1).min(11)];
    const HALF_YEAR: i64 = 183 * 24 * 3600;
    if secs > now - HALF_YEAR && secs < now + 24 * 3600 {
        format!("{month} {:>2} {:02}:{:02}", t.day, t.hour, t.minute)
    } else {
        format!("{month} {:>2}  {:>4}", t.day, t.year)
    }
}

/// `YYYY-MM-DD HH:MM` in local time, for listings meant to be sorted.
pub fn iso_minutes(secs: i64) -> String {
    match local_time(secs) {
        Some(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            t.year, t.month, t.day, t.hour, t.minute
        ),
        None => "?".to_string(),
    }
}

/// Text from a server made safe for a one-line display: control
/// characters (escape sequences, tabs, line breaks) become spaces and runs
/// of white space collapse to one.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' {
            if !space && !out.is_empty() {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// Text a server sent, safe to show on a terminal: every control
/// character (C0 including ESC, DEL, C1) is written as an escape
/// (`\x1b`, `\u{9b}`), so a hostile server cannot move the cursor, set
/// the window title or worse. Other text, UTF-8 included, is kept as it is.
pub fn escape_controls(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c as u32 {
            n @ (0..=0x1f | 0x7f) => out.push_str(&format!("\\x{n:02x}")),
            n if c.is_control() => out.push_str(&format!("\\u{{{n:x}}}")),
            _ => out.push(c),
        }
    }
    out
}

/// Display width (East Asian wide characters count two).
pub fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// Cuts `s` to at most `max` display columns, ending in `…` when cut.
pub fn cut(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > max - 1 {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// `s` cut to `w` columns and padded with spaces to exactly `w`.
pub fn fit(s: &str, w: usize) -> String {
    let mut out = cut(s, w);
    let pad = w.saturating_sub(width(&out));
    out.extend(std::iter::repeat_n(' ', pad));
    out
}

/// Only one prompt owns the terminal at a time: popfetch's own password
/// prompts and any `password_command` given the terminal (with `-j`,
/// several accounts may ask at once).
static PROMPT: Mutex<()> = Mutex::new(());

/// Holds the terminal for one asker until the guard is dropped.
pub fn terminal_turn() -> std::sync::MutexGuard<'static, ()> {
    PROMPT.lock().unwrap_or_else(|e| e.into_inner())
}
/// The terminal of the running prompt and the settings to put back if a
/// signal ends the process while echo is off. The handler only ever
/// `try_lock`s it (a compare-and-swap, safe in a handler); whenever the
/// prompt itself holds the lock, echo is on.
static PROMPT_SAVED: Mutex<Option<(OwnedFd, Termios)>> = Mutex::new(None);

/// The signals that end a prompt: the terminal must not stay silent.
const PROMPT_SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

extern "C" fn restore_echo_and_die(sig: libc::c_int) {
    // Only async-signal-safe calls: an atomic, tcsetattr, write, kill.
    if let Ok(saved) = PROMPT_SAVED.try_lock() {
        if let Some((fd, termios)) = &*saved {
            let _ = rustix::termios::tcsetattr(fd, OptionalActions::Now, termios);
            let _ = rustix::io::write(fd, b"\n");
        }
    }
    // SA_RESETHAND put the default action back: the signal raised again
    // ends the process as the user asked (exit status 128 + sig).
    signals::raise(sig);
}

/// Shows `prompt` on the terminal `tty` and reads one line with echo off.
/// Echo comes back when the line is read, and also when SIGINT (Ctrl-C),
/// SIGTERM, SIGHUP or SIGQUIT ends the process during the prompt: the
/// handler restores the terminal, then the signal ends the process as it
/// would have. Prompts are serialised: one owns the terminal at a time.
pub fn read_hidden_line(tty: &std::fs::File, prompt: &str) -> std::io::Result<String> {
    let _owner = terminal_turn();
    let old = rustix::termios::tcgetattr(tty).ok();
    let mut previous: Vec<(libc::c_int, signals::Saved)> = Vec::new();
    if let Some(old) = &old {
        let fd = tty.try_clone()?.into();
        *PROMPT_SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some((fd, old.clone()));
        for sig in PROMPT_SIGNALS {
            let Ok(old_action) = signals::set(sig, Action::Once(restore_echo_and_die)) else {
                continue;
            };
            if old_action.is_ignored() {
                // Ignored (nohup): it must not end the prompt either.
                let _ = signals::set(sig, Action::Saved(old_action));
            } else {
                previous.push((sig, old_action));
            }
        }
        let mut quiet = old.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        quiet.local_modes.insert(LocalModes::ECHONL);
        let _ = rustix::termios::tcsetattr(tty, OptionalActions::Now, &quiet);
    }
    let mut out = tty;
    let _ = write!(out, "{prompt}");
    let _ = out.flush();
    let mut line = String::new();
    let res = std::io::BufReader::new(tty).read_line(&mut line);
    if let Some(old) = &old {
        let _ = rustix::termios::tcsetattr(tty, OptionalActions::Now, old);
        *PROMPT_SAVED.lock().unwrap_or_else(|e| e.into_inner()) = None;
        for (sig, action) in previous {
            let _ = signals::set(sig, Action::Saved(action));
        }
    }
    res.map(|_| line.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_defuses_control_characters() {
        assert_eq!(one_line("a\x1b[2Jb\r\n\tc  d "), "a [2Jb c d");
        assert_eq!(one_line("  x"), "x");
    }

    #[test]
    fn escape_controls_keeps_text_and_defuses_controls() {
        assert_eq!(escape_controls("plain text"), "plain text");
        assert_eq!(escape_controls("Grüße, 日本"), "Grüße, 日本");
        assert_eq!(
            escape_controls("a\x1b]0;pwned\x07b\tc\x7f\u{9b}d"),
            "a\\x1b]0;pwned\\x07b\\x09c\\x7f\\u{9b}d"
        );
    }

    #[test]
    fn cut_counts_display_columns() {
        assert_eq!(cut("hello", 5), "hello");
        assert_eq!(cut("hello world", 6), "hello…");
        assert_eq!(cut("日本語テキスト", 5), "日本…");
        assert_eq!(width(&fit("日本語", 8)), 8);
        assert_eq!(fit("abc", 2), "a…");
    }

    #[test]
    fn local_time_follows_the_zone() {
        let at = |tz: &str| local_time_in(&Zone::from_tz(Some(tz.as_ref())), 1_700_000_000);
        let time = |year, month, day, hour, minute| {
            Some(LocalTime {
                year,
                month,
                day,
                hour,
                minute,
            })
        };
        assert_eq!(at("UTC0"), time(2023, 11, 14, 22, 13));
        assert_eq!(at(""), time(2023, 11, 14, 22, 13));
        assert_eq!(at("<+0530>-5:30"), time(2023, 11, 15, 3, 43));
        assert_eq!(at("<-0930>9:30"), time(2023, 11, 14, 12, 43));
        assert_eq!(
            local_time_in(&Zone::from_tz(Some("UTC0".as_ref())), -1),
            time(1969, 12, 31, 23, 59)
        );
    }

    #[test]
    fn dates_are_compact_and_fixed_width() {
        // Whatever the local zone, both forms are 12 columns.
        let now = 1_700_000_000;
        assert_eq!(compact_date(now - 3600, now).len(), 12);
        assert_eq!(compact_date(now - 400 * 86400, now).len(), 12);
        assert!(compact_date(now - 400 * 86400, now).ends_with("2022"));
        assert_eq!(iso_minutes(now).len(), 16);
    }
}
