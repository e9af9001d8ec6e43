//! The shared provider conformance suite (`sbx_providers::conformance`), once per provider.

use sbx_providers::docker::DockerProvider;
use sbx_providers::local::LocalProvider;
use sbx_providers::{conformance, SandboxSpec};

/// The image Docker sandboxes use in tests: `$SBX_BASE_IMAGE` (set by install/test-deps.sh) or
/// `sbx-base:latest`.
pub(crate) fn base_image() -> String {
    std::env::var("SBX_BASE_IMAGE").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "sbx-base:latest".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_provider_conforms() {
    let base = tempfile::tempdir().expect("tempdir");
    let provider = LocalProvider::new(base.path());
    conformance::run_all(&provider, &sbx_tests::static_runtime(), &SandboxSpec::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_provider_conforms() {
    if !sbx_tests::docker_available() {
        eprintln!("skipping: Docker is not available (set SBX_REQUIRE_DOCKER=1 to fail instead)");
        return;
    }
    let state = tempfile::tempdir().expect("tempdir");
    let runtime = sbx_tests::static_runtime();
    let provider = DockerProvider::connect()
        .await
        .expect("connect to Docker")
        .with_state_dir(state.path())
        .with_runtime(&runtime)
        .with_image(base_image());
    conformance::run_all(&provider, &runtime, &SandboxSpec::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vercel_provider_conforms() {
    let Some(fake) = crate::vercel::fake().await else { return };
    let provider = crate::vercel::provider(&fake);
    conformance::run_all(&provider, &sbx_tests::static_runtime(), &SandboxSpec::default()).await;
    assert!(fake.sandbox_names().is_empty(), "the suite left sandboxes behind: {:?}", fake.sandbox_names());
}
