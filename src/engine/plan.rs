//! The fetch plan: from the server's listing, the seen state and the
//! account's policy, an action for every message. Pure, so every rule is
//! tested without a server.
//!
//! A message is identified by its UIDL. UIDLs the server gets wrong are
//! never trusted: an invalid one (empty, over 70 characters, not printable
//! ASCII) cannot tell messages apart, so such messages are left on the
//! server untouched and reported, never marked seen and never deleted.
//!
//! Messages that share a UIDL (a server bug) are told apart by a digest of
//! their header block: the sync asks `TOP n 0` for them and keys each by
//! [`told_apart_key`], so each is delivered once and deleted like any
//! other. Those that could not be told apart (no TOP) stay on the server.

use std::collections::{HashMap, HashSet};

use crate::source::pop3::codec::valid_uidl;
use crate::source::Entry;

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
    /// Shared by several messages, and no header digest told them apart
    /// (the server has no TOP).
    DuplicateUidl(String),
    /// Shared by several messages, one of which was fetched under that UIDL
    /// before they were shared: which one cannot be known, so fetching any
    /// could deliver it twice, and deleting any could lose one.
    DuplicateSeenUidl(String),
    /// Larger than `max_size` (the size the server announced).
    TooLarge(u64),
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::InvalidUidl(u) => write!(f, "the server gave it an invalid UIDL {u:?}"),
            SkipReason::DuplicateUidl(u) => write!(
                f,
                "the server gave the same UIDL {u:?} to several messages (a server bug) and has no TOP \
                 to tell them apart by their headers"
            ),
            SkipReason::DuplicateSeenUidl(u) => write!(
                f,
                "the server gave the same UIDL {u:?} to several messages (a server bug), and one of them \
                 was fetched under it before, so popfetch cannot tell which; `popfetch seen forget` \
                 that UIDL to fetch them all (one of them a second time)"
            ),
            SkipReason::TooLarge(size) => write!(
                f,
                "it is {}, larger than max_size",
                crate::ui::units::human_bytes(*size)
            ),
        }
    }
}

impl SkipReason {
    /// A few words for a `--dry-run` line and its summary.
    pub fn label(&self) -> &'static str {
        match self {
            SkipReason::InvalidUidl(_) => "invalid UIDL",
            SkipReason::DuplicateUidl(_) | SkipReason::DuplicateSeenUidl(_) => {
                "UIDL shared by several messages"
            }
            SkipReason::TooLarge(_) => "larger than max_size",
        }
    }
}

/// A message to download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetch {
    /// The source's handle ([`Entry::handle`]).
    pub handle: u32,
    /// The key its seen record gets ([`Entry::id`]); empty when the
    /// source gives none (it is keyed by its content once read).
    pub key: String,
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

    /// Leaves message `number` on the server this session.
    pub fn hold(&mut self, number: u32, reason: SkipReason) {
        self.fetch.retain(|f| f.handle != number);
        self.delete_seen.retain(|(n, _)| *n != number);
        self.skip.push((number, reason));
    }
}

/// Builds the plan. `listing` must carry UIDLs.
pub fn plan(listing: &[Entry], seen: &HashMap<String, i64>, policy: Policy) -> Plan {
    let mut count: HashMap<&str, usize> = HashMap::with_capacity(listing.len());
    for entry in listing {
        if let Some(u) = &entry.id {
            *count.entry(u.as_str()).or_default() += 1;
        }
    }
    let mut plan = Plan::default();
    for entry in listing {
        let uidl = entry.id.as_deref().unwrap_or("");
        if !valid_key(uidl) {
            plan.skip
                .push((entry.handle, SkipReason::InvalidUidl(uidl.to_string())));
            continue;
        }
        if count.get(uidl).copied().unwrap_or(0) > 1 {
            let reason = if seen.contains_key(uidl) {
                SkipReason::DuplicateSeenUidl(uidl.to_string())
            } else {
                SkipReason::DuplicateUidl(uidl.to_string())
            };
            plan.skip.push((entry.handle, reason));
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
                        .push((entry.handle, SkipReason::TooLarge(entry.size)));
                    continue;
                }
            }
            plan.fetch.push(Fetch {
                handle: entry.handle,
                key: uidl.to_string(),
                size: entry.size,
            });
        } else if policy.keep && !expired {
            plan.kept += 1;
        } else {
            plan.delete_seen.push((entry.handle, uidl.to_string()));
        }
    }
    plan
}

/// The UIDLs the server listed, for pruning the seen state.
pub fn listed_uidls(listing: &[Entry]) -> HashSet<&str> {
    listing.iter().filter_map(|e| e.id.as_deref()).collect()
}

/// Valid UIDLs that several messages share, each with the indexes (into
/// `listing`) of its messages, in server order.
pub fn shared_uidls(listing: &[Entry]) -> Vec<(&str, Vec<usize>)> {
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, entry) in listing.iter().enumerate() {
        if let Some(u) = entry.id.as_deref().filter(|u| valid_uidl(u)) {
            groups.entry(u).or_default().push(i);
        }
    }
    let mut shared: Vec<(&str, Vec<usize>)> =
        groups.into_iter().filter(|(_, g)| g.len() > 1).collect();
    shared.sort_by_key(|(_, g)| g[0]);
    shared
}

/// The seen key of a message that shares `uidl` with others: the UIDL, a
/// space, and the hex digest of its header block; for the `nth` (from 1,
/// in server order) of messages whose header blocks are identical too,
/// ` <nth>` from the second on (those are the same message as far as
/// anyone can tell, so which copy is which does not matter).
///
/// A space never occurs in a UIDL (RFC 1939: 0x21-0x7E), so the key never
/// equals a real UIDL, and it is the same in every session as long as the
/// server sends the same header block.
pub fn told_apart_key(uidl: &str, header_digest: &str, nth: usize) -> String {
    if nth <= 1 {
        format!("{uidl} {header_digest}")
    } else {
        format!("{uidl} {header_digest} {nth}")
    }
}

/// The keys of messages sharing one UIDL, given their header digests in
/// server order.
pub fn told_apart_keys(uidl: &str, header_digests: &[String]) -> Vec<String> {
    let mut copies: HashMap<&str, usize> = HashMap::new();
    header_digests
        .iter()
        .map(|d| {
            let nth = copies.entry(d.as_str()).or_default();
            *nth += 1;
            told_apart_key(uidl, d, *nth)
        })
        .collect()
}

/// Whether `key` can identify a message: a valid UIDL, or a key made by
/// [`told_apart_key`].
pub fn valid_key(key: &str) -> bool {
    valid_uidl(key) || told_apart_parts(key).is_some()
}

/// The UIDL and the header digest inside a key made by [`told_apart_key`],
/// `None` for any other string.
pub fn told_apart_parts(key: &str) -> Option<(&str, &str)> {
    let (uidl, rest) = key.split_once(' ')?;
    let (digest, nth) = match rest.split_once(' ') {
        Some((d, n)) => (d, Some(n)),
        None => (rest, None),
    };
    let digest_ok = digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let nth_ok =
        nth.is_none_or(|n| n.parse::<usize>().is_ok_and(|n| n >= 2) && !n.starts_with('0'));
    (valid_uidl(uidl) && digest_ok && nth_ok).then_some((uidl, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(items: &[(u32, &str)]) -> Vec<Entry> {
        items
            .iter()
            .map(|(n, u)| Entry {
                handle: *n,
                size: 100,
                id: Some(u.to_string()),
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
        let nums: Vec<u32> = p.fetch.iter().map(|f| f.handle).collect();
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
        l.push(Entry {
            handle: 5,
            size: 1,
            id: None,
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

    #[test]
    fn shared_uidls_get_distinct_stable_keys_that_are_never_real_uidls() {
        let l = listed(&[
            (1, "dup"),
            (2, "ok"),
            (3, "dup"),
            (4, "x"),
            (5, "x"),
            (6, "dup"),
        ]);
        let shared = shared_uidls(&l);
        assert_eq!(shared, vec![("dup", vec![0, 2, 5]), ("x", vec![3, 4])]);
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let keys = told_apart_keys("dup", &[a.clone(), b.clone(), a.clone()]);
        assert_eq!(
            keys,
            vec![format!("dup {a}"), format!("dup {b}"), format!("dup {a} 2")]
        );
        for k in &keys {
            assert!(!valid_uidl(k));
            assert_eq!(told_apart_parts(k).map(|(u, _)| u), Some("dup"));
        }
        for not_ours in [
            "dup",
            "has space",
            &format!("dup {a} 1"),
            &format!("dup {a} x"),
            "a b",
        ] {
            assert_eq!(told_apart_parts(not_ours), None, "{not_ours}");
        }
        // Told apart, they are planned like any message: fetched once, then
        // deleted in delete mode.
        let mut l = l;
        l[0].id = Some(keys[0].clone());
        l[2].id = Some(keys[1].clone());
        l[5].id = Some(keys[2].clone());
        let p = plan(
            &l,
            &seen(&[&keys[0]]),
            Policy {
                keep: false,
                ..KEEP
            },
        );
        let fetched: Vec<u32> = p.fetch.iter().map(|f| f.handle).collect();
        assert_eq!(fetched, vec![2, 3, 6]);
        assert_eq!(p.delete_seen, vec![(1, keys[0].clone())]);
        assert_eq!(p.skip.len(), 2, "x is still shared: {:?}", p.skip);
    }
}
