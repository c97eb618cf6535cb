//! What a caller may see of retention: a regulator only the projects with a session in one of
//! their trading categories (a project with nothing recorded yet has nothing to hide); everyone
//! else all of them.

use super::RetentionError;
use crate::db::Pool;
use crate::identity::caller::Scope;
use crate::ledger::values::Category;

/// Whether `scope` sees `project`.
pub async fn sees_project(pool: &Pool, scope: &Scope, project: &str) -> Result<bool, sqlx::Error> {
    if *scope == Scope::All {
        return Ok(true);
    }
    let categories: Vec<Category> =
        sqlx::query_scalar("SELECT DISTINCT category FROM sessions WHERE project_code = $1")
            .bind(project)
            .fetch_all(pool)
            .await?;
    Ok(scope.sees_project(&categories))
}

/// Refuses, as `out_of_scope`, a project that `scope` does not see.
pub async fn check_project(
    pool: &Pool,
    scope: &Scope,
    project: &str,
) -> Result<(), RetentionError> {
    if sees_project(pool, scope, project).await? {
        Ok(())
    } else {
        Err(RetentionError::forbidden(
            "out_of_scope",
            format!("project {project} has no session in this regulator's trading categories"),
        ))
    }
}
