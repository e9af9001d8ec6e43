//! `/v1/fs/*`: files, confined to `--root` when one is set.

use std::path::{Path, PathBuf};

use utoipa_axum::router::OpenApiRouter;

use super::{ApiError, AppState};

pub(crate) mod confine;

use confine::Follow;

/// The file-system root paths are resolved against (and confined to, when set).
#[derive(Debug, Clone)]
pub struct FsRoot {
    root: Option<PathBuf>,
    /// Base for relative paths when there is no root: the server's working directory at start-up.
    cwd: PathBuf,
}

impl FsRoot {
    /// A root at `root` (canonicalized), or no confinement.
    pub fn new(root: Option<PathBuf>) -> std::io::Result<Self> {
        let root = match root {
            Some(r) => Some(std::fs::canonicalize(r)?),
            None => None,
        };
        // A deleted working directory should not stop the server; absolute paths still work.
        let cwd = confine::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        Ok(Self { root, cwd })
    }

    /// The canonical root, if any.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// Resolves a client-supplied path to an absolute, normalised path, following a final symlink.
    ///
    /// With a root, refuses (403) any path that lands outside it lexically or through a symlink. Use
    /// this for anything that opens the target: reading, writing, listing, a process's cwd.
    /// Blocking (it may touch the file system); cheap, but call it off the async runtime when the file
    /// system may be slow.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, ApiError> {
        self.resolve_with(path, Follow::Final)
    }

    /// Like [`FsRoot::resolve`], choosing whether a final symlink is followed (`NotFinal` for
    /// operations on the entry itself: lstat, delete, rename).
    pub(crate) fn resolve_with(&self, path: &str, follow: Follow) -> Result<PathBuf, ApiError> {
        let full = self.lexical(path)?;
        if let Some(root) = &self.root {
            confine::check_links(root, &full, follow, path)?;
        }
        Ok(full)
    }

    /// The normalised absolute path for `path`, checked lexically against the root; touches nothing.
    pub(crate) fn lexical(&self, path: &str) -> Result<PathBuf, ApiError> {
        confine::validate_input(path)?;
        let base = self.root.as_deref().unwrap_or(&self.cwd);
        let full = confine::normalize(base, Path::new(path));
        match &self.root {
            Some(root) if !full.starts_with(root) => Err(ApiError::outside_root(path)),
            _ => Ok(full),
        }
    }
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
