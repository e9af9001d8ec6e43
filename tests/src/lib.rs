//! Shared test helpers: start a runtime in-process or as the real binary, find the built binaries,
//! and (in [`fake_llm`]) the fake LLM server the real agent CLIs talk to.
//!
//! Tests never sleep for a fixed time to wait for something: they poll a condition with [`wait_for`].

pub mod browser;
pub mod fake_llm;
pub mod fakes;
pub mod release_channel;
pub mod sessions;
pub mod sshd;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sbx_agent::client::Client;
use sbx_agent::server::{RunningServer, ServerConfig};

/// A fresh random token (hex).
pub fn random_token() -> String {
    sbx_providers::bootstrap::fresh_token()
}

/// A runtime started inside the test process, with a client that has the right token.
pub struct TestRuntime {
    /// The server (shut it down with [`TestRuntime::stop`]).
    pub server: RunningServer,
    /// A client with the right token.
    pub client: Client,
    /// The token.
    pub token: String,
    /// The root, when started with one (kept alive here).
    pub root: Option<tempfile::TempDir>,
}

impl TestRuntime {
    /// A runtime on loopback with a random token and no root.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A runtime confined to a fresh temporary root.
    pub async fn start_rooted() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        let mut rt = Self::start_with(move |c| c.root = Some(path)).await;
        rt.root = Some(dir);
        rt
    }

    /// A runtime whose config `tweak` adjusts.
    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let token = random_token();
        let mut config = ServerConfig::loopback(Some(token.clone()));
        // The server runs inside the test binary: helper subcommands come from the real sbx-agent.
        let helper = target_profile_dir().join("sbx-agent");
        config.helper_exe = helper.exists().then_some(helper);
        tweak(&mut config);
        let server = sbx_agent::server::start(config).await.expect("start runtime");
        let client = match (server.base_url(), &server.unix_socket) {
            (Some(url), _) => Client::new(&url, Some(token.clone())),
            (None, Some(sock)) => Client::unix(sock, Some(token.clone())),
            (None, None) => unreachable!("start() refuses a config with no listener"),
        }
        .expect("client");
        Self { server, client, token, root: None }
    }

    /// The base URL.
    pub fn url(&self) -> String {
        self.server.base_url().expect("tcp")
    }

    /// The root directory, when there is one.
    pub fn root_path(&self) -> &Path {
        self.root.as_ref().expect("started with a root").path()
    }

    /// Stops the server and kills its processes.
    pub async fn stop(self) {
        self.server.shutdown().await;
    }
}

/// `target/<profile>` of the running test binary (tests live in `target/<profile>/deps`).
pub fn target_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

/// A binary of this workspace built by `cargo build` (the test command builds them all first).
pub fn bin(name: &str) -> PathBuf {
    let p = target_profile_dir().join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --workspace` first (the README's test command does)",
        p.display()
    );
    p
}

/// The statically linked runtime built by `install/build-runtime.sh` (needed by container tests).
pub fn static_runtime() -> PathBuf {
    if let Ok(p) = std::env::var("SBX_RUNTIME") {
        return PathBuf::from(p);
    }
    let p = workspace_root().join("target/x86_64-unknown-linux-gnu/runtime/sbx-agent");
    assert!(p.exists(), "{} missing: run install/build-runtime.sh first (the README's test command does)", p.display());
    p
}

/// Polls `cond` every 20 ms until it returns true or `timeout` passes; returns whether it became true.
pub async fn wait_for<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether a Docker engine answers (container tests skip with a printed reason when it doesn't,
/// unless `SBX_REQUIRE_DOCKER=1`, which CI sets).
pub fn docker_available() -> bool {
    let ok = std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok && std::env::var("SBX_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("Docker is required (SBX_REQUIRE_DOCKER=1) but `docker version` failed");
    }
    ok
}

/// Specs of three sandboxes for `sbx gc` tests: one past its ttl, one whose creator (a process on
/// this host) is gone, and one whose creator (this test) is alive. gc must remove the first two only.
pub fn gc_specs() -> [sbx_providers::SandboxSpec; 3] {
    use sbx_providers::{labels, SandboxSpec};
    let mut expired = SandboxSpec::named("expired");
    expired.labels.insert(labels::EXPIRES_AT.into(), "1".into());
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    let dead_pid = child.id();
    child.wait().expect("wait");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname").trim().to_owned();
    let mut orphan = SandboxSpec::named("orphan");
    orphan.labels.insert(labels::CREATOR_HOST.into(), host.clone());
    orphan.labels.insert(labels::CREATOR_PID.into(), dead_pid.to_string());
    let mut alive = SandboxSpec::named("alive");
    alive.labels.insert(labels::CREATOR_HOST.into(), host);
    alive.labels.insert(labels::CREATOR_PID.into(), std::process::id().to_string());
    [expired, orphan, alive]
}
