//! One error type for every handler, and extractors that answer malformed input in the same
//! JSON shape. Internal failures answer a generic message; the detail goes to the log.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::error::CoreError;
use crate::identity::IdentityError;
use crate::identity::login::LoginError;
use crate::projects::ProjectError;
use crate::retention::RetentionError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (throttled logins, a busy server).
    pub retry_after_s: Option<u64>,
    /// Every problem of a request, each with its field (`invalid_project` …), in the body as
    /// `error.problems`.
    pub problems: Option<Vec<crate::projects::Problem>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
            problems: None,
        }
    }

    pub fn retry_after(mut self, seconds: Option<u64>) -> Self {
        self.retry_after_s = seconds;
        self
    }
}

impl ApiError {
    /// An internal failure: the cause goes to the log, the client gets a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body =
            serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        if let Some(problems) = &self.problems {
            body["error"]["problems"] = serde_json::to_value(problems).unwrap_or_default();
        }
        let mut res = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after_s {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, s.into());
        }
        res
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Invalid { code, message } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
            }
            CoreError::NotFound { what, id } => {
                let code = match what {
                    "room" => "room_not_found",
                    "session" => "session_not_found",
                    "source" => "source_not_found",
                    "confidential access request" => "grant_not_found",
                    "booking" => "booking_not_found",
                    "project section" => "project_section_not_found",
                    _ => "not_found",
                };
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    code,
                    format!("{what} {id:?} not found"),
                )
            }
            CoreError::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            CoreError::Forbidden { code, message } => {
                ApiError::new(StatusCode::FORBIDDEN, code, message)
            }
            CoreError::Busy {
                message,
                retry_after_seconds,
            } => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_busy", message)
                .retry_after(Some(retry_after_seconds)),
            CoreError::InsufficientStorage(message) => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                message,
            ),
            other => ApiError::internal(other),
        }
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Invalid { code, message } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
            }
            IdentityError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "username_taken", m),
            IdentityError::Refused { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            IdentityError::NoUser(u) => ApiError::new(
                StatusCode::NOT_FOUND,
                "user_not_found",
                format!("user {u:?} not found"),
            ),
            IdentityError::NoReset(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                "reset_not_found",
                format!("account reset {id:?} not found"),
            ),
            IdentityError::NoChange(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                "change_not_found",
                format!("account change {id:?} not found"),
            ),
            IdentityError::Db(e) => ApiError::internal(e),
        }
    }
}

impl From<RetentionError> for ApiError {
    fn from(e: RetentionError) -> Self {
        match e {
            RetentionError::Invalid { code, message } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
            }
            RetentionError::NotFound { code, message } => {
                ApiError::new(StatusCode::NOT_FOUND, code, message)
            }
            RetentionError::Forbidden { code, message } => {
                ApiError::new(StatusCode::FORBIDDEN, code, message)
            }
            RetentionError::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            RetentionError::Store(m) => {
                tracing::error!(error = %m, "destruction: object store");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "store_unavailable",
                    "the object store refused a deletion; nothing more was destroyed, see the server log",
                )
            }
            RetentionError::Core(e) => e.into(),
            RetentionError::Db(e) => CoreError::from(e).into(),
        }
    }
}

impl From<ProjectError> for ApiError {
    fn from(e: ProjectError) -> Self {
        let message = e.to_string();
        match e {
            ProjectError::Invalid { code, problems } => {
                let mut error = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message);
                error.problems = Some(problems);
                error
            }
            ProjectError::NotFound { code, .. } => {
                ApiError::new(StatusCode::NOT_FOUND, code, message)
            }
            ProjectError::Forbidden { code, .. } => {
                ApiError::new(StatusCode::FORBIDDEN, code, message)
            }
            ProjectError::Conflict { code, .. } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            ProjectError::Retention(e) => e.into(),
            ProjectError::Db(e) => CoreError::from(e).into(),
        }
    }
}

impl From<crate::project_archive::ArchiveError> for ApiError {
    fn from(e: crate::project_archive::ArchiveError) -> Self {
        use crate::project_archive::ArchiveError;
        match e {
            ArchiveError::Project(e) => e.into(),
            ArchiveError::Core(e) => e.into(),
            ArchiveError::Retention(e) => e.into(),
        }
    }
}

impl From<LoginError> for ApiError {
    /// An unknown name, a wrong password, a disabled account and an attempt refused unchecked
    /// by the throttle: one status, code and message. `Retry-After` (when the next attempt of
    /// this name from this address is checked) comes from counters kept alike for every name,
    /// so it tells nothing of which names exist.
    fn from(e: LoginError) -> Self {
        let message = e.to_string();
        match e {
            LoginError::Failed { retry_after_s } => {
                ApiError::new(StatusCode::UNAUTHORIZED, "login_failed", message)
                    .retry_after(retry_after_s)
            }
            LoginError::TotpRequired => {
                ApiError::new(StatusCode::UNAUTHORIZED, "totp_required", message)
            }
            LoginError::TotpInvalid { retry_after_s } => {
                ApiError::new(StatusCode::UNAUTHORIZED, "totp_invalid", message)
                    .retry_after(retry_after_s)
            }
            LoginError::Busy(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "login_busy", message)
                    .retry_after(Some(1))
            }
            LoginError::Db(e) => ApiError::internal(e),
        }
    }
}

impl From<crate::identity::password::Busy> for ApiError {
    fn from(e: crate::identity::password::Busy) -> Self {
        LoginError::Busy(e).into()
    }
}

/// A request body that had not arrived by the request deadline (`http.request_timeout_seconds`).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs_f64())]
pub struct BodyTimeout(pub std::time::Duration);

/// The body deadline, wherever it sits in a rejection's chain of causes.
fn body_timeout<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyTimeout> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(t) = c.downcast_ref::<BodyTimeout>() {
            return Some(t);
        }
        cause = c.source();
    }
    None
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        if let Some(t) = body_timeout(&r) {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                t.to_string(),
            );
        }
        match r {
            JsonRejection::JsonDataError(e) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!(
                    "request body: {}",
                    e.body_text().trim_start_matches(
                        "Failed to deserialize the JSON body into the target type: "
                    )
                ),
            ),
            JsonRejection::JsonSyntaxError(e) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                format!(
                    "request body is not valid JSON: {}",
                    e.body_text()
                        .trim_start_matches("Failed to parse the request body as JSON: ")
                ),
            ),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: application/json",
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "request body too large (at most 2 MiB)",
            ),
            other => ApiError::new(other.status(), "invalid_body", other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", r.body_text())
    }
}

/// `Json` whose rejections use our error shape.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(v) = Json::<serde_json::Value>::from_request(req, state).await?;
        // A NUL inside a string is valid JSON but no database text may hold it: refuse it here
        // rather than fail deep inside (PostgreSQL would answer an internal error).
        if holds_nul(&v) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "request body: strings may not contain NUL (\\u0000) characters",
            ));
        }
        let v = serde_json::from_value(v).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("request body: {e}"),
            )
        })?;
        Ok(ApiJson(v))
    }
}

fn holds_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(a) => a.iter().any(holds_nul),
        serde_json::Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// `Query` whose rejections use our error shape.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(v) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(v))
    }
}

/// The peer address of the request, for the audit trail (`unknown` when not served over TCP).
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let addr = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_else(|| "unknown".into());
        Ok(ClientAddr(addr))
    }
}
