//! popfetch's integration tests: one target, every test in its own temp dir
//! with HOME and XDG_* pointing into it, the real binary, real servers on loopback.

mod cli;
mod codec_props;
mod dovecot_sync;
mod external_commands;
mod faults;
mod flags;
mod framing;
mod imap_client;
mod imap_faults;
mod imap_sync;
mod imap_target;
mod interop;
mod lmtp_target;
mod mbox_locking;
mod module_graph;
mod oauth;
mod output;
mod peek;
mod policies;
mod pop2;
mod security_warnings;
mod server_text;
mod smtp_relay;
mod support;
mod switching;
mod sync;
mod target_crash;
mod target_output;
mod unsafe_code;
mod watch;
mod wrong_guesses;
