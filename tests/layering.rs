//! The layering rule of docs/ARCHITECTURE.md, checked on the source itself: HTTP on top, the
//! domain below it, and imports that point one way only.
//!
//! - Nothing outside `src/http/` (and the binary: `src/main.rs`, `src/cli/`) mentions axum or
//!   the HTTP layer.
//! - Every `crate::<module>` reference from one top-level module to another points down the
//!   order in `LAYERS`, so the modules cannot import each other in a circle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The top-level modules of `src/`, lowest first. A module may use the modules before it, never
/// those after it.
const LAYERS: &[&str] = &[
    "time",
    "catalogue",
    "config",
    "db",
    "error",
    "metrics",
    "store",
    "disk",
    "workload",
    "worm",
    "ledger",
    "capture",
    "audit",
    "identity",
    "retention",
    "projects",
    "sessions",
    "evidence",
    "bookings",
    "project_archive",
    "services",
    "simulator",
    "http",
];

/// Where the binary lives: above everything, allowed to use everything.
fn is_binary(file: &Path) -> bool {
    file.starts_with("src/main.rs") || file.starts_with("src/cli")
}

fn sources() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source is UTF-8");
                out.push((path.strip_prefix(root).unwrap().to_path_buf(), text));
            }
        }
    }
    out.sort();
    out
}

/// The code of a file without its `#[cfg(test)] mod tests` (tests may reach anywhere).
fn code(text: &str) -> &str {
    text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text)
}

/// The top-level module a file belongs to: `ledger` for `src/ledger/chain.rs`.
fn module_of(file: &Path) -> String {
    let first = file
        .components()
        .nth(1)
        .expect("under src/")
        .as_os_str()
        .to_string_lossy()
        .to_string();
    first.trim_end_matches(".rs").to_string()
}

#[test]
fn nothing_below_http_knows_http() {
    let mut offenders = Vec::new();
    for (file, text) in sources() {
        if file.starts_with("src/http") || is_binary(&file) {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            if line.contains("axum") || line.contains("crate::http") {
                offenders.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "outside src/http/, nothing may use axum or crate::http (docs/ARCHITECTURE.md, layering):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn imports_point_down_the_layers() {
    let rank: BTreeMap<&str, usize> = LAYERS.iter().enumerate().map(|(i, m)| (*m, i)).collect();
    let mut offenders = Vec::new();
    let mut seen_modules = std::collections::BTreeSet::new();
    for (file, text) in sources() {
        if is_binary(&file) || file == Path::new("src/lib.rs") {
            continue;
        }
        let from = module_of(&file);
        seen_modules.insert(from.clone());
        let Some(&from_rank) = rank.get(from.as_str()) else {
            offenders.push(format!(
                "{}: module {from:?} is not in LAYERS; place it in the order",
                file.display()
            ));
            continue;
        };
        for (n, line) in code(&text).lines().enumerate() {
            for used in line.split("crate::").skip(1) {
                let to: String = used
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if to == from {
                    continue;
                }
                if let Some(&to_rank) = rank.get(to.as_str())
                    && to_rank > from_rank
                {
                    offenders.push(format!(
                        "{}:{}: {from} (layer {from_rank}) uses {to} (layer {to_rank}), which sits above it",
                        file.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    for layer in LAYERS {
        assert!(
            seen_modules.contains(*layer),
            "LAYERS names {layer:?}, which is not a module of src/"
        );
    }
    assert!(
        offenders.is_empty(),
        "imports must point down the layers of docs/ARCHITECTURE.md:\n{}",
        offenders.join("\n")
    );
}
