//! The E2B provider against the fake E2B (`sbx_tests::fakes::e2b`, one Docker container per sandbox):
//! the CLI end to end and the faults it must survive (the shared suite runs in `conformance.rs`).

use std::time::Duration;

use sbx_providers::bootstrap::{bootstrap, wait_healthy};
use sbx_providers::e2b::{E2bProvider, RetryPolicy, CREATE_KEY};
use sbx_providers::{Error, ExecSpec, Labels, Provider, SandboxSpec, SandboxState};
use sbx_tests::fakes::e2b::{FakeE2b, Route};

use crate::cloud_cli::Cli;

async fn fake() -> Option<FakeE2b> {
    if !sbx_tests::docker_available() {
        eprintln!("skipping: Docker is not available (set SBX_REQUIRE_DOCKER=1 to fail instead)");
        return None;
    }
    Some(FakeE2b::start().await)
}

pub(crate) fn provider(fake: &FakeE2b) -> E2bProvider {
    E2bProvider::new(fake.api_key())
        .expect("provider")
        .with_api_url(fake.url())
        .with_sandbox_url(fake.url())
        .with_retry(RetryPolicy { attempts: 3, base_delay: Duration::from_millis(50), max_delay: Duration::from_secs(2), ..RetryPolicy::default() })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}

/// Containers of this fake that Docker still has (the fake's own bookkeeping is not the oracle).
async fn containers(fake: &FakeE2b) -> Vec<String> {
    let out = tokio::process::Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter", "label=dev.sbx.fake=e2b"])
        .output()
        .await
        .expect("docker ps");
    let prefix = fake.container_prefix();
    String::from_utf8_lossy(&out.stdout).lines().filter(|n| n.starts_with(&prefix)).map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_honouring_retry_after_and_makes_one_sandbox() {
    let Some(fake) = fake().await else { return };
    let p = provider(&fake);
    fake.fail_next(Route::Create, 429, Some(1));
    let started = std::time::Instant::now();
    let sandbox = p.create(&SandboxSpec::named("throttled")).await.expect("create after a 429");
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was honoured");
    assert_eq!(fake.creates(), 1);
    assert_eq!(fake.sandbox_ids(), std::slice::from_ref(&sandbox.id), "exactly one sandbox");
    // A 429 that never ends is reported as such, with the wait the platform asked for.
    for _ in 0..3 {
        fake.fail_next(Route::Get, 429, Some(0));
    }
    let err = p.get(&sandbox.id).await.expect_err("persistent 429");
    assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");
    p.destroy(&sandbox.id).await.expect("destroy");
    assert!(fake.sandbox_ids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_on_create_is_a_clear_error_and_leaves_nothing() {
    let Some(fake) = fake().await else { return };
    let p = provider(&fake);
    // Every try makes the sandbox and then answers 500 (the server timed out on the way back): the
    // Idempotency-Key keeps it to one sandbox, and the provider kills it when it gives up.
    for _ in 0..3 {
        fake.fail_next_after(Route::Create, 500);
    }
    let err = p.create(&SandboxSpec::named("broken")).await.expect_err("500 on every attempt");
    let msg = err.to_string();
    assert!(msg.contains("e2b") && msg.contains("500"), "{msg}");
    assert_eq!(fake.creates(), 1, "retries reuse the Idempotency-Key");
    assert!(fake.sandbox_ids().is_empty(), "no orphan: {:?}", fake.sandbox_ids());
    assert!(containers(&fake).await.is_empty(), "no orphan container");
    // A 500 before anything happened, then success: still exactly one sandbox.
    fake.fail_next(Route::Create, 500, None);
    let s = p.create(&SandboxSpec::named("second-try")).await.expect("create after one 500");
    assert_eq!(fake.sandbox_ids(), std::slice::from_ref(&s.id));
    assert!(s.labels.contains_key(CREATE_KEY));
    assert_eq!(p.list(&Labels::new()).await.expect("list").len(), 1);
    p.destroy(&s.id).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_names_the_env_var_and_the_login_command() {
    let Some(fake) = fake().await else { return };
    let p = E2bProvider::new("wrong-key").expect("provider").with_api_url(fake.url()).with_sandbox_url(fake.url());
    let err = p.create(&SandboxSpec::named("nope")).await.expect_err("401");
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("E2B_API_KEY") && msg.contains("sbx auth login e2b"), "{msg}");
    assert_eq!(fake.creates(), 0);
    // An unknown template is ImageNotFound, naming where sbx's template comes from.
    let p = provider(&fake);
    let mut spec = SandboxSpec::named("notemplate");
    spec.image = Some("no-such-template".into());
    let err = p.create(&spec).await.expect_err("404 template");
    assert!(matches!(err, Error::ImageNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("templates/e2b"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_keep_files_and_the_runtime_comes_back() {
    let Some(fake) = fake().await else { return };
    let p = provider(&fake);
    let sandbox = p.create(&SandboxSpec::named("pausable")).await.expect("create");
    let id = sandbox.id.as_str();
    let layout = p.runtime_layout(id).await.expect("layout");
    let handle = bootstrap(&p, id, &sbx_tests::static_runtime(), &layout).await.expect("bootstrap");
    let client = handle.client().expect("client");
    let tar = sbx_providers::single_file_tar("kept.txt", b"still here", 0o644).expect("tar");
    p.upload(id, sbx_providers::bytes_stream(tar), "/root/work").await.expect("upload");

    p.pause(id).await.expect("pause");
    assert_eq!(p.get(id).await.expect("get").expect("exists").state, SandboxState::Paused);
    p.pause(id).await.expect("pausing a paused sandbox (409) is Ok");
    let exec = p.exec(id, &ExecSpec::new(["true"])).await.expect_err("exec on a paused sandbox");
    assert!(exec.to_string().contains("sbx resume"), "{exec}");
    p.resume(id).await.expect("resume");
    assert_eq!(p.get(id).await.expect("get").expect("exists").state, SandboxState::Running);
    let cat = p.exec(id, &ExecSpec::new(["cat", "/root/work/kept.txt"])).await.expect("cat");
    assert_eq!(cat.stdout, b"still here");
    wait_healthy(&client, Duration::from_secs(30)).await.expect("the runtime answers again with its old token");
    p.destroy(id).await.expect("destroy");
    assert!(containers(&fake).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_exec_cp_prompt_down_through_the_cli() {
    let Some(fake) = fake().await else { return };
    let cli = Cli::new(fake.env());
    cli.ok(&["up", "--provider", "e2b", "--name", "eb"]).await;
    assert_eq!(fake.sandbox_ids().len(), 1);

    // Using the sandbox pushes its E2B timeout forward (it was made without --ttl).
    let id = fake.sandbox_ids().remove(0);
    provider(&fake).set_timeout(&id, Duration::from_secs(30)).await.expect("set_timeout");
    assert!(fake.end_at(&id).expect("exists") <= unix_now() + 30);
    let out = cli.ok(&["exec", "eb", "--", "sh", "-c", "echo out; echo err >&2; exit 0"]).await;
    assert!(fake.end_at(&id).expect("exists") >= unix_now() + 3000, "sbx exec extended the timeout to an hour");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    cli.exit_code_and_bytes("eb").await;

    cli.copy_in_and_out("eb", "/root/in", "hello e2b\n").await;

    // sbx pause / resume: the files stay.
    cli.ok(&["pause", "eb"]).await;
    assert_eq!(provider(&fake).get(&id).await.expect("get").expect("exists").state, SandboxState::Paused);
    cli.ok(&["resume", "eb"]).await;
    let out = cli.ok(&["exec", "eb", "--", "cat", "/root/in/hello.txt"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello e2b\n");

    cli.mock_prompt_echoes("eb", "hello from e2b").await;

    let out = cli.ok(&["ls", "--json"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("e2b"), "{}", String::from_utf8_lossy(&out.stdout));
    cli.ok(&["down", "eb"]).await;
    assert!(fake.sandbox_ids().is_empty(), "down kills the sandbox");
    assert!(containers(&fake).await.is_empty(), "and its container");

    // A wrong key through the CLI: one clear error naming the fix.
    let out = cli.command(&["up", "--provider", "e2b", "--name", "nokey"]).env("E2B_API_KEY", "wrong").output().await.expect("run sbx");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "a refused key is an auth failure: {err}");
    assert!(err.contains("E2B_API_KEY") && err.contains("sbx auth login e2b"), "{err}");
    assert!(fake.sandbox_ids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_finds_e2b_orphans_with_no_state_row() {
    let Some(fake) = fake().await else { return };
    let p = provider(&fake);
    let [expired, orphan, alive] = sbx_tests::gc_specs();
    let expired = p.create(&expired).await.expect("create");
    let orphan = p.create(&orphan).await.expect("create");
    let alive = p.create(&alive).await.expect("create");

    let cli = Cli::new(fake.env());
    let out = cli.ok(&["gc", "--json"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&expired.id) && text.contains(&orphan.id), "{text}");
    assert_eq!(fake.sandbox_ids(), std::slice::from_ref(&alive.id), "gc removed exactly the expired and the orphaned sandbox");
    p.destroy(&alive.id).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_has_the_runtime_so_bootstrap_uploads_nothing() {
    let Some(fake) = fake().await else { return };
    let runtime = sbx_tests::static_runtime();
    let build = tokio::process::Command::new(sbx_tests::workspace_root().join("templates/e2b/build.sh"))
        .arg("local")
        .env("BASE", crate::conformance::base_image())
        .env("SBX_RUNTIME", &runtime)
        .output()
        .await
        .expect("run templates/e2b/build.sh");
    assert!(build.status.success(), "build.sh failed:\n{}", String::from_utf8_lossy(&build.stderr));
    let image = String::from_utf8_lossy(&build.stdout).lines().last().unwrap_or_default().trim().to_owned();
    assert_eq!(image, format!("sbx-e2b:{}", sbx_agent::VERSION));
    fake.add_template("sbx-agent-test", &image);

    let p = provider(&fake).with_template("sbx-agent-test");
    let sandbox = p.create(&SandboxSpec::named("templated")).await.expect("create from the template");
    let layout = p.runtime_layout(&sandbox.id).await.expect("layout");
    let handle = bootstrap(&p, &sandbox.id, &runtime, &layout).await.expect("bootstrap");
    assert_eq!(handle.client().expect("client").health().await.expect("health").version, sbx_agent::VERSION);
    assert_eq!(fake.uploads(), 0, "the runtime was already there");
    p.destroy(&sandbox.id).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_resume_takes_over_a_paused_sandbox_by_id() {
    let Some(fake) = fake().await else { return };
    let p = provider(&fake);
    // A sandbox made elsewhere, with a runtime whose token this host never sees, then paused.
    let sandbox = p.create(&SandboxSpec::named("elsewhere")).await.expect("create");
    let id = sandbox.id.clone();
    let layout = p.runtime_layout(&id).await.expect("layout");
    bootstrap(&p, &id, &sbx_tests::static_runtime(), &layout).await.expect("bootstrap");
    let tar = sbx_providers::single_file_tar("kept.txt", b"from before", 0o644).expect("tar");
    p.upload(&id, sbx_providers::bytes_stream(tar), "/root").await.expect("upload");
    p.pause(&id).await.expect("pause");

    let cli = Cli::new(fake.env());
    let out = cli.ok(&["up", "--provider", "e2b", "--resume", &id]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "elsewhere\n", "named after its sbx name label");
    assert_eq!(p.get(&id).await.expect("get").expect("exists").state, SandboxState::Running);
    let out = cli.ok(&["exec", "elsewhere", "--", "cat", "/root/kept.txt"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from before");
    // Taking it over twice, or an id that does not exist, is a usage error.
    let out = cli.run(&["up", "--provider", "e2b", "--resume", &id, "--name", "again"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli.run(&["up", "--provider", "e2b", "--resume", "inotasandbox"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    cli.ok(&["down", "elsewhere"]).await;
    assert!(fake.sandbox_ids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_is_the_public_host_of_the_port() {
    let Some(fake) = fake().await else { return };
    let p = provider(&fake);
    let sandbox = p.create(&SandboxSpec::named("public")).await.expect("create");
    let id = sandbox.id.as_str();
    let layout = p.runtime_layout(id).await.expect("layout");
    bootstrap(&p, id, &sbx_tests::static_runtime(), &layout).await.expect("bootstrap");

    // Without E2B_SANDBOX_URL the runtime is at https://2468-<id>.<domain>, no header needed.
    let public = E2bProvider::new(fake.api_key()).expect("provider").with_api_url(fake.url());
    let endpoint = public.endpoint(id, 2468).await.expect("endpoint");
    let host = format!("2468-{id}.{}", fake.domain());
    assert_eq!(endpoint, sbx_providers::Endpoint::http(format!("https://{host}")));
    // That host, sent to the fake (no DNS or TLS here), reaches the runtime in the container.
    let health: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/health", fake.url()))
        .header("Host", &host)
        .send()
        .await
        .expect("GET /v1/health through the public host")
        .json()
        .await
        .expect("health JSON");
    assert_eq!(health["version"], sbx_agent::VERSION);
    p.destroy(id).await.expect("destroy");
}
