//! The one error type handlers return; it renders as `application/problem+json`.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api::{Problem, ProblemKind, PROBLEM_CONTENT_TYPE};

/// An error a handler reports to the client.
#[derive(Debug)]
pub struct ApiError {
    kind: ProblemKind,
    detail: String,
}

impl ApiError {
    /// An error of `kind` with what went wrong and what to do.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self { kind, detail: detail.into() }
    }
    /// 400.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::BadRequest, detail)
    }
    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::NotFound, detail)
    }
    /// 409.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::Conflict, detail)
    }
    /// 403 for a path that leaves the root.
    pub fn outside_root(path: &str) -> Self {
        Self::new(
            ProblemKind::PathOutsideRoot,
            format!("`{path}` resolves outside the runtime's root; use a path inside it"),
        )
    }
    /// 500.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(ProblemKind::Internal, detail)
    }
    /// The kind of this error.
    pub fn kind(&self) -> ProblemKind {
        self.kind
    }
    /// What went wrong, as the client sees it.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Maps an I/O error on `path` to the closest problem kind.
    pub fn io(path: &str, err: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match err.kind() {
            K::NotFound => Self::not_found(format!("`{path}` does not exist")),
            K::AlreadyExists => Self::conflict(format!("`{path}` already exists")),
            K::PermissionDenied => Self::new(ProblemKind::Conflict, format!("`{path}`: permission denied")),
            K::InvalidInput | K::InvalidData => Self::bad_request(format!("`{path}`: {err}")),
            K::NotADirectory => Self::conflict(format!("`{path}`: a component is not a directory")),
            K::IsADirectory => Self::conflict(format!("`{path}` is a directory")),
            K::DirectoryNotEmpty => {
                Self::conflict(format!("`{path}` is a non-empty directory; pass recursive=true to delete it"))
            }
            _ => Self::internal(format!("`{path}`: {err}")),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.title(), self.detail)
    }
}

impl std::error::Error for ApiError {}

/// Renders a problem document with the right status and content type.
pub(crate) fn problem_response(problem: &Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.kind == ProblemKind::Internal {
            tracing::error!(detail = %self.detail, "internal error");
        }
        problem_response(&Problem::new(self.kind, self.detail))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        // A JSON route given another content type is a malformed request like any other (400), so every
        // JSON route documents one status for "your body is wrong" rather than 400 and 415 both.
        match r.status().as_u16() {
            413 => Self::new(ProblemKind::PayloadTooLarge, r.body_text()),
            415 => Self::bad_request(format!("{}; send `Content-Type: application/json`", r.body_text())),
            _ => Self::bad_request(r.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

/// `Json<T>` whose rejections are problem documents.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `Query<T>` whose rejections are problem documents.
#[derive(Debug, Clone, Copy, Default, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Handler result type.
pub type ApiResult<T> = Result<T, ApiError>;
