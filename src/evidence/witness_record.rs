//! The witness record (见证记录) as it travels in an evidence package:
//! `data/witness-record/record.json` (entries, hashes, signature: what the verifier checks
//! against the signed manifest) and `data/witness-record/record.html` (a printable page in
//! Chinese for the file).

use serde::{Deserialize, Serialize};

use crate::db::Pool;
use crate::error::CoreError;
use crate::ledger::index::SessionRow;
use crate::ledger::witness_record::{self as record, Signature, WitnessEntry};
use crate::time::rfc3339;

pub const JSON_PATH: &str = "data/witness-record/record.json";
pub const HTML_PATH: &str = "data/witness-record/record.html";

/// `data/witness-record/record.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PackagedRecord {
    /// `witness-record/1`.
    pub format: String,
    pub session_id: String,
    pub project_code: String,
    pub session_code: String,
    pub room_name: String,
    /// The session's witness (who started it).
    pub witness: Option<String>,
    pub entries: Vec<WitnessEntry>,
    pub signature: Option<Signature>,
    /// The record hash (`docs/chain-format.md`, "Witness record").
    pub sha256: String,
}

/// The session's record, as JSON and as the printable page.
pub async fn files(pool: &Pool, session: &SessionRow) -> Result<(Vec<u8>, Vec<u8>), CoreError> {
    let entries = record::entries(pool, &session.id).await?;
    let signature = record::signature(pool, &session.id).await?;
    let binding = record::binding(&session.id, &entries, signature.as_ref());
    let packaged = PackagedRecord {
        format: "witness-record/1".into(),
        session_id: session.id.clone(),
        project_code: session.project_code.clone(),
        session_code: session.session_code.clone(),
        room_name: session.room_name.clone(),
        witness: session.started_by.clone(),
        entries,
        signature,
        sha256: binding.sha256,
    };
    let json =
        serde_json::to_vec_pretty(&packaged).map_err(|e| CoreError::Internal(e.to_string()))?;
    let html = page(session, &packaged).into_bytes();
    Ok((json, html))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The printable page: project, session, room, times, each entry with its time and kind in
/// Chinese, corrections linked to what they correct, the signer and time, the record's SHA-256.
pub fn page(session: &SessionRow, r: &PackagedRecord) -> String {
    let mut rows = String::new();
    for e in &r.entries {
        let corrects = e
            .corrects
            .as_ref()
            .and_then(|c| r.entries.iter().find(|o| &o.id == c))
            .map(|o| format!("更正第 <a href=\"#e{0}\">{0}</a> 条", o.seq))
            .unwrap_or_default();
        let corrected_by: Vec<String> = r
            .entries
            .iter()
            .filter(|o| o.corrects.as_deref() == Some(e.id.as_str()))
            .map(|o| format!("<a href=\"#e{0}\">第 {0} 条</a>", o.seq))
            .collect();
        let note = if corrected_by.is_empty() {
            corrects
        } else {
            format!("{corrects} 已被{}更正", corrected_by.join("、"))
        };
        rows.push_str(&format!(
            "<tr id=\"e{seq}\"><td>{seq}</td><td>{at}</td><td>{kind}</td><td class=\"text\">{text}</td><td>{note}</td><td>{author}<br><small>{rec}</small></td></tr>\n",
            seq = e.seq,
            at = escape(&rfc3339(e.at_us)),
            kind = e.kind.chinese(),
            text = escape(&e.text),
            author = escape(&e.author),
            rec = escape(&rfc3339(e.recorded_at_us)),
        ));
    }
    if r.entries.is_empty() {
        rows.push_str("<tr><td colspan=\"6\">（无记录）</td></tr>\n");
    }
    let signed = match &r.signature {
        Some(s) => format!(
            "见证人 <b>{}</b> 于 {} 以本人账户签署（{} 条记录）",
            escape(&s.signed_by),
            escape(&rfc3339(s.signed_at_us)),
            s.entries
        ),
        None => "未签署（会话结束时记录未经见证人签署）".into(),
    };
    format!(
        "<!doctype html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>见证记录 {session}</title>\n\
<style>body{{font-family:serif;margin:2em}}table{{border-collapse:collapse;width:100%}}td,th{{border:1px solid #333;padding:4px;vertical-align:top}}td.text{{white-space:pre-wrap}}code{{word-break:break-all}}@media print{{a{{color:inherit}}}}</style></head>\n\
<body><h1>见证记录</h1>\n<table>\n\
<tr><th>项目编号</th><td>{project}</td><th>会话编号</th><td>{code}</td></tr>\n\
<tr><th>会话</th><td>{session}</td><th>场所</th><td>{room}</td></tr>\n\
<tr><th>开始时间</th><td>{start}</td><th>结束时间</th><td>{stop}</td></tr>\n\
<tr><th>见证人</th><td colspan=\"3\">{witness}</td></tr>\n</table>\n\
<h2>记录事项</h2>\n<table>\n<tr><th>序号</th><th>时间</th><th>类别</th><th>内容</th><th>更正</th><th>记录人 / 记录时间</th></tr>\n{rows}</table>\n\
<h2>签署</h2>\n<p>{signed}</p>\n\
<p>记录哈希 SHA-256：<code>{sha}</code></p>\n\
<p><small>本页为 data/witness-record/record.json 的打印版本；核验以 JSON 及服务器签名的会话清单为准（witness verify）。</small></p>\n\
</body></html>\n",
        project = escape(&session.project_code),
        code = escape(&session.session_code),
        session = escape(&session.id),
        room = escape(&session.room_name),
        start = escape(&rfc3339(session.started_at_us)),
        stop = escape(&session.stopped_at_us.map(rfc3339).unwrap_or_default()),
        witness = escape(r.witness.as_deref().unwrap_or("")),
        sha = r.sha256,
    )
}
