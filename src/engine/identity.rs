//! A message's identity when the server's own ids fall short (SPEC §4.5):
//! no UIDL at all, one UIDL shared by several messages, or an IMAP folder
//! whose UIDVALIDITY changed (every UID is new). All are told apart by a
//! digest of the header block ([`Source::headers`]). Used by `sync` and by
//! the read-only commands, which must key messages the way `sync` records
//! them.

use std::collections::HashMap;
use std::io::Read;

use sha2::{Digest, Sha256};

use crate::engine::plan;
use crate::error::{Error, ExitKind, Result};
use crate::source::{Entry, Fetched, Source};
use crate::state::store::Store;

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

/// Follows a change of an IMAP folder's UIDVALIDITY (RFC 3501 §2.3.1.1:
/// the server renumbered the folder, so no UID recorded before names the
/// same message now). Re-delivering the folder would be wrong: before
/// anything is fetched, the header block of every message not known by
/// its new key is digested, and one whose digest matches a record left
/// over from the old numbering is that message: its record moves to the
/// new key (and `seen` with it), so the plan does not fetch it. The rest
/// are new. Records nothing matched stay, and are pruned after the
/// session as any record of a message gone.
///
/// Does nothing for a source without UIDVALIDITY, on a folder's first
/// session (it only notes the value), or when the value is unchanged.
/// With `commit = false` (`--dry-run`) the store is left as it is and only
/// `seen` changes. Returns the warning that says what happened.
pub(crate) fn follow_uidvalidity(
    source: &mut dyn Source,
    store: &mut Store,
    mailbox: i64,
    listing: &[Entry],
    seen: &mut HashMap<String, i64>,
    commit: bool,
    account: &str,
) -> Result<Option<String>> {
    let Some((folder, now)) = source.uidvalidity() else {
        return Ok(None);
    };
    let folder = folder.to_string();
    let before = store.uidvalidity(mailbox)?;
    if before == Some(now) {
        return Ok(None);
    }
    let Some(before) = before else {
        if commit {
            store.renumber(mailbox, now, &[])?;
        }
        return Ok(None);
    };
    let listed: std::collections::HashSet<&str> =
        listing.iter().filter_map(|e| e.id.as_deref()).collect();
    let recorded: HashMap<String, String> = store
        .header_digests(mailbox)?
        .into_iter()
        .filter(|(key, _)| !listed.contains(key.as_str()) && seen.contains_key(key))
        .collect();
    let unknown: Vec<&Entry> = listing
        .iter()
        .filter(|e| e.id.as_deref().is_some_and(|id| !seen.contains_key(id)))
        .collect();
    let mut moves = Vec::new();
    if !recorded.is_empty() && !unknown.is_empty() {
        let handles: Vec<u32> = unknown.iter().map(|e| e.handle).collect();
        let Some(digests) = header_digests(source, &handles)? else {
            return Err(Error::new(
                ExitKind::TempFail,
                format!(
                    "{account}: folder {folder:?} was renumbered by the server (UIDVALIDITY {before} → \
                     {now}) and it would not send the headers popfetch needs to tell which messages \
                     were fetched before; nothing was fetched, so nothing is delivered twice: try again later"
                ),
            ));
        };
        let listed: Vec<(String, String)> = unknown
            .iter()
            .zip(digests)
            .filter_map(|(e, d)| Some((e.id.clone()?, d)))
            .collect();
        moves = match_by_headers(&listed, &recorded);
    }
    if commit {
        let pairs: Vec<(&str, &str)> = moves
            .iter()
            .map(|(old, new)| (old.as_str(), new.as_str()))
            .collect();
        store.renumber(mailbox, now, &pairs)?;
    }
    for (old, new) in &moves {
        if let Some(first_seen) = seen.remove(old) {
            seen.insert(new.clone(), first_seen);
        }
    }
    let new = unknown.len() - moves.len();
    Ok(Some(format!(
        "{account}: folder {folder:?}: the server renumbered its messages (UIDVALIDITY {before} → \
         {now}); {} matched by their headers to messages fetched before and not fetched again, \
         {new} new",
        moves.len()
    )))
}

/// Pairs listed messages `(new key, header digest)` with records `old key
/// → header digest`: each record goes to at most one message, and
/// messages with the same headers take the records with the same digest
/// in UID order. Returns `(old key, new key)` pairs.
pub(crate) fn match_by_headers(
    listed: &[(String, String)],
    recorded: &HashMap<String, String>,
) -> Vec<(String, String)> {
    let mut by_digest: HashMap<&str, Vec<&str>> = HashMap::new();
    for (key, digest) in recorded {
        by_digest.entry(digest).or_default().push(key);
    }
    for keys in by_digest.values_mut() {
        // UID order (`UIDVALIDITY/UID`), so copies pair off in the order
        // the folder holds them; the key itself breaks ties.
        keys.sort_by_key(|k| {
            let uid = k.rsplit_once('/').and_then(|(_, u)| u.parse::<u64>().ok());
            (uid, k.to_string())
        });
        keys.reverse();
    }
    let mut moves = Vec::new();
    for (new, digest) in listed {
        if let Some(old) = by_digest.get_mut(digest.as_str()).and_then(Vec::pop) {
            moves.push((old.to_string(), new.clone()));
        }
    }
    moves
}

/// The header digests ([`HeaderDigest`]) of Maildir messages a stopped
/// run left behind, by journal name: recovery records them with their
/// digest, as the run would have, so a renumbered folder finds them too.
/// A file that cannot be found or read gets none (its message is then
/// not recognised after a renumbering, only that).
pub(crate) fn maildir_header_digests(
    folder: &std::path::Path,
    names: &[&str],
) -> HashMap<String, String> {
    use crate::target::maildir::base_of;
    let wanted: std::collections::HashSet<&str> = names.iter().map(|n| base_of(n)).collect();
    let mut digests = HashMap::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(folder.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            let base = base_of(file_name);
            if !wanted.contains(base) || digests.contains_key(base) {
                continue;
            }
            let Ok(mut file) = std::fs::File::open(entry.path()) else {
                continue;
            };
            let mut reader = HeaderDigest::new(&mut file, true);
            let mut buf = [0u8; 8192];
            let read = loop {
                match reader.read(&mut buf) {
                    Ok(0) => break true,
                    Ok(_) if reader.done => break true,
                    Ok(_) => {}
                    Err(_) => break false,
                }
            };
            if let (true, Some(hex)) = (read, reader.hex()) {
                digests.insert(base.to_string(), hex);
            }
        }
    }
    names
        .iter()
        .filter_map(|n| Some((n.to_string(), digests.get(base_of(n))?.clone())))
        .collect()
}

/// Passes a message's bytes through while digesting its header block as
/// [`Source::headers`] gives it: up to and including the empty line that
/// ends it (all of a message without one), so a delivered message's
/// digest matches the one taken from its headers alone later.
pub(crate) struct HeaderDigest<'a> {
    inner: &'a mut dyn Read,
    hasher: Option<Sha256>,
    at_line_start: bool,
    done: bool,
}

impl<'a> HeaderDigest<'a> {
    /// `on = false` passes the bytes through and digests nothing.
    pub(crate) fn new(inner: &'a mut dyn Read, on: bool) -> Self {
        HeaderDigest {
            inner,
            hasher: on.then(Sha256::new),
            at_line_start: true,
            done: false,
        }
    }

    /// The digest (hex), when asked for and the message was read.
    pub(crate) fn hex(self) -> Option<String> {
        self.hasher
            .map(|h| h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }
}

impl Read for HeaderDigest<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let (Some(hasher), false) = (self.hasher.as_mut(), self.done) {
            let mut end = n;
            for (i, &b) in buf[..n].iter().enumerate() {
                if b == b'\n' {
                    if self.at_line_start {
                        self.done = true;
                        end = i + 1;
                        break;
                    }
                    self.at_line_start = true;
                } else {
                    self.at_line_start = false;
                }
            }
            hasher.update(&buf[..end]);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn digest_of(data: &[u8], chunk: usize) -> String {
        struct Chunks<'a>(&'a [u8], usize);
        impl Read for Chunks<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut source = Chunks(data, chunk);
        let mut reader = HeaderDigest::new(&mut source, true);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, data, "bytes pass through unchanged");
        reader.hex().unwrap()
    }

    fn sha_hex(data: &[u8]) -> String {
        Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The digest taken while delivering is the one of the header block
    /// alone (what `Source::headers` hands over), however the bytes come.
    #[test]
    fn header_digest_while_delivering_matches_the_header_block() {
        let header = b"From: a@b\nSubject: x\n\n".as_slice();
        let mut message = header.to_vec();
        message.extend_from_slice(b"body\n\nmore\n");
        for chunk in [1, 2, 3, 7, 4096] {
            assert_eq!(digest_of(&message, chunk), sha_hex(header), "chunk {chunk}");
        }
        // No body at all: the whole message is its header block.
        assert_eq!(digest_of(b"From: a@b\n", 3), sha_hex(b"From: a@b\n"));
        // An empty header block is the empty line alone.
        assert_eq!(digest_of(b"\nbody\n", 1), sha_hex(b"\n"));
        let mut plain = b"x".as_slice();
        assert_eq!(HeaderDigest::new(&mut plain, false).hex(), None);
    }

    /// A folder that only lists and sends header blocks.
    struct Folder {
        uidvalidity: u32,
        /// (UID, header block)
        messages: Vec<(u32, Vec<u8>)>,
        header_requests: Vec<u32>,
    }

    struct Bytes(std::io::Cursor<Vec<u8>>);

    impl Read for Bytes {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl crate::source::Message for Bytes {
        fn octets(&self) -> u64 {
            self.0.get_ref().len() as u64
        }
        fn over_limit(&self) -> bool {
            false
        }
    }

    impl Source for Folder {
        fn host(&self) -> &str {
            "imap.test"
        }
        fn listing(&mut self) -> Result<Vec<Entry>> {
            Ok(self
                .messages
                .iter()
                .map(|(uid, _)| Entry {
                    handle: *uid,
                    size: 100,
                    id: Some(format!("{}/{uid}", self.uidvalidity)),
                })
                .collect())
        }
        fn headers(&mut self, handles: &[u32], sink: &mut crate::source::Sink<'_>) -> Result<bool> {
            for (i, h) in handles.iter().enumerate() {
                self.header_requests.push(*h);
                let data = self
                    .messages
                    .iter()
                    .find(|(u, _)| u == h)
                    .unwrap()
                    .1
                    .clone();
                sink(i, Fetched::Body(&mut Bytes(std::io::Cursor::new(data))))?;
            }
            Ok(true)
        }
        fn top(&mut self, _: &[u32], _: u32, _: &mut crate::source::Sink<'_>) -> Result<()> {
            unreachable!()
        }
        fn fetch(
            &mut self,
            _: &[u32],
            _: Option<u64>,
            _: &mut crate::source::FetchSink<'_>,
        ) -> Result<()> {
            unreachable!("nothing is fetched while matching")
        }
        fn delete(&mut self, _: &[u32]) -> Result<Vec<bool>> {
            unreachable!()
        }
        fn finish(self: Box<Self>) -> Result<()> {
            Ok(())
        }
        fn uidvalidity(&self) -> Option<(&str, u32)> {
            Some(("INBOX", self.uidvalidity))
        }
    }

    fn header(i: u32) -> Vec<u8> {
        format!("Message-ID: <{i}@test>\nSubject: {i}\n\n").into_bytes()
    }

    #[test]
    fn a_renumbered_folder_is_matched_before_anything_is_fetched() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mb = store.mailbox("alice@imap.test/INBOX").unwrap();
        let d: Vec<String> = (0..4).map(|i| sha_hex(&header(i))).collect();
        store
            .commit_delivered_with_headers(
                mb,
                &[
                    ("7/1", Some(&d[1])),
                    ("7/2", Some(&d[2])),
                    ("7/3", Some(&d[3])),
                ],
                &[],
            )
            .unwrap();
        store.commit_delivered(mb, &["7/4"], &[]).unwrap();
        let mut folder = Folder {
            uidvalidity: 7,
            messages: vec![],
            header_requests: vec![],
        };
        // The first session notes the UIDVALIDITY, and the next finds it
        // unchanged: nothing is asked of the server.
        for _ in 0..2 {
            let mut seen = store.seen(mb).unwrap();
            let listing = folder.listing().unwrap();
            let said =
                follow_uidvalidity(&mut folder, &mut store, mb, &listing, &mut seen, true, "a")
                    .unwrap();
            assert_eq!(said, None);
            assert_eq!(store.uidvalidity(mb).unwrap(), Some(7));
        }
        // Renumbered: 2 and 3 are still there as 12 and 13 (with 11, new,
        // whose headers nobody saw), 1 and 4 are gone.
        folder.uidvalidity = 9;
        folder.messages = vec![(11, header(0)), (12, header(2)), (13, header(3))];
        let listing = folder.listing().unwrap();
        for commit in [false, true] {
            let mut seen = store.seen(mb).unwrap();
            let said = follow_uidvalidity(
                &mut folder,
                &mut store,
                mb,
                &listing,
                &mut seen,
                commit,
                "a",
            )
            .unwrap()
            .expect("a warning");
            assert!(said.contains("INBOX") && said.contains("7 → 9"), "{said}");
            assert!(
                said.contains("2 matched") && said.contains("1 new"),
                "{said}"
            );
            let mut keys: Vec<&str> = seen.keys().map(String::as_str).collect();
            keys.sort();
            assert_eq!(keys, ["7/1", "7/4", "9/12", "9/13"]);
            assert_eq!(folder.header_requests, [11, 12, 13]);
            folder.header_requests.clear();
            let stored = if commit { Some(9) } else { Some(7) };
            assert_eq!(store.uidvalidity(mb).unwrap(), stored, "commit {commit}");
        }
        let mut keys: Vec<String> = store.seen(mb).unwrap().into_keys().collect();
        keys.sort();
        assert_eq!(keys, ["7/1", "7/4", "9/12", "9/13"]);
    }

    #[test]
    fn recovered_maildir_messages_get_their_header_digest() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let header = b"From: a@b\nSubject: kept\n\n";
        let mut message = header.to_vec();
        message.extend(std::iter::repeat_n(b'x', 100_000));
        std::fs::write(dir.path().join("new/1.Ppf1.host"), &message).unwrap();
        // A mail reader moved this one to cur/ and flagged it.
        std::fs::write(dir.path().join("cur/2.Ppf2.host:2,S"), b"\nno header\n").unwrap();
        let digests =
            maildir_header_digests(dir.path(), &["1.Ppf1.host", "2.Ppf2.host", "3.gone.host"]);
        assert_eq!(digests.len(), 2, "{digests:?}");
        assert_eq!(digests["1.Ppf1.host"], sha_hex(header));
        assert_eq!(digests["2.Ppf2.host"], sha_hex(b"\n"));
    }

    #[test]
    fn renumbered_messages_match_their_records_once_each() {
        let recorded: HashMap<String, String> = pairs(&[
            ("7/1", "a"),
            ("7/2", "b"),
            ("7/3", "c"),
            ("7/10", "c"),
            ("7/4", "gone"),
        ])
        .into_iter()
        .collect();
        // 9/5 is new; 9/1 and 9/2 carry the same headers as 7/3 and 7/10
        // (copies), and a third copy has no record left to take.
        let listed = pairs(&[
            ("9/1", "c"),
            ("9/2", "c"),
            ("9/3", "a"),
            ("9/4", "b"),
            ("9/5", "new"),
            ("9/6", "c"),
        ]);
        let mut moves = match_by_headers(&listed, &recorded);
        moves.sort();
        assert_eq!(
            moves,
            pairs(&[
                ("7/1", "9/3"),
                ("7/10", "9/2"),
                ("7/2", "9/4"),
                ("7/3", "9/1"),
            ])
        );
        assert!(match_by_headers(&listed, &HashMap::new()).is_empty());
    }
}
