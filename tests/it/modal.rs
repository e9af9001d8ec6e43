//! The Modal provider against the fake Modal (`sbx_tests::fakes::modal`, a gRPC server with one Docker
//! container per sandbox): the CLI end to end, and the faults it must survive. (Its conformance run is
//! in `conformance.rs`.)

use std::time::Duration;

use sbx_providers::modal::{Credentials, ModalProvider, RetryPolicy};
use sbx_providers::{Error, ExecSpec, Provider, SandboxSpec, SandboxState};
use sbx_tests::fakes::modal::FakeModal;
use tonic::Code;

use crate::cloud_cli::Cli;

const CREATE: &str = "SandboxCreateV2";

pub(crate) async fn fake() -> Option<FakeModal> {
    if !sbx_tests::docker_available() {
        eprintln!("skipping: Docker is not available (set SBX_REQUIRE_DOCKER=1 to fail instead)");
        return None;
    }
    Some(FakeModal::start().await)
}

pub(crate) fn provider(fake: &FakeModal) -> ModalProvider {
    ModalProvider::new(Credentials { token_id: fake.token_id().into(), token_secret: fake.token_secret().into() })
        .expect("provider")
        .with_api_url(fake.url())
        .expect("url")
        .with_image(sbx_tests::fakes::modal::base_image())
        .with_tunnel_scheme("http")
        .with_retry(RetryPolicy { attempts: 3, base_delay: Duration::from_millis(50), max_delay: Duration::from_secs(2), ..RetryPolicy::default() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_statuses_are_retried_and_a_lost_answer_makes_one_sandbox() {
    let Some(fake) = fake().await else { return };
    let p = provider(&fake);
    fake.fail_next(CREATE, Code::Unavailable, 1);
    let s = p.create(&SandboxSpec::named("retried")).await.expect("create after one UNAVAILABLE");
    assert_eq!(fake.hits(CREATE), 2);
    assert_eq!(fake.running_ids(), vec![s.id.clone()]);
    // The create was carried out but its answer lost: the retry carries the same idempotency key, so
    // the fake hands back the same sandbox instead of making a second one.
    fake.lose_answer(CREATE, 1);
    let t = p.create(&SandboxSpec::named("lost")).await.expect("create after a lost answer");
    assert_eq!(fake.running_ids().len(), 2, "exactly one sandbox per create");
    // Exec through the router survives a transient status on its start.
    fake.fail_next("TaskExecStart", Code::Unavailable, 1);
    let out = p.exec(&t.id, &ExecSpec::new(["echo", "after a retry"])).await.expect("exec");
    assert_eq!(out.stdout, b"after a retry\n");
    // A status that is not transient is not retried, and says what happened (a fresh provider: this
    // one remembers the tunnels from the create).
    fake.fail_next("SandboxGetTunnelsV2", Code::FailedPrecondition, 1);
    let before = fake.hits("SandboxGetTunnelsV2");
    let err = provider(&fake).endpoint(&s.id, 2468).await.err();
    assert!(err.as_ref().is_some_and(|e| e.to_string().contains("FailedPrecondition")), "{err:?}");
    assert_eq!(fake.hits("SandboxGetTunnelsV2"), before + 1);
    p.destroy(&s.id).await.expect("destroy");
    p.destroy(&t.id).await.expect("destroy");
    assert!(fake.running_ids().is_empty());
    assert!(fake.containers().await.is_empty(), "terminate removes the containers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_fails_for_good_is_a_clear_error_and_leaves_nothing() {
    let Some(fake) = fake().await else { return };
    let p = provider(&fake);
    // Carried out every time, answered UNAVAILABLE every time: the provider gives up and cleans up.
    fake.lose_answer(CREATE, 3);
    let err = p.create(&SandboxSpec::named("broken")).await.expect_err("no answer ever");
    let msg = err.to_string();
    assert!(msg.contains("modal") && msg.contains("SBX_MODAL_API_URL"), "{msg}");
    assert_eq!(fake.hits(CREATE), 3, "retried up to the policy's attempts");
    assert!(fake.running_ids().is_empty(), "no orphan: {:?}", fake.running_ids());
    assert!(fake.containers().await.is_empty());
    // A refused token names the variables and the login command.
    let bad = ModalProvider::new(Credentials { token_id: "ak-wrong".into(), token_secret: "as-wrong".into() })
        .expect("provider")
        .with_api_url(fake.url())
        .expect("url");
    let err = bad.create(&SandboxSpec::named("nope")).await.expect_err("UNAUTHENTICATED");
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("MODAL_TOKEN_ID") && err.to_string().contains("sbx auth login modal"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_resources_ports_network_and_timeouts_reach_modal() {
    let Some(fake) = fake().await else { return };
    let p = provider(&fake);
    let mut spec = SandboxSpec::named("shaped");
    spec.env.insert("SBX_MODAL_SECRET".into(), "it's here".into());
    spec.labels.insert("team".into(), "infra".into());
    spec.cpus = Some(1.0);
    spec.memory_mb = Some(512);
    spec.ports = vec![8000];
    let sandbox = p.create(&spec).await.expect("create");
    let id = sandbox.id.as_str();
    assert!(id.starts_with("sb-") && id.len() == 35, "a V2-shaped id: {id}");
    let got = p.get(id).await.expect("get").expect("exists");
    assert_eq!((got.state, got.labels.get("team").map(String::as_str)), (SandboxState::Running, Some("infra")));
    // The env is a secret of the sandbox: in its processes' environment, never on a command line.
    let out = p.exec(id, &ExecSpec::new(["sh", "-c", "printf %s \"$SBX_MODAL_SECRET\""])).await.expect("exec");
    assert_eq!(out.stdout, b"it's here");
    let out = p.exec(id, &ExecSpec::new(["sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' ' | grep -c \"[i]t's here\" || true"])).await.expect("exec");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "no argv carries the secret");
    let container = fake.container_of(id).expect("container");
    let inspect = tokio::process::Command::new("docker")
        .args(["inspect", "-f", "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}}", &container])
        .output()
        .await
        .expect("docker inspect");
    assert_eq!(String::from_utf8_lossy(&inspect.stdout).trim(), format!("1000000000 {}", 512u64 << 20));

    // Output is bytes, both streams, with the exit code.
    let out = p.exec(id, &ExecSpec::new(["sh", "-c", "printf '\\377\\000a'; printf 'e\\n' >&2; exit 4"])).await.expect("exec");
    assert_eq!((out.exit_code, out.stdout.as_slice(), out.stderr.as_slice()), (4, &b"\xff\x00a"[..], &b"e\n"[..]));

    // A port declared at create has a tunnel that reaches the server; one that was not says how.
    p.exec(id, &ExecSpec::new(["sh", "-c", "mkdir -p /tmp/www && echo served > /tmp/www/index.html && \
        cd /tmp/www && (nohup python3 -m http.server 8000 >/dev/null 2>&1 &)"])).await.expect("serve");
    let ep = p.endpoint(id, 8000).await.expect("endpoint of 8000");
    let sbx_providers::Transport::Http { url } = &ep.transport else { panic!("{ep:?}") };
    let url = format!("{url}/index.html");
    let served = sbx_tests::wait_for(Duration::from_secs(20), || async {
        matches!(reqwest::get(&url).await, Ok(r) if r.status().is_success())
    })
    .await;
    assert!(served, "the tunnel reaches port 8000");
    let err = p.endpoint(id, 9999).await.expect_err("undeclared port");
    assert!(err.to_string().contains("sbx up --port 9999"), "{err}");

    // A command past its timeout is a Timeout.
    let mut slow = ExecSpec::new(["sleep", "30"]);
    slow.timeout = Some(Duration::from_secs(1));
    let started = std::time::Instant::now();
    let err = p.exec(id, &slow).await.expect_err("timeout");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    p.destroy(id).await.expect("destroy");
    assert!(p.get(id).await.expect("get").is_none(), "a terminated sandbox is gone");

    // --network none: an outbound allowlist (empty: nothing out), and the tunnel still works.
    let mut spec = SandboxSpec::named("closed");
    spec.network = sbx_providers::Network::None;
    let closed = p.create(&spec).await.expect("create");
    assert_eq!(fake.network_of(&closed.id), Some((3, vec![])), "ALLOWLIST with no CIDR");
    let container = fake.container_of(&closed.id).expect("container");
    let nets = tokio::process::Command::new("docker")
        .args(["inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}", &container])
        .output()
        .await
        .expect("docker inspect");
    assert!(String::from_utf8_lossy(&nets.stdout).ends_with("-internal\n"), "{}", String::from_utf8_lossy(&nets.stdout));
    p.destroy(&closed.id).await.expect("destroy");
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
    assert!(stopped, "the sandbox ended with its timeout");
    let err = p.exec(&sandbox.id, &ExecSpec::new(["true"])).await.expect_err("exec in an ended sandbox");
    assert!(matches!(err, Error::NotRunning { .. } | Error::NotFound { .. }), "{err:?}");
    p.destroy(&sandbox.id).await.expect("destroy");
    assert!(fake.containers().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_exec_cp_prompt_down_through_the_cli() {
    let Some(fake) = fake().await else { return };
    let cli = Cli::new(fake.env());
    cli.ok(&["up", "--provider", "modal", "--name", "md"]).await;
    assert_eq!(fake.running_ids().len(), 1);

    let out = cli.ok(&["exec", "md", "--", "sh", "-c", "echo out; echo err >&2; exit 0"]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    cli.exit_code_and_bytes("md").await;

    cli.copy_in_and_out("md", "/tmp/in", "hello modal\n").await;

    cli.mock_prompt_echoes("md", "hello from modal").await;

    let out = cli.run(&["pause", "md"]).await;
    assert_eq!(out.status.code(), Some(2), "asking for what the provider cannot do is a usage error");

    let out = cli.ok(&["ls", "--json"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("modal"), "{}", String::from_utf8_lossy(&out.stdout));
    cli.ok(&["down", "md"]).await;
    assert!(fake.running_ids().is_empty(), "down terminates the sandbox");

    // No token at all, then a wrong one: one clear error naming the fix, and nothing made.
    let out = cli.command(&["up", "--provider", "modal", "--name", "notoken"]).env_remove("MODAL_TOKEN_SECRET").output().await.expect("sbx");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "a missing token is an auth failure: {err}");
    assert!(err.contains("MODAL_TOKEN_ID") && err.contains("MODAL_TOKEN_SECRET") && err.contains("sbx auth login modal"), "{err}");
    let out = cli.command(&["up", "--provider", "modal", "--name", "badtoken"]).env("MODAL_TOKEN_SECRET", "as-wrong").output().await.expect("sbx");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "a refused token is an auth failure: {err}");
    assert!(fake.running_ids().is_empty());
    assert!(fake.containers().await.is_empty(), "faults leave no container behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_up_leaves_nothing_behind() {
    let Some(fake) = fake().await else { return };
    let cli = Cli::new(fake.env());
    // The bootstrap fails after the sandbox exists: the guard terminates it.
    let out = cli.command(&["up", "--provider", "modal", "--name", "halfway"]).env("SBX_TEST_FAIL_PHASE", "start").output().await.expect("sbx");
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("start failed"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(fake.running_ids().is_empty(), "{:?}", fake.running_ids());
    assert!(fake.containers().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sbx_run_with_a_matrix_over_docker_vercel_and_modal_completes() {
    let Some(fake) = fake().await else { return };
    let Some(vercel) = crate::vercel::fake().await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("repo")).expect("mkdir");
    std::fs::write(dir.path().join("repo/README.md"), "hello\n").expect("write");
    let yaml = format!(
        "version: 1\ndefaults: {{agent: mock, image: '{}'}}\ntasks:\n  - name: m\n    workspace: ./repo\n    \
         prompt: \"write out/done.txt done\"\n    check: test -f out/done.txt\n    matrix:\n      provider: [docker, vercel, modal]\n",
        crate::conformance::base_image()
    );
    std::fs::write(dir.path().join("sbx.yaml"), yaml).expect("write");
    let mut c = tokio::process::Command::new(sbx_tests::bin("sbx"));
    c.args(["run", "-f", "sbx.yaml"])
        .current_dir(dir.path())
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("SBX_RUNTIME", sbx_tests::static_runtime())
        .env("NO_COLOR", "1")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("VERCEL_OIDC_TOKEN")
        .stdin(std::process::Stdio::null());
    for (k, v) in fake.env().into_iter().chain(vercel.env()) {
        c.env(k, v);
    }
    let out = c.output().await.expect("sbx run");
    assert!(out.status.success(), "sbx run failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let base = dir.path().join("sbx-results");
    let run = std::fs::read_dir(&base).expect("sbx-results").next().expect("a run").expect("entry").path();
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).expect("summary")).expect("json");
    assert_eq!((summary["passed"].as_u64(), summary["failed"].as_u64()), (Some(3), Some(0)), "{summary}");
    assert!(fake.running_ids().is_empty(), "the run terminated its Modal sandbox");
    assert!(vercel.sandbox_names().is_empty(), "the run stopped its Vercel sandbox");
}
