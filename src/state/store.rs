//! The seen state: which messages of which mailbox were durably delivered,
//! in SQLite in the state directory, plus the per-mailbox lock.
//!
//! One database holds every mailbox, keyed by identity (`user@host`), so
//! renaming an account section keeps its state. Commits are synchronous
//! (WAL, `synchronous = FULL`): once [`Store::commit_delivered`] returns, a
//! power cut cannot take the records back, which is what allows a DELE.
//!
//! The `pending` table is the delivery journal: the file names of messages
//! that are being made visible in a Maildir, written before the rename so
//! that a crash between "file in new/" and "seen record" is resolved by
//! looking at the disk at the next start (see `target::maildir`).

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Error, ExitKind, Result};
use crate::state::files::LockFile;

/// The schema version this build writes. Each step in [`MIGRATIONS`] moves
/// the database from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 → 1
    "CREATE TABLE mailbox (
        id INTEGER PRIMARY KEY,
        identity TEXT NOT NULL UNIQUE
     );
     CREATE TABLE seen (
        mailbox INTEGER NOT NULL REFERENCES mailbox(id),
        uidl TEXT NOT NULL,
        first_seen INTEGER NOT NULL,
        origin TEXT,
        PRIMARY KEY (mailbox, uidl)
     ) WITHOUT ROWID;
     CREATE TABLE pending (
        mailbox INTEGER NOT NULL REFERENCES mailbox(id),
        uidl TEXT NOT NULL,
        folder TEXT NOT NULL,
        name TEXT NOT NULL,
        created INTEGER NOT NULL,
        PRIMARY KEY (mailbox, name)
     ) WITHOUT ROWID;",
    // 1 → 2: an IMAP folder's UIDVALIDITY as last seen, and a digest of
    // each delivered message's header block, so that the messages of a
    // folder the server renumbered are known again (engine::identity).
    "ALTER TABLE mailbox ADD COLUMN uidvalidity INTEGER;
     ALTER TABLE seen ADD COLUMN header TEXT;",
    // 2 → 3: an IMAP folder's state as a complete and clean sync left it
    // ([`FolderSnapshot`]), so a run that finds it unchanged can stop
    // after SELECT.
    "ALTER TABLE mailbox ADD COLUMN snapshot TEXT;",
];

/// What SELECT said of an IMAP folder when a sync of it ended complete and
/// clean, and a fingerprint of the policy that sync ran under. The same
/// numbers from the next SELECT, under the same policy, mean the folder
/// holds exactly the messages that sync handled (no UID was handed out
/// since, none expunged, no flag changed when HIGHESTMODSEQ is known).
///
/// Any change to a mailbox's seen records drops its snapshot, in the same
/// transaction: the records are what the snapshot vouches for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderSnapshot {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub messages: u32,
    pub highestmodseq: Option<u64>,
    pub fingerprint: String,
}

impl FolderSnapshot {
    /// The column's text; the leading `1` is the format's version.
    fn encode(&self) -> String {
        let modseq = self
            .highestmodseq
            .map_or_else(|| "-".to_string(), |m| m.to_string());
        format!(
            "1 {} {} {} {modseq} {}",
            self.uidvalidity, self.uidnext, self.messages, self.fingerprint
        )
    }

    /// `None` for a text this build does not know: no shortcut, the
    /// folder is listed as before.
    fn decode(text: &str) -> Option<FolderSnapshot> {
        let mut parts = text.split(' ');
        if parts.next()? != "1" {
            return None;
        }
        let uidvalidity = parts.next()?.parse().ok()?;
        let uidnext = parts.next()?.parse().ok()?;
        let messages = parts.next()?.parse().ok()?;
        let highestmodseq = match parts.next()? {
            "-" => None,
            m => Some(m.parse().ok()?),
        };
        let fingerprint = parts.next()?.to_string();
        if parts.next().is_some() || fingerprint.is_empty() {
            return None;
        }
        Some(FolderSnapshot {
            uidvalidity,
            uidnext,
            messages,
            highestmodseq,
            fingerprint,
        })
    }
}

/// Drops a mailbox's snapshot inside a transaction that changes its
/// records (a no-op, without a write, when it has none).
fn drop_snapshot_in(tx: &rusqlite::Transaction<'_>, mailbox: i64, what: &str) -> Result<()> {
    tx.prepare_cached("UPDATE mailbox SET snapshot = NULL WHERE id = ?1 AND snapshot IS NOT NULL")
        .and_then(|mut s| s.execute(params![mailbox]))
        .map(|_| ())
        .map_err(|e| db_error(what, e))
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn db_error(what: &str, e: rusqlite::Error) -> Error {
    let message = if is_damage(&e) {
        format!(
            "seen database: {what}: {}",
            damage_advice(None, &e.to_string())
        )
    } else {
        format!("seen database: {what}")
    };
    Error::with_source(ExitKind::Io, message, e)
}

/// SQLite's word that the file is not (or no longer) a sound database.
fn is_damage(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    matches!(e.sqlite_error_code(), Some(DatabaseCorrupt | NotADatabase))
}

/// What to do about a damaged seen database at `path` (when known).
fn damage_advice(path: Option<&Path>, cause: &str) -> String {
    let (file, aside) = match path {
        Some(p) => {
            let p = p.display();
            (
                format!("the seen database {p}"),
                format!(" (`mv {p} {p}.damaged`)"),
            )
        }
        None => (
            format!(
                "the seen database ({} in the state directory)",
                Store::FILE_NAME
            ),
            String::new(),
        ),
    };
    format!(
        "{file} is damaged ({cause}). Move it aside with its -wal and -shm files, if any{aside}; \
         the next sync then starts a new one and downloads again every message still on the \
         server. To avoid that, rebuild it first: `popfetch seen import ACCOUNT --from …` \
         (another fetcher's record), or `popfetch seen mark ACCOUNT`, which records everything \
         now on the server as seen, mail that came since the last sync included (see \
         `popfetch top ACCOUNT` first)"
    )
}

/// Damage found while opening the database: the message names the file.
fn name_damaged_file(path: &Path, e: Error) -> Error {
    match std::error::Error::source(&e).and_then(|s| s.downcast_ref::<rusqlite::Error>()) {
        Some(cause) if is_damage(cause) => {
            Error::new(ExitKind::Io, damage_advice(Some(path), &cause.to_string()))
        }
        _ => e,
    }
}

/// Creates the state directory (mode 0700) if it is missing.
pub fn ensure_state_dir(dir: &Path) -> Result<()> {
    crate::state::files::create_private_dir(dir, "the state directory")
}

/// A seen record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenRecord {
    pub uidl: String,
    /// Unix time of the first delivery (or of the import).
    pub first_seen: i64,
}

/// A journal entry: a message whose file may or may not have reached the
/// Maildir's `new/` when the process stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingEntry {
    pub uidl: String,
    pub folder: PathBuf,
    pub name: String,
}

/// The seen database.
pub struct Store {
    conn: Connection,
}

impl Store {
    pub const FILE_NAME: &'static str = "seen.sqlite3";

    /// Opens (creating and migrating if needed) the database in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Store> {
        ensure_state_dir(state_dir)?;
        let path = state_dir.join(Store::FILE_NAME);
        // Create the file ourselves so it is 0600 from the first byte.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                Error::with_source(
                    ExitKind::CantCreate,
                    format!("cannot create the seen database {}", path.display()),
                    e,
                )
            })?;
        // Setting up a connection is serialized across threads and
        // processes: two connections switching a new database to WAL at
        // once get "database is locked" straight away, without the busy
        // wait (seen with -j on a fresh state directory).
        let _setup = setup_lock(state_dir)?;
        // A damaged file shows here: garbage fails the first statement, a
        // truncated one the first read of its header.
        Store::connect(&path).map_err(|e| name_damaged_file(&path, e))
    }

    fn connect(path: &Path) -> Result<Store> {
        let conn = Connection::open(path).map_err(|e| db_error("cannot open", e))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(|e| db_error("setup", e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| db_error("setup", e))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| db_error("setup", e))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| db_error("setup", e))?;
        let mut store = Store { conn };
        store.migrate(path)?;
        Ok(store)
    }

    /// Opens the database only if it exists, for commands that read the
    /// seen state and must not create anything (`check`, `list`, `top`).
    /// No state yet means nothing was ever seen: `None`.
    pub fn open_existing(state_dir: &Path) -> Result<Option<Store>> {
        if !state_dir.join(Store::FILE_NAME).exists() {
            return Ok(None);
        }
        Store::open(state_dir).map(Some)
    }

    fn migrate(&mut self, path: &Path) -> Result<()> {
        let target = MIGRATIONS.len() as i64;
        let current: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| db_error("reading the schema version", e))?;
        if current == target {
            // The common case: no write lock for readers like `check`.
            return Ok(());
        }
        // One writer at a time: parallel accounts (or processes) opening a
        // new database must not both create the schema, so the version is
        // read again under the write lock.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| db_error("migration", e))?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| db_error("reading the schema version", e))?;
        if version > target {
            return Err(Error::new(
                ExitKind::Io,
                format!(
                    "{} was written by a newer popfetch (schema {version}, this one knows {target}); upgrade popfetch",
                    path.display()
                ),
            ));
        }
        if version == target {
            return Ok(());
        }
        for step in MIGRATIONS.iter().skip(version as usize) {
            tx.execute_batch(step)
                .map_err(|e| db_error("migration", e))?;
        }
        tx.pragma_update(None, "user_version", target)
            .map_err(|e| db_error("migration", e))?;
        tx.commit().map_err(|e| db_error("migration", e))
    }

    /// The id of a mailbox identity, created on first use.
    pub fn mailbox(&self, identity: &str) -> Result<i64> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO mailbox (identity) VALUES (?1)",
                params![identity],
            )
            .map_err(|e| db_error("adding a mailbox", e))?;
        self.conn
            .query_row(
                "SELECT id FROM mailbox WHERE identity = ?1",
                params![identity],
                |r| r.get(0),
            )
            .map_err(|e| db_error("finding a mailbox", e))
    }

    /// The id of a mailbox identity if it has any state.
    pub fn find_mailbox(&self, identity: &str) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT id FROM mailbox WHERE identity = ?1",
                params![identity],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| db_error("finding a mailbox", e))
    }

    /// Every seen record of a mailbox, loaded once so lookups are O(1).
    pub fn seen(&self, mailbox: i64) -> Result<HashMap<String, i64>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT uidl, first_seen FROM seen WHERE mailbox = ?1")
            .map_err(|e| db_error("reading", e))?;
        let rows = stmt
            .query_map(params![mailbox], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| db_error("reading", e))?;
        rows.collect::<rusqlite::Result<HashMap<String, i64>>>()
            .map_err(|e| db_error("reading", e))
    }

    /// The UIDVALIDITY of an IMAP folder's mailbox as last seen (`None`
    /// before its first session).
    pub fn uidvalidity(&self, mailbox: i64) -> Result<Option<u32>> {
        self.conn
            .query_row(
                "SELECT uidvalidity FROM mailbox WHERE id = ?1",
                params![mailbox],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(|e| db_error("reading the folder's UIDVALIDITY", e))
    }

    /// The folder snapshot of a mailbox, if a clean sync left one.
    pub fn snapshot(&self, mailbox: i64) -> Result<Option<FolderSnapshot>> {
        self.conn
            .prepare_cached("SELECT snapshot FROM mailbox WHERE id = ?1")
            .and_then(|mut s| {
                s.query_row(params![mailbox], |r| r.get::<_, Option<String>>(0))
                    .optional()
            })
            .map(|text| text.flatten().as_deref().and_then(FolderSnapshot::decode))
            .map_err(|e| db_error("reading the folder snapshot", e))
    }

    /// Keeps `snapshot` for the mailbox (or drops its snapshot), durably:
    /// a snapshot is dropped before anything is fetched or deleted, so a
    /// run killed after that finds none.
    pub fn set_snapshot(&mut self, mailbox: i64, snapshot: Option<&FolderSnapshot>) -> Result<()> {
        let text = snapshot.map(FolderSnapshot::encode);
        self.conn
            .prepare_cached("UPDATE mailbox SET snapshot = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![mailbox, text]))
            .map(|_| ())
            .map_err(|e| db_error("recording the folder snapshot", e))
    }

    /// The header digest of each record that has one (key → digest).
    pub fn header_digests(&self, mailbox: i64) -> Result<HashMap<String, String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT uidl, header FROM seen WHERE mailbox = ?1 AND header IS NOT NULL")
            .map_err(|e| db_error("reading", e))?;
        let rows = stmt
            .query_map(params![mailbox], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| db_error("reading", e))?;
        rows.collect::<rusqlite::Result<HashMap<String, String>>>()
            .map_err(|e| db_error("reading", e))
    }

    /// After the server renumbered a folder: records the new UIDVALIDITY
    /// and moves each record in `moves` from its old key to its new one
    /// (keeping its first-seen time, origin and digest), in one durable
    /// transaction, so a crash leaves either the old state or the new.
    pub fn renumber(
        &mut self,
        mailbox: i64,
        uidvalidity: u32,
        moves: &[(&str, &str)],
    ) -> Result<()> {
        let what = "recording the folder's new UIDVALIDITY";
        let tx = self.conn.transaction().map_err(|e| db_error(what, e))?;
        {
            let mut copy = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO seen (mailbox, uidl, first_seen, origin, header)
                     SELECT mailbox, ?3, first_seen, origin, header FROM seen
                     WHERE mailbox = ?1 AND uidl = ?2",
                )
                .map_err(|e| db_error(what, e))?;
            let mut remove = tx
                .prepare_cached("DELETE FROM seen WHERE mailbox = ?1 AND uidl = ?2")
                .map_err(|e| db_error(what, e))?;
            for (old, new) in moves {
                copy.execute(params![mailbox, old, new])
                    .map_err(|e| db_error(what, e))?;
                remove
                    .execute(params![mailbox, old])
                    .map_err(|e| db_error(what, e))?;
            }
            tx.execute(
                "UPDATE mailbox SET uidvalidity = ?2 WHERE id = ?1",
                params![mailbox, uidvalidity],
            )
            .map_err(|e| db_error(what, e))?;
            drop_snapshot_in(&tx, mailbox, what)?;
        }
        tx.commit().map_err(|e| db_error(what, e))
    }

    /// Seen records sorted by first-seen time then UIDL, for `seen list`.
    pub fn seen_records(&self, mailbox: i64) -> Result<Vec<SeenRecord>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT uidl, first_seen FROM seen WHERE mailbox = ?1 ORDER BY first_seen, uidl",
            )
            .map_err(|e| db_error("reading", e))?;
        let rows = stmt
            .query_map(params![mailbox], |r| {
                Ok(SeenRecord {
                    uidl: r.get(0)?,
                    first_seen: r.get(1)?,
                })
            })
            .map_err(|e| db_error("reading", e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| db_error("reading", e))
    }

    /// Writes journal entries for a batch of messages about to be made
    /// visible. Durable when this returns.
    pub fn journal(&mut self, mailbox: i64, entries: &[PendingEntry]) -> Result<()> {
        let now = now_secs();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| db_error("journal", e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO pending (mailbox, uidl, folder, name, created) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(|e| db_error("journal", e))?;
            for e in entries {
                stmt.execute(params![
                    mailbox,
                    e.uidl,
                    e.folder.to_string_lossy(),
                    e.name,
                    now
                ])
                .map_err(|e| db_error("journal", e))?;
            }
        }
        tx.commit().map_err(|e| db_error("journal", e))
    }

    /// The journal entries left by an interrupted run.
    pub fn pending(&self, mailbox: i64) -> Result<Vec<PendingEntry>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT uidl, folder, name FROM pending WHERE mailbox = ?1 ORDER BY created, name",
            )
            .map_err(|e| db_error("reading the journal", e))?;
        let rows = stmt
            .query_map(params![mailbox], |r| {
                Ok(PendingEntry {
                    uidl: r.get(0)?,
                    folder: PathBuf::from(r.get::<_, String>(1)?),
                    name: r.get(2)?,
                })
            })
            .map_err(|e| db_error("reading the journal", e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| db_error("reading the journal", e))
    }

    /// The mbox appends other mailboxes left in the journal (their names
    /// start with `mbox:`, see `target::mbox`): an account must resolve
    /// another's interrupted append to the same mbox before appending
    /// after it.
    pub fn pending_appends_elsewhere(&self, mailbox: i64) -> Result<Vec<(i64, PendingEntry)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT mailbox, uidl, folder, name FROM pending WHERE mailbox != ?1 AND name LIKE 'mbox:%'",
            )
            .map_err(|e| db_error("reading the journal", e))?;
        let rows = stmt
            .query_map(params![mailbox], |r| {
                Ok((
                    r.get(0)?,
                    PendingEntry {
                        uidl: r.get(1)?,
                        folder: PathBuf::from(r.get::<_, String>(2)?),
                        name: r.get(3)?,
                    },
                ))
            })
            .map_err(|e| db_error("reading the journal", e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| db_error("reading the journal", e))
    }

    /// Whether a journal entry is still there (another process may have
    /// resolved it meanwhile).
    pub fn is_pending(&self, mailbox: i64, name: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT 1 FROM pending WHERE mailbox = ?1 AND name = ?2",
                params![mailbox, name],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(|e| db_error("reading the journal", e))
    }

    /// Records `uidls` as delivered and clears their journal entries, in
    /// one durable transaction. Existing records keep their first-seen time.
    pub fn commit_delivered(
        &mut self,
        mailbox: i64,
        uidls: &[&str],
        journal_names: &[&str],
    ) -> Result<()> {
        let records: Vec<(&str, Option<&str>)> = uidls.iter().map(|u| (*u, None)).collect();
        self.commit_delivered_with_headers(mailbox, &records, journal_names)
    }

    /// [`Store::commit_delivered`] with each record's header digest, when
    /// known (IMAP: what finds the message again after its folder is
    /// renumbered). An existing record keeps its digest, or gets this one.
    pub fn commit_delivered_with_headers(
        &mut self,
        mailbox: i64,
        records: &[(&str, Option<&str>)],
        journal_names: &[&str],
    ) -> Result<()> {
        let now = now_secs();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| db_error("recording delivered messages", e))?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO seen (mailbox, uidl, first_seen, header) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (mailbox, uidl) DO UPDATE SET header = coalesce(header, excluded.header)",
                )
                .map_err(|e| db_error("recording delivered messages", e))?;
            for (uidl, header) in records {
                insert
                    .execute(params![mailbox, uidl, now, header])
                    .map_err(|e| db_error("recording delivered messages", e))?;
            }
            let mut clear = tx
                .prepare_cached("DELETE FROM pending WHERE mailbox = ?1 AND name = ?2")
                .map_err(|e| db_error("recording delivered messages", e))?;
            for name in journal_names {
                clear
                    .execute(params![mailbox, name])
                    .map_err(|e| db_error("recording delivered messages", e))?;
            }
            if !records.is_empty() {
                drop_snapshot_in(&tx, mailbox, "recording delivered messages")?;
            }
        }
        tx.commit()
            .map_err(|e| db_error("recording delivered messages", e))
    }

    /// Records `uidls` as seen without a delivery (`seen mark`, imports),
    /// noting where the record came from in `origin`. Existing records are
    /// left as they are. Returns how many records were added.
    pub fn mark_seen(&mut self, mailbox: i64, uidls: &[&str], origin: &str) -> Result<usize> {
        let now = now_secs();
        let records: Vec<(&str, i64)> = uidls.iter().map(|u| (*u, now)).collect();
        self.add_seen(mailbox, &records, origin)
    }

    /// Like [`Store::mark_seen`] with a first-seen time per record (an
    /// import keeps the other fetcher's download times).
    pub fn add_seen(
        &mut self,
        mailbox: i64,
        records: &[(&str, i64)],
        origin: &str,
    ) -> Result<usize> {
        let tx = self
            .conn
            .transaction()
            .map_err(|e| db_error("marking messages as seen", e))?;
        let mut added = 0;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO seen (mailbox, uidl, first_seen, origin) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(|e| db_error("marking messages as seen", e))?;
            for (uidl, time) in records {
                added += insert
                    .execute(params![mailbox, uidl, time, origin])
                    .map_err(|e| db_error("marking messages as seen", e))?;
            }
            drop_snapshot_in(&tx, mailbox, "marking messages as seen")?;
        }
        tx.commit()
            .map_err(|e| db_error("marking messages as seen", e))?;
        Ok(added)
    }

    /// Drops journal entries whose message never reached the Maildir.
    pub fn drop_pending(&mut self, mailbox: i64, names: &[&str]) -> Result<()> {
        self.commit_delivered(mailbox, &[], names)
    }

    /// Removes records of messages no longer on the server (SPEC §4.6).
    /// `on_server` is every UIDL the server listed in a complete session.
    pub fn prune(
        &mut self,
        mailbox: i64,
        on_server: &std::collections::HashSet<&str>,
    ) -> Result<usize> {
        let seen = self.seen(mailbox)?;
        self.prune_known(mailbox, &seen, on_server)
    }

    /// [`Store::prune`] with the records already in hand: `known` is the
    /// seen set read at the start of the session (records added since are
    /// of listed messages, so never among those to remove). Touches the
    /// database only when something is to go.
    pub fn prune_known(
        &mut self,
        mailbox: i64,
        known: &HashMap<String, i64>,
        on_server: &std::collections::HashSet<&str>,
    ) -> Result<usize> {
        let gone: Vec<&str> = known
            .keys()
            .map(String::as_str)
            .filter(|u| !on_server.contains(u))
            .collect();
        self.forget(mailbox, &gone)
    }

    /// Forgets the given UIDLs (all when `uidls` is empty is *not* implied:
    /// use [`Store::forget_all`]). Returns how many records were removed.
    pub fn forget(&mut self, mailbox: i64, uidls: &[&str]) -> Result<usize> {
        if uidls.is_empty() {
            return Ok(0);
        }
        let tx = self
            .conn
            .transaction()
            .map_err(|e| db_error("forgetting records", e))?;
        let mut n = 0;
        {
            let mut stmt = tx
                .prepare_cached("DELETE FROM seen WHERE mailbox = ?1 AND uidl = ?2")
                .map_err(|e| db_error("forgetting records", e))?;
            for uidl in uidls {
                n += stmt
                    .execute(params![mailbox, uidl])
                    .map_err(|e| db_error("forgetting records", e))?;
            }
            drop_snapshot_in(&tx, mailbox, "forgetting records")?;
        }
        tx.commit().map_err(|e| db_error("forgetting records", e))?;
        Ok(n)
    }

    pub fn forget_all(&mut self, mailbox: i64) -> Result<usize> {
        let what = "forgetting records";
        let tx = self.conn.transaction().map_err(|e| db_error(what, e))?;
        let n = tx
            .execute("DELETE FROM seen WHERE mailbox = ?1", params![mailbox])
            .map_err(|e| db_error(what, e))?;
        drop_snapshot_in(&tx, mailbox, what)?;
        tx.commit().map_err(|e| db_error(what, e))?;
        Ok(n)
    }
}

/// The path of a lock file in the state directory's `locks/`, which is
/// created if missing.
fn lock_path(state_dir: &Path, name: &str) -> Result<PathBuf> {
    let dir = state_dir.join("locks");
    ensure_state_dir(&dir)?;
    Ok(dir.join(name))
}

/// Held while a connection to the seen database is set up.
fn setup_lock(state_dir: &Path) -> Result<LockFile> {
    LockFile::wait(&lock_path(state_dir, "seen-setup.lock")?)
}

/// The per-mailbox lock (SPEC §4.4), with the holder's pid in the file
/// for the message the next one prints.
pub struct MailboxLock {
    _file: LockFile,
}

impl MailboxLock {
    pub fn acquire(state_dir: &Path, identity: &str) -> Result<MailboxLock> {
        let path = lock_path(state_dir, &lock_file_name(identity))?;
        match LockFile::try_with_pid(&path)? {
            Ok(file) => Ok(MailboxLock { _file: file }),
            Err(holder) => {
                let holder = match holder {
                    None => "another popfetch process".to_string(),
                    Some(p) => format!("another popfetch process (pid {p})"),
                };
                Err(Error::new(
                    ExitKind::TempFail,
                    format!(
                        "{identity} is being synced by {holder}; try again when it has finished"
                    ),
                ))
            }
        }
    }
}

/// A file name for an identity: readable, safe, and collision-free (a
/// short hash of the exact identity is appended).
fn lock_file_name(identity: &str) -> String {
    use sha2::{Digest, Sha256};
    let safe: String = identity
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "@._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let hash = Sha256::digest(identity.as_bytes());
    format!(
        "{safe}.{:02x}{:02x}{:02x}{:02x}.lock",
        hash[0], hash[1], hash[2], hash[3]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_commit_prune_and_forget() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mb = store.mailbox("alice@example.com").unwrap();
        assert_eq!(store.mailbox("alice@example.com").unwrap(), mb);
        let other = store.mailbox("bob@example.com").unwrap();
        store.commit_delivered(mb, &["a", "b", "c"], &[]).unwrap();
        store.commit_delivered(other, &["a"], &[]).unwrap();
        assert_eq!(store.seen(mb).unwrap().len(), 3);
        let on_server: std::collections::HashSet<&str> = ["b", "c"].into_iter().collect();
        assert_eq!(store.prune(mb, &on_server).unwrap(), 1);
        assert_eq!(
            store.seen(other).unwrap().len(),
            1,
            "other mailbox untouched"
        );
        assert_eq!(store.forget(mb, &["b"]).unwrap(), 1);
        let left: Vec<String> = store
            .seen_records(mb)
            .unwrap()
            .into_iter()
            .map(|r| r.uidl)
            .collect();
        assert_eq!(left, vec!["c"]);
        // Reopen: durable, schema not re-applied.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.seen(mb).unwrap().len(), 1);
    }

    #[test]
    fn mark_seen_keeps_existing_records() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Store::open_existing(dir.path()).unwrap().is_none());
        assert!(!dir.path().join(Store::FILE_NAME).exists());
        let mut store = Store::open(dir.path()).unwrap();
        let mb = store.mailbox("a@h").unwrap();
        store.commit_delivered(mb, &["a"], &[]).unwrap();
        let before = store.seen(mb).unwrap()["a"];
        assert_eq!(store.mark_seen(mb, &["a", "b", "c"], "mark").unwrap(), 2);
        let seen = store.seen(mb).unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen["a"], before);
        assert!(Store::open_existing(dir.path()).unwrap().is_some());
    }

    #[test]
    fn journal_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mb = store.mailbox("a@h").unwrap();
        let entry = PendingEntry {
            uidl: "u1".into(),
            folder: PathBuf::from("/m"),
            name: "123.x.host".into(),
        };
        store.journal(mb, std::slice::from_ref(&entry)).unwrap();
        assert_eq!(store.pending(mb).unwrap(), vec![entry]);
        store
            .commit_delivered(mb, &["u1"], &["123.x.host"])
            .unwrap();
        assert!(store.pending(mb).unwrap().is_empty());
        assert!(store.seen(mb).unwrap().contains_key("u1"));
    }

    #[test]
    fn database_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        Store::open(&state).unwrap();
        let mode = std::fs::metadata(state.join(Store::FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
    }

    /// Regression: with -j on a fresh state directory, parallel opens got
    /// "database is locked" while the database was switched to WAL.
    #[test]
    fn parallel_opens_of_a_fresh_database_all_succeed() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let results: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..6)
                    .map(|i| {
                        let d = dir.path();
                        s.spawn(move || {
                            let mut store = Store::open(d)?;
                            let mb = store.mailbox(&format!("user{i}@h"))?;
                            store.commit_delivered(mb, &["u"], &[])
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for r in results {
                r.unwrap();
            }
        }
    }

    /// A database of schema 1 (before UIDVALIDITY and header digests)
    /// keeps its records; the new columns start empty.
    #[test]
    fn schema_1_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(Store::FILE_NAME)).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(
                "INSERT INTO mailbox (id, identity) VALUES (1, 'a@h');
                 INSERT INTO seen (mailbox, uidl, first_seen) VALUES (1, '7/1', 42);",
            )
            .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        let mut store = Store::open(dir.path()).unwrap();
        let mb = store.mailbox("a@h").unwrap();
        assert_eq!(store.seen(mb).unwrap()["7/1"], 42);
        assert_eq!(store.uidvalidity(mb).unwrap(), None);
        assert!(store.header_digests(mb).unwrap().is_empty());
        store
            .commit_delivered_with_headers(mb, &[("7/1", Some("d1")), ("7/2", Some("d2"))], &[])
            .unwrap();
        let digests = store.header_digests(mb).unwrap();
        assert_eq!(digests["7/1"], "d1", "an old record gets its digest");
        assert_eq!(digests["7/2"], "d2");
        assert_eq!(store.seen(mb).unwrap()["7/1"], 42, "and keeps its time");
        store
            .commit_delivered_with_headers(mb, &[("7/2", Some("other"))], &[])
            .unwrap();
        assert_eq!(
            store.header_digests(mb).unwrap()["7/2"],
            "d2",
            "a digest stays"
        );
    }

    /// A database of schema 2 (before folder snapshots) keeps its records,
    /// UIDVALIDITY and digests; it starts without a snapshot, and one can
    /// be kept and read back.
    #[test]
    fn schema_2_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(Store::FILE_NAME)).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(MIGRATIONS[1]).unwrap();
            conn.execute_batch(
                "INSERT INTO mailbox (id, identity, uidvalidity) VALUES (1, 'a@h/INBOX', 7);
                 INSERT INTO seen (mailbox, uidl, first_seen, header) VALUES (1, '7/1', 42, 'd1');",
            )
            .unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
        }
        let mut store = Store::open(dir.path()).unwrap();
        let mb = store.mailbox("a@h/INBOX").unwrap();
        assert_eq!(store.seen(mb).unwrap()["7/1"], 42);
        assert_eq!(store.uidvalidity(mb).unwrap(), Some(7));
        assert_eq!(store.header_digests(mb).unwrap()["7/1"], "d1");
        assert_eq!(store.snapshot(mb).unwrap(), None);
        let snap = FolderSnapshot {
            uidvalidity: 7,
            uidnext: 2,
            messages: 1,
            highestmodseq: Some(99),
            fingerprint: "f00d".into(),
        };
        store.set_snapshot(mb, Some(&snap)).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.snapshot(mb).unwrap(), Some(snap));
        let version: i64 = store
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }

    /// Every change to a mailbox's records drops its snapshot (and only
    /// its own): the snapshot vouches for those records.
    #[test]
    fn changing_records_drops_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mb = store.mailbox("a@h/INBOX").unwrap();
        let other = store.mailbox("a@h/Other").unwrap();
        let snap = FolderSnapshot {
            uidvalidity: 7,
            uidnext: 3,
            messages: 2,
            highestmodseq: None,
            fingerprint: "f".into(),
        };
        type Change = fn(&mut Store, i64);
        let changes: [(&str, Change); 6] = [
            ("commit", |s, mb| {
                s.commit_delivered(mb, &["7/1"], &[]).unwrap()
            }),
            ("mark", |s, mb| {
                s.mark_seen(mb, &["7/2"], "mark").unwrap();
            }),
            ("add", |s, mb| {
                s.add_seen(mb, &[("7/3", 1)], "import").unwrap();
            }),
            ("forget", |s, mb| {
                s.forget(mb, &["7/1"]).unwrap();
            }),
            ("forget all", |s, mb| {
                s.forget_all(mb).unwrap();
            }),
            ("renumber", |s, mb| s.renumber(mb, 8, &[]).unwrap()),
        ];
        for (what, change) in changes {
            store.set_snapshot(mb, Some(&snap)).unwrap();
            store.set_snapshot(other, Some(&snap)).unwrap();
            change(&mut store, mb);
            assert_eq!(store.snapshot(mb).unwrap(), None, "{what}");
            assert_eq!(store.snapshot(other).unwrap(), Some(snap.clone()), "{what}");
        }
        // Clearing a journal entry alone changes no record.
        store.set_snapshot(mb, Some(&snap)).unwrap();
        store.drop_pending(mb, &["x"]).unwrap();
        assert_eq!(store.snapshot(mb).unwrap(), Some(snap));
        store.set_snapshot(mb, None).unwrap();
        assert_eq!(store.snapshot(mb).unwrap(), None);
    }

    /// A snapshot text this build cannot read is no snapshot.
    #[test]
    fn unknown_snapshot_texts_are_none() {
        for text in [
            "",
            "2 1 2 3 - f",
            "1 1 2 3 - ",
            "1 1 2 x - f",
            "1 1 2 3 - f extra",
        ] {
            assert_eq!(FolderSnapshot::decode(text), None, "{text:?}");
        }
        assert!(FolderSnapshot::decode("1 1 2 3 - f").is_some());
    }

    #[test]
    fn renumber_moves_records_and_keeps_what_they_knew() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let mb = store.mailbox("a@h/INBOX").unwrap();
        store
            .commit_delivered_with_headers(mb, &[("7/1", Some("d1")), ("7/2", Some("d2"))], &[])
            .unwrap();
        store.renumber(mb, 7, &[]).unwrap();
        assert_eq!(store.uidvalidity(mb).unwrap(), Some(7));
        let before = store.seen(mb).unwrap();
        store.renumber(mb, 9, &[("7/2", "9/20")]).unwrap();
        assert_eq!(store.uidvalidity(mb).unwrap(), Some(9));
        let after = store.seen(mb).unwrap();
        assert_eq!(after.len(), 2);
        assert_eq!(after["9/20"], before["7/2"]);
        assert!(!after.contains_key("7/2"));
        assert_eq!(store.header_digests(mb).unwrap()["9/20"], "d2");
        let other = store.mailbox("a@h/Other").unwrap();
        assert_eq!(store.uidvalidity(other).unwrap(), None);
    }

    #[test]
    fn second_lock_is_refused_with_pid() {
        let dir = tempfile::tempdir().unwrap();
        let _held = MailboxLock::acquire(dir.path(), "a@h").unwrap();
        let err = MailboxLock::acquire(dir.path(), "a@h").err().unwrap();
        assert_eq!(err.kind(), ExitKind::TempFail);
        assert!(
            err.to_string().contains(&std::process::id().to_string()),
            "{err}"
        );
        assert!(MailboxLock::acquire(dir.path(), "b@h").is_ok());
    }
}
