//! What popfetch keeps between runs: the seen state and mailbox locks
//! (`store`), in owner-only folders (`files`).

pub mod files;
pub mod store;
