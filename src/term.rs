//! Small terminal helpers for the human-readable tables: how wide stdout
//! is, local time without a date crate, and text that is safe to show
//! (a mail header is untrusted input: no escape sequences reach the
//! terminal) and cut to a display width.

use std::io::IsTerminal;

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// The width to cut lines to: the terminal's when stdout is one, else
/// `$COLUMNS` if set, else `None` (no cutting, e.g. into a pipe).
pub fn stdout_width() -> Option<usize> {
    if std::io::stdout().is_terminal() {
        if let Some(w) = tty_columns(libc::STDOUT_FILENO) {
            return Some(w);
        }
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&w| w > 0)
}

fn tty_columns(fd: libc::c_int) -> Option<usize> {
    // SAFETY: TIOCGWINSZ fills a `winsize` we own; a failing call leaves it
    // zeroed and returns -1.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then_some(ws.ws_col as usize)
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

/// Unix time → local time, with the system's time zone (`TZ` honoured).
pub fn local_time(secs: i64) -> Option<LocalTime> {
    // time_t is 32 bits on some targets.
    #[allow(clippy::useless_conversion)]
    let t: libc::time_t = secs.try_into().ok()?;
    // SAFETY: localtime_r writes into the `tm` we own and returns null on
    // failure; tzset makes it honour a `TZ` set after start-up.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe {
        tzset();
        !libc::localtime_r(&t, &mut tm).is_null()
    };
    ok.then(|| LocalTime {
        year: tm.tm_year + 1900,
        month: (tm.tm_mon + 1) as u32,
        day: tm.tm_mday as u32,
        hour: tm.tm_hour as u32,
        minute: tm.tm_min as u32,
    })
}

extern "C" {
    fn tzset();
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
    fn dates_are_compact_and_fixed_width() {
        // Whatever the local zone, both forms are 12 columns.
        let now = 1_700_000_000;
        assert_eq!(compact_date(now - 3600, now).len(), 12);
        assert_eq!(compact_date(now - 400 * 86400, now).len(), 12);
        assert!(compact_date(now - 400 * 86400, now).ends_with("2022"));
        assert_eq!(iso_minutes(now).len(), 16);
    }
}
