//! Changes of a room, audited by the domain with what they changed: each field and each
//! source's URL, media, template and transport before → after, and the sources whose camera
//! credentials were replaced or removed (named, never the secret).

use crate::audit::{self, Actor};
use crate::capture::credentials::Credentials;
use crate::capture::rooms::{self, PatchRoom, Room};
use crate::error::CoreError;

use super::Core;

impl Core {
    /// Changes a room (`rooms::patch`), audited here as `room_change` with the room's values
    /// before → after (`cam1: url: rtsp://a/1 → rtsp://b/1; cam1: credentials replaced`);
    /// credentials only as replaced or removed. A refused change writes nothing here (the
    /// caller's generic entry records the refusal).
    pub async fn patch_room(
        &self,
        id: &str,
        req: PatchRoom,
        by: &Actor,
    ) -> Result<Room, CoreError> {
        let patched = rooms::patch(
            &self.pool,
            &self.templates,
            &self.credentials,
            &self.catalogue,
            id,
            req,
        )
        .await?;
        let mut changes = rooms::describe_change(&patched.before, &patched.room);
        changes.extend(patched.credential_changes);
        audit::Event::new(by, "room_change")
            .target(&patched.room.id)
            .outcome(audit::Outcome::Result(if changes.is_empty() {
                "unchanged".into()
            } else {
                format!("changed; {}", changes.join("; "))
            }))
            .append(&self.pool)
            .await?;
        Ok(patched.room)
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
