//! The conformance suite every provider must pass (feature `conformance`).
//!
//! Plain async functions taking a provider; each checks the sentences of the [`Provider`] rustdoc,
//! consults [`Provider::capabilities`] instead of guessing, and destroys what it created, also when
//! an assertion fails (the panic is re-raised after the cleanup). Sandboxes are made ready through
//! [`Lifecycle`], the path every command takes, so the suite tests what users run. A provider's test
//! calls [`run_all`] and [`faults::run_all`]:
//!
//! ```no_run
//! # async fn f(runtime: &std::path::Path) -> Result<(), sbx_providers::Error> {
//! use std::sync::Arc;
//! use sbx_providers::{conformance, docker::DockerProvider, SandboxSpec};
//! let provider = Arc::new(DockerProvider::connect().await?);
//! conformance::run_all(provider.clone(), runtime, &SandboxSpec::default()).await;
//! conformance::faults::run_all(provider, runtime, &SandboxSpec::default()).await;
//! # Ok(()) }
//! ```
//!
//! `runtime` is the runtime binary to bootstrap: for anything but `local` it must be the static one
//! (`install/build-runtime.sh`). `base` is the spec every sandbox starts from (image, limits…); the
//! suite sets the name and adds its own labels.

pub mod faults;

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use crate::bootstrap::wait_healthy;
use crate::lifecycle::{Lifecycle, Phase};
use crate::{ExecSpec, Labels, Provider, Sandbox, SandboxSpec, SandboxState};

/// The label the suite puts on everything it creates (value: a random tag per function call).
pub const TEST_LABEL: &str = "dev.sbx.conformance";

/// How long one runtime may take to answer after a resume.
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

/// Runs every check: missing ids, the full lifecycle, and ten creates in parallel.
pub async fn run_all(provider: Arc<dyn Provider>, runtime: &Path, base: &SandboxSpec) {
    missing_ids(provider.as_ref()).await;
    lifecycle(provider.clone(), runtime, base).await;
    parallel_creates(provider.as_ref(), base, 10).await;
}

/// A fresh random tag (8 hex chars).
pub(crate) fn unique() -> String {
    crate::random_hex(4)
}

pub(crate) fn spec_for(base: &SandboxSpec, name: &str, tag: &str) -> SandboxSpec {
    let mut spec = base.clone();
    spec.name = name.to_owned();
    spec.labels.insert(TEST_LABEL.into(), tag.into());
    spec
}

pub(crate) fn tag_labels(tag: &str) -> Labels {
    Labels::from([(TEST_LABEL.to_owned(), tag.to_owned())])
}

/// Operations on an id that does not exist: `get` is `Ok(None)`, `exec`/`endpoint`/`upload` (and
/// `pause` where supported) are [`crate::Error::NotFound`], `destroy` is `Ok`.
pub async fn missing_ids(provider: &dyn Provider) {
    let id = format!("sbx-conformance-missing-{}", unique());
    assert!(provider.get(&id).await.expect("get of a missing id is not an error").is_none());
    let exec = provider.exec(&id, &ExecSpec::new(["true"])).await;
    assert!(matches!(&exec, Err(e) if e.is_not_found()), "exec on a missing id: {exec:?}");
    let endpoint = provider.endpoint(&id, sbx_agent::DEFAULT_PORT).await;
    assert!(matches!(&endpoint, Err(e) if e.is_not_found()), "endpoint of a missing id: {endpoint:?}");
    let tar = crate::single_file_tar("f", b"x", 0o644).expect("tar");
    let upload = provider.upload(&id, crate::bytes_stream(tar), "/tmp").await;
    assert!(matches!(&upload, Err(e) if e.is_not_found()), "upload to a missing id: {upload:?}");
    if provider.capabilities().pause {
        let pause = provider.pause(&id).await;
        assert!(matches!(&pause, Err(e) if e.is_not_found()), "pause of a missing id: {pause:?}");
    }
    provider.destroy(&id).await.expect("destroying a missing id is Ok");
}

/// create → get → bootstrap → endpoint → health → exec → upload → list → pause/resume → destroy
/// (twice) → get is `None`. Create and bootstrap are [`Lifecycle::create`] and
/// [`Lifecycle::bootstrap`], as in `sbx up`.
pub async fn lifecycle(provider: Arc<dyn Provider>, runtime: &Path, base: &SandboxSpec) {
    let tag = unique();
    let mut spec = spec_for(base, &format!("conformance-{tag}"), &tag);
    spec.labels.insert("dev.sbx.conformance-note".into(), "spaces and = signs".into());
    let lc = Lifecycle::new(provider.clone()).with_runtime(runtime).keep_on_failure(false);
    let guard = lc.create(&spec).await.expect("create");
    let outcome = AssertUnwindSafe(lifecycle_checks(&lc, &guard, &spec)).catch_unwind().await;
    if let Err(panic) = outcome {
        drop(guard);
        std::panic::resume_unwind(panic);
    }
    let sandbox = guard.disarm();
    let provider = provider.as_ref();
    let id = &sandbox.id;
    provider.destroy(id).await.expect("destroy");
    provider.destroy(id).await.expect("destroying twice is Ok");
    assert!(provider.get(id).await.expect("get after destroy").is_none(), "get after destroy must be None");
    assert!(provider.list(&tag_labels(&tag)).await.expect("list").is_empty(), "list after destroy");
    let exec = provider.exec(id, &ExecSpec::new(["true"])).await;
    assert!(matches!(&exec, Err(e) if e.is_not_found()), "exec after destroy: {exec:?}");
}

async fn lifecycle_checks(lc: &Lifecycle, guard: &crate::lifecycle::SandboxGuard, spec: &SandboxSpec) {
    let provider = lc.provider().as_ref();
    let sandbox = guard.sandbox();
    let id = sandbox.id.as_str();
    assert_eq!(sandbox.provider, provider.name());
    assert!(
        matches!(sandbox.state, SandboxState::Running | SandboxState::Creating),
        "state after create: {}",
        sandbox.state
    );
    for (k, v) in &spec.labels {
        assert_eq!(sandbox.labels.get(k), Some(v), "label {k} missing after create: {:?}", sandbox.labels);
    }
    let got = provider.get(id).await.expect("get").expect("get of a created sandbox");
    assert_eq!(got.id, id);
    assert_eq!(got.labels, sandbox.labels);

    // Bootstrap: upload the runtime, start it, and talk to it; every phase is timed.
    let booted = lc.bootstrap(guard).await.expect("bootstrap");
    let (handle, layout) = (booted.runtime, booted.layout);
    let phases: Vec<String> = guard.recorder().phases().0.into_iter().map(|p| p.name).collect();
    let want = [Phase::Create, Phase::RuntimeUpload, Phase::Start, Phase::Healthy].map(Phase::as_str);
    assert_eq!(phases, want, "the phases of create + bootstrap");
    let client = handle.client().expect("client");
    let health = client.health().await.expect("health");
    assert_eq!(health.version, sbx_agent::VERSION);
    assert_eq!(provider.endpoint(id, layout.port).await.expect("endpoint"), handle.endpoint);

    // exec returns the remote exit code, zero or not, as Ok.
    let version = provider.exec(id, &ExecSpec::new([layout.binary_path.as_str(), "--version"])).await.expect("exec");
    assert_eq!(version.exit_code, 0, "stderr: {}", String::from_utf8_lossy(&version.stderr));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("sbx-agent "), "{version:?}");
    let bad = provider.exec(id, &ExecSpec::new([layout.binary_path.as_str(), "--no-such-flag"])).await;
    let bad = bad.expect("a failing command is not an error");
    assert_ne!(bad.exit_code, 0);
    assert!(!bad.stderr.is_empty(), "the failing command's stderr is returned");

    // upload is byte-exact and creates `dest`.
    let root = layout.root.clone().unwrap_or_else(|| "/tmp".into());
    let dest = format!("{}/sbx-conformance-{}/nested", root.trim_end_matches('/'), unique());
    let mut data = vec![0u8; 200_001];
    getrandom::fill(&mut data).expect("random");
    let mut tar = tar::Builder::new(Vec::new());
    for (path, bytes, mode) in [("a.bin", &data[..], 0o644), ("sub/b.txt", &b"hello\n"[..], 0o755)] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, path, bytes).expect("tar");
    }
    let tar = tar.into_inner().expect("tar");
    provider.upload(id, crate::bytes_stream(tar), &dest).await.expect("upload");
    let has_shell = matches!(provider.exec(id, &ExecSpec::new(["sh", "-c", "true"])).await, Ok(o) if o.exit_code == 0);
    if has_shell {
        let cat = provider.exec(id, &ExecSpec::new(["cat", &format!("{dest}/a.bin")])).await.expect("cat");
        assert_eq!(cat.exit_code, 0, "{}", String::from_utf8_lossy(&cat.stderr));
        assert!(cat.stdout == data, "uploaded bytes differ ({} vs {} bytes)", cat.stdout.len(), data.len());
        let cat = provider.exec(id, &ExecSpec::new(["cat", &format!("{dest}/sub/b.txt")])).await.expect("cat");
        assert_eq!(cat.stdout, b"hello\n");

        // env and cwd are honoured; stdout and stderr are kept apart.
        let script = r#"printf '%s|%s' "$SBX_CONFORMANCE" "$(pwd)"; echo oops >&2; exit 7"#;
        let mut cmd = ExecSpec::new(["sh", "-c", script]).env("SBX_CONFORMANCE", "a value");
        cmd.cwd = Some(dest.clone());
        cmd.timeout = Some(Duration::from_secs(30));
        let out = provider.exec(id, &cmd).await.expect("exec with env and cwd");
        assert_eq!(out.exit_code, 7);
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("a value|{dest}"));
        assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    } else {
        eprintln!(
            "conformance: {} sandbox has no `sh`; upload contents and exec env/cwd not read back",
            provider.name()
        );
    }

    // list by labels finds exactly this sandbox.
    let tag = &spec.labels[TEST_LABEL];
    let listed = provider.list(&tag_labels(tag)).await.expect("list");
    assert_eq!(listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), [id]);
    let mut other = tag_labels(tag);
    other.insert("dev.sbx.conformance-note".into(), "another value".into());
    assert!(provider.list(&other).await.expect("list").is_empty(), "list must match label values");

    // pause/resume, where supported; after resume the runtime answers again.
    if provider.capabilities().pause {
        provider.pause(id).await.expect("pause");
        let state = provider.get(id).await.expect("get").expect("exists").state;
        assert_eq!(state, SandboxState::Paused);
        provider.resume(id).await.expect("resume");
        let state = provider.get(id).await.expect("get").expect("exists").state;
        assert_eq!(state, SandboxState::Running);
        // The endpoint may change on resume (Daytona issues new preview tokens); the runtime's token does not.
        let endpoint = provider.endpoint(id, layout.port).await.expect("endpoint after resume");
        let client = endpoint.client(Some(handle.token.clone())).expect("client");
        wait_healthy(&client, HEALTHY_WITHIN).await.expect("the runtime answers after resume");
    } else {
        let pause = provider.pause(id).await;
        assert!(matches!(pause, Err(crate::Error::Unsupported { .. })), "pause without the capability: {pause:?}");
    }
}

/// `n` creates at once: all succeed with distinct ids, `list` finds them all, all are destroyed.
pub async fn parallel_creates(provider: &dyn Provider, base: &SandboxSpec, n: usize) {
    let tag = unique();
    let specs: Vec<SandboxSpec> = (0..n).map(|i| spec_for(base, &format!("conformance-par-{i}"), &tag)).collect();
    let results = futures::future::join_all(specs.iter().map(|s| provider.create(s))).await;
    let created: Vec<Sandbox> = results.iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
    let outcome = AssertUnwindSafe(async {
        let errors: Vec<String> = results.iter().filter_map(|r| r.as_ref().err().map(ToString::to_string)).collect();
        assert!(errors.is_empty(), "parallel creates failed: {errors:?}");
        let mut ids: Vec<&str> = created.iter().map(|s| s.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n, "ids must be distinct");
        let mut listed: Vec<String> =
            provider.list(&tag_labels(&tag)).await.expect("list").into_iter().map(|s| s.id).collect();
        listed.sort_unstable();
        assert_eq!(listed, ids, "list finds every sandbox created");
    })
    .catch_unwind()
    .await;
    let destroyed = futures::future::join_all(created.iter().map(|s| provider.destroy(&s.id))).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    for r in destroyed {
        r.expect("destroy");
    }
    assert!(provider.list(&tag_labels(&tag)).await.expect("list").is_empty(), "all destroyed");
}
