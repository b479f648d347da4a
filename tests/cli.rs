//! The command line as users meet it: the committed man page and
//! completions match the binary and load in their programs, and progress
//! bars show in a real terminal (tmux) but never in a pipe.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::server::{self, Fault, Msg, Server};
use crate::support::Env;

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
    eprintln!("\n**********************************************************************");
    eprintln!("SKIPPED: {what}");
    eprintln!("**********************************************************************");
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
    ] {
        assert!(stdout.contains(section), "no {section} section:\n{stdout}");
    }
    assert!(stdout.contains("popfetch seen forget"), "{stdout}");
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

/// A private tmux server (its own socket in the test's temp dir), killed
/// when dropped.
pub(crate) struct Tmux {
    pub(crate) socket: PathBuf,
}

impl Tmux {
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
    let home = env.home();
    fs::create_dir_all(&home).unwrap();
    // The same hermetic environment as Env::command, inside the pane.
    let script = env.dir.path().join("run.sh");
    fs::write(
        &script,
        format!(
            "env -i PATH=\"$PATH\" TERM=\"$TERM\" HOME='{h}' XDG_CONFIG_HOME='{h}/.config' \
             XDG_STATE_HOME='{h}/.local/state' LANG=C.UTF-8 '{bin}' sync\necho \"EXIT=$?\"\nsleep 600\n",
            h = home.display(),
            bin = env!("CARGO_BIN_EXE_popfetch"),
        ),
    )
    .unwrap();
    let tmux = Tmux {
        socket: env.dir.path().join("tmux.sock"),
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
            "12",
            "sh",
        ])
        .arg(&script)
        .status()
        .unwrap();
    assert!(started.success(), "tmux new-session failed");

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
