//! `witness export`: writes a stopped session's evidence package, or a project's (every session,
//! the catalogue, registry, bookings and an audit extract: `--project`), to a tar or zip file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use witness::evidence::export;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, required_unless_present = "project", conflicts_with = "project")]
    session: Option<String>,
    /// A project's package (一项一档): every session of the project (all stopped), its catalogue,
    /// registry and bookings, and an audit extract.
    #[arg(long)]
    project: Option<String>,
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
}

/// Writes to `OUT.partial` and renames it to `OUT` once complete, so that a file by the asked
/// name is always a whole package. The objects are checked as they are written: when one does
/// not match its chain entry (or is missing), the export fails and the partial file, which
/// then holds the payload up to that object, is removed.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let core = super::open_core(args.config.as_deref()).await?;
    let tmp = args.out.with_extension("partial");
    // Read as well as written: stored objects are copied in by the kernel and checked where
    // they landed (`evidence::objects`).
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let writer = std::io::BufWriter::with_capacity(
        witness::store::WRITE_CHUNK,
        witness::store::ChunkedWrites(file),
    );
    let progress = Box::new(progress_printer());
    let by = witness::audit::Actor {
        address: "cli".into(),
        ..witness::audit::Actor::parse(&args.exporter)
    };
    let format = format(args.format.as_deref(), &args.out);
    let summary = match (&args.project, &args.session) {
        (Some(project), _) => witness::project_archive::package::export_to(
            &core,
            witness::project_archive::package::ProjectExport {
                project_code: project,
                by: &by,
                caller: None,
                scope: &witness::identity::caller::Scope::All,
                reason: &args.reason,
                disk: None,
            },
            format,
            writer,
            progress,
        )
        .await
        .map_err(anyhow::Error::from),
        (None, session) => export::export_to(
            &core.pool,
            &core.store,
            &core.signer,
            export::ExportRequest {
                derived_mp4_dir: args
                    .derived_mp4
                    .then_some(core.config.export_scratch_dir.as_path()),
                session_id: session.as_deref().unwrap_or_default(),
                by: &by,
                // The command line acts with the machine's authority (who holds the config and key).
                caller: None,
                disk: None,
                reason: &args.reason,
                selection: export::Selection::default(),
            },
            format,
            writer,
            progress,
        )
        .await
        .map_err(anyhow::Error::from),
    };
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!();
    }
    let summary = match summary {
        Ok((s, writer)) => {
            drop(writer);
            s
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, &args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "package {} written to {} ({} files, {} payload bytes)",
        summary.package_id,
        args.out.display(),
        summary.files,
        summary.payload_bytes
    );
    Ok(ExitCode::SUCCESS)
}

/// `--format`, or else the one the file name implies.
fn format(format: Option<&str>, out: &Path) -> export::Format {
    match format {
        Some("zip") => export::Format::Zip,
        Some(_) => export::Format::Tar,
        None => export::Format::for_file_name(&out.to_string_lossy()),
    }
}

/// Percentage, MiB and time left on one line of stderr, rewritten as bytes are written: on a
/// terminal only (a log or a pipe gets no carriage-return lines), at most ten times a second.
fn progress_printer() -> impl FnMut(u64, u64) + Send {
    use std::io::IsTerminal;
    let started = Instant::now();
    let on_terminal = std::io::stderr().is_terminal();
    let mut shown: Option<Instant> = None;
    move |done: u64, total: u64| {
        let due = shown.is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(100));
        if !on_terminal || !(due || done >= total) {
            return;
        }
        shown = Some(Instant::now());
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
    }
}
