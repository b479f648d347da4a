//! What the user sees and does at the terminal: summaries and JSON
//! (`report`, which renders what the engine and the commands report),
//! the progress display (`progress`), `-v` and security lines (`notice`),
//! sizes (`units`), terminal helpers (`term`), the local time zone
//! (`zone`) and Ctrl-C (`interrupt`). Only `report` knows the engine; the
//! others are leaves it and the engine both use.

pub mod interrupt;
pub mod notice;
pub mod progress;
pub mod report;
pub mod term;
pub mod units;
mod zone;
