//! `/v1/fs/*`: files, confined to `--root` when one is set.
//!
//! - `entries.rs`: list, stat, delete, mkdir, move.
//! - `file.rs`: read (with Range) and atomic write, both streamed.
//! - `batch.rs` + `unpack.rs` + `pack.rs`: tar upload and download, streamed.
//! - `confine.rs`: path resolution and the `--root` checks every handler goes through.
//!
//! File-system work runs on the blocking pool (`spawn_blocking` or `tokio::fs`), never on the async
//! workers, because any call may stall on a slow disk or network mount.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, ApiResult, AppState};
use crate::api::fs::{Entry, EntryKind};

mod batch;
pub(crate) mod confine;
mod entries;
mod file;
mod unpack;

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
        self.confine(&full, follow, path)?;
        Ok(full)
    }

    /// Checks an absolute, normalised path (one we computed, e.g. a symlink's target) against the root,
    /// lexically and through symlinks; `shown` names it in errors. Blocking.
    pub(crate) fn confine(&self, full: &Path, follow: Follow, shown: &str) -> Result<(), ApiError> {
        match &self.root {
            Some(root) if !full.starts_with(root) => Err(ApiError::outside_root(shown)),
            Some(root) => confine::check_links(root, full, follow, shown),
            None => Ok(()),
        }
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
        .routes(routes!(entries::list))
        .routes(routes!(entries::stat))
        .routes(routes!(entries::delete))
        .routes(routes!(entries::mkdir))
        .routes(routes!(entries::move_entry))
        .routes(routes!(file::read, file::write))
        .routes(routes!(batch::upload))
        .routes(routes!(batch::download))
}

/// Runs file-system work on the blocking pool.
pub(crate) async fn blocking<T, F>(f: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> ApiResult<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("file-system task failed: {e}")))?
}

/// Maps an I/O error on `shown` to a problem. Adds to [`ApiError::io`] the errno values that are the
/// request's fault or the file system's state, not the runtime's (they would otherwise be a 500).
pub(crate) fn io_error(shown: &str, err: io::Error) -> ApiError {
    match err.raw_os_error() {
        Some(libc::ENAMETOOLONG) => ApiError::bad_request(format!("`{shown}`: a name is too long")),
        Some(libc::ELOOP) => ApiError::bad_request(format!("`{shown}`: too many levels of symbolic links")),
        Some(libc::EINVAL) => ApiError::bad_request(format!("`{shown}`: {err}")),
        Some(libc::EROFS | libc::EBUSY | libc::ETXTBSY | libc::EMLINK | libc::EPERM | libc::EACCES) => {
            ApiError::conflict(format!("`{shown}`: {err}"))
        }
        Some(libc::EXDEV) => ApiError::conflict(format!("`{shown}` is on another file system: {err}")),
        _ => ApiError::io(shown, err),
    }
}

/// How a path is shown to clients.
pub(crate) fn display(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The entry for `path` itself (a symlink is described, not followed). Blocking.
pub(crate) fn entry_at(path: &Path) -> io::Result<Entry> {
    let meta = std::fs::symlink_metadata(path)?;
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    };
    let symlink_target = match kind {
        EntryKind::Symlink => std::fs::read_link(path).ok().map(|t| display(&t)),
        _ => None,
    };
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64);
    let name = path.file_name().map_or_else(|| display(path), |n| n.to_string_lossy().into_owned());
    Ok(Entry {
        name,
        path: display(path),
        kind,
        size: meta.len(),
        mode: meta.permissions().mode() & 0o7777,
        modified,
        symlink_target,
    })
}
