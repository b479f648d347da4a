//! `popfetch watch` over time: a soak with faults, and what waiting costs.
//!
//! ```text
//! cargo bench --bench watch                       # both scenarios
//! BENCH_SCENARIOS=soak BENCH_SOAK_SECS=300 cargo bench --bench watch
//! ```
//!
//! - `soak`: 8 accounts on scripted POP3 servers (tests/support/server.rs),
//!   each logging in with a `password_command` (a child process per run, so
//!   a zombie would show), half of them deleting what they fetched. New mail
//!   arrives all the time, and every few seconds each server takes on
//!   another fault: a connection dropped after some commands or inside a
//!   RETR, `[IN-USE]` at login (exit 75: backoff), a garbage status line
//!   (exit 76), a slow RETR, or none. SIGUSR1 every 10 ms makes every
//!   account run again at once (the shortest `interval` is a second; a
//!   signal drives the same path as the timer and forgives backoff), so
//!   thousands of runs fit in minutes. Sampled every few seconds from /proc:
//!   RSS, open fds, threads, zombie children. At the end SIGTERM (exit 0
//!   expected), then a plain `sync` of every account, and every message
//!   pushed is checked to be in its Maildir exactly once. `BENCH_SOAK_SECS`
//!   (default 300) sets the length. Every 30 s each mailbox moves to a new
//!   scripted server (they keep every connection's socket until dropped)
//!   and SIGHUP makes popfetch reload the config with the new ports.
//! - `idle`: 50 accounts that wait (`interval = "24h"`: their first runs
//!   are spread over a day, so in the few minutes measured almost none
//!   runs; `BENCH_IDLE_INTERVAL=5m` for the default interval, runs
//!   included), for `BENCH_IDLE_SECS` (default 180): CPU seconds (utime +
//!   stime, /proc/PID/stat) and wake-ups (voluntary context switches of
//!   every thread, /proc/PID/task/*/status; those of threads that ended,
//!   the runs', are not counted), scaled to an hour.
//!
//! The table goes to stdout.

#![allow(dead_code)]

// The server's own unit tests come along under `cargo test --benches`, with
// imports the tests target shares with them.
#[allow(unused_imports)]
#[path = "../tests/support"]
mod support {
    pub mod certs;
    pub mod server;
}

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::server::{Config, Fault, Msg, Server};

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let scenarios = std::env::var("BENCH_SCENARIOS").unwrap_or_else(|_| "soak,idle".into());
    for s in scenarios.split(',').map(str::trim) {
        match s {
            "soak" => soak(env_secs("BENCH_SOAK_SECS", 300)),
            "idle" => idle(env_secs("BENCH_IDLE_SECS", 180)),
            other => panic!("BENCH_SCENARIOS: unknown scenario {other:?} (known: soak, idle)"),
        }
    }
}

/// A temp HOME for one run of popfetch.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::Builder::new()
                .prefix("popfetch-bench-watch-")
                .tempdir()
                .unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write_config(&self, text: &str) {
        let path = self.path().join(".config/popfetch/config.toml");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_popfetch"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.path().join(".config"))
            .env("XDG_STATE_HOME", self.path().join(".local/state"))
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null());
        cmd
    }

    fn maildir(&self, name: &str) -> PathBuf {
        self.path().join("Mail").join(name)
    }
}

/// What /proc says of a process now.
#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    rss_kib: u64,
    fds: usize,
    threads: usize,
    /// Children that ended and were not yet waited for (a child is one
    /// for a moment between its exit and the wait).
    zombies: usize,
    /// utime + stime, in clock ticks.
    cpu_ticks: u64,
    /// Voluntary context switches of the threads alive now.
    voluntary: u64,
}

fn sample(pid: u32) -> Sample {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let after: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15; `after` starts at field 3.
    let tick = |i: usize| {
        after
            .get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut voluntary = 0;
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let s = fs::read_to_string(t.path().join("status")).unwrap_or_default();
            voluntary += s
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Sample {
        rss_kib: field("VmRSS:"),
        fds: fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0),
        threads: field("Threads:") as usize,
        zombies: zombie_children(pid).len(),
        cpu_ticks: tick(14) + tick(15),
        voluntary,
    }
}

/// Children of `pid` that ended and were not waited for.
fn zombie_children(pid: u32) -> HashSet<u32> {
    let Ok(procs) = fs::read_dir("/proc") else {
        return HashSet::new();
    };
    procs
        .flatten()
        .filter_map(|p| {
            let child: u32 = p.file_name().to_string_lossy().parse().ok()?;
            let stat = fs::read_to_string(p.path().join("stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let f: Vec<&str> = rest.split_whitespace().collect();
            (f.first() == Some(&"Z") && f.get(1) == Some(&pid.to_string().as_str()))
                .then_some(child)
        })
        .collect()
}

/// Waits until the process catches SIGUSR1 (SigCgt in /proc/PID/status):
/// before that, the signal's default action would end it.
fn wait_for_handlers(pid: u32) {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0);
        if caught & (1 << (libc_sigusr1() - 1)) != 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("popfetch watch did not start within 10 s");
}

fn libc_sigusr1() -> u32 {
    rustix::process::Signal::USR1.as_raw() as u32
}

fn clock_ticks_per_sec() -> f64 {
    // The kernel's USER_HZ: 100 on every Linux that matters.
    let out = Command::new("getconf").arg("CLK_TCK").output();
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn signal(child: &Child, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let _ = rustix::process::kill_process(pid, sig);
}

fn message(account: usize, n: u64) -> Msg {
    let uidl = format!("a{account}-m{n:06}");
    let mut body =
        format!("From: soak@example.org\nSubject: {uidl}\nMessage-ID: <{uidl}@soak>\n\n");
    // 1 to ~20 KB.
    for _ in 0..(n % 23) * 10 + 1 {
        body.push_str(
            "soak soak soak soak soak soak soak soak soak soak soak soak soak soak soak\n",
        );
    }
    Msg::new(uidl, body)
}

const SOAK_ACCOUNTS: usize = 8;

fn soak(length: Duration) {
    eprintln!("bench: soak, {SOAK_ACCOUNTS} accounts, {length:?}");
    let home = Home::new();
    let start_server = |i: usize, messages: Vec<Msg>| {
        Server::start(Config {
            user: format!("u{i}"),
            messages,
            ..Config::default()
        })
    };
    let config_for = |servers: &[Server]| {
        let mut config = String::new();
        for (i, s) in servers.iter().enumerate() {
            config.push_str(&format!(
                "[accounts.a{i}]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nuser = \"u{i}\"\npassword_command = \"echo secret\"\nmaildir = \"~/Mail/a{i}\"\ntimeout = 5\ninterval = \"1s\"\nkeep = {}\n\n",
                s.port(),
                i % 2 == 0
            ));
        }
        config
    };
    let mut servers: Vec<Server> = (0..SOAK_ACCOUNTS)
        .map(|i| start_server(i, Vec::new()))
        .collect();
    let config = config_for(&servers);
    home.write_config(&config);
    let mut child = home
        .command(&["watch", "-q", "-j", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_for_handlers(pid);
    let faults = |round: usize, i: usize| -> Vec<Fault> {
        match (round + i) % 7 {
            0 => vec![Fault::DropAfterCommands(4 + (round % 5))],
            1 => vec![Fault::DropInRetr {
                msg: 1,
                after_bytes: 200,
            }],
            2 => vec![Fault::ErrOnCommand {
                verb: "PASS".into(),
                reply: "-ERR [IN-USE] busy".into(),
            }],
            3 => vec![Fault::GarbageStatus("UIDL".into())],
            4 => vec![Fault::SlowRetr { delay_ms: 20 }],
            _ => Vec::new(),
        }
    };
    let mut pushed = [0u64; SOAK_ACCOUNTS];
    let start = Instant::now();
    let mut samples: Vec<(Duration, Sample)> = Vec::new();
    let mut next_sample = start + Duration::from_secs(2);
    let mut next_fault = start;
    let mut round = 0;
    let mut max_zombies = 0;
    let mut next_move = start + Duration::from_secs(30);
    let mut runs = 0;
    let mut reloads = 0;
    while start.elapsed() < length {
        let now = Instant::now();
        if now >= next_fault {
            for (i, s) in servers.iter().enumerate() {
                s.set_faults(faults(round, i));
                s.clear_log();
                for _ in 0..3 {
                    s.push_message(message(i, pushed[i]));
                    pushed[i] += 1;
                }
            }
            round += 1;
            next_fault = now + Duration::from_secs(3);
        }
        // The scripted servers keep every connection's socket until they
        // are dropped: every 30 s each mailbox moves to a new server (same
        // user and host, so the same seen state) and SIGHUP tells popfetch
        // the new ports; runs on the old ones fail, as a restarted server's
        // would.
        if now >= next_move {
            let moved: Vec<Server> = (0..SOAK_ACCOUNTS)
                .map(|i| start_server(i, servers[i].messages()))
                .collect();
            home.write_config(&config_for(&moved));
            signal(&child, rustix::process::Signal::HUP);
            reloads += 1;
            for old in std::mem::replace(&mut servers, moved) {
                runs += old.connections();
            }
            next_move = now + Duration::from_secs(30);
        }
        if now >= next_sample {
            let s = sample(pid);
            // A zombie still there a second later was never waited for.
            let now_zombies = zombie_children(pid);
            if !now_zombies.is_empty() {
                std::thread::sleep(Duration::from_secs(1));
                let later = zombie_children(pid);
                max_zombies = max_zombies.max(now_zombies.intersection(&later).count());
            }
            samples.push((start.elapsed(), s));
            next_sample = now + Duration::from_secs(5);
        }
        signal(&child, rustix::process::Signal::USR1);
        std::thread::sleep(Duration::from_millis(10));
    }
    runs += servers.iter().map(|s| s.connections()).sum::<usize>();
    let last = sample(pid);
    samples.push((start.elapsed(), last));
    signal(&child, rustix::process::Signal::TERM);
    let stopped = Instant::now();
    let status = child.wait().unwrap();
    let stop_time = stopped.elapsed();
    // What the faults left on the servers is fetched by a plain sync.
    for s in &servers {
        s.clear_faults();
    }
    let sync = home.command(&["sync"]).output().unwrap();
    let mut delivered = 0;
    let mut duplicates = 0;
    let mut missing = 0;
    for (i, &n) in pushed.iter().enumerate() {
        let mut subjects = HashSet::new();
        for sub in ["new", "cur"] {
            for e in fs::read_dir(home.maildir(&format!("a{i}")).join(sub))
                .into_iter()
                .flatten()
                .flatten()
            {
                let text = fs::read_to_string(e.path()).unwrap();
                let subject = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Subject: "))
                    .unwrap_or("")
                    .to_string();
                delivered += 1;
                if !subjects.insert(subject) {
                    duplicates += 1;
                }
            }
        }
        for m in 0..n {
            if !subjects.contains(&format!("a{i}-m{m:06}")) {
                missing += 1;
            }
        }
    }

    println!("\n## watch soak: {SOAK_ACCOUNTS} accounts, SIGUSR1 every 10 ms, a new fault per server every 3 s\n");
    println!("| t (s) | RSS (KiB) | open fds | threads | zombies |");
    println!("|---:|---:|---:|---:|---:|");
    for (t, s) in &samples {
        println!(
            "| {:.0} | {} | {} | {} | {} |",
            t.as_secs_f64(),
            s.rss_kib,
            s.fds,
            s.threads,
            s.zombies
        );
    }
    let steady: Vec<&Sample> = samples
        .iter()
        .filter(|(t, _)| *t >= Duration::from_secs(20))
        .map(|(_, s)| s)
        .collect();
    let rss_min = steady.iter().map(|s| s.rss_kib).min().unwrap_or(0);
    let rss_max = steady.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let fds_max = samples.iter().map(|(_, s)| s.fds).max().unwrap_or(0);
    println!();
    println!(
        "runs (server connections): {runs} in {:.0} s, {reloads} reloads; messages pushed {}, delivered {delivered}, missing {missing}, duplicates {duplicates}",
        length.as_secs_f64(),
        pushed.iter().sum::<u64>()
    );
    println!(
        "RSS after 20 s: {rss_min}..{rss_max} KiB; open fds at most {fds_max}; zombies left unwaited for a second: at most {max_zombies}"
    );
    println!(
        "SIGTERM: exit {:?} after {:.2} s; the sync after it: exit {:?}",
        status.code(),
        stop_time.as_secs_f64(),
        sync.status.code()
    );
    if !sync.status.success() {
        println!(
            "the sync said: {}",
            String::from_utf8_lossy(&sync.stderr).trim()
        );
    }
    let flat = rss_max <= rss_min + rss_min / 10 + 1024;
    println!(
        "verdict: {}",
        if status.code() == Some(0) && missing == 0 && duplicates == 0 && max_zombies == 0 && flat {
            "ok"
        } else {
            "PROBLEM"
        }
    );
}

fn idle(length: Duration) {
    const ACCOUNTS: usize = 50;
    eprintln!("bench: idle, {ACCOUNTS} accounts waiting, {length:?}");
    let interval = std::env::var("BENCH_IDLE_INTERVAL").unwrap_or_else(|_| "24h".into());
    let home = Home::new();
    let servers: Vec<Server> = (0..ACCOUNTS)
        .map(|i| {
            Server::start(Config {
                user: format!("u{i}"),
                messages: vec![message(i, 0)],
                ..Config::default()
            })
        })
        .collect();
    let mut config = String::new();
    for (i, server) in servers.iter().enumerate() {
        config.push_str(&format!(
            "[accounts.a{i}]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nuser = \"u{i}\"\npassword = \"secret\"\nmaildir = \"~/Mail/a{i}\"\ninterval = \"{interval}\"\n\n",
            server.port()
        ));
    }
    home.write_config(&config);
    let path = home.path().join(".config/popfetch/config.toml");
    let _ = fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600));
    let mut child = home
        .command(&["watch", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Past the start (config, SQLite is not even opened until a run).
    std::thread::sleep(Duration::from_secs(2));
    let before = sample(pid);
    let t0 = Instant::now();
    std::thread::sleep(length);
    let after = sample(pid);
    let elapsed = t0.elapsed().as_secs_f64();
    signal(&child, rustix::process::Signal::TERM);
    let _ = child.wait();
    let per_hour = 3600.0 / elapsed;
    let cpu = (after.cpu_ticks - before.cpu_ticks) as f64 / clock_ticks_per_sec();
    let wakeups = after.voluntary.saturating_sub(before.voluntary) as f64;
    println!(
        "\n## watch idle: {ACCOUNTS} accounts waiting (interval {interval}), measured {elapsed:.0} s\n"
    );
    println!(
        "CPU: {cpu:.3} s measured, {:.3} s per hour; wake-ups (voluntary context switches): {wakeups:.0} measured, {:.0} per hour; runs meanwhile: {}; RSS {} KiB, threads {}, fds {}",
        cpu * per_hour,
        wakeups * per_hour,
        servers.iter().map(|s| s.connections()).sum::<usize>(),
        after.rss_kib,
        after.threads,
        after.fds
    );
}
