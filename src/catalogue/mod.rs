//! The trading catalogue as data: trading categories (交易类别) and trading methods (交易方式)
//! from `catalogue/categories.toml` and `catalogue/methods.toml`, built into the binary and
//! replaced by the folder `[catalogue] dir` when it exists. Loaded once per process with the
//! configuration (`Config::load` installs it); `current()` is what every edge validates against.
//! A centre adds its own category or method by editing the folder, without code. The same
//! folder holds the room kinds and booking activities (`rooms`).

pub mod rooms;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

/// The catalogue folder nobody configured: when absent, the shipped files are used.
pub const DEFAULT_CATALOGUE_DIR: &str = "./catalogue";

/// Categories that stored sessions, the shipped storage policies and older clients name: a
/// catalogue must keep them.
pub const REQUIRED_CATEGORIES: [&str; 5] = [
    "construction",
    "procurement",
    "land",
    "state_assets",
    "other",
];

const SHIPPED_CATEGORIES: &str = include_str!("../../catalogue/categories.toml");
const SHIPPED_METHODS: &str = include_str!("../../catalogue/methods.toml");

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CategoryEntry {
    pub id: String,
    pub zh: String,
    pub en: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MethodEntry {
    pub id: String,
    pub zh: String,
    pub en: String,
    /// The categories the method applies to; empty = all.
    #[serde(default)]
    pub categories: Vec<String>,
}

impl MethodEntry {
    pub fn applies_to(&self, category: &str) -> bool {
        self.categories.is_empty() || self.categories.iter().any(|c| c == category)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CategoriesFile {
    #[serde(default)]
    category: Vec<CategoryEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MethodsFile {
    #[serde(default)]
    method: Vec<MethodEntry>,
}

/// Categories and methods, in file order.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Catalogue {
    pub categories: Vec<CategoryEntry>,
    pub methods: Vec<MethodEntry>,
}

#[derive(Debug, thiserror::Error)]
#[error("catalogue {file}: {message}")]
pub struct CatalogueError {
    pub file: String,
    pub message: String,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Catalogue {
    /// The files built into the binary.
    pub fn shipped() -> Catalogue {
        Catalogue::parse("catalogue (built in)", SHIPPED_CATEGORIES, SHIPPED_METHODS)
            .expect("the shipped catalogue is valid (catalogue_tests)")
    }

    /// The folder `dir`; the shipped files when `dir` is the default folder and it is absent.
    pub fn load_or_shipped(dir: &Path) -> Result<Catalogue, CatalogueError> {
        if dir == Path::new(DEFAULT_CATALOGUE_DIR) && !dir.exists() {
            return Ok(Catalogue::shipped());
        }
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|e| CatalogueError {
                file: path.display().to_string(),
                message: e.to_string(),
            })
        };
        let categories = read("categories.toml")?;
        let methods = read("methods.toml")?;
        Catalogue::parse(&dir.display().to_string(), &categories, &methods)
    }

    /// Parses and checks both files (ids, names, required categories, methods' categories).
    pub fn parse(dir: &str, categories: &str, methods: &str) -> Result<Catalogue, CatalogueError> {
        let err = |file: &str, message: String| CatalogueError {
            file: format!("{dir}/{file}"),
            message,
        };
        let c: CategoriesFile =
            toml::from_str(categories).map_err(|e| err("categories.toml", e.to_string()))?;
        let m: MethodsFile =
            toml::from_str(methods).map_err(|e| err("methods.toml", e.to_string()))?;
        let mut seen = BTreeSet::new();
        for e in &c.category {
            if !valid_id(&e.id) {
                return Err(err(
                    "categories.toml",
                    format!("id {:?}: 1 to 32 of a-z, 0-9, _", e.id),
                ));
            }
            if !seen.insert(e.id.as_str()) {
                return Err(err(
                    "categories.toml",
                    format!("id {:?} appears twice", e.id),
                ));
            }
            if e.zh.trim().is_empty() || e.en.trim().is_empty() {
                return Err(err(
                    "categories.toml",
                    format!("category {:?} needs zh and en names", e.id),
                ));
            }
        }
        for r in REQUIRED_CATEGORIES {
            if !seen.contains(r) {
                return Err(err(
                    "categories.toml",
                    format!(
                        "category {r:?} is missing: {} must stay (stored sessions and the shipped storage policies use them)",
                        REQUIRED_CATEGORIES.join(", ")
                    ),
                ));
            }
        }
        let mut methods_seen = BTreeSet::new();
        for e in &m.method {
            if !valid_id(&e.id) {
                return Err(err(
                    "methods.toml",
                    format!("id {:?}: 1 to 32 of a-z, 0-9, _", e.id),
                ));
            }
            if !methods_seen.insert(e.id.as_str()) {
                return Err(err("methods.toml", format!("id {:?} appears twice", e.id)));
            }
            if e.zh.trim().is_empty() || e.en.trim().is_empty() {
                return Err(err(
                    "methods.toml",
                    format!("method {:?} needs zh and en names", e.id),
                ));
            }
            if let Some(bad) = e.categories.iter().find(|c| !seen.contains(c.as_str())) {
                return Err(err(
                    "methods.toml",
                    format!(
                        "method {:?}: category {bad:?} is not in categories.toml",
                        e.id
                    ),
                ));
            }
        }
        if m.method.is_empty() {
            return Err(err("methods.toml", "no [[method]] entries".into()));
        }
        Ok(Catalogue {
            categories: c.category,
            methods: m.method,
        })
    }

    pub fn category(&self, id: &str) -> Option<&CategoryEntry> {
        self.categories.iter().find(|c| c.id == id)
    }

    pub fn method(&self, id: &str) -> Option<&MethodEntry> {
        self.methods.iter().find(|m| m.id == id)
    }

    /// The category ids, comma-separated, for messages.
    pub fn category_ids(&self) -> String {
        self.categories
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The method ids, comma-separated, for messages.
    pub fn method_ids(&self) -> String {
        self.methods
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

static INSTALLED: OnceLock<Arc<Catalogue>> = OnceLock::new();

/// Makes `catalogue` this process's catalogue. The first installation wins (a process loads its
/// configuration once); returns false when another one was already in place.
pub fn install(catalogue: Catalogue) -> bool {
    INSTALLED.set(Arc::new(catalogue)).is_ok()
}

/// This process's catalogue: the installed one, else the shipped one.
pub fn current() -> Arc<Catalogue> {
    INSTALLED
        .get_or_init(|| Arc::new(Catalogue::shipped()))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalogue_is_the_folder_and_covers_section_3_1() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("catalogue");
        assert_eq!(
            Catalogue::load_or_shipped(&dir).unwrap(),
            Catalogue::shipped()
        );
        let c = Catalogue::shipped();
        for zh in [
            "工程建设项目招标投标",
            "土地使用权和矿业权出让",
            "国有产权交易",
            "政府采购",
            "医药采购",
            "机电设备国际招标",
            "农村集体产权交易",
            "无形资产交易",
            "碳排放权交易",
            "用能权交易",
            "其他",
        ] {
            assert!(c.categories.iter().any(|e| e.zh == zh), "{zh}");
        }
        assert!(c.categories.iter().any(|e| e.zh.contains("罚没")));
        for zh in [
            "公开招标",
            "邀请招标",
            "竞争性谈判",
            "竞争性磋商",
            "询价",
            "拍卖",
            "挂牌",
        ] {
            assert!(c.methods.iter().any(|e| e.zh == zh), "{zh}");
        }
        assert!(c.method("auction").unwrap().applies_to("land"));
        assert!(!c.method("auction").unwrap().applies_to("construction"));
        assert!(c.method("other").unwrap().applies_to("forest"));
    }

    #[test]
    fn a_bad_catalogue_is_refused_naming_the_problem() {
        let methods = "[[method]]\nid = \"x\"\nzh = \"x\"\nen = \"x\"\n";
        let required: String = REQUIRED_CATEGORIES
            .iter()
            .map(|c| format!("[[category]]\nid = \"{c}\"\nzh = \"z\"\nen = \"e\"\n"))
            .collect();
        assert!(Catalogue::parse("d", &required, methods).is_ok());
        let e = Catalogue::parse("d", "", methods).unwrap_err();
        assert!(e.to_string().contains("\"construction\" is missing"), "{e}");
        let twice = format!("{required}[[category]]\nid = \"land\"\nzh = \"z\"\nen = \"e\"\n");
        let e = Catalogue::parse("d", &twice, methods).unwrap_err();
        assert!(e.to_string().contains("appears twice"), "{e}");
        let bad = "[[method]]\nid = \"x\"\nzh = \"x\"\nen = \"x\"\ncategories = [\"nope\"]\n";
        let e = Catalogue::parse("d", &required, bad).unwrap_err();
        assert!(
            e.to_string().contains("\"nope\" is not in categories.toml"),
            "{e}"
        );
    }
}
