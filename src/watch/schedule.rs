//! Which account runs when: the pure part of `watch`, with no clock and no
//! threads of its own (the caller passes `now` and a source of jitter), so
//! every rule is tested without waiting.
//!
//! The rules: each account runs every `interval`, its first run at a
//! random point of its first interval (fifty accounts started together do
//! not all connect in the same second); a mailbox has one run at a time;
//! at most `jobs` run at once, the longest overdue first; a temporary
//! failure backs off ([`super::backoff`]), any other keeps the interval.
//! A run is asked for early by SIGUSR1 or IDLE ([`Schedule::run_now`]):
//! when the account is running, it runs again as soon as it ends.

use std::time::{Duration, Instant};

use super::backoff;
use crate::error::ExitKind;

/// What the schedule needs of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    /// The mailbox identity (`Account::identity`): one run at a time each.
    pub mailbox: String,
    pub interval: Duration,
}

#[derive(Debug)]
struct Job {
    spec: Spec,
    next: Instant,
    running: bool,
    /// Asked to run now while it was running.
    again: bool,
    /// Temporary failures in a row.
    failures: u32,
    /// Taken out of the config while it ran: forgotten when it ends.
    retired: bool,
}

/// When the next run of an account is, after one ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Next {
    pub after: Duration,
    /// Temporary failures in a row (0 after any other outcome).
    pub failures: u32,
}

#[derive(Debug, Default)]
pub struct Schedule {
    jobs: Vec<Job>,
}

impl Schedule {
    /// A schedule for `specs`, their first runs spread over their first
    /// interval.
    pub fn new(specs: Vec<Spec>, now: Instant, jitter: &mut dyn FnMut() -> f64) -> Schedule {
        let mut s = Schedule::default();
        s.replace(specs, now, jitter);
        s
    }

    /// Takes a reloaded config's accounts: an account kept as it was keeps
    /// its next run and its failures; a new or changed one starts as at
    /// startup; one taken out is forgotten (when it is running, once it
    /// ends). Returns the names added and removed.
    pub fn replace(
        &mut self,
        specs: Vec<Spec>,
        now: Instant,
        jitter: &mut dyn FnMut() -> f64,
    ) -> (Vec<String>, Vec<String>) {
        let before: Vec<String> = self.names().map(str::to_string).collect();
        let mut removed = Vec::new();
        for job in &mut self.jobs {
            if !job.retired && !specs.contains(&job.spec) {
                job.retired = true;
                if !specs.iter().any(|s| s.name == job.spec.name) {
                    removed.push(job.spec.name.clone());
                }
            }
        }
        self.jobs.retain(|j| !j.retired || j.running);
        let mut added = Vec::new();
        for spec in specs {
            if self.jobs.iter().any(|j| !j.retired && j.spec == spec) {
                continue;
            }
            if !before.contains(&spec.name) {
                added.push(spec.name.clone());
            }
            let first = spec.interval.mul_f64(jitter().clamp(0.0, 1.0));
            self.jobs.push(Job {
                next: now + first,
                spec,
                running: false,
                again: false,
                failures: 0,
                retired: false,
            });
        }
        (added, removed)
    }

    /// The accounts to start now (marked running): due, their mailbox
    /// idle, at most `jobs` running in all, the longest overdue first.
    pub fn start_due(&mut self, now: Instant, jobs: usize) -> Vec<String> {
        let mut due: Vec<usize> = (0..self.jobs.len())
            .filter(|&i| {
                let j = &self.jobs[i];
                !j.running && !j.retired && j.next <= now
            })
            .collect();
        due.sort_by_key(|&i| self.jobs[i].next);
        let mut started = Vec::new();
        for i in due {
            if self.running() >= jobs {
                break;
            }
            let mailbox = &self.jobs[i].spec.mailbox;
            if self
                .jobs
                .iter()
                .any(|j| j.running && &j.spec.mailbox == mailbox)
            {
                continue;
            }
            self.jobs[i].running = true;
            started.push(self.jobs[i].spec.name.clone());
        }
        started
    }

    /// Records the end of an account's run (`failure`: its exit kind) and
    /// says when it runs next. `None` for an account no longer watched.
    pub fn finished(
        &mut self,
        name: &str,
        failure: Option<ExitKind>,
        now: Instant,
        jitter: &mut dyn FnMut() -> f64,
    ) -> Option<Next> {
        let i = self
            .jobs
            .iter()
            .position(|j| j.running && j.spec.name == name)?;
        if self.jobs[i].retired {
            self.jobs.remove(i);
            return None;
        }
        let job = &mut self.jobs[i];
        job.running = false;
        let after = match failure {
            Some(ExitKind::TempFail) => {
                job.failures += 1;
                backoff::delay(job.spec.interval, job.failures, jitter())
            }
            _ => {
                job.failures = 0;
                job.spec.interval
            }
        };
        let after = if std::mem::take(&mut job.again) {
            Duration::ZERO
        } else {
            after
        };
        job.next = now + after;
        Some(Next {
            after,
            failures: job.failures,
        })
    }

    /// Runs every account now (SIGUSR1), or the one named (IDLE saw new
    /// mail); one that is running runs again when it ends. Backoff is
    /// forgiven: the user asked.
    pub fn run_now(&mut self, name: Option<&str>, now: Instant) {
        for job in &mut self.jobs {
            if job.retired || name.is_some_and(|n| n != job.spec.name) {
                continue;
            }
            if job.running {
                job.again = true;
            } else {
                job.next = job.next.min(now);
            }
        }
    }

    /// How long the caller may sleep before something is due: `None` when
    /// nothing can start until a run ends (every slot taken, or nothing
    /// left to wait for).
    pub fn wait(&self, now: Instant, jobs: usize) -> Option<Duration> {
        if self.running() >= jobs {
            return None;
        }
        self.jobs
            .iter()
            .filter(|j| {
                !j.running
                    && !j.retired
                    && !self
                        .jobs
                        .iter()
                        .any(|r| r.running && r.spec.mailbox == j.spec.mailbox)
            })
            .map(|j| j.next.saturating_duration_since(now))
            .min()
    }

    pub fn running(&self) -> usize {
        self.jobs.iter().filter(|j| j.running).count()
    }

    /// The accounts watched, in config order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.jobs
            .iter()
            .filter(|j| !j.retired)
            .map(|j| j.spec.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn spec(name: &str, mailbox: &str, secs: u64) -> Spec {
        Spec {
            name: name.into(),
            mailbox: mailbox.into(),
            interval: Duration::from_secs(secs),
        }
    }

    fn fixed(u: f64) -> impl FnMut() -> f64 {
        move || u
    }

    #[test]
    fn first_runs_are_spread_over_the_first_interval() {
        let t0 = Instant::now();
        let mut units = [0.0, 0.5, 0.9].into_iter();
        let mut jitter = move || units.next().unwrap();
        let mut s = Schedule::new(
            vec![
                spec("a", "a@h", 100),
                spec("b", "b@h", 100),
                spec("c", "c@h", 100),
            ],
            t0,
            &mut jitter,
        );
        assert_eq!(s.start_due(t0, 4), vec!["a"]);
        assert_eq!(s.wait(t0, 4), Some(50 * SEC));
        assert_eq!(s.start_due(t0 + 50 * SEC, 4), vec!["b"]);
        assert_eq!(s.wait(t0 + 50 * SEC, 4), Some(40 * SEC));
        assert_eq!(s.start_due(t0 + 95 * SEC, 4), vec!["c"]);
    }

    #[test]
    fn at_most_jobs_at_once_and_one_run_per_mailbox() {
        let t0 = Instant::now();
        let mut j = fixed(0.0);
        let mut s = Schedule::new(
            vec![
                spec("a", "a@h", 10),
                spec("a2", "a@h", 10),
                spec("b", "b@h", 10),
                spec("c", "c@h", 10),
            ],
            t0,
            &mut j,
        );
        assert_eq!(s.start_due(t0, 2), vec!["a", "b"]);
        // Every slot taken: nothing to wait for but a run's end.
        assert_eq!(s.wait(t0, 2), None);
        assert_eq!(s.start_due(t0, 2), Vec::<String>::new());
        s.finished("b", None, t0, &mut j);
        // a2 shares a's mailbox: c goes first.
        assert_eq!(s.start_due(t0, 2), vec!["c"]);
        s.finished("a", None, t0, &mut j);
        assert_eq!(s.start_due(t0, 2), vec!["a2"]);
    }

    #[test]
    fn temporary_failures_back_off_and_others_keep_the_interval() {
        let t0 = Instant::now();
        let mut j = fixed(0.5);
        let mut s = Schedule::new(vec![spec("a", "a@h", 10)], t0, &mut j);
        s.start_due(t0 + 5 * SEC, 1);
        let n = s
            .finished("a", Some(ExitKind::TempFail), t0, &mut j)
            .unwrap();
        assert_eq!(
            n,
            Next {
                after: 10 * SEC,
                failures: 1
            }
        );
        s.start_due(t0 + 10 * SEC, 1);
        let n = s
            .finished("a", Some(ExitKind::TempFail), t0, &mut j)
            .unwrap();
        assert_eq!(
            n,
            Next {
                after: 20 * SEC,
                failures: 2
            }
        );
        s.start_due(t0 + 20 * SEC, 1);
        let n = s.finished("a", Some(ExitKind::NoPerm), t0, &mut j).unwrap();
        assert_eq!(
            n,
            Next {
                after: 10 * SEC,
                failures: 0
            }
        );
        s.start_due(t0 + 10 * SEC, 1);
        let n = s.finished("a", None, t0, &mut j).unwrap();
        assert_eq!(
            n,
            Next {
                after: 10 * SEC,
                failures: 0
            }
        );
    }

    #[test]
    fn run_now_starts_waiting_accounts_and_reruns_running_ones() {
        let t0 = Instant::now();
        let mut j = fixed(0.5);
        let mut s = Schedule::new(
            vec![spec("a", "a@h", 100), spec("b", "b@h", 100)],
            t0,
            &mut j,
        );
        assert_eq!(s.start_due(t0 + 50 * SEC, 4), vec!["a", "b"]);
        s.finished("b", None, t0 + 50 * SEC, &mut j);
        s.run_now(None, t0 + 51 * SEC);
        assert_eq!(s.start_due(t0 + 51 * SEC, 4), vec!["b"]);
        let n = s.finished("a", None, t0 + 52 * SEC, &mut j).unwrap();
        assert_eq!(n.after, Duration::ZERO);
        assert_eq!(s.start_due(t0 + 52 * SEC, 4), vec!["a"]);
        s.finished("a", None, t0 + 53 * SEC, &mut j);
        s.run_now(Some("b"), t0 + 54 * SEC);
        assert_eq!(s.wait(t0 + 54 * SEC, 4), Some(99 * SEC));
    }

    #[test]
    fn a_reload_keeps_unchanged_accounts_and_adds_and_removes() {
        let t0 = Instant::now();
        let mut j = fixed(0.5);
        let mut s = Schedule::new(
            vec![spec("a", "a@h", 100), spec("b", "b@h", 100)],
            t0,
            &mut j,
        );
        assert_eq!(s.start_due(t0 + 50 * SEC, 1), vec!["a"]);
        let (added, removed) = s.replace(
            vec![spec("b", "b@h", 100), spec("c", "c@h", 10)],
            t0 + 60 * SEC,
            &mut fixed(0.0),
        );
        assert_eq!(
            (added, removed),
            (vec!["c".to_string()], vec!["a".to_string()])
        );
        assert_eq!(s.names().collect::<Vec<_>>(), vec!["b", "c"]);
        // a ran on: its end is taken, and it is gone.
        assert_eq!(s.finished("a", None, t0 + 61 * SEC, &mut j), None);
        assert_eq!(s.running(), 0);
        // b kept its first run (t0 + 50 s); c starts at once (jitter 0).
        assert_eq!(s.start_due(t0 + 61 * SEC, 4), vec!["b", "c"]);
        // A changed interval is a new job for the same name.
        s.finished("b", None, t0 + 62 * SEC, &mut j);
        let (added, removed) = s.replace(
            vec![spec("b", "b@h", 5), spec("c", "c@h", 10)],
            t0 + 63 * SEC,
            &mut fixed(0.0),
        );
        assert!(added.is_empty() && removed.is_empty());
        assert_eq!(s.start_due(t0 + 63 * SEC, 4), vec!["b"]);
        assert_eq!(
            s.finished("c", None, t0 + 64 * SEC, &mut j).unwrap().after,
            10 * SEC
        );
    }
}
