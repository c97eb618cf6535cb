//! Every problem of a request at once (standard 5.2.2, 一次性告知): each names its field
//! (`sections[1].code`), a stable code, and says what is wrong in Chinese and in English.
//! Checks collect into `Problems`; nothing is written unless it stays empty.

use serde::Serialize;

use crate::ledger::values::valid_code;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    pub field: String,
    /// `missing`, `too_long`, `invalid_code`, `duplicate`, `exists`, `unknown_category`,
    /// `unknown_method`, `method_not_for_category`, `unknown_user`, `not_staff`, `disabled`,
    /// `unknown_state` …
    pub code: &'static str,
    pub zh: String,
    pub en: String,
}

/// The English sentences of `problems`, for the error's `message` and the audit trail.
pub fn summary(problems: &[Problem]) -> String {
    let each: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.en))
        .collect();
    format!(
        "{} problem{} in the request: {}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        each.join("; ")
    )
}

#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn add(
        &mut self,
        field: impl Into<String>,
        code: &'static str,
        zh: impl Into<String>,
        en: impl Into<String>,
    ) {
        self.0.push(Problem {
            field: field.into(),
            code,
            zh: zh.into(),
            en: en.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A required text of at most `max` characters, without control characters; the trimmed
    /// text when it is good.
    pub fn text(
        &mut self,
        field: &str,
        label_zh: &str,
        value: Option<&str>,
        max: usize,
    ) -> Option<String> {
        match value.map(str::trim) {
            None | Some("") => {
                self.add(
                    field,
                    "missing",
                    format!("请填写{label_zh}"),
                    format!("{field} is required"),
                );
                None
            }
            Some(v) => self.optional_text(field, label_zh, v, max),
        }
    }

    /// An optional text (may be empty) of at most `max` characters, without control characters.
    pub fn optional_text(
        &mut self,
        field: &str,
        label_zh: &str,
        value: &str,
        max: usize,
    ) -> Option<String> {
        let v = value.trim();
        if v.chars().count() > max {
            self.add(
                field,
                "too_long",
                format!("{label_zh}不能超过 {max} 个字符"),
                format!("{field} is longer than {max} characters"),
            );
            return None;
        }
        if v.chars().any(char::is_control) {
            self.add(
                field,
                "invalid_text",
                format!("{label_zh}不能包含控制字符"),
                format!("{field} may not contain control characters"),
            );
            return None;
        }
        Some(v.to_string())
    }

    /// A required code that goes into object keys (`ledger::values::valid_code`).
    pub fn code(&mut self, field: &str, label_zh: &str, value: Option<&str>) -> Option<String> {
        match value {
            None | Some("") => {
                self.add(
                    field,
                    "missing",
                    format!("请填写{label_zh}"),
                    format!("{field} is required"),
                );
                None
            }
            Some(v) if !valid_code(v) => {
                self.add(
                    field,
                    "invalid_code",
                    format!("{label_zh} {v:?} 无效：须以字母或数字开头，仅含字母、数字、点、下划线或连字符，最多 64 个字符"),
                    format!("{field} {v:?} is not valid: a letter or digit, then letters, digits, '.', '_' or '-', at most 64 characters"),
                );
                None
            }
            Some(v) => Some(v.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_kept_and_summarised() {
        let mut p = Problems::default();
        assert_eq!(p.text("name", "项目名称", Some("  "), 10), None);
        assert_eq!(
            p.text("name", "项目名称", Some(" 道路 "), 10),
            Some("道路".into())
        );
        assert_eq!(p.code("project_code", "项目编号", Some("a/b")), None);
        assert_eq!(
            p.optional_text("agent", "代理机构", "x".repeat(11).as_str(), 10),
            None
        );
        let codes: Vec<&str> = p.0.iter().map(|p| p.code).collect();
        assert_eq!(codes, ["missing", "invalid_code", "too_long"]);
        assert!(summary(&p.0).starts_with("3 problems in the request: name: name is required; "));
    }
}
