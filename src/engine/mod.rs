//! The engine: what to do with each message (`plan`, pure), the `filter`
//! hook, and `sync`, which drives a source into a target and owns the
//! invariants of SPEC §4 (durable before seen, seen before delete).

pub mod filter;
pub mod plan;
pub mod sync;
