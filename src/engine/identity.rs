//! A message's identity when the server's own ids fall short (SPEC §4.5):
//! no UIDL at all, or one UIDL shared by several messages. Both are told
//! apart by a digest of the header block ([`Source::headers`]). Used by
//! `sync` and by the read-only commands, which must key messages the way
//! `sync` records them.

use std::collections::HashMap;
use std::io::Read;

use sha2::{Digest, Sha256};

use crate::engine::plan;
use crate::error::{Error, Result};
use crate::source::{Entry, Fetched, Source};

/// SPEC §4.5: when the server has no UIDL, a message's identity is a
/// digest of its header block (`TOP n 0`). Returns `true` when the server
/// has neither UIDL nor TOP, which is only usable with `keep = false`
/// (every message is then fetched, keyed by a digest of its content, and
/// deleted).
pub(crate) fn identify_without_uidl(
    source: &mut dyn Source,
    listing: &mut [Entry],
    keep: bool,
) -> Result<bool> {
    if listing.is_empty() || listing.iter().any(|e| e.id.is_some()) {
        return Ok(false);
    }
    let numbers: Vec<u32> = listing.iter().map(|e| e.handle).collect();
    if let Some(digests) = header_digests(source, &numbers)? {
        for (entry, digest) in listing.iter_mut().zip(digests) {
            entry.id = Some(format!("hdr:{digest}"));
        }
        return Ok(false);
    }
    if keep {
        return Err(Error::config(format!(
            "{}: the server supports neither UIDL nor TOP, so popfetch cannot tell new messages from \
             ones it fetched before; with such a server set keep = false (or run with --delete) so \
             every message is fetched once and deleted",
            source.host()
        )));
    }
    Ok(true)
}

/// What [`tell_shared_uidls_apart`] found.
#[derive(Debug, Default)]
pub(crate) struct SharedUidls {
    /// Names the server's bug, once per session.
    pub warning: Option<String>,
    /// Messages to leave on the server this session.
    pub held: Vec<(u32, plan::SkipReason)>,
}

/// Messages that share a UIDL (a server bug) are told apart by a digest of
/// their header block (`TOP n 0`): each listing entry gets the key
/// [`plan::told_apart_key`] instead of the shared UIDL, so it is fetched
/// once and deleted like any other.
///
/// Once such keys are recorded, every message not known by its plain UIDL
/// is looked at the same way, so that none of them is delivered again:
/// one whose header digest is recorded under a told-apart key is that
/// message (its copy was deleted, or the server mended its ways and gave
/// it a UIDL of its own), and one whose UIDL was shared before keeps being
/// known by its header digest.
///
/// A UIDL recorded as seen before it was shared is left as it is: one of
/// its messages was delivered under it, and nothing says which (the plan
/// leaves them on the server). Without TOP nothing can be told apart: the
/// shared ones stay on the server (the plan skips them), and so do those
/// whose UIDL was shared before, which must not be fetched under it.
pub(crate) fn tell_shared_uidls_apart(
    source: &mut dyn Source,
    listing: &mut [Entry],
    seen: &HashMap<String, i64>,
) -> Result<SharedUidls> {
    let shared: Vec<(String, Vec<usize>)> = plan::shared_uidls(listing)
        .into_iter()
        .filter(|(uidl, _)| !seen.contains_key(*uidl))
        .map(|(uidl, group)| (uidl.to_string(), group))
        .collect();
    // The records under told-apart keys: their UIDLs, and their keys by
    // header digest.
    let mut told_uidls: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut told_keys: HashMap<&str, Vec<&str>> = HashMap::new();
    for key in seen.keys().filter(|k| k.contains(' ')) {
        if let Some((uidl, digest)) = plan::told_apart_parts(key) {
            told_uidls.insert(uidl);
            told_keys.entry(digest).or_default().push(key);
        }
    }
    // Messages not known by their plain UIDL, while such records exist.
    let mut unknown: Vec<usize> = Vec::new();
    if !told_keys.is_empty() {
        let in_shared: std::collections::HashSet<usize> =
            shared.iter().flat_map(|(_, g)| g.iter().copied()).collect();
        unknown = (0..listing.len())
            .filter(|i| !in_shared.contains(i))
            .filter(|&i| {
                listing[i]
                    .id
                    .as_deref()
                    .is_some_and(|u| plan::valid_key(u) && !seen.contains_key(u))
            })
            .collect();
    }
    if shared.is_empty() && unknown.is_empty() {
        return Ok(SharedUidls::default());
    }
    let wanted: Vec<usize> = shared
        .iter()
        .flat_map(|(_, g)| g.iter().copied())
        .chain(unknown.iter().copied())
        .collect();
    let numbers: Vec<u32> = wanted.iter().map(|&i| listing[i].handle).collect();
    let Some(digests) = header_digests(source, &numbers)? else {
        let held = unknown
            .into_iter()
            .filter_map(|i| {
                let uidl = listing[i].id.clone()?;
                told_uidls
                    .contains(uidl.as_str())
                    .then(|| (listing[i].handle, plan::SkipReason::DuplicateUidl(uidl)))
            })
            .collect();
        return Ok(SharedUidls {
            warning: None,
            held,
        });
    };
    let digest_of: HashMap<usize, String> = wanted.into_iter().zip(digests).collect();
    for (uidl, group) in &shared {
        let digests: Vec<String> = group.iter().map(|i| digest_of[i].clone()).collect();
        for (&i, key) in group.iter().zip(plan::told_apart_keys(uidl, &digests)) {
            listing[i].id = Some(key);
        }
    }
    let mut taken: std::collections::HashSet<String> =
        listing.iter().filter_map(|e| e.id.clone()).collect();
    for i in unknown {
        let digest = &digest_of[&i];
        let recorded = told_keys
            .get(digest.as_str())
            .and_then(|keys| keys.iter().find(|k| !taken.contains(**k)));
        let uidl = listing[i].id.clone().unwrap_or_default();
        let key = match recorded {
            Some(key) => key.to_string(),
            None if told_uidls.contains(uidl.as_str()) => plan::told_apart_key(&uidl, digest, 1),
            None => continue,
        };
        taken.insert(key.clone());
        listing[i].id = Some(key);
    }
    if shared.is_empty() {
        return Ok(SharedUidls::default());
    }
    const NAMED: usize = 5;
    let mut named: Vec<String> = shared
        .iter()
        .take(NAMED)
        .map(|(_, group)| {
            let numbers: Vec<String> = group
                .iter()
                .map(|&i| listing[i].handle.to_string())
                .collect();
            let (last, first) = numbers
                .split_last()
                .expect("a shared UIDL has two messages");
            format!("messages {} and {last}", first.join(", "))
        })
        .collect();
    if shared.len() > NAMED {
        named.push(format!("{} more groups", shared.len() - NAMED));
    }
    let warning = format!(
        "{}: the server gives the same UIDL to {} (a server bug); telling them apart by their headers",
        source.host(),
        named.join("; ")
    );
    Ok(SharedUidls {
        warning: Some(warning),
        held: Vec::new(),
    })
}

/// The SHA-256 (hex) of each message's header block
/// ([`Source::headers`]); `None` when the source cannot send them or
/// refuses any of them.
fn header_digests(source: &mut dyn Source, numbers: &[u32]) -> Result<Option<Vec<String>>> {
    let mut top_works = true;
    let mut digests: Vec<String> = vec![String::new(); numbers.len()];
    let sent = source.headers(numbers, &mut |i, reply| {
        match reply {
            Fetched::Body(body) => {
                let mut hashing = HashingReader::new(body);
                std::io::copy(&mut hashing, &mut std::io::sink())
                    .map_err(|e| Error::new(crate::error::ExitKind::TempFail, e.to_string()))?;
                digests[i] = hashing.hex();
            }
            Fetched::Refused(_) => {
                top_works = false;
            }
        }
        Ok(())
    })?;
    Ok((sent && top_works).then_some(digests))
}

/// Passes bytes through while computing their SHA-256.
pub(crate) struct HashingReader<'a> {
    inner: &'a mut dyn Read,
    hasher: Sha256,
}

impl<'a> HashingReader<'a> {
    pub(crate) fn new(inner: &'a mut dyn Read) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    pub(crate) fn hex(self) -> String {
        self.hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
