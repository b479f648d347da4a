//! The parts of `popfetch watch` that are not the command itself: when
//! each account runs (`schedule`, `backoff`), where the loop waits and how
//! signals reach it (`wake`), what it says (`events`), systemd's notify
//! protocol (`notify`) and the one-watch-per-config lock (`lock`). The loop
//! is `commands::watch`; each run is `engine::sync::sync_account`, the
//! same code `sync` runs.

pub mod backoff;
pub mod events;
pub mod lock;
pub mod notify;
pub mod schedule;
pub mod wake;
