//! Browser pages served by the binary itself: the HTML shells and the assets that `build.rs`
//! bundled from `web/` (hls.js and the pages' scripts). The pages talk to `/api/v1` like any
//! other client; nothing here reads the database.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};

use crate::http::{ApiError, AppState};

const REPLAY_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/web/replay.js"));
const CONSOLE_JS: &str = include_str!(concat!(env!("OUT_DIR"), "/web/console.js"));
const WITNESS_CSS: &str = include_str!(concat!(env!("OUT_DIR"), "/web/witness.css"));

/// hls.js needs blob: for its worker and for Media Source buffers; nothing else leaves 'self'.
/// No referrer: replay URLs of confidential sessions carry the stated reason.
const PAGE_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'self'; media-src 'self' blob:; worker-src 'self' blob:; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-cache"),
];

/// This resource's handlers, by the action of their rule in `policy::POLICY` (which alone
/// says their method, path and access).
pub(super) fn endpoint(action: &str, method: MethodFilter) -> Option<MethodRouter<AppState>> {
    Some(match action {
        "page_replay" => on(method, replay_page),
        "page_console" => on(method, console_page),
        "asset" => on(method, asset),
        _ => return None,
    })
}

async fn replay_page(Path(id): Path<String>) -> Response {
    page(replay_html(&id))
}

fn replay_html(id: &str) -> String {
    // The script reads the session id from the address and loads everything through the API,
    // so an unknown id is reported on the page with the API's own message. The session's view
    // without its segments (what the players start from) is preloaded while the script is
    // fetched and compiled: the script's own `fetch` of the same address takes that answer.
    let preload = if !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        format!(
            "<link rel=\"preload\" href=\"/api/v1/sessions/{id}?segments=none\" as=\"fetch\" crossorigin>\n"
        )
    } else {
        String::new()
    };
    shell_with("回放 Replay", "replay.js", "", &preload)
}

/// The staff console: log in, rooms, sessions, users, audit trail.
async fn console_page() -> Response {
    page(shell(
        "Witness 见证录像",
        "console.js",
        "<header class=\"app\"><h1>Witness 见证录像</h1><nav></nav></header>\n",
    ))
}

fn page(html: String) -> Response {
    let mut res = Html(html).into_response();
    for (k, v) in PAGE_HEADERS {
        res.headers_mut().insert(k, HeaderValue::from_static(v));
    }
    res
}

fn shell(title: &str, script: &str, header: &str) -> String {
    shell_with(title, script, header, "")
}

/// The page's HTML; `head` (already HTML) goes at the end of its head.
fn shell_with(title: &str, script: &str, header: &str, head: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n\
<link rel=\"icon\" href=\"data:,\">\n<link rel=\"stylesheet\" href=\"/assets/witness.css\">\n<script defer src=\"/assets/{script}\"></script>\n{head}\
</head>\n<body>\n{header}<div id=\"messages\"></div>\n<main></main>\n\
<noscript>此页面需要 JavaScript。This page needs JavaScript.</noscript>\n</body>\n</html>\n"
    )
}

async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    let (body, content_type) = match name.as_str() {
        "replay.js" => (REPLAY_JS, "text/javascript; charset=utf-8"),
        "console.js" => (CONSOLE_JS, "text/javascript; charset=utf-8"),
        "witness.css" => (WITNESS_CSS, "text/css; charset=utf-8"),
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no asset {name:?}"),
            ));
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_page_preloads_its_session_only_for_an_id_that_is_safe_in_html() {
        let id = "01a22ccc-6e53-7556-85f0-c60c71e25c36";
        assert!(replay_html(id).contains(&format!(
            "<link rel=\"preload\" href=\"/api/v1/sessions/{id}?segments=none\" as=\"fetch\" crossorigin>"
        )));
        for hostile in ["\"><script>alert(1)</script>", "a b", "x/../../users", ""] {
            let html = replay_html(hostile);
            assert!(!html.contains("preload"), "{hostile:?}: {html}");
            assert!(!html.contains("<script>alert"), "{html}");
        }
    }
}
