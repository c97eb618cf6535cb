//! Roles and what each may do: one table (`Role::allows`), least privilege, separated duties
//! (等保 三员分立): the system administrator configures rooms, the security administrator manages
//! accounts, the audit administrator reads the audit trail; none of the three sees evidence. The
//! discipline officer reads everything, the audit trail included, and changes nothing. What one
//! account may not do alone, whatever its role, is in `identity::duties`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 系统管理员: rooms, their sources and configuration, probes; no accounts, no evidence, no
    /// audit trail.
    SystemAdministrator,
    /// 安全管理员: accounts, roles, resets (each creation, role change and reset of another
    /// person approved by a second security administrator); no rooms, no evidence, no audit
    /// trail.
    SecurityAdministrator,
    /// 审计管理员: reads the audit trail (the administrators' actions included) and verifies it;
    /// changes nothing, plays no evidence.
    AuditAdministrator,
    /// 见证人员: start and stop room recordings, watch rooms, register projects at the counter.
    WitnessStaff,
    /// 监管人员: replay sessions of the trading categories in their scope.
    Regulator,
    /// 档案管理员: export evidence packages.
    ArchiveClerk,
    /// 纪检监察/审计: read-only over everything, the audit trail included.
    DisciplineOfficer,
}

pub const ROLES: [Role; 7] = [
    Role::SystemAdministrator,
    Role::SecurityAdministrator,
    Role::AuditAdministrator,
    Role::WitnessStaff,
    Role::Regulator,
    Role::ArchiveClerk,
    Role::DisciplineOfficer,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    RoomsRead,
    RoomsManage,
    /// Connect to a room's cameras and report what they send (before a session).
    RoomsProbe,
    RecordingControl,
    SessionsRead,
    /// HLS, segments, MP4 download.
    Replay,
    /// Watch a room that is recording (never an evaluation session).
    LiveView,
    SessionAuditRead,
    Export,
    AuditRead,
    UsersManage,
    /// Place and release legal holds; file objections and complaints.
    Holds,
    /// Report project events that start retention clocks (closed, procurement ended), and decide
    /// another person's correction of one: archive clerks, and the trading system through an
    /// archive clerk's API token scoped to it. Not witness staff, who record the sessions.
    ProjectEvents,
    /// Register projects and their bid sections (at the counter, or the trading system through
    /// an API token scoped to it) and move sections through their lifecycle; closing or
    /// terminating a section also needs `ProjectEvents`, since it may start retention clocks.
    ProjectsRegister,
    /// Propose the lawful destruction of expired, unheld sessions, and carry it out once approved.
    Disposal,
    /// Approve or reject someone else's destruction proposal.
    DisposalApprove,
    /// Book rooms for project sections, move and cancel bookings (with a reason): witness
    /// staff, who run the rooms. Everyone who reads rooms reads bookings.
    Bookings,
}

pub const PERMISSIONS: [Permission; 17] = [
    Permission::Bookings,
    Permission::Disposal,
    Permission::DisposalApprove,
    Permission::Holds,
    Permission::ProjectEvents,
    Permission::ProjectsRegister,
    Permission::RoomsRead,
    Permission::LiveView,
    Permission::RoomsManage,
    Permission::RoomsProbe,
    Permission::RecordingControl,
    Permission::SessionsRead,
    Permission::Replay,
    Permission::SessionAuditRead,
    Permission::Export,
    Permission::AuditRead,
    Permission::UsersManage,
];

impl Role {
    pub fn allows(self, p: Permission) -> bool {
        use Permission::*;
        use Role::*;
        match self {
            SystemAdministrator => matches!(p, RoomsRead | RoomsManage | RoomsProbe),
            SecurityAdministrator => matches!(p, UsersManage),
            AuditAdministrator => matches!(p, AuditRead),
            WitnessStaff => matches!(
                p,
                RoomsRead
                    | RoomsProbe
                    | LiveView
                    | RecordingControl
                    | SessionsRead
                    | ProjectsRegister
                    | Bookings
            ),
            Regulator => matches!(
                p,
                RoomsRead | LiveView | SessionsRead | Replay | Holds | DisposalApprove
            ),
            ArchiveClerk => matches!(
                p,
                RoomsRead
                    | SessionsRead
                    | SessionAuditRead
                    | Export
                    | Holds
                    | ProjectEvents
                    | ProjectsRegister
                    | Disposal
                    | DisposalApprove
            ),
            DisciplineOfficer => matches!(
                p,
                RoomsRead | LiveView | SessionsRead | Replay | SessionAuditRead | AuditRead
            ),
        }
    }

    /// Roles whose interactive login needs a second factor (TOTP): the three administrators and
    /// regulators.
    pub fn needs_totp(self) -> bool {
        matches!(
            self,
            Role::SystemAdministrator
                | Role::SecurityAdministrator
                | Role::AuditAdministrator
                | Role::Regulator
        )
    }

    /// May see confidential (评标) recordings, with a recorded reason.
    pub fn may_see_confidential(self) -> bool {
        matches!(self, Role::Regulator | Role::DisciplineOfficer)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::SystemAdministrator => "system_administrator",
            Role::SecurityAdministrator => "security_administrator",
            Role::AuditAdministrator => "audit_administrator",
            Role::WitnessStaff => "witness_staff",
            Role::Regulator => "regulator",
            Role::ArchiveClerk => "archive_clerk",
            Role::DisciplineOfficer => "discipline_officer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        ROLES.into_iter().find(|r| r.as_str() == s)
    }
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::RoomsRead => "rooms_read",
            Permission::RoomsManage => "rooms_manage",
            Permission::RoomsProbe => "rooms_probe",
            Permission::RecordingControl => "recording_control",
            Permission::SessionsRead => "sessions_read",
            Permission::Replay => "replay",
            Permission::LiveView => "live_view",
            Permission::SessionAuditRead => "session_audit_read",
            Permission::Export => "export",
            Permission::AuditRead => "audit_read",
            Permission::UsersManage => "users_manage",
            Permission::Holds => "holds",
            Permission::ProjectEvents => "project_events",
            Permission::ProjectsRegister => "projects_register",
            Permission::Disposal => "disposal",
            Permission::DisposalApprove => "disposal_approve",
            Permission::Bookings => "bookings",
        }
    }

    pub fn parse(s: &str) -> Option<Permission> {
        PERMISSIONS.into_iter().find(|p| p.as_str() == s)
    }
}
