//! The fetch plan: from the server's listing, the seen state and the
//! account's policy, an action for every message. Pure, so every rule is
//! tested without a server.
//!
//! A message is identified by its UIDL. UIDLs the server gets wrong are
//! never trusted: an invalid one (empty, over 70 characters, not printable
//! ASCII) or one shared by two messages cannot tell those messages apart,
//! so they are left on the server untouched and reported, never marked
//! seen and never deleted.

use std::collections::{HashMap, HashSet};

use crate::pop3::codec::valid_uidl;
use crate::pop3::Listed;

/// What the account wants done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Leave messages on the server.
    pub keep: bool,
    /// Fetch messages already seen too (`--all`).
    pub refetch_seen: bool,
    /// With `keep`: delete messages first downloaded this many days ago.
    pub keep_days: Option<u32>,
    /// Leave larger messages (by their LIST size) on the server.
    pub max_size: Option<u64>,
    /// Unix time of this run, for `keep_days`.
    pub now: i64,
}

impl Policy {
    /// Keep everything, fetch only new messages: the default.
    pub fn keep_new() -> Policy {
        Policy {
            keep: true,
            refetch_seen: false,
            keep_days: None,
            max_size: None,
            now: 0,
        }
    }
}

/// Why a message is left alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    InvalidUidl(String),
    DuplicateUidl(String),
    /// Larger than `max_size` (the size the server announced).
    TooLarge(u64),
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::InvalidUidl(u) => write!(f, "the server gave it an invalid UIDL {u:?}"),
            SkipReason::DuplicateUidl(u) => write!(
                f,
                "the server gave the same UIDL {u:?} to several messages, so they cannot be told apart"
            ),
            SkipReason::TooLarge(size) => write!(
                f,
                "it is {} bytes, larger than max_size",
                size
            ),
        }
    }
}

/// A message to download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetch {
    pub number: u32,
    pub uidl: String,
    pub size: u64,
}

/// The plan for one session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// New (or, with `--all`, every) message, in server order.
    pub fetch: Vec<Fetch>,
    /// Already delivered earlier, to be deleted now (keep = false, or
    /// older than keep_days).
    pub delete_seen: Vec<(u32, String)>,
    /// Left on the server, with the reason.
    pub skip: Vec<(u32, SkipReason)>,
    /// Already delivered and kept on the server.
    pub kept: usize,
}

impl Plan {
    pub fn fetch_bytes(&self) -> u64 {
        self.fetch.iter().map(|f| f.size).sum()
    }
}

/// Builds the plan. `listing` must carry UIDLs.
pub fn plan(listing: &[Listed], seen: &HashMap<String, i64>, policy: Policy) -> Plan {
    let mut count: HashMap<&str, usize> = HashMap::with_capacity(listing.len());
    for entry in listing {
        if let Some(u) = &entry.uidl {
            *count.entry(u.as_str()).or_default() += 1;
        }
    }
    let mut plan = Plan::default();
    for entry in listing {
        let uidl = entry.uidl.as_deref().unwrap_or("");
        if !valid_uidl(uidl) {
            plan.skip
                .push((entry.number, SkipReason::InvalidUidl(uidl.to_string())));
            continue;
        }
        if count.get(uidl).copied().unwrap_or(0) > 1 {
            plan.skip
                .push((entry.number, SkipReason::DuplicateUidl(uidl.to_string())));
            continue;
        }
        let first_seen = seen.get(uidl).copied();
        let expired = match (first_seen, policy.keep_days) {
            (Some(t), Some(days)) => policy.now - t >= i64::from(days) * 86_400,
            _ => false,
        };
        if first_seen.is_none() || policy.refetch_seen {
            if let Some(max) = policy.max_size {
                if entry.size > max {
                    plan.skip
                        .push((entry.number, SkipReason::TooLarge(entry.size)));
                    continue;
                }
            }
            plan.fetch.push(Fetch {
                number: entry.number,
                uidl: uidl.to_string(),
                size: entry.size,
            });
        } else if policy.keep && !expired {
            plan.kept += 1;
        } else {
            plan.delete_seen.push((entry.number, uidl.to_string()));
        }
    }
    plan
}

/// The UIDLs the server listed, for pruning the seen state.
pub fn listed_uidls(listing: &[Listed]) -> HashSet<&str> {
    listing.iter().filter_map(|e| e.uidl.as_deref()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(items: &[(u32, &str)]) -> Vec<Listed> {
        items
            .iter()
            .map(|(n, u)| Listed {
                number: *n,
                size: 100,
                uidl: Some(u.to_string()),
            })
            .collect()
    }

    fn seen(uidls: &[&str]) -> HashMap<String, i64> {
        uidls.iter().map(|u| (u.to_string(), 0)).collect()
    }

    const KEEP: Policy = Policy {
        keep: true,
        refetch_seen: false,
        keep_days: None,
        max_size: None,
        now: 0,
    };

    #[test]
    fn only_unseen_are_fetched() {
        let p = plan(
            &listed(&[(1, "a"), (2, "b"), (3, "c")]),
            &seen(&["b"]),
            KEEP,
        );
        let nums: Vec<u32> = p.fetch.iter().map(|f| f.number).collect();
        assert_eq!(nums, vec![1, 3]);
        assert_eq!(p.kept, 1);
        assert!(p.delete_seen.is_empty());
        assert_eq!(p.fetch_bytes(), 200);
    }

    #[test]
    fn delete_mode_removes_seen_and_all_refetches() {
        let policy = Policy {
            keep: false,
            ..KEEP
        };
        let p = plan(&listed(&[(1, "a"), (2, "b")]), &seen(&["a"]), policy);
        assert_eq!(p.delete_seen, vec![(1, "a".to_string())]);
        assert_eq!(p.fetch.len(), 1);
        let p = plan(
            &listed(&[(1, "a"), (2, "b")]),
            &seen(&["a"]),
            Policy {
                refetch_seen: true,
                ..KEEP
            },
        );
        assert_eq!(p.fetch.len(), 2);
    }

    #[test]
    fn keep_days_deletes_old_records_and_max_size_skips() {
        let mut seen_at: HashMap<String, i64> = HashMap::new();
        seen_at.insert("old".into(), 1_000_000 - 15 * 86_400);
        seen_at.insert("young".into(), 1_000_000 - 86_400);
        let mut l = listed(&[(1, "old"), (2, "young"), (3, "big")]);
        l[2].size = 5_000_000;
        let policy = Policy {
            keep_days: Some(14),
            max_size: Some(1_000_000),
            now: 1_000_000,
            ..KEEP
        };
        let p = plan(&l, &seen_at, policy);
        assert_eq!(p.delete_seen, vec![(1, "old".to_string())]);
        assert_eq!(p.kept, 1);
        assert_eq!(p.skip, vec![(3, SkipReason::TooLarge(5_000_000))]);
        // keep_days = 0: everything seen before this run goes.
        let p = plan(
            &l,
            &seen_at,
            Policy {
                keep_days: Some(0),
                ..policy
            },
        );
        assert_eq!(p.delete_seen.len(), 2);
    }

    #[test]
    fn bad_and_duplicate_uidls_are_never_touched() {
        let mut l = listed(&[(1, "dup"), (2, "ok"), (3, "dup"), (4, "has space")]);
        l.push(Listed {
            number: 5,
            size: 1,
            uidl: None,
        });
        // Even when "dup" is seen, neither copy may be deleted.
        let p = plan(
            &l,
            &seen(&["dup"]),
            Policy {
                keep: false,
                ..KEEP
            },
        );
        assert_eq!(p.fetch.len(), 1);
        assert!(p.delete_seen.is_empty());
        let skipped: Vec<u32> = p.skip.iter().map(|(n, _)| *n).collect();
        assert_eq!(skipped, vec![1, 3, 4, 5]);
    }
}
