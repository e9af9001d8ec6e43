//! `sbx cp` moves bytes exactly and keeps permission bits, both ways, on a local and a Docker sandbox:
//! a tree whose files sit around the 1 MiB chunk the transfer code reads and writes in (0, 1,
//! CHUNK-1, CHUNK, CHUNK+1 and 3 MiB+5 bytes) with mixed modes and nesting, and one random file
//! checked by the sandbox's own `sha256sum`. Sizes are small on purpose: the 200 MiB tree and the
//! 1 GiB file are in the benchmark (`install/bench.sh`).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

const CHUNK: usize = sbx_agent::stream_io::CHUNK;

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("getrandom");
    b
}

/// An isolated sbx home; takes its sandboxes down when dropped.
struct Sbx {
    home: tempfile::TempDir,
    docker: bool,
}

impl Sbx {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(sbx_tests::bin("sbx"));
        c.args(args).env("XDG_STATE_HOME", self.home.path()).env("NO_COLOR", "1").stdin(Stdio::null());
        if self.docker {
            c.env("SBX_RUNTIME", sbx_tests::static_runtime());
        } else {
            c.env_remove("SBX_RUNTIME").env("DOCKER_HOST", format!("unix://{}/no-docker.sock", self.home.path().display()));
        }
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("run sbx");
        assert!(out.status.success(), "sbx {args:?} failed ({:?}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8 output")
    }
}

impl Drop for Sbx {
    fn drop(&mut self) {
        let _ = self.cmd(&["down", "--all"]).output();
    }
}

/// Relative path → (kind and permission bits, sha256 of the content) for everything under `root`.
fn tree(root: &Path) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let p = e.expect("entry").path();
            let rel = p.strip_prefix(root).expect("under root").display().to_string();
            let meta = std::fs::symlink_metadata(&p).expect("meta");
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                stack.push(p.clone());
                out.insert(rel, (format!("dir {mode:o}"), String::new()));
            } else {
                out.insert(rel, (format!("file {mode:o}"), sha(&std::fs::read(&p).expect("read"))));
            }
        }
    }
    out
}

/// The same description of a tree, made inside the sandbox by its own tools.
fn remote_tree(sbx: &Sbx, name: &str, dir: &str) -> BTreeMap<String, (String, String)> {
    let script = format!(
        "cd {dir} && find . -mindepth 1 -type d -printf 'dir %m %P\\n' && find . -type f -printf '%P\\n' | while read -r f; do printf 'file %s %s %s\\n' \"$(stat -c %a \"$f\")\" \"$f\" \"$(sha256sum < \"$f\" | cut -d' ' -f1)\"; done"
    );
    sbx.ok(&["exec", name, "--", "sh", "-c", &script])
        .lines()
        .map(|l| {
            let mut parts = l.splitn(4, ' ');
            let (kind, mode, path) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
            (path.to_owned(), (format!("{kind} {mode}"), parts.next().unwrap_or_default().to_owned()))
        })
        .collect()
}

fn make_tree(root: &Path) {
    let files: [(&str, usize, u32); 7] = [
        ("empty", 0, 0o644),
        ("one", 1, 0o600),
        ("a/below", CHUNK - 1, 0o644),
        ("a/exact", CHUNK, 0o755),
        ("a/b/above", CHUNK + 1, 0o640),
        ("a/b/c/big", 3 * CHUNK + 5, 0o700),
        ("a/b/c/script.sh", 20, 0o750),
    ];
    for (rel, len, mode) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, random_bytes(len)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::create_dir_all(root.join("d/empty-dir")).unwrap();
    std::fs::set_permissions(root.join("d"), std::fs::Permissions::from_mode(0o750)).unwrap();
}

fn cp_round_trips(sbx: &Sbx, name: &str, remote: &str) {
    let host = tempfile::tempdir().unwrap();
    let src = host.path().join("src");
    make_tree(&src);
    let want = tree(&src);
    sbx.ok(&["cp", src.to_str().unwrap(), &format!("{name}:{remote}/tree")]);
    assert_eq!(remote_tree(sbx, name, &format!("{remote}/tree")), want, "the sandbox's copy of the tree differs");
    let back = host.path().join("back");
    sbx.ok(&["cp", &format!("{name}:{remote}/tree"), back.to_str().unwrap()]);
    assert_eq!(tree(&back), want, "the tree copied back differs");

    // One file, a few chunks and an odd tail, both ways; the sandbox's sha256sum is the oracle.
    let data = random_bytes(5 * CHUNK + 12_345);
    let file = host.path().join("one.bin");
    std::fs::write(&file, &data).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o751)).unwrap();
    sbx.ok(&["cp", file.to_str().unwrap(), &format!("{name}:{remote}/one.bin")]);
    let inside = sbx.ok(&["exec", name, "--", "sh", "-c", &format!("stat -c %a {remote}/one.bin && sha256sum < {remote}/one.bin")]);
    assert_eq!(inside.split_whitespace().take(2).collect::<Vec<_>>(), ["751", sha(&data).as_str()], "the file in the sandbox differs");
    let got = host.path().join("one-back.bin");
    sbx.ok(&["cp", &format!("{name}:{remote}/one.bin"), got.to_str().unwrap()]);
    assert!(std::fs::read(&got).unwrap() == data, "the file copied back differs");
    assert_eq!(std::fs::metadata(&got).unwrap().permissions().mode() & 0o7777, 0o751);
}

#[test]
fn cp_is_byte_exact_and_keeps_modes_on_local() {
    let sbx = Sbx { home: tempfile::tempdir().unwrap(), docker: false };
    sbx.ok(&["up", "--provider", "local", "--name", "cpb", "-q"]);
    let root = sbx.ok(&["exec", "cpb", "--", "pwd"]);
    cp_round_trips(&sbx, "cpb", root.trim());
}

#[test]
fn cp_is_byte_exact_and_keeps_modes_on_docker() {
    if !sbx_tests::docker_available() {
        eprintln!("skipping: Docker is not available (set SBX_REQUIRE_DOCKER=1 to fail instead)");
        return;
    }
    let sbx = Sbx { home: tempfile::tempdir().unwrap(), docker: true };
    sbx.ok(&["up", "--provider", "docker", "--image", &crate::conformance::base_image(), "--name", "cpb", "-q"]);
    cp_round_trips(&sbx, "cpb", "/workspace");
}
