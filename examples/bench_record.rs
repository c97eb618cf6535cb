//! Recorder benchmark: N concurrent 1080p ~4 Mbit/s H.264 streams with AAC audio (or video
//! only, `--video-only`) from the simulator's looped mode, recorded by `witness serve`, by a bare
//! `gst-launch-1.0 rtspsrc ! … ! splitmuxsink` and by `ffmpeg -c copy -f segment`, on the same
//! streams in the same run.
//!
//! Reports CPU % and RSS per stream for each, their ratios, Witness's segment-closed →
//! stored-and-indexed latency (p50/p99) read back from the index, and what was stored against
//! wall clock: segments, the share of the session's time covered by media, and gaps.
//!
//!     cargo build --release --examples --bins
//!     ./target/release/examples/bench_record [N ...] [--seconds S] [--video-only] [--perf DIR]
//!
//! `--perf DIR` also samples Witness with `perf record -g` over each measured window, into
//! `DIR/witness-N.perf.data` (read with `perf report -i … --no-children`).
//! `BENCH_SERVER_LOG=FILE` keeps Witness's log (level `BENCH_SERVER_LOG_LEVEL`, default warn);
//! `BENCH_SIM_LOG=FILE` keeps the camera simulator's (with `GST_DEBUG=rtspstream:5`, say, to see
//! what gst-rtsp-server sent each client).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

fn witness_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("witness");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --release` first",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn clk_tck() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(100.0)
}

/// CPU seconds (user + system) used so far by a process and its reaped children.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    if f.len() < 13 {
        return 0.0;
    }
    (f[11] + f[12]) / clk_tck()
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Spawns a baseline and checks it is still running after a few seconds; a client that raced the
/// server's teardown of the previous contender's stream is started again.
fn spawn_alive(make: impl Fn() -> Command) -> Child {
    for _ in 0..5 {
        let mut child = make()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(3));
        if alive(child.id()) {
            return child;
        }
        let _ = child.wait();
    }
    panic!("baseline {:?} keeps exiting", make().get_program());
}

/// Measures CPU % (of one core) and RSS over `secs` for a set of processes, which must live
/// through the whole measurement.
/// With `files`, also counts the files that appeared there during the window (a baseline's
/// segments: proof it recorded while measured).
fn measure(pids: &[u32], warmup: Duration, secs: u64, files: Option<&Path>) -> (f64, f64, usize) {
    let count = |dir: &Path| std::fs::read_dir(dir).map_or(0, |d| d.count());
    std::thread::sleep(warmup);
    let c0: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let f0 = files.map_or(0, count);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let c1: f64 = pids.iter().map(|p| cpu_seconds(*p)).sum();
    let f1 = files.map_or(0, count);
    let rss: f64 = pids.iter().map(|p| rss_mib(*p)).sum();
    assert!(
        pids.iter().all(|p| alive(*p)),
        "a contender exited during the measurement"
    );
    (
        (c1 - c0) / t0.elapsed().as_secs_f64() * 100.0,
        rss,
        f1.saturating_sub(f0),
    )
}

struct Kill(Vec<Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Upper bounds (ms) of the p50 and p99 of a Prometheus histogram.
fn histogram_quantiles(text: &str, name: &str) -> (f64, f64) {
    let prefix = format!("{name}_bucket{{le=\"");
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            Some((
                le.parse().unwrap_or(f64::INFINITY),
                count.trim().parse().ok()?,
            ))
        })
        .collect();
    let total = buckets.last().map_or(0.0, |b| b.1);
    let q = |p: f64| {
        buckets
            .iter()
            .find(|b| b.1 >= p * total)
            .map_or(f64::NAN, |b| b.0 * 1000.0)
    };
    (q(0.5), q(0.99))
}

/// Sources per room in the benchmark, as in a trading centre's rooms.
const ROOM_SOURCES: usize = 4;

struct WitnessRun {
    cpu: f64,
    rss: f64,
    /// Media seconds stored over the sum of every recording's session span, in %.
    coverage: f64,
    /// Gap entries other than each chain's first (connecting) and last (the stop's tail).
    gaps: i64,
    /// Muxer's fragment-closed → object stored and entry indexed (histogram upper bounds).
    closed_p50: f64,
    closed_p99: f64,
    /// Segment's last frame → indexed: adds the GOP splitmuxsink waits for before closing.
    end_p50: f64,
    end_p99: f64,
    segments: usize,
}

async fn bench_witness(
    n: usize,
    urls: &[String],
    media: &str,
    secs: u64,
    dir: &Path,
    perf: Option<&Path>,
) -> WitnessRun {
    let port = free_port();
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("witness.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[http]\nlisten = \"127.0.0.1:{port}\"\n[retention]\npolicies_dir = {:?}\n[recording]\nsegment_seconds = 2.0\npipelines_dir = {:?}\n",
            dir.join("data"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("storage-policies"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines")
        ),
    )
    .unwrap();
    // BENCH_SERVER_LOG=FILE keeps the server's log (at BENCH_SERVER_LOG_LEVEL, default warn)
    // to explain a gap; by default it is dropped.
    let log = std::env::var_os("BENCH_SERVER_LOG").map(|f| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(f)
            .expect("BENCH_SERVER_LOG")
    });
    let server = Command::new(witness_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .env(
            "RUST_LOG",
            std::env::var("BENCH_SERVER_LOG_LEVEL").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(log.map_or_else(Stdio::null, Stdio::from))
        .spawn()
        .unwrap();
    let pid = server.id();
    let _guard = Kill(vec![server]);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}/api/v1");
    for _ in 0..100 {
        if http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Accounts for the benchmark, made with the CLI as an operator would: an administrator
    // sets the room up, witness staff start and stop it.
    let token = |role: &str| {
        let name = format!("bench-{}", role.replace('_', "-"));
        let cli = |args: &[&str]| {
            let out = Command::new(witness_bin())
                .args(args)
                .arg("--config")
                .arg(&config)
                .env("RUST_LOG", "warn")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        if !cli(&["user", "list"]).contains(&name) {
            cli(&["user", "add", &name, "--role", role]);
        }
        cli(&["token", "--user", &name, "--name", "bench", "--days", "1"])
    };
    let (admin, staff) = (token("system_administrator"), token("witness_staff"));
    // Rooms of four sources, as a trading centre has them, each recording its own session.
    let mut rooms: Vec<(String, String)> = Vec::new();
    for (r, chunk) in urls.chunks(ROOM_SOURCES).enumerate() {
        let sources: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, u)| json!({"name": format!("cam{}", i + 1), "url": u, "media": media}))
            .collect();
        let room: serde_json::Value = http
            .post(format!("{base}/rooms"))
            .bearer_auth(&admin)
            .json(&json!({"name": format!("bench {n} room {}", r + 1), "kind": "other", "sources": sources}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let room = room["id"]
            .as_str()
            .unwrap_or_else(|| panic!("room not created: {room}"))
            .to_string();
        let session: serde_json::Value = http
            .post(format!("{base}/rooms/{room}/start"))
            .bearer_auth(&staff)
            .json(&json!({"project_code": "BENCH", "session_code": format!("N{n}-{}", r + 1), "kind": "other", "reason": "benchmark"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = session["id"]
            .as_str()
            .unwrap_or_else(|| panic!("session not started: {session}"))
            .to_string();
        rooms.push((room, session));
    }
    // With `--perf DIR`: where Witness's cycles go, sampled over the measured window.
    let profiler = perf.map(|dir| {
        let out = dir.join(format!("witness-{n}.perf.data"));
        Command::new("perf")
            .args(["record", "-F", "499", "-g", "-o"])
            .arg(&out)
            .args(["-p", &pid.to_string(), "--", "sleep"])
            .arg((secs + 5).to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("perf (Debian: linux-perf) runs")
    });
    let (cpu, rss, _) =
        tokio::task::spawn_blocking(move || measure(&[pid], Duration::from_secs(5), secs, None))
            .await
            .unwrap();
    if let Some(mut p) = profiler {
        let _ = p.wait();
    }
    let mut span_us = 0;
    for (room, _) in &rooms {
        let stopped: serde_json::Value = http
            .post(format!("{base}/rooms/{room}/stop"))
            .bearer_auth(&staff)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(stopped["state"], "stopped", "{stopped}");
        let at =
            |field: &str| witness::time::parse_rfc3339(stopped[field].as_str().unwrap()).unwrap();
        span_us += (at("stopped_at") - at("started_at"))
            * stopped["recordings"]
                .as_array()
                .map_or(0, |r| r.len() as i64);
    }
    let sessions: Vec<String> = rooms.iter().map(|(_, s)| format!("'{s}'")).collect();
    let sessions = sessions.join(",");
    let metrics = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (closed_p50, closed_p99) = histogram_quantiles(&metrics, "witness_store_latency_seconds");
    // Latency: entry indexed_at minus the segment's end (its start + duration, server clock).
    let pool = witness::db::open(&format!(
        "sqlite://{}",
        dir.join("data/witness.db").display()
    ))
    .await
    .unwrap();
    let rows: Vec<(i64,)> = sqlx::query_as(&format!(
        "SELECT e.indexed_at - (e.wall_start_us + e.duration_us) FROM chain_entries e JOIN recordings r ON r.id = e.recording_id
         WHERE r.session_id IN ({sessions}) AND e.kind = 'media' AND e.detail NOT LIKE 'recovered%'",
    ))
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut lat: Vec<f64> = rows.iter().map(|(us,)| *us as f64 / 1000.0).collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    // Against wall clock: every source's media over the session's span, and the gaps between
    // the first segment and the stop.
    let (media_us, gaps): (i64, i64) = sqlx::query_as(&format!(
        "SELECT COALESCE(SUM(CASE WHEN e.kind = 'media' THEN e.duration_us ELSE 0 END), 0),
                COALESCE(SUM(CASE WHEN e.kind = 'gap' AND e.seq > 1
                    AND e.seq < (SELECT MAX(x.seq) FROM chain_entries x WHERE x.recording_id = e.recording_id)
                    THEN 1 ELSE 0 END), 0)
         FROM chain_entries e JOIN recordings r ON r.id = e.recording_id WHERE r.session_id IN ({sessions})",
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    // Each gap inside a session, with its reason: load must cause none.
    let reasons: Vec<(String, i64, String)> = sqlx::query_as(&format!(
        "SELECT r.source_name, e.duration_us, e.detail FROM chain_entries e JOIN recordings r ON r.id = e.recording_id
         WHERE r.session_id IN ({sessions}) AND e.kind = 'gap' AND e.seq > 1
           AND e.seq < (SELECT MAX(x.seq) FROM chain_entries x WHERE x.recording_id = e.recording_id)
         ORDER BY r.source_name, e.seq",
    ))
    .fetch_all(&pool)
    .await
    .unwrap();
    for (source, us, reason) in &reasons {
        eprintln!("  gap in {source}: {:.2} s: {reason}", *us as f64 / 1e6);
    }
    WitnessRun {
        cpu,
        rss,
        coverage: media_us as f64 * 100.0 / span_us as f64,
        gaps,
        closed_p50,
        closed_p99,
        end_p50: percentile(&lat, 0.5),
        end_p99: percentile(&lat, 0.99),
        segments: lat.len(),
    }
}

fn bench_gst(urls: &[String], audio: bool, secs: u64, dir: &Path) -> (f64, f64, usize) {
    let mut args = vec!["-q".to_string()];
    for (i, u) in urls.iter().enumerate() {
        let chain = if audio {
            format!(
                "rtspsrc name=s{i} location={u} protocols=tcp latency=200 \
                 s{i}. ! application/x-rtp,media=video ! rtph264depay ! h264parse ! queue ! m{i}.video \
                 s{i}. ! application/x-rtp,media=audio ! rtpmp4gdepay ! aacparse ! queue ! m{i}.audio_0 \
                 splitmuxsink name=m{i} muxer=mpegtsmux max-size-time=2000000000 location={}/g{i}_%05d.ts",
                dir.display()
            )
        } else {
            format!(
                "rtspsrc location={u} protocols=tcp latency=200 ! rtph264depay ! h264parse ! splitmuxsink muxer=mpegtsmux max-size-time=2000000000 location={}/g{i}_%05d.ts",
                dir.display()
            )
        };
        args.extend(chain.split_whitespace().map(str::to_string));
    }
    let child = spawn_alive(|| {
        let mut c = Command::new("gst-launch-1.0");
        c.args(&args);
        c
    });
    let pid = child.id();
    let _g = Kill(vec![child]);
    measure(&[pid], Duration::from_secs(5), secs, Some(dir))
}

fn bench_ffmpeg(urls: &[String], secs: u64, dir: &Path) -> (f64, f64, usize) {
    let children: Vec<Child> = urls
        .iter()
        .enumerate()
        .map(|(i, u)| {
            spawn_alive(|| {
                let mut c = Command::new("ffmpeg");
                c.args([
                    "-nostdin",
                    "-loglevel",
                    "error",
                    "-rtsp_transport",
                    "tcp",
                    "-i",
                    u,
                    "-c",
                    "copy",
                    "-f",
                    "segment",
                    "-segment_time",
                    "2",
                ])
                .arg(dir.join(format!("f{i}_%05d.ts")));
                c
            })
        })
        .collect();
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    let _g = Kill(children);
    measure(&pids, Duration::from_secs(5), secs, Some(dir))
}

#[tokio::main]
async fn main() {
    let mut ns: Vec<usize> = Vec::new();
    let mut secs = 20;
    let mut audio = true;
    let mut perf: Option<PathBuf> = None;
    const USAGE: &str = "usage: bench_record [N ...] [--seconds S] [--video-only] [--perf DIR]";
    let usage = |why: &str| -> ! {
        eprintln!("bench_record: {why}\n{USAGE}");
        std::process::exit(2)
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--help" | "-h" => {
                println!("{USAGE}");
                return;
            }
            "--perf" => {
                perf = Some(
                    args.next()
                        .unwrap_or_else(|| usage("--perf needs a folder"))
                        .into(),
                )
            }
            "--video-only" => audio = false,
            "--seconds" => {
                secs = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| usage("--seconds needs a whole number of seconds"))
            }
            n => match n.parse() {
                Ok(n) if n > 0 => ns.push(n),
                _ => usage(&format!("{n:?} is not a number of streams")),
            },
        }
    }
    if ns.is_empty() {
        ns = vec![1, 8, 32];
    }
    let max = *ns.iter().max().unwrap();
    let sim_port = free_port();
    let sim = Command::new(witness_bin())
        .args([
            "simulate",
            "--looped",
            "--width",
            "1920",
            "--height",
            "1080",
            "--fps",
            "25",
            "--bitrate",
            "4000",
            "--microphones",
            "0",
            "--audio",
            if audio { "aac" } else { "none" },
        ])
        .args([
            "--cameras",
            &max.to_string(),
            "--port",
            &sim_port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(
            std::env::var_os("BENCH_SIM_LOG").map_or_else(Stdio::null, |f| {
                Stdio::from(std::fs::File::create(f).expect("BENCH_SIM_LOG"))
            }),
        )
        .spawn()
        .unwrap();
    let _sim = Kill(vec![sim]);
    while std::net::TcpStream::connect(("127.0.0.1", sim_port)).is_err() {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "streams: 1920x1080 25 fps H.264 ~4 Mbit/s{}, 2 s segments; {secs} s measured after 5 s warm-up",
        if audio {
            " + AAC 48 kHz 64 kbit/s"
        } else {
            ", no audio"
        }
    );
    println!(
        "| streams | witness CPU % | per stream | % of 2 cores | witness RSS MiB | per stream | gst-launch CPU % | per stream | RSS MiB | ffmpeg CPU % | per stream | RSS MiB | witness / gst-launch | witness / ffmpeg | closed→indexed p50 / p99 ms (≤) | segment end→indexed p50 / p99 ms | segments | media coverage % | gaps | baselines' segments in the window (gst / ffmpeg / expected) |"
    );
    println!(
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let media = if audio { "av" } else { "video" };
    for n in ns {
        let urls: Vec<String> = (1..=n)
            .map(|i| format!("rtsp://127.0.0.1:{sim_port}/cam{i}"))
            .collect();
        let tmp = tempfile::tempdir().unwrap();
        let w = bench_witness(
            n,
            &urls,
            media,
            secs,
            &tmp.path().join("w"),
            perf.as_deref(),
        )
        .await;
        let gdir = tmp.path().join("g");
        std::fs::create_dir_all(&gdir).unwrap();
        let (g_cpu, g_rss, g_files) = bench_gst(&urls, audio, secs, &gdir);
        let fdir = tmp.path().join("f");
        std::fs::create_dir_all(&fdir).unwrap();
        let (f_cpu, f_rss, f_files) = bench_ffmpeg(&urls, secs, &fdir);
        let per = |x: f64| x / n as f64;
        println!(
            "| {n} | {:.1} | {:.2} | {:.0} | {:.0} | {:.1} | {g_cpu:.1} | {:.2} | {g_rss:.0} | {f_cpu:.1} | {:.2} | {f_rss:.0} | {:.2} | {:.2} | {} / {} | {:.0} / {:.0} | {} | {:.1} | {} | {g_files} / {f_files} / {} |",
            w.cpu,
            per(w.cpu),
            w.cpu / 2.0,
            w.rss,
            per(w.rss),
            per(g_cpu),
            per(f_cpu),
            w.cpu / g_cpu,
            w.cpu / f_cpu,
            w.closed_p50,
            w.closed_p99,
            w.end_p50,
            w.end_p99,
            w.segments,
            w.coverage,
            w.gaps,
            n as u64 * secs / 2
        );
    }
}
