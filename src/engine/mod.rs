//! The engine: what to do with each message (`plan`, pure), who a message
//! is when the server's ids fall short (`identity`), the `filter` hook,
//! and `sync`, which drives any `source::Source` into any
//! `target::Delivery` and alone owns the invariants of SPEC §4 (durable
//! before seen, seen before delete), the journal, batching, recovery,
//! reporting and Ctrl-C. It knows no protocol.

pub mod filter;
pub mod identity;
pub mod plan;
pub mod sync;
