//! The `witness` command: wiring only.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use witness::config::Config;
use witness::recording::package::verify_package;
use witness::recording::{export, rooms, sessions::StartRequest, verify};
use witness::{server, simulator};

#[derive(Parser)]
#[command(
    name = "witness",
    version,
    about = "Records trading-centre rooms as tamper-evident evidence"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API and the recorders.
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the RTSP camera simulator.
    Simulate(simulator::SimOptions),
    /// Export a stopped session as an evidence package (BagIt bag in a tar or zip file).
    Export {
        #[arg(long)]
        session: String,
        /// The package file; a name ending in .zip makes a zip unless --format says otherwise.
        #[arg(long)]
        out: PathBuf,
        /// tar or zip.
        #[arg(long, value_parser = ["tar", "zip"])]
        format: Option<String>,
        /// Also one playable MP4 per source under derived/ (remuxed; marked as not evidence).
        #[arg(long)]
        derived_mp4: bool,
        /// Why it is exported; recorded in the audit trail and the package.
        #[arg(long)]
        reason: String,
        /// Who exports it.
        #[arg(long, default_value = "cli")]
        exporter: String,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Server + simulator + a demo room that starts recording.
    Demo {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Simulator port.
        #[arg(long, default_value_t = 8554)]
        rtsp_port: u16,
    },
    /// Check a session in the store (`--session ID`), or an evidence package offline (PACKAGE).
    Verify {
        /// An evidence package (tar or unpacked folder): checked offline, no server or database.
        package: Option<PathBuf>,
        #[arg(long, conflicts_with = "package")]
        session: Option<String>,
        /// Check the audit trail's hash chain and signed checkpoints (needs the database).
        #[arg(long, conflicts_with_all = ["package", "session"])]
        audit: bool,
        /// With a package: the server public key (hex) it must be signed with.
        #[arg(long, requires = "package")]
        public_key: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the full report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(opts) => simulator::run(&opts)
            .map_err(Into::into)
            .map(|_| ExitCode::SUCCESS),
        other => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")
            .and_then(|rt| {
                let result = rt.block_on(run(other));
                // A GStreamer graph wedged in teardown must not keep the process alive.
                rt.shutdown_timeout(std::time::Duration::from_secs(10));
                result
            }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("witness: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config } => {
            let config = Config::load(config.as_deref())?;
            let state = server::start(&config).await?;
            server::serve(&config, state).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            package: Some(package),
            public_key,
            json,
            ..
        } => {
            let report = verify_package(&package, public_key.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for seg in &report.segments {
                    println!(
                        "{:<10} seq {:>6}  {:<40} {}",
                        seg.source,
                        seg.seq,
                        seg.file,
                        if seg.ok { "ok" } else { "BROKEN" }
                    );
                }
                for g in &report.gaps {
                    println!("gap: {g}");
                }
                for d in &report.derived {
                    println!("derived (not evidence, signed): {d}");
                }
                for p in &report.problems {
                    println!("problem: {p}");
                }
                println!("{}", report.verdict);
            }
            Ok(if report.intact {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Verify {
            session: Some(session),
            config,
            json,
            ..
        } => {
            let config = Config::load(config.as_deref())?;
            let core = server::open_core(&config).await?;
            let report = verify::verify_session(
                &core.pool,
                &core.store,
                &core.signer.public_key_hex(),
                &session,
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for r in &report.recordings {
                    println!(
                        "{:<12} {:>5} entries {:>5} segments {:>3} gaps {:>12} bytes  head {}…  {}",
                        r.source,
                        r.entries,
                        r.media_segments,
                        r.gaps,
                        r.bytes,
                        &r.head_hash.get(..16).unwrap_or(""),
                        if r.intact { "ok" } else { "BROKEN" }
                    );
                }
                for f in &report.failures {
                    println!("  {f}");
                }
                println!("{}", report.verdict);
            }
            Ok(if report.intact {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Verify {
            audit: true,
            config,
            json,
            ..
        } => {
            let config = Config::load(config.as_deref())?;
            let core = server::open_core(&config).await?;
            let report =
                witness::audit::verify::verify(&core.pool, &core.signer.public_key_hex()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for p in &report.problems {
                    println!("problem: {p}");
                }
                println!("{}", report.verdict);
            }
            Ok(if report.intact {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Verify { .. } => {
            anyhow::bail!("verify needs a PACKAGE, --session ID or --audit")
        }
        Command::Export {
            session,
            out,
            format,
            derived_mp4,
            reason,
            exporter,
            config,
        } => {
            let config = Config::load(config.as_deref())?;
            let core = server::open_core(&config).await?;
            let tmp = out.with_extension("partial");
            let file = std::fs::File::create(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            let mut writer = std::io::BufWriter::new(file);
            let started = std::time::Instant::now();
            let mut progress = |done: u64, total: u64| {
                let pct = if total == 0 {
                    100.0
                } else {
                    done as f64 * 100.0 / total as f64
                };
                let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
                let eta = if rate > 0.0 {
                    (total.saturating_sub(done)) as f64 / rate
                } else {
                    0.0
                };
                eprint!(
                    "\rexport {pct:5.1} %  {:.1}/{:.1} MiB  ETA {eta:.0} s   ",
                    done as f64 / 1048576.0,
                    total as f64 / 1048576.0
                );
            };
            let req = export::ExportRequest {
                derived_mp4_dir: derived_mp4.then_some(core.config.export_scratch_dir.as_path()),
                session_id: &session,
                exporter: &exporter,
                reason: &reason,
                address: "cli",
                selection: export::Selection::default(),
            };
            let format = match format.as_deref() {
                Some("zip") => export::Format::Zip,
                Some(_) => export::Format::Tar,
                None => export::Format::for_file_name(&out.to_string_lossy()),
            };
            let summary = export::export_to(
                &core.pool,
                &core.store,
                &core.signer,
                req,
                format,
                &mut writer,
                &mut progress,
            )
            .await;
            eprintln!();
            let summary = match summary {
                Ok(s) => s,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e.into());
                }
            };
            drop(writer);
            std::fs::rename(&tmp, &out)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "package {} written to {} ({} files, {} payload bytes)",
                summary.package_id,
                out.display(),
                summary.files,
                summary.payload_bytes
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { config, rtsp_port } => demo(config, rtsp_port).await,
        Command::Simulate(_) => unreachable!("handled before the runtime starts"),
    }
}

async fn demo(config: Option<PathBuf>, rtsp_port: u16) -> anyhow::Result<ExitCode> {
    let config = Config::load(config.as_deref())?;
    let sim = simulator::SimOptions {
        cameras: 2,
        microphones: 1,
        address: "127.0.0.1".into(),
        port: rtsp_port,
        width: 1280,
        height: 720,
        fps: 25,
        bitrate: 2000,
        audio: simulator::AudioCodec::Aac,
        looped: false,
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let ctx = gst::glib::MainContext::default();
        let _guard = ctx.acquire();
        let started = simulator::start(&sim).map(|_server| {
            let _ = ready_tx.send(Ok(()));
            gst::glib::MainLoop::new(Some(&ctx), false).run();
        });
        if let Err(e) = started {
            let _ = ready_tx.send(Err(e));
        }
    });
    ready_rx.recv().context("simulator thread")??;
    let state = server::start(&config).await?;
    let core = state.recording.clone();
    let name = "演示开标室 Demo bid-opening room";
    let room = match rooms::list(&core.pool)
        .await?
        .into_iter()
        .find(|r| r.name == name)
    {
        Some(r) => r,
        None => {
            let src = |n: &str, path: &str| rooms::Source {
                name: n.into(),
                url: format!("rtsp://127.0.0.1:{rtsp_port}/{path}"),
                media: if path.starts_with("mic") {
                    "audio".into()
                } else {
                    "av".into()
                },
                template: "default".into(),
            };
            rooms::create(
                &core.pool,
                &core.templates,
                rooms::CreateRoom {
                    name: name.into(),
                    kind: "bid_opening".into(),
                    location: "demo".into(),
                    sources: vec![
                        src("cam1", "cam1"),
                        src("cam2", "cam2"),
                        src("mic1", "mic1"),
                    ],
                },
            )
            .await?
        }
    };
    let session =
        match witness::recording::index::live_session_of_room(&core.pool, &room.id).await? {
            Some(s) => s.id,
            None => {
                core.start(
                    &room.id,
                    StartRequest {
                        project_code: "DEMO-2026-001".into(),
                        session_code: "KB-01".into(),
                        kind: "bid_opening".into(),
                        note: "demo recording".into(),
                    },
                )
                .await?
                .summary
                .id
            }
        };
    let base = format!("http://{}", config.http.listen);
    println!(
        "\nWitness demo is running.\n\
         cameras:   rtsp://127.0.0.1:{rtsp_port}/cam1  rtsp://127.0.0.1:{rtsp_port}/cam2  (microphone /mic1)\n\
         room:      {base}/api/v1/rooms/{room}\n\
         session:   {base}/api/v1/sessions/{session}    (recording now)\n\
         stop:      curl -X POST {base}/api/v1/rooms/{room}/stop\n\
         verify:    {base}/api/v1/sessions/{session}/verify   or   witness verify --session {session}\n\
         metrics:   {base}/metrics\n\
         segments are stored under {}\n\
         Ctrl-C stops the server; the session resumes, with a gap, at the next start.\n",
        config.data_dir.join("objects").display(),
        room = room.id,
    );
    server::serve(&config, state).await?;
    Ok(ExitCode::SUCCESS)
}
