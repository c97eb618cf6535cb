//! Lawful destruction: a proposal carrying its appraisal record (鉴定) for sessions that are
//! expired and not held, approval by two people other than the proposer, then execution:
//! every object deleted, a permanent register entry for each (what, hash, rule and basis,
//! approvers, time), and a tombstone appended to each chain, so that verification tells
//! lawful destruction from tampering. Nothing is destroyed by expiry alone. Every step is
//! audited here.
//!
//! Separated duties: nobody destroys alone. The proposer does not approve; two different people
//! approve; an approval does not count when the proposer (or, at execution, the executor)
//! created the approver's account, last set its role or received its one-time password, or when
//! the two approvers' passwords went to the same person (`identity::duties`); and the executor
//! is never the only person involved. Each such refusal is audited (`denied: same_person`,
//! `denied: not_independent`, `denied: sole_actor`).

use serde::Serialize;
use sqlx::Row;

use super::RetentionError;
use super::error::text;
use super::policy::Policies;
use crate::audit::{self, Actor};
use crate::config::StoreConfig;
use crate::db::Pool;
use crate::identity::{duties, users};
use crate::ledger::chain::{self, Entry, EntryKind};
use crate::ledger::decision;
use crate::ledger::index::{self, RecordingRow, SessionRow};
use crate::ledger::manifest::{self, Signer};
use crate::ledger::values::SessionState;
use crate::store::Store;
use crate::time::{now_us, rfc3339};

crate::text_enum! {
    /// An approver's decision on a destruction request.
    pub enum Decision as "decision" {
        Approve = "approve",
        Reject = "reject",
    }
}

impl Decision {
    /// The audit action of the decision.
    fn action(self) -> &'static str {
        match self {
            Decision::Approve => "destruction_approve",
            Decision::Reject => "destruction_reject",
        }
    }
}

crate::text_enum! {
    /// Where a destruction request is: proposed, approved by two people, rejected by one, or
    /// executed (claimed by the run that carries it out).
    pub enum RequestState as "state" {
        Proposed = "proposed",
        Approved = "approved",
        Rejected = "rejected",
        Executed = "executed",
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Approval {
    pub approver: String,
    pub role: String,
    pub decision: Decision,
    pub reason: String,
    pub at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Request {
    pub id: String,
    pub session_ids: Vec<String>,
    pub appraisal_committee: String,
    pub appraisal_conclusion: String,
    pub appraisal_reference: String,
    pub proposed_by: String,
    pub proposed_at: String,
    pub state: RequestState,
    pub approvals: Vec<Approval>,
    pub executed_by: Option<String>,
    pub executed_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegisterEntry {
    pub id: String,
    pub request_id: String,
    pub session_id: String,
    pub project_code: String,
    pub source: String,
    pub seq: i64,
    pub object_key: String,
    pub sha256: String,
    pub bytes: i64,
    pub rule_id: String,
    pub policy_version: String,
    pub basis: String,
    pub approvers: String,
    pub executed_at: String,
}

/// Refuses, as `not_disposable`, a session that is not stopped, is held, or has not expired.
async fn check_disposable(
    pool: &Pool,
    policies: &Policies,
    session_id: &str,
) -> Result<(), RetentionError> {
    let s = index::existing_session(pool, session_id).await?;
    if s.state != SessionState::Stopped {
        return Err(RetentionError::conflict(
            "not_disposable",
            format!("session {session_id} is {}", s.state),
        ));
    }
    let r = super::view(pool, policies, &s).await?;
    if !r.holds.is_empty() {
        return Err(RetentionError::conflict(
            "not_disposable",
            format!(
                "session {session_id} is under a legal hold ({})",
                r.holds[0].reference
            ),
        ));
    }
    if r.state != "expired" {
        return Err(RetentionError::conflict(
            "not_disposable",
            format!(
                "session {session_id} is {} (retain until {}) under rule {}",
                r.state,
                r.retain_until.as_deref().unwrap_or("its clock starts"),
                r.rule.id
            ),
        ));
    }
    Ok(())
}

pub struct Appraisal<'a> {
    pub committee: &'a str,
    pub conclusion: &'a str,
    pub reference: &'a str,
}

/// Proposes the destruction of sessions that are all disposable now, with the appraisal record
/// that justifies it. Audited as `destruction_propose`.
pub async fn propose(
    pool: &Pool,
    policies: &Policies,
    actor: &Actor,
    session_ids: &[String],
    appraisal: Appraisal<'_>,
) -> Result<Request, RetentionError> {
    if session_ids.is_empty() || session_ids.len() > 1000 {
        return Err(RetentionError::invalid("session_ids: 1 to 1000 sessions"));
    }
    for (field, v) in [
        ("appraisal.committee", appraisal.committee),
        ("appraisal.conclusion", appraisal.conclusion),
        ("appraisal.reference", appraisal.reference),
    ] {
        if v.trim().is_empty() || v.chars().count() > 2000 {
            return Err(RetentionError::invalid(format!(
                "{field}: the appraisal record (鉴定) is required, 1 to 2000 characters"
            )));
        }
    }
    for id in session_ids {
        check_disposable(pool, policies, id).await?;
    }
    let id = uuid::Uuid::now_v7().to_string();
    sqlx::query(
        "INSERT INTO destruction_requests (id, session_ids, appraisal_committee, appraisal_conclusion, appraisal_reference, proposed_by, proposed_at, state) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
    )
    .bind(&id)
    .bind(serde_json::to_string(session_ids).unwrap_or_default())
    .bind(appraisal.committee)
    .bind(appraisal.conclusion)
    .bind(appraisal.reference)
    .bind(actor.name())
    .bind(now_us())
    .bind(RequestState::Proposed)
    .execute(pool)
    .await?;
    let proposal = find(pool, &id).await?;
    audit::Event::new(actor, "destruction_propose")
        .target(&proposal.id)
        .reason(format!(
            "{} sessions; appraisal {}: {}",
            proposal.session_ids.len(),
            proposal.appraisal_reference,
            proposal.appraisal_conclusion
        ))
        .append(pool)
        .await?;
    Ok(proposal)
}

pub async fn get(pool: &Pool, id: &str) -> Result<Option<Request>, sqlx::Error> {
    let Some(r) = sqlx::query("SELECT * FROM destruction_requests WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let approvals = sqlx::query(
        "SELECT approver, role, decision, reason, at FROM destruction_approvals WHERE request_id = $1 ORDER BY at",
    )
    .bind(id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|a| {
        Ok(Approval {
            approver: a.try_get("approver")?,
            role: a.try_get("role")?,
            decision: a.try_get("decision")?,
            reason: a.try_get("reason")?,
            at: rfc3339(a.try_get("at")?),
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let sessions: String = r.try_get("session_ids")?;
    Ok(Some(Request {
        id: r.try_get("id")?,
        session_ids: serde_json::from_str(&sessions).unwrap_or_default(),
        appraisal_committee: r.try_get("appraisal_committee")?,
        appraisal_conclusion: r.try_get("appraisal_conclusion")?,
        appraisal_reference: r.try_get("appraisal_reference")?,
        proposed_by: r.try_get("proposed_by")?,
        proposed_at: rfc3339(r.try_get("proposed_at")?),
        state: r.try_get("state")?,
        approvals,
        executed_by: r.try_get("executed_by")?,
        executed_at: r.try_get::<Option<i64>, _>("executed_at")?.map(rfc3339),
    }))
}

pub async fn list(pool: &Pool) -> Result<Vec<Request>, sqlx::Error> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM destruction_requests ORDER BY proposed_at DESC")
            .fetch_all(pool)
            .await?;
    let mut out = Vec::new();
    for id in ids {
        if let Some(r) = get(pool, &id).await? {
            out.push(r);
        }
    }
    Ok(out)
}

/// A request that exists; refused as `destruction_not_found` otherwise.
pub async fn find(pool: &Pool, id: &str) -> Result<Request, RetentionError> {
    get(pool, id).await?.ok_or_else(|| {
        RetentionError::not_found(
            "destruction_not_found",
            format!("destruction request {id:?} not found"),
        )
    })
}

/// An approval or a rejection (`decision` as given) by someone other than the proposer, each
/// person once; two approvals by two different people approve the request, one rejection
/// rejects it. Audited as `destruction_approve` or `destruction_reject`.
pub async fn decide(
    pool: &Pool,
    actor: &Actor,
    id: &str,
    decision: &str,
    reason: &str,
) -> Result<Request, RetentionError> {
    let decision: Decision = decision.parse().map_err(|_| {
        RetentionError::invalid(format!(
            "decision {decision:?} is not valid, expected approve or reject"
        ))
    })?;
    let req = find(pool, id).await?;
    if req.state != RequestState::Proposed {
        return Err(RetentionError::conflict(
            "destruction_decided",
            format!("request {id} is {}", req.state),
        ));
    }
    let action = decision.action();
    if Actor::parse(&req.proposed_by).is_same_person(actor) {
        return Err(refuse(
            pool,
            actor,
            action,
            id,
            "same_person",
            "the proposer cannot approve their own proposal".into(),
        )
        .await);
    }
    if req
        .approvals
        .iter()
        .any(|a| Actor::parse(&a.approver).is_same_person(actor))
    {
        return Err(refuse(
            pool,
            actor,
            action,
            id,
            "same_person",
            "each approver decides once; a second approval needs a second person".into(),
        )
        .await);
    }
    if decision == Decision::Approve {
        let mut others = vec![(req.proposed_by.as_str(), "the proposer")];
        others.extend(
            req.approvals
                .iter()
                .filter(|a| a.decision == Decision::Approve)
                .map(|a| (a.approver.as_str(), "the other approver")),
        );
        if let Err(why) = independent_of(pool, &actor.name(), &others, &req.proposed_by).await? {
            return Err(refuse(pool, actor, action, id, "not_independent", why).await);
        }
    }
    text("reason", reason, 2000)?;
    record_decision(pool, actor, &req, decision, reason).await?;
    audit::Event::new(actor, decision.action())
        .target(id)
        .reason(reason)
        .append(pool)
        .await?;
    find(pool, id).await
}

/// Stores one decision and moves the request on when it settles it.
async fn record_decision(
    pool: &Pool,
    actor: &Actor,
    req: &Request,
    decision: Decision,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO destruction_approvals (request_id, approver, role, decision, reason, at) VALUES ($1,$2,$3,$4,$5,$6)",
    )
    .bind(&req.id)
    .bind(actor.name())
    .bind(actor.role)
    .bind(decision)
    .bind(reason)
    .bind(now_us())
    .execute(pool)
    .await?;
    let approvals = req
        .approvals
        .iter()
        .filter(|a| a.decision == Decision::Approve)
        .count()
        + usize::from(decision == Decision::Approve);
    let state = match decision {
        Decision::Reject => Some(RequestState::Rejected),
        Decision::Approve if approvals >= 2 => Some(RequestState::Approved),
        Decision::Approve => None,
    };
    if let Some(state) = state {
        sqlx::query("UPDATE destruction_requests SET state = $1 WHERE id = $2 AND state = $3")
            .bind(state)
            .bind(&req.id)
            .bind(RequestState::Proposed)
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Carries out an approved request: for each session, still expired and not held, every media
/// object is deleted and registered, and a tombstone closes each chain. Audited as
/// `destruction_execute`, once per session whose objects went. Returns the register entries
/// written.
pub async fn execute(
    pool: &Pool,
    store: &Store,
    signer: &Signer,
    worm: Option<&StoreConfig>,
    policies: &Policies,
    actor: &Actor,
    id: &str,
) -> Result<Vec<RegisterEntry>, RetentionError> {
    let req = approved(pool, id).await?;
    check_not_alone(pool, actor, &req).await?;
    let pending = pending_sessions(pool, policies, &req).await?;
    claim(pool, actor, id).await?;
    let run = Execution {
        pool,
        store,
        signer,
        req: &req,
        executed_by: actor.name().to_string(),
        worm,
        request_id: id,
        approvers: req
            .approvals
            .iter()
            .filter(|a| a.decision == Decision::Approve)
            .map(|a| a.approver.clone())
            .collect(),
    };
    let mut register = Vec::new();
    for session_id in &pending {
        if let Err(e) = run
            .destroy_session(policies, session_id, &mut register)
            .await
        {
            if matches!(e, RetentionError::Store(_)) {
                release_claim(pool, id).await?;
            }
            return Err(e);
        }
    }
    audit_executed(pool, actor, id, &register).await?;
    Ok(register)
}

/// A refusal of the duties rules, audited (`denied: <code>`) and returned as a conflict.
async fn refuse(
    pool: &Pool,
    actor: &Actor,
    action: &str,
    id: &str,
    code: &'static str,
    message: String,
) -> RetentionError {
    if let Err(e) = audit::Event::new(actor, action)
        .target(id)
        .outcome(audit::Outcome::Denied(code.into()))
        .append(pool)
        .await
    {
        return e.into();
    }
    RetentionError::conflict(code, message)
}

/// Whether the approver `approver` (an actor's name) is independent of each of `others` (actor
/// names, with what they are to the request): not one of the accounts they could hold
/// (`duties::independent`), and not an account the proposer created or last set the role of
/// (`duties::not_provisioned_by`). Actors without an account (the host) are nobody here.
async fn independent_of(
    pool: &Pool,
    approver: &str,
    others: &[(&str, &str)],
    proposer: &str,
) -> Result<Result<(), String>, sqlx::Error> {
    let Some(me) = users::by_username(pool, &Actor::parse(approver).person).await? else {
        return Ok(Ok(()));
    };
    for (name, what) in others {
        let person = Actor::parse(name).person;
        if person == me.username {
            continue;
        }
        let Some(them) = users::by_username(pool, &person).await? else {
            continue;
        };
        if let Err(why) = duties::independent(&me, &them) {
            return Ok(Err(format!(
                "an approval counts only from someone independent of {what}: {why}"
            )));
        }
        if (*name == proposer || what.starts_with("the executor"))
            && let Err(why) = duties::not_provisioned_by(&person, &me)
        {
            return Ok(Err(format!(
                "nobody makes the approvers of their own destruction: {why}"
            )));
        }
    }
    Ok(Ok(()))
}

/// At execution: the executor is not the only person involved (at least two others proposed
/// or approved), and each approval is still independent of the proposer, the executor and the
/// other approver (an account changed since counts as it is now). Refusals are audited.
async fn check_not_alone(pool: &Pool, actor: &Actor, req: &Request) -> Result<(), RetentionError> {
    let action = "destruction_execute";
    let approvers: Vec<&str> = req
        .approvals
        .iter()
        .filter(|a| a.decision == Decision::Approve)
        .map(|a| a.approver.as_str())
        .collect();
    let mut others: Vec<String> = approvers
        .iter()
        .chain(std::iter::once(&req.proposed_by.as_str()))
        .map(|n| Actor::parse(n).person)
        .filter(|p| *p != actor.person)
        .collect();
    others.sort();
    others.dedup();
    if others.len() < 2 {
        return Err(refuse(
            pool,
            actor,
            action,
            &req.id,
            "sole_actor",
            format!(
                "{} would be the only person behind this destruction besides {}; it needs a proposer and two approvers other than the executor",
                actor.person,
                others.join(", ")
            ),
        )
        .await);
    }
    let executor = actor.name();
    for (i, a) in approvers.iter().enumerate() {
        let mut against = vec![
            (req.proposed_by.as_str(), "the proposer"),
            (executor.as_str(), "the executor"),
        ];
        against.extend(
            approvers
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, b)| (*b, "the other approver")),
        );
        if let Err(why) = independent_of(pool, a, &against, &req.proposed_by).await? {
            return Err(refuse(pool, actor, action, &req.id, "not_independent", why).await);
        }
    }
    Ok(())
}

/// The request, if it is approved: refused as `destruction_not_found` or
/// `destruction_not_approved`.
async fn approved(pool: &Pool, id: &str) -> Result<Request, RetentionError> {
    let req = find(pool, id).await?;
    if req.state != RequestState::Approved {
        return Err(RetentionError::conflict(
            "destruction_not_approved",
            format!(
                "request {id} is {}: it needs two approvals first",
                req.state
            ),
        ));
    }
    Ok(req)
}

/// The request's sessions still to destroy, each checked disposable again: a hold placed since
/// the approval wins. Sessions a previous, interrupted run finished are skipped (the run is
/// being retried after the store refused something).
async fn pending_sessions(
    pool: &Pool,
    policies: &Policies,
    req: &Request,
) -> Result<Vec<String>, RetentionError> {
    let mut pending = Vec::new();
    for s in &req.session_ids {
        if index::session(pool, s)
            .await?
            .is_some_and(|x| x.state == SessionState::Destroyed)
        {
            continue;
        }
        check_disposable(pool, policies, s).await?;
        pending.push(s.clone());
    }
    Ok(pending)
}

/// Claims an approved request for this run (state `executed`, by `actor`), so that no other run
/// carries it out at the same time: refused as `destruction_decided` when one already does.
async fn claim(pool: &Pool, actor: &Actor, id: &str) -> Result<(), RetentionError> {
    let claimed = sqlx::query(
        "UPDATE destruction_requests SET state = $1, executed_by = $2, executed_at = $3 WHERE id = $4 AND state = $5",
    )
    .bind(RequestState::Executed)
    .bind(actor.name())
    .bind(now_us())
    .bind(id)
    .bind(RequestState::Approved)
    .execute(pool)
    .await?;
    if claimed.rows_affected() != 1 {
        return Err(RetentionError::conflict(
            "destruction_decided",
            format!("request {id} is being executed already"),
        ));
    }
    Ok(())
}

/// Gives the claim back after the store refused a deletion: the request is approved again, and
/// a retry carries on with the sessions not yet destroyed.
async fn release_claim(pool: &Pool, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE destruction_requests SET state = $1, executed_by = NULL, executed_at = NULL WHERE id = $2",
    )
    .bind(RequestState::Approved)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// One `destruction_execute` entry per session in the register: its project, and how many of
/// its objects were destroyed.
async fn audit_executed(
    pool: &Pool,
    actor: &Actor,
    id: &str,
    register: &[RegisterEntry],
) -> Result<(), sqlx::Error> {
    let mut sessions: Vec<&RegisterEntry> = register.iter().collect();
    sessions.dedup_by(|a, b| a.session_id == b.session_id);
    for first in sessions {
        let objects = register
            .iter()
            .filter(|r| r.session_id == first.session_id)
            .count();
        audit::Event::new(actor, "destruction_execute")
            .session(&first.session_id, &first.project_code)
            .target(id)
            .reason(format!("{objects} objects destroyed"))
            .append(pool)
            .await?;
    }
    Ok(())
}

/// One run of an approved request: where its objects are deleted, and what its register
/// entries and tombstones name.
struct Execution<'a> {
    pool: &'a Pool,
    store: &'a Store,
    /// Signs each session's decision record, which its tombstones name.
    signer: &'a Signer,
    req: &'a Request,
    executed_by: String,
    worm: Option<&'a StoreConfig>,
    request_id: &'a str,
    approvers: Vec<String>,
}

/// The rule that lets a session go, as its register entries and tombstones name it.
struct Grounds {
    rule_id: String,
    policy_version: String,
    basis: String,
}

impl Execution<'_> {
    /// Destroys every recording of a session, then marks the session destroyed. Stops at the
    /// first refusal of the store (`RetentionError::Store`), with what did go registered and
    /// tombstoned.
    async fn destroy_session(
        &self,
        policies: &Policies,
        session_id: &str,
        register: &mut Vec<RegisterEntry>,
    ) -> Result<(), RetentionError> {
        let s = index::existing_session(self.pool, session_id).await?;
        let r = super::view(self.pool, policies, &s).await?;
        let grounds = Grounds {
            basis: format!("{} {}", r.rule.basis.law, r.rule.basis.article),
            rule_id: r.rule.id,
            policy_version: r.current_policy_version,
        };
        let recordings = index::recordings(self.pool, &s.id).await?;
        let decision = self.decision_record(&s, &recordings, &grounds).await?;
        for rec in &recordings {
            self.destroy_recording(&s, rec, &grounds, &decision, register)
                .await?;
        }
        index::set_session_state(self.pool, &s.id, SessionState::Destroyed, None, None).await?;
        Ok(())
    }

    /// The session's signed decision record (`ledger::decision`): the request's decision and
    /// the entries of each chain it lets go, stored beside the manifest before anything is
    /// deleted. Returns its SHA-256, which the tombstones name. A run retried after the store
    /// refused something finds the record the first run stored, and keeps it.
    async fn decision_record(
        &self,
        s: &SessionRow,
        recordings: &[RecordingRow],
        grounds: &Grounds,
    ) -> Result<String, RetentionError> {
        let mut doomed = Vec::new();
        for rec in recordings {
            let entries = index::entries(self.pool, &rec.id).await?;
            let already = chain::destroyed_entries(&entries).unwrap_or_default();
            doomed.push(decision::Doomed {
                recording_id: rec.id.clone(),
                source: rec.source_name.clone(),
                seqs: entries
                    .iter()
                    .filter(|e| e.kind == EntryKind::Media && !already.contains(&e.seq))
                    .map(|e| e.seq)
                    .collect(),
            });
        }
        let record = decision::DecisionRecord {
            format: decision::FORMAT.into(),
            request_id: self.request_id.into(),
            session_id: s.id.clone(),
            project_code: s.project_code.clone(),
            rule_id: grounds.rule_id.clone(),
            policy_version: grounds.policy_version.clone(),
            basis: grounds.basis.clone(),
            appraisal_committee: self.req.appraisal_committee.clone(),
            appraisal_conclusion: self.req.appraisal_conclusion.clone(),
            appraisal_reference: self.req.appraisal_reference.clone(),
            proposed_by: self.req.proposed_by.clone(),
            proposed_at: self.req.proposed_at.clone(),
            approvals: self
                .req
                .approvals
                .iter()
                .map(|a| decision::Approval {
                    approver: a.approver.clone(),
                    role: a.role.clone(),
                    decision: a.decision.to_string(),
                    reason: a.reason.clone(),
                    at: a.at.clone(),
                })
                .collect(),
            executed_by: self.executed_by.clone(),
            executed_at: rfc3339(now_us()),
            recordings: doomed,
        };
        let body =
            serde_json::to_vec_pretty(&record).map_err(|e| RetentionError::Store(e.to_string()))?;
        let key = decision::object_key(&s.project_code, &s.id, self.request_id);
        let path = object_store::path::Path::from(key.as_str());
        let store_err = |e: object_store::Error| RetentionError::Store(format!("{key}: {e}"));
        // Signatures first: a record in the store always has its signatures beside it.
        let put = |name: String, bytes: Vec<u8>| async move {
            self.store
                .put(&object_store::path::Path::from(name), bytes.into())
                .await
                .map(|_| ())
        };
        match self.store.get(&path).await {
            Ok(r) => return Ok(decision::digest(&r.bytes().await.map_err(store_err)?)),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_err(e)),
        }
        put(
            manifest::signature_key(&key),
            self.signer.sign_hex(&body).into_bytes(),
        )
        .await
        .map_err(store_err)?;
        if let Some(sm2) = self.signer.sign_sm2_hex(&body) {
            put(manifest::sm2_signature_key(&key), sm2.into_bytes())
                .await
                .map_err(store_err)?;
        }
        let digest = decision::digest(&body);
        put(key.clone(), body).await.map_err(store_err)?;
        Ok(digest)
    }

    /// Deletes and registers each media object of a recording not destroyed yet, then closes
    /// what went with a tombstone, even when the store refused the rest, so that the chain never
    /// shows a lawful deletion as a missing object; the rest can be retried.
    async fn destroy_recording(
        &self,
        s: &SessionRow,
        rec: &RecordingRow,
        grounds: &Grounds,
        decision: &str,
        register: &mut Vec<RegisterEntry>,
    ) -> Result<(), RetentionError> {
        let entries = index::entries(self.pool, &rec.id).await?;
        let already = chain::destroyed_entries(&entries).unwrap_or_default();
        let mut gone: Vec<&Entry> = Vec::new();
        let mut failure = None;
        for e in entries
            .iter()
            .filter(|e| e.kind == EntryKind::Media && !already.contains(&e.seq))
        {
            if let Err(why) = remove(self.store, self.worm, self.pool, &s.id, e).await {
                failure = Some(why);
                break;
            }
            gone.push(e);
            register.push(self.register_object(s, rec, e, grounds).await?);
        }
        self.write_tombstone(rec, &entries, &gone, grounds, decision)
            .await?;
        match failure {
            Some(why) => Err(RetentionError::Store(why)),
            None => Ok(()),
        }
    }

    /// Writes the permanent register entry of one deleted object.
    async fn register_object(
        &self,
        s: &SessionRow,
        rec: &RecordingRow,
        e: &Entry,
        grounds: &Grounds,
    ) -> Result<RegisterEntry, sqlx::Error> {
        let at = now_us();
        let entry = RegisterEntry {
            id: uuid::Uuid::now_v7().to_string(),
            request_id: self.request_id.into(),
            session_id: s.id.clone(),
            project_code: s.project_code.clone(),
            source: rec.source_name.clone(),
            seq: e.seq,
            object_key: e.object_key.clone(),
            sha256: e.sha256.clone(),
            bytes: e.bytes,
            rule_id: grounds.rule_id.clone(),
            policy_version: grounds.policy_version.clone(),
            basis: grounds.basis.clone(),
            approvers: self.approvers.join(", "),
            executed_at: rfc3339(at),
        };
        sqlx::query(
            "INSERT INTO destruction_register (id, request_id, session_id, project_code, recording_id, source, seq, object_key, sha256, bytes, rule_id, policy_version, basis, approvers, executed_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15)",
        )
        .bind(&entry.id)
        .bind(self.request_id)
        .bind(&s.id)
        .bind(&s.project_code)
        .bind(&rec.id)
        .bind(&rec.source_name)
        .bind(e.seq)
        .bind(&e.object_key)
        .bind(&e.sha256)
        .bind(e.bytes)
        .bind(&entry.rule_id)
        .bind(&entry.policy_version)
        .bind(&entry.basis)
        .bind(&entry.approvers)
        .bind(at)
        .execute(self.pool)
        .await?;
        Ok(entry)
    }

    /// Appends to a chain the tombstone of the objects that went (nothing when none did): which
    /// entries, their digest, and the request, rule and approvers that allowed it.
    async fn write_tombstone(
        &self,
        rec: &RecordingRow,
        entries: &[Entry],
        gone: &[&Entry],
        grounds: &Grounds,
        decision: &str,
    ) -> Result<(), sqlx::Error> {
        if gone.is_empty() {
            return Ok(());
        }
        let last = entries.last().expect("a chain has its genesis");
        let seqs: Vec<i64> = gone.iter().map(|e| e.seq).collect();
        let tombstone = Entry {
            recording_id: rec.id.clone(),
            seq: last.seq + 1,
            kind: EntryKind::Tombstone,
            object_key: String::new(),
            wall_start_us: now_us(),
            duration_us: 0,
            bytes: gone.iter().map(|e| e.bytes).sum(),
            sha256: chain::tombstone_digest(gone),
            clock: "server".into(),
            detail: chain::tombstone_detail(
                &seqs,
                self.request_id,
                &grounds.rule_id,
                decision,
                &self.approvers,
            ),
            prev_hash: last.entry_hash.clone(),
            entry_hash: String::new(),
        }
        .seal();
        index::insert_entry(self.pool, &tombstone, None).await
    }
}

/// Deletes one object: a versioned delete on Object Lock storage (which the server refuses while
/// the object is retained or held), a plain delete otherwise.
async fn remove(
    store: &Store,
    worm: Option<&StoreConfig>,
    pool: &Pool,
    session_id: &str,
    e: &Entry,
) -> Result<(), String> {
    match worm {
        Some(cfg) => {
            let version =
                super::worm_sync::version_of(pool, cfg, session_id, &e.object_key).await?;
            crate::worm::delete_version(cfg, &e.object_key, &version)
                .await
                .map_err(|err| err.to_string())
        }
        None => match store
            .delete(&object_store::path::Path::from(e.object_key.as_str()))
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(format!("{}: {err}", e.object_key)),
        },
    }
}

pub async fn register(
    pool: &Pool,
    session_id: Option<&str>,
) -> Result<Vec<RegisterEntry>, sqlx::Error> {
    sqlx::query(
        "SELECT * FROM destruction_register WHERE ($1 = '' OR session_id = $1) ORDER BY executed_at, session_id, source, seq",
    )
    .bind(session_id.unwrap_or(""))
    .fetch_all(pool)
    .await?
    .iter()
    .map(|r| {
        Ok(RegisterEntry {
            id: r.try_get("id")?,
            request_id: r.try_get("request_id")?,
            session_id: r.try_get("session_id")?,
            project_code: r.try_get("project_code")?,
            source: r.try_get("source")?,
            seq: r.try_get("seq")?,
            object_key: r.try_get("object_key")?,
            sha256: r.try_get("sha256")?,
            bytes: r.try_get("bytes")?,
            rule_id: r.try_get("rule_id")?,
            policy_version: r.try_get("policy_version")?,
            basis: r.try_get("basis")?,
            approvers: r.try_get("approvers")?,
            executed_at: rfc3339(r.try_get("executed_at")?),
        })
    })
    .collect()
}
