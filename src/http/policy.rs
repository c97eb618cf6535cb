//! Every endpoint, once: `POLICY` says each route's method, path, what it needs and its audit
//! action. The router is built from it (`routes.rs`), the access middleware decides by it
//! (`access.rs`), and the RBAC test walks it.

use axum::http::Method;

use crate::identity::roles::Permission;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Access {
    /// No login needed.
    Public,
    /// Any logged-in user, even one who must first change their password or enrol TOTP.
    Account,
    /// A logged-in user whose role (and token scope) has the permission.
    Needs(Permission),
}

pub struct Rule {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    /// The audit action of a generic entry.
    pub action: &'static str,
}

const fn rule(
    method: &'static str,
    path: &'static str,
    access: Access,
    action: &'static str,
) -> Rule {
    Rule {
        method,
        path,
        access,
        action,
    }
}

use Access::{Account, Needs, Public};
use Permission::*;

/// Every endpoint and what it needs. The router is built from it; the RBAC matrix test walks it.
pub const POLICY: &[Rule] = &[
    rule("GET", "/healthz", Public, "health"),
    rule("GET", "/metrics", Public, "metrics"),
    rule("GET", "/api/v1/keys", Public, "keys"),
    rule("GET", "/sessions/{id}", Public, "page_replay"),
    rule("GET", "/", Public, "page_console"),
    rule("GET", "/assets/{name}", Public, "asset"),
    rule("POST", "/api/v1/auth/login", Public, "login"),
    rule("POST", "/api/v1/auth/logout", Account, "logout"),
    rule("GET", "/api/v1/auth/me", Account, "me"),
    rule("POST", "/api/v1/auth/password", Account, "password_change"),
    rule("POST", "/api/v1/auth/totp/setup", Account, "totp_setup"),
    rule("POST", "/api/v1/auth/totp/confirm", Account, "totp_confirm"),
    rule("GET", "/api/v1/tokens", Account, "tokens_list"),
    rule("POST", "/api/v1/tokens", Account, "token_issue"),
    rule("DELETE", "/api/v1/tokens/{id}", Account, "token_revoke"),
    rule("GET", "/api/v1/users", Needs(UsersManage), "users_list"),
    rule("POST", "/api/v1/users", Needs(UsersManage), "user_add"),
    rule(
        "PATCH",
        "/api/v1/users/{id}",
        Needs(UsersManage),
        "user_change",
    ),
    rule(
        "POST",
        "/api/v1/users/{id}/reset",
        Needs(UsersManage),
        "user_reset",
    ),
    rule(
        "GET",
        "/api/v1/user-resets",
        Needs(UsersManage),
        "user_resets_list",
    ),
    rule(
        "POST",
        "/api/v1/user-resets/{id}/approve",
        Needs(UsersManage),
        "user_reset_approve",
    ),
    rule(
        "POST",
        "/api/v1/user-resets/{id}/reject",
        Needs(UsersManage),
        "user_reset_reject",
    ),
    rule(
        "GET",
        "/api/v1/account-changes",
        Needs(UsersManage),
        "account_changes_list",
    ),
    rule(
        "POST",
        "/api/v1/account-changes/{id}/approve",
        Needs(UsersManage),
        "account_change_approve",
    ),
    rule(
        "POST",
        "/api/v1/account-changes/{id}/reject",
        Needs(UsersManage),
        "account_change_reject",
    ),
    rule("GET", "/api/v1/rooms", Needs(RoomsRead), "rooms_list"),
    rule(
        "GET",
        "/api/v1/rooms/status",
        Needs(RoomsRead),
        "rooms_status",
    ),
    rule(
        "POST",
        "/api/v1/rooms/{id}/live",
        Needs(LiveView),
        "live_view",
    ),
    rule(
        "GET",
        "/api/v1/rooms/{id}/live/{source}/index.m3u8",
        Needs(LiveView),
        "live_playlist",
    ),
    rule(
        "GET",
        "/api/v1/rooms/{id}/live/{source}/segments/{file}",
        Needs(LiveView),
        "live_segment",
    ),
    rule("POST", "/api/v1/rooms", Needs(RoomsManage), "room_add"),
    rule("GET", "/api/v1/rooms/{id}", Needs(RoomsRead), "room_view"),
    rule(
        "PATCH",
        "/api/v1/rooms/{id}",
        Needs(RoomsManage),
        "room_change",
    ),
    rule(
        "DELETE",
        "/api/v1/rooms/{id}",
        Needs(RoomsManage),
        "room_remove",
    ),
    rule(
        "PUT",
        "/api/v1/rooms/{id}/sources/{source}/credentials",
        Needs(RoomsManage),
        "room_credentials",
    ),
    rule(
        "DELETE",
        "/api/v1/rooms/{id}/sources/{source}/credentials",
        Needs(RoomsManage),
        "room_credentials_remove",
    ),
    rule(
        "POST",
        "/api/v1/rooms/{id}/probe",
        Needs(RoomsProbe),
        "room_probe",
    ),
    rule(
        "POST",
        "/api/v1/rooms/{id}/start",
        Needs(RecordingControl),
        "room_start",
    ),
    rule(
        "POST",
        "/api/v1/rooms/{id}/stop",
        Needs(RecordingControl),
        "room_stop",
    ),
    rule(
        "GET",
        "/api/v1/templates",
        Needs(RoomsRead),
        "templates_list",
    ),
    rule(
        "GET",
        "/api/v1/sessions",
        Needs(SessionsRead),
        "sessions_list",
    ),
    rule(
        "GET",
        "/api/v1/sessions/{id}",
        Needs(SessionsRead),
        "session_view",
    ),
    rule(
        "GET",
        "/api/v1/sessions/{id}/verify",
        Needs(SessionsRead),
        "session_verify",
    ),
    rule(
        "POST",
        "/api/v1/sessions/{id}/witness-entries",
        Needs(RecordingControl),
        "witness_entry",
    ),
    rule(
        "POST",
        "/api/v1/rooms/{id}/witness-entries",
        Needs(RecordingControl),
        "witness_entry_room",
    ),
    rule(
        "GET",
        "/api/v1/sessions/{id}/witness-record",
        Needs(SessionsRead),
        "witness_record_view",
    ),
    rule(
        "POST",
        "/api/v1/sessions/{id}/witness-record/sign",
        Needs(RecordingControl),
        "witness_record_sign",
    ),
    rule(
        "GET",
        "/api/v1/sessions/{id}/audit",
        Needs(SessionAuditRead),
        "session_audit",
    ),
    rule(
        "GET",
        "/api/v1/sessions/{id}/sources/{source}/index.m3u8",
        Needs(Replay),
        "replay_start",
    ),
    rule(
        "GET",
        "/api/v1/sessions/{id}/sources/{source}/segments/{file}",
        Needs(Replay),
        "segment",
    ),
    rule(
        "GET",
        "/api/v1/sessions/{id}/sources/{source}/download.mp4",
        Needs(Replay),
        "download",
    ),
    rule(
        "POST",
        "/api/v1/sessions/{id}/confidential-access",
        Needs(Replay),
        "confidential_access_request",
    ),
    rule(
        "GET",
        "/api/v1/confidential-access",
        Needs(Replay),
        "confidential_access_list",
    ),
    rule(
        "POST",
        "/api/v1/confidential-access/{id}/approve",
        Needs(Replay),
        "confidential_access_approve",
    ),
    rule(
        "POST",
        "/api/v1/confidential-access/{id}/reject",
        Needs(Replay),
        "confidential_access_reject",
    ),
    rule(
        "POST",
        "/api/v1/sessions/{id}/exports",
        Needs(Export),
        "export_start",
    ),
    rule(
        "GET",
        "/api/v1/exports/{id}",
        Needs(Export),
        "export_status",
    ),
    rule(
        "GET",
        "/api/v1/exports/{id}/download",
        Needs(Export),
        "export_download",
    ),
    rule(
        "GET",
        "/api/v1/retention/policies",
        Needs(SessionsRead),
        "policies_view",
    ),
    rule(
        "GET",
        "/api/v1/retention/candidates",
        Needs(Holds),
        "retention_candidates",
    ),
    rule(
        "GET",
        "/api/v1/retention/dry-run",
        Needs(Holds),
        "retention_dry_run",
    ),
    rule(
        "GET",
        "/api/v1/fixity/reports",
        Needs(SessionAuditRead),
        "fixity_reports",
    ),
    rule("POST", "/api/v1/fixity/run", Needs(Holds), "fixity_run"),
    rule(
        "GET",
        "/api/v1/destructions",
        Needs(Holds),
        "destructions_list",
    ),
    rule(
        "POST",
        "/api/v1/destructions",
        Needs(Disposal),
        "destruction_propose",
    ),
    rule(
        "GET",
        "/api/v1/destructions/{id}",
        Needs(Holds),
        "destruction_view",
    ),
    rule(
        "POST",
        "/api/v1/destructions/{id}/decision",
        Needs(DisposalApprove),
        "destruction_decide",
    ),
    rule(
        "POST",
        "/api/v1/destructions/{id}/execute",
        Needs(Disposal),
        "destruction_execute",
    ),
    rule(
        "GET",
        "/api/v1/destruction-register",
        Needs(SessionsRead),
        "destruction_register",
    ),
    rule(
        "GET",
        "/api/v1/sessions/{id}/retention",
        Needs(SessionsRead),
        "session_retention",
    ),
    rule("GET", "/api/v1/catalogue", Account, "catalogue_view"),
    rule(
        "GET",
        "/api/v1/projects",
        Needs(SessionsRead),
        "projects_list",
    ),
    rule(
        "POST",
        "/api/v1/projects",
        Needs(ProjectsRegister),
        "project_register",
    ),
    rule(
        "GET",
        "/api/v1/projects/{code}",
        Needs(SessionsRead),
        "project_view",
    ),
    rule(
        "GET",
        "/api/v1/projects/{code}/archive",
        Needs(SessionAuditRead),
        "project_archive",
    ),
    rule(
        "POST",
        "/api/v1/projects/{code}/exports",
        Needs(Export),
        "project_export_start",
    ),
    rule(
        "POST",
        "/api/v1/projects/{code}/sections",
        Needs(ProjectsRegister),
        "project_sections_add",
    ),
    rule(
        "POST",
        "/api/v1/projects/{code}/sections/{section}/state",
        Needs(ProjectsRegister),
        "section_state",
    ),
    rule(
        "POST",
        "/api/v1/projects/{code}/events",
        Needs(ProjectEvents),
        "project_event",
    ),
    rule(
        "POST",
        "/api/v1/projects/{code}/events/{id}/decide",
        Needs(ProjectEvents),
        "project_event_decide",
    ),
    rule(
        "POST",
        "/api/v1/projects/{code}/complaints",
        Needs(Holds),
        "complaint_file",
    ),
    rule("GET", "/api/v1/holds", Needs(Holds), "holds_list"),
    rule("POST", "/api/v1/holds", Needs(Holds), "hold_place"),
    rule(
        "POST",
        "/api/v1/holds/{id}/release",
        Needs(Holds),
        "hold_release",
    ),
    rule("GET", "/api/v1/bookings", Needs(RoomsRead), "bookings_list"),
    rule("POST", "/api/v1/bookings", Needs(Bookings), "booking_add"),
    rule(
        "GET",
        "/api/v1/bookings/{id}",
        Needs(RoomsRead),
        "booking_view",
    ),
    rule(
        "PATCH",
        "/api/v1/bookings/{id}",
        Needs(Bookings),
        "booking_change",
    ),
    rule(
        "POST",
        "/api/v1/bookings/{id}/cancel",
        Needs(Bookings),
        "booking_cancel",
    ),
    rule("GET", "/api/v1/audit", Needs(AuditRead), "audit_view"),
    rule(
        "GET",
        "/api/v1/audit/verify",
        Needs(AuditRead),
        "audit_verify",
    ),
];

pub fn find_rule(method: &Method, path: &str) -> Option<&'static Rule> {
    POLICY
        .iter()
        .find(|r| r.path == path && r.method == method.as_str())
}
