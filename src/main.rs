//! The `witness` command: wiring only.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use witness::capture::rooms;
use witness::config::Config;
use witness::evidence::export;
use witness::evidence::package::verify_package;
use witness::sessions::StartRequest;
use witness::{http, services, simulator};

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
    /// Manage user accounts (also possible over HTTP for administrators).
    User {
        #[command(subcommand)]
        action: UserAction,
        #[arg(long, global = true)]
        config: Option<PathBuf>,
    },
    /// Create the S3 bucket of `[store]` with Object Lock and a default COMPLIANCE retention at
    /// the legal minimum of the storage policies (run once, before the first start).
    StoreInit {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Issue an API token for an integration (e.g. the trading system starting recordings).
    Token {
        /// The user the token acts as.
        #[arg(long)]
        user: String,
        /// A name to recognise it by.
        #[arg(long)]
        name: String,
        /// Permissions (default: all of the user's role), e.g. --scope recording_control.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        #[arg(long, default_value_t = 90)]
        days: i64,
        #[arg(long)]
        config: Option<PathBuf>,
    },
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

#[derive(Subcommand)]
enum UserAction {
    /// Create a user; prints a one-time password to change at first login.
    Add {
        username: String,
        /// administrator, witness_staff, regulator, archive_clerk or discipline_officer.
        #[arg(long)]
        role: String,
        /// Trading categories in a regulator's scope (repeatable).
        #[arg(long = "category")]
        categories: Vec<String>,
        #[arg(long, default_value = "")]
        display_name: String,
    },
    /// A new one-time password (and with --totp, a cleared second factor); sessions end.
    Reset {
        username: String,
        #[arg(long)]
        totp: bool,
    },
    /// Lock a user out: sessions and tokens end at once.
    Disable {
        username: String,
    },
    Enable {
        username: String,
    },
    List,
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

/// The database alone, for account commands: no GStreamer, no store.
async fn open_db(config: Option<&std::path::Path>) -> anyhow::Result<(Config, witness::db::Pool)> {
    let config = Config::load(config)?;
    let pool = witness::db::open(&config.database.url).await?;
    witness::audit::open(&pool).await?;
    Ok((config, pool))
}

async fn user_command(action: UserAction, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    use witness::identity::{self, roles::Role, users};
    let (_, pool) = open_db(config.as_deref()).await?;
    let by = &witness::audit::Actor::local("cli");
    match action {
        UserAction::Add {
            username,
            role,
            categories,
            display_name,
        } => {
            let role = Role::parse(&role).with_context(|| {
                format!(
                    "role {role:?} is not valid, expected one of: {}",
                    identity::roles::ROLES.map(|r| r.as_str()).join(", ")
                )
            })?;
            let (u, one_time) = identity::add_user(
                &pool,
                identity::AddUser {
                    username: &username,
                    display_name: &display_name,
                    role,
                    categories: &categories,
                },
                by,
            )
            .await?;
            println!("user {} ({}) created", u.username, u.role.as_str());
            println!("one-time password: {one_time}");
        }
        UserAction::Reset { username, totp } => {
            let one_time = identity::reset_user(&pool, &username, totp, by).await?;
            println!("one-time password for {username}: {one_time}");
        }
        UserAction::Disable { username } => {
            identity::set_disabled(&pool, &username, true, by).await?;
            println!("{username} disabled; their sessions and tokens have ended");
        }
        UserAction::Enable { username } => {
            identity::set_disabled(&pool, &username, false, by).await?;
            println!("{username} enabled");
        }
        UserAction::List => {
            for u in users::all(&pool).await? {
                println!(
                    "{:<20} {:<20} {:<24} {}{}{}",
                    u.username,
                    u.role.as_str(),
                    u.categories.join(","),
                    if u.totp_enabled { "totp " } else { "" },
                    if u.disabled { "disabled " } else { "" },
                    if u.must_change_password {
                        "one-time-password"
                    } else {
                        ""
                    },
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::User { action, config } => user_command(action, config).await,
        Command::StoreInit { config } => {
            let config = Config::load(config.as_deref())?;
            let witness::config::StoreConfig::S3 { bucket, .. } = &config.store else {
                anyhow::bail!(
                    "[store] is a local folder: Object Lock needs an S3-compatible store"
                );
            };
            let policies = witness::retention::policy::Policies::load(
                &config.retention.policies_dir,
                &config.retention.jurisdiction,
            )?;
            // The shortest minimum any recording rule sets: the floor every object gets at once.
            let months = policies
                .rules
                .iter()
                .filter(|r| {
                    r.record_classes.is_empty()
                        || r.record_classes.iter().any(|c| c.ends_with("_av"))
                })
                .map(|r| r.minimum_months)
                .min()
                .unwrap_or(180);
            let days = (f64::from(months) * 365.25 / 12.0).ceil() as u32;
            witness::worm::create_locked_bucket(&config.store, bucket, days).await?;
            println!(
                "bucket {bucket} created with Object Lock, default COMPLIANCE retention {days} days ({months} months)"
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            user,
            name,
            scopes,
            days,
            config,
        } => {
            use witness::identity::{self, roles::Permission};
            let (config, pool) = open_db(config.as_deref()).await?;
            let scopes = scopes
                .iter()
                .map(|p| {
                    Permission::parse(p).with_context(|| format!("scope {p:?} is not a permission"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let (_, secret) = identity::issue_token(
                &pool,
                &user,
                &name,
                &scopes,
                days,
                config.identity.token_max_days,
                &witness::audit::Actor::local("cli"),
            )
            .await?;
            println!("{secret}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config } => {
            let config = Config::load(config.as_deref())?;
            let state = services::start(&config).await?;
            http::serve(&config, state).await?;
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
                for d in &report.destructions {
                    println!("lawfully destroyed: {d}");
                }
                for d in &report.derived {
                    println!("derived (not evidence, signed): {d}");
                }
                for p in &report.problems {
                    println!("problem: {p}");
                }
                for u in &report.uncovered {
                    println!(
                        "not covered: source {} from {} to {} ({:.1} s, {})",
                        u.source, u.from, u.to, u.seconds, u.problem
                    );
                }
                println!("{}", report.verdict);
            }
            Ok(ExitCode::from(report.status.exit_code() as u8))
        }
        Command::Verify {
            session: Some(session),
            config,
            json,
            ..
        } => {
            let config = Config::load(config.as_deref())?;
            let core = services::open_core(&config).await?;
            let report = witness::sessions::verification::verify_session(
                &core.pool,
                &core.store,
                &core.signer.public_key_hex(),
                &session,
                &witness::audit::Actor::local("cli"),
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
                for u in &report.uncovered {
                    println!(
                        "  not covered: source {} from {} to {} ({:.1} s, {})",
                        u.source, u.from, u.to, u.seconds, u.problem
                    );
                }
                println!("{}", report.verdict);
            }
            Ok(ExitCode::from(report.status.exit_code() as u8))
        }
        Command::Verify {
            audit: true,
            config,
            json,
            ..
        } => {
            let config = Config::load(config.as_deref())?;
            let core = services::open_core(&config).await?;
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
            let core = services::open_core(&config).await?;
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
        clock_offset: 0.0,
        hold_video_while: None,
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
    let state = services::start(&config).await?;
    let core = state.core.clone();
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
                transport: Default::default(),
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
    let session = match witness::ledger::index::live_session_of_room(&core.pool, &room.id).await? {
        Some(s) => s.id,
        None => {
            core.start(
                &room.id,
                StartRequest {
                    project_code: "DEMO-2026-001".into(),
                    session_code: "KB-01".into(),
                    kind: "bid_opening".into(),
                    note: "demo recording".into(),
                    category: "construction".into(),
                },
                &witness::audit::Actor::local("demo"),
            )
            .await?
            .summary
            .id
        }
    };
    let base = format!("http://{}", config.http.listen);
    // Accounts to look around with. One-time passwords are shown once, here; the first login
    // asks for a new password. A token lets the curl lines below work for a day.
    let demo = witness::audit::Actor::local("demo");
    let by = || &demo;
    let mut accounts = String::new();
    for (username, role, what) in [
        (
            "demo-staff",
            witness::identity::roles::Role::WitnessStaff,
            "witness staff: start/stop rooms, watch them",
        ),
        (
            "demo-officer",
            witness::identity::roles::Role::DisciplineOfficer,
            "discipline officer: replay, audit trail",
        ),
    ] {
        let line = match witness::identity::users::by_username(&core.pool, username).await? {
            Some(_) => format!(
                "  {username:<13} {what}  (exists; `witness user reset {username}` for a new password)\n"
            ),
            None => {
                let (_, one_time) = witness::identity::add_user(
                    &core.pool,
                    witness::identity::AddUser {
                        username,
                        display_name: "",
                        role,
                        categories: &[],
                    },
                    by(),
                )
                .await?;
                format!("  {username:<13} {what}  one-time password: {one_time}\n")
            }
        };
        accounts.push_str(&line);
    }
    let (_, token) =
        witness::identity::issue_token(&core.pool, "demo-staff", "demo", &[], 1, 1, by()).await?;
    println!(
        "\nWitness demo is running.\n\
         console:   {base}/   log in as one of:\n{accounts}\
         \x20 admin         administrator: users and rooms (one-time password printed at first start)\n\
         cameras:   rtsp://127.0.0.1:{rtsp_port}/cam1  rtsp://127.0.0.1:{rtsp_port}/cam2  (microphone /mic1)\n\
         replay:    {base}/sessions/{session}   (as demo-officer, once the session is stopped)\n\
         API:       export WITNESS_TOKEN={token}   (demo-staff, valid one day)\n\
         \x20          curl -H \"Authorization: Bearer $WITNESS_TOKEN\" {base}/api/v1/sessions/{session}\n\
         \x20          curl -X POST -H \"Authorization: Bearer $WITNESS_TOKEN\" {base}/api/v1/rooms/{room}/stop\n\
         verify:    witness verify --session {session}\n\
         metrics:   {base}/metrics\n\
         segments are stored under {}\n\
         Ctrl-C stops the server; the session resumes, with a gap, at the next start.\n",
        config.data_dir.join("objects").display(),
        room = room.id,
    );
    http::serve(&config, state).await?;
    Ok(ExitCode::SUCCESS)
}
