//! One selected IMAP folder as a [`Source`]: the session plus what the
//! account says of the folder (SPEC §8). Handles are UIDs, ids are
//! `UIDVALIDITY/UID`.

use crate::config::Account;
use crate::error::{Error, ExitKind, Result};
use crate::net::{Stream, Transport};
use crate::source::{Entry, FetchSink, Sink, Source};
use crate::ui::notice::Alerts;

use super::Session;

/// A logged-in session with one folder selected.
pub struct Folder<S = Stream> {
    session: Session<S>,
    account: String,
    /// `[ALERT]`s that come after the login are shown as they come.
    alerts: Alerts,
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
        session.select(folder, false)?;
        Ok(Folder {
            session,
            account: account.name.clone(),
            alerts,
        })
    }

    /// The `[ALERT]`s so far as warnings for the report (those of the
    /// login and the SELECT).
    pub fn warnings(&mut self) -> Vec<String> {
        self.session
            .take_alerts()
            .into_iter()
            .map(|a| format!("{}: the server says: {a}", self.account))
            .collect()
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
        self.with(|s| s.listing())
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
        self.with(|s| s.delete(handles))
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
}
