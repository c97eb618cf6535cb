//! Legal retention rules as data (`storage-policies/*.toml`, one rule per file, each with its
//! legal basis), validated at start-up, and the choice of the rule that governs a record.
//!
//! A rule matches a record class, trading categories and a jurisdiction; empty lists mean
//! "all". Where several match, the higher `precedence` wins; two rules that could both match
//! the same record with the same precedence are refused at load, as is any rule without its
//! legal basis or one that would keep procurement recordings less than the law's 15 years.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::DEFAULT_POLICIES_DIR;

/// What kind of record a rule governs.
pub const RECORD_CLASSES: [&str; 5] = [
    "bid_opening_av",
    "evaluation_av",
    "other_room_av",
    "announcements",
    "audit_log",
];

crate::text_enum! {
    /// The business event that starts a rule's clock (`clock_starts` in a rule file).
    pub enum ClockStart as "clock_starts" {
        /// The session stopped.
        SessionEnd = "session_end",
        /// The project was closed.
        ProjectClosed = "project_closed",
        /// The procurement ended (or, failing that, the project closed).
        ProcurementEnd = "procurement_end",
        /// The record was made: for a recording, when its session stopped.
        RecordCreated = "record_created",
    }
}

pub const DISPOSITIONS: [&str; 3] = ["review", "transfer_to_archive", "destroy_after_appraisal"];

/// 政府采购法 Art 42: procurement files at least 15 years.
const PROCUREMENT_MINIMUM_MONTHS: u32 = 180;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Basis {
    pub law: String,
    pub article: String,
    /// The quoted text of the provision.
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub record_classes: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    /// `CN` (national) or a province such as `CN-ZJ`, `CN-SH`.
    pub jurisdiction: String,
    pub minimum_months: u32,
    pub clock_starts: ClockStart,
    pub disposition: String,
    #[serde(default)]
    pub precedence: i64,
    pub basis: Basis,
}

impl Rule {
    fn covers(&self, class: &str, category: &str) -> bool {
        (self.record_classes.is_empty() || self.record_classes.iter().any(|c| c == class))
            && (self.categories.is_empty() || self.categories.iter().any(|c| c == category))
    }

    /// Whether some record could match both rules (same jurisdiction in force, overlapping
    /// classes and categories).
    fn overlaps(&self, other: &Rule) -> bool {
        let meet = |a: &[String], b: &[String]| {
            a.is_empty() || b.is_empty() || a.iter().any(|x| b.contains(x))
        };
        meet(&self.record_classes, &other.record_classes)
            && meet(&self.categories, &other.categories)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("storage policies {dir}: {source}")]
    Io { dir: String, source: std::io::Error },
    #[error("storage policy {file}: {message}")]
    Invalid { file: String, message: String },
    #[error("storage policies: {0}")]
    Set(String),
}

/// The policies shipped in `storage-policies/`, built into the binary so that an installed
/// server starts in any directory. `shipped_policies_are_the_folder` keeps the two the same.
const SHIPPED: &[(&str, &str)] = &[
    (
        "audit-log.toml",
        include_str!("../../storage-policies/audit-log.toml"),
    ),
    (
        "default.toml",
        include_str!("../../storage-policies/default.toml"),
    ),
    (
        "procurement-av.toml",
        include_str!("../../storage-policies/procurement-av.toml"),
    ),
    (
        "zhejiang-archives.toml",
        include_str!("../../storage-policies/zhejiang-archives.toml"),
    ),
];

/// The rules in force for one jurisdiction, with a version that changes with any byte of them.
#[derive(Debug, Clone)]
pub struct Policies {
    pub rules: Vec<Rule>,
    /// SHA-256 over the rule files (name and content, in name order), first 16 hex digits.
    pub version: String,
    pub jurisdiction: String,
}

impl Policies {
    /// The policies of `dir`; when `dir` is the default folder and it does not exist, the
    /// shipped ones. A folder someone configured must exist: a typo does not fall back.
    pub fn load_or_shipped(dir: &Path, jurisdiction: &str) -> Result<Policies, PolicyError> {
        if dir == Path::new(DEFAULT_POLICIES_DIR) && !dir.exists() {
            tracing::info!("storage policies: the shipped ones ({DEFAULT_POLICIES_DIR} absent)");
            return Self::shipped(jurisdiction);
        }
        Self::load(dir, jurisdiction)
    }

    /// The policies built into the binary: the same files, so the same version, as the folder.
    pub fn shipped(jurisdiction: &str) -> Result<Policies, PolicyError> {
        let files = SHIPPED
            .iter()
            .map(|(name, text)| (name.to_string(), text.to_string()))
            .collect();
        Self::from_files(&files, jurisdiction)
    }

    /// Loads and validates every `*.toml` in `dir` for `jurisdiction` (rules of `CN` and of the
    /// jurisdiction itself apply).
    pub fn load(dir: &Path, jurisdiction: &str) -> Result<Policies, PolicyError> {
        let io = |source| PolicyError::Io {
            dir: dir.display().to_string(),
            source,
        };
        let mut files = BTreeMap::new();
        for e in std::fs::read_dir(dir).map_err(io)? {
            let p = e.map_err(io)?.path();
            if p.extension().is_some_and(|x| x == "toml") {
                let name = p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string();
                files.insert(name, std::fs::read_to_string(&p).map_err(io)?);
            }
        }
        Self::from_files(&files, jurisdiction)
    }

    pub fn from_files(
        files: &BTreeMap<String, String>,
        jurisdiction: &str,
    ) -> Result<Policies, PolicyError> {
        let mut hash = Sha256::new();
        let mut all = Vec::new();
        for (name, text) in files {
            hash.update(name.as_bytes());
            hash.update([0]);
            hash.update(text.as_bytes());
            hash.update([0]);
            let invalid = |message: String| PolicyError::Invalid {
                file: name.clone(),
                message,
            };
            let rule: Rule = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
            check(&rule).map_err(invalid)?;
            all.push(rule);
        }
        let mut ids = std::collections::BTreeSet::new();
        for r in &all {
            if !ids.insert(r.id.clone()) {
                return Err(PolicyError::Set(format!(
                    "two rules have the id {:?}",
                    r.id
                )));
            }
        }
        let rules: Vec<Rule> = all
            .into_iter()
            .filter(|r| r.jurisdiction == "CN" || r.jurisdiction == jurisdiction)
            .collect();
        for (i, a) in rules.iter().enumerate() {
            for b in &rules[i + 1..] {
                if a.precedence == b.precedence && a.overlaps(b) {
                    return Err(PolicyError::Set(format!(
                        "rules {:?} and {:?} can govern the same records with the same precedence ({}); give one a higher precedence",
                        a.id, b.id, a.precedence
                    )));
                }
            }
        }
        if !rules
            .iter()
            .any(|r| r.record_classes.is_empty() && r.categories.is_empty())
        {
            return Err(PolicyError::Set(
                "no default rule (one with empty record_classes and categories) for what nothing else matches".into(),
            ));
        }
        Ok(Policies {
            rules,
            version: hex::encode(hash.finalize())[..16].to_string(),
            jurisdiction: jurisdiction.to_string(),
        })
    }

    /// The rule that governs a record of `class` in trading `category`.
    pub fn governing(&self, class: &str, category: &str) -> &Rule {
        self.rules
            .iter()
            .filter(|r| r.covers(class, category))
            .max_by_key(|r| r.precedence)
            .expect("validated: a default rule covers everything")
    }
}

fn check(r: &Rule) -> Result<(), String> {
    let id_ok = !r.id.is_empty()
        && r.id.len() <= 64
        && r.id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !id_ok {
        return Err(format!("id {:?}: 1 to 64 of a-z, 0-9, '-', '_'", r.id));
    }
    if r.title.trim().is_empty() {
        return Err("title is empty".into());
    }
    for c in &r.record_classes {
        if !RECORD_CLASSES.contains(&c.as_str()) {
            return Err(format!(
                "record class {c:?} is unknown, expected one of: {}",
                RECORD_CLASSES.join(", ")
            ));
        }
    }
    for c in &r.categories {
        if c.parse::<crate::ledger::values::Category>().is_err() {
            return Err(format!(
                "trading category {c:?} is unknown, expected one of: {}",
                crate::ledger::values::Category::names()
            ));
        }
    }
    let j = &r.jurisdiction;
    if !(j == "CN"
        || (j.len() == 5 && j.starts_with("CN-") && j[3..].chars().all(|c| c.is_ascii_uppercase())))
    {
        return Err(format!("jurisdiction {j:?}: CN or CN-XX (e.g. CN-ZJ)"));
    }
    if !DISPOSITIONS.contains(&r.disposition.as_str()) {
        return Err(format!(
            "disposition {:?} is unknown, expected one of: {}",
            r.disposition,
            DISPOSITIONS.join(", ")
        ));
    }
    if r.minimum_months == 0 || r.minimum_months > 12 * 200 {
        return Err(format!("minimum_months {}: 1 to 2400", r.minimum_months));
    }
    for (field, v) in [
        ("basis.law", &r.basis.law),
        ("basis.article", &r.basis.article),
        ("basis.text", &r.basis.text),
    ] {
        if v.trim().is_empty() {
            return Err(format!(
                "{field} is missing: every rule quotes its legal basis"
            ));
        }
    }
    check_procurement_minimum(r)
}

/// A rule that could govern procurement recordings keeps them at least the law's 15 years.
fn check_procurement_minimum(r: &Rule) -> Result<(), String> {
    let governs_procurement_av = (r.categories.is_empty()
        || r.categories.iter().any(|c| c == "procurement"))
        && (r.record_classes.is_empty()
            || r.record_classes
                .iter()
                .any(|c| c == "bid_opening_av" || c == "evaluation_av"));
    if governs_procurement_av && r.minimum_months < PROCUREMENT_MINIMUM_MONTHS {
        return Err(format!(
            "minimum_months {} would keep government procurement recordings less than the 15 years of 政府采购法 Art 42",
            r.minimum_months
        ));
    }
    Ok(())
}

/// The record class of a session's recordings, from its kind.
pub fn record_class_of_session(kind: &str) -> &'static str {
    match kind {
        "bid_opening" => "bid_opening_av",
        "evaluation" => "evaluation_av",
        _ => "other_room_av",
    }
}

/// The policy files shipped in `storage-policies/`, by file name (for tests).
#[cfg(test)]
pub(crate) fn shipped_files() -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("storage-policies");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_policies_are_the_folder() {
        let built_in: BTreeMap<String, String> = SHIPPED
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert_eq!(
            built_in,
            shipped_files(),
            "add the new policy file to SHIPPED"
        );
        let from_folder = Policies::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("storage-policies"),
            "CN-ZJ",
        )
        .unwrap();
        assert_eq!(
            Policies::shipped("CN-ZJ").unwrap().version,
            from_folder.version
        );
        assert!(matches!(
            Policies::load_or_shipped(Path::new("/nonexistent/witness-policies"), "CN-ZJ"),
            Err(PolicyError::Io { .. })
        ));
    }

    #[test]
    fn shipped_rules_load_and_match() {
        let zj = Policies::from_files(&shipped_files(), "CN-ZJ").unwrap();
        let cn = Policies::from_files(&shipped_files(), "CN-SH").unwrap();
        // (class, category) → rule id, in Zhejiang and elsewhere.
        for (class, category, in_zj, elsewhere) in [
            (
                "bid_opening_av",
                "procurement",
                "procurement-av",
                "procurement-av",
            ),
            (
                "evaluation_av",
                "procurement",
                "procurement-av",
                "procurement-av",
            ),
            (
                "bid_opening_av",
                "construction",
                "zhejiang-archives",
                "default",
            ),
            ("other_room_av", "land", "zhejiang-archives", "default"),
            ("audit_log", "other", "audit-log", "audit-log"),
        ] {
            assert_eq!(
                zj.governing(class, category).id,
                in_zj,
                "{class} {category} in CN-ZJ"
            );
            assert_eq!(
                cn.governing(class, category).id,
                elsewhere,
                "{class} {category} in CN-SH"
            );
        }
        assert_eq!(zj.version.len(), 16);
        assert_ne!(zj.version, {
            let mut f = shipped_files();
            f.get_mut("default.toml").unwrap().push('\n');
            Policies::from_files(&f, "CN-ZJ").unwrap().version
        });
    }

    #[test]
    fn hostile_and_wrong_rules_are_refused_with_clear_errors() {
        let with = |name: &str, text: &str| {
            let mut f = shipped_files();
            f.insert(name.into(), text.into());
            Policies::from_files(&f, "CN-ZJ")
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        let base = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("storage-policies/procurement-av.toml"),
        )
        .unwrap();
        let short = base
            .replace("id = \"procurement-av\"", "id = \"short\"")
            .replace("minimum_months = 180", "minimum_months = 36")
            .replace("precedence = 100", "precedence = 200");
        assert!(
            with("short.toml", &short).contains("less than the 15 years"),
            "{}",
            with("short.toml", &short)
        );
        let no_basis = base
            .replace("id = \"procurement-av\"", "id = \"x\"")
            .replace("precedence = 100", "precedence = 300");
        let no_basis = no_basis[..no_basis.find("[basis]").unwrap()].to_string()
            + "[basis]\nlaw = \"x\"\narticle = \"1\"\ntext = \"\"\n";
        assert!(with("x.toml", &no_basis).contains("basis.text is missing"));
        let unknown = base
            .replace("id = \"procurement-av\"", "id = \"y\"")
            .replace("\"evaluation_av\"]", "\"tapes\"]");
        assert!(with("y.toml", &unknown).contains("record class \"tapes\" is unknown"));
        let clock = base
            .replace("id = \"procurement-av\"", "id = \"c\"")
            .replace("\"procurement_end\"", "\"whenever\"");
        assert!(
            with("c.toml", &clock)
                .contains("clock_starts \"whenever\" is not valid, expected one of: session_end"),
            "{}",
            with("c.toml", &clock)
        );
        let overlap = base.replace("id = \"procurement-av\"", "id = \"twin\"");
        assert!(with("twin.toml", &overlap).contains("same precedence"));
        assert!(with("z.toml", "id = 'z'\n[basis]\n").contains("z.toml"));
        assert!(with("bad.toml", "this is not toml").contains("bad.toml"));
        let mut no_default = shipped_files();
        no_default.remove("default.toml");
        assert!(
            Policies::from_files(&no_default, "CN")
                .unwrap_err()
                .to_string()
                .contains("no default rule")
        );
    }
}
