//! Changes of a room that the audit trail must describe itself: its cameras' credentials. The
//! entry names the room and each source whose credentials were replaced or removed, never a
//! secret.

use crate::audit::{self, Actor};
use crate::capture::credentials::Credentials;
use crate::capture::rooms::{self, PatchRoom, Room};
use crate::error::CoreError;

use super::Core;

impl Core {
    /// Changes a room (`rooms::patch`); when any source's credentials were set or dropped, the
    /// change is audited here as `room_change` naming those sources. Returns the room and
    /// whether it wrote the audit entry (otherwise the caller's generic entry covers it).
    pub async fn patch_room(
        &self,
        id: &str,
        req: PatchRoom,
        by: &Actor,
    ) -> Result<(Room, bool), CoreError> {
        let patched = rooms::patch(&self.pool, &self.templates, &self.credentials, id, req).await?;
        if patched.credential_changes.is_empty() {
            return Ok((patched.room, false));
        }
        audit::Event::new(by, "room_change")
            .target(&patched.room.id)
            .outcome(audit::Outcome::Result(format!(
                "changed; {}",
                patched.credential_changes.join("; ")
            )))
            .append(&self.pool)
            .await?;
        Ok((patched.room, true))
    }

    /// Replaces (`Some`) or removes (`None`) one source's camera credentials, audited as
    /// `room_credentials` (`room_credentials_remove`) with the source named (target
    /// `room/source`) and the secret left out.
    pub async fn set_source_credentials(
        &self,
        room_id: &str,
        source: &str,
        creds: Option<Credentials>,
        by: &Actor,
    ) -> Result<Room, CoreError> {
        let removing = creds.is_none();
        let room =
            rooms::set_credentials(&self.pool, &self.credentials, room_id, source, creds).await?;
        let action = if removing {
            "room_credentials_remove"
        } else {
            "room_credentials"
        };
        audit::Event::new(by, action)
            .target(format!("{}/{source}", room.id))
            .outcome(audit::Outcome::Result(
                if removing {
                    "credentials removed"
                } else {
                    "credentials replaced"
                }
                .into(),
            ))
            .append(&self.pool)
            .await?;
        tracing::info!(room = %room.id, source, removed = removing, "camera credentials changed");
        Ok(room)
    }
}
