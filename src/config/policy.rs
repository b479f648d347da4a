//! Validators for what a sync does with the mail and how long it waits:
//! `keep`, `keep_days`, `max_size`, `filter`, `timeout`, `command_timeout`,
//! and how often `watch` syncs (`interval`).

use std::time::Duration;

use super::section::Value;
use super::Protocol;
use crate::error::Result;

/// A `true`/`false` key, `default` when unset.
pub(super) fn flag(v: Option<Value>, default: bool) -> Result<bool> {
    v.map_or(Ok(default), |v| v.bool())
}

/// A time limit in whole seconds, 1 to 3600; `default` seconds when unset.
pub(super) fn seconds(v: Option<Value>, default: u64) -> Result<Duration> {
    let Some(v) = v else {
        return Ok(Duration::from_secs(default));
    };
    let n = v.int()?;
    if !(1..=3600).contains(&n) {
        return Err(v.err(format!("{} = {n}: expected 1 to 3600 seconds", v.key)));
    }
    Ok(Duration::from_secs(n as u64))
}

/// The shortest and longest `interval`: a poll more often than every few
/// seconds is a busy loop against someone's server, and one rarer than a
/// day is better served by a timer.
const INTERVAL_MIN: Duration = Duration::from_secs(1);
const INTERVAL_MAX: Duration = Duration::from_secs(24 * 3600);

/// `interval`: how often `watch` syncs, "30s", "5m" or "1h"; 5 minutes
/// when unset.
pub(super) fn interval(v: Option<Value>) -> Result<Duration> {
    let Some(v) = v else {
        return Ok(Duration::from_secs(300));
    };
    let s = v.str()?;
    match parse_interval(s) {
        Some(d) if (INTERVAL_MIN..=INTERVAL_MAX).contains(&d) => Ok(d),
        Some(_) => Err(v.err(format!("interval = {s:?}: expected 1s to 24h"))),
        None => Err(v.err(format!(
            "interval = {s:?}: expected a number with s, m or h, like \"30s\", \"5m\" or \"1h\""
        ))),
    }
}

/// Parses `30s`, `5m`, `1h` (spaces allowed before the unit).
pub fn parse_interval(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return None,
    };
    n.checked_mul(factor).map(Duration::from_secs)
}

/// `keep_days`: 0 or more, and only with `keep`.
pub(super) fn keep_days(v: Option<Value>, keep: bool) -> Result<Option<u32>> {
    let Some(v) = v else {
        return Ok(None);
    };
    let n = v.int()?;
    let days =
        u32::try_from(n).map_err(|_| v.err(format!("keep_days = {n}: expected 0 or more days")))?;
    if !keep {
        return Err(
            v.err("keep_days needs keep = true (with keep = false messages are deleted at once)")
        );
    }
    Ok(Some(days))
}

/// `max_size`: a size with its unit, such as "25 MB".
pub(super) fn max_size(v: Option<Value>) -> Result<Option<u64>> {
    let Some(v) = v else {
        return Ok(None);
    };
    let s = v.str()?;
    parse_size(s).map(Some).ok_or_else(|| {
        v.err(format!(
            "max_size = {s:?}: expected a size like \"25 MB\" (B, KB, MB, GB, KiB, MiB, GiB)"
        ))
    })
}

/// Parses `25 MB`, `1.5MiB`, `300 KB`, `1000` (bytes). KB/MB/GB are
/// decimal, KiB/MiB/GiB binary.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * factor;
    (bytes.is_finite() && bytes >= 1.0).then_some(bytes as u64)
}

/// `filter`: a command, for a source that can show the headers alone.
pub(super) fn filter(v: Option<Value>, protocol: Protocol, header: &str) -> Result<Option<String>> {
    let Some(v) = v else {
        return Ok(None);
    };
    let f = v.str()?;
    if f.trim().is_empty() {
        return Err(v.err("`filter` is empty"));
    }
    // A filter judges the header block, which POP2 cannot show without
    // sending the whole message: it would never run.
    if protocol == Protocol::Pop2 {
        return Err(v.err(format!(
            "{header}: `filter` needs POP3 (it reads the headers with TOP); a POP2 \
             account cannot run it: take it out of this account (or out of [defaults])"
        )));
    }
    Ok(Some(f.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::section::with_first_account;

    #[test]
    fn seconds_take_1_to_3600_name_the_key_and_default() {
        let text = "[defaults]\ncommand_timeout = 30\n[accounts.a]\ntimeout = 0\n";
        with_first_account(text, |s| {
            let err = seconds(s.get("timeout"), 60).unwrap_err().to_string();
            assert_eq!(
                err,
                "/etc/popfetch/config.toml:4: timeout = 0: expected 1 to 3600 seconds"
            );
            let inherited = seconds(s.get("command_timeout"), 300).unwrap();
            assert_eq!(inherited, Duration::from_secs(30));
            let unset = seconds(s.get("command_timeout_typo"), 300).unwrap();
            assert_eq!(unset, Duration::from_secs(300));
        });
    }

    #[test]
    fn intervals_take_a_unit_and_stay_within_a_day() {
        assert_eq!(parse_interval("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_interval("5 m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_interval("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_interval("5"), None);
        assert_eq!(parse_interval("1.5m"), None);
        assert_eq!(parse_interval("m"), None);
        let text = "[defaults]\ninterval = \"10m\"\n[accounts.a]\n";
        with_first_account(text, |s| {
            assert_eq!(
                interval(s.get("interval")).unwrap(),
                Duration::from_secs(600)
            );
        });
        let text = "[accounts.a]\ninterval = \"5\"\n";
        with_first_account(text, |s| {
            let err = interval(s.get("interval")).unwrap_err().to_string();
            assert!(err.starts_with("/etc/popfetch/config.toml:2: interval = \"5\": expected a number with s, m or h"), "{err}");
        });
        let text = "[accounts.a]\ninterval = \"0s\"\n";
        with_first_account(text, |s| {
            let err = interval(s.get("interval")).unwrap_err().to_string();
            assert!(err.ends_with("expected 1s to 24h"), "{err}");
        });
        with_first_account("[accounts.a]\n", |s| {
            assert_eq!(
                interval(s.get("interval")).unwrap(),
                Duration::from_secs(300)
            );
        });
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("25 MB"), Some(25_000_000));
        assert_eq!(parse_size("1MiB"), Some(1_048_576));
        assert_eq!(parse_size("1.5 kb"), Some(1500));
        assert_eq!(parse_size("300"), Some(300));
        assert_eq!(parse_size("MB"), None);
        assert_eq!(parse_size("0"), None);
    }
}
