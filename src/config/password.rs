//! The password or token: which key gives it (`password`,
//! `password_command`, or neither: ask), and getting it when a session
//! needs it, never earlier, so a down server never runs a command.

use std::io::{BufRead, IsTerminal, Read};
use std::process::Stdio;
use std::time::Duration;

use super::secret::Secret;
use super::section::Section;
use crate::error::{Error, Result};
use crate::ui::term;

/// Where the password comes from.
#[derive(Clone, Debug)]
pub enum PasswordSource {
    Inline(Secret),
    Command(String),
    Prompt,
    /// The OAuth access token of `popfetch login`, refreshed as needed.
    OAuth(Box<crate::oauth::settings::OAuth>),
}

/// `password` or `password_command`: at most one; neither means a prompt.
pub(super) fn source(s: &Section) -> Result<PasswordSource> {
    Ok(inline_or_command(s, "password")?.unwrap_or(PasswordSource::Prompt))
}

/// A secret given as `KEY` (written in the file, `Inline`) or `KEY_command`
/// (a command printing it, `Command`), at most one of the two; `None`
/// when neither is set. The account's password, an OAuth client secret
/// and an SMTP relay's password are all given this way.
pub(super) fn inline_or_command(s: &Section, key: &str) -> Result<Option<PasswordSource>> {
    let command_key = format!("{key}_command");
    Ok(match (s.str(key)?, s.str(&command_key)?) {
        (Some(_), Some((_, v))) => {
            return Err(v.err(format!(
                "{} has both `{key}` and `{command_key}`; keep one",
                s.header
            )))
        }
        (Some((p, _)), None) => Some(PasswordSource::Inline(Secret::new(p))),
        (None, Some((c, v))) => {
            if c.trim().is_empty() {
                return Err(v.err(format!("`{command_key}` is empty")));
            }
            Some(PasswordSource::Command(c.to_string()))
        }
        (None, None) => None,
    })
}

/// Longest first line read from a password_command (a token is a few KiB).
const MAX_PASSWORD_OUTPUT: u64 = 1024 * 1024;

/// Runs `password_command` and takes the first line it prints.
pub(crate) fn run_command(cmd: &str, limit: Duration) -> Result<Secret> {
    // stdin and stderr stay connected, and the command gets the terminal,
    // so pinentry/gpg-agent or a prompt of its own can ask.
    let mut command = crate::external::shell(cmd);
    command
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .stdout(Stdio::piped());
    let (ended, stdout) = crate::external::run(&mut command, limit, true, |child| {
        // Only the first line is used. It is read on a thread of its own,
        // which then drains the rest so the command never blocks on a full
        // pipe: a daemon the command started outside its process group
        // may hold the pipe open for ever, and must not keep us waiting.
        let Some(out) = child.stdout.take() else {
            return Vec::new();
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = std::io::BufReader::new(out);
            let mut first = Vec::new();
            let _ = (&mut out)
                .take(MAX_PASSWORD_OUTPUT)
                .read_until(b'\n', &mut first);
            let _ = tx.send(first);
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        });
        rx.recv_timeout(limit).unwrap_or_default()
    })
    .map_err(|e| Error::config(format!("cannot run password_command: {e}")))?;
    let status = match ended {
        crate::external::Ended::Exited(status) => status,
        crate::external::Ended::TimedOut => {
            return Err(Error::config(format!(
                "password_command did not finish within {} s and was killed \
                 (raise command_timeout if it needs longer)",
                limit.as_secs()
            )))
        }
    };
    if !status.success() {
        let how = match status.code() {
            Some(c) => format!("exit code {c}"),
            None => "killed by a signal".to_string(),
        };
        return Err(Error::config(format!(
            "password_command failed ({how}); run it by hand to see why"
        )));
    }
    let text = String::from_utf8(stdout)
        .map_err(|_| Error::config("password_command printed invalid UTF-8"))?;
    let first = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if first.is_empty() {
        return Err(Error::config("password_command printed nothing"));
    }
    Ok(Secret::new(first))
}

/// Asks on the terminal, without echo.
pub(super) fn prompt(account: &str, identity: &str) -> Result<Secret> {
    let interactive = std::io::stdin().is_terminal();
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty");
    let (true, Ok(tty)) = (interactive, tty) else {
        return Err(Error::config(
            "no password: set `password_command` (or `password` in a file only you can read), \
             or run popfetch from a terminal to be asked",
        ));
    };
    let res = term::read_hidden_line(&tty, &format!("Password for {identity} ({account}): "));
    let pw = res.map_err(|e| Error::config(format!("reading the password: {e}")))?;
    if pw.is_empty() {
        return Err(Error::config("empty password"));
    }
    Ok(Secret::new(pw))
}
