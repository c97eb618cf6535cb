//! Room kinds and booking activities as data (`catalogue/room-kinds.toml`,
//! `catalogue/activities.toml`): built into the binary, replaced file by file by those of
//! `[catalogue] dir` when that folder holds them. Each kind says its default area
//! (public, or confidential: the evaluation area, 6.2.3.2); each activity the session kind its
//! recording gets.

use std::path::Path;

use serde::{Deserialize, Serialize};

crate::text_enum! {
    /// Where a room lies: `public`, or `confidential` (behind the evaluation area's access
    /// control). A session started in a confidential room is confidential.
    pub enum Area as "area" {
        Public = "public",
        Confidential = "confidential",
    }
}

const SHIPPED_KINDS: &str = include_str!("../../catalogue/room-kinds.toml");
const SHIPPED_ACTIVITIES: &str = include_str!("../../catalogue/activities.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomKind {
    pub id: String,
    pub zh: String,
    pub en: String,
    /// The area of a new room of this kind, unless its creator says otherwise.
    pub area: Area,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activity {
    pub id: String,
    pub zh: String,
    pub en: String,
    /// The session kind of its recording (`ledger::values::SessionKind`).
    pub session_kind: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KindsFile {
    kind: Vec<RoomKind>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivitiesFile {
    activity: Vec<Activity>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("catalogue {file}: {message}")]
    Invalid { file: String, message: String },
}

/// The room kinds and activities in force.
#[derive(Debug, Clone, Serialize)]
pub struct Catalogue {
    pub room_kinds: Vec<RoomKind>,
    pub activities: Vec<Activity>,
}

impl Catalogue {
    /// The files of `dir` where present (each file on its own), else the shipped ones.
    pub fn load_or_shipped(dir: &Path) -> Result<Catalogue, CatalogueError> {
        let read = |name: &str, shipped: &str| -> Result<(String, String), CatalogueError> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok((path.display().to_string(), text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Ok((format!("{name} (shipped)"), shipped.to_string()))
                }
                Err(e) => Err(CatalogueError::Invalid {
                    file: path.display().to_string(),
                    message: e.to_string(),
                }),
            }
        };
        let (kinds_file, kinds) = read("room-kinds.toml", SHIPPED_KINDS)?;
        let (activities_file, activities) = read("activities.toml", SHIPPED_ACTIVITIES)?;
        Self::parse(&kinds_file, &kinds, &activities_file, &activities)
    }

    /// The catalogue built into the binary.
    pub fn shipped() -> Catalogue {
        Self::parse(
            "room-kinds.toml",
            SHIPPED_KINDS,
            "activities.toml",
            SHIPPED_ACTIVITIES,
        )
        .expect("the shipped catalogue is valid (unit test)")
    }

    fn parse(
        kinds_file: &str,
        kinds: &str,
        activities_file: &str,
        activities: &str,
    ) -> Result<Catalogue, CatalogueError> {
        let bad = |file: &str, message: String| CatalogueError::Invalid {
            file: file.to_string(),
            message,
        };
        let k: KindsFile = toml::from_str(kinds).map_err(|e| bad(kinds_file, e.to_string()))?;
        let a: ActivitiesFile =
            toml::from_str(activities).map_err(|e| bad(activities_file, e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for kind in &k.kind {
            if !valid_id(&kind.id) || !seen.insert(kind.id.clone()) {
                return Err(bad(
                    kinds_file,
                    format!("kind id {:?}: expected a unique [a-z0-9_]{{1,32}}", kind.id),
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for act in &a.activity {
            if !valid_id(&act.id) || !seen.insert(act.id.clone()) {
                return Err(bad(
                    activities_file,
                    format!(
                        "activity id {:?}: expected a unique [a-z0-9_]{{1,32}}",
                        act.id
                    ),
                ));
            }
        }
        if k.kind.is_empty() || a.activity.is_empty() {
            return Err(bad(kinds_file, "at least one kind and one activity".into()));
        }
        Ok(Catalogue {
            room_kinds: k.kind,
            activities: a.activity,
        })
    }

    pub fn kind(&self, id: &str) -> Option<&RoomKind> {
        self.room_kinds.iter().find(|k| k.id == id)
    }

    pub fn activity(&self, id: &str) -> Option<&Activity> {
        self.activities.iter().find(|a| a.id == id)
    }

    pub fn kind_ids(&self) -> String {
        self.room_kinds
            .iter()
            .map(|k| k.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn activity_ids(&self) -> String {
        self.activities
            .iter()
            .map(|a| a.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_catalogue_is_the_folder_and_follows_the_standard() {
        let c = Catalogue::shipped();
        let folder =
            Catalogue::load_or_shipped(&Path::new(env!("CARGO_MANIFEST_DIR")).join("catalogue"))
                .unwrap();
        assert_eq!(c.kind_ids(), folder.kind_ids());
        assert_eq!(c.activity_ids(), folder.activity_ids());
        for (kind, area) in [
            ("bid_opening", Area::Public),
            ("evaluation", Area::Confidential),
            ("negotiation", Area::Confidential),
            ("auction", Area::Public),
            ("expert_draw", Area::Public),
        ] {
            assert_eq!(c.kind(kind).unwrap().area, area, "{kind}");
        }
        for a in &c.activities {
            assert!(
                [
                    "bid_opening",
                    "evaluation",
                    "negotiation",
                    "auction",
                    "other"
                ]
                .contains(&a.session_kind.as_str()),
                "{}: session kind {}",
                a.id,
                a.session_kind
            );
        }
    }

    #[test]
    fn a_bad_file_is_named() {
        let e = Catalogue::parse(
            "k.toml",
            "[[kind]]\nid = \"X\"\nzh = \"\"\nen = \"\"\narea = \"public\"\n",
            "a.toml",
            SHIPPED_ACTIVITIES,
        )
        .unwrap_err();
        assert!(e.to_string().contains("k.toml"), "{e}");
        let e = Catalogue::parse(
            "k.toml",
            SHIPPED_KINDS.replace("\"public\"", "\"open\"").as_str(),
            "a.toml",
            SHIPPED_ACTIVITIES,
        )
        .unwrap_err();
        assert!(e.to_string().contains("area"), "{e}");
    }
}
