//! The Daytona provider against the fake Daytona (`sbx_tests::fakes::daytona`, one Docker container per
//! sandbox): the CLI end to end and the faults it must survive (the shared suite runs in `conformance.rs`).

use std::time::Duration;

use sbx_providers::bootstrap::{bootstrap, wait_healthy};
use sbx_providers::daytona::{DaytonaProvider, RetryPolicy};
use sbx_providers::{Error, ExecSpec, Provider, SandboxSpec, SandboxState};
use sbx_tests::fakes::daytona::FakeDaytona;

use crate::cloud_cli::Cli;

const CREATE: &str = "POST /api/sandbox";

async fn fake() -> Option<FakeDaytona> {
    if !sbx_tests::docker_available() {
        eprintln!("skipping: Docker is not available (set SBX_REQUIRE_DOCKER=1 to fail instead)");
        return None;
    }
    Some(FakeDaytona::start().await)
}

pub(crate) fn provider(fake: &FakeDaytona) -> DaytonaProvider {
    DaytonaProvider::new(fake.api_url(), fake.api_key())
        .expect("provider")
        .with_retry(RetryPolicy { attempts: 3, base_delay: Duration::from_millis(50), max_delay: Duration::from_secs(2), ..RetryPolicy::default() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_and_makes_one_sandbox() {
    let Some(fake) = fake().await else { return };
    let p = provider(&fake);
    fake.fail_next(CREATE, 429, Some(1));
    let started = std::time::Instant::now();
    let sandbox = p.create(&SandboxSpec::named("throttled")).await.expect("create after a 429");
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was honoured");
    assert_eq!(fake.hits(CREATE), 2);
    assert_eq!(fake.sandbox_ids(), vec![sandbox.id.clone()], "exactly one sandbox");
    // A 429 on an idempotent call is retried too; one that never ends says so.
    fake.fail_next("GET /api/sandbox/{id}", 429, None);
    assert!(p.get(&sandbox.id).await.expect("get after a 429").is_some());
    fake.fail_times("GET /api/sandbox/{id}", 429, Some(0), 5);
    let err = p.get(&sandbox.id).await.expect_err("persistent 429");
    assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");
    p.destroy(&sandbox.id).await.expect("destroy");
    assert!(fake.sandbox_ids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_on_create_is_a_clear_error_and_leaves_nothing() {
    let Some(fake) = fake().await else { return };
    let p = provider(&fake);
    fake.fail_times(CREATE, 500, None, 3);
    let err = p.create(&SandboxSpec::named("broken")).await.expect_err("500 on every attempt");
    let msg = err.to_string();
    assert!(msg.contains("daytona") && msg.contains("500") && msg.contains("Internal server error"), "{msg}");
    assert_eq!(fake.hits(CREATE), 3, "retried up to the policy's attempts");
    assert!(fake.sandbox_ids().is_empty(), "no orphan");
    assert!(p.list(&sbx_providers::Labels::new()).await.expect("list").is_empty());
    // One 500, then success: still exactly one sandbox.
    fake.fail_next(CREATE, 500, None);
    let s = p.create(&SandboxSpec::named("second-try")).await.expect("create after one 500");
    assert_eq!(fake.sandbox_ids(), vec![s.id.clone()]);
    p.destroy(&s.id).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_names_the_env_var_and_the_login_command() {
    let Some(fake) = fake().await else { return };
    let p = DaytonaProvider::new(fake.api_url(), "wrong-key").expect("provider");
    let err = p.create(&SandboxSpec::named("nope")).await.expect_err("401");
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("DAYTONA_API_KEY") && msg.contains("sbx auth login daytona"), "{msg}");
    assert!(fake.sandbox_ids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_start_keep_files_and_the_runtime_comes_back() {
    let Some(fake) = fake().await else { return };
    let p = provider(&fake);
    let sandbox = p.create(&SandboxSpec::named("pausable")).await.expect("create");
    let id = sandbox.id.as_str();
    let layout = p.runtime_layout(id).await.expect("layout");
    let handle = bootstrap(&p, id, &sbx_tests::static_runtime(), &layout).await.expect("bootstrap");
    let client = handle.client().expect("client");
    let tar = sbx_providers::single_file_tar("kept.txt", b"still here", 0o644).expect("tar");
    p.upload(id, sbx_providers::bytes_stream(tar), "/root/work").await.expect("upload");

    // A 502 from the toolbox proxy (a sandbox changing state) is retried; a command that runs past its
    // timeout is a Timeout, and is not run again.
    const EXECUTE: &str = "POST /toolbox/{id}/process/execute";
    let before = fake.hits(EXECUTE);
    fake.fail_next(EXECUTE, 502, None);
    let out = p.exec(id, &ExecSpec::new(["echo", "after 502"])).await.expect("exec after a 502");
    assert_eq!(out.stdout, b"after 502\n");
    assert_eq!(fake.hits(EXECUTE), before + 2);
    let mut slow = ExecSpec::new(["sleep", "30"]);
    slow.timeout = Some(Duration::from_secs(1));
    let started = std::time::Instant::now();
    let err = p.exec(id, &slow).await.expect_err("timeout");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    assert_eq!(fake.hits(EXECUTE), before + 3, "a timed-out command is not run again");

    p.pause(id).await.expect("pause (stop)");
    assert_eq!(p.get(id).await.expect("get").expect("exists").state, SandboxState::Paused);
    let exec = p.exec(id, &ExecSpec::new(["true"])).await.expect_err("exec on a stopped sandbox");
    assert!(exec.to_string().contains("sbx resume"), "{exec}");
    // Archive moves a stopped sandbox away; start brings it back all the same.
    p.archive(id).await.expect("archive");
    p.resume(id).await.expect("resume (start)");
    assert_eq!(p.get(id).await.expect("get").expect("exists").state, SandboxState::Running);
    let cat = p.exec(id, &ExecSpec::new(["cat", "/root/work/kept.txt"])).await.expect("cat");
    assert_eq!(cat.stdout, b"still here");
    // The preview token changed with the restart: the old endpoint is refused, a fresh one works.
    assert!(client.health().await.is_err(), "the old preview token is refused after a restart");
    let endpoint = p.endpoint(id, layout.port).await.expect("endpoint");
    assert_ne!(endpoint, handle.endpoint);
    let client = endpoint.client(Some(handle.token.clone())).expect("client");
    wait_healthy(&client, Duration::from_secs(30)).await.expect("the runtime answers again with its old token");
    p.destroy(id).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_exec_cp_prompt_down_through_the_cli() {
    let Some(fake) = fake().await else { return };
    let cli = Cli::new(fake.env());
    cli.ok(&["up", "--provider", "daytona", "--name", "dt"]).await;
    assert_eq!(fake.sandbox_ids().len(), 1);

    let out = cli.ok(&["exec", "dt", "--", "sh", "-c", "echo out; echo err >&2; exit 0"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    cli.exit_code_and_bytes("dt").await;

    cli.copy_in_and_out("dt", "/root/in", "hello daytona\n").await;

    // pause = stop, resume = start: files stay, the runtime comes back behind a new preview token.
    cli.ok(&["pause", "dt"]).await;
    cli.ok(&["resume", "dt"]).await;
    let out = cli.ok(&["exec", "dt", "--", "cat", "/root/in/hello.txt"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello daytona\n");

    cli.mock_prompt_echoes("dt", "hello from daytona").await;

    let out = cli.ok(&["ls", "--json"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("daytona"), "{}", String::from_utf8_lossy(&out.stdout));
    cli.ok(&["down", "dt"]).await;
    assert!(fake.sandbox_ids().is_empty(), "down deletes the sandbox");

    // A wrong key through the CLI: one clear error naming the fix.
    let out = cli.command(&["up", "--provider", "daytona", "--name", "nokey"]).env("DAYTONA_API_KEY", "wrong").output().await.expect("run sbx");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "a refused key is an auth failure: {err}");
    assert!(err.contains("DAYTONA_API_KEY") && err.contains("sbx auth login daytona"), "{err}");
    assert!(fake.sandbox_ids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_finds_daytona_orphans_with_no_state_row() {
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
    assert_eq!(fake.sandbox_ids(), vec![alive.id.clone()], "gc removed exactly the expired and the orphaned sandbox");
    p.destroy(&alive.id).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_snapshot_has_the_runtime_so_bootstrap_uploads_nothing() {
    let Some(fake) = fake().await else { return };
    let runtime = sbx_tests::static_runtime();
    let build = tokio::process::Command::new(sbx_tests::workspace_root().join("templates/daytona/build.sh"))
        .env("BASE", crate::conformance::base_image())
        .env("PACKAGES", "")
        .env("SBX_RUNTIME", &runtime)
        .output()
        .await
        .expect("run templates/daytona/build.sh");
    assert!(build.status.success(), "build.sh failed:\n{}", String::from_utf8_lossy(&build.stderr));
    let image = String::from_utf8_lossy(&build.stdout).lines().last().unwrap_or_default().trim().to_owned();
    assert_eq!(image, format!("sbx-daytona:{}", sbx_agent::VERSION));
    fake.add_snapshot("sbx-agent-test", &image);

    let p = provider(&fake).with_snapshot("sbx-agent-test");
    let sandbox = p.create(&SandboxSpec::named("templated")).await.expect("create from the snapshot");
    let layout = p.runtime_layout(&sandbox.id).await.expect("layout");
    let handle = bootstrap(&p, &sandbox.id, &runtime, &layout).await.expect("bootstrap");
    assert_eq!(handle.client().expect("client").health().await.expect("health").version, sbx_agent::VERSION);
    assert_eq!(fake.hits("POST /toolbox/{id}/files/bulk-upload"), 0, "the runtime was already there");
    let tar = sbx_providers::single_file_tar("f", b"x", 0o644).expect("tar");
    p.upload(&sandbox.id, sbx_providers::bytes_stream(tar), "/tmp/counted").await.expect("upload");
    assert_eq!(fake.hits("POST /toolbox/{id}/files/bulk-upload"), 1, "uploads are counted");
    p.destroy(&sandbox.id).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_env_labels_resources_and_intervals_reach_daytona() {
    let Some(fake) = fake().await else { return };
    let p = provider(&fake).with_auto_stop(0).with_auto_archive(120);
    let mut spec = SandboxSpec::named("shaped");
    spec.image = Some(crate::conformance::base_image()); // has a `:`: an image, built from `FROM <image>`
    spec.env.insert("SBX_DT_ENV".into(), "it's here".into());
    spec.labels.insert("team".into(), "infra".into());
    spec.cpus = Some(1.5);
    spec.memory_mb = Some(1536);
    let sandbox = p.create(&spec).await.expect("create from an image");
    assert_eq!(sandbox.labels.get("team").map(String::as_str), Some("infra"));
    assert_eq!(sandbox.sbx_name(), Some("shaped"));

    let raw: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/sandbox/{}", fake.api_url(), sandbox.id))
        .bearer_auth(fake.api_key())
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(raw["cpu"], 2, "cores rounded up");
    assert_eq!(raw["memory"], 2, "GiB rounded up");
    assert_eq!(raw["autoStopInterval"], 0);
    assert_eq!(raw["autoArchiveInterval"], 120);
    assert!(raw["name"].as_str().expect("name").starts_with("sbx-shaped-"), "{raw}");

    let out = p.exec(&sandbox.id, &ExecSpec::new(["sh", "-c", "printf %s \"$SBX_DT_ENV\""])).await.expect("exec");
    assert_eq!(out.stdout, b"it's here");
    let container = fake.container_of(&sandbox.id).expect("container");
    let inspect = tokio::process::Command::new("docker")
        .args(["inspect", "-f", "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}", &container])
        .output()
        .await
        .expect("docker inspect");
    assert_eq!(String::from_utf8_lossy(&inspect.stdout).trim(), format!("2000000000 {}", 2u64 << 30));

    // A snapshot that does not exist is Daytona's 404 message, not a hang.
    let mut missing = SandboxSpec::named("nosnap");
    missing.image = Some("no-such-snapshot".into());
    let err = p.create(&missing).await.expect_err("unknown snapshot");
    assert!(matches!(&err, Error::ImageNotFound { image, .. } if image == "no-such-snapshot"), "{err:?}");
    assert!(err.to_string().contains("templates/daytona/build.sh"), "{err}");
    p.destroy(&sandbox.id).await.expect("destroy");
    assert!(fake.sandbox_ids().is_empty());
}
