//! The ssh provider against a real OpenSSH server in a container (`sbx_tests::sshd`): host keys
//! (unknown refused, `--accept-new` learns, changed refused with its line), agent and key-file auth and
//! the error that lists what was tried, and through the `sbx` binary: up → exec (exit code, the fish
//! login shell's chatter dropped) → cp both ways → down, the runtime reused by a second sandbox, a
//! dropped connection dialled again, and nothing left on the server. The conformance suite runs on
//! this provider in `conformance.rs`.

use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use sbx_providers::lifecycle::Lifecycle;
use sbx_providers::ssh::SshProvider;
use sbx_providers::{ExecSpec, Provider, SandboxSpec};
use sbx_tests::bin;
use sbx_tests::sshd::SshServer;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn provider(server: &SshServer, opts: sbx_providers::ssh::SshOptions) -> SshProvider {
    SshProvider::new(vec![server.dest()], opts).with_runtime(&sbx_tests::static_runtime())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_keys_are_refused_and_learnt_only_with_accept_new() {
    let server = SshServer::start(&[]);
    let err = provider(&server, server.opts()).list(&Default::default()).await.expect_err("an unknown host key must be refused");
    let msg = err.to_string();
    assert!(msg.contains("is not in") && msg.contains("SHA256:") && msg.contains("--accept-new"), "{msg}");
    assert!(!server.known_hosts().exists(), "nothing learnt without --accept-new");

    let mut opts = server.opts();
    opts.accept_new = true;
    provider(&server, opts).list(&Default::default()).await.expect("--accept-new learns the key");
    let learnt = std::fs::read_to_string(server.known_hosts()).expect("known_hosts written");
    assert!(learnt.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", server.port)), "{learnt}");
    // Now known: a provider without --accept-new connects.
    provider(&server, server.opts()).list(&Default::default()).await.expect("the learnt key is trusted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_host_key_is_refused_with_the_line_to_fix() {
    let server = SshServer::start(&[]);
    let other = server.home.path().join("other");
    let out = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&other).output().expect("ssh-keygen");
    assert!(out.status.success());
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).expect("pub");
    let mut f = other_pub.split_whitespace();
    let (kind, key) = (f.next().unwrap(), f.next().unwrap());
    std::fs::write(server.known_hosts(), format!("# a comment\nsomewhere.else {kind} {key}\n[127.0.0.1]:{} {kind} {key}\n", server.port)).unwrap();
    for accept_new in [false, true] {
        let mut opts = server.opts();
        opts.accept_new = accept_new;
        let err = provider(&server, opts).list(&Default::default()).await.expect_err("a changed key must be refused");
        let msg = err.to_string();
        let line = format!("{}:3", server.known_hosts().display());
        assert!(msg.contains("HAS CHANGED") && msg.contains(&line), "accept_new={accept_new}: {msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_the_agent_or_files_and_an_error_that_lists_what_was_tried() {
    let server = SshServer::start(&[]);
    server.trust();
    provider(&server, server.opts()).list(&Default::default()).await.expect("key file auth");

    // The same key through a real ssh-agent, with the key file gone.
    let sock = server.home.path().join("agent.sock");
    let agent = Command::new("ssh-agent").arg("-D").arg("-a").arg(&sock).stdout(Stdio::null()).spawn().expect("ssh-agent");
    let agent = KillOnDrop(agent);
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let added = Command::new("ssh-add").arg(server.key()).env("SSH_AUTH_SOCK", &sock).output().expect("ssh-add");
    assert!(added.status.success(), "{}", text(&added.stderr));
    let moved = server.home.path().join("moved-key");
    std::fs::rename(server.key(), &moved).unwrap();
    let mut opts = server.opts();
    opts.agent_socket = Some(sock.clone());
    provider(&server, opts).list(&Default::default()).await.expect("agent auth");
    drop(agent);

    // No usable key: the error names the agent and the key files it tried.
    let err = provider(&server, server.opts()).list(&Default::default()).await.expect_err("no key");
    let msg = err.to_string();
    assert!(matches!(err, sbx_providers::Error::Auth { .. }), "{err:?}");
    assert!(msg.contains("SSH_AUTH_SOCK is not set") && msg.contains("id_ed25519"), "{msg}");
}

struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_dialled_again_and_the_runtime_kept_running() {
    let server = SshServer::start(&[]);
    server.trust();
    let provider = Arc::new(provider(&server, server.opts()));
    let lc = Lifecycle::new(provider.clone()).with_runtime(sbx_tests::static_runtime()).keep_on_failure(false);
    let ready = lc.up(&SandboxSpec::named("drop")).await.expect("up");
    let client = ready.runtime.client().expect("client");
    client.health().await.expect("health over the forwarded channel");
    server.drop_connections();
    // The runtime was started detached: it survives; the forwarder and exec dial again.
    let h = client.health().await.expect("health after the connection dropped");
    assert_eq!(h.version, sbx_agent::VERSION);
    let out = provider.exec(&ready.sandbox.id, &ExecSpec::new(["sh", "-c", "echo back"])).await.expect("exec after the drop");
    assert_eq!(text(&out.stdout), "back\n");
    lc.teardown(&ready.sandbox.id).await.expect("teardown");
    assert!(server.leftovers().is_empty(), "left on the server: {:?}", server.leftovers());
}

/// `sbx` with a home of its own pointed at the server.
fn sbx(server: &SshServer, state: &std::path::Path, args: &[&str]) -> Output {
    sbx_command(server, state, args).stdin(Stdio::null()).output().expect("sbx")
}

/// `sbx` as [`sbx`] does, with `input` on its stdin.
fn sbx_with_input(server: &SshServer, state: &std::path::Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = sbx_command(server, state, args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("sbx");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), input).expect("write stdin");
    drop(child.stdin.take());
    child.wait_with_output().expect("sbx")
}

fn sbx_command(server: &SshServer, state: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin("sbx"));
    c.args(args)
        .env("HOME", server.home.path())
        .env("XDG_STATE_HOME", state)
        .env("XDG_CONFIG_HOME", state.join("config"))
        .env("SBX_RUNTIME", sbx_tests::static_runtime())
        .env("SBX_SSH_HOST", server.dest())
        .env("NO_COLOR", "1")
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("SBX_PROVIDER")
        .env_remove("SBX_SSH_ISOLATION");
    c
}

/// A mock-agent turn and a shell on the sandbox's terminal (a PTY in the runtime), from the CLI.
fn session_and_shell(server: &SshServer, state: &std::path::Path, name: &str, login_shell: Option<&str>) {
    let out = ok(sbx(server, state, &["prompt", name, "echo from the mock agent", "--agent", "mock"]));
    assert_eq!(text(&out.stdout), "from the mock agent\n");
    // -t: a terminal all the same. `/bin/sh` named: fish (this user's shell) asks the terminal
    // questions that only a real one answers.
    let out = sbx_with_input(server, state, &["shell", "-t", name, "--", "/bin/sh"], b"echo tty=$(test -t 0 && echo yes) sum=$((6*7))\nexit 5\n");
    assert!(text(&out.stdout).contains("tty=yes sum=42"), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(5), "the shell's exit code: {}", text(&out.stderr));
    // Piped input and no -t: the user's own shell (fish) reads it as plain input, as over ssh; it used
    // to wait forever on a PTY for the answers to its terminal queries.
    // (The input reads the same to fish and to sh.)
    let out = sbx_with_input(server, state, &["shell", name], b"echo shell=$SHELL\ntty\nexit 4\n");
    let said = text(&out.stdout);
    assert!(said.ends_with("not a tty\n"), "{said}\n{}", text(&out.stderr));
    if let Some(login) = login_shell {
        // (Its config.fish runs too and says hello, as it would over ssh.)
        assert!(said.contains(&format!("shell={login}\n")), "the user's login shell ran: {said}");
    }
    assert_eq!(out.status.code(), Some(4), "the shell's exit code: {}", text(&out.stderr));
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "exit {:?}\nstdout: {}\nstderr: {}", out.status.code(), text(&out.stdout), text(&out.stderr));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_exec_cp_down_through_the_cli_on_fish_and_noexec_tmp() {
    let server = SshServer::start(&[]);
    // The server is what the issue asks for: fish login shell, /tmp noexec, no sudo.
    let info = server.sh("getent passwd sbx | cut -d: -f7; grep ' /tmp ' /proc/mounts; command -v sudo || echo no-sudo");
    let info = text(&info.stdout);
    assert!(info.contains("/usr/bin/fish") && info.contains("noexec") && info.contains("no-sudo"), "{info}");
    let state = tempfile::tempdir().unwrap();
    let s = state.path();

    // Unknown host key: refused (exit 3, auth), nothing recorded; --accept-new learns it.
    let out = sbx(&server, s, &["up", "--provider", "ssh", "--name", "box"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--accept-new"), "{}", text(&out.stderr));
    ok(sbx(&server, s, &["up", "--provider", "ssh", "--name", "box", "--accept-new"]));

    // exec: exit code and output, without what fish's config prints.
    let out = sbx(&server, s, &["exec", "box", "--", "sh", "-c", "echo out; echo err >&2; pwd; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("out\n") && text(&out.stdout).contains("/.sbx/sandboxes/"), "{}", text(&out.stdout));
    // Bootstrap commands went through fish (the login shell) and dropped its greeting.
    assert!(!text(&out.stdout).contains("fish config says hello"));

    // cp both ways, byte-exact.
    let local = s.join("data.bin");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&local, &data).unwrap();
    ok(sbx(&server, s, &["cp", local.to_str().unwrap(), "box:data.bin"]));
    let back = s.join("back.bin");
    ok(sbx(&server, s, &["cp", "box:data.bin", back.to_str().unwrap()]));
    assert!(std::fs::read(&back).unwrap() == data, "cp round trip differs");
    session_and_shell(&server, s, "box", Some("/usr/bin/fish"));

    // A second sandbox on the same host reuses the uploaded runtime (same file, not uploaded again).
    let bin_before = text(&server.sh("ls -i ~/.sbx/bin").stdout);
    ok(sbx(&server, s, &["up", "--provider", "ssh", "--name", "box2"]));
    assert_eq!(text(&server.sh("ls -i ~/.sbx/bin").stdout), bin_before, "the runtime was uploaded again");
    let ls = text(&ok(sbx(&server, s, &["ls", "--json"])).stdout);
    assert!(ls.contains("\"box\"") && ls.contains("\"box2\""), "{ls}");

    ok(sbx(&server, s, &["down", "box"]));
    ok(sbx(&server, s, &["down", "box2"]));
    assert!(server.leftovers().is_empty(), "left on the server: {:?}", server.leftovers());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_runtime_ends_itself_and_the_next_command_starts_it_again() {
    let server = SshServer::start(&[]);
    server.trust();
    let provider = Arc::new(provider(&server, server.opts()).with_idle_timeout(std::time::Duration::from_secs(2)));
    let lc = Lifecycle::new(provider.clone()).with_runtime(sbx_tests::static_runtime()).keep_on_failure(false);
    let ready = lc.up(&SandboxSpec::named("idle")).await.expect("up");
    let running = || text(&server.sh("ps -eo args= | grep '[s]bx-agent' || true").stdout);
    assert!(running().contains("server"), "the runtime runs: {}", running());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while running().contains("server") {
        assert!(std::time::Instant::now() < deadline, "the idle runtime did not end: {}", running());
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    // The directory stays (nothing is lost); the next command starts the runtime again.
    let back = lc.reconnect(&ready.sandbox.id, &ready.runtime, &ready.layout).await.expect("reconnect");
    assert!(back.restarted);
    back.client.health().await.expect("health after the restart");
    lc.teardown(&ready.sandbox.id).await.expect("teardown");
    assert!(server.leftovers().is_empty(), "left on the server: {:?}", server.leftovers());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_forwarding_is_forbidden_http_goes_over_exec_channels() {
    let server = SshServer::start(&["AllowTcpForwarding=no"]);
    server.trust();
    let provider = Arc::new(provider(&server, server.opts()));
    let lc = Lifecycle::new(provider.clone()).with_runtime(sbx_tests::static_runtime()).keep_on_failure(false);
    let ready = lc.up(&SandboxSpec::named("nofwd")).await.expect("up without TCP forwarding");
    let client = ready.runtime.client().expect("client");
    // Several requests, some at once: each HTTP connection is an exec channel running `sbx-agent connect`.
    let (a, b, c) = tokio::join!(client.health(), client.health(), client.health());
    for h in [a, b, c] {
        assert_eq!(h.expect("health").version, sbx_agent::VERSION);
    }
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    client.write_bytes("f.bin", data.clone(), Default::default()).await.expect("write over the exec channel");
    assert!(client.read_bytes("f.bin").await.expect("read")[..] == data[..], "bytes differ");
    lc.teardown(&ready.sandbox.id).await.expect("teardown");
    assert!(server.leftovers().is_empty(), "left on the server: {:?}", server.leftovers());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_docker_makes_a_container_of_the_hosts_engine() {
    let server = SshServer::start_docker_host();
    server.trust();
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    let label = format!("test.ssh-docker={}", sbx_providers::random_hex(4));
    let out = ok(sbx(&server, s, &["up", "--provider", "ssh", "--isolation", "docker", "--name", "boxed", "--label", &label, "--json"]));
    let up: serde_json::Value = serde_json::from_slice(&out.stdout).expect("up --json");
    let id = up["id"].as_str().expect("an id").to_owned();
    assert!(id.starts_with(&format!("{}/docker/", server.dest())), "{id}");

    // The sandbox is a container on the host's engine (here the same engine as this machine's).
    let found = Command::new("docker").args(["ps", "-q", "--filter", &format!("label={label}")]).output().expect("docker ps");
    assert_eq!(text(&found.stdout).lines().count(), 1, "one container with the label");
    let out = sbx(&server, s, &["exec", "boxed", "--", "sh", "-c", "test -f /.dockerenv && echo in-a-container; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "in-a-container\n");
    // Nothing of the sandbox on the host's file system: it is all in the container.
    assert!(server.leftovers().is_empty(), "directory sandboxes on the host: {:?}", server.leftovers());

    let local = s.join("data.bin");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(&local, &data).unwrap();
    ok(sbx(&server, s, &["cp", local.to_str().unwrap(), "boxed:data.bin"]));
    let back = s.join("back.bin");
    ok(sbx(&server, s, &["cp", "boxed:data.bin", back.to_str().unwrap()]));
    assert!(std::fs::read(&back).unwrap() == data, "cp round trip differs");
    session_and_shell(&server, s, "boxed", None);
    let ls = text(&ok(sbx(&server, s, &["ls", "--json"])).stdout);
    assert!(ls.contains("\"boxed\"") && ls.contains(&id), "{ls}");

    ok(sbx(&server, s, &["down", "boxed"]));
    let found = Command::new("docker").args(["ps", "-aq", "--filter", &format!("label={label}")]).output().expect("docker ps");
    assert!(text(&found.stdout).trim().is_empty(), "the container is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_goes_on_across_a_dropped_connection_with_no_event_lost() {
    use futures::StreamExt;
    use sbx_agent::api::session::{CreateSessionRequest, EventData, PermissionPolicy};
    let server = SshServer::start(&[]);
    server.trust();
    let provider = Arc::new(provider(&server, server.opts()));
    let lc = Lifecycle::new(provider.clone()).with_runtime(sbx_tests::static_runtime()).keep_on_failure(false);
    let ready = lc.up(&SandboxSpec::named("midturn")).await.expect("up");
    let client = ready.runtime.client().expect("client");
    let req = CreateSessionRequest { agent: "mock".into(), permission_policy: PermissionPolicy::AllowAll, ..Default::default() };
    let s = client.create_session(&req).await.expect("session");
    client.send_message(&s.id, "stream 300\nsleep 1500\nstream 300\necho the end", false).await.expect("send");

    // Follow the turn; cut every SSH connection once some events arrived, while the agent sleeps.
    let mut follow = client.follow_events(&s.id, 0).await.expect("follow");
    let mut seen = Vec::new();
    let mut cut = false;
    let followed = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(ev) = follow.next().await {
            let ev = ev.expect("event (the follower resumes after the drop)");
            let done = matches!(ev.body, EventData::TurnCompleted(_));
            seen.push(ev);
            if !cut && seen.len() >= 100 {
                server.drop_connections();
                cut = true;
            }
            if done {
                break;
            }
        }
    })
    .await;
    assert!(followed.is_ok() && cut, "the turn did not complete after the drop: {:?}", sbx_tests::sessions::types(&seen));
    sbx_tests::sessions::assert_gapless(&seen);
    // The same events the runtime's journal holds, and the answer after the drop is there.
    let all = sbx_tests::sessions::all_events(&client, &s.id).await;
    assert!(all.len() >= seen.len() && all[..seen.len()].iter().zip(&seen).all(|(a, b)| a.sequence == b.sequence), "the journal and the stream differ");
    let text: String = seen.iter().map(|e| serde_json::to_string(&e.body).unwrap_or_default()).collect();
    assert!(text.contains("the end"), "the turn's last answer arrived");
    lc.teardown(&ready.sandbox.id).await.expect("teardown");
    assert!(server.leftovers().is_empty(), "left on the server: {:?}", server.leftovers());
}
