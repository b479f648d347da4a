//! The command line: every flag and help text, in one place. `popfetch man`
//! and `popfetch completions` are generated from these definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::report::ColorChoice;

const AFTER_HELP: &str = "\
Configuration: ~/.config/popfetch/config.toml (or -c FILE, or $POPFETCH_CONFIG).
Exit codes: 0 ok, 1 no new mail (check), 64 usage, 69 server unavailable, 70 internal,
73 cannot create files, 74 local I/O, 75 temporary failure, 76 protocol error,
77 not permitted (login, certificate), 78 configuration.";

/// popfetch: fetch mail from POP3 servers into a Maildir or mbox, safely.
///
/// popfetch downloads each message once (tracked by UIDL in a local SQLite
/// database), writes it durably before it counts as delivered, and only then
/// deletes it from the server if asked to. TLS is on by default.
#[derive(Debug, Parser)]
#[command(name = "popfetch", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// The config file [default: ~/.config/popfetch/config.toml]
    #[arg(
        short = 'c',
        long,
        global = true,
        env = "POPFETCH_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// Print errors only
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// More detail; -vv prints the protocol dialogue with secrets replaced by ***
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// When to use colours on stderr (NO_COLOR is honoured with auto)
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch new mail for every account, or the named ones
    Sync(SyncArgs),
    /// Validate the config and print each account's resolved settings (never a secret)
    Accounts(AccountsArgs),
    /// Print a shell completion script
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff)
    Man,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Accounts to sync (default: all)
    #[arg(value_name = "ACCOUNT")]
    pub accounts: Vec<String>,

    /// Leave messages on the server, whatever the account's `keep` says
    #[arg(long, conflicts_with = "delete")]
    pub keep: bool,

    /// Delete messages from the server once delivered, whatever `keep` says
    #[arg(long)]
    pub delete: bool,

    /// Also fetch messages that were delivered before
    #[arg(long)]
    pub all: bool,

    /// Print one JSON object per account on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AccountsArgs {
    /// Print one JSON object per account
    #[arg(long)]
    pub json: bool,
}

impl Cli {
    /// The clap command, for the man page and completions.
    pub fn command() -> clap::Command {
        <Cli as clap::CommandFactory>::command()
    }
}
