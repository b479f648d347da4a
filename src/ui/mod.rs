//! What the user sees and does at the terminal: summaries, JSON and
//! progress (`report`), terminal helpers (`term`), the local time zone
//! (`zone`) and Ctrl-C (`interrupt`).

pub mod interrupt;
pub mod report;
pub mod term;
mod zone;
