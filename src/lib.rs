//! popfetch: a POP3 mail fetcher that never loses or duplicates a message.
//!
//! The binary is a thin shell around [`app::run`]; each module has one job:
//! `config` (TOML → accounts), `net` (TCP/TLS), `pop3` (the protocol),
//! `store` (seen state and locks), `deliver` (Maildir, mbox, MDA), `command`
//! (external commands under a time limit), `files`
//! (owner-only folders), `signals` (signal dispositions, the one
//! place with `sigaction`), `plan` (what to do with each message), `sync`
//! (one account's session), `report` (what the user sees) and `cli`/`app`
//! (the commands).

pub mod app;
pub mod cli;
pub mod command;
pub mod config;
pub mod connect;
pub mod deliver;
pub mod docs;
pub mod error;
pub mod files;
pub mod filter;
pub mod import;
pub mod info;
pub mod init;
pub mod interrupt;
pub mod net;
pub mod peek;
pub mod plan;
pub mod pop2;
pub mod pop3;
pub mod report;
pub mod secret;
pub mod seen;
pub mod signals;
pub mod store;
pub mod sync;
pub mod term;
