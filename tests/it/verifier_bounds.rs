//! The offline verifier against packages built to exhaust it: it finishes quickly, in bounded
//! memory (peak RSS measured by the kernel), and says why it refused.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

/// Peak resident memory the verifier may reach on any of these packages.
const MAX_RSS_MIB: u64 = 160;

struct Run {
    code: i32,
    out: String,
    rss_mib: u64,
    took: Duration,
}

/// `witness verify PATH`, with the child's peak RSS as the kernel counts it (getrusage).
fn verify_measured(path: &Path) -> Run {
    let script = r#"
import json, resource, subprocess, sys
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"code": p.returncode, "out": p.stdout + p.stderr,
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"#;
    let t = Instant::now();
    let out = Command::new("python3")
        .args(["-c", script, BIN, "verify"])
        .arg(path)
        .output()
        .unwrap();
    let took = t.elapsed();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    Run {
        code: v["code"].as_i64().unwrap() as i32,
        out: v["out"].as_str().unwrap().to_string(),
        rss_mib: v["maxrss_kib"].as_u64().unwrap() / 1024,
        took,
    }
}

fn bounded(what: &str, r: &Run) {
    eprintln!(
        "{what}: exit {}, peak RSS {} MiB, {:.1} s",
        r.code,
        r.rss_mib,
        r.took.as_secs_f64()
    );
    assert!(
        r.rss_mib <= MAX_RSS_MIB,
        "{what}: peak RSS {} MiB > {MAX_RSS_MIB}",
        r.rss_mib
    );
    assert!(
        r.took < Duration::from_secs(60),
        "{what}: took {:?}",
        r.took
    );
    assert_ne!(
        r.code, 0,
        "{what}: a hostile package is never INTACT: {}",
        r.out
    );
}

/// A bag folder with a bag-info and one chain file holding `entries`.
fn bag_with_chain(dir: &Path, entries: Value) {
    std::fs::create_dir_all(dir.join("data/chain")).unwrap();
    std::fs::write(
        dir.join("bagit.txt"),
        "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n",
    )
    .unwrap();
    std::fs::write(dir.join("bag-info.txt"), "Witness-Project-Code: ZB-X\n").unwrap();
    let chain = json!({
        "recording_id": "r1", "source": "cam1", "room_id": "room", "template": "default",
        "entries": entries,
    });
    std::fs::write(
        dir.join("data/chain/cam1.json"),
        serde_json::to_vec(&chain).unwrap(),
    )
    .unwrap();
}

fn entry(seq: i64, kind: &str, detail: &str) -> Value {
    json!({
        "recording_id": "r1", "seq": seq, "kind": kind, "object_key": "",
        "wall_start_us": 0, "duration_us": 0, "bytes": 0, "sha256": "", "clock": "server",
        "detail": detail, "prev_hash": "", "entry_hash": "",
    })
}

/// A sparse file: `len` bytes of zeros that cost no disk.
fn sparse(path: &Path, len: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

#[test]
fn hostile_packages_finish_in_bounded_memory() {
    let w = tempfile::tempdir().unwrap();

    // A tombstone naming 10¹⁰ seqs by repeating a wide range.
    let bag = w.path().join("ranges");
    let bomb = format!(
        "destroyed: {}; request: r; rule: default; approved by: a",
        vec!["1-9999999"; 1000].join(",")
    );
    bag_with_chain(
        &bag,
        json!([entry(0, "genesis", ""), entry(1, "tombstone", &bomb)]),
    );
    let r = verify_measured(&bag);
    bounded("tombstone range bomb", &r);
    assert!(
        r.out.contains("tombstone does not say what it destroyed"),
        "{}",
        r.out
    );

    // Tag-like files the verifier would parse, each under the per-file bound, together far over
    // the total: refused before they are all held.
    let bag = w.path().join("many-tags");
    bag_with_chain(&bag, json!([entry(0, "genesis", "")]));
    for i in 0..6 {
        sparse(&bag.join(format!("data/audit/part-{i}.jsonl")), 60 << 20);
    }
    let r = verify_measured(&bag);
    bounded("six 60 MiB audit files", &r);
    assert!(
        r.code == 2 && r.out.contains("package refused") && r.out.contains("in all"),
        "{}",
        r.out
    );

    // Large derived copies and media are hashed as they stream, never held.
    let bag = w.path().join("derived");
    bag_with_chain(&bag, json!([entry(0, "genesis", "")]));
    for i in 0..4 {
        sparse(&bag.join(format!("derived/cam{i}.mp4")), 60 << 20);
        sparse(
            &bag.join(format!("data/media/cam{i}/00000001.ts")),
            60 << 20,
        );
    }
    let r = verify_measured(&bag);
    bounded("480 MiB of derived copies and media", &r);

    // A zip whose small-looking members each expand a thousandfold.
    let zip = w.path().join("ratio.zip");
    let script = r#"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("bag/bagit.txt", "BagIt-Version: 1.0\n")
    block = bytes(1 << 20)
    for i in range(8):
        info = zipfile.ZipInfo(f"bag/data/audit/part-{i}.jsonl")
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w") as f:
            for _ in range(40):
                f.write(block)
"#;
    let st = Command::new("python3")
        .args(["-c", script])
        .arg(&zip)
        .status()
        .unwrap();
    assert!(st.success());
    let r = verify_measured(&zip);
    bounded("zip of 40 MiB members compressed 1000:1", &r);
    assert!(r.code == 2 && r.out.contains("zip bomb"), "{}", r.out);
}
