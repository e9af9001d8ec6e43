//! `upload`: the tar stream goes to the host's `tar` through the exec channel's stdin and is unpacked
//! into a fresh directory next to `dest`; meanwhile this side reads the same bytes and hashes every
//! file. The host's `sha256sum` must agree on each before anything is moved into place with `mv`
//! (a rename: a running binary at the same path is replaced, never written through).

use std::io::Read;

use bytes::Bytes;
use futures::StreamExt;

use super::conn::Conn;
use super::{must_exist, q, remote_failure, NAME};
use crate::{ByteStream, Error, Result};

#[derive(Debug)]
struct Entry {
    path: String,
    dir: bool,
    mode: u32,
    sha256: Option<String>,
}

/// Reads what the channel receives, as `std::io::Read` for the tar parser.
struct ChanReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

fn parse(reader: ChanReader) -> std::result::Result<Vec<Entry>, String> {
    use sha2::Digest as _;
    let mut ar = tar::Archive::new(reader);
    let mut out = Vec::new();
    for entry in ar.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        let path = path.to_str().ok_or_else(|| format!("path {} is not UTF-8", path.display()))?.trim_start_matches("./").to_owned();
        if path.is_empty() || path == "." {
            continue;
        }
        if path.starts_with('/') || path.split('/').any(|c| c == "..") || path.contains('\n') {
            return Err(format!("refusing the archive entry `{path}` (absolute, `..` or a newline)"));
        }
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
        let sha256 = if kind.is_file() {
            let mut h = sha2::Sha256::new();
            std::io::copy(&mut entry, &mut h).map_err(|e| e.to_string())?;
            Some(hex::encode(h.finalize()))
        } else {
            None
        };
        out.push(Entry { path: path.trim_end_matches('/').to_owned(), dir: kind.is_dir(), mode, sha256 });
    }
    Ok(out)
}

pub(super) async fn upload(conn: &Conn, id: &str, sandbox_dir: &str, archive: ByteStream, dest: &str) -> Result<()> {
    if !dest.starts_with('/') {
        return Err(Error::InvalidSpec(format!("upload destination `{dest}` must be an absolute path on the host")));
    }
    let dest = dest.trim_end_matches('/');
    let dest = if dest.is_empty() { "/" } else { dest };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(32);
    let parser = tokio::task::spawn_blocking(move || parse(ChanReader { rx, cur: Bytes::new() }));
    let teed: ByteStream = Box::pin(archive.then(move |r| {
        let tx = tx.clone();
        async move {
            if let Ok(b) = &r {
                // The parser stops reading at the end-of-archive blocks; a closed channel is fine.
                let _ = tx.send(b.clone()).await;
            }
            r
        }
    }));
    let unpack = format!(
        "{}\nmkdir -p {dest} || exit 70\nt=$(mktemp -d {dest}/.sbx-upload-XXXXXX) || exit 70\nprintf '%s\\n' \"$t\"\ntar -xpf - -C \"$t\" || {{ rm -rf \"$t\"; exit 71; }}",
        must_exist(sandbox_dir),
        dest = q(dest)
    );
    let out = conn.run(&unpack, Some(teed), None).await?;
    let entries = parser.await.map_err(|e| Error::io("reading the upload", std::io::Error::other(e)))?;
    if super::gone(&out) {
        return Err(Error::NotFound { sandbox: id.to_owned() });
    }
    if out.exit_code != 0 {
        return Err(remote_failure(&format!("unpacking into {dest}"), out.exit_code, &out));
    }
    let tmp = String::from_utf8(out.stdout).ok().and_then(|s| s.lines().next().map(str::to_owned)).unwrap_or_default();
    if !tmp.starts_with(dest) {
        return Err(Error::Provider { provider: NAME, message: format!("unexpected answer from mktemp on the host: `{tmp}`") });
    }
    let entries = match entries {
        Ok(e) => e,
        Err(e) => {
            let _ = conn.run(&format!("rm -rf {}", q(&tmp)), None, None).await;
            return Err(Error::InvalidSpec(format!("bad upload archive: {e}")));
        }
    };
    let sums: String = entries.iter().filter_map(|e| e.sha256.as_ref().map(|h| format!("{h}  ./{}\n", e.path))).collect();
    let mut place = format!("t={}\ncd \"$t\" || exit 70\n", q(&tmp));
    if !sums.is_empty() {
        place.push_str("r=$(sha256sum -c - 2>&1) || { printf '%s\\n' \"$r\" >&2; cd /; rm -rf \"$t\"; exit 73; }\n");
    }
    for e in &entries {
        let target = format!("{}/{}", dest.trim_end_matches('/'), e.path);
        if e.dir {
            place.push_str(&format!("mkdir -p {t} && chmod {m:o} {t} || exit 74\n", t = q(&target), m = e.mode));
        } else {
            let parent = target.rsplit_once('/').map(|(p, _)| p).filter(|p| !p.is_empty()).unwrap_or("/");
            place.push_str(&format!("mkdir -p {} && mv -f ./{} {} || exit 74\n", q(parent), q(&e.path), q(&target)));
        }
    }
    place.push_str("cd / && rm -rf \"$t\"\n");
    let stdin = (!sums.is_empty()).then(|| crate::bytes_stream(sums.into_bytes()));
    let out = conn.run(&place, stdin, None).await?;
    match out.exit_code {
        0 => Ok(()),
        73 => Err(Error::Provider {
            provider: NAME,
            message: format!("the upload to {dest} arrived corrupted (SHA-256 differs): {}", String::from_utf8_lossy(&out.stderr).trim()),
        }),
        c => Err(remote_failure(&format!("moving the upload into {dest}"), c, &out)),
    }
}
