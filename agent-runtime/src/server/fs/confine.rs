//! Path resolution and confinement to `--root`.
//!
//! Every path the file API touches goes through here. The rules:
//! 1. A relative path is joined to the root (or, without a root, to the server's working directory).
//! 2. The result is normalised lexically (`.` dropped, `..` popped). With a root, a path that ends up
//!    outside it is refused before the file system is touched at all.
//! 3. With a root, the part of the path that exists is canonicalised (following symlinks, including
//!    dangling ones) and must still be inside the root, so a symlink planted inside the root cannot be
//!    used to read or write outside it.
//!
//! This is a check-then-use design: a process that swaps a directory for a symlink between the check
//! and the use can still race it. The file API is confined against mistakes and hostile *requests*;
//! processes running in the sandbox are not confined by it anyway.

use std::io;
use std::path::{Component, Path, PathBuf};

use super::super::ApiError;

/// How many symlinks a dangling chain may have before we give up (the kernel's own limit is 40).
const MAX_LINK_HOPS: usize = 40;

/// Whether the last component of a path is followed when it is a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Follow {
    /// Operations that open the target (read, write, list, cwd): the final symlink is followed and
    /// where it points must be inside the root.
    Final,
    /// Operations on the entry itself (lstat, delete, rename): only the parent must be inside.
    NotFinal,
}

/// Joins `path` to `base` (when relative) and removes `.` and `..` lexically. `..` at `/` stays at `/`.
pub(crate) fn normalize(base: &Path, path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    let joined;
    let full = if path.is_absolute() {
        path
    } else {
        joined = base.join(path);
        &joined
    };
    for comp in full.components() {
        match comp {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(c) => out.push(c),
        }
    }
    out
}

/// Checks that the existing part of `path` (already normalised and lexically inside `root`) resolves
/// inside `root` once symlinks are followed. Blocking: call from a blocking context.
pub(crate) fn check_links(root: &Path, path: &Path, follow: Follow, shown: &str) -> Result<(), ApiError> {
    let mut probe = match follow {
        Follow::Final => path.to_path_buf(),
        // The root itself has no parent inside the root; it is trivially fine.
        Follow::NotFinal => match path.parent() {
            Some(p) if path != root => p.to_path_buf(),
            _ => return Ok(()),
        },
    };
    let mut hops = 0;
    loop {
        match std::fs::canonicalize(&probe) {
            Ok(real) if real.starts_with(root) => return Ok(()),
            Ok(_) => return Err(ApiError::outside_root(shown)),
            Err(_) => {}
        }
        // Canonicalising failed: either the path does not exist yet (check its parent: creating it
        // there is what the caller will do), or it is a dangling symlink, whose target is where a
        // write would land, so check that instead.
        match dangling_target(&probe) {
            Some(target) => {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(ApiError::bad_request(format!("`{shown}`: too many levels of symbolic links")));
                }
                probe = target;
            }
            None => match probe.parent() {
                Some(parent) => probe = parent.to_path_buf(),
                // Only `/` has no parent, and `/` always canonicalises; be safe anyway.
                None => return Err(ApiError::outside_root(shown)),
            },
        }
    }
}

/// Where `path` points, normalised, if it is a symlink.
fn dangling_target(path: &Path) -> Option<PathBuf> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.file_type().is_symlink() {
        return None;
    }
    let target = std::fs::read_link(path).ok()?;
    let dir = path.parent().unwrap_or(Path::new("/"));
    Some(normalize(dir, &target))
}

/// Whether a symlink target written at `link` (a normalised path inside `root`) stays inside `root`,
/// judged lexically (the target may not exist yet). Used for symlinks unpacked from tar archives.
pub(crate) fn link_target_inside(root: &Path, link: &Path, target: &Path) -> bool {
    let dir = link.parent().unwrap_or(root);
    normalize(dir, target).starts_with(root)
}

/// Refuses paths that cannot name a file (empty, or with NUL bytes) with a clear message.
pub(crate) fn validate_input(path: &str) -> Result<(), ApiError> {
    if path.is_empty() {
        return Err(ApiError::bad_request("`path` is empty; give a file or directory path"));
    }
    if path.contains('\0') {
        return Err(ApiError::bad_request("`path` contains a NUL byte"));
    }
    Ok(())
}

/// The server's working directory, the base for relative paths without a root.
pub(crate) fn current_dir() -> io::Result<PathBuf> {
    std::env::current_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_lexically() {
        let base = Path::new("/r");
        assert_eq!(normalize(base, Path::new("a/./b/../c")), PathBuf::from("/r/a/c"));
        assert_eq!(normalize(base, Path::new("../../x")), PathBuf::from("/x"));
        assert_eq!(normalize(base, Path::new("/abs/..//y")), PathBuf::from("/y"));
        assert_eq!(normalize(base, Path::new(".")), PathBuf::from("/r"));
    }

    #[test]
    fn link_targets() {
        let root = Path::new("/r");
        assert!(link_target_inside(root, Path::new("/r/a/l"), Path::new("../b")));
        assert!(!link_target_inside(root, Path::new("/r/a/l"), Path::new("../../b")));
        assert!(!link_target_inside(root, Path::new("/r/l"), Path::new("/etc/passwd")));
        assert!(link_target_inside(root, Path::new("/r/l"), Path::new("/r/x")));
    }

    #[test]
    fn symlink_out_is_caught() {
        let root = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let root_c = std::fs::canonicalize(root.path()).unwrap();
        std::os::unix::fs::symlink(out.path(), root_c.join("dirlink")).unwrap();
        std::os::unix::fs::symlink(out.path().join("nope/f"), root_c.join("dangling")).unwrap();
        std::os::unix::fs::symlink("inside", root_c.join("ok")).unwrap();
        let check = |p: &str, f| check_links(&root_c, &root_c.join(p), f, p).is_ok();
        assert!(!check("dirlink/x", Follow::Final));
        assert!(!check("dirlink", Follow::Final));
        assert!(check("dirlink", Follow::NotFinal));
        assert!(!check("dangling", Follow::Final));
        assert!(!check("dangling/deeper/x", Follow::Final));
        assert!(check("ok", Follow::Final));
        assert!(check("new/dir/file", Follow::Final));
    }
}
