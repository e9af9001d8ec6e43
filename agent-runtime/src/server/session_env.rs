//! `PUT`/`GET /v1/runtime/session-env`: secrets for agent sessions, pushed by the host over the
//! authenticated API once the runtime answers (and again after a restart), so they never sit in a file,
//! a command line or the runtime's start-up environment (`/proc/<pid>/environ` is readable by every
//! process of the same user, `sbx exec` included). The values live only in the session manager's
//! memory and go into each agent process's own environment; this module never logs them.

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, ApiJson, ApiResult, AppState};
use crate::api::session_env::{SessionEnv, SessionEnvNames};
use crate::api::Problem;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(put_session_env, get_session_env))
}

/// Sets the environment every agent session started from now on gets (replacing the previous set).
#[utoipa::path(put, path = "/v1/runtime/session-env", tag = "runtime", request_body = SessionEnv,
    responses(
        (status = 200, description = "The names now held (never the values)", body = SessionEnvNames),
        (status = 400, description = "A name is empty or holds `=` or NUL, or a value holds NUL", body = Problem,
            content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn put_session_env(State(state): State<AppState>, ApiJson(body): ApiJson<SessionEnv>) -> ApiResult<ApiJson<SessionEnvNames>> {
    for (k, v) in &body.env {
        if k.is_empty() || k.contains(['=', '\0']) {
            return Err(ApiError::bad_request(format!("`{}` is not an environment variable name", k.escape_debug())));
        }
        if v.contains('\0') {
            // The name only: the value is a secret.
            return Err(ApiError::bad_request(format!("the value of `{k}` holds a NUL byte")));
        }
    }
    let names: Vec<String> = body.env.keys().cloned().collect();
    tracing::info!(?names, "session environment set");
    state.sessions().set_session_env(body.env);
    Ok(ApiJson(SessionEnvNames { names }))
}

/// The names of the session variables the runtime holds (none after a restart until the host sends them again).
#[utoipa::path(get, path = "/v1/runtime/session-env", tag = "runtime",
    responses(
        (status = 200, description = "The names held (never the values)", body = SessionEnvNames),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn get_session_env(State(state): State<AppState>) -> ApiJson<SessionEnvNames> {
    ApiJson(SessionEnvNames { names: state.sessions().session_env_names() })
}
