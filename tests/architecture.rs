//! The layout is the architecture: dependencies between the crate's top-level modules point one
//! way, down this list, and never in a circle. This test reads the sources (comments aside) and
//! fails on any `crate::<module>` path that points up.

#![allow(clippy::expect_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Top to bottom. A module may use the ones below it, never the ones above it.
const LAYERS: &[&[&str]] = &[
    &["startup"],
    &["config"],
    &["functions"],
    &["error"],
    &["files"],
    &["workflow"],
    &["engine"],
    &["store"],
    &["domain", "clock", "telemetry"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn sources(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(path).expect("a source directory") {
        files.extend(sources(&entry.expect("a directory entry").path()));
    }
    files
}

/// The top-level modules a file names as `crate::<module>`, outside comments.
fn uses(file: &Path) -> BTreeSet<String> {
    let text = fs::read_to_string(file).expect("a readable source file");
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn module_dependencies_point_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut upward = Vec::new();
    for layer in LAYERS {
        for module in *layer {
            let dir = src.join(module);
            let root = if dir.is_dir() {
                dir
            } else {
                src.join(format!("{module}.rs"))
            };
            assert!(root.exists(), "no module {module} at {}", root.display());
            let own = layer_of(module).expect("listed");
            for file in sources(&root) {
                for used in uses(&file) {
                    if used == *module {
                        continue;
                    }
                    let Some(theirs) = layer_of(&used) else {
                        upward.push(format!("{}: uses unlisted module {used}", file.display()));
                        continue;
                    };
                    if theirs <= own {
                        upward.push(format!(
                            "{}: {module} uses {used}, which is not below it",
                            file.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(upward.is_empty(), "{}", upward.join("\n"));
}
