//! The router, built from `policy::POLICY`: each rule's handler found by its action in the
//! resource files. A route cannot exist without its rule, nor a rule without its handler.

use std::str::FromStr;

use axum::Router;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter};

use super::AppState;
use super::policy::POLICY;

/// A resource file's lookup: the handler of an action, on the rule's method.
type Endpoint = fn(&str, MethodFilter) -> Option<MethodRouter<AppState>>;

/// The handlers of every resource file, each asked in turn for an action's handler.
const RESOURCES: [Endpoint; 15] = [
    super::status::endpoint,
    super::pages::endpoint,
    super::auth::endpoint,
    super::users::endpoint,
    super::tokens::endpoint,
    super::rooms::endpoint,
    super::sessions::endpoint,
    super::live::endpoint,
    super::replay::endpoint,
    super::exports::endpoint,
    super::audit::endpoint,
    super::retention::endpoint,
    super::witness_record::endpoint,
    super::projects::endpoint,
    super::bookings::endpoint,
];

/// The routes of `POLICY`, each with its handler.
///
/// # Panics
/// At start-up (and in every test that builds the app) when a rule has no handler or names a
/// method that is not one: the table and the handlers must agree.
pub fn router() -> Router<AppState> {
    POLICY.iter().fold(Router::new(), |router, rule| {
        let method = Method::from_str(rule.method)
            .ok()
            .and_then(|m| MethodFilter::try_from(m).ok())
            .unwrap_or_else(|| panic!("rule {:?}: method {:?}", rule.action, rule.method));
        let handler = RESOURCES
            .iter()
            .find_map(|endpoint| endpoint(rule.action, method))
            .unwrap_or_else(|| {
                panic!(
                    "rule {:?} ({} {}) has no handler",
                    rule.action, rule.method, rule.path
                )
            });
        router.route(rule.path, handler)
    })
}
