//! Projects (issue 15, standard 5.2): registered at the counter by witness staff or by the
//! trading system's integration token, every problem of a request reported at once in Chinese
//! and English, trading categories and methods as data (a centre's own category accepted
//! without code), bid sections through their lifecycle (refused transitions named, audited,
//! guarded in the database), the last section's end starting the retention clock, and regulators
//! seeing only the projects of their categories.

use serde_json::{Value, json};

use crate::harness::*;
use crate::rbac::unreachable_room;

/// A valid registration of `code` with sections S1 and S2.
fn project(code: &str, category: &str, method: &str) -> Value {
    json!({
        "project_code": code,
        "name": "城东道路改造工程",
        "category": category,
        "method": method,
        "tenderer": "某市交通局",
        "agent": "某招标代理有限公司",
        "service_person": "t-witness-staff",
        "sections": [
            {"code": "S1", "name": "一标段"},
            {"code": "S2", "name": "二标段"},
        ],
    })
}

async fn with_token(
    server: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = server
        .http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            server.url(path),
        )
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn audit(server: &Server, action: &str) -> Vec<Value> {
    server
        .ok("GET", &format!("/api/v1/audit?action={action}"), None)
        .await["entries"]
        .as_array()
        .unwrap()
        .clone()
}

/// The trading system: an archive clerk account's token scoped to registering projects and
/// reporting project events.
fn trading_system(server: &Server) -> String {
    server.cli(&["user", "add", "t-trading", "--role", "archive_clerk"]);
    server
        .cli(&[
            "token",
            "--user",
            "t-trading",
            "--name",
            "jyxt",
            "--days",
            "1",
            "--scope",
            "projects_register",
            "--scope",
            "project_events",
        ])
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn staff_and_the_trading_system_register_projects_and_others_may_not() {
    let server = Server::start().await;

    // At the counter: witness staff.
    let (status, p) = server
        .call(
            "POST",
            "/api/v1/projects",
            Some(project("ZB-2026-001", "construction", "open_tender")),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(p["project_code"], "ZB-2026-001");
    assert_eq!(p["category_zh"], "工程建设项目招标投标");
    assert_eq!(p["method_zh"], "公开招标");
    assert_eq!(p["service_person"], "t-witness-staff");
    assert_eq!(p["registered_by"], "t-witness-staff/token:tests");
    assert_eq!(p["ended"], false);
    let sections = p["sections"].as_array().unwrap();
    assert_eq!(sections.len(), 2);
    assert!(sections.iter().all(|s| s["state"] == "registered"
        && s["history"].as_array().unwrap().len() == 1
        && s["history"][0]["to"] == "registered"));

    // By the trading system's integration token.
    let trading = trading_system(&server);
    let (status, p) = with_token(
        &server,
        &trading,
        "POST",
        "/api/v1/projects",
        Some(project(
            "CG-2026-007",
            "procurement",
            "competitive_consultation",
        )),
    )
    .await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(p["registered_by"], "t-trading/token:jyxt");

    // The same code again: 409, nothing changed.
    let (status, b) = server
        .call(
            "POST",
            "/api/v1/projects",
            Some(project("ZB-2026-001", "land", "auction")),
        )
        .await;
    assert_eq!(status, 409, "{b}");
    assert_eq!(b["error"]["code"], "project_exists");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ZB-2026-001")
    );
    let again = server.ok("GET", "/api/v1/projects/ZB-2026-001", None).await;
    assert_eq!(again["category"], "construction");

    // Audited, once per registration, with what was registered.
    let entries = audit(&server, "project_register").await;
    let ok: Vec<&Value> = entries
        .iter()
        .filter(|e| e["outcome"] == "allowed")
        .collect();
    assert_eq!(ok.len(), 2, "{entries:?}");
    assert!(ok.iter().any(|e| {
        e["project_code"] == "ZB-2026-001"
            && e["reason"]
                .as_str()
                .unwrap()
                .contains("category construction, method open_tender")
    }));

    // The list: newest first, filtered by category and section state, paginated.
    let all = server.ok("GET", "/api/v1/projects", None).await;
    let codes: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["project_code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["CG-2026-007", "ZB-2026-001"]);
    let procurement = server
        .ok("GET", "/api/v1/projects?category=procurement", None)
        .await;
    assert_eq!(procurement.as_array().unwrap().len(), 1);
    assert_eq!(procurement[0]["project_code"], "CG-2026-007");
    let page = server
        .ok("GET", "/api/v1/projects?limit=1&offset=1", None)
        .await;
    assert_eq!(page[0]["project_code"], "ZB-2026-001");
    let (status, b) = server
        .call("GET", "/api/v1/projects?category=forestry&state=open", None)
        .await;
    assert_eq!(status, 422, "{b}");
    let fields: Vec<&str> = b["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["category", "state"]);

    // Roles that may not register: 403, audited.
    for role in [
        "system_administrator",
        "security_administrator",
        "audit_administrator",
        "regulator",
        "discipline_officer",
    ] {
        let (status, b) = server
            .call_as(
                Some(role),
                "POST",
                "/api/v1/projects",
                Some(project("ZB-X", "construction", "open_tender")),
            )
            .await;
        assert_eq!(
            (status, b["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{role}: {b}"
        );
    }
    // A clerk's token scoped to project events alone may not register either.
    let events_only = server
        .cli(&[
            "token",
            "--user",
            "t-trading",
            "--name",
            "events",
            "--days",
            "1",
            "--scope",
            "project_events",
        ])
        .trim()
        .to_string();
    let (status, _) = with_token(
        &server,
        &events_only,
        "POST",
        "/api/v1/projects",
        Some(project("ZB-Y", "construction", "open_tender")),
    )
    .await;
    assert_eq!(status, 403);
    let denied = audit(&server, "project_register").await;
    assert_eq!(
        denied
            .iter()
            .filter(|e| e["outcome"] == "denied: forbidden")
            .count(),
        6,
        "{denied:?}"
    );
    assert_eq!(
        server
            .ok("GET", "/api/v1/projects", None)
            .await
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_problem_of_a_registration_is_reported_at_once_in_chinese_and_english() {
    let server = Server::start().await;
    let (status, b) = server
        .call(
            "POST",
            "/api/v1/projects",
            Some(json!({
                "project_code": "ZB/2026",
                "category": "forestry",
                "method": "lottery",
                "agent": "代理",
                "service_person": "nobody",
                "sections": [
                    {"code": "S1", "name": "一标段"},
                    {"code": "S1", "name": "重复"},
                    {"code": "-x"},
                ],
            })),
        )
        .await;
    assert_eq!(status, 422, "{b}");
    assert_eq!(b["error"]["code"], "invalid_project");
    let problems = b["error"]["problems"].as_array().unwrap();
    let got: Vec<(&str, &str)> = problems
        .iter()
        .map(|p| (p["field"].as_str().unwrap(), p["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("project_code", "invalid_code"),
            ("name", "missing"),
            ("category", "unknown_category"),
            ("method", "unknown_method"),
            ("tenderer", "missing"),
            ("service_person", "unknown_user"),
            ("sections[1].code", "duplicate"),
            ("sections[2].code", "invalid_code"),
            ("sections[2].name", "missing"),
        ],
        "{b}"
    );
    for p in problems {
        let zh = p["zh"].as_str().unwrap();
        let en = p["en"].as_str().unwrap();
        assert!(
            zh.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
            "{p}"
        );
        assert!(en.is_ascii() && !en.is_empty(), "{p}");
    }
    // The unknown category is named, with the known ones.
    let category = &problems[2];
    let en = category["en"].as_str().unwrap();
    assert!(en.contains("\"forestry\""), "{en}");
    assert!(
        en.contains("construction, land, state_assets, procurement, medicine"),
        "{en}"
    );
    assert!(category["zh"].as_str().unwrap().contains("forestry"));
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("9 problems in the request")
    );
    // Nothing half-written.
    assert_eq!(server.ok("GET", "/api/v1/projects", None).await, json!([]));

    // A method that does not apply to the category, and a service person who is not staff.
    let mut p = project("TD-1", "land", "open_tender");
    p["service_person"] = json!("t-regulator");
    let (status, b) = server.call("POST", "/api/v1/projects", Some(p)).await;
    assert_eq!(status, 422, "{b}");
    let got: Vec<(&str, &str)> = b["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["field"].as_str().unwrap(), p["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("method", "method_not_for_category"),
            ("service_person", "not_staff")
        ]
    );
    assert!(
        b["error"]["problems"][0]["zh"]
            .as_str()
            .unwrap()
            .contains("不适用于交易类别“土地使用权和矿业权出让”")
    );

    // No sections at all is a problem too.
    let mut p = project("TD-2", "land", "auction");
    p["sections"] = json!([]);
    let (status, b) = server.call("POST", "/api/v1/projects", Some(p)).await;
    assert_eq!(status, 422);
    assert_eq!(b["error"]["problems"][0]["field"], "sections");

    // The catalogue the form offers.
    let c = server.ok("GET", "/api/v1/catalogue", None).await;
    assert_eq!(c["categories"].as_array().unwrap().len(), 12);
    assert!(
        c["methods"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["zh"] == "竞争性磋商")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_category_added_to_the_catalogue_folder_works_everywhere_without_code() {
    // A centre's own catalogue: the shipped one plus 林权交易, to which 挂牌 applies.
    let folder = tempfile::tempdir().unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("catalogue");
    let categories = std::fs::read_to_string(shipped.join("categories.toml")).unwrap()
        + "\n[[category]]\nid = \"forest_rights\"\nzh = \"林权交易\"\nen = \"Forest rights trading\"\n";
    std::fs::write(folder.path().join("categories.toml"), categories).unwrap();
    let methods = std::fs::read_to_string(shipped.join("methods.toml"))
        .unwrap()
        .replace(
            "categories = [\"land\", \"state_assets\", \"rural_collective\", \"intangible_assets\", \"carbon_emissions\"",
            "categories = [\"forest_rights\", \"land\", \"state_assets\", \"rural_collective\", \"intangible_assets\", \"carbon_emissions\"",
        );
    assert!(methods.contains("\"forest_rights\""));
    std::fs::write(folder.path().join("methods.toml"), methods).unwrap();
    let server = Server::start_with(&format!(
        "\n[catalogue]\ndir = {:?}\n",
        folder.path().display().to_string()
    ))
    .await;

    let c = server.ok("GET", "/api/v1/catalogue", None).await;
    assert!(
        c["categories"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["zh"] == "林权交易")
    );

    // A project of the new category.
    let (status, p) = server
        .call(
            "POST",
            "/api/v1/projects",
            Some(project("LQ-2026-01", "forest_rights", "listing")),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    assert_eq!(p["category_zh"], "林权交易");
    // A method that does not list it is refused for it.
    let (status, b) = server
        .call(
            "POST",
            "/api/v1/projects",
            Some(project("LQ-2026-02", "forest_rights", "auction")),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(b["error"]["problems"][0]["code"], "method_not_for_category");

    // A session of the new category, shown with its project.
    let room = unreachable_room(&server, "开标室 3").await;
    let (status, s) = server
        .call(
            "POST",
            &format!("/api/v1/rooms/{room}/start"),
            Some(json!({"project_code": "LQ-2026-01", "session_code": "S1", "kind": "bid_opening", "category": "forest_rights", "reason": "test: unbooked"})),
        )
        .await;
    assert_eq!(status, 201, "{s}");
    server
        .ok("POST", &format!("/api/v1/rooms/{room}/stop"), None)
        .await;

    // A regulator scoped to it sees the project and its session; one scoped to land does not.
    let forest = server.another_user("t-forest", "regulator", &["forest_rights"]);
    let land = server.another_user("t-land", "regulator", &["land"]);
    let (status, v) =
        with_token(&server, &forest, "GET", "/api/v1/projects/LQ-2026-01", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["sessions"][0]["category"], "forest_rights");
    assert_eq!(v["sections"].as_array().unwrap().len(), 2);
    let (_, list) = with_token(&server, &forest, "GET", "/api/v1/projects", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (status, v) = with_token(&server, &land, "GET", "/api/v1/projects/LQ-2026-01", None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("out_of_scope")),
        "{v}"
    );
    let (_, list) = with_token(&server, &land, "GET", "/api/v1/projects", None).await;
    assert_eq!(list, json!([]));

    // A storage policy may name it too: the server starts with it.
    let rule = "id = \"forest-av\"\ntitle = \"林权交易录音录像 / Forest rights recordings\"\nrecord_classes = []\ncategories = [\"forest_rights\"]\njurisdiction = \"CN\"\nminimum_months = 240\nclock_starts = \"project_closed\"\ndisposition = \"review\"\nprecedence = 50\n\n[basis]\nlaw = \"某省林权交易管理办法\"\narticle = \"第十条\"\ntext = \"交易资料保存二十年。\"\n";
    std::fs::write(server.dir.path().join("policies/forest-av.toml"), rule).unwrap();
    let mut server = server;
    server.kill();
    server.restart().await;
    let policies = server.ok("GET", "/api/v1/retention/policies", None).await;
    assert!(policies.to_string().contains("forest-av"), "{policies}");
}

/// Plays an insider with database access: `sql` must be refused by the database itself.
async fn refused_by_the_database(server: &Server, sql: &str) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&server.db).await.unwrap();
    let r = sqlx::query(sql).execute(&mut db).await;
    assert!(r.is_err(), "{sql}: the database let it through");
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sections_follow_their_lifecycle_and_the_last_one_ending_starts_the_clock() {
    let server = Server::start().await;
    let code = "ZB-LC-1";
    server
        .ok(
            "POST",
            "/api/v1/projects",
            Some(project(code, "construction", "open_tender")),
        )
        .await;
    let state = |section: &str| format!("/api/v1/projects/{code}/sections/{section}/state");
    let as_staff = |section: &str, body: Value| {
        let path = state(section);
        let server = &server;
        async move {
            server
                .call_as(Some("witness_staff"), "POST", &path, Some(body))
                .await
        }
    };
    let as_clerk = |section: &str, body: Value| {
        let path = state(section);
        let server = &server;
        async move {
            server
                .call_as(Some("archive_clerk"), "POST", &path, Some(body))
                .await
        }
    };

    // Staff start a section.
    let (status, b) = as_staff("S1", json!({"state": "in_progress"})).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(
        (b["from"].as_str(), b["to"].as_str()),
        (Some("registered"), Some("in_progress"))
    );
    assert_eq!(b["project_ended"], false);

    // A transition the lifecycle has not: 409 naming it and what is allowed.
    let (status, b) = as_staff("S1", json!({"state": "registered"})).await;
    assert_eq!(status, 409, "{b}");
    assert_eq!(b["error"]["code"], "transition_refused");
    let m = b["error"]["message"].as_str().unwrap();
    assert!(m.contains("in_progress → registered is not allowed"), "{m}");
    assert!(m.contains("closed, suspended, terminated"), "{m}");

    // Bad input: every problem at once.
    let (status, b) = as_staff("S1", json!({"state": "paused"})).await;
    assert_eq!(status, 422, "{b}");
    assert_eq!(b["error"]["problems"][0]["code"], "unknown_state");
    let (status, b) = as_staff("S2", json!({"state": "suspended"})).await;
    assert_eq!(status, 422, "{b}");
    assert_eq!(b["error"]["problems"][0]["field"], "reason");
    let (status, b) = as_staff("S9", json!({"state": "in_progress"})).await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (404, Some("section_not_found"))
    );

    // Closing may end the project and start its clocks: not witness staff.
    let (status, b) = as_staff("S1", json!({"state": "closed"})).await;
    assert_eq!(status, 403, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("project_events")
    );

    // A suspension and its resumption, with reasons.
    let (status, b) = as_staff("S2", json!({"state": "suspended", "reason": "投诉处理中"})).await;
    assert_eq!(status, 200, "{b}");
    let (status, _) = as_staff(
        "S2",
        json!({"state": "in_progress", "reason": "投诉已处理"}),
    )
    .await;
    assert_eq!(status, 200);

    // Sections added while the project is open; a code already there is a problem.
    let (status, b) = server
        .call(
            "POST",
            &format!("/api/v1/projects/{code}/sections"),
            Some(json!({"sections": [{"code": "S3", "name": "三标段"}, {"code": "S1", "name": "again"}]})),
        )
        .await;
    assert_eq!(status, 422, "{b}");
    assert_eq!(b["error"]["problems"][0]["field"], "sections[1].code");
    assert_eq!(b["error"]["problems"][0]["code"], "exists");
    let (status, b) = server
        .call(
            "POST",
            &format!("/api/v1/projects/{code}/sections"),
            Some(json!({"sections": [{"code": "S3", "name": "三标段"}]})),
        )
        .await;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["sections"].as_array().unwrap().len(), 3);

    // The archive clerk closes S1: the project is not over yet.
    let (status, b) = as_clerk("S1", json!({"state": "closed"})).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["project_ended"], false);
    assert_eq!(b["retention"], Value::Null);
    let v = server
        .ok("GET", &format!("/api/v1/projects/{code}"), None)
        .await;
    assert_eq!(v["closed_at"], Value::Null);
    assert_eq!(v["open"], true);

    // A closed section is final.
    let (status, b) = as_clerk("S1", json!({"state": "in_progress"})).await;
    assert_eq!(status, 409);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("closed is final")
    );

    // The last open sections end: the project's `closed` event starts the retention clock.
    let (status, _) = as_clerk("S2", json!({"state": "terminated", "reason": "流标"})).await;
    assert_eq!(status, 200);
    let (status, b) = as_clerk("S3", json!({"state": "terminated", "reason": "流标"})).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["project_ended"], true);
    assert_eq!(b["retention"]["outcomes"][0]["event"], "closed");
    assert_eq!(b["retention"]["outcomes"][0]["result"], "reported");
    let v = server
        .ok("GET", &format!("/api/v1/projects/{code}"), None)
        .await;
    assert!(v["closed_at"].is_string(), "{v}");
    assert_eq!(v["open"], false);
    assert_eq!(v["ended"], true);
    assert_eq!(v["history"][0]["event"], "closed");
    assert_eq!(v["history"][0]["actor"], "t-archive-clerk/token:tests");
    let s1 = &v["sections"][0];
    assert_eq!(s1["state"], "closed");
    let steps: Vec<(&str, &str)> = s1["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["to"].as_str().unwrap(), h["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("registered", "t-witness-staff/token:tests"),
            ("in_progress", "t-witness-staff/token:tests"),
            ("closed", "t-archive-clerk/token:tests"),
        ]
    );
    assert_eq!(v["sections"][1]["history"][1]["reason"], "投诉处理中");

    // An ended project takes no new sections.
    let (status, b) = server
        .call(
            "POST",
            &format!("/api/v1/projects/{code}/sections"),
            Some(json!({"sections": [{"code": "S4", "name": "四标段"}]})),
        )
        .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (409, Some("project_ended"))
    );

    // Audited: every change with before → after, every refusal with why.
    let trail = audit(&server, "section_state").await;
    assert!(trail.iter().any(|e| e["outcome"] == "allowed"
        && e["reason"] == "section S1 of ZB-LC-1: registered → in_progress"));
    assert!(trail.iter().any(|e| e["outcome"] == "allowed"
        && e["reason"] == "section S2 of ZB-LC-1: in_progress → terminated; 流标"));
    assert!(
        trail
            .iter()
            .any(|e| e["outcome"] == "failed: transition_refused"
                && e["target"] == "ZB-LC-1/S1 → registered")
    );
    assert!(trail.iter().any(
        |e| e["outcome"] == "failed: forbidden" && e["actor"] == "t-witness-staff/token:tests"
    ));
    let reported = audit(&server, "project_event").await;
    assert!(
        reported
            .iter()
            .any(|e| e["project_code"] == code && e["actor"] == "t-archive-clerk/token:tests")
    );

    // The database itself keeps the lifecycle and the history.
    refused_by_the_database(
        &server,
        "UPDATE project_sections SET state = 'registered' WHERE project_code = 'ZB-LC-1' AND section_code = 'S1'",
    )
    .await;
    refused_by_the_database(
        &server,
        "UPDATE project_section_history SET reason = 'x' WHERE project_code = 'ZB-LC-1'",
    )
    .await;
    refused_by_the_database(&server, "DELETE FROM project_section_history").await;
    refused_by_the_database(&server, "DELETE FROM project_sections").await;
    refused_by_the_database(&server, "UPDATE project_registry SET category = 'land'").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn regulators_see_the_projects_of_their_categories_and_change_none() {
    let server = Server::start().await;
    server
        .ok(
            "POST",
            "/api/v1/projects",
            Some(project("ZB-R-1", "construction", "open_tender")),
        )
        .await;
    server
        .ok(
            "POST",
            "/api/v1/projects",
            Some(project("TD-R-1", "land", "auction")),
        )
        .await;
    let land = server.another_user("t-land", "regulator", &["land"]);
    let (_, list) = with_token(&server, &land, "GET", "/api/v1/projects", None).await;
    let codes: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["project_code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["TD-R-1"]);
    let (status, v) = with_token(&server, &land, "GET", "/api/v1/projects/TD-R-1", None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["method_zh"], "拍卖");
    let (status, v) = with_token(&server, &land, "GET", "/api/v1/projects/ZB-R-1", None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("out_of_scope")),
        "{v}"
    );
    // A code nobody registered: its retention clocks, as before registration existed.
    let (status, v) = server.call("GET", "/api/v1/projects/NOPE-1", None).await;
    assert_eq!(
        status, 200,
        "a code only retention knows shows its clocks: {v}"
    );
    assert_eq!(v["registered"], false);
    // Regulators change nothing.
    let (status, b) = with_token(
        &server,
        &land,
        "POST",
        "/api/v1/projects/TD-R-1/sections/S1/state",
        Some(json!({"state": "in_progress"})),
    )
    .await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let v = server.ok("GET", "/api/v1/projects/TD-R-1", None).await;
    assert_eq!(v["sections"][0]["state"], "registered");
}

/// The console's Projects page in headless Chromium (web/tests/projects.mjs): every problem of a
/// registration beside its field, in Chinese and English; registered; a section started.
#[tokio::test(flavor = "multi_thread")]
async fn the_console_registers_a_project_showing_every_problem_beside_its_field() {
    let server = Server::start().await;
    let staff = server.user("witness_staff");
    let artefacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("projects");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/web/tests/projects.mjs");
    let args = [
        script.to_string(),
        server.url(""),
        staff.username.clone(),
        staff.one_time_password.clone(),
        artefacts.display().to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .args(args)
            .output()
            .expect("node runs (scripts/setup installs Node.js)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "projects console check failed:\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr),
    );
    let summary: Value = serde_json::from_str(stdout.trim()).expect("JSON summary");
    eprintln!("projects console summary: {summary}");
    // What the browser did is what the server holds.
    let p = server.ok("GET", "/api/v1/projects/TD-2026-01", None).await;
    assert_eq!(p["category"], "land");
    assert_eq!(p["sections"][0]["state"], "in_progress");
    assert_eq!(p["sections"][1]["name"], "地块二");
}
