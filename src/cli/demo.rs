//! `witness demo`: the server, the camera simulator and a demo room that starts recording, with
//! accounts and a token to look around with.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use witness::audit::Actor;
use witness::capture::rooms::{self, Room};
use witness::config::Config;
use witness::identity::{self, roles::Role};
use witness::sessions::{Core, StartRequest};
use witness::{http, services, simulator};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    config: Option<PathBuf>,
    /// Simulator port.
    #[arg(long, default_value_t = 8554)]
    rtsp_port: u16,
}

const ROOM_NAME: &str = "演示开标室 Demo bid-opening room";

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    start_simulator(args.rtsp_port)?;
    let state = services::start(&config).await?;
    let core = state.core.clone();
    let room = demo_room(&core, args.rtsp_port).await?;
    let session = live_session(&core, &room.id).await?;
    let accounts = demo_accounts(&core).await?;
    let (_, token) =
        identity::issue_token(&core.pool, "demo-staff", "demo", &[], 1, 1, &demo_actor()).await?;
    print_banner(
        &config,
        args.rtsp_port,
        &room.id,
        &session,
        &accounts,
        &token,
    );
    http::serve(&config, state).await?;
    Ok(ExitCode::SUCCESS)
}

/// Two cameras and a microphone on `127.0.0.1:port`, served from a thread of their own; returns
/// once they are up.
fn start_simulator(port: u16) -> anyhow::Result<()> {
    let sim = simulator::SimOptions {
        cameras: 2,
        microphones: 1,
        address: "127.0.0.1".into(),
        port,
        width: 1280,
        height: 720,
        fps: 25,
        bitrate: 2000,
        audio: simulator::AudioCodec::Aac,
        looped: false,
        clock_offset: 0.0,
        hold_video_while: None,
        hold_audio_while: None,
        hold_keyframes_while: None,
        auth: None,
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
    Ok(())
}

/// The demo room, made on first use with the simulator's cameras and microphone as sources.
async fn demo_room(core: &Core, rtsp_port: u16) -> anyhow::Result<Room> {
    if let Some(room) = rooms::list(&core.pool)
        .await?
        .into_iter()
        .find(|r| r.name == ROOM_NAME)
    {
        return Ok(room);
    }
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
        has_credentials: false,
        credentials: None,
    };
    let room = rooms::create(
        &core.pool,
        &core.templates,
        &core.credentials,
        &core.catalogue,
        rooms::CreateRoom {
            name: ROOM_NAME.into(),
            kind: "bid_opening".into(),
            area: None,
            location: "demo".into(),
            sources: vec![
                src("cam1", "cam1"),
                src("cam2", "cam2"),
                src("mic1", "mic1"),
            ],
        },
    )
    .await?;
    Ok(room)
}

/// The room's recording session: the one under way, or a new one.
async fn live_session(core: &Core, room_id: &str) -> anyhow::Result<String> {
    if let Some(s) = witness::ledger::index::live_session_of_room(&core.pool, room_id).await? {
        return Ok(s.id);
    }
    let started = core
        .start(
            room_id,
            StartRequest {
                project_code: "DEMO-2026-001".into(),
                session_code: "KB-01".into(),
                kind: "bid_opening".into(),
                note: "demo recording".into(),
                category: "construction".into(),
                reason: "demo: recording without a booking".into(),
                booking_id: None,
                witness: None,
            },
            &demo_actor(),
        )
        .await?;
    Ok(started.summary.id)
}

/// Who acts, in the audit trail, for what the demo sets up.
fn demo_actor() -> Actor {
    Actor::local("demo")
}

/// Accounts to look around with, one banner line each. One-time passwords are shown once, here;
/// the first login asks for a new password.
async fn demo_accounts(core: &Core) -> anyhow::Result<String> {
    let mut accounts = String::new();
    for (username, role, what) in [
        (
            "demo-staff",
            Role::WitnessStaff,
            "witness staff: start/stop rooms, watch them",
        ),
        (
            "demo-officer",
            Role::DisciplineOfficer,
            "discipline officer: replay, audit trail",
        ),
    ] {
        let line = match identity::users::by_username(&core.pool, username).await? {
            Some(_) => format!(
                "  {username:<13} {what}  (exists; `witness user reset {username}` for a new password)\n"
            ),
            None => {
                let (_, one_time) = identity::add_user(
                    &core.pool,
                    identity::AddUser {
                        username,
                        display_name: "",
                        role,
                        categories: &[],
                    },
                    &demo_actor(),
                )
                .await?;
                format!("  {username:<13} {what}  one-time password: {one_time}\n")
            }
        };
        accounts.push_str(&line);
    }
    Ok(accounts)
}

/// Where to look: the console and its accounts, the cameras, replay, the API with the demo
/// token (which lets the curl lines work for a day), verification and metrics.
fn print_banner(
    config: &Config,
    rtsp_port: u16,
    room: &str,
    session: &str,
    accounts: &str,
    token: &str,
) {
    let base = format!("http://{}", config.http.listen);
    println!(
        "\nWitness demo is running.\n\
         console:   {base}/   log in as one of:\n{accounts}\
         \x20 admin         security administrator: accounts (one-time password printed at first start)\n\
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
    );
}
