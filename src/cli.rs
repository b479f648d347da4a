//! The command line: every flag and help text, in one place. `popfetch man`
//! and `popfetch completions` are generated from these definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::ui::report::ColorChoice;

const AFTER_HELP: &str = "\
Configuration: ~/.config/popfetch/config.toml (or -c FILE, or $POPFETCH_CONFIG).
Exit codes: 0 ok, 1 no new mail (check), 64 usage, 69 server unavailable, 70 internal,
73 cannot create files, 74 local I/O, 75 temporary failure, 76 protocol error,
77 not permitted (login, certificate), 78 configuration.";

/// The heading the options of every command are listed under, apart from
/// a command's own.
const GLOBAL: &str = "Global options";

/// popfetch: fetch mail from POP3 and IMAP servers, safely and fast.
///
/// popfetch downloads each message once (tracked in a local SQLite
/// database by UIDL, or folder, UIDVALIDITY and UID), delivers it into a
/// Maildir, an mbox, an MDA, LMTP/SMTP or an IMAP mailbox, durably before
/// it counts as delivered, and only then deletes it from the server if
/// asked to. TLS is on by default; `watch` keeps fetching on a schedule.
#[derive(Debug, Parser)]
#[command(name = "popfetch", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// The config file [default: ~/.config/popfetch/config.toml]
    #[arg(
        short = 'c',
        long,
        global = true,
        env = "POPFETCH_CONFIG",
        value_name = "FILE",
        help_heading = GLOBAL
    )]
    pub config: Option<PathBuf>,

    /// Print errors only (and warnings that a password or token goes out unencrypted)
    #[arg(short, long, global = true, conflicts_with = "verbose", help_heading = GLOBAL)]
    pub quiet: bool,

    /// A line per step and per message delivered (number, size, UIDL, where
    /// it went); -vv adds the protocol dialogue with secrets replaced by ***
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,

    /// When to colour errors, warnings and new mail: auto (on a terminal,
    /// unless NO_COLOR is set), always or never
    #[arg(
        long,
        global = true,
        value_enum,
        hide_possible_values = true,
        default_value_t = ColorChoice::Auto,
        value_name = "WHEN",
        help_heading = GLOBAL
    )]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch new mail for every account, or the named ones
    Sync(SyncArgs),
    /// Keep fetching: each account on its own schedule, until stopped
    ///
    /// Each account syncs every `interval` (default 5m), its first run
    /// somewhere in the first interval; IMAP accounts with `idle = true`
    /// also wait for new mail with IDLE. Temporary failures (exit 75) are
    /// retried later and later (up to an hour); others at the next interval.
    /// Prints one line per event on stderr, nothing while nothing happens.
    /// SIGTERM or SIGINT: the running syncs commit what they fetched and
    /// log out, then exit 0 (a second signal exits at once). SIGHUP:
    /// reload the config. SIGUSR1: sync every account now. One watch per
    /// config file; under systemd (Type=notify) it reports readiness,
    /// status and watchdog.
    Watch(WatchArgs),
    /// Ask whether new mail has arrived; download nothing
    ///
    /// One short session per account (POP3: LIST and UIDL; IMAP: UID FETCH
    /// of UIDs and sizes, the folders on one session). Exits 0 when any
    /// account has new mail, 1 when none has, or an error code. Made to be
    /// polled by a status bar or a shell prompt.
    Check(CheckArgs),
    /// List the messages on the server: number, size, UIDL, new or seen
    List(ListArgs),
    /// Peek at messages without downloading them
    ///
    /// Without MSG: one line per message (number, size, date, from,
    /// subject, new/seen) from its header block. With MSG: that message's
    /// header block and first N body lines, as the server has them.
    /// Changes nothing on the server or in the seen state.
    Top(TopArgs),
    /// Validate the config and print each account's resolved settings (never a secret)
    Accounts(AccountsArgs),
    /// Inspect or change the record of which messages were delivered
    Seen {
        #[command(subcommand)]
        command: SeenCommand,
    },
    /// Show what a server offers: greeting, CAPA, TLS version and cipher, certificate chain
    /// with SHA-256 fingerprints (for tls_fingerprint). Never logs in.
    Info {
        /// The account whose server to probe
        #[arg(value_name = "ACCOUNT")]
        account: String,
    },
    /// Write a commented starter config (mode 0600) for a provider or a host; never overwrites
    Init(InitArgs),
    /// Sign in with OAuth2 and keep the tokens (accounts with `oauth` keys)
    ///
    /// Opens the provider's sign-in page in a browser (the address is
    /// always printed too) and receives the answer on 127.0.0.1; with
    /// --device, prints an address and a code to enter on any other
    /// device instead. The tokens are kept in the state directory, readable
    /// by you alone, and refreshed by popfetch from then on. Signs in the
    /// account's server, and its imap_target when that uses OAuth too.
    Login(LoginArgs),
    /// Forget the OAuth2 tokens of an account (and of its imap_target)
    Logout {
        /// The account
        #[arg(value_name = "ACCOUNT")]
        account: String,
    },
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

    /// Connect and print on stdout what would be fetched, deleted and left, one line per
    /// message, then a summary; change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Sync up to N accounts at once [default: up to 4]
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: Option<u16>,

    /// Print one JSON object per account on stdout (with --dry-run, the plan as `planned`)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Accounts to watch (default: all)
    #[arg(value_name = "ACCOUNT")]
    pub accounts: Vec<String>,

    /// Sync up to N accounts at once [default: up to 4]
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: Option<u16>,

    /// Print one JSON object per event on stdout (`event`: start, sync,
    /// reload, reload_failed, idle, stopping, stopped)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Accounts to check (default: all)
    #[arg(value_name = "ACCOUNT")]
    pub accounts: Vec<String>,

    /// Print one JSON object per account on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The account
    #[arg(value_name = "ACCOUNT")]
    pub account: String,

    /// Print one JSON object per message on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// The account
    #[arg(value_name = "ACCOUNT")]
    pub account: String,

    /// Messages to show, by number or UIDL (a number is taken as a message number first)
    #[arg(value_name = "MSG")]
    pub messages: Vec<String>,

    /// With MSG: how many body lines to show after the header block
    #[arg(short = 'n', long, value_name = "N", default_value_t = 0)]
    pub lines: u32,

    /// Without MSG: only the messages not seen before
    #[arg(long, conflicts_with = "messages")]
    pub new: bool,

    /// Print one JSON object per message on stdout: without MSG `number`,
    /// `size`, `uidl`, `date` (Unix seconds or null), `from`, `subject`,
    /// `seen`; with MSG `number`, `uidl`, `header` (the header block) and
    /// `body` (the first N lines), as text with LF line ends
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SeenCommand {
    /// Print the UIDLs recorded as delivered, with the time of the first delivery
    List {
        /// The account
        #[arg(value_name = "ACCOUNT")]
        account: String,
        /// Print one JSON object per record on stdout (`uidl`, `first_seen`
        /// in Unix seconds)
        #[arg(long)]
        json: bool,
    },
    /// Forget UIDLs, so the next sync downloads those messages again
    ///
    /// With no UIDL, forget every record of the account: the next sync
    /// downloads everything still on the server again. On a terminal this
    /// asks first (--yes skips the question); elsewhere (a script, cron) it
    /// needs --all. Nothing is deleted anywhere.
    Forget {
        /// The account
        #[arg(value_name = "ACCOUNT")]
        account: String,
        /// UIDLs to forget (or --all)
        #[arg(value_name = "UIDL")]
        uidls: Vec<String>,
        /// Forget every record of the account (required off a terminal)
        #[arg(long, conflicts_with = "uidls")]
        all: bool,
        /// Do not ask before forgetting everything
        #[arg(short, long)]
        yes: bool,
    },
    /// Record everything now on the server as seen, without downloading it
    ///
    /// Start fresh on an old mailbox: the next sync fetches only mail that
    /// arrives from now on.
    Mark {
        /// The account
        #[arg(value_name = "ACCOUNT")]
        account: String,
    },
    /// Take over another fetcher's record of what was already downloaded
    ///
    /// Reads fetchmail's .fetchids, mpop's uidls file, getmail's oldmail-*
    /// file or fdm's cache and adds its records (with their download times
    /// where the file has them) to the seen state: the next sync downloads
    /// none of them. fetchmail and mpop keep many accounts in one file:
    /// only this account's user and host are taken. getmail and fdm keep
    /// a file per mailbox: give the one of this account (a getmail file
    /// named for another mailbox is refused). A malformed file is an error
    /// naming the line, and imports nothing. POP3 accounts only.
    Import {
        /// The account
        #[arg(value_name = "ACCOUNT")]
        account: String,
        /// Which fetcher wrote FILE
        #[arg(long, value_enum)]
        from: crate::commands::import::Source,
        /// The state file to read
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// A provider preset: gmail, outlook, yahoo, aol, icloud, gmx, webde, fastmail
    #[arg(long, value_name = "NAME", conflicts_with = "host")]
    pub provider: Option<String>,
    /// The server (instead of a provider); HOST:PORT sets the port too
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// The protocol: pop3 or imap [default: pop3, or imap for a provider without POP3 (icloud)]
    #[arg(long, value_name = "PROTO", value_parser = ["pop3", "imap"])]
    pub protocol: Option<String>,
    /// The server's port [default: 995, IMAP 993; with --tls starttls or none: 110, IMAP 143]
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Transport security [default: implicit, or starttls with --port 110 (IMAP: 143)]
    #[arg(long, value_name = "MODE", value_parser = ["implicit", "starttls", "none"])]
    pub tls: Option<String>,
    /// Your login name (for most providers: your e-mail address)
    #[arg(long, value_name = "USER")]
    pub user: String,
    /// The account's section name in the config [default: the provider, or "mail"]
    #[arg(long, visible_alias = "account", value_name = "NAME")]
    pub name: Option<String>,
    /// Where mail goes [default: ~/Mail/NAME]
    #[arg(long, value_name = "DIR")]
    pub maildir: Option<String>,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The account
    #[arg(value_name = "ACCOUNT")]
    pub account: String,

    /// Sign in on another device (RFC 8628 device grant): for machines
    /// without a browser
    #[arg(long)]
    pub device: bool,
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
