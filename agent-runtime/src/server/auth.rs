//! Bearer-token check for every route but `/v1/health`.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;
use crate::api::ProblemKind;

/// True when `presented` equals `expected`, in time that depends only on the lengths.
pub(crate) fn token_matches(presented: &[u8], expected: &[u8]) -> bool {
    presented.ct_eq(expected).into()
}

/// Whether `presented` is the configured token (or hashes to the configured digest).
fn accepts(config: &super::ServerConfig, presented: &str) -> bool {
    if let Some(expected) = config.token.as_deref() {
        return token_matches(presented.as_bytes(), expected.as_bytes());
    }
    match &config.token_sha256 {
        Some(digest) => {
            use sha2::Digest;
            token_matches(&sha2::Sha256::digest(presented.as_bytes()), digest)
        }
        None => false,
    }
}

/// Rejects requests without the configured bearer token. With no token configured, lets all through.
pub(crate) async fn require_bearer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let config = state.config();
    if config.token.is_none() && config.token_sha256.is_none() {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    match presented {
        Some(p) if accepts(config, p) => next.run(req).await,
        Some(_) => ApiError::new(ProblemKind::Unauthorized, "the bearer token is wrong").into_response(),
        None => ApiError::new(
            ProblemKind::Unauthorized,
            "send `Authorization: Bearer <token>` (the token the runtime was started with)",
        )
        .into_response(),
    }
}
