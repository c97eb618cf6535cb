//! Verifying a stored session is an access to evidence like any other: the check itself is the
//! ledger's (`ledger::verify`); who asked, and what it found, go into the audit trail. The HTTP
//! API and `witness verify --session` both come through here.

use crate::audit::{self, Actor, Outcome};
use crate::db::Pool;
use crate::error::CoreError;
use crate::ledger::verify::{self, Report};
use crate::store::Store;
use crate::workload::{Work, Workload};

/// Verifies session `id` against the server's keys (current and retired, `Signer::all_public_keys`) and records the verdict. The server bounds
/// how many run at once (`workload`); the command line runs its own.
pub async fn verify_session(
    pool: &Pool,
    store: &Store,
    keys: &[String],
    id: &str,
    by: &Actor,
    workload: Option<&Workload>,
    tsa_ca: Option<&crate::ledger::timestamp::CaBundle>,
) -> Result<Report, CoreError> {
    let _permit = workload
        .map(|w| w.admit(Work::Verify, &by.person))
        .transpose()?;
    let report = verify::verify_session(pool, store, keys, id, tsa_ca).await?;
    audit::Event::new(by, "session_verify")
        .session(&report.session_id, &report.project_code)
        .target(&report.verdict)
        .outcome(Outcome::Result(report.status.as_str().to_ascii_lowercase()))
        .append(pool)
        .await?;
    Ok(report)
}
