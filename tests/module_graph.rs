//! The modules of `src/` form no import cycle: a module that names another
//! (`crate::a::b`, or `super::` from a submodule) depends on it, and
//! following those names never leads back to where it started. A cycle
//! means two modules can only be understood, changed and tested together;
//! this test names the modules of the first cycle it finds and the path
//! round it.
//!
//! Test code (`#[cfg(test)] mod …` blocks) is left out: a unit test may
//! use whatever it tests with.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module of `src/` by its path (`engine::sync`), with its source.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, src: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, src, out);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            out.insert(parts.join("::"), without_tests(&text));
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    walk(&src, &src, &mut out);
    out
}

/// The source up to its first `#[cfg(test)]` module; a file that is a
/// test module as a whole (declared under `#[cfg(test)]`) counts as empty.
fn without_tests(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .get(i + 1)
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            return lines[..i].join("\n");
        }
    }
    text.to_string()
}

/// Module paths named in `text` as `crate::…` (also inside `crate::{…}`).
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    relative_paths(text, "crate::")
}

/// The paths that follow `prefix` in `text` (`crate::a::b`, `super::{a, b}`).
fn relative_paths(text: &str, prefix: &str) -> Vec<Vec<String>> {
    let ident = |s: &str| -> Vec<String> {
        s.split("::")
            .map(|p| {
                p.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|p| !p.is_empty())
            .collect()
    };
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                out.push(ident(item.trim()));
            }
        } else {
            out.push(ident(rest));
        }
    }
    out
}

/// What `module` depends on: the longest known module prefix of each path
/// it names, and its parent when it says `super::`.
fn dependencies(module: &str, text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut deps = BTreeSet::new();
    let mut add = |parts: &[String]| {
        for len in (1..=parts.len()).rev() {
            let candidate = parts[..len].join("::");
            if known.contains(&candidate) {
                // A module naming itself or its own children is not a cycle.
                let own = candidate == module || candidate.starts_with(&format!("{module}::"));
                if !own {
                    deps.insert(candidate);
                }
                return;
            }
        }
    };
    for path in crate_paths(text) {
        add(&path);
    }
    // `super::x` names the parent's `x` (a sibling module, or an item of
    // the parent itself); `super::{x, y}` names several.
    if let Some((parent, _)) = module.rsplit_once("::") {
        let parent: Vec<String> = parent.split("::").map(String::from).collect();
        for relative in relative_paths(text, "super::") {
            add(&[parent.clone(), relative].concat());
        }
    }
    deps
}

/// A cycle in `graph`, as the list of modules round it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_string(), Mark::Open);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let start = path.iter().position(|p| p == next).unwrap();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(cycle) = visit(next, graph, marks, path) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if marks.get(node).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new()) {
                return Some(cycle);
            }
        }
    }
    None
}

fn graph_of(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(m, text)| (m.clone(), dependencies(m, text, &known)))
        .collect()
}

#[test]
fn no_two_modules_import_each_other_directly_or_round_a_circle() {
    let modules = modules();
    assert!(
        modules.contains_key("engine::sync"),
        "the walk found no modules"
    );
    if let Some(cycle) = find_cycle(&graph_of(&modules)) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_checker_finds_a_cycle_and_its_path() {
    let module = |text: &str| text.to_string();
    let mut modules = BTreeMap::new();
    modules.insert("a".to_string(), module("use crate::b::Thing;"));
    modules.insert("b".to_string(), module("use crate::{c::{self}, d};"));
    modules.insert("c".to_string(), module("fn f() { crate::a::g() }"));
    modules.insert("d".to_string(), module(""));
    modules.insert("d::e".to_string(), module("use super::X;"));
    modules.insert("d::f".to_string(), module("use super::{e::Y, X};"));
    let cycle = find_cycle(&graph_of(&modules)).expect("a -> b -> c -> a");
    assert_eq!(cycle, ["a", "b", "c", "a"]);

    // Test code and a module's own children are no dependency.
    modules.insert(
        "c".to_string(),
        without_tests("use crate::d::e;\n#[cfg(test)]\nmod tests { use crate::a; }"),
    );
    assert_eq!(find_cycle(&graph_of(&modules)), None);

    // Siblings that name each other through `super::` are a cycle too.
    modules.insert("d::e".to_string(), module("fn g() { super::f::h() }"));
    let cycle = find_cycle(&graph_of(&modules)).expect("d::e -> d::f -> d::e");
    assert_eq!(cycle, ["d::e", "d::f", "d::e"]);
}
