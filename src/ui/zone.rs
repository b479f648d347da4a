//! The local time zone, read the way the C library reads it, without libc
//! or a date crate: `TZ` when set (a zone file such as `Europe/Berlin` or
//! `:/path`, else a POSIX rule such as `CET-1CEST,M3.5.0,M10.5.0/3`),
//! else `/etc/localtime`; UTC when none of these can be read.
//!
//! Zone files are TZif (RFC 8536): a table of transitions, and for times
//! after the last one (version 2 and later) a POSIX rule in the footer.
//! Leap-second corrections (the `right/` zones) are ignored: the tables
//! show minutes.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::calendar::{civil_from_days, days_from_civil};

/// Which UTC offset applies when.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Zone {
    /// Transition times (Unix seconds, ascending) and the offset from each.
    transitions: Vec<(i64, i32)>,
    /// Before the first transition (or always, with none).
    initial: i32,
    /// After the last transition, when the zone has a rule for it.
    rule: Option<Rule>,
}

impl Zone {
    const UTC: Zone = Zone {
        transitions: Vec::new(),
        initial: 0,
        rule: None,
    };

    /// Seconds east of UTC at Unix time `t`.
    pub(crate) fn offset_at(&self, t: i64) -> i32 {
        match self.transitions.partition_point(|&(at, _)| at <= t) {
            0 => match (&self.rule, self.transitions.is_empty()) {
                (Some(rule), true) => rule.offset_at(t),
                _ => self.initial,
            },
            n if n == self.transitions.len() => match &self.rule {
                Some(rule) => rule.offset_at(t),
                None => self.transitions[n - 1].1,
            },
            n => self.transitions[n - 1].1,
        }
    }

    /// The zone a `TZ` value names (`None`: unset, `/etc/localtime`).
    pub(crate) fn from_tz(tz: Option<&OsStr>) -> Zone {
        let Some(tz) = tz else {
            return read_tzif(Path::new("/etc/localtime")).unwrap_or(Zone::UTC);
        };
        let tz = tz.to_string_lossy();
        let name = tz.strip_prefix(':').unwrap_or(&tz);
        if name.is_empty() {
            return Zone::UTC;
        }
        if let Some(zone) = zone_file(name).and_then(|p| read_tzif(&p)) {
            return zone;
        }
        match Rule::parse(name) {
            Some(rule) => Zone {
                transitions: Vec::new(),
                initial: rule.std,
                rule: Some(rule),
            },
            // The C library takes an unknown zone as UTC, too.
            None => Zone::UTC,
        }
    }

    /// The zone of this process, read again only when `TZ` changes.
    pub(crate) fn local() -> Arc<Zone> {
        type Cache = Mutex<Option<(Option<std::ffi::OsString>, Arc<Zone>)>>;
        static CACHE: Cache = Mutex::new(None);
        let tz = std::env::var_os("TZ");
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        match &*cache {
            Some((seen, zone)) if *seen == tz => zone.clone(),
            _ => {
                let zone = Arc::new(Zone::from_tz(tz.as_deref()));
                *cache = Some((tz, zone.clone()));
                zone
            }
        }
    }
}

/// Where the zone file a `TZ` value names is: absolute as given, else
/// under `$TZDIR` or the system's zoneinfo. `..` is refused, as it would
/// name a file outside the zone database.
fn zone_file(name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    if path.is_absolute() {
        return Some(path.to_path_buf());
    }
    if path
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return None;
    }
    let dir = std::env::var_os("TZDIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from("/usr/share/zoneinfo"), PathBuf::from);
    Some(dir.join(path))
}

/// Real zone files are a few KB; anything far larger is not one.
const MAX_TZIF: u64 = 256 * 1024;

fn read_tzif(path: &Path) -> Option<Zone> {
    use std::io::Read;
    let mut data = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_TZIF + 1)
        .read_to_end(&mut data)
        .ok()?;
    if data.len() as u64 > MAX_TZIF {
        return None;
    }
    parse_tzif(&data)
}

/// A TZif file's transitions and footer rule (RFC 8536). `None` for
/// anything malformed.
fn parse_tzif(data: &[u8]) -> Option<Zone> {
    let (v1, rest) = TzifBlock::parse(data, 4)?;
    if data[4] == 0 {
        return v1.zone(data, None);
    }
    // Version 2 and later repeat the data with 64-bit times, then a footer.
    let (v2, footer) = TzifBlock::parse(rest, 8)?;
    let footer = footer.strip_prefix(b"\n")?;
    let end = footer.iter().position(|&b| b == b'\n')?;
    let footer = std::str::from_utf8(&footer[..end]).ok()?;
    // An empty footer: no rule, the last transition holds.
    let rule = if footer.is_empty() {
        None
    } else {
        Some(Rule::parse(footer)?)
    };
    v2.zone(rest, rule)
}

/// One header and its data block, as offsets into the bytes it came from.
struct TzifBlock {
    time_size: usize,
    timecnt: usize,
    typecnt: usize,
    /// Where the transition times start.
    data: usize,
}

impl TzifBlock {
    /// The block at the start of `bytes` and what follows it.
    fn parse(bytes: &[u8], time_size: usize) -> Option<(TzifBlock, &[u8])> {
        if bytes.len() < 44 || &bytes[..4] != b"TZif" {
            return None;
        }
        let count = |i: usize| -> Option<usize> {
            let b: [u8; 4] = bytes[20 + 4 * i..24 + 4 * i].try_into().ok()?;
            usize::try_from(u32::from_be_bytes(b)).ok()
        };
        let (isutcnt, isstdcnt, leapcnt) = (count(0)?, count(1)?, count(2)?);
        let (timecnt, typecnt, charcnt) = (count(3)?, count(4)?, count(5)?);
        if typecnt == 0 {
            return None;
        }
        let len = timecnt
            .checked_mul(time_size + 1)?
            .checked_add(typecnt.checked_mul(6)?)?
            .checked_add(charcnt)?
            .checked_add(leapcnt.checked_mul(time_size + 4)?)?
            .checked_add(isstdcnt)?
            .checked_add(isutcnt)?;
        let end = 44usize.checked_add(len)?;
        if bytes.len() < end {
            return None;
        }
        let block = TzifBlock {
            time_size,
            timecnt,
            typecnt,
            data: 44,
        };
        Some((block, &bytes[end..]))
    }

    /// The zone this block describes; `bytes` is what it was parsed from.
    fn zone(&self, bytes: &[u8], rule: Option<Rule>) -> Option<Zone> {
        let types_at = self.data + self.timecnt * self.time_size;
        let infos_at = types_at + self.timecnt;
        let offset_of = |ty: usize| -> Option<i32> {
            if ty >= self.typecnt {
                return None;
            }
            let at = infos_at + 6 * ty;
            let off = i32::from_be_bytes(bytes[at..at + 4].try_into().ok()?);
            // RFC 8536 forbids -2^31; real offsets are within a day.
            (off.abs() <= 26 * 3600).then_some(off)
        };
        let mut transitions = Vec::with_capacity(self.timecnt);
        for i in 0..self.timecnt {
            let at = self.data + i * self.time_size;
            let time = match self.time_size {
                4 => i64::from(i32::from_be_bytes(bytes[at..at + 4].try_into().ok()?)),
                _ => i64::from_be_bytes(bytes[at..at + 8].try_into().ok()?),
            };
            if transitions.last().is_some_and(|&(prev, _)| time <= prev) {
                return None;
            }
            transitions.push((time, offset_of(usize::from(bytes[types_at + i]))?));
        }
        Some(Zone {
            transitions,
            initial: offset_of(0)?,
            rule,
        })
    }
}

/// A POSIX `TZ` rule: standard time, and daylight time between two dates
/// of every year.
#[derive(Clone, Debug, PartialEq)]
struct Rule {
    /// Seconds east of UTC.
    std: i32,
    dst: Option<Dst>,
}

#[derive(Clone, Debug, PartialEq)]
struct Dst {
    offset: i32,
    /// When daylight time starts (local standard time) and ends (local
    /// daylight time): a day of the year and seconds into it.
    start: (Day, i32),
    end: (Day, i32),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Day {
    /// `Jn`: 1–365, February 29 never counted.
    Julian(u16),
    /// `n`: 0–365, February 29 counted in leap years.
    ZeroBased(u16),
    /// `Mm.w.d`: weekday `d` (0 = Sunday) of week `w` (5 = last) of
    /// month `m`.
    Month { month: u8, week: u8, weekday: u8 },
}

impl Rule {
    /// `std offset [dst [offset] [,start[/time],end[/time]]]`.
    fn parse(s: &str) -> Option<Rule> {
        let mut p = Parser { s: s.as_bytes() };
        p.name()?;
        // POSIX offsets count hours west of UTC.
        let std = -p.duration(24)?;
        if p.s.is_empty() {
            return Some(Rule { std, dst: None });
        }
        p.name()?;
        let offset = match p.s.first() {
            Some(b',') | None => std + 3600,
            _ => -p.duration(24)?,
        };
        let (start, end) = if p.s.is_empty() {
            // No dates: the C library's default, the US rules.
            (
                (
                    Day::Month {
                        month: 3,
                        week: 2,
                        weekday: 0,
                    },
                    7200,
                ),
                (
                    Day::Month {
                        month: 11,
                        week: 1,
                        weekday: 0,
                    },
                    7200,
                ),
            )
        } else {
            p.byte(b',')?;
            let start = p.date()?;
            p.byte(b',')?;
            let end = p.date()?;
            (start, end)
        };
        if !p.s.is_empty() {
            return None;
        }
        Some(Rule {
            std,
            dst: Some(Dst { offset, start, end }),
        })
    }

    fn offset_at(&self, t: i64) -> i32 {
        let Some(dst) = &self.dst else {
            return self.std;
        };
        let year = civil_from_days((t + i64::from(self.std)).div_euclid(86400)).0;
        let at = |(day, time): (Day, i32), offset: i32| {
            day.days_since_epoch(year) * 86400 + i64::from(time) - i64::from(offset)
        };
        let start = at(dst.start, self.std);
        let end = at(dst.end, dst.offset);
        let daylight = if start <= end {
            start <= t && t < end
        } else {
            // Southern hemisphere: daylight time spans the new year.
            !(end <= t && t < start)
        };
        if daylight {
            dst.offset
        } else {
            self.std
        }
    }
}

impl Day {
    fn days_since_epoch(self, year: i64) -> i64 {
        let jan1 = days_from_civil(year, 1, 1);
        match self {
            Day::Julian(n) => {
                let n = i64::from(n) - 1;
                jan1 + n + i64::from(is_leap(year) && n >= 59)
            }
            Day::ZeroBased(n) => jan1 + i64::from(n),
            Day::Month {
                month,
                week,
                weekday,
            } => {
                let first = days_from_civil(year, u32::from(month), 1);
                // 1970-01-01 was a Thursday (4).
                let first_weekday = (first + 4).rem_euclid(7);
                let mut day = first + (i64::from(weekday) - first_weekday).rem_euclid(7);
                day += 7 * (i64::from(week) - 1);
                let next_month = match month {
                    12 => days_from_civil(year + 1, 1, 1),
                    m => days_from_civil(year, u32::from(m) + 1, 1),
                };
                while day >= next_month {
                    day -= 7;
                }
                day
            }
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
}

impl Parser<'_> {
    fn byte(&mut self, b: u8) -> Option<()> {
        let (&first, rest) = self.s.split_first()?;
        (first == b).then(|| self.s = rest)
    }

    /// A zone abbreviation: three or more letters, or `<…>` quoted
    /// (letters, digits, `+`, `-`).
    fn name(&mut self) -> Option<()> {
        let len = if self.s.first() == Some(&b'<') {
            let close = self.s.iter().position(|&b| b == b'>')?;
            let inner = &self.s[1..close];
            if !inner
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'-')
            {
                return None;
            }
            self.s = &self.s[close + 1..];
            inner.len()
        } else {
            let len = self
                .s
                .iter()
                .take_while(|b| b.is_ascii_alphabetic())
                .count();
            self.s = &self.s[len..];
            len
        };
        (len >= 3).then_some(())
    }

    fn number(&mut self, max: u32) -> Option<u32> {
        let len = self.s.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 || len > 3 {
            return None;
        }
        let n = std::str::from_utf8(&self.s[..len]).ok()?.parse().ok()?;
        self.s = &self.s[len..];
        (n <= max).then_some(n)
    }

    /// `[+-]hh[:mm[:ss]]` in seconds, hours up to `max_hours`.
    fn duration(&mut self, max_hours: u32) -> Option<i32> {
        let sign = match self.s.first() {
            Some(b'-') => -1,
            Some(b'+') => 1,
            _ => 0,
        };
        if sign != 0 {
            self.s = &self.s[1..];
        }
        let mut secs = self.number(max_hours)? * 3600;
        for unit in [60, 1] {
            if self.byte(b':').is_none() {
                break;
            }
            secs += self.number(59)? * unit;
        }
        let secs = i32::try_from(secs).ok()?;
        Some(if sign < 0 { -secs } else { secs })
    }

    /// `Jn`, `n` or `Mm.w.d`, then `/time` (default 02:00; RFC 8536 allows
    /// -167 to 167 hours).
    fn date(&mut self) -> Option<(Day, i32)> {
        let day = match self.s.first()? {
            b'J' => {
                self.s = &self.s[1..];
                let n = self.number(365)?;
                (n >= 1).then_some(Day::Julian(n as u16))?
            }
            b'M' => {
                self.s = &self.s[1..];
                let month = self.number(12)?;
                self.byte(b'.')?;
                let week = self.number(5)?;
                self.byte(b'.')?;
                let weekday = self.number(6)?;
                if month == 0 || week == 0 {
                    return None;
                }
                Day::Month {
                    month: month as u8,
                    week: week as u8,
                    weekday: weekday as u8,
                }
            }
            _ => Day::ZeroBased(self.number(365)? as u16),
        };
        let time = if self.byte(b'/').is_some() {
            self.duration(167)?
        } else {
            7200
        };
        Some((day, time))
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(tz: &str) -> Zone {
        Zone::from_tz(Some(OsStr::new(tz)))
    }

    fn utc(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64) -> i64 {
        days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s
    }

    #[test]
    fn days_and_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn posix_rules_switch_at_the_right_second() {
        assert_eq!(zone("UTC0").offset_at(1_700_000_000), 0);
        assert_eq!(zone("").offset_at(1_700_000_000), 0);
        assert_eq!(zone("<+0530>-5:30").offset_at(0), 19_800);
        assert_eq!(zone("<-03>3").offset_at(0), -10_800);

        let cet = zone("CET-1CEST,M3.5.0,M10.5.0/3");
        assert_eq!(cet.offset_at(utc(2023, 1, 15, 12, 0, 0)), 3600);
        assert_eq!(cet.offset_at(utc(2023, 3, 26, 0, 59, 59)), 3600);
        assert_eq!(cet.offset_at(utc(2023, 3, 26, 1, 0, 0)), 7200);
        assert_eq!(cet.offset_at(utc(2023, 10, 29, 0, 59, 59)), 7200);
        assert_eq!(cet.offset_at(utc(2023, 10, 29, 1, 0, 0)), 3600);

        // Southern hemisphere: daylight time over the new year.
        let sydney = zone("AEST-10AEDT,M10.1.0,M4.1.0/3");
        assert_eq!(sydney.offset_at(utc(2023, 1, 1, 0, 0, 0)), 39_600);
        assert_eq!(sydney.offset_at(utc(2023, 4, 1, 15, 59, 59)), 39_600);
        assert_eq!(sydney.offset_at(utc(2023, 4, 1, 16, 0, 0)), 36_000);
        assert_eq!(sydney.offset_at(utc(2023, 9, 30, 15, 59, 59)), 36_000);
        assert_eq!(sydney.offset_at(utc(2023, 9, 30, 16, 0, 0)), 39_600);

        // No dates: the US rules, second Sunday of March to first of November.
        let ny = zone("EST5EDT");
        assert_eq!(ny.offset_at(utc(2023, 3, 12, 6, 59, 59)), -18_000);
        assert_eq!(ny.offset_at(utc(2023, 3, 12, 7, 0, 0)), -14_400);
        assert_eq!(ny.offset_at(utc(2023, 11, 5, 6, 0, 0)), -18_000);

        // Julian days, and daylight time all year (RFC 8536's example).
        assert_eq!(
            zone("EST5EDT,0/0,J365/25").offset_at(utc(2023, 7, 1, 0, 0, 0)),
            -14_400
        );
        assert_eq!(
            zone("EST5EDT,0/0,J365/25").offset_at(utc(2024, 1, 1, 0, 0, 0)),
            -14_400
        );
        let j = zone("XXX0YYY,J60/0,J61/0");
        // J60 is March 1, leap year or not.
        assert_eq!(j.offset_at(utc(2024, 3, 1, 12, 0, 0)), 3600);
        assert_eq!(j.offset_at(utc(2024, 2, 29, 12, 0, 0)), 0);
    }

    #[test]
    fn nonsense_is_utc() {
        for tz in [
            "X0",
            "CET-1CEST,M3.5.0",
            "CET-1CEST,M13.1.0,M10.5.0",
            "<ab",
            "../../etc/passwd",
        ] {
            assert_eq!(zone(tz), Zone::UTC, "{tz}");
        }
    }

    /// A version 2 TZif file: two transitions and a footer rule.
    fn tzif(footer: &str) -> Vec<u8> {
        fn header(out: &mut Vec<u8>, timecnt: u32, typecnt: u32, charcnt: u32) {
            out.extend_from_slice(b"TZif2");
            out.extend_from_slice(&[0; 15]);
            for n in [0, 0, 0, timecnt, typecnt, charcnt] {
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        let mut out = Vec::new();
        // An empty version 1 block, as zic -b slim writes.
        header(&mut out, 0, 1, 1);
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
        header(&mut out, 2, 2, 8);
        for t in [1_000_000_000i64, 2_000_000_000] {
            out.extend_from_slice(&t.to_be_bytes());
        }
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&3600i32.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&7200i32.to_be_bytes());
        out.extend_from_slice(&[1, 4]);
        out.extend_from_slice(b"ONE\0TWO\0");
        out.extend_from_slice(format!("\n{footer}\n").as_bytes());
        out
    }

    #[test]
    fn tzif_transitions_then_footer() {
        let z = parse_tzif(&tzif("<+03>-3")).unwrap();
        assert_eq!(z.offset_at(0), 3600);
        assert_eq!(z.offset_at(999_999_999), 3600);
        assert_eq!(z.offset_at(1_000_000_000), 7200);
        assert_eq!(z.offset_at(1_999_999_999), 7200);
        // After the last transition (to 3600), the footer rules.
        assert_eq!(z.offset_at(2_000_000_000), 10_800);
        let z = parse_tzif(&tzif("")).unwrap();
        assert_eq!(z.offset_at(3_000_000_000), 3600);
    }

    #[test]
    fn malformed_tzif_is_refused() {
        let good = tzif("<+03>-3");
        for len in 0..good.len() - 1 {
            assert_eq!(parse_tzif(&good[..len]), None, "cut at {len}");
        }
        let mut bad_type = good.clone();
        // After the version 1 block (51 bytes), a header and two times.
        let at = 51 + 44 + 16;
        assert_eq!(bad_type[at], 1);
        bad_type[at] = 9;
        assert_eq!(parse_tzif(&bad_type), None);
    }

    /// The system's zone database read here and by `date` (the C
    /// library's reading) agree; skipped where either is missing.
    #[test]
    fn agrees_with_the_c_library_on_real_zones() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let zones = [
            "Europe/Berlin",
            "America/New_York",
            "Australia/Sydney",
            "Asia/Kolkata",
            "America/Sao_Paulo",
            "Pacific/Chatham",
            "Africa/Casablanca",
            "CET-1CEST,M3.5.0,M10.5.0/3",
            "NZST-12NZDT,M9.5.0,M4.1.0/3",
        ];
        // 1950 to 2100, about every 11 days and at odd seconds.
        let times: Vec<i64> = (0..5000).map(|i| -631_152_000 + i * 950_411).collect();
        for tz in zones {
            if !tz.contains(',') && !Path::new("/usr/share/zoneinfo").join(tz).exists() {
                eprintln!("no zone file for {tz}: skipped");
                continue;
            }
            let child = Command::new("date")
                .env("TZ", tz)
                .env_remove("TZDIR")
                .args(["-f", "-", "+%Y-%m-%d %H:%M"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn();
            let Ok(mut child) = child else {
                eprintln!("no date command: skipped");
                return;
            };
            // The C library applies a rule only from 1970 on.
            let from = if tz.contains(',') { 0 } else { i64::MIN };
            let times: Vec<i64> = times.iter().copied().filter(|&t| t >= from).collect();
            let input: String = times.iter().map(|t| format!("@{t}\n")).collect();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            if !out.status.success() {
                eprintln!("date -f failed: skipped");
                return;
            }
            let z = zone(tz);
            let theirs = String::from_utf8(out.stdout).unwrap();
            for (t, line) in times.iter().zip(theirs.lines()) {
                let local = t + i64::from(z.offset_at(*t));
                let (y, mo, d) = civil_from_days(local.div_euclid(86400));
                let s = local.rem_euclid(86400);
                let ours = format!("{y:04}-{mo:02}-{d:02} {:02}:{:02}", s / 3600, s / 60 % 60);
                assert_eq!(ours, line, "TZ={tz} at {t}");
            }
        }
    }
}
