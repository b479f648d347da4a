//! When to try again after a temporary failure (exit 75: a timeout, a
//! dropped connection, `[IN-USE]`, `[LOGIN-DELAY]`, a busy lock).
//!
//! The first failure waits the usual interval; each one after doubles the
//! wait, up to [`CAP`] (or the interval itself, when that is longer). A
//! random quarter is taken off or put on each wait, so accounts that failed
//! together (one provider down, one network cut) do not all come back in
//! the same second. Other failures (a refused login, a broken config) keep
//! the interval: waiting longer would not fix them, and the user hears of
//! them every time.

use std::time::Duration;

/// The longest wait after temporary failures: an outage of a day costs at
/// most 24 tries, and mail is fetched within the hour after it ends.
pub const CAP: Duration = Duration::from_secs(3600);

/// The wait after `failures` temporary failures in a row (1 for the first),
/// for an account synced every `interval`. `unit` is a random number in
/// `[0, 1)`.
pub fn delay(interval: Duration, failures: u32, unit: f64) -> Duration {
    let cap = CAP.max(interval);
    let doublings = failures.saturating_sub(1).min(20);
    let base = interval.saturating_mul(1 << doublings).min(cap);
    // ±25 %, never past the cap.
    base.mul_f64(0.75 + 0.5 * unit.clamp(0.0, 1.0)).min(cap)
}

/// A random number in `[0, 1)` from the kernel: jitter needs no
/// reproducible sequence, and no state to keep.
pub fn unit() -> f64 {
    let mut b = [0u8; 8];
    let _ = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::NONBLOCK);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn doubles_from_the_interval_up_to_the_cap() {
        assert_eq!(delay(5 * MIN, 1, 0.5), 5 * MIN);
        assert_eq!(delay(5 * MIN, 2, 0.5), 10 * MIN);
        assert_eq!(delay(5 * MIN, 3, 0.5), 20 * MIN);
        assert_eq!(delay(5 * MIN, 4, 0.5), 40 * MIN);
        assert_eq!(delay(5 * MIN, 5, 0.5), CAP);
        assert_eq!(delay(5 * MIN, 1000, 0.99), CAP);
    }

    #[test]
    fn jitter_is_a_quarter_either_way() {
        assert_eq!(delay(4 * MIN, 1, 0.0), 3 * MIN);
        assert_eq!(delay(4 * MIN, 1, 1.0), 5 * MIN);
        let u = unit();
        assert!((0.0..1.0).contains(&u));
    }

    #[test]
    fn an_interval_longer_than_the_cap_is_the_cap() {
        let day = 24 * 60 * MIN;
        assert_eq!(delay(day, 3, 0.5), day);
    }
}
