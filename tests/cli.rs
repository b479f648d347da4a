//! The command line as users meet it: the committed man page and
//! completions match the binary and load in their programs, and progress
//! bars show in a real terminal (tmux) but never in a pipe.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::server::{self, Fault, Msg, Server};
use crate::support::{maildir_messages, Env};

const REGENERATE: &str = "./scripts/gen-docs";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The generated files and the command that prints each.
const GENERATED: [(&str, &[&str]); 4] = [
    ("man/popfetch.1", &["man"]),
    ("completions/popfetch.bash", &["completions", "bash"]),
    ("completions/_popfetch", &["completions", "zsh"]),
    ("completions/popfetch.fish", &["completions", "fish"]),
];

pub(crate) fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub(crate) fn skip(what: &str) {
    crate::support::skip(what);
}

#[test]
fn committed_docs_match_the_binary() {
    let env = Env::new();
    let mut stale = Vec::new();
    for (path, args) in GENERATED {
        let fresh = env.run(args).expect_code(0).stdout.clone();
        let committed = fs::read_to_string(repo().join(path)).unwrap_or_default();
        if fresh != committed {
            let line = fresh
                .lines()
                .zip(committed.lines())
                .position(|(a, b)| a != b)
                .map(|i| i + 1)
                .unwrap_or_else(|| fresh.lines().count().min(committed.lines().count()) + 1);
            stale.push(format!(
                "{path} (`popfetch {}`) differs from line {line}",
                args.join(" ")
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "generated docs are out of date:\n  {}\nregenerate them with {REGENERATE} and commit the result",
        stale.join("\n  ")
    );
}

#[test]
fn man_page_renders_without_warnings() {
    if !installed("man") {
        skip("man is not installed; cannot check that man/popfetch.1 renders");
        return;
    }
    let out = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(repo().join("man/popfetch.1"))
        .env("MANWIDTH", "80")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "man failed: {stderr}");
    assert!(stderr.trim().is_empty(), "man/groff warnings:\n{stderr}");
    for section in [
        "COMMANDS",
        "CONFIGURATION",
        "EXIT STATUS",
        "EXAMPLES",
        "FILES",
        "IMAP",
    ] {
        assert!(stdout.contains(section), "no {section} section:\n{stdout}");
    }
    assert!(stdout.contains("popfetch seen forget"), "{stdout}");
    // The IMAP keys and the init that writes them.
    for key in [
        "folders",
        "mark_seen",
        "move_to",
        "UIDVALIDITY",
        "--protocol imap",
    ] {
        assert!(stdout.contains(key), "no {key} in the man page:\n{stdout}");
    }
    // NAME is one line (whole at 80 columns), "name - what it does",
    // without the name twice.
    let name = stdout
        .lines()
        .skip_while(|l| l.trim() != "NAME")
        .nth(1)
        .unwrap_or_default()
        .trim();
    assert_eq!(
        name,
        "popfetch - fetch mail from POP3 and IMAP servers, safely and fast"
    );
    // One EXAMPLES section of commands, each with a sentence that says
    // what it does.
    assert!(!stdout.lines().any(|l| l == "EXAMPLE"), "{stdout}");
    let examples: Vec<&str> = stdout
        .lines()
        .skip_while(|l| *l != "EXAMPLES")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter(|l| !l.is_empty())
        .collect();
    let commands: Vec<&str> = examples
        .iter()
        .filter(|l| l.trim_start().starts_with("popfetch ") && !l.starts_with("              "))
        .copied()
        .collect();
    assert!(commands.len() >= 8, "{examples:#?}");
    for (i, line) in examples.iter().enumerate() {
        if commands.contains(line) {
            let said = examples.get(i + 1).unwrap_or(&"");
            assert!(
                said.starts_with("              ")
                    && said.trim_start().starts_with(char::is_uppercase),
                "{line:?} is not followed by its explanation: {said:?}"
            );
        }
    }
}

#[test]
fn bash_loads_the_completion_and_completes_subcommands() {
    let script = repo().join("completions/popfetch.bash");
    let out = Command::new("bash")
        .arg("-c")
        .arg(
            r#"source "$1" && complete -p popfetch &&
               COMP_WORDS=(popfetch se); COMP_CWORD=1; COMP_LINE="popfetch se"; COMP_POINT=11
               _popfetch popfetch se popfetch && echo "REPLY: ${COMPREPLY[*]}""#,
        )
        .arg("bash")
        .arg(&script)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.trim().is_empty(), "{stderr}");
    assert!(stdout.contains("-F _popfetch popfetch"), "{stdout}");
    assert!(stdout.contains("REPLY: seen"), "{stdout}");
}

#[test]
fn fish_loads_the_completion() {
    if !installed("fish") {
        skip("fish is not installed; cannot check completions/popfetch.fish");
        return;
    }
    let script = repo().join("completions/popfetch.fish");
    let out = Command::new("fish")
        .arg("--no-config")
        .arg("-c")
        .arg(format!(
            "source {}; and complete -C'popfetch se'; and complete -C'popfetch top --'",
            script.display()
        ))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.trim().is_empty(), "{stderr}");
    assert!(stdout.lines().any(|l| l.starts_with("seen")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("--new")), "{stdout}");
}

fn slow_server(count: usize, delay_ms: u64) -> Server {
    let body = "x".repeat(60_000);
    Server::start(server::Config {
        messages: (0..count)
            .map(|i| {
                Msg::new(
                    format!("slow-{i}"),
                    format!("Subject: slow {i}\n\n{body}\n").into_bytes(),
                )
            })
            .collect(),
        faults: vec![Fault::SlowRetr { delay_ms }],
        ..Default::default()
    })
}

fn config_for(port: u16) -> String {
    format!(
        "[accounts.slow]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nuser = \"alice\"\npassword = \"secret\"\nmaildir = \"~/Mail/slow\"\n"
    )
}

/// Panes started so far, for unique socket names.
static PANES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A private tmux server (its own socket in the test's temp dir), killed
/// when dropped.
pub(crate) struct Tmux {
    pub(crate) socket: PathBuf,
}

impl Tmux {
    /// Runs `popfetch ARGS` in a 120x20 pane of a new private tmux server,
    /// in the same hermetic environment as Env::command; when it ends the
    /// pane shows `EXIT=<code>` and `ECHO=<echo or -echo>` (the terminal's
    /// echo setting afterwards) and stays open.
    pub(crate) fn start(env: &Env, args: &str) -> Tmux {
        let home = env.home();
        fs::create_dir_all(&home).unwrap();
        let script = env.dir.path().join("run.sh");
        fs::write(
            &script,
            format!(
                // The script outlives a Ctrl-C sent to popfetch (its
                // trap is reset to the default in popfetch).
                "trap : INT\nenv -i PATH=\"$PATH\" TERM=\"$TERM\" HOME='{h}' XDG_CONFIG_HOME='{h}/.config' \
                 XDG_STATE_HOME='{h}/.local/state' LANG=C.UTF-8 '{bin}' {args}\necho \"EXIT=$?\"\n\
                 echo \"ECHO=$(stty -a | tr ' ;' '\\n\\n' | grep -x -e echo -e -echo)\"\nsleep 600\n",
                h = home.display(),
                bin = env!("CARGO_BIN_EXE_popfetch"),
            ),
        )
        .unwrap();
        let tmux = Tmux {
            // A socket of its own each time: a server just killed by a
            // previous pane's drop may still hold the old one.
            socket: env.dir.path().join(format!(
                "tmux{}.sock",
                PANES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )),
        };
        let started = tmux
            .cmd()
            .args([
                "new-session",
                "-d",
                "-s",
                "pf",
                "-x",
                "120",
                "-y",
                "20",
                "sh",
            ])
            .arg(&script)
            .status()
            .unwrap();
        assert!(started.success(), "tmux new-session failed");
        tmux
    }

    /// Waits until the screen satisfies `done`, and returns it.
    pub(crate) fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.capture();
            if done(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "no {what} after 30 s:\n{screen}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `text` into the pane (literally), then Enter.
    pub(crate) fn type_line(&self, text: &str) {
        let typed = self
            .cmd()
            .args(["send-keys", "-t", "pf", "-l", text])
            .status();
        assert!(typed.unwrap().success());
        let entered = self.cmd().args(["send-keys", "-t", "pf", "Enter"]).status();
        assert!(entered.unwrap().success());
    }

    pub(crate) fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket).arg("-f").arg("/dev/null");
        c
    }

    pub(crate) fn capture(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "pf"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

#[test]
fn progress_bar_shows_in_a_terminal() {
    if !installed("tmux") {
        skip("tmux is not installed; cannot check the progress bar in a terminal");
        return;
    }
    let srv = slow_server(8, 500);
    let env = Env::new();
    env.write_config(&config_for(srv.port()));
    let tmux = Tmux::start(&env, "sync");

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut bars: Vec<String> = Vec::new();
    let screen = loop {
        let screen = tmux.capture();
        let frame = screen
            .lines()
            .find(|l| l.contains("slow") && l.contains("msgs") && l.contains('['));
        if let Some(frame) = frame {
            if bars.last().map(String::as_str) != Some(frame) {
                bars.push(frame.trim_end().to_string());
            }
        }
        if screen.contains("EXIT=") {
            break screen;
        }
        assert!(Instant::now() < deadline, "sync did not finish:\n{screen}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(
        !bars.is_empty(),
        "no progress bar was ever drawn; last screen:\n{screen}"
    );
    eprintln!("progress bar frames seen in tmux:\n  {}", bars.join("\n  "));
    assert!(bars.iter().all(|b| b.contains("/8 msgs")), "{bars:?}");
    // It moved: some frame shows messages done and a filled bar.
    assert!(
        bars.iter()
            .any(|b| b.contains("[=") && !b.contains(" 0/8 msgs")),
        "{bars:?}"
    );
    // The bar is cleared at the end; the summary stays.
    assert!(screen.contains("slow: 8 new messages"), "{screen}");
    assert!(!screen.contains("msgs"), "bar left behind:\n{screen}");
}

#[test]
fn no_progress_bar_when_stderr_is_a_pipe() {
    let srv = slow_server(3, 300);
    let env = Env::new();
    env.write_config(&config_for(srv.port()));
    let run = env.run(&["sync"]);
    run.expect_code(0);
    assert!(!run.stderr.contains("msgs"), "{}", run.stderr);
    assert!(
        !run.stderr.contains('\r') && !run.stderr.contains('\x1b'),
        "{:?}",
        run.stderr
    );
    assert!(
        run.stderr.contains("slow: 3 new messages"),
        "{}",
        run.stderr
    );
    assert!(Path::new(&env.maildir("slow")).join("new").is_dir());
}

fn prompting_account(name: &str, port: u16, user: &str) -> String {
    format!(
        "[accounts.{name}]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nauth = \"apop\"\nuser = \"{user}\"\nmaildir = \"~/Mail/{name}\"\n"
    )
}

fn apop_server(user: &str) -> Server {
    Server::start(server::Config {
        user: user.into(),
        apop: true,
        messages: vec![Msg::new("u1", "Subject: hi\n\nhello\n")],
        ..Default::default()
    })
}

#[test]
fn parallel_sync_asks_for_passwords_one_at_a_time_before_connecting() {
    if !installed("tmux") {
        skip("tmux is not installed; cannot check the password prompts in a terminal");
        return;
    }
    let (one, two) = (apop_server("alice"), apop_server("bob"));
    let env = Env::new();
    env.write_config(&format!(
        "{}{}",
        prompting_account("one", one.port(), "alice"),
        prompting_account("two", two.port(), "bob")
    ));
    let tmux = Tmux::start(&env, "sync -j 2");
    let prompts = |screen: &str| screen.matches("Password for").count();
    tmux.wait_for("first prompt", |s| prompts(s) >= 1);
    // Give a second thread time to prompt too, if one would.
    std::thread::sleep(Duration::from_millis(700));
    let screen = tmux.capture();
    assert_eq!(prompts(&screen), 1, "prompts at once:\n{screen}");
    assert_eq!(
        one.connections() + two.connections(),
        0,
        "a server was contacted before the passwords were in"
    );
    tmux.type_line("secret");
    tmux.wait_for("second prompt", |s| prompts(s) >= 2);
    assert_eq!(one.connections() + two.connections(), 0);
    tmux.type_line("secret");
    let screen = tmux.wait_for("end of the sync", |s| s.contains("EXIT="));
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(
        !screen.contains("secret"),
        "the password was echoed:\n{screen}"
    );
    for name in ["one", "two"] {
        assert_eq!(maildir_messages(&env.maildir(name)).len(), 1, "{name}");
    }
}

#[test]
fn ctrl_c_at_the_password_prompt_restores_echo() {
    if !installed("tmux") {
        skip("tmux is not installed; cannot check the password prompt in a terminal");
        return;
    }
    let srv = apop_server("alice");
    let env = Env::new();
    env.write_config(&prompting_account("one", srv.port(), "alice"));
    let tmux = Tmux::start(&env, "sync");
    tmux.wait_for("prompt", |s| s.contains("Password for"));
    let sent = tmux.cmd().args(["send-keys", "-t", "pf", "C-c"]).status();
    assert!(sent.unwrap().success());
    let screen = tmux.wait_for("end of popfetch", |s| s.contains("ECHO="));
    assert!(screen.contains("EXIT=130"), "{screen}");
    assert!(
        screen.contains("ECHO=echo"),
        "the terminal was left without echo:\n{screen}"
    );
}

#[test]
fn sync_without_a_terminal_fails_only_the_account_that_needs_a_prompt() {
    let (one, two) = (apop_server("alice"), apop_server("bob"));
    let env = Env::new();
    env.write_config(&format!(
        "{}{}password = \"secret\"\n",
        prompting_account("one", one.port(), "alice"),
        prompting_account("two", two.port(), "bob")
    ));
    let run = env.run(&["sync", "-j", "2", "--json"]);
    run.expect_code(78);
    assert!(run.stderr.contains("one: no password"), "{}", run.stderr);
    let lines = run.json_lines();
    let status = |name: &str| {
        lines
            .iter()
            .find(|l| l["account"] == name)
            .map(|l| l["status"].clone())
    };
    assert_eq!(status("one"), Some("error".into()));
    assert_eq!(status("two"), Some("ok".into()));
    assert_eq!(one.connections(), 0, "no prompt, no connection");
    assert_eq!(maildir_messages(&env.maildir("two")).len(), 1);
}

/// Every distinct screen line that mentions `account`, in the order they
/// first appeared, until the pane shows `EXIT=`; and the last screen.
fn watch_lines(tmux: &Tmux, account: &str) -> (Vec<String>, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen: Vec<String> = Vec::new();
    loop {
        let screen = tmux.capture();
        for line in screen.lines().filter(|l| l.contains(account)) {
            let line = line.trim_end().to_string();
            if !seen.contains(&line) {
                seen.push(line);
            }
        }
        if screen.contains("EXIT=") {
            return (seen, screen);
        }
        assert!(Instant::now() < deadline, "sync did not finish:\n{screen}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn progress_shows_each_phase_before_the_bar() {
    if !installed("tmux") {
        skip("tmux is not installed; cannot check the progress display in a terminal");
        return;
    }
    let slow = |verb: &str| Fault::SlowCommand {
        verb: verb.into(),
        delay_ms: 1200,
    };
    let srv = Server::start(server::Config {
        messages: (0..2)
            .map(|i| Msg::new(format!("m{i}"), format!("Subject: m{i}\n\nbody\n")))
            .collect(),
        // CAPA is asked right after the greeting, PASS logs in, LIST lists.
        faults: vec![
            slow("CAPA"),
            slow("PASS"),
            slow("LIST"),
            Fault::SlowRetr { delay_ms: 1200 },
        ],
        ..Default::default()
    });
    let env = Env::new();
    env.write_config(&format!("{}filter = \"sleep 1\"\n", config_for(srv.port())));
    let tmux = Tmux::start(&env, "sync");
    let (lines, screen) = watch_lines(&tmux, "slow");
    assert!(screen.contains("EXIT=0"), "{screen}");
    eprintln!("lines seen in tmux:\n  {}", lines.join("\n  "));
    let first = |what: &str| {
        lines
            .iter()
            .position(|l| l.contains(what))
            .unwrap_or_else(|| panic!("{what:?} was never shown; lines seen:\n{lines:#?}"))
    };
    let order = [
        first(&format!("connecting to 127.0.0.1:{}", srv.port())),
        first("logging in"),
        first("listing"),
        first("filtering 1/2"),
        first("filtering 2/2"),
        first("/2 msgs"),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "phases out of order {order:?}:\n{lines:#?}"
    );
    assert!(screen.contains("slow: 2 new messages"), "{screen}");
    assert!(
        !screen.contains("filtering") && !screen.contains("msgs"),
        "display left behind:\n{screen}"
    );
}

#[test]
fn the_bar_shows_no_rate_or_eta_before_it_has_measured_any() {
    if !installed("tmux") {
        skip("tmux is not installed; cannot check the progress bar in a terminal");
        return;
    }
    // Nothing arrives for the first seconds of the transfer: no rate and
    // no time left can be known then. Later the bar shows both.
    let srv = slow_server(3, 2500);
    let env = Env::new();
    env.write_config(&config_for(srv.port()));
    let tmux = Tmux::start(&env, "sync");
    let (lines, screen) = watch_lines(&tmux, "slow");
    assert!(screen.contains("EXIT=0"), "{screen}");
    eprintln!("lines seen in tmux:\n  {}", lines.join("\n  "));
    let bars: Vec<&String> = lines.iter().filter(|l| l.contains("msgs")).collect();
    let idle: Vec<&&String> = bars.iter().filter(|l| l.contains(" 0/3 msgs")).collect();
    assert!(
        !idle.is_empty(),
        "no bar before the first message: {bars:#?}"
    );
    for bar in idle {
        assert!(
            !bar.contains("/s") && !bar.contains("ETA"),
            "a rate or ETA was shown before anything was measured: {bar}"
        );
    }
    assert!(
        bars.iter().any(|l| l.contains("/s ETA ")),
        "no rate and ETA once messages came in: {bars:#?}"
    );
}

#[test]
fn ctrl_c_during_a_fetch_keeps_what_was_delivered_and_says_so() {
    if !installed("tmux") {
        skip("tmux is not installed; cannot send Ctrl-C in a terminal");
        return;
    }
    let srv = slow_server(8, 700);
    let env = Env::new();
    env.write_config(&format!("{}keep = false\n", config_for(srv.port())));
    let tmux = Tmux::start(&env, "sync");
    tmux.wait_for("a message fetched", |s| {
        s.lines()
            .any(|l| l.contains("/8 msgs") && !l.contains(" 0/8 msgs"))
    });
    let sent = tmux.cmd().args(["send-keys", "-t", "pf", "C-c"]).status();
    assert!(sent.unwrap().success());
    let screen = tmux.wait_for("end of popfetch", |s| s.contains("EXIT="));
    assert!(screen.contains("EXIT=130"), "{screen}");
    assert!(!screen.contains("msgs"), "bar left behind:\n{screen}");
    let kept = maildir_messages(&env.maildir("slow")).len();
    assert!(kept < 8, "the sync was not stopped:\n{screen}");
    let plural = if kept == 1 { "" } else { "s" };
    let said = format!(
        "slow: stopped: {kept} message{plural} delivered and recorded; run sync again for the rest"
    );
    assert!(screen.contains(&said), "expected {said:?}:\n{screen}");
    // Nothing was deleted: the user wanted out.
    assert_eq!(srv.messages().len(), 8);
    // The next run fetches the rest, each message exactly once, and
    // deletes all of them.
    srv.clear_faults();
    let run = env.run(&["sync"]);
    run.expect_code(0);
    assert!(
        run.stderr
            .contains(&format!("slow: {} new message", 8 - kept)),
        "{}",
        run.stderr
    );
    let mut subjects: Vec<String> = maildir_messages(&env.maildir("slow"))
        .iter()
        .map(|m| {
            let text = String::from_utf8_lossy(m);
            let subject = text.lines().find(|l| l.starts_with("Subject: "));
            subject.unwrap_or_default().to_string()
        })
        .collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 8, "{subjects:?}");
    assert_eq!(maildir_messages(&env.maildir("slow")).len(), 8);
    assert!(srv.messages().is_empty());
}

#[test]
fn a_second_ctrl_c_ends_a_stuck_sync_at_once() {
    if !installed("tmux") {
        skip("tmux is not installed; cannot send Ctrl-C in a terminal");
        return;
    }
    // The server never answers RETR: the first Ctrl-C waits for a message
    // boundary that does not come; the second ends popfetch there and then.
    let srv = slow_server(3, 0);
    srv.set_faults(vec![Fault::StallOnCommand("RETR".into())]);
    let env = Env::new();
    env.write_config(&config_for(srv.port()));
    let tmux = Tmux::start(&env, "sync");
    tmux.wait_for("the bar", |s| s.contains(" 0/3 msgs"));
    let ctrl_c = || {
        let sent = tmux.cmd().args(["send-keys", "-t", "pf", "C-c"]).status();
        assert!(sent.unwrap().success());
    };
    ctrl_c();
    std::thread::sleep(Duration::from_millis(500));
    assert!(!tmux.capture().contains("EXIT="), "{}", tmux.capture());
    ctrl_c();
    let screen = tmux.wait_for("end of popfetch", |s| s.contains("EXIT="));
    assert!(screen.contains("EXIT=130"), "{screen}");
    assert!(maildir_messages(&env.maildir("slow")).is_empty());
    srv.clear_faults();
    env.run(&["sync"]).expect_code(0);
    assert_eq!(maildir_messages(&env.maildir("slow")).len(), 3);
}

#[test]
fn ctrl_c_stops_a_pop2_sync_between_messages() {
    if !installed("tmux") {
        skip("tmux is not installed; cannot send Ctrl-C in a terminal");
        return;
    }
    let inbox: Vec<Vec<u8>> = (0..6)
        .map(|i| format!("Subject: old {i}\n\nbody {i}\n").into_bytes())
        .collect();
    let srv = crate::support::pop2server::Pop2Server::start(inbox);
    srv.slow_retr(Duration::from_millis(700));
    let env = Env::new();
    env.write_config(&format!(
        "[accounts.old]\nprotocol = \"pop2\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
         user = \"alice\"\npassword = \"secret\"\nmaildir = \"~/Mail/old\"\nkeep = false\n",
        srv.port()
    ));
    let tmux = Tmux::start(&env, "sync");
    tmux.wait_for("a message fetched", |s| {
        s.lines()
            .any(|l| l.contains("/6 msgs") && !l.contains(" 0/6 msgs"))
    });
    let sent = tmux.cmd().args(["send-keys", "-t", "pf", "C-c"]).status();
    assert!(sent.unwrap().success());
    let screen = tmux.wait_for("end of popfetch", |s| s.contains("EXIT="));
    assert!(screen.contains("EXIT=130"), "{screen}");
    let kept = maildir_messages(&env.maildir("old")).len();
    assert!(kept < 6, "the sync was not stopped:\n{screen}");
    let plural = if kept == 1 { "" } else { "s" };
    let said = format!("old: stopped: {kept} message{plural} delivered and recorded");
    assert!(screen.contains(&said), "expected {said:?}:\n{screen}");
    // The delivered ones were acknowledged for deletion and QUIT applied it.
    assert_eq!(srv.inbox().len(), 6 - kept);
    srv.slow_retr(Duration::ZERO);
    env.run(&["sync"]).expect_code(0);
    assert_eq!(maildir_messages(&env.maildir("old")).len(), 6);
    assert!(srv.inbox().is_empty());
}

#[test]
fn sigint_off_a_terminal_stops_with_a_record_of_what_was_kept() {
    let srv = slow_server(8, 700);
    let env = Env::new();
    env.write_config(&config_for(srv.port()));
    let child = env
        .command(&["sync", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Some messages in (8 take more than 5 s); the exact number does not
    // matter, only that what is said matches what is on disk.
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: signals our own child, still running (not yet waited for).
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let run = crate::support::Run::from(child.wait_with_output().unwrap());
    run.expect_code(130);
    let kept = maildir_messages(&env.maildir("slow")).len();
    assert!(kept < 8, "the sync was not stopped: {}", run.stderr);
    let lines = run.json_lines();
    assert_eq!(lines.len(), 1, "{}", run.stdout);
    assert_eq!(lines[0]["status"], "stopped", "{}", run.stdout);
    assert_eq!(lines[0]["new"], kept as u64, "{}", run.stdout);
    assert!(
        run.stderr
            .contains(&format!("slow: stopped: {kept} message")),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains('\x1b'), "{:?}", run.stderr);
}

/// `init --provider gmail` offers IMAP, and `--protocol imap` writes an
/// IMAP account with its keys explained, which loads as such.
#[test]
fn init_offers_imap_and_writes_an_imap_account_that_loads() {
    let env = Env::new();
    let pop3 = env.run(&["init", "--provider", "gmail", "--user", "me@gmail.com"]);
    pop3.expect_code(0);
    assert!(
        pop3.stderr
            .contains("gmail offers IMAP too: popfetch init --provider gmail --protocol imap"),
        "{}",
        pop3.stderr
    );

    let env = Env::new();
    let run = env.run(&[
        "init",
        "--provider",
        "gmail",
        "--protocol",
        "imap",
        "--user",
        "me@gmail.com",
    ]);
    run.expect_code(0);
    let text = fs::read_to_string(env.config_path()).unwrap();
    for needle in [
        "protocol = \"imap\"",
        "folders = [\"INBOX\"]",
        "move_to = \"[Gmail]/Trash\"",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
    let j = &env.run(&["accounts", "--json"]).expect_code(0).json_lines()[0];
    assert_eq!(j["protocol"], "imap");
    assert_eq!(j["host"], "imap.gmail.com");
    assert_eq!(j["port"], 993);
    assert_eq!(j["tls"], "implicit");
    assert_eq!(j["folders"], serde_json::json!(["INBOX"]));
    assert_eq!(j["fetch"], "new");
    assert_eq!(j["mark_seen"], false);

    // A provider without POP3 is IMAP without asking, and refuses POP3.
    let env = Env::new();
    env.run(&["init", "--provider", "icloud", "--user", "alice"])
        .expect_code(0);
    let j = &env.run(&["accounts", "--json"]).expect_code(0).json_lines()[0];
    assert_eq!(
        (j["protocol"].as_str(), j["port"].as_u64()),
        (Some("imap"), Some(993))
    );
    let env = Env::new();
    let refused = env.run(&[
        "init",
        "--provider",
        "icloud",
        "--protocol",
        "pop3",
        "--user",
        "a",
    ]);
    assert_eq!(refused.code, 64, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("does not offer POP3"),
        "{}",
        refused.stderr
    );
    assert!(!env.config_path().exists());
}

/// The IMAP starter config for a host of one's own syncs as written, once
/// the password is in it: here from Dovecot's IMAP on its STARTTLS port.
/// `--quiet` with `--verbose` is a usage error wherever each is written
/// (clap alone catches it only on one side of the subcommand).
#[test]
fn quiet_and_verbose_conflict_on_either_side_of_the_subcommand() {
    let env = Env::new();
    for args in [
        &["-q", "-v", "accounts"][..],
        &["-q", "accounts", "-v"],
        &["-vv", "accounts", "-q"],
    ] {
        let run = env.run(args);
        assert_eq!(run.code, 64, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr
                .contains("'--quiet' cannot be used with '--verbose"),
            "{}",
            run.stderr
        );
    }
}

/// The next commands `init` names work as printed: with `-c FILE` when the
/// file is not where popfetch looks by itself.
#[test]
fn init_names_next_commands_with_the_config_it_wrote() {
    let env = Env::new();
    let path = env.home().join("my mail.toml");
    let path_text = path.display().to_string();
    let run = env.run(&[
        "-c",
        &path_text,
        "init",
        "--host",
        "pop.example.com",
        "--user",
        "me",
    ]);
    run.expect_code(0);
    let hint = format!("popfetch -c '{path_text}' accounts");
    assert!(run.stderr.contains(&hint), "{}", run.stderr);
    env.run(&["-c", &path_text, "accounts"]).expect_code(0);
    let run = env.run(&["init", "--host", "pop.example.com", "--user", "me"]);
    run.expect_code(0);
    assert!(
        run.stderr.contains("  popfetch accounts "),
        "{}",
        run.stderr
    );
}

#[test]
fn init_for_an_imap_host_writes_a_config_that_syncs() {
    use crate::support::dovecot::{require_dovecot_imap, Dovecot};
    if !require_dovecot_imap() {
        return;
    }
    let dc = Dovecot::start(&[("alice", "pw-alice")]);
    dc.add_messages("alice", &crate::support::mixed_messages(3, 4096));
    let env = Env::new();
    let host = format!("localhost:{}", dc.imap_port());
    env.run(&[
        "init",
        "--host",
        &host,
        "--protocol",
        "imap",
        "--tls",
        "starttls",
        "--name",
        "home",
        "--user",
        "alice",
    ])
    .expect_code(0);
    let j = &env.run(&["accounts", "--json"]).expect_code(0).json_lines()[0];
    assert_eq!(
        (
            j["protocol"].as_str(),
            j["tls"].as_str(),
            j["port"].as_u64()
        ),
        (
            Some("imap"),
            Some("starttls"),
            Some(u64::from(dc.imap_port()))
        )
    );
    let mut text = fs::read_to_string(env.config_path()).unwrap();
    text.push_str(&format!(
        "password = \"pw-alice\"\nca_file = \"{}\"\n",
        dc.pki().ca_path.display()
    ));
    env.write_config(&text);
    let run = env.run(&["sync", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json_lines()[0]["new"], 3, "{}", run.stderr);
    assert_eq!(maildir_messages(&env.maildir("home")).len(), 3);
    assert_eq!(dc.message_count("alice"), 3, "keep = true leaves the mail");
}
