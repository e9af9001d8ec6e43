//! `/v1/pty`: a terminal over WebSocket.

use utoipa_axum::router::OpenApiRouter;

use super::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
