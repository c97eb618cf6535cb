//! Pipeline templates (`pipelines/*.toml`): per camera profile, which GStreamer fragment turns
//! each RTP encoding into a parsed stream, and which muxer cuts segments. Operators add a
//! profile for a new camera vendor by dropping a file, without recompiling.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

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
    /// Element name of the segment muxer, e.g. `mpegtsmux`.
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

impl Templates {
    pub fn load(dir: &Path) -> Result<Templates, TemplateError> {
        let folder_err = |source| TemplateError::Folder {
            path: dir.display().to_string(),
            source,
        };
        let mut by_name = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(folder_err)? {
            let path = entry.map_err(folder_err)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let shown = path.display().to_string();
            let invalid = |message: String| TemplateError::Invalid {
                path: shown.clone(),
                message,
            };
            let text = std::fs::read_to_string(&path).map_err(|e| invalid(e.to_string()))?;
            let mut t: Template = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
            t.name = path
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
                path: dir.display().to_string(),
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
            if gst::ElementFactory::find(&t.muxer).is_none() {
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
}
