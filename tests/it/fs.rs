//! The file API end to end: a real server on loopback, driven through the typed client (and raw
//! requests where headers matter). The escape tests use a root and a sibling "outside" directory and
//! check after every attempt that nothing appeared outside the root.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use reqwest::{header, Method, StatusCode};
use sbx_agent::api::fs::{ByteRange, EntryKind};
use sbx_agent::api::ProblemKind;
use sbx_agent::client::{ClientError, WriteOptions};
use sbx_tests::{wait_for, TestRuntime};
use sha2::{Digest, Sha256};

/// A runtime rooted at `<base>/root`, with an empty `<base>/outside` as the target of escape attempts.
struct Jail {
    rt: TestRuntime,
    _base: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    outside: PathBuf,
}

impl Jail {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = std::fs::canonicalize(dir.path()).expect("canonical base");
        let (root, outside) = (base.join("root"), base.join("outside"));
        std::fs::create_dir(&root).expect("root");
        std::fs::create_dir(&outside).expect("outside");
        let r = root.clone();
        let rt = TestRuntime::start_with(move |c| c.root = Some(r)).await;
        Self { rt, _base: dir, base, root, outside }
    }

    /// Nothing was created outside the root: `outside` is empty and `base` holds only the two dirs.
    fn assert_nothing_outside(&self) {
        let outside: Vec<_> = std::fs::read_dir(&self.outside).expect("outside").collect();
        assert!(outside.is_empty(), "something was created outside the root: {outside:?}");
        let mut base: Vec<_> = std::fs::read_dir(&self.base)
            .expect("base")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
            .collect();
        base.sort();
        assert_eq!(base, ["outside", "root"], "something was created next to the root");
    }
}

fn status_of<T: std::fmt::Debug>(r: Result<T, ClientError>) -> u16 {
    r.expect_err("expected an error").status().expect("an API error with a status")
}

fn assert_outside_root<T: std::fmt::Debug>(what: &str, r: Result<T, ClientError>) {
    let err = r.expect_err(what);
    assert_eq!(err.problem_kind(), Some(ProblemKind::PathOutsideRoot), "{what}: {err}");
    assert_eq!(err.status(), Some(403), "{what}");
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn binary_round_trip_all_byte_values() {
    let rt = TestRuntime::start_rooted().await;
    let data: Vec<u8> = (0..=255u8).cycle().take(256 * 7).collect();
    let entry = rt.client.write_bytes("bin/all.bin", data.clone(), WriteOptions::default().parents()).await.unwrap();
    assert_eq!(entry.kind, EntryKind::File);
    assert_eq!(entry.size, data.len() as u64);
    assert_eq!(entry.mode, 0o644);
    assert_eq!(entry.path, rt.root_path().canonicalize().unwrap().join("bin/all.bin").to_string_lossy());
    assert_eq!(rt.client.read_bytes("bin/all.bin").await.unwrap(), data);
    assert_eq!(std::fs::read(rt.root_path().join("bin/all.bin")).unwrap(), data);
    // An empty file is a file too.
    rt.client.write_bytes("empty", Bytes::new(), WriteOptions::default()).await.unwrap();
    assert!(rt.client.read_bytes("empty").await.unwrap().is_empty());
    rt.stop().await;
}

#[tokio::test]
async fn ranges() {
    let rt = TestRuntime::start_rooted().await;
    let data: Vec<u8> = (0..100u8).collect();
    rt.client.write_bytes("r.bin", data.clone(), WriteOptions::default()).await.unwrap();
    let c = &rt.client;
    let read = |r| c.read_range("r.bin", r);
    assert_eq!(read(ByteRange::Span { start: 10, end: 19 }).await.unwrap(), data[10..20]);
    assert_eq!(read(ByteRange::Span { start: 90, end: 500 }).await.unwrap(), data[90..]);
    assert_eq!(read(ByteRange::From(95)).await.unwrap(), data[95..]);
    assert_eq!(read(ByteRange::Suffix(3)).await.unwrap(), data[97..]);
    assert_eq!(read(ByteRange::Suffix(1000)).await.unwrap(), data[..]);
    let err = read(ByteRange::From(100)).await.unwrap_err();
    assert_eq!(err.problem_kind(), Some(ProblemKind::RangeNotSatisfiable));
    assert_eq!(status_of(read(ByteRange::Suffix(0)).await), 416);

    // Headers, checked on raw responses.
    let raw = |range: Option<&str>| {
        let mut rb = c.request(Method::GET, "/v1/fs/file").query(&[("path", "r.bin")]);
        if let Some(r) = range {
            rb = rb.header(header::RANGE, r);
        }
        rb.send()
    };
    let full = raw(None).await.unwrap();
    assert_eq!(full.status(), StatusCode::OK);
    assert_eq!(full.headers()[header::ACCEPT_RANGES], "bytes");
    assert_eq!(full.headers()[header::CONTENT_LENGTH], "100");
    let part = raw(Some("bytes=5-9")).await.unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.headers()[header::CONTENT_RANGE], "bytes 5-9/100");
    assert_eq!(part.headers()[header::CONTENT_LENGTH], "5");
    assert_eq!(part.bytes().await.unwrap(), data[5..10]);
    for bad in ["bytes=200-", "bytes=9-3", "bytes=abc"] {
        let resp = raw(Some(bad)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        assert_eq!(resp.headers()[header::CONTENT_RANGE], "bytes */100", "{bad}");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/problem+json", "{bad}");
    }
    // Several ranges: we may ignore the header and send everything (RFC 9110).
    let multi = raw(Some("bytes=0-1,5-6")).await.unwrap();
    assert_eq!(multi.status(), StatusCode::OK);
    assert_eq!(multi.bytes().await.unwrap().len(), 100);
    rt.stop().await;
}

#[tokio::test]
async fn atomic_write_leaves_no_temp_files_and_keeps_or_sets_mode() {
    let rt = TestRuntime::start_rooted().await;
    let root = rt.root_path().to_path_buf();
    let c = &rt.client;
    c.write_bytes("a.txt", "one", WriteOptions::default().mode(0o600)).await.unwrap();
    assert_eq!(std::fs::metadata(root.join("a.txt")).unwrap().permissions().mode() & 0o777, 0o600);
    // Overwriting without a mode keeps the file's mode.
    let e = c.write_bytes("a.txt", "two", WriteOptions::default()).await.unwrap();
    assert_eq!(e.mode, 0o600);
    let e = c.write_bytes("a.txt", "three", WriteOptions::default().mode(0o755)).await.unwrap();
    assert_eq!(e.mode, 0o755);
    assert_eq!(c.read_bytes("a.txt").await.unwrap(), "three");
    assert_eq!(names(&root), ["a.txt"]);

    // A body that breaks off mid-way leaves the old content and no temp file.
    let broken = futures::stream::iter(vec![Ok(Bytes::from_static(b"partial")), Err(io::Error::other("boom"))]);
    let r = c.write_stream("a.txt", reqwest::Body::wrap_stream(broken), WriteOptions::default()).await;
    assert!(r.is_err(), "a broken body must not succeed");
    let clean = wait_for(Duration::from_secs(5), || async { names(&root) == ["a.txt"] }).await;
    assert!(clean, "temp file left behind: {:?}", names(&root));
    assert_eq!(c.read_bytes("a.txt").await.unwrap(), "three");

    // Writing onto a directory, into a missing directory, or with a bad mode is refused up front.
    c.mkdir("d", false).await.unwrap();
    assert_eq!(status_of(c.write_bytes("d", "x", WriteOptions::default()).await), 409);
    assert_eq!(status_of(c.write_bytes("no/such/f", "x", WriteOptions::default()).await), 404);
    let bad_mode = c.request(Method::PUT, "/v1/fs/file").query(&[("path", "m"), ("mode", "rwx")]).body("x");
    assert_eq!(status_of(c.send(bad_mode).await), 400);
    assert_eq!(names(&root), ["a.txt", "d"]);
    rt.stop().await;
}

#[tokio::test]
async fn mkdir_with_and_without_parents() {
    let rt = TestRuntime::start_rooted().await;
    let c = &rt.client;
    assert_eq!(status_of(c.mkdir("a/b/c", false).await), 404);
    let e = c.mkdir("a/b/c", true).await.unwrap();
    assert_eq!(e.kind, EntryKind::Dir);
    assert!(rt.root_path().join("a/b/c").is_dir());
    c.mkdir("a/b/c", true).await.expect("mkdir -p on an existing directory is fine");
    assert_eq!(status_of(c.mkdir("a/b/c", false).await), 409);
    c.write_bytes("f", "x", WriteOptions::default()).await.unwrap();
    assert_eq!(status_of(c.mkdir("f", true).await), 409);
    assert_eq!(status_of(c.mkdir("f/sub", true).await), 409);
    rt.stop().await;
}

#[tokio::test]
async fn move_rename_overwrite_and_conflicts() {
    let rt = TestRuntime::start_rooted().await;
    let c = &rt.client;
    c.write_bytes("a", "A", WriteOptions::default()).await.unwrap();
    c.write_bytes("b", "B", WriteOptions::default()).await.unwrap();
    let e = c.move_entry("a", "dir-missing/a", false).await;
    assert_eq!(status_of(e), 404);
    assert_eq!(status_of(c.move_entry("a", "b", false).await), 409);
    assert_eq!(c.read_bytes("b").await.unwrap(), "B", "a refused move must not replace");
    let e = c.move_entry("a", "b", true).await.unwrap();
    assert_eq!(e.name, "b");
    assert_eq!(c.read_bytes("b").await.unwrap(), "A");
    assert_eq!(status_of(c.stat("a").await), 404);
    assert_eq!(status_of(c.move_entry("nope", "x", false).await), 404);
    c.mkdir("d/e", true).await.unwrap();
    c.move_entry("b", "d/e/b", false).await.unwrap();
    assert_eq!(status_of(c.move_entry("d", "d/e/inside", false).await), 400);
    let moved = c.move_entry("d", "d2", false).await.unwrap();
    assert_eq!(moved.kind, EntryKind::Dir);
    assert_eq!(c.read_bytes("d2/e/b").await.unwrap(), "A");
    // Bad JSON is a 400 problem.
    let bad = c.request(Method::POST, "/v1/fs/move").header(header::CONTENT_TYPE, "application/json").body("{\"from\":1}");
    assert_eq!(status_of(c.send(bad).await), 400);
    rt.stop().await;
}

#[tokio::test]
async fn delete_recursive_vs_conflict() {
    let rt = TestRuntime::start_rooted().await;
    let c = &rt.client;
    c.write_bytes("t/a/b/f", "x", WriteOptions::default().parents()).await.unwrap();
    c.mkdir("empty", false).await.unwrap();
    let err = c.delete("t", false).await.unwrap_err();
    assert_eq!(err.problem_kind(), Some(ProblemKind::Conflict));
    assert!(rt.root_path().join("t/a/b/f").exists());
    c.delete("t", true).await.unwrap();
    assert!(!rt.root_path().join("t").exists());
    c.delete("empty", false).await.unwrap();
    assert_eq!(status_of(c.delete("t", true).await), 404);
    assert_eq!(status_of(c.delete(".", true).await), 409, "the root itself is not deletable");
    // A symlink is deleted, not its target.
    c.write_bytes("target", "keep", WriteOptions::default()).await.unwrap();
    std::os::unix::fs::symlink("target", rt.root_path().join("link")).unwrap();
    c.delete("link", false).await.unwrap();
    assert_eq!(c.read_bytes("target").await.unwrap(), "keep");
    rt.stop().await;
}

#[tokio::test]
async fn list_and_stat() {
    let rt = TestRuntime::start_rooted().await;
    let c = &rt.client;
    c.write_bytes("dir/b.txt", "hello", WriteOptions::default().parents().mode(0o640)).await.unwrap();
    c.mkdir("dir/a", false).await.unwrap();
    std::os::unix::fs::symlink("b.txt", rt.root_path().join("dir/c")).unwrap();
    let list = c.list("dir").await.unwrap();
    assert!(list.path.ends_with("/dir"));
    let summary: Vec<_> = list.entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    assert_eq!(summary, [("a", EntryKind::Dir), ("b.txt", EntryKind::File), ("c", EntryKind::Symlink)]);
    let b = &list.entries[1];
    assert_eq!((b.size, b.mode), (5, 0o640));
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let modified = b.modified.expect("mtime");
    assert!(modified <= now_ms + 1000 && modified + 60_000 > now_ms, "mtime {modified} vs now {now_ms}");
    assert_eq!(list.entries[2].symlink_target.as_deref(), Some("b.txt"));
    let st = c.stat("dir/c").await.unwrap();
    assert_eq!(st.kind, EntryKind::Symlink, "stat describes the link itself");
    assert_eq!(c.stat("dir/./a/..").await.unwrap().name, "dir");
    assert_eq!(c.list(".").await.unwrap().entries.len(), 1);
    let err = c.stat("missing").await.unwrap_err();
    assert_eq!(err.problem_kind(), Some(ProblemKind::NotFound));
    assert_eq!(status_of(c.list("dir/b.txt").await), 409);
    assert_eq!(status_of(c.read_bytes("dir").await), 409);
    // A missing query parameter is a 400 problem, not a bare 400.
    let resp = c.request(Method::GET, "/v1/fs/stat").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/problem+json");
    rt.stop().await;
}

/// Deterministic pseudo-random 1 MiB chunks, so the test never holds the whole payload.
fn chunk(i: u64) -> Bytes {
    let mut out = vec![0u8; 1 << 20];
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for word in out.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        word.copy_from_slice(&x.to_le_bytes());
    }
    Bytes::from(out)
}

#[tokio::test]
async fn streams_200_mib_up_and_down() {
    const CHUNKS: u64 = 200;
    let rt = TestRuntime::start_rooted().await;
    let sent = Arc::new(Mutex::new(Sha256::new()));
    let hasher = sent.clone();
    let upload = futures::stream::iter(0..CHUNKS).map(move |i| {
        let c = chunk(i);
        hasher.lock().unwrap().update(&c);
        Ok::<_, io::Error>(c)
    });
    let e = rt.client.write_stream("big.bin", reqwest::Body::wrap_stream(upload), WriteOptions::default()).await.unwrap();
    assert_eq!(e.size, CHUNKS << 20);
    let sent = sent.lock().unwrap().clone().finalize();

    let mut got = Sha256::new();
    let mut len = 0u64;
    let mut stream = rt.client.read_stream("big.bin").await.unwrap();
    while let Some(part) = stream.try_next().await.unwrap() {
        len += part.len() as u64;
        got.update(&part);
    }
    assert_eq!(len, CHUNKS << 20);
    assert_eq!(hex::encode(got.finalize()), hex::encode(sent));
    assert_eq!(names(rt.root_path()), ["big.bin"]);
    rt.stop().await;
}

#[tokio::test]
async fn path_escapes_are_refused_and_create_nothing_outside() {
    let j = Jail::new().await;
    let c = &j.rt.client;
    let outside_abs = j.outside.join("x").to_string_lossy().into_owned();
    let w = WriteOptions::default().parents();

    assert_outside_root("write ../", c.write_bytes("../outside/x", "x", w).await);
    assert_outside_root("write a/../../", c.write_bytes("a/../../outside/x", "x", w).await);
    assert_outside_root("write absolute", c.write_bytes(&outside_abs, "x", w).await);
    assert_outside_root("read /etc/passwd", c.read_bytes("/etc/passwd").await);
    assert_outside_root("read ../", c.read_bytes("../outside").await);
    assert_outside_root("list ..", c.list("..").await);
    assert_outside_root("stat /", c.stat("/").await);
    assert_outside_root("mkdir ../", c.mkdir("../outside/d", true).await);
    assert_outside_root("delete ../", c.delete("../outside", true).await);
    assert_outside_root("download ../", c.download_tar_stream("..").await.map(|_| ()));

    // Symlinks planted inside the root that lead out.
    std::os::unix::fs::symlink(&j.outside, j.root.join("out-dir")).unwrap();
    std::os::unix::fs::symlink(j.outside.join("f"), j.root.join("out-file")).unwrap();
    std::os::unix::fs::symlink("../outside/g", j.root.join("out-rel")).unwrap();
    std::fs::write(j.base.join("secret"), "s").unwrap();
    std::os::unix::fs::symlink(j.base.join("secret"), j.root.join("secret-link")).unwrap();
    assert_outside_root("write through dir link", c.write_bytes("out-dir/x", "x", w).await);
    assert_outside_root("write through dangling link", c.write_bytes("out-file", "x", w).await);
    assert_outside_root("write through relative link", c.write_bytes("out-rel", "x", w).await);
    assert_outside_root("mkdir through dir link", c.mkdir("out-dir/a/b", true).await);
    assert_outside_root("list through dir link", c.list("out-dir").await);
    assert_outside_root("read through file link", c.read_bytes("secret-link").await);
    assert_outside_root("upload into dir link", c.upload_tar_stream("out-dir", tar_of(&[file("a", b"x")])).await);
    // The links themselves can be looked at and removed.
    assert_eq!(c.stat("out-dir").await.unwrap().kind, EntryKind::Symlink);
    std::fs::remove_file(j.base.join("secret")).unwrap();

    // Move: destination (or source) outside.
    c.write_bytes("m", "m", WriteOptions::default()).await.unwrap();
    assert_outside_root("move to ../", c.move_entry("m", "../outside/m", false).await);
    assert_outside_root("move to absolute", c.move_entry("m", &outside_abs, false).await);
    assert_outside_root("move into dir link", c.move_entry("m", "out-dir/m", false).await);
    assert_outside_root("move from outside", c.move_entry("../outside", "stolen", false).await);
    assert_eq!(c.read_bytes("m").await.unwrap(), "m");

    // Tar entries.
    assert_outside_root("tar ../x", c.upload_tar_stream(".", tar_of(&[file("../outside/x", b"x")])).await);
    assert_outside_root("tar a/../../x", c.upload_tar_stream("sub", tar_of(&[file("a/../../../outside/x", b"x")])).await);
    let abs = format!("{}/abs", j.outside.display());
    assert_outside_root("tar absolute", c.upload_tar_stream(".", tar_of(&[file(&abs, b"x")])).await);
    assert_outside_root("tar /tmp", c.upload_tar_stream(".", tar_of(&[file("/tmp/sbx-escape-test", b"x")])).await);
    assert!(!Path::new("/tmp/sbx-escape-test").exists());
    let evil = [symlink("l", &j.outside.to_string_lossy()), file("l/pwned", b"x")];
    assert_outside_root("tar symlink out then write through it", c.upload_tar_stream(".", tar_of(&evil)).await);
    let evil_rel = [symlink("k", "../outside"), file("k/pwned", b"x")];
    assert_outside_root("tar relative symlink out", c.upload_tar_stream(".", tar_of(&evil_rel)).await);
    assert!(std::fs::symlink_metadata(j.root.join("l")).is_err(), "an outward symlink was unpacked");
    assert!(std::fs::symlink_metadata(j.root.join("k")).is_err(), "an outward symlink was unpacked");
    // A link that stays inside is fine, but writing through the pre-existing outward link is not.
    assert_outside_root("tar file through on-disk link", c.upload_tar_stream(".", tar_of(&[file("out-dir/p", b"x")])).await);
    let chain = [symlink("hop", "out-dir"), file("hop/p", b"x")];
    assert_outside_root("tar link to an outward link", c.upload_tar_stream(".", tar_of(&chain)).await);
    let hard = [file("h1", b"x"), entry("h2", tar::EntryType::Link, b"", Some("h1"))];
    assert_eq!(status_of(c.upload_tar_stream(".", tar_of(&hard)).await), 400);
    let dev = [entry("dev", tar::EntryType::Char, b"", None)];
    assert_eq!(status_of(c.upload_tar_stream(".", tar_of(&dev)).await), 400);

    j.assert_nothing_outside();
    j.rt.stop().await;
}

#[tokio::test]
async fn tar_and_tar_gz_upload_then_download_round_trip() {
    let rt = TestRuntime::start_rooted().await;
    let c = &rt.client;
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut exec = entry("proj/bin/run.sh", tar::EntryType::Regular, b"#!/bin/sh\necho hi\n", None);
    exec.mode = 0o755;
    let items = vec![
        entry("proj/", tar::EntryType::Directory, b"", None),
        file("proj/README.md", b"# hi\n"),
        entry("proj/bin/", tar::EntryType::Directory, b"", None),
        exec,
        file("proj/data/big.bin", &big), // its directory has no entry of its own
        symlink("proj/latest", "bin/run.sh"),
        file("proj/./deep/../flat.txt", b"normalised"),
    ];
    let done = c.upload_tar_stream("up", tar_of(&items)).await.unwrap();
    assert_eq!(done.entries, 7);
    assert_eq!(done.bytes, (5 + 18 + big.len() + 10) as u64);
    let root = rt.root_path();
    assert_eq!(std::fs::metadata(root.join("up/proj/bin/run.sh")).unwrap().permissions().mode() & 0o777, 0o755);
    assert_eq!(std::fs::read_link(root.join("up/proj/latest")).unwrap(), Path::new("bin/run.sh"));
    assert_eq!(c.read_bytes("up/proj/flat.txt").await.unwrap(), "normalised");

    // gzip: detected by magic bytes, whatever the content type says.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    io::Write::write_all(&mut gz, &tar_of(&items)).unwrap();
    let done = c.upload_tar_stream("upgz", gz.finish().unwrap()).await.unwrap();
    assert_eq!(done.entries, 7);

    // Download both and compare what is in them with what went up.
    let expected = BTreeMap::from([
        ("proj".to_owned(), Item::Dir),
        ("proj/README.md".to_owned(), Item::File(b"# hi\n".to_vec(), 0o644)),
        ("proj/bin".to_owned(), Item::Dir),
        ("proj/bin/run.sh".to_owned(), Item::File(b"#!/bin/sh\necho hi\n".to_vec(), 0o755)),
        ("proj/data".to_owned(), Item::Dir),
        ("proj/data/big.bin".to_owned(), Item::File(big.clone(), 0o644)),
        ("proj/flat.txt".to_owned(), Item::File(b"normalised".to_vec(), 0o644)),
        ("proj/latest".to_owned(), Item::Link("bin/run.sh".into())),
    ]);
    for dir in ["up", "upgz"] {
        let tar = collect(c.download_tar_stream(dir).await.unwrap()).await;
        assert_eq!(read_tar(&tar), expected, "{dir}");
    }
    // A single file downloads as a one-entry archive.
    let one = collect(c.download_tar_stream("up/proj/README.md").await.unwrap()).await;
    assert_eq!(read_tar(&one).into_keys().collect::<Vec<_>>(), ["README.md"]);
    // Not a tar at all.
    assert_eq!(status_of(c.upload_tar_stream("bad", vec![0x42u8; 1000]).await), 400);
    rt.stop().await;
}

#[tokio::test]
async fn unrooted_runtime_takes_absolute_paths() {
    let rt = TestRuntime::start().await;
    let dir = tempfile::tempdir().unwrap();
    let dir_path = std::fs::canonicalize(dir.path()).unwrap();
    let abs = dir_path.join("f.txt");
    let p = abs.to_string_lossy().into_owned();
    let c = &rt.client;
    let e = c.write_bytes(&p, "abs", WriteOptions::default()).await.unwrap();
    assert_eq!(e.path, p);
    assert_eq!(std::fs::read(&abs).unwrap(), b"abs");
    assert_eq!(c.read_bytes(&p).await.unwrap(), "abs");
    let listed = c.list(&dir_path.to_string_lossy()).await.unwrap();
    assert_eq!(listed.entries.len(), 1);
    // `..` is plain path arithmetic without a root.
    let via_dotdot = format!("{}/sub/../f.txt", dir_path.display());
    assert_eq!(c.stat(&via_dotdot).await.unwrap().path, p);
    c.delete(&p, false).await.unwrap();
    assert!(!abs.exists());
    // Tar entries still may not leave the upload directory.
    let sub = dir_path.join("sub").to_string_lossy().into_owned();
    assert_eq!(status_of(c.upload_tar_stream(&sub, tar_of(&[file("../escape", b"x")])).await), 403);
    assert!(!dir_path.join("escape").exists());
    rt.stop().await;
}

#[tokio::test]
async fn openapi_documents_the_file_routes() {
    let rt = TestRuntime::start_rooted().await;
    let doc = rt.client.openapi().await.unwrap();
    let paths = &doc["paths"];
    for (path, method) in [
        ("/v1/fs/entries", "get"),
        ("/v1/fs/stat", "get"),
        ("/v1/fs/file", "get"),
        ("/v1/fs/file", "put"),
        ("/v1/fs/entry", "delete"),
        ("/v1/fs/mkdir", "post"),
        ("/v1/fs/move", "post"),
        ("/v1/fs/upload-batch", "post"),
        ("/v1/fs/download-batch", "get"),
    ] {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} missing from the OpenAPI document");
        let responses = op["responses"].as_object().unwrap();
        assert!(responses.contains_key("400") && responses.contains_key("403"), "{method} {path}");
    }
    assert!(paths["/v1/fs/file"]["get"]["responses"].get("416").is_some());
    rt.stop().await;
}

async fn collect(stream: sbx_agent::client::ByteStream) -> Vec<u8> {
    stream.map_ok(|b| b.to_vec()).try_concat().await.unwrap()
}

// ---- tar helpers: headers written by hand so tests can build archives `tar` itself refuses to ----

struct TarItem {
    name: String,
    kind: tar::EntryType,
    data: Vec<u8>,
    link: Option<String>,
    mode: u32,
}

fn entry(name: &str, kind: tar::EntryType, data: &[u8], link: Option<&str>) -> TarItem {
    let mode = if kind == tar::EntryType::Directory { 0o755 } else { 0o644 };
    TarItem { name: name.into(), kind, data: data.to_vec(), link: link.map(Into::into), mode }
}

fn file(name: &str, data: &[u8]) -> TarItem {
    entry(name, tar::EntryType::Regular, data, None)
}

fn symlink(name: &str, target: &str) -> TarItem {
    entry(name, tar::EntryType::Symlink, b"", Some(target))
}

/// A tar archive of `items`, names copied verbatim (so `../x` and `/abs` are possible).
fn tar_of(items: &[TarItem]) -> Vec<u8> {
    let mut out = Vec::new();
    for it in items {
        let mut h = tar::Header::new_gnu();
        let name = it.name.as_bytes();
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(it.kind);
        h.set_size(it.data.len() as u64);
        h.set_mode(it.mode);
        h.set_mtime(1_700_000_000);
        if let Some(l) = &it.link {
            h.set_link_name(l).unwrap();
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&it.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[derive(Debug, PartialEq, Eq)]
enum Item {
    Dir,
    File(Vec<u8>, u32),
    Link(PathBuf),
}

fn read_tar(data: &[u8]) -> BTreeMap<String, Item> {
    let mut out = BTreeMap::new();
    let mut ar = tar::Archive::new(data);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().trim_end_matches('/').to_owned();
        let item = match e.header().entry_type() {
            tar::EntryType::Directory => Item::Dir,
            tar::EntryType::Symlink => Item::Link(e.link_name().unwrap().unwrap().into_owned()),
            tar::EntryType::Regular => {
                let mode = e.header().mode().unwrap() & 0o777;
                let mut buf = Vec::new();
                e.read_to_end(&mut buf).unwrap();
                Item::File(buf, mode)
            }
            other => panic!("unexpected entry type {other:?} for {name}"),
        };
        out.insert(name, item);
    }
    out
}

#[tokio::test]
async fn big_bodies_refused_up_front_still_get_the_problem() {
    // The runtime answers before reading the body; the client must see the 403/409, not a reset.
    let j = Jail::new().await;
    let c = &j.rt.client;
    let body = || reqwest::Body::wrap_stream(futures::stream::iter(0..64u64).map(|i| Ok::<_, io::Error>(chunk(i))));
    assert_outside_root("big write outside", c.write_stream("../outside/big", body(), WriteOptions::default()).await);
    c.mkdir("dir", false).await.unwrap();
    assert_eq!(status_of(c.write_stream("dir", body(), WriteOptions::default()).await), 409);
    assert_outside_root("big tar outside", c.upload_tar_stream("../outside", body()).await);
    // And the connection is still usable afterwards.
    c.write_bytes("after", "ok", WriteOptions::default()).await.unwrap();
    j.assert_nothing_outside();
    j.rt.stop().await;
}
