//! Generated documentation: the man page and shell completions, both built
//! from the clap definitions in `cli.rs`, so they cannot drift from the
//! binary (a test compares them with the committed copies).

use std::io::{self, Write};

use crate::cli::Cli;
use crate::config::{ACCOUNT_KEYS, TARGET_KEYS};

pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn Write) -> io::Result<()> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "popfetch", out);
    Ok(())
}

/// The man page: clap's sections plus configuration, files, exit codes
/// and examples.
pub fn write_man(out: &mut dyn Write) -> io::Result<()> {
    let cmd = Cli::command();
    // NAME reads "popfetch \- what it does": the about without its own
    // "popfetch: " (which `--help` shows).
    let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
    let what = about
        .strip_prefix("popfetch: ")
        .unwrap_or(&about)
        .to_string();
    let man = clap_mangen::Man::new(cmd.clone().about(what));
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    render_subcommands(&cmd, out)?;
    out.write_all(EXTRA_HEAD.as_bytes())?;
    for (key, what) in ACCOUNT_KEYS.iter() {
        writeln!(
            out,
            ".TP\n\\fB{}\\fR\n{}",
            roff_escape(key),
            roff_escape(what)
        )?;
    }
    out.write_all(
        b".PP\nA [targets.NAME] table is an IMAP mailbox that accounts with imap_target = \"NAME\" append to; its keys:\n",
    )?;
    for (key, what) in TARGET_KEYS.iter() {
        writeln!(
            out,
            ".TP\n\\fB{}\\fR\n{}",
            roff_escape(key),
            roff_escape(what)
        )?;
    }
    out.write_all(EXTRA_TAIL.as_bytes())?;
    man.render_version_section(out)?;
    Ok(())
}

fn render_subcommands(cmd: &clap::Command, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands() {
        render_subcommand(sub, &format!("popfetch {}", sub.get_name()), out)?;
    }
    Ok(())
}

/// One command: usage, description, its own arguments, then its
/// subcommands (`seen list`, …) the same way.
fn render_subcommand(sub: &clap::Command, path: &str, out: &mut dyn Write) -> io::Result<()> {
    let mut usage = sub.clone().bin_name(path);
    let usage = usage.render_usage().to_string();
    let usage = usage.trim_start_matches("Usage: ");
    writeln!(out, ".TP\n\\fB{}\\fR", roff_escape(usage))?;
    if let Some(about) = sub.get_long_about().or(sub.get_about()) {
        for (i, para) in about.to_string().split("\n\n").enumerate() {
            if i > 0 {
                writeln!(out, ".IP")?;
            }
            writeln!(out, "{}", roff_escape(&para.replace('\n', " ")))?;
        }
    }
    for arg in sub.get_arguments().filter(|a| !a.is_global_set()) {
        let Some(help) = arg.get_help() else { continue };
        let value = arg
            .get_value_names()
            .and_then(|v| v.first())
            .map(|v| v.to_string())
            .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
        let takes_value = arg.get_action().takes_values();
        let flag = match (arg.get_long(), arg.get_short()) {
            (Some(l), Some(s)) => Some(format!("-{s}, --{l}")),
            (Some(l), None) => Some(format!("--{l}")),
            (None, Some(s)) => Some(format!("-{s}")),
            (None, None) => None,
        };
        let name = match flag {
            Some(f) if takes_value => format!("{f} {value}"),
            Some(f) => f,
            None => value,
        };
        let mut help = help.to_string();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if takes_value && !defaults.is_empty() {
            help.push_str(&format!(" [default: {}]", defaults.join(", ")));
        }
        writeln!(
            out,
            ".RS\n.TP\n{}\n{}\n.RE",
            roff_escape(&name),
            roff_escape(&help)
        )?;
    }
    for child in sub.get_subcommands() {
        writeln!(out, ".RS")?;
        render_subcommand(child, &format!("{path} {}", child.get_name()), out)?;
        writeln!(out, ".RE")?;
    }
    Ok(())
}

fn roff_escape(s: &str) -> String {
    let s = s.replace('\\', "\\\\").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

const EXTRA_HEAD: &str = r#".SH CONFIGURATION
The config file is TOML. Top-level keys: \fBstate_dir\fR (seen database and locks; default
\fI~/.local/state/popfetch\fR), a \fB[defaults]\fR table whose keys every account inherits, and
one \fB[accounts.NAME]\fR table per account. Paths may start with \fB~/\fR; relative paths are
taken relative to the config file's folder. An unknown key is an error naming its line.
A file that holds a \fBpassword\fR must be readable by its owner only (chmod 600).
\fBprotocol\fR chooses the server: "pop3" (the default), "imap" (see IMAP below) or "pop2".
.PP
Account keys:
"#;

const EXTRA_TAIL: &str = r#".PP
A complete file, with one account:
.PP
.RS 4
.nf
[defaults]
keep = true

[accounts.work]
host = "pop.example.com"
user = "alice"
password_command = "pass show mail/work"
maildir = "~/Mail/work"
.fi
.RE
.PP
An IMAP account (port 993, implicit TLS) with two folders:
.PP
.RS 4
.nf
[accounts.home]
protocol = "imap"
host = "imap.example.com"
user = "alice"
password_command = "pass show mail/home"
folders = ["INBOX", "Lists/rust"]
maildir = "~/Mail/home"
.fi
.RE
.SH EXAMPLES
.TP
\fBpopfetch init \-\-provider gmail \-\-user me@gmail.com\fR
Write a starter config; then check it with \fBpopfetch accounts\fR.
.TP
\fBpopfetch init \-\-provider gmail \-\-protocol imap \-\-user me@gmail.com\fR
The same for Gmail's IMAP (presets: gmail, outlook, yahoo, aol, icloud, gmx, webde,
fastmail; without \fB\-\-protocol\fR, POP3 where the provider offers it).
.TP
\fBpopfetch sync\fR
Fetch new mail for every account.
.TP
\fBpopfetch \-v sync work\fR
Fetch for one account, saying where each message went.
.TP
\fB*/10 * * * * popfetch sync \-q\fR
A crontab line: silent unless something failed.
.TP
\fBpopfetch sync \-\-dry\-run \-\-delete\fR
Show what a deleting sync would fetch and delete, changing nothing.
.TP
\fBpopfetch check && popfetch sync\fR
Fetch only when something is waiting (\fBcheck\fR exits 1 when there is no new mail).
.TP
\fBpopfetch \-q check work; echo $?\fR
Poll from a status bar or a shell prompt: no output, 0 means new mail.
.TP
\fBpopfetch check \-\-json | jq \-r 'select(.new > 0) | .account'\fR
Print the accounts that have new mail.
.TP
\fBpopfetch top work \-\-new\fR
One line per unseen message (number, size, date, sender, subject), from the headers only.
.TP
\fBpopfetch top work 3 \-n 20\fR
The header block and first 20 body lines of message 3, without downloading it.
.TP
\fBpopfetch seen mark work\fR
Start fresh on an old mailbox: what is there now counts as seen.
.TP
\fBpopfetch seen forget work 00000a1b4f3c2e1d\fR
Download that message again at the next sync.
.TP
\fBpopfetch seen import work \-\-from fetchmail ~/.fetchids\fR
Switch from fetchmail (or mpop, getmail, fdm) without downloading anything twice.
.TP
\fBpopfetch info work\fR
Show the server's capabilities and certificate fingerprint, to pin with \fBtls_fingerprint\fR.
.SH FILES
.TP
\fI~/.config/popfetch/config.toml\fR
the configuration ($XDG_CONFIG_HOME is honoured)
.TP
\fI~/.local/state/popfetch/seen.sqlite3\fR
which messages of which mailbox (user@host, for IMAP user@host/FOLDER) were delivered
($XDG_STATE_HOME is honoured)
.TP
\fI~/.local/state/popfetch/locks/\fR
one lock per mailbox; a second popfetch on the same mailbox exits 75
.TP
\fI~/.local/state/popfetch/oauth/\fR
the OAuth2 tokens of \fBpopfetch login\fR, one file per account or target, mode 0600
.SH DELIVERY
A message counts as delivered only once it is on disk: fsync per file, or, for a Maildir on a
local ext2/3/4, XFS, Btrfs or F2FS file system with Linux 5.8 or later, one syncfs for each
group of files written (far less disk work; a commit may then also wait for other programs'
pending writes on that file system). Maildir delivery is
exactly-once even across a crash: a journal in the seen database is checked against the
Maildir at the next start. mbox delivery appends under dotfile and fcntl locks and truncates
a failed append; it is exactly-once across a crash too: the append is journaled (the mbox's
inode and length, where each message lies, a digest of its bytes) before it starts, and at
the next start messages found complete are recorded and an unfinished append is truncated
(bytes another program wrote are never cut; that case is reported). An \fBmda\fR command
gets the message on stdin (run by sh \-c, with
POPFETCH_ACCOUNT, POPFETCH_UIDL and POPFETCH_SENDER in its environment), started only once
the whole message has been received and spooled to an unlinked file in the state directory,
so it never sees a message cut short by a dropped connection; exit 0 is delivered, 75 is a
temporary failure, anything else a failure that leaves the message unseen on the server; an
MDA still running after \fBcommand_timeout\fR is killed with its children (exit 75, the
message stays unseen); a crash while the MDA runs or before its seen record is written
delivers that one message twice.
DELE is sent only for messages recorded as delivered, and takes effect only at a clean QUIT;
IMAP marks only such messages \\Deleted (or moves them, with \fBmove_to\fR).
.SH POLICIES
.TP
\fBkeep_days = N\fR
with keep = true, a message is deleted on the server at the first sync N or more days after
it was first downloaded (0: at the next sync). Imported records count from the download time
the other fetcher recorded, else from the import.
.TP
\fBmax_size = "25 MB"\fR
larger messages (by the size the server announces) are never downloaded and are reported as
skipped at every sync. KB, MB, GB are powers of 1000; KiB, MiB, GiB of 1024.
.TP
\fBfilter = "command"\fR
for each new message the header block (from TOP n 0) goes to the command's stdin, with
POPFETCH_ACCOUNT, POPFETCH_UIDL and POPFETCH_SIZE in its environment. Exit 0 fetches the
message, 1 deletes it on the server without downloading it, 2 leaves it there and asks again
next time (the summary and \fBsync \-\-json\fR count these as \fBleft\fR). Any other exit,
a filter that is killed, not found (127) or still running after \fBcommand_timeout\fR (then
killed with its children) stops the account with exit 78 and one error line, shown even with
\-q, before anything is fetched or deleted; the next sync asks the mended filter again.
.TP
\fBcommand_timeout = 300\fR
seconds the \fBmda\fR, the \fBfilter\fR and \fBpassword_command\fR may each run (default 300,
under the 10 minutes after which a POP3 server may drop an idle session). Each runs in a
process group of its own; past the limit the whole group is killed, so a hung command never
holds the mailbox. A timed\-out password_command exits 78.
.SH OUTPUT
Data goes to stdout; progress, summaries, warnings and errors to stderr. \fBsync \-\-dry\-run\fR
prints its plan on stdout: one line per message (what would happen, number, size, UIDL, and
why a message would be deleted unread or left), then a summary, or "nothing to do"; with
\fB\-\-json\fR the account's object has "dry_run": true and "planned", an array of
{action, number, size, uidl, reason} where action is fetch, fetch_and_delete, delete or leave.
\fBlist\fR and \fBseen list\fR print a header row only when stdout is a terminal; piped,
\fBlist\fR gives sizes in octets. Sizes are shown in B, KiB, MiB (powers of 1024), and every
count of bytes (summaries, progress, \-\-json bytes, check, list, top, \-\-dry\-run) is the
message as the server sends it, with CRLF line ends, as LIST announces it; a delivered file is a
little smaller (LF line ends).
.SH POP2
\fBprotocol = "pop2"\fR speaks RFC 937 (HELO, FOLD, READ, RETR, ACKS/ACKD/NACK) on port 109.
POP2 has no TLS: \fBtls\fR must be set to "none" (the password then crosses the network in
clear), or to "implicit" with the \fBport\fR of a TLS\-wrapped POP2 service. \fBfolder\fR picks
the mailbox (default: the inbox). POP2 has no message ids: a message is known by a digest of
its content, so each new message is read twice (once to recognise it, once to deliver it) and,
with keep = true, every message is read again at each sync, though never delivered twice.
\fBcheck\fR can only count: it reports every message on the server as new (exact when the
account deletes what it fetches, an upper bound with keep = true). \fBlist\fR, \fBtop\fR,
\fBinfo\fR, \fBseen mark\fR and \fB\-\-dry\-run\fR need POP3 or IMAP.
.SH IMAP
\fBprotocol = "imap"\fR speaks IMAP4rev1 (RFC 3501; IMAP4rev2 servers answer it too) on port
993 with implicit TLS, or on 143 with STARTTLS (\fBtls = "starttls"\fR; a server without
STARTTLS stops the account, exit 77). \fBauth = "auto"\fR chooses among what CAPABILITY offers
(SASL PLAIN, LOGIN, CRAM\-MD5, with SASL\-IR when offered, or the LOGIN command, which is what
\fBauth = "user"\fR means for IMAP); \fBapop\fR is refused. Messages are fetched with
UID FETCH BODY.PEEK[], many per command, streamed: fetching changes no flag.
.TP
\fBfolders = ["INBOX", ...]\fR
the folders to fetch from (default INBOX), in UTF\-8 with the server's hierarchy separator;
each is a mailbox of its own, with its own seen state (user@host/FOLDER) and lock. \fBsync\fR
selects them in turn in one session; a folder the server cannot open stops the account,
exit 78.
.TP
\fBfetch = "new"\fR | \fB"unseen"\fR
new (the default): what popfetch has not delivered before, whatever its flags; unseen: only
messages without the \\Seen flag, as fetchmail does (the seen state still prevents
duplicates).
.TP
\fBmark_seen = true\fR
set \\Seen on each message once its record is committed (default false: no flag changes).
.TP
\fBmove_to = "FOLDER"\fR
when deleting (keep = false, \-\-delete, keep_days), move the messages there instead: UID MOVE
(RFC 6851), else UID COPY and a delete; a folder the server says to create ([TRYCREATE]) is
created once. Not one of \fBfolders\fR.
.TP
\fBidle = true\fR
\fBwatch\fR also waits for new mail with IDLE (one connection per folder, renewed every 29 minutes) and syncs as soon as it comes.
.PP
A message's identity is its folder, the folder's UIDVALIDITY and its UID: its \fBuidl\fR in
\fBlist\fR, \fBtop\fR, \fB\-\-dry\-run\fR and JSON is UIDVALIDITY/UID, its \fBnumber\fR the UID
(\fBtop\fR takes either as MSG). When a server changes a folder's UIDVALIDITY (it renumbered
the folder), popfetch reads the header blocks of the messages it does not know before it
fetches anything, recognises the ones it delivered by a digest of their headers, records them
under their new UIDs, fetches only the rest and says so in a warning. Deleting: UID STORE
+FLAGS.SILENT (\\Deleted), then UID EXPUNGE of those UIDs (UIDPLUS, RFC 4315); without UIDPLUS
a plain EXPUNGE only when no other message in the folder carries \\Deleted, otherwise they stay
marked, a warning says so, and the next sync tries again. \fBcheck\fR counts every folder;
\fBlist\fR, \fBtop\fR, \fBseen mark\fR and \fBseen forget\fR refuse an account of several
folders (give the folder a section of its own: same host, user and folder share the seen
state). \fBinfo\fR shows CAPABILITY and the certificate without logging in. [UNAVAILABLE],
[INUSE], [LIMIT] and BYE exit 75; [AUTHENTICATIONFAILED] 77.
.PP
Gmail: use an app password, or sign in with OAuth2 (\fBoauth = "google"\fR, see OAUTH2).
Deleting in Gmail archives a message (it stays in "[Gmail]/All Mail") unless it is moved to
the Trash: with keep = false set \fBmove_to = "[Gmail]/Trash"\fR. "[Gmail]/All Mail" holds
every message, those in INBOX too: fetching both delivers each message twice.
.SH OAUTH2
With \fBoauth = "google"\fR or \fB"microsoft"\fR (endpoints and scopes built in), or
\fBoauth_auth_url\fR, \fBoauth_token_url\fR, \fBoauth_device_url\fR and \fBoauth_scopes\fR for
another provider, plus \fBoauth_client_id\fR (and \fBoauth_client_secret\fR or
\fBoauth_client_secret_command\fR where the provider gives one), popfetch gets the token for
XOAUTH2 or OAUTHBEARER itself: \fBauth = "auto"\fR then means xoauth2, and \fBpassword\fR and
\fBpassword_command\fR are refused. popfetch ships no client id: register one with the
provider (the README says how). \fBpopfetch login ACCOUNT\fR signs in in a browser
(authorization code with PKCE, answered on 127.0.0.1 at a free port; the address is always
printed), \fB\-\-device\fR on another device (RFC 8628). It signs in the account's server and
its \fBimap_target\fR when that has oauth keys too. The tokens are kept in the state
directory, owner\-only, never printed (\fB\-vv\fR shows the requests to the provider with
every token and secret as ***); each session refreshes the
access token when it has expired or will within a minute, and once more when the server
refuses it. A refused refresh exits 77 and names \fBpopfetch login ACCOUNT\fR.
\fBpopfetch logout ACCOUNT\fR forgets the tokens. Without oauth keys, xoauth2 and
oauthbearer take the token from \fBpassword_command\fR.
.SH EXIT STATUS
.TP
0
success (\fBcheck\fR: new mail is waiting)
.TP
1
\fBcheck\fR only: no new mail
.TP
64
usage error
.TP
69
server unavailable: connection refused, host not found, permanent \-ERR greeting
.TP
70
internal error
.TP
73
cannot create the Maildir, mbox or state files
.TP
74
local I/O error: disk full, database error
.TP
75
temporary failure: timeout, dropped connection, [SYS/TEMP], [IN\-USE], [LOGIN\-DELAY], IMAP [UNAVAILABLE], [INUSE], [LIMIT] or BYE, lock busy
.TP
76
protocol error: the server broke the protocol, or the port speaks TLS where tls says plain text (or plain text where it says TLS)
.TP
77
not permitted: authentication failed, certificate not trusted or changed since it was pinned, STLS (IMAP: STARTTLS) missing, an auth mechanism the server does not offer
.TP
78
configuration error, including a failing password_command and an IMAP folder the server cannot open
.TP
130
\fBsync\fR stopped by Ctrl\-C (SIGINT): the messages delivered so far are recorded, nothing
more is fetched or deleted, and a line says how many; run \fBsync\fR again for the rest.
A second Ctrl\-C ends popfetch at once (the journal keeps that safe too)
.PP
With several accounts, the exit status is that of the first failing account whose code is
not 75; else 75 if any account failed temporarily; else 0 (for \fBcheck\fR: 0 if any account
has new mail, else 1).
"#;
