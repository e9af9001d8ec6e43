//! File API wire types (`/v1/fs/*`).
//!
//! Paths are strings: relative ones resolve against the runtime's root (or its working directory when
//! it has none); absolute ones are allowed but must be inside the root when one is set.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// What kind of file-system object an entry is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed when listing or stat-ing).
    Symlink,
    /// Anything else: socket, FIFO, device.
    Other,
}

/// One file-system entry, as returned by list, stat, write, mkdir and move.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The last path component (`/` for the file-system root).
    pub name: String,
    /// The absolute, normalised path on the runtime's side.
    pub path: String,
    /// What it is.
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Size in bytes (of the link itself for symlinks).
    pub size: u64,
    /// Permission bits (e.g. `420` = `0o644`).
    pub mode: u32,
    /// Last modification, in milliseconds since the Unix epoch, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<u64>,
    /// Where a symlink points (as stored, not resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlink_target: Option<String>,
}

/// `GET /v1/fs/entries`: a directory's entries, sorted by name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EntryList {
    /// The directory listed (absolute, normalised).
    pub path: String,
    /// Its entries, not including `.` and `..`.
    pub entries: Vec<Entry>,
}

/// A query naming one path.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams, PartialEq, Eq)]
#[into_params(parameter_in = Query)]
pub struct PathQuery {
    /// The path (relative to the root, or absolute).
    pub path: String,
}

/// `PUT /v1/fs/file` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, PartialEq, Eq)]
#[into_params(parameter_in = Query)]
pub struct WriteQuery {
    /// The file to write (replaced atomically if it exists).
    pub path: String,
    /// Permission bits as octal digits (`644`, `0644` or `0o755`). Default: the existing file's mode,
    /// or `644` for a new file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Create missing parent directories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parents: Option<bool>,
}

/// `DELETE /v1/fs/entry` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, PartialEq, Eq)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// The file, symlink (not its target) or directory to delete.
    pub path: String,
    /// Delete a non-empty directory and everything in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursive: Option<bool>,
}

/// `POST /v1/fs/mkdir` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams, PartialEq, Eq)]
#[into_params(parameter_in = Query)]
pub struct MkdirQuery {
    /// The directory to create.
    pub path: String,
    /// Create missing parents too, and succeed if the directory already exists (like `mkdir -p`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parents: Option<bool>,
}

/// `POST /v1/fs/move` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MoveRequest {
    /// What to move (a symlink is moved itself, not its target).
    pub from: String,
    /// Where to move it, including the new name.
    pub to: String,
    /// Replace an existing file (or empty directory) at `to`; otherwise an existing `to` is a 409.
    #[serde(default)]
    pub overwrite: bool,
}

/// `POST /v1/fs/upload-batch` result.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UploadBatchResult {
    /// Files, directories and symlinks unpacked.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

// Only for the OpenAPI document (`type: string, format: binary`); the handlers stream bodies and
// never build one of these.
/// Raw bytes.
#[derive(Debug, Clone, ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct BinaryBody(pub Vec<u8>);

/// Parses permission bits given as octal digits: `644`, `0644`, `0o644`. Only the low 12 bits are
/// accepted (no file-type bits).
pub fn parse_mode(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 5 {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
}

/// One byte range of a `Range: bytes=…` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b`: from `start` to `end`, both inclusive.
    Span {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// `bytes=a-`: from `a` to the end.
    From(u64),
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

/// What a `Range` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// One range we can serve (or refuse as unsatisfiable).
    One(ByteRange),
    /// Something we serve the whole file for, as RFC 9110 allows: another unit, or several ranges.
    Ignore,
    /// A `bytes` range that is malformed.
    Invalid,
}

impl ByteRange {
    /// The header value, e.g. `bytes=0-99`.
    pub fn header_value(&self) -> String {
        match self {
            Self::Span { start, end } => format!("bytes={start}-{end}"),
            Self::From(start) => format!("bytes={start}-"),
            Self::Suffix(n) => format!("bytes=-{n}"),
        }
    }

    /// Parses a `Range` header value.
    pub fn parse(header: &str) -> RangeRequest {
        let Some(spec) = header.trim().strip_prefix("bytes=") else {
            return RangeRequest::Ignore;
        };
        if spec.contains(',') {
            return RangeRequest::Ignore;
        }
        let Some((a, b)) = spec.trim().split_once('-') else {
            return RangeRequest::Invalid;
        };
        let num = |s: &str| s.trim().parse::<u64>().ok();
        let range = match (a.trim().is_empty(), b.trim().is_empty()) {
            (true, false) => num(b).map(Self::Suffix),
            (false, true) => num(a).map(Self::From),
            (false, false) => match (num(a), num(b)) {
                (Some(start), Some(end)) if start <= end => Some(Self::Span { start, end }),
                _ => None,
            },
            (true, true) => None,
        };
        range.map_or(RangeRequest::Invalid, RangeRequest::One)
    }

    /// The inclusive `(first, last)` byte positions within a file of `size` bytes, or `None` when the
    /// range is unsatisfiable (starts at or past the end, or asks for zero bytes).
    pub fn clamp(&self, size: u64) -> Option<(u64, u64)> {
        if size == 0 {
            return None;
        }
        match *self {
            Self::Span { start, end } if start < size => Some((start, end.min(size - 1))),
            Self::From(start) if start < size => Some((start, size - 1)),
            Self::Suffix(n) if n > 0 => Some((size - n.min(size), size - 1)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("644"), Some(0o644));
        assert_eq!(parse_mode("0755"), Some(0o755));
        assert_eq!(parse_mode("0o600"), Some(0o600));
        assert_eq!(parse_mode("4755"), Some(0o4755));
        assert_eq!(parse_mode("888"), None);
        assert_eq!(parse_mode(""), None);
        assert_eq!(parse_mode("100644"), None);
    }

    #[test]
    fn ranges() {
        use ByteRange::*;
        assert_eq!(ByteRange::parse("bytes=0-9"), RangeRequest::One(Span { start: 0, end: 9 }));
        assert_eq!(ByteRange::parse("bytes=5-"), RangeRequest::One(From(5)));
        assert_eq!(ByteRange::parse("bytes=-3"), RangeRequest::One(Suffix(3)));
        assert_eq!(ByteRange::parse("bytes=9-0"), RangeRequest::Invalid);
        assert_eq!(ByteRange::parse("bytes=x-1"), RangeRequest::Invalid);
        assert_eq!(ByteRange::parse("bytes=-"), RangeRequest::Invalid);
        assert_eq!(ByteRange::parse("bytes=0-1,4-5"), RangeRequest::Ignore);
        assert_eq!(ByteRange::parse("items=0-1"), RangeRequest::Ignore);
        assert_eq!(Span { start: 2, end: 100 }.clamp(10), Some((2, 9)));
        assert_eq!(From(10).clamp(10), None);
        assert_eq!(Suffix(20).clamp(10), Some((0, 9)));
        assert_eq!(Suffix(0).clamp(10), None);
        assert_eq!(From(0).clamp(0), None);
        for r in [Span { start: 1, end: 2 }, From(3), Suffix(4)] {
            assert_eq!(ByteRange::parse(&r.header_value()), RangeRequest::One(r));
        }
    }
}
