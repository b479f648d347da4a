//! The per-account progress display: a phase spinner, then a bar over
//! the transfer. Used by the engine; imports nothing of it.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

use crate::ui::units::human_bytes;

/// One account's progress display; does nothing when hidden.
pub struct Progress {
    bar: Option<ProgressBar>,
    done: AtomicU64,
    total: AtomicU64,
    /// Bytes of the messages done, by their LIST sizes (the bar's unit).
    bytes_done: AtomicU64,
    /// A phase was shown: the spinner style is in place.
    phases: AtomicBool,
}

/// Below this the rate and the time left are guesses from too little.
const MIN_ELAPSED_FOR_RATE: Duration = Duration::from_secs(1);

impl Progress {
    pub fn hidden() -> Progress {
        Progress::with_bar(None)
    }

    pub(crate) fn with_bar(bar: Option<ProgressBar>) -> Progress {
        Progress {
            bar,
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            phases: AtomicBool::new(false),
        }
    }

    /// Shows what the account is doing before the transfer starts
    /// ("connecting", "logging in", "listing", "filtering 3/40").
    pub fn phase(&self, text: &str) {
        if let Some(bar) = &self.bar {
            if !self.phases.swap(true, Ordering::Relaxed) {
                bar.set_style(
                    ProgressStyle::with_template("{prefix:.bold} {spinner} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.enable_steady_tick(Duration::from_millis(100));
            }
            bar.set_message(text.to_string());
        }
    }

    /// The transfer starts: `messages` to fetch, `bytes` by their LIST sizes.
    pub fn start(&self, messages: u64, bytes: u64) {
        self.total.store(messages, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            if messages == 0 {
                // The last phase stays until the account is done.
                return;
            }
            bar.set_style(bar_style());
            // A phase after this (stopping) puts the spinner back.
            self.phases.store(false, Ordering::Relaxed);
            bar.set_length(bytes);
            bar.set_position(0);
            // Elapsed time and the rate count from here, not from the
            // connection: logging in and listing moved no message bytes.
            bar.reset();
            bar.set_message(format!("0/{messages} msgs"));
            bar.enable_steady_tick(Duration::from_millis(200));
        }
    }

    /// `bytes` of the message being received so far (at most its LIST
    /// size), so the bar and the rate move during a big message too.
    pub fn receiving(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(self.bytes_done.load(Ordering::Relaxed) + bytes);
        }
    }

    /// One message done; `bytes` is its LIST size.
    pub fn advance(&self, bytes: u64) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let position = self.bytes_done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Some(bar) = &self.bar {
            bar.set_position(position);
            bar.set_message(format!(
                "{done}/{} msgs",
                self.total.load(Ordering::Relaxed)
            ));
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The transfer's bar: messages, bytes, and from the first second on the
/// rate and the time left. indicatif's estimator is an exponentially
/// weighted average over the last seconds of real time, fed per read.
fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {msg} {amount}{rate}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("amount", |state: &ProgressState, w: &mut dyn fmt::Write| {
            match state.len() {
                // POP2 announces no sizes ahead.
                None | Some(0) => {
                    let _ = write!(w, "{}", human_bytes(state.pos()));
                }
                Some(len) => {
                    let _ = write!(w, "{}/{}", human_bytes(state.pos()), human_bytes(len));
                }
            }
        })
        .with_key("rate", |state: &ProgressState, w: &mut dyn fmt::Write| {
            let rate = state.per_sec();
            if state.elapsed() >= MIN_ELAPSED_FOR_RATE && rate >= 1.0 {
                let _ = write!(
                    w,
                    " {}/s ETA {}",
                    human_bytes(rate as u64),
                    short_duration(state.eta())
                );
            }
        })
        .progress_chars("=> ")
}

/// `42s`, `3m05s`, `1h02m`.
fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_is_short() {
        assert_eq!(short_duration(Duration::from_secs(42)), "42s");
        assert_eq!(short_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(short_duration(Duration::from_secs(3720)), "1h02m");
    }
}
