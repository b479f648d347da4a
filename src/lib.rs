//! popfetch: a mail fetcher that never loses or duplicates a message.
//!
//! The binary is a thin shell around [`commands::run`]. The modules:
//!
//! ```text
//! cli        every flag and help text (clap)
//! commands/  mod.rs dispatches; sync, watch, accounts, peek (check/list/top),
//!            seen, info, init, import, login (login, logout), docs (man,
//!            completions)
//! config/    raw.rs reads the TOML with spans; one validator per key or
//!            group (server, imap, targets, policy, password) → Account
//! source/    where mail comes from: the Source trait (mod.rs); pop3/ (client,
//!            codec, auth), imap/ (client, codec, folder,
//!            idle for `watch`), pop2, connect
//!            (POP3 and IMAP login)
//! engine/    plan (pure), identity, filter, sync: drives any Source into
//!            any Delivery and owns the invariants
//! target/    where mail goes: the Delivery interface; maildir, mbox, mda,
//!            lmtp (LMTP and SMTP), imap (APPEND)
//! state/     the seen store (and per-folder snapshots); owner-only files and
//!            the lock files (mailbox, watch, OAuth refresh)
//! net/       TCP and TLS: timeouts, STARTTLS, trust and pins
//! oauth/     OAuth2 sign-in (login: code + PKCE, device), the token store,
//!            refresh
//! ui/        report (summaries, JSON), progress, notice (-v, alerts), units,
//!            terminal helpers, time zones, Ctrl-C
//! external   external commands (MDA, filter, password_command) under a time limit
//! signals    the one place that changes signal dispositions
//! watch/     `watch`: schedule, backoff, wake-ups and signals, events,
//!            systemd notify, the one-watch-per-config lock
//! error      errors that know their exit code (SPEC §6)
//! ```

pub(crate) mod calendar;
pub mod cli;
pub mod commands;
pub mod config;
pub(crate) mod engine;
pub mod error;
pub(crate) mod external;
pub mod net;
pub mod oauth;
pub(crate) mod signals;
pub mod source;
pub(crate) mod state;
pub(crate) mod target;
pub mod ui;
pub(crate) mod watch;
