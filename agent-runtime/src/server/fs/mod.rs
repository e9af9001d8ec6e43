//! `/v1/fs/*`: files, confined to `--root` when one is set.

use std::path::PathBuf;

use utoipa_axum::router::OpenApiRouter;

use super::AppState;

/// The file-system root paths are resolved against (and confined to, when set).
#[derive(Debug, Clone)]
pub struct FsRoot {
    root: Option<PathBuf>,
}

impl FsRoot {
    /// A root at `root` (canonicalized), or no confinement.
    pub fn new(root: Option<PathBuf>) -> std::io::Result<Self> {
        let root = match root {
            Some(r) => Some(std::fs::canonicalize(r)?),
            None => None,
        };
        Ok(Self { root })
    }
    /// The canonical root, if any.
    pub fn root(&self) -> Option<&std::path::Path> {
        self.root.as_deref()
    }
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
