//! Builds the browser assets (web/: hls.js and the pages' own scripts, bundled by esbuild) into
//! OUT_DIR, from where `src/web.rs` embeds them: one binary carries its pages.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

fn main() {
    for watched in [
        "web/src",
        "web/build.mjs",
        "web/package.json",
        "web/package-lock.json",
        // sqlx::migrate! embeds the migrations: a new file must rebuild the crate.
        "migrations",
    ] {
        println!("cargo:rerun-if-changed={watched}");
    }
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let web = root.join("web");
    let out = PathBuf::from(env::var("OUT_DIR").expect("set by cargo")).join("web");

    if needs_install(&web) {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&web));
    }
    run(Command::new("node").arg(web.join("build.mjs")).arg(&out));
}

/// `npm ci` when node_modules is missing or older than the lock file.
fn needs_install(web: &Path) -> bool {
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    match (
        modified(&web.join("node_modules/.package-lock.json")),
        modified(&web.join("package-lock.json")),
    ) {
        (Some(installed), Some(lock)) => installed < lock,
        _ => true,
    }
}

fn run(cmd: &mut Command) {
    let shown = format!("{cmd:?}");
    match cmd.status() {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "{shown} failed ({s}); the web assets need Node.js ≥ 18 and npm (scripts/setup installs them)"
        ),
        Err(e) => panic!(
            "cannot run {shown}: {e}; the web assets need Node.js ≥ 18 and npm (scripts/setup installs them)"
        ),
    }
}
