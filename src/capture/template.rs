//! Pipeline templates (`pipelines/*.toml`): per camera profile, which GStreamer fragment turns
//! each RTP encoding into a parsed stream, and which muxer cuts segments. Operators add a
//! profile for a new camera vendor by dropping a file, without recompiling.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::config::DEFAULT_PIPELINES_DIR;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("pipeline templates folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
    #[error("pipeline template {path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    #[serde(skip)]
    pub name: String,
    pub description: String,
    /// Element name of the segment muxer, e.g. `matroskamux`, or `witness-ts` for MPEG-TS
    /// written by Witness itself (`capture::ts_segments`).
    pub muxer: String,
    /// File extension of segments, e.g. `ts`.
    pub extension: String,
    /// RTP encoding name (upper case) → gst-launch fragment for video.
    #[serde(default)]
    pub video: BTreeMap<String, String>,
    /// RTP encoding name (upper case) → gst-launch fragment for audio.
    #[serde(default)]
    pub audio: BTreeMap<String, String>,
}

impl Template {
    /// The branch for an RTP stream, by SDP media (`video`/`audio`) and encoding name.
    pub fn branch(&self, media: &str, encoding: &str) -> Option<&str> {
        let table = match media {
            "video" => &self.video,
            "audio" => &self.audio,
            _ => return None,
        };
        table
            .get(&encoding.to_ascii_uppercase())
            .map(String::as_str)
    }
}

/// All templates of a folder, by name (file stem).
#[derive(Debug, Clone, Default)]
pub struct Templates {
    by_name: BTreeMap<String, Template>,
}

/// The templates shipped in `pipelines/`, built into the binary so that an installed server
/// starts in any directory. `shipped_templates_are_the_folder` keeps this list and the folder
/// the same.
const SHIPPED: &[(&str, &str)] = &[
    ("default.toml", include_str!("../../pipelines/default.toml")),
    (
        "matroska.toml",
        include_str!("../../pipelines/matroska.toml"),
    ),
];

impl Templates {
    /// The templates of `dir`; when `dir` is the default folder and it does not exist, the
    /// shipped ones. A folder someone configured must exist: a typo does not fall back.
    pub fn load_or_shipped(dir: &Path) -> Result<Templates, TemplateError> {
        if dir == Path::new(DEFAULT_PIPELINES_DIR) && !dir.exists() {
            tracing::info!("pipeline templates: the shipped ones ({DEFAULT_PIPELINES_DIR} absent)");
            return Templates::shipped();
        }
        Templates::load(dir)
    }

    /// The templates built into the binary.
    pub fn shipped() -> Result<Templates, TemplateError> {
        let files = SHIPPED
            .iter()
            .map(|(name, text)| (name.to_string(), text.to_string()));
        Templates::from_files(files, "built-in pipeline templates")
    }

    /// Every `*.toml` of a folder.
    pub fn load(dir: &Path) -> Result<Templates, TemplateError> {
        let folder_err = |source| TemplateError::Folder {
            path: dir.display().to_string(),
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(folder_err)? {
            let path = entry.map_err(folder_err)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| TemplateError::Invalid {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            files.push((path.display().to_string(), text));
        }
        Templates::from_files(files, &dir.display().to_string())
    }

    /// Templates from (file name, text) pairs; the name's stem names the template.
    fn from_files(
        files: impl IntoIterator<Item = (String, String)>,
        origin: &str,
    ) -> Result<Templates, TemplateError> {
        let mut by_name = BTreeMap::new();
        for (shown, text) in files {
            let invalid = |message: String| TemplateError::Invalid {
                path: shown.clone(),
                message,
            };
            let mut t: Template = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
            t.name = Path::new(&shown)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            if t.video.is_empty() && t.audio.is_empty() {
                return Err(invalid("no [video] or [audio] branch".into()));
            }
            if !t.extension.chars().all(|c| c.is_ascii_alphanumeric()) || t.extension.is_empty() {
                return Err(invalid(format!(
                    "extension {:?}: expected letters and digits",
                    t.extension
                )));
            }
            by_name.insert(t.name.clone(), t);
        }
        if by_name.is_empty() {
            return Err(TemplateError::Invalid {
                path: origin.to_string(),
                message: "no *.toml template found".into(),
            });
        }
        Ok(Templates { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Template> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    /// Checks that every element a template names exists in this GStreamer installation.
    pub fn check_elements(&self) -> Result<(), TemplateError> {
        for t in self.by_name.values() {
            let invalid = |message: String| TemplateError::Invalid {
                path: format!("{}.toml", t.name),
                message,
            };
            if t.muxer != crate::capture::ts_segments::MUXER
                && gst::ElementFactory::find(&t.muxer).is_none()
            {
                return Err(invalid(format!("muxer {:?} is not installed", t.muxer)));
            }
            for desc in t.video.values().chain(t.audio.values()) {
                gst::parse::bin_from_description(desc, true)
                    .map_err(|e| invalid(format!("branch {desc:?}: {e}")))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_templates_load_and_cover_g711() {
        let t =
            Templates::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines"))).unwrap();
        let d = t.get("default").unwrap();
        assert_eq!(d.extension, "ts");
        assert!(d.branch("video", "h264").is_some());
        assert!(d.branch("audio", "PCMA").unwrap().contains("avenc_aac"));
        assert!(t.get("matroska").unwrap().branch("audio", "PCMA").is_some());
        gst::init().unwrap();
        t.check_elements().unwrap();
    }

    #[test]
    fn shipped_templates_are_the_folder() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines"));
        let mut on_disk: Vec<(String, String)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        on_disk.sort();
        let shipped: Vec<(String, String)> = SHIPPED
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert_eq!(shipped, on_disk, "add the new template to SHIPPED");
        assert_eq!(
            Templates::shipped().unwrap().names(),
            ["default", "matroska"]
        );
    }

    #[test]
    fn only_the_default_folder_falls_back() {
        let gone = Path::new("/nonexistent/witness-pipelines");
        assert!(matches!(
            Templates::load_or_shipped(gone),
            Err(TemplateError::Folder { .. })
        ));
    }
}
