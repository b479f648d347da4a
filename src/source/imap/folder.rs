//! One selected IMAP folder as a [`Source`]: the session plus what the
//! account says of the folder (SPEC §8). Handles are UIDs, ids are
//! `UIDVALIDITY/UID`.

use crate::config::{Account, FetchMode};
use crate::error::{Error, ExitKind, Result};
use crate::net::{Stream, Transport};
use crate::source::{Entry, FetchSink, FolderState, Sink, Source};
use crate::ui::notice::Alerts;

use super::Session;

/// A logged-in session with one folder selected.
pub struct Folder<S = Stream> {
    session: Session<S>,
    account: String,
    /// `[ALERT]`s that come after the login are shown as they come.
    alerts: Alerts,
    /// `fetch = "unseen"`: messages with `\Seen` are held back.
    unseen_only: bool,
    /// `mark_seen`: `\Seen` once a message's record is committed.
    mark_seen: bool,
    /// `move_to`: where deleting moves messages instead.
    move_to: Option<String>,
    /// The UIDs of the last listing.
    listed: Vec<u32>,
    /// This session asked to change the selected folder (flags, expunge,
    /// move): what SELECT said of it no longer holds.
    changed: bool,
}

impl<S: Transport> Folder<S> {
    /// Selects the account's (first) folder.
    pub fn select(mut session: Session<S>, account: &Account, alerts: Alerts) -> Result<Folder<S>> {
        let settings = account.imap.as_ref().ok_or_else(|| {
            Error::new(
                ExitKind::Internal,
                format!("{}: an IMAP folder for a non-IMAP account", account.name),
            )
        })?;
        let folder = settings.folders.first().map_or("INBOX", String::as_str);
        if let Err(e) = session.select(folder, false) {
            // Say goodbye if the connection still can: a folder that cannot
            // be opened is no reason to leave the server hanging.
            if !e.is_transport() {
                let _ = session.finish();
            }
            return Err(e);
        }
        Ok(Folder {
            session,
            account: account.name.clone(),
            alerts,
            unseen_only: settings.fetch == FetchMode::Unseen,
            mark_seen: settings.mark_seen,
            move_to: settings.move_to.clone(),
            listed: Vec::new(),
            changed: false,
        })
    }

    /// `-v`: the folder as SELECT found it.
    pub fn describe(&self) -> String {
        match self.session.mailbox() {
            Some(mb) => format!(
                "folder {:?}: {} message{}, UIDVALIDITY {}",
                mb.name,
                mb.exists,
                if mb.exists == 1 { "" } else { "s" },
                mb.uidvalidity
            ),
            None => "no folder selected".to_string(),
        }
    }

    /// The `[ALERT]`s not yet shown (those of the SELECT, for the report).
    pub fn take_alerts(&mut self) -> Vec<String> {
        self.session.take_alerts()
    }

    /// Shows the `[ALERT]`s the server sent since the last call.
    fn show_alerts(&mut self) {
        for alert in self.session.take_alerts() {
            self.alerts
                .security(&format!("{}: the server says: {alert}", self.account));
        }
    }

    /// `f` on the session, then the alerts it brought.
    fn with<R>(&mut self, f: impl FnOnce(&mut Session<S>) -> Result<R>) -> Result<R> {
        let result = f(&mut self.session);
        self.show_alerts();
        result
    }
}

impl<S: Transport> Source for Folder<S> {
    fn host(&self) -> &str {
        self.session.host()
    }

    fn listing(&mut self) -> Result<Vec<Entry>> {
        let listing = self.with(|s| s.listing())?;
        self.listed = listing.iter().map(|e| e.handle).collect();
        Ok(listing)
    }

    fn held_back(&mut self) -> Result<Vec<u32>> {
        if !self.unseen_only || self.listed.is_empty() {
            return Ok(Vec::new());
        }
        let unseen = self.with(|s| s.unseen())?;
        Ok(self
            .listed
            .iter()
            .copied()
            .filter(|uid| unseen.binary_search(uid).is_err())
            .collect())
    }

    fn recorded(&mut self, handles: &[u32]) -> Result<()> {
        if !self.mark_seen || handles.is_empty() {
            return Ok(());
        }
        self.changed = true;
        let done = self.with(|s| s.flag_seen(handles))?;
        let refused = done.iter().filter(|ok| !**ok).count();
        if refused > 0 {
            self.alerts.security(&format!(
                "{}: the server refused to mark {refused} delivered message(s) seen (mark_seen)",
                self.account
            ));
        }
        Ok(())
    }

    fn headers(&mut self, handles: &[u32], sink: &mut Sink<'_>) -> Result<bool> {
        self.with(|s| s.headers(handles, sink))
    }

    fn top(&mut self, handles: &[u32], lines: u32, sink: &mut Sink<'_>) -> Result<()> {
        self.with(|s| s.top(handles, lines, sink))
    }

    fn fetch(
        &mut self,
        handles: &[u32],
        max_size: Option<u64>,
        sink: &mut FetchSink<'_>,
    ) -> Result<()> {
        // Deletions follow the fetch: what the sink says of each message
        // is not needed here.
        self.with(|s| {
            s.fetch(handles, max_size, &mut |i, reply| {
                sink(i, reply).map(|_| ())
            })
        })
    }

    fn delete(&mut self, handles: &[u32]) -> Result<Vec<bool>> {
        self.changed |= !handles.is_empty();
        match self.move_to.clone() {
            Some(folder) => self.with(|s| s.move_to(handles, &folder)),
            None => self.with(|s| s.delete(handles)),
        }
    }

    fn select_folder(&mut self, folder: &str) -> Result<bool> {
        self.listed.clear();
        self.changed = false;
        self.with(|s| s.select(folder, false).map(|_| true))
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.show_alerts();
        self.session.finish()
    }

    fn uidvalidity(&self) -> Option<(&str, u32)> {
        self.session
            .mailbox()
            .map(|m| (m.name.as_str(), m.uidvalidity))
    }

    fn folder_state(&self) -> Option<FolderState> {
        if self.changed {
            return None;
        }
        let mb = self.session.mailbox()?;
        Some(FolderState {
            uidvalidity: mb.uidvalidity,
            uidnext: mb.uidnext?,
            messages: mb.exists,
            highestmodseq: mb.highestmodseq,
        })
    }
}
