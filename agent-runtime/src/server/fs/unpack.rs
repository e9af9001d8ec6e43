//! Unpacking a tar stream into a directory (blocking side of `POST /v1/fs/upload-batch`).
//!
//! We unpack entry by entry ourselves instead of trusting `tar::Archive::unpack`, because every name,
//! every symlink target and every write must pass the same confinement as the rest of the file API:
//! - an entry's name must stay inside the destination directory (no absolute names, no `..` out);
//! - a symlink's target must stay inside the root (without a root: anywhere, but see the next rule);
//! - nothing is ever written through a symlink that leads outside the boundary (the root, or the
//!   destination directory when there is no root), so a link planted earlier in the same archive, or
//!   already on disk, cannot carry a later entry out.
//!
//! Entries are applied as they arrive, so an archive refused half-way leaves the entries before the bad
//! one in place (all inside the boundary).

use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use tar::EntryType;

use super::confine::{self, Follow};
use super::{io_error, FsRoot};
use crate::api::fs::UploadBatchResult;
use crate::stream_io;
use crate::server::{ApiError, ApiResult};

/// After a refused archive, how much of the rest of the body we still read so the client (which may
/// still be sending) gets our answer instead of a reset connection.
const DRAIN_AFTER_ERROR: u64 = 64 * 1024 * 1024;

/// Unpacks the tar (or gzipped tar) read from `raw` into the directory `shown` (created if missing).
pub(super) fn unpack_into<R: Read>(fs: &FsRoot, shown: &str, mut raw: R, gzip_hint: bool) -> ApiResult<UploadBatchResult> {
    let result = Unpacker::new(fs, shown).and_then(|mut u| u.run(&mut raw, gzip_hint));
    let limit = if result.is_ok() { u64::MAX } else { DRAIN_AFTER_ERROR };
    // Trailing padding after the end-of-archive blocks, or the rest of a refused archive.
    let _ = io::copy(&mut (&mut raw).take(limit), &mut io::sink());
    result
}

struct Unpacker {
    /// The canonical destination directory; entry names are relative to it.
    dest: PathBuf,
    /// Nothing may be written through a symlink that leaves this directory.
    boundary: PathBuf,
    /// Symlink targets must stay inside this directory (the root), if set.
    link_boundary: Option<PathBuf>,
    /// Directory modes, applied at the end so a read-only directory doesn't block its own contents.
    dir_modes: Vec<(PathBuf, u32)>,
    /// One chunk, reused for every file: file data goes to disk in large writes (see `stream_io`).
    buf: Vec<u8>,
    done: UploadBatchResult,
}

impl Unpacker {
    fn new(fs: &FsRoot, shown: &str) -> ApiResult<Self> {
        let dest = fs.resolve(shown)?;
        std::fs::create_dir_all(&dest).map_err(|e| io_error(shown, e))?;
        // Canonical, so that the prefix checks below compare like with like.
        let dest = std::fs::canonicalize(&dest).map_err(|e| io_error(shown, e))?;
        let root = fs.root().map(Path::to_path_buf);
        Ok(Self {
            boundary: root.clone().unwrap_or_else(|| dest.clone()),
            link_boundary: root,
            dest,
            dir_modes: Vec::new(),
            buf: vec![0; stream_io::CHUNK],
            done: UploadBatchResult { entries: 0, bytes: 0 },
        })
    }

    fn run<R: Read>(&mut self, raw: &mut R, gzip_hint: bool) -> ApiResult<UploadBatchResult> {
        let (head, n) = read_head(raw).map_err(bad_archive)?;
        let stream = (&head[..n]).chain(raw);
        if gzip_hint || head[..n] == [0x1f, 0x8b] {
            self.entries(flate2::read::MultiGzDecoder::new(stream))?;
        } else {
            self.entries(stream)?;
        }
        self.apply_dir_modes()?;
        Ok(self.done)
    }

    fn entries<R: Read>(&mut self, reader: R) -> ApiResult<()> {
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(bad_archive)? {
            let mut entry = entry.map_err(bad_archive)?;
            self.entry(&mut entry)?;
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> ApiResult<()> {
        let name = entry.path().map_err(bad_archive)?.into_owned();
        let shown = name.to_string_lossy().into_owned();
        let kind = entry.header().entry_type();
        // Global pax headers carry defaults for later entries, nothing to create.
        if kind == EntryType::XGlobalHeader {
            return Ok(());
        }
        let target = self.place(&name, &shown)?;
        let mode = entry.header().mode().map_err(bad_archive)?;
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mtime = entry.header().mtime().ok();
                self.file(entry, &target, &shown, mode, mtime)
            }
            EntryType::Directory => self.dir(&target, &shown, mode),
            EntryType::Symlink => {
                let link = entry.link_name().map_err(bad_archive)?.map(|l| l.into_owned());
                let link = link.filter(|l| !l.as_os_str().is_empty()).ok_or_else(|| {
                    ApiError::bad_request(format!("archive entry `{shown}` is a symlink without a target"))
                })?;
                self.symlink(&target, &shown, &link)
            }
            EntryType::Link => Err(ApiError::bad_request(format!(
                "archive entry `{shown}` is a hard link; hard links are not supported (archive with --hard-dereference)"
            ))),
            EntryType::Char | EntryType::Block | EntryType::Fifo => Err(ApiError::bad_request(format!(
                "archive entry `{shown}` is a device or FIFO; only files, directories and symlinks are supported"
            ))),
            other => Err(ApiError::bad_request(format!(
                "archive entry `{shown}` has an unsupported type ({:?})",
                other.as_byte() as char
            ))),
        }
    }

    /// Where an entry named `name` goes: inside the destination, lexically. Absolute names and names
    /// whose `..` climb out of the destination are refused.
    fn place(&self, name: &Path, shown: &str) -> ApiResult<PathBuf> {
        let mut out = self.dest.clone();
        for comp in name.components() {
            match comp {
                Component::Normal(c) => out.push(c),
                Component::CurDir => {}
                Component::ParentDir if out != self.dest => {
                    out.pop();
                }
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                    return Err(ApiError::outside_root(&format!("archive entry {shown}")))
                }
            }
        }
        Ok(out)
    }

    /// Checks `path` against the boundary: its existing part must not lead outside through a symlink.
    fn confine(&self, path: &Path, follow: Follow, shown: &str) -> ApiResult<()> {
        let shown = format!("archive entry {shown}");
        if !path.starts_with(&self.boundary) {
            return Err(ApiError::outside_root(&shown));
        }
        confine::check_links(&self.boundary, path, follow, &shown)
    }

    fn file<R: Read>(&mut self, data: &mut R, target: &Path, shown: &str, mode: u32, mtime: Option<u64>) -> ApiResult<()> {
        if target == self.dest {
            return Err(ApiError::bad_request(format!("archive entry `{shown}` is a file named like the directory")));
        }
        self.prepare_slot(target, shown)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true) // O_EXCL: never follows a symlink someone slipped in since prepare_slot
            .mode(0o600)
            .open(target)
            .map_err(|e| io_error(shown, e))?;
        let written = match stream_io::copy_chunked(data, &mut file, &mut self.buf) {
            Ok(n) => n,
            Err(e) => {
                // Don't leave a truncated file behind that looks like a complete one.
                let _ = std::fs::remove_file(target);
                return Err(bad_archive(e));
            }
        };
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o777)).map_err(|e| io_error(shown, e))?;
        if let Some(secs) = mtime {
            // Best effort: a bogus mtime in the archive is not worth failing the upload for.
            let _ = file.set_modified(UNIX_EPOCH + Duration::from_secs(secs));
        }
        self.done.entries += 1;
        self.done.bytes += written;
        Ok(())
    }

    fn dir(&mut self, target: &Path, shown: &str, mode: u32) -> ApiResult<()> {
        self.confine(target, Follow::Final, shown)?;
        match std::fs::symlink_metadata(target) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                // A link to a directory inside the boundary (checked above) is as good as one.
                if !std::fs::metadata(target).is_ok_and(|m| m.is_dir()) {
                    return Err(ApiError::conflict(format!("archive entry `{shown}` would replace a symlink")));
                }
            }
            Ok(_) => return Err(ApiError::conflict(format!("archive entry `{shown}` would replace a file"))),
            Err(_) => std::fs::create_dir_all(target).map_err(|e| io_error(shown, e))?,
        }
        // The destination's own mode is the caller's business, not the archive's.
        if target != self.dest {
            self.dir_modes.push((target.to_path_buf(), mode & 0o1777));
        }
        self.done.entries += 1;
        Ok(())
    }

    fn symlink(&mut self, target: &Path, shown: &str, link: &Path) -> ApiResult<()> {
        if let Some(root) = &self.link_boundary {
            let dir = target.parent().unwrap_or(root);
            let points_to = confine::normalize(dir, link);
            // Lexically first, then through whatever links already exist on the way.
            if !confine::link_target_inside(root, target, link) {
                return Err(ApiError::outside_root(&format!("target of archive symlink {shown}")));
            }
            confine::check_links(root, &points_to, Follow::Final, &format!("target of archive symlink {shown}"))?;
        }
        if target == self.dest {
            return Err(ApiError::bad_request(format!("archive entry `{shown}` would replace the directory")));
        }
        self.prepare_slot(target, shown)?;
        std::os::unix::fs::symlink(link, target).map_err(|e| io_error(shown, e))?;
        self.done.entries += 1;
        Ok(())
    }

    /// Makes `target`'s directory (checked) and clears whatever non-directory is at `target` itself, so
    /// the new entry replaces it rather than writing through it (as tar does).
    fn prepare_slot(&self, target: &Path, shown: &str) -> ApiResult<()> {
        self.confine(target, Follow::NotFinal, shown)?;
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_error(shown, e))?;
        }
        match std::fs::symlink_metadata(target) {
            Ok(m) if m.is_dir() => {
                Err(ApiError::conflict(format!("archive entry `{shown}` would replace a directory")))
            }
            Ok(_) => std::fs::remove_file(target).map_err(|e| io_error(shown, e)),
            Err(_) => Ok(()),
        }
    }

    /// Deepest first, so making a parent read-only cannot stop us fixing a child.
    fn apply_dir_modes(&mut self) -> ApiResult<()> {
        for (dir, mode) in self.dir_modes.drain(..).rev() {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
                .map_err(|e| io_error(&dir.to_string_lossy(), e))?;
        }
        Ok(())
    }
}

/// Reads up to two bytes (the gzip magic) without assuming one read returns both.
fn read_head<R: Read>(raw: &mut R) -> io::Result<([u8; 2], usize)> {
    let mut head = [0u8; 2];
    let mut n = 0;
    while n < head.len() {
        match raw.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((head, n))
}

/// The archive could not be read: malformed, truncated, or the body broke off.
fn bad_archive(e: io::Error) -> ApiError {
    ApiError::bad_request(format!("reading the tar archive failed: {e}"))
}
