//! The shared provider conformance suite (`sbx_providers::conformance`) and its fault tests
//! (`conformance::faults`), run on every registered provider by one macro. E2B and Daytona run
//! against their fakes. `every_registered_provider_is_under_test` fails when a registry entry has no
//! run here.

use std::path::PathBuf;
use std::sync::Arc;

use sbx_providers::docker::DockerProvider;
use sbx_providers::local::LocalProvider;
use sbx_providers::{conformance, registry, Provider, SandboxSpec};
use sbx_tests::fakes::daytona::FakeDaytona;
use sbx_tests::fakes::e2b::FakeE2b;
use sbx_tests::fakes::modal::FakeModal;
use sbx_tests::fakes::vercel::FakeVercel;

/// The image Docker sandboxes use in tests: `$SBX_BASE_IMAGE` (set by install/test-deps.sh) or
/// `sbx-base:latest`.
pub(crate) fn base_image() -> String {
    std::env::var("SBX_BASE_IMAGE").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "sbx-base:latest".into())
}

/// A provider under test, with what keeps it alive and the oracles that say nothing is left.
struct Target {
    provider: Arc<dyn Provider>,
    runtime: PathBuf,
    base: SandboxSpec,
    local: Option<tempfile::TempDir>,
    docker_state: Option<tempfile::TempDir>,
    e2b: Option<FakeE2b>,
    daytona: Option<FakeDaytona>,
    vercel: Option<FakeVercel>,
    sshd: Option<sbx_tests::sshd::SshServer>,
    modal: Option<FakeModal>,
}

impl Target {
    fn new(provider: Arc<dyn Provider>) -> Self {
        Self {
            provider,
            runtime: sbx_tests::static_runtime(),
            base: SandboxSpec::default(),
            local: None,
            docker_state: None,
            e2b: None,
            daytona: None,
            vercel: None,
            sshd: None,
            modal: None,
        }
    }

    /// What is left of the sandboxes tagged `tags`, asked of the platform itself (directories, Docker,
    /// the fake's own list), not of our provider code.
    async fn leftovers(&self, tags: &[String]) -> Vec<String> {
        let mut left = Vec::new();
        if let Some(dir) = &self.local {
            let entries = std::fs::read_dir(dir.path()).map(|rd| rd.filter_map(Result::ok).collect::<Vec<_>>()).unwrap_or_default();
            left.extend(entries.into_iter().filter(|e| e.path().is_dir()).map(|e| e.path().display().to_string()));
        }
        if self.docker_state.is_some() {
            for tag in tags {
                let filter = format!("label={}={tag}", conformance::TEST_LABEL);
                let out = tokio::process::Command::new("docker").args(["ps", "-a", "-q", "--filter", &filter]).output().await.expect("docker ps");
                left.extend(String::from_utf8_lossy(&out.stdout).lines().map(|l| format!("container {l}")));
            }
        }
        if let Some(fake) = &self.e2b {
            left.extend(fake.sandbox_ids().into_iter().map(|id| format!("e2b sandbox {id}")));
            let out = tokio::process::Command::new("docker")
                .args(["ps", "-a", "--format", "{{.Names}}", "--filter", sbx_tests::fakes::e2b::CONTAINER_LABEL])
                .output()
                .await
                .expect("docker ps");
            let prefix = fake.container_prefix();
            left.extend(String::from_utf8_lossy(&out.stdout).lines().filter(|n| n.starts_with(&prefix)).map(|n| format!("container {n}")));
        }
        if let Some(fake) = &self.daytona {
            left.extend(fake.sandbox_ids().into_iter().map(|id| format!("daytona sandbox {id}")));
        }
        if let Some(fake) = &self.vercel {
            left.extend(fake.sandbox_names().into_iter().map(|id| format!("vercel sandbox {id}")));
        }
        if let Some(server) = &self.sshd {
            left.extend(server.leftovers().into_iter().map(|l| format!("on the ssh server: {l}")));
        }
        if let Some(fake) = &self.modal {
            left.extend(fake.running_ids().into_iter().map(|id| format!("modal sandbox {id}")));
            left.extend(fake.containers().await.into_iter().map(|c| format!("container {c}")));
        }
        left
    }
}

fn docker_ok() -> bool {
    let ok = sbx_tests::docker_available();
    if !ok {
        eprintln!("skipping: Docker is not available (set SBX_REQUIRE_DOCKER=1 to fail instead)");
    }
    ok
}

async fn local() -> Option<Target> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = Target::new(Arc::new(LocalProvider::new(dir.path())));
    t.local = Some(dir);
    Some(t)
}

async fn docker() -> Option<Target> {
    if !docker_ok() {
        return None;
    }
    let state = tempfile::tempdir().expect("tempdir");
    let runtime = sbx_tests::static_runtime();
    let provider = DockerProvider::connect()
        .await
        .expect("connect to Docker")
        .with_state_dir(state.path())
        .with_runtime(&runtime)
        .with_image(base_image());
    let mut t = Target::new(Arc::new(provider));
    t.docker_state = Some(state);
    Some(t)
}

async fn e2b() -> Option<Target> {
    if !docker_ok() {
        return None;
    }
    let fake = FakeE2b::start().await;
    let provider = crate::e2b::provider(&fake);
    let mut t = Target::new(Arc::new(provider));
    t.e2b = Some(fake);
    Some(t)
}

async fn daytona() -> Option<Target> {
    if !docker_ok() {
        return None;
    }
    let fake = FakeDaytona::start().await;
    let provider = crate::daytona::provider(&fake);
    let mut t = Target::new(Arc::new(provider));
    t.daytona = Some(fake);
    Some(t)
}

async fn vercel() -> Option<Target> {
    let fake = crate::vercel::fake().await?;
    let provider = crate::vercel::provider(&fake);
    let mut t = Target::new(Arc::new(provider));
    t.vercel = Some(fake);
    Some(t)
}

/// A real OpenSSH server in a container (fish login shell, noexec /tmp); no Docker or no image is a
/// failure, not a skip.
async fn ssh() -> Option<Target> {
    assert!(sbx_tests::docker_available(), "the ssh provider's tests need Docker for their sshd");
    let server = sbx_tests::sshd::SshServer::start(&[]);
    server.trust();
    let runtime = sbx_tests::static_runtime();
    let provider = sbx_providers::ssh::SshProvider::new(vec![server.dest()], server.opts()).with_runtime(&runtime);
    let mut t = Target::new(Arc::new(provider));
    t.sshd = Some(server);
    Some(t)
}

async fn modal() -> Option<Target> {
    let fake = crate::modal::fake().await?;
    let provider = crate::modal::provider(&fake);
    let mut t = Target::new(Arc::new(provider));
    t.modal = Some(fake);
    Some(t)
}

/// For each `name => constructor`: `conforms` (the suite) and `survives_faults` (the fault tests), and
/// the list of names under test.
macro_rules! conformance_runs {
    ($($name:ident => $make:expr),+ $(,)?) => {
        /// The providers this file runs the suite on.
        const UNDER_TEST: &[&str] = &[$(stringify!($name)),+];
        $(
            mod $name {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn conforms() {
                    let Some(t) = $make.await else { return };
                    assert_eq!(t.provider.name(), stringify!($name));
                    assert_eq!(t.provider.capabilities(), registry::get(stringify!($name)).expect("registered").capabilities);
                    conformance::run_all(t.provider.clone(), &t.runtime, &t.base).await;
                    let left = t.leftovers(&[]).await;
                    assert!(left.is_empty(), "the suite left these behind: {left:?}");
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn survives_faults() {
                    let Some(t) = $make.await else { return };
                    let tags = conformance::faults::run_all(t.provider.clone(), &t.runtime, &t.base).await;
                    let left = t.leftovers(&tags).await;
                    assert!(left.is_empty(), "the fault tests left these behind: {left:?}");
                }
            }
        )+
    };
}

conformance_runs! {
    local => local(),
    docker => docker(),
    e2b => e2b(),
    daytona => daytona(),
    vercel => vercel(),
    ssh => ssh(),
    modal => modal(),
}

/// The suite and the fault tests on `--isolation docker`: each sandbox is a container of the SSH
/// host's Docker engine (a server container that shares this machine's network and engine).
mod ssh_docker_isolation {
    use super::*;

    fn target() -> Target {
        assert!(sbx_tests::docker_available(), "the ssh provider's tests need Docker for their sshd");
        let server = sbx_tests::sshd::SshServer::start_docker_host();
        server.trust();
        let runtime = sbx_tests::static_runtime();
        let provider = sbx_providers::ssh::SshProvider::new(vec![server.dest()], server.opts())
            .with_runtime(&runtime)
            .with_isolation(sbx_providers::ssh::Isolation::Docker);
        let mut t = Target::new(Arc::new(provider));
        t.sshd = Some(server);
        // Leftovers are containers: ask the engine itself.
        t.docker_state = Some(tempfile::tempdir().expect("tempdir"));
        t
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conforms() {
        let t = target();
        conformance::run_all(t.provider.clone(), &t.runtime, &t.base).await;
        let left = t.leftovers(&[]).await;
        assert!(left.is_empty(), "the suite left these behind: {left:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn survives_faults() {
        let t = target();
        let tags = conformance::faults::run_all(t.provider.clone(), &t.runtime, &t.base).await;
        let left = t.leftovers(&tags).await;
        assert!(left.is_empty(), "the fault tests left these behind: {left:?}");
    }
}

#[test]
fn every_registered_provider_is_under_test() {
    let missing: Vec<&str> = registry::names().into_iter().filter(|n| !UNDER_TEST.contains(n)).collect();
    assert!(missing.is_empty(), "registered providers without a conformance run in tests/it/conformance.rs: {missing:?}");
}
