//! What the user sees and does at the terminal: summaries and JSON
//! (`report`, which renders what the engine and the commands report),
//! the progress display (`progress`), `-v` and security lines (`notice`),
//! sizes (`units`), terminal helpers (`term`), the local time zone
//! (`zone`) and Ctrl-C (`interrupt`). Only `report` knows the engine; the
//! others are leaves it and the engine both use.

pub(crate) mod interrupt;
pub(crate) mod notice;
pub(crate) mod progress;
pub mod report;
pub(crate) mod term;
pub(crate) mod units;
mod zone;
