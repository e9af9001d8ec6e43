//! Build facts for `sbx --version` and `sbx self-update`: the git commit, the target triple, and where
//! releases are published (set by install/release.sh; a plain checkout build has none built in).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SBX_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=SBX_RELEASES_URL");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    // A source tarball has no git: the release script passes the commit in instead.
    let commit = std::env::var("SBX_GIT_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| git_commit(&dir));
    println!("cargo:rustc-env=SBX_BUILD_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
    println!("cargo:rustc-env=SBX_BUILD_TARGET={}", std::env::var("TARGET").expect("TARGET"));
    println!("cargo:rustc-env=SBX_BUILD_RELEASES_URL={}", std::env::var("SBX_RELEASES_URL").unwrap_or_default());
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).current_dir(dir).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// The short commit, and the files whose change means a new one (HEAD, the branch's ref, packed refs),
/// so a commit rebuilds only this crate's version string.
fn git_commit(dir: &Path) -> Option<String> {
    let commit = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    let mut watch = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watch.extend(git(dir, &["symbolic-ref", "-q", "HEAD"]));
    for name in watch {
        if let Some(p) = git(dir, &["rev-parse", "--git-path", &name]) {
            let p = dir.join(p);
            // A path that does not exist would make cargo re-run this script on every build.
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    Some(commit)
}
