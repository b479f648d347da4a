//! The `unsafe` code in src/ stays in a few known blocks, each with the
//! reason it is sound: everything else goes through std or rustix.

use std::path::{Path, PathBuf};

/// The blocks that remain, and why each cannot go (file, how many):
/// - signals.rs: `sigaction` (no safe wrapper in std or rustix);
/// - external.rs: `pre_exec`, code between fork and exec;
/// - target/mbox.rs: the OFD fcntl lock (rustix's `fcntl_lock` takes
///   per-process locks only);
/// - source/imap/hostile_tests.rs (unit tests only): a counting global
///   allocator, so the hostile-server properties can bound the memory a
///   lying server makes the IMAP client take (`GlobalAlloc` is an unsafe
///   trait of unsafe methods; every call goes to `System` unchanged).
///
/// Early write-back of Maildir files is `rustix::fs::fadvise`, local time
/// reads the zone files itself (ui/zone.rs): neither needs `unsafe`.
const ALLOWED: [(&str, usize); 4] = [
    ("signals.rs", 1),
    ("external.rs", 1),
    ("target/mbox.rs", 1),
    ("source/imap/hostile_tests.rs", 9),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn unsafe_code_stays_in_its_few_documented_blocks() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for file in files {
        let name = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let mut found = 0;
        for (i, line) in lines.iter().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") || !code.contains("unsafe") {
                continue;
            }
            found += 1;
            // The reason sits in a `// SAFETY:` comment just above.
            let reason = lines[i.saturating_sub(8)..i]
                .iter()
                .any(|l| l.trim_start().starts_with("// SAFETY:"));
            if !reason {
                problems.push(format!(
                    "src/{name}:{}: unsafe without a // SAFETY: comment",
                    i + 1
                ));
            }
        }
        let allowed = ALLOWED
            .iter()
            .find(|(f, _)| *f == name)
            .map_or(0, |(_, n)| *n);
        if found > allowed {
            problems.push(format!(
                "src/{name}: {found} unsafe, at most {allowed} allowed"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
