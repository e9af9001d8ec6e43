//! List, stat, delete, mkdir and move.

use std::io;
use std::path::Path;

use axum::extract::State;
use axum::http::StatusCode;

use super::confine::Follow;
use super::{blocking, display, entry_at, io_error, FsRoot};
use crate::api::fs::{DeleteQuery, Entry, EntryList, MkdirQuery, MoveRequest, PathQuery};
use crate::api::Problem;
use crate::server::{ApiError, ApiJson, ApiQuery, ApiResult, AppState};

/// List a directory.
#[utoipa::path(get, path = "/v1/fs/entries", tag = "fs", params(PathQuery),
    responses(
        (status = 200, description = "The directory's entries, sorted by name", body = EntryList),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The path is outside the root", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such directory", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a directory", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<PathQuery>,
) -> ApiResult<ApiJson<EntryList>> {
    let fs = state.fs().clone();
    blocking(move || {
        let dir = fs.resolve(&q.path)?;
        let entries = read_entries(&dir).map_err(|e| io_error(&q.path, e))?;
        Ok(ApiJson(EntryList { path: display(&dir), entries }))
    })
    .await
}

/// The entries of `dir`, sorted by name. Entries that vanish while we look are left out.
fn read_entries(dir: &Path) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for item in std::fs::read_dir(dir)? {
        match entry_at(&item?.path()) {
            Ok(e) => out.push(e),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Describe one entry (a symlink itself, not its target).
#[utoipa::path(get, path = "/v1/fs/stat", tag = "fs", params(PathQuery),
    responses(
        (status = 200, description = "The entry", body = Entry),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The path is outside the root", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Nothing at that path", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A parent is not a directory", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn stat(State(state): State<AppState>, ApiQuery(q): ApiQuery<PathQuery>) -> ApiResult<ApiJson<Entry>> {
    let fs = state.fs().clone();
    blocking(move || {
        let path = fs.resolve_with(&q.path, Follow::NotFinal)?;
        entry_at(&path).map(ApiJson).map_err(|e| io_error(&q.path, e))
    })
    .await
}

/// Delete a file, a symlink (not its target) or a directory.
#[utoipa::path(delete, path = "/v1/fs/entry", tag = "fs", params(DeleteQuery),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The path is outside the root", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Nothing at that path", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A non-empty directory without recursive=true, or the root itself", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn delete(State(state): State<AppState>, ApiQuery(q): ApiQuery<DeleteQuery>) -> ApiResult<StatusCode> {
    let fs = state.fs().clone();
    blocking(move || {
        let path = fs.resolve_with(&q.path, Follow::NotFinal)?;
        refuse_root(&fs, &path, &q.path, "delete")?;
        let meta = std::fs::symlink_metadata(&path).map_err(|e| io_error(&q.path, e))?;
        let result = if !meta.is_dir() {
            std::fs::remove_file(&path)
        } else if q.recursive.unwrap_or(false) {
            // remove_dir_all never follows symlinks, so a link inside cannot take it outside.
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_dir(&path)
        };
        result.map_err(|e| io_error(&q.path, e))?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// Create a directory.
#[utoipa::path(post, path = "/v1/fs/mkdir", tag = "fs", params(MkdirQuery),
    responses(
        (status = 200, description = "The directory (created, or already there with parents=true)", body = Entry),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The path is outside the root", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The parent does not exist (pass parents=true)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Something already exists there", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn mkdir(State(state): State<AppState>, ApiQuery(q): ApiQuery<MkdirQuery>) -> ApiResult<ApiJson<Entry>> {
    let fs = state.fs().clone();
    blocking(move || {
        let path = fs.resolve(&q.path)?;
        let parents = q.parents.unwrap_or(false);
        let result = if parents { std::fs::create_dir_all(&path) } else { std::fs::create_dir(&path) };
        result.map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ApiError::not_found(format!(
                "the parent of `{}` does not exist; pass parents=true to create it",
                q.path
            )),
            _ => io_error(&q.path, e),
        })?;
        entry_at(&path).map(ApiJson).map_err(|e| io_error(&q.path, e))
    })
    .await
}

/// Move or rename a file, directory or symlink.
#[utoipa::path(post, path = "/v1/fs/move", tag = "fs", request_body = MoveRequest,
    responses(
        (status = 200, description = "The entry at its new path", body = Entry),
        (status = 400, description = "Bad JSON, or a directory moved into itself", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or wrong token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A path is outside the root", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`from` does not exist, or `to`'s directory does not", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`to` exists (pass overwrite=true), or cannot be replaced", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The JSON body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
    ))]
pub(super) async fn move_entry(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<MoveRequest>,
) -> ApiResult<ApiJson<Entry>> {
    let fs = state.fs().clone();
    blocking(move || {
        let from = fs.resolve_with(&req.from, Follow::NotFinal)?;
        let to = fs.resolve_with(&req.to, Follow::NotFinal)?;
        refuse_root(&fs, &from, &req.from, "move")?;
        refuse_root(&fs, &to, &req.to, "replace")?;
        std::fs::symlink_metadata(&from).map_err(|e| io_error(&req.from, e))?;
        if to.starts_with(&from) && to != from {
            return Err(ApiError::bad_request(format!("cannot move `{}` into itself (`{}`)", req.from, req.to)));
        }
        let result = if req.overwrite { std::fs::rename(&from, &to) } else { rename_noreplace(&from, &to) };
        result.map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => {
                ApiError::conflict(format!("`{}` already exists; pass overwrite=true to replace it", req.to))
            }
            io::ErrorKind::NotFound => {
                ApiError::not_found(format!("`{}` or the directory of `{}` does not exist", req.from, req.to))
            }
            io::ErrorKind::CrossesDevices => ApiError::conflict(format!(
                "`{}` and `{}` are on different file systems; copy then delete instead",
                req.from, req.to
            )),
            _ => io_error(&req.to, e),
        })?;
        entry_at(&to).map(ApiJson).map_err(|e| io_error(&req.to, e))
    })
    .await
}

/// Refuses operations that would remove or replace the root itself (or `/`).
fn refuse_root(fs: &FsRoot, path: &Path, shown: &str, what: &str) -> ApiResult<()> {
    if fs.root() == Some(path) || path == Path::new("/") {
        return Err(ApiError::conflict(format!("refusing to {what} `{shown}`: it is the root")));
    }
    Ok(())
}

/// Renames without replacing an existing `to`, atomically where the kernel and libc allow it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use nix::errno::Errno;
    use nix::fcntl::{renameat2, RenameFlags};
    match renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        // Some file systems do not support the flag; fall back to check-then-rename.
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => rename_checked(from, to),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Renames without replacing an existing `to` (checked first; not atomic on this platform).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    rename_checked(from, to)
}

fn rename_checked(from: &Path, to: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(to).is_ok() {
        return Err(io::Error::from(io::ErrorKind::AlreadyExists));
    }
    std::fs::rename(from, to)
}
