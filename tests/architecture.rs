//! The layout is the architecture. These tests read the library's sources (comments and test
//! modules aside) and check what a newcomer would otherwise have to take on trust:
//!
//! - the crate's top-level modules depend on each other down one list, never up;
//! - no file is part of an import circle: a graph of which file uses which, built from `use`
//!   lines and `crate::`/`super::` paths (re-exports followed to where the item lives), has no
//!   cycle. A file using items of a folder module above it (`super::X` defined in `mod.rs`) is
//!   the usual idiom and is no edge;
//! - inside the engine, the rooms depend on each other down their own list;
//! - the rooms stay small: no file under `src/files/` or `src/engine/` over 600 lines, no
//!   product function over 100 lines.

#![allow(clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Top to bottom. A module may use the ones below it, never the ones above it.
const LAYERS: &[&[&str]] = &[
    &["startup"],
    &["functions"],
    &["error"],
    &["files"],
    &["workflow"],
    &["engine", "scan"],
    &["store"],
    &["config"],
    &["domain", "clock", "telemetry"],
];

/// The engine's rooms, top to bottom (files of `src/engine/`, and its folders). The client
/// and the worker stand on the turn; the turn on the handle (the engine's shared state,
/// reached through methods) and the orchestration model (replay, registry, context); all of
/// them on the vocabulary. A room may use the rooms below it, never one above or beside it.
const ENGINE_ROOMS: &[&[&str]] = &[
    &["driver"],
    &["client", "worker"],
    &["turn"],
    &["handle"],
    &["index_writer"],
    &["replay"],
    &["registry"],
    &["context"],
    &["vocabulary"],
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Every `.rs` file of the library (the binaries under `src/bin/` and `main.rs` are crates of
/// their own), relative to `src/`.
fn library_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).expect("a source directory") {
            let path = entry.expect("a directory entry").path();
            let rel = path.strip_prefix(root).expect("under src").to_owned();
            if path.is_dir() {
                if rel != Path::new("bin") {
                    walk(&path, root, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") && rel != Path::new("main.rs") {
                out.push(rel);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &src(), &mut files);
    files.sort();
    files
}

/// The module path a file defines: `engine/turn.rs` → `[engine, turn]`, `engine/mod.rs` →
/// `[engine]`, `lib.rs` → `[]`.
fn module_of(file: &Path) -> Vec<String> {
    let mut segments: Vec<String> = file
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let last = segments.pop().expect("a file name");
    if last != "mod.rs" && last != "lib.rs" {
        segments.push(last.trim_end_matches(".rs").to_owned());
    }
    segments
}

fn is_folder_module(file: &Path) -> bool {
    file.file_name()
        .is_some_and(|n| n == "mod.rs" || n == "lib.rs")
}

/// The source without comments, string literals' contents and `#[cfg(test)]` modules.
fn code_of(file: &Path) -> String {
    let text = fs::read_to_string(src().join(file)).expect("a readable source file");
    let mut out = String::with_capacity(text.len());
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < bytes.len() && bytes[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < bytes.len() && !(bytes[i] == '*' && bytes[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < bytes.len() && bytes[i] != '"' {
                if bytes[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            out.push('"');
            i += 1;
        } else if c == '\'' && bytes.get(i + 2) == Some(&'\'') {
            // a character literal such as '{' must not count as a brace
            i += 3;
        } else if c == '\'' && next == Some('\\') {
            // An escaped character literal ('\'', '\n', '\u{..}'): skip to its closing quote.
            i += 3;
            while i < bytes.len() && bytes[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    strip_test_modules(&out)
}

fn strip_test_modules(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        if trimmed.starts_with("mod ") {
            if let Some(open) = trimmed.find(['{', ';']) {
                if trimmed.as_bytes()[open] == b';' {
                    rest = &trimmed[open + 1..];
                    continue;
                }
                let mut depth = 0usize;
                let mut end = trimmed.len();
                for (i, ch) in trimmed[open..].char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = open + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &trimmed[end..];
                continue;
            }
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// A path a `use` line names, and the name it binds there.
type Bound = (Vec<String>, String);

/// `a::{b, c::{d, e as f}, self}` → the paths it names, each with the name it binds.
fn expand_use(tree: &str, prefix: &[String], out: &mut Vec<Bound>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let mut base = prefix.to_vec();
        base.extend(head);
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut depth = 0;
        let mut start = 0;
        for (i, ch) in inner.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand_use(&inner[start..i], &base, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand_use(&inner[start..], &base, out);
        return;
    }
    let (path, alias) = match tree.split_once(" as ") {
        Some((p, a)) => (p.trim(), Some(a.trim().to_owned())),
        None => (tree, None),
    };
    let mut full = prefix.to_vec();
    full.extend(
        path.split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    );
    if full.last().is_some_and(|s| s == "self") {
        full.pop();
    }
    let name = alias.or_else(|| full.last().cloned()).unwrap_or_default();
    out.push((full, name));
}

/// The `use` statements of some code: (is it `pub`, the paths with the names they bind).
fn use_statements(code: &str) -> Vec<(bool, Vec<Bound>)> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = &rest[..at];
        let boundary = before
            .chars()
            .last()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        let Some(end) = rest[at..].find(';') else {
            break;
        };
        if boundary {
            let visibility = before.trim_end();
            let public = visibility.ends_with("pub") || visibility.ends_with(')');
            let mut paths = Vec::new();
            expand_use(&rest[at + 4..at + end], &[], &mut paths);
            found.push((public, paths));
        }
        rest = &rest[at + end + 1..];
    }
    found
}

/// Paths written out in code: `crate::a::b`, `super::a`, `self::a` (also inside `use` lines).
fn inline_paths(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for start_word in ["crate::", "super::", "self::"] {
        let mut rest = code;
        while let Some(at) = rest.find(start_word) {
            let boundary = rest[..at]
                .chars()
                .last()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'));
            let tail = &rest[at..];
            let len = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            if boundary {
                let path: Vec<String> = tail[..len]
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                found.push(path);
            }
            rest = &rest[at + len.max(1)..];
        }
    }
    found
}

struct Crate {
    files: Vec<PathBuf>,
    by_module: BTreeMap<Vec<String>, PathBuf>,
    /// For each folder module: the names it re-exports, and the absolute path behind each.
    reexports: BTreeMap<PathBuf, BTreeMap<String, Vec<String>>>,
    code: BTreeMap<PathBuf, String>,
}

impl Crate {
    fn read() -> Self {
        let files = library_files();
        let by_module = files.iter().map(|f| (module_of(f), f.clone())).collect();
        let code: BTreeMap<PathBuf, String> =
            files.iter().map(|f| (f.clone(), code_of(f))).collect();
        let mut krate = Crate {
            files,
            by_module,
            reexports: BTreeMap::new(),
            code,
        };
        for file in krate.files.clone() {
            if !is_folder_module(&file) {
                continue;
            }
            let mut names = BTreeMap::new();
            for (public, paths) in use_statements(&krate.code[&file]) {
                if !public {
                    continue;
                }
                for (path, name) in paths {
                    if let Some(absolute) = krate.absolute(&file, &path) {
                        names.insert(name, absolute);
                    }
                }
            }
            krate.reexports.insert(file, names);
        }
        krate
    }

    /// A path as written in `file`, made absolute from the crate root; `None` for other
    /// crates' paths.
    fn absolute(&self, file: &Path, path: &[String]) -> Option<Vec<String>> {
        let module = module_of(file);
        let (first, rest) = path.split_first()?;
        let mut base = match first.as_str() {
            "crate" => Vec::new(),
            "self" => module.clone(),
            "super" => module[..module.len().saturating_sub(1)].to_vec(),
            name => {
                let mut child = module.clone();
                child.push(name.to_owned());
                if !self.by_module.contains_key(&child) {
                    return None;
                }
                module.clone()
            }
        };
        let mut rest = if matches!(first.as_str(), "crate" | "self" | "super") {
            rest
        } else {
            path
        };
        while rest.first().is_some_and(|s| s == "super") {
            base.pop();
            rest = &rest[1..];
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The file an absolute path's item lives in, following folder modules' re-exports.
    fn resolve(&self, path: &[String], depth: usize) -> Option<PathBuf> {
        let known = (0..=path.len())
            .rev()
            .find(|&n| self.by_module.contains_key(&path[..n]))?;
        let file = &self.by_module[&path[..known]];
        if depth < 8 && known < path.len() && is_folder_module(file) {
            if let Some(target) = self.reexports.get(file).and_then(|r| r.get(&path[known])) {
                let mut followed = target.clone();
                followed.extend(path[known + 1..].iter().cloned());
                if let Some(found) = self.resolve(&followed, depth + 1) {
                    return Some(found);
                }
            }
        }
        Some(file.clone())
    }

    /// The files `file` uses, bar itself and the folder modules above it.
    fn edges(&self, file: &Path) -> BTreeSet<PathBuf> {
        let code = &self.code[file];
        let mut paths: Vec<Vec<String>> = inline_paths(code);
        for (_, used) in use_statements(code) {
            paths.extend(used.into_iter().map(|(p, _)| p));
        }
        let module = module_of(file);
        let mut edges = BTreeSet::new();
        for path in paths {
            let Some(absolute) = self.absolute(file, &path) else {
                continue;
            };
            let Some(target) = self.resolve(&absolute, 0) else {
                continue;
            };
            let target_module = module_of(&target);
            let is_ancestor = is_folder_module(&target) && module.starts_with(&target_module);
            if target != file && !is_ancestor {
                edges.insert(target);
            }
        }
        edges
    }

    fn graph(&self) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
        self.files
            .iter()
            .map(|f| (f.clone(), self.edges(f)))
            .collect()
    }
}

/// The strongly connected groups of more than one file (or a file that reaches itself).
fn circles(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<BTreeSet<PathBuf>> {
    let reach = |from: &PathBuf| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(node) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&PathBuf, BTreeSet<PathBuf>> =
        graph.keys().map(|f| (f, reach(f))).collect();
    let mut groups: Vec<BTreeSet<PathBuf>> = Vec::new();
    for (file, reached) in &reachable {
        if !reached.contains(*file) || groups.iter().any(|g| g.contains(*file)) {
            continue;
        }
        let group: BTreeSet<PathBuf> = reached
            .iter()
            .filter(|other| reachable[other].contains(*file))
            .cloned()
            .collect();
        groups.push(group);
    }
    groups
}

#[test]
fn module_dependencies_point_down_the_layers() {
    let krate = Crate::read();
    let mut upward = Vec::new();
    for (file, used) in krate.graph() {
        let Some(own) = module_of(&file).first().cloned() else {
            continue;
        };
        let own_layer = layer_of(&own).unwrap_or_else(|| panic!("module {own} is in no layer"));
        for target in used {
            let Some(theirs) = module_of(&target).first().cloned() else {
                continue;
            };
            if theirs == own {
                continue;
            }
            let their_layer =
                layer_of(&theirs).unwrap_or_else(|| panic!("module {theirs} is in no layer"));
            if their_layer <= own_layer {
                upward.push(format!(
                    "{}: {own} uses {} ({theirs}), which is not below it",
                    file.display(),
                    target.display()
                ));
            }
        }
    }
    assert!(upward.is_empty(), "{}", upward.join("\n"));
}

#[test]
fn no_file_is_part_of_an_import_circle() {
    let krate = Crate::read();
    let found = circles(&krate.graph());
    let described: Vec<String> = found
        .iter()
        .map(|group| {
            let names: Vec<String> = group.iter().map(|f| f.display().to_string()).collect();
            format!("{} files: {}", names.len(), names.join(", "))
        })
        .collect();
    assert!(
        described.is_empty(),
        "import circles:\n{}",
        described.join("\n")
    );
}

#[test]
fn the_engine_rooms_depend_downwards() {
    let krate = Crate::read();
    let room_of = |file: &Path| -> Option<String> {
        let module = module_of(file);
        (module.first().map(String::as_str) == Some("engine") && module.len() > 1)
            .then(|| module[1].clone())
    };
    let rank = |room: &str| ENGINE_ROOMS.iter().position(|r| r.contains(&room));
    let mut wrong = Vec::new();
    for (file, used) in krate.graph() {
        let Some(own) = room_of(&file) else { continue };
        let own_rank = rank(&own).unwrap_or_else(|| panic!("engine room {own} is in no list"));
        for target in used {
            let Some(theirs) = room_of(&target) else {
                continue;
            };
            if theirs == own {
                continue;
            }
            let their_rank =
                rank(&theirs).unwrap_or_else(|| panic!("engine room {theirs} is in no list"));
            if their_rank <= own_rank {
                wrong.push(format!(
                    "{}: engine room {own} uses {theirs}, which is not below it",
                    file.display()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn application_and_engine_files_stay_under_600_lines() {
    let mut long = Vec::new();
    for file in library_files() {
        if !(file.starts_with("files") || file.starts_with("engine")) {
            continue;
        }
        let lines = fs::read_to_string(src().join(&file))
            .expect("readable")
            .lines()
            .count();
        if lines > 600 {
            long.push(format!("{}: {lines} lines", file.display()));
        }
    }
    assert!(long.is_empty(), "{}", long.join("\n"));
}

/// Functions of the product (test helpers, the conformance suite and the benchmark aside)
/// longer than `limit` lines, from `fn` to its closing brace.
fn long_functions(limit: usize) -> Vec<String> {
    let mut long = Vec::new();
    for file in library_files() {
        if file.starts_with("store/testing") || file == Path::new("store/conformance.rs") {
            continue;
        }
        let code = code_of(&file);
        let lines: Vec<&str> = code.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i].trim_start();
            let is_fn = line.split('(').next().is_some_and(|head| {
                let words: Vec<&str> = head.split_whitespace().collect();
                words.iter().rev().nth(1) == Some(&"fn")
            });
            if !is_fn {
                i += 1;
                continue;
            }
            let start = i;
            let mut depth = 0i32;
            let mut opened = false;
            let mut end = i;
            'scan: for (j, l) in lines.iter().enumerate().skip(i) {
                for ch in l.chars() {
                    match ch {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        ';' if !opened && depth == 0 => {
                            end = j;
                            break 'scan;
                        }
                        _ => {}
                    }
                }
                if opened && depth == 0 {
                    end = j;
                    break;
                }
            }
            let length = end - start + 1;
            if opened && length > limit {
                let name = line.split('(').next().unwrap_or(line);
                long.push(format!(
                    "{}:{}: {} is {length} lines",
                    file.display(),
                    start + 1,
                    name.trim()
                ));
            }
            // Nested functions (closures aside) are measured on their own too.
            i += 1;
        }
    }
    long
}

#[test]
fn no_product_function_is_over_100_lines() {
    let long = long_functions(100);
    assert!(long.is_empty(), "{}", long.join("\n"));
}

#[test]
fn configuration_is_a_leaf_every_layer_may_read() {
    let krate = Crate::read();
    let used = krate.edges(Path::new("config.rs"));
    let outside: Vec<String> = used
        .iter()
        .filter(|f| !f.starts_with("domain"))
        .map(|f| f.display().to_string())
        .collect();
    assert!(outside.is_empty(), "config.rs uses {}", outside.join(", "));
}

/// The checker itself: a circle it is shown is a circle it finds.
#[test]
fn the_circle_finder_finds_a_circle() {
    let a = PathBuf::from("a.rs");
    let b = PathBuf::from("b.rs");
    let c = PathBuf::from("c.rs");
    let graph = BTreeMap::from([
        (a.clone(), BTreeSet::from([b.clone()])),
        (b.clone(), BTreeSet::from([a.clone(), c.clone()])),
        (c.clone(), BTreeSet::new()),
    ]);
    assert_eq!(circles(&graph), vec![BTreeSet::from([a, b])]);
}

#[test]
fn use_trees_expand_to_every_path() {
    let mut out = Vec::new();
    expand_use("super::{a::X, b::{c, d as e}, self}", &[], &mut out);
    let paths: Vec<String> = out
        .iter()
        .map(|(p, n)| format!("{}={n}", p.join("::")))
        .collect();
    assert_eq!(
        paths,
        [
            "super::a::X=X",
            "super::b::c=c",
            "super::b::d=e",
            "super=super"
        ]
    );
}
