//! The Vercel provider against the fake Vercel (`sbx_tests::fakes::vercel`, one Docker container per
//! sandbox): the CLI end to end, and the faults it must survive. (Its conformance run is in
//! `conformance.rs`.)

use std::time::Duration;

use sbx_providers::vercel::{Credentials, RetryPolicy, VercelProvider};
use sbx_providers::{Error, ExecSpec, Provider, SandboxSpec, SandboxState};
use sbx_tests::fakes::vercel::FakeVercel;

use crate::cloud_cli::Cli;

const CREATE: &str = "POST /api/v3/sandboxes";

pub(crate) async fn fake() -> Option<FakeVercel> {
    if !sbx_tests::docker_available() {
        eprintln!("skipping: Docker is not available (set SBX_REQUIRE_DOCKER=1 to fail instead)");
        return None;
    }
    Some(FakeVercel::start().await)
}

pub(crate) fn provider(fake: &FakeVercel) -> VercelProvider {
    VercelProvider::new(Credentials::new(fake.token(), fake.team_id(), fake.project_id()))
        .expect("provider")
        .with_api_url(fake.api_url())
        .with_retry(RetryPolicy { attempts: 3, base_delay: Duration::from_millis(50), max_delay: Duration::from_secs(2), ..RetryPolicy::default() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_honouring_retry_after_and_makes_one_sandbox() {
    let Some(fake) = fake().await else { return };
    let p = provider(&fake);
    fake.fail_next(CREATE, 429, Some(1));
    let started = std::time::Instant::now();
    let sandbox = p.create(&SandboxSpec::named("throttled")).await.expect("create after a 429");
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was honoured");
    assert_eq!(fake.hits(CREATE), 2);
    assert_eq!(fake.sandbox_names(), vec![sandbox.id.clone()], "exactly one sandbox");
    // A 429 on an idempotent call is retried too; one that never ends says so.
    const GET: &str = "GET /api/v2/sandboxes/{name}";
    fake.fail_next(GET, 429, None);
    assert!(p.get(&sandbox.id).await.expect("get after a 429").is_some());
    fake.fail_times(GET, 429, Some(0), 5);
    let err = p.get(&sandbox.id).await.expect_err("persistent 429");
    assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");
    // Starting a command is retried on 429 (nothing ran) but never on a 5xx (it may have run).
    const CMD: &str = "POST /api/v2/sandboxes/sessions/{sid}/cmd";
    fake.fail_next(CMD, 429, None);
    let out = p.exec(&sandbox.id, &ExecSpec::new(["echo", "after 429"])).await.expect("exec after a 429");
    assert_eq!(out.stdout, b"after 429\n");
    let before = fake.hits(CMD);
    fake.fail_next(CMD, 502, None);
    let err = p.exec(&sandbox.id, &ExecSpec::new(["true"])).await.expect_err("502 on a command start");
    assert!(err.to_string().contains("502"), "{err}");
    assert_eq!(fake.hits(CMD), before + 1, "not sent again");
    p.destroy(&sandbox.id).await.expect("destroy");
    assert!(fake.sandbox_names().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_on_create_is_a_clear_error_and_leaves_nothing() {
    let Some(fake) = fake().await else { return };
    let p = provider(&fake);
    fake.fail_times(CREATE, 500, None, 3);
    let err = p.create(&SandboxSpec::named("broken")).await.expect_err("500 on every attempt");
    let msg = err.to_string();
    assert!(msg.contains("vercel") && msg.contains("500") && msg.contains("internal error"), "{msg}");
    assert_eq!(fake.hits(CREATE), 3, "retried up to the policy's attempts");
    assert!(fake.sandbox_names().is_empty(), "no orphan");
    assert!(p.list(&sbx_providers::Labels::new()).await.expect("list").is_empty());
    // One 500, then success: still exactly one sandbox.
    fake.fail_next(CREATE, 500, None);
    let s = p.create(&SandboxSpec::named("second-try")).await.expect("create after one 500");
    assert_eq!(fake.sandbox_names(), vec![s.id.clone()]);
    p.destroy(&s.id).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_or_missing_ids_name_the_env_vars_and_the_login_command() {
    let Some(fake) = fake().await else { return };
    let p = VercelProvider::new(Credentials::new("wrong-token", fake.team_id(), fake.project_id()))
        .expect("provider")
        .with_api_url(fake.api_url());
    let err = p.create(&SandboxSpec::named("nope")).await.expect_err("403");
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("VERCEL_TOKEN") && msg.contains("sbx auth login vercel") && msg.contains("VERCEL_TEAM_ID"), "{msg}");
    assert!(fake.sandbox_names().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_resources_env_and_labels_reach_vercel_and_timeouts_hold() {
    let Some(fake) = fake().await else { return };
    let p = provider(&fake).with_timeout(Duration::from_secs(120));
    let mut spec = SandboxSpec::named("shaped");
    spec.env.insert("SBX_VC_ENV".into(), "it's here".into());
    spec.labels.insert("team".into(), "infra".into());
    spec.cpus = Some(1.0);
    spec.memory_mb = Some(1024);
    spec.ports = vec![8000];
    let sandbox = p.create(&spec).await.expect("create");
    let id = sandbox.id.as_str();
    assert!(id.starts_with("sbx-shaped-"), "{id}");
    assert_eq!(sandbox.state, SandboxState::Running);
    assert_eq!(sandbox.labels.get("team").map(String::as_str), Some("infra"));
    assert_eq!(sandbox.sbx_name(), Some("shaped"));
    let out = p.exec(id, &ExecSpec::new(["sh", "-c", "printf %s \"$SBX_VC_ENV\"; pwd"])).await.expect("exec");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "it's here/vercel/sandbox\n", "env, and Vercel's working directory");
    let container = fake.container_of(id).expect("container");
    let inspect = tokio::process::Command::new("docker")
        .args(["inspect", "-f", "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}", &container])
        .output()
        .await
        .expect("docker inspect");
    assert_eq!(String::from_utf8_lossy(&inspect.stdout).trim(), format!("1000000000 {}", 2048u64 << 20), "1 vCPU, 2 GB");

    // A port declared at create has a route; one that was not says how to get one.
    p.exec(id, &ExecSpec::new(["sh", "-c", "mkdir -p /tmp/www && echo served > /tmp/www/index.html && \
        cd /tmp/www && (nohup python3 -m http.server 8000 >/dev/null 2>&1 &)"])).await.expect("serve");
    let ep = p.endpoint(id, 8000).await.expect("endpoint of 8000");
    let sbx_providers::Transport::Http { url } = &ep.transport else { panic!("{ep:?}") };
    let url = format!("{url}/index.html");
    let served = sbx_tests::wait_for(Duration::from_secs(20), || async {
        matches!(reqwest::get(&url).await, Ok(r) if r.status().is_success())
    })
    .await;
    assert!(served, "the route reaches port 8000");
    assert_eq!(reqwest::get(&url).await.expect("get").text().await.expect("text"), "served\n");
    let err = p.endpoint(id, 9999).await.expect_err("undeclared port");
    assert!(err.to_string().contains("sbx up --port 9999"), "{err}");

    // A command past its timeout is a Timeout (Vercel kills it), and is not run again.
    let mut slow = ExecSpec::new(["sleep", "30"]);
    slow.timeout = Some(Duration::from_secs(1));
    let started = std::time::Instant::now();
    let err = p.exec(id, &slow).await.expect_err("timeout");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());

    // keep_alive extends the session so that it lasts at least as asked, and only when needed.
    let (before, _) = fake.session_of(id).expect("session");
    let extra = p.keep_alive(id, Duration::from_secs(600)).await.expect("keep alive");
    let (after, status) = fake.session_of(id).expect("session");
    assert_eq!(status, "running");
    assert!(extra > Duration::from_secs(470) && after == before + extra.as_millis() as u64, "{before} + {extra:?} = {after}");
    assert_eq!(p.keep_alive(id, Duration::from_secs(60)).await.expect("keep alive"), Duration::ZERO);
    p.destroy(id).await.expect("destroy");
    assert!(fake.sandbox_names().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_whose_timeout_ran_out_says_so() {
    let Some(fake) = fake().await else { return };
    let p = provider(&fake);
    let mut spec = SandboxSpec::named("short");
    spec.ttl = Some(Duration::from_secs(2));
    let sandbox = p.create(&spec).await.expect("create");
    let stopped = sbx_tests::wait_for(Duration::from_secs(20), || async {
        matches!(p.get(&sandbox.id).await, Ok(Some(s)) if s.state == SandboxState::Stopped)
    })
    .await;
    assert!(stopped, "the session ended with its timeout");
    let err = p.exec(&sandbox.id, &ExecSpec::new(["true"])).await.expect_err("exec in a stopped sandbox");
    assert!(err.to_string().contains("is stopped") && err.to_string().contains("sbx down"), "{err}");
    p.destroy(&sandbox.id).await.expect("destroy");
    assert!(fake.sandbox_names().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_exec_cp_prompt_down_through_the_cli() {
    let Some(fake) = fake().await else { return };
    let cli = Cli::new(fake.env());
    cli.ok(&["up", "--provider", "vercel", "--name", "vc"]).await;
    assert_eq!(fake.sandbox_names().len(), 1);

    let out = cli.ok(&["exec", "vc", "--", "sh", "-c", "echo out; echo err >&2; exit 0"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    cli.exit_code_and_bytes("vc").await;

    cli.copy_in_and_out("vc", "/tmp/in", "hello vercel\n").await;

    cli.mock_prompt_echoes("vc", "hello from vercel").await;

    // Pause is not something Vercel can do: one clear error.
    let out = cli.run(&["pause", "vc"]).await;
    assert_eq!(out.status.code(), Some(2), "asking for what the provider cannot do is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot pause"), "{}", String::from_utf8_lossy(&out.stderr));

    let out = cli.ok(&["ls", "--json"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("vercel"), "{}", String::from_utf8_lossy(&out.stdout));
    cli.ok(&["down", "vc"]).await;
    assert!(fake.sandbox_names().is_empty(), "down deletes the sandbox");

    // A wrong token, then no token at all, through the CLI: one clear error naming the fix.
    let out = cli.command(&["up", "--provider", "vercel", "--name", "badtoken"]).env("VERCEL_TOKEN", "wrong").output().await.expect("sbx");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "a refused token is an auth failure: {err}");
    assert!(err.contains("VERCEL_TOKEN") && err.contains("sbx auth login vercel"), "{err}");
    let out = cli.command(&["up", "--provider", "vercel", "--name", "notoken"]).env_remove("VERCEL_TOKEN").output().await.expect("sbx");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "a missing token is an auth failure: {err}");
    assert!(err.contains("VERCEL_TOKEN") && err.contains("VERCEL_OIDC_TOKEN") && err.contains("sbx auth login vercel"), "{err}");
    assert!(fake.sandbox_names().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_finds_vercel_orphans_with_no_state_row() {
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
    assert_eq!(fake.sandbox_names(), vec![alive.id.clone()], "gc removed exactly the expired and the orphaned sandbox");
    p.destroy(&alive.id).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_runs_as_a_detached_command_and_a_restart_replaces_it() {
    let Some(fake) = fake().await else { return };
    let p = std::sync::Arc::new(provider(&fake));
    let sandbox = p.create(&SandboxSpec::named("restart")).await.expect("create");
    let id = sandbox.id.as_str();
    let layout = p.runtime_layout(id).await.expect("layout");
    let handle = sbx_providers::bootstrap::bootstrap(p.as_ref(), id, &sbx_tests::static_runtime(), &layout).await.expect("bootstrap");
    const CMD: &str = "POST /api/v2/sandboxes/sessions/{sid}/cmd";
    let starts = fake.hits(CMD);
    // A restart while the old runtime still runs (as when it stops answering): the old one is killed
    // through the API, so exactly one runtime serves the port, with the old token.
    let lc = sbx_providers::lifecycle::Lifecycle::new(p.clone());
    let client = lc.recover(id, &handle, &layout).await.expect("restart").client;
    assert_eq!(client.health().await.expect("health").version, sbx_agent::VERSION);
    assert_eq!(fake.hits(CMD), starts + 1, "one detached start");
    assert_eq!(fake.hits("POST /api/v2/sandboxes/sessions/{sid}/cmd/{cid}/kill"), 1, "the old runtime was killed");
    let count = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -c '[s]bx-agent server'";
    let out = p.exec(id, &ExecSpec::new(["sh", "-c", count])).await.expect("count");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "one runtime process");
    p.destroy(id).await.expect("destroy");
}

// `sbx run` over docker, vercel and modal in one matrix: modal::sbx_run_with_a_matrix_over_docker_vercel_and_modal_completes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_that_answers_before_the_command_ends_is_asked_again() {
    if !sbx_tests::docker_available() {
        return;
    }
    let config = sbx_tests::fakes::vercel::FakeConfig { max_wait: Duration::from_millis(300), ..Default::default() };
    let fake = FakeVercel::start_with(config).await;
    let p = provider(&fake);
    let sandbox = p.create(&SandboxSpec::named("longpoll")).await.expect("create");
    let out = p.exec(&sandbox.id, &ExecSpec::new(["sh", "-c", "sleep 1.5; echo late; exit 5"])).await.expect("exec");
    assert_eq!((out.exit_code, out.stdout.as_slice()), (5, &b"late\n"[..]));
    assert!(fake.hits("GET /api/v2/sandboxes/sessions/{sid}/cmd/{cid}") >= 3, "the wait was asked again");
    p.destroy(&sandbox.id).await.expect("destroy");
}
