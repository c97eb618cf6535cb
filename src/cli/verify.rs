//! `witness verify`: checks a session in the store, an evidence package offline, or the audit
//! trail, and prints the report (text or JSON) with its verdict as the exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;
use witness::audit::verify::AuditReport;
use witness::evidence::package::{PackageReport, verify_package};
use witness::ledger::keys::{self, TrustedKeys};
use witness::ledger::timestamp::CaBundle;
use witness::ledger::verify::{self, UncoveredView};

#[derive(clap::Args)]
pub struct Args {
    /// An evidence package (tar or unpacked folder): checked offline, no server or database.
    package: Option<PathBuf>,
    #[arg(long, conflicts_with = "package")]
    session: Option<String>,
    /// Check the audit trail's hash chain and signed checkpoints (needs the database).
    #[arg(long, conflicts_with_all = ["package", "session"])]
    audit: bool,
    /// With a package: a server public key (Ed25519: 64 hex digits; SM2: 130 hex digits, 04…)
    /// or fingerprint (32 hex digits) you trust; repeatable. The package is INTACT only if every
    /// key that signed it (Ed25519, and SM2 when present) is one you trust.
    #[arg(long, requires = "package")]
    public_key: Vec<String>,
    /// With a package: a file of trusted public keys or fingerprints, one per line, `#` comments;
    /// repeatable. Without --public-key or --trust, the default trust files are read:
    /// $XDG_CONFIG_HOME/witness/trusted-keys (~/.config/witness/trusted-keys) and
    /// /etc/witness/trusted-keys.
    #[arg(long, requires = "package")]
    trust: Vec<PathBuf>,
    /// With a package: the PEM bundle of CA certificates a timestamp token's TSA must chain to.
    /// Without it, the first of $XDG_CONFIG_HOME/witness/tsa-ca.pem (~/.config/witness/tsa-ca.pem)
    /// and /etc/witness/tsa-ca.pem that exists; with none, the token's imprint and signature are
    /// checked but not who signed it (said in the report).
    #[arg(long, requires = "package")]
    tsa_ca: Option<PathBuf>,
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the full report as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(package) = &args.package {
        let report = verify_package(package, &trusted_keys(&args)?, tsa_ca(&args)?.as_ref())?;
        print(&report, args.json)
    } else if let Some(session) = &args.session {
        let report = verify_session(&args, session).await?;
        print(&report, args.json)
    } else if args.audit {
        let core = super::open_core(args.config.as_deref()).await?;
        let report = witness::audit::verify::verify(
            &core.pool,
            &core.signer.all_public_keys(),
            core.timestamps.tsa.as_ref().map(|t| &t.ca),
        )
        .await?;
        print(&report, args.json)
    } else {
        anyhow::bail!("verify needs a PACKAGE, --session ID or --audit")
    }
}

/// The keys the user trusts: those given on the command line, else the default trust files.
fn trusted_keys(args: &Args) -> anyhow::Result<TrustedKeys> {
    let mut trusted = TrustedKeys::default();
    for k in &args.public_key {
        trusted.add(k, "--public-key")?;
    }
    if !args.public_key.is_empty() {
        trusted.sources.push("--public-key".into());
    }
    for f in &args.trust {
        trusted.add_file(f)?;
    }
    if args.public_key.is_empty() && args.trust.is_empty() {
        let env = |name| std::env::var(name).ok();
        for f in
            keys::default_trust_files(env("XDG_CONFIG_HOME").as_deref(), env("HOME").as_deref())
        {
            if f.exists() {
                trusted.add_file(&f)?;
            }
        }
    }
    Ok(trusted)
}

/// The CA bundle timestamp tokens are checked against: `--tsa-ca`, else the first default file
/// that exists, else none.
fn tsa_ca(args: &Args) -> anyhow::Result<Option<CaBundle>> {
    let env = |name| std::env::var(name).ok();
    let file = match &args.tsa_ca {
        Some(f) => Some(f.clone()),
        None => {
            keys::default_tsa_ca_files(env("XDG_CONFIG_HOME").as_deref(), env("HOME").as_deref())
                .into_iter()
                .find(|f| f.exists())
        }
    };
    file.map(|f| CaBundle::load(&f).map_err(|e| anyhow::anyhow!("--tsa-ca: {e}")))
        .transpose()
}

/// Verifies a stored session (an access to evidence like any other: audited).
async fn verify_session(args: &Args, session: &str) -> anyhow::Result<verify::Report> {
    let core = super::open_core(args.config.as_deref()).await?;
    Ok(witness::sessions::verification::verify_session(
        &core.pool,
        &core.store,
        &core.signer.all_public_keys(),
        session,
        &super::local_actor(),
        None,
        core.timestamps.tsa.as_ref().map(|t| &t.ca),
    )
    .await?)
}

/// A verification report as `witness verify` prints it.
trait Printed: Serialize {
    /// The report for people, ending with the verdict.
    fn print_text(&self);
    fn exit_code(&self) -> ExitCode;
}

/// Prints any report, as JSON with `--json`, and returns the exit code of its verdict.
fn print(report: &impl Printed, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        report.print_text();
    }
    Ok(report.exit_code())
}

fn ok_or_broken(ok: bool) -> &'static str {
    if ok { "ok" } else { "BROKEN" }
}

fn not_covered(u: &UncoveredView) -> String {
    format!(
        "not covered: source {} from {} to {} ({:.1} s, {})",
        u.source, u.from, u.to, u.seconds, u.problem
    )
}

impl Printed for PackageReport {
    fn print_text(&self) {
        for seg in &self.segments {
            println!(
                "{:<10} seq {:>6}  {:<40} {}",
                seg.source,
                seg.seq,
                seg.file,
                ok_or_broken(seg.ok)
            );
        }
        for g in &self.gaps {
            println!("gap: {g}");
        }
        for d in &self.destructions {
            println!("lawfully destroyed: {d}");
        }
        if self.checkpoints > 0 {
            println!(
                "{} chain checkpoints signed while recording hold",
                self.checkpoints
            );
        }
        for d in &self.derived {
            println!("derived (not evidence, signed): {d}");
        }
        for p in &self.problems {
            println!("problem: {p}");
        }
        for u in &self.uncovered {
            println!("{}", not_covered(u));
        }
        for k in &self.signed_by {
            let trust = if k.trusted { "trusted" } else { "NOT TRUSTED" };
            println!("signed by key {} ({trust})", k.fingerprint);
        }
        if let Some(t) = &self.timestamp {
            println!("{}", t.note);
        }
        if let Some(t) = &self.checkpoint_timestamps {
            println!("{}", t.note);
        }
        if let Some(w) = &self.witness_record {
            println!("{w}");
        }
        // A project package: one line per session, then the catalogue.
        for s in &self.sessions {
            println!("session {}: {}", s.session_id, s.verdict);
        }
        if let Some(c) = &self.catalogue {
            println!("{c}");
        }
        println!("{}", self.verdict);
    }

    fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.status.exit_code() as u8)
    }
}

impl Printed for verify::Report {
    fn print_text(&self) {
        for r in &self.recordings {
            println!(
                "{:<12} {:>5} entries {:>5} segments {:>3} gaps {:>12} bytes  head {}…  {}",
                r.source,
                r.entries,
                r.media_segments,
                r.gaps,
                r.bytes,
                &r.head_hash.get(..16).unwrap_or(""),
                ok_or_broken(r.intact)
            );
        }
        for f in &self.failures {
            println!("  {f}");
        }
        for u in &self.uncovered {
            println!("  {}", not_covered(u));
        }
        let checkpoints: usize = self.recordings.iter().map(|r| r.checkpoints).sum();
        if checkpoints > 0 {
            println!(
                "  {checkpoints} chain checkpoints, {} timestamped",
                self.recordings
                    .iter()
                    .map(|r| r.timestamped_checkpoints)
                    .sum::<usize>()
            );
        }
        if let Some(t) = self.timestamp.as_ref().filter(|t| t.status == "pending") {
            println!(
                "  timestamp token: {} (the TSA has not answered yet)",
                t.status
            );
        }
        if let Some(w) = &self.witness_record {
            println!("  {w}");
        }
        println!("{}", self.verdict);
    }

    fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.status.exit_code() as u8)
    }
}

impl Printed for AuditReport {
    fn print_text(&self) {
        for p in &self.problems {
            println!("problem: {p}");
        }
        println!("{}", self.verdict);
    }

    fn exit_code(&self) -> ExitCode {
        if self.intact {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    }
}
