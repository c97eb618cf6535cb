//! The catalogue (卷内目录) of a project's archive, as it travels in a project package:
//! `data/catalogue.json` (what the verifier checks against the package) and `data/catalogue.html`
//! (the printable page, in Chinese). Built by `project_archive`; checked by `package`.

use serde::{Deserialize, Serialize};

pub const JSON_PATH: &str = "data/catalogue.json";
pub const HTML_PATH: &str = "data/catalogue.html";

/// One numbered item of the catalogue, in archive order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CatalogueItem {
    /// 1, 2, 3 … in archive order.
    pub no: usize,
    /// `registration`, `section`, `booking`, `session`, `recording`, `manifest`,
    /// `witness_record`, `hold`, `export`, `destruction`.
    pub kind: String,
    /// When it happened (RFC 3339).
    pub date: String,
    /// The title, in Chinese (题名).
    pub title: String,
    /// What it names: a project, section, booking, session or hold id, an object key.
    pub reference: String,
    /// Where it is inside a project package (a file, or a folder ending in `/`), when it travels
    /// in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Catalogue {
    pub project_code: String,
    pub items: Vec<CatalogueItem>,
}

impl Catalogue {
    /// Appends an item, numbered next.
    pub fn push(
        &mut self,
        kind: &str,
        date: String,
        title: String,
        reference: String,
        file: Option<String>,
    ) {
        let no = self.items.len() + 1;
        self.items.push(CatalogueItem {
            no,
            kind: kind.into(),
            date,
            title,
            reference,
            file,
        });
    }

    /// The printable page (卷内目录), in Chinese.
    pub fn html(&self, project_name: &str) -> String {
        let rows: String = self
            .items
            .iter()
            .map(|i| {
                format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>\n",
                    i.no,
                    escape(&i.date),
                    escape(&i.title),
                    escape(&i.reference),
                    escape(i.file.as_deref().unwrap_or("")),
                )
            })
            .collect();
        format!(
            "<!doctype html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>卷内目录 {code}</title>\n<style>body{{font-family:sans-serif}}table{{border-collapse:collapse;width:100%}}td,th{{border:1px solid #444;padding:4px 6px;font-size:13px;vertical-align:top}}</style></head>\n<body><h1>卷内目录</h1><p>项目编号：{code}　项目名称：{name}　共 {n} 项</p>\n<table><thead><tr><th>序号</th><th>日期</th><th>题名</th><th>档号/标识</th><th>包内位置</th></tr></thead><tbody>\n{rows}</tbody></table></body></html>\n",
            code = escape(&self.project_code),
            name = escape(project_name),
            n = self.items.len(),
        )
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_numbered_in_order_and_the_page_escapes() {
        let mut c = Catalogue {
            project_code: "ZB-1".into(),
            items: Vec::new(),
        };
        c.push(
            "registration",
            "d".into(),
            "项目登记".into(),
            "ZB-1".into(),
            None,
        );
        c.push("section", "d".into(), "<b>".into(), "BD-01".into(), None);
        assert_eq!(c.items.iter().map(|i| i.no).collect::<Vec<_>>(), vec![1, 2]);
        let html = c.html("名");
        assert!(html.contains("&lt;b&gt;") && html.contains("卷内目录"));
    }
}
