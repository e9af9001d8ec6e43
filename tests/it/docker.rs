//! The Docker provider beyond the shared suite: `--network none`, images without a shell, pulls from a
//! registry, labels/limits/ports, and safety around containers that are not sbx's.
//!
//! Every test skips with a printed reason when Docker is not available (unless SBX_REQUIRE_DOCKER=1).
//! The `docker` CLI is the oracle: what we check, we read back through it, not through our own code.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sbx_providers::bootstrap::bootstrap;
use sbx_providers::docker::DockerProvider;
use sbx_providers::{Error, ExecSpec, Network, Provider, SandboxSpec, Transport};

use crate::conformance::base_image;

/// A provider on a temporary state dir, or `None` (with a printed reason) when Docker is missing.
async fn provider(state: &Path) -> Option<DockerProvider> {
    if !sbx_tests::docker_available() {
        eprintln!("skipping: Docker is not available (set SBX_REQUIRE_DOCKER=1 to fail instead)");
        return None;
    }
    let provider = DockerProvider::connect().await.expect("connect to Docker");
    Some(provider.with_state_dir(state).with_runtime(sbx_tests::static_runtime()).with_image(base_image()))
}

/// Runs the docker CLI; returns (success, stdout, stderr).
async fn docker(args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new("docker").args(args).output().await.expect("run docker");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn inspect(id: &str) -> serde_json::Value {
    let (ok, out, err) = docker(&["inspect", id]).await;
    assert!(ok, "docker inspect {id}: {err}");
    serde_json::from_str::<serde_json::Value>(&out).expect("inspect JSON")[0].clone()
}

/// Removes the container when dropped (so a failed assertion leaves no container behind).
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker").args(["rm", "-f", "-v", &self.0]).output();
    }
}

/// Removes the image tag when dropped.
struct RemoveImage(String);

impl Drop for RemoveImage {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker").args(["rmi", &self.0]).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_names_the_fix_when_the_engine_is_down() {
    let err = DockerProvider::connect_host("unix:///nonexistent/docker.sock").await.expect_err("no engine there");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("is Docker running? start it with `sudo systemctl start docker`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_none_cuts_the_network_but_the_runtime_answers_on_a_unix_socket() {
    let state = tempfile::tempdir().expect("tempdir");
    let Some(p) = provider(state.path()).await else { return };
    let mut spec = SandboxSpec::named("netnone");
    spec.network = Network::None;
    let sandbox = p.create(&spec).await.expect("create");
    let _guard = Cleanup(sandbox.id.clone());
    assert_eq!(inspect(&sandbox.id).await["HostConfig"]["NetworkMode"], "none");

    let layout = p.runtime_layout(&sandbox.id).await.expect("layout");
    assert_eq!(layout.unix_socket.as_deref(), Some("/run/sbx/agent.sock"));
    let handle = bootstrap(&p, &sandbox.id, &sbx_tests::static_runtime(), &layout).await.expect("bootstrap");
    let Transport::Unix { path } = &handle.endpoint.transport else {
        panic!("expected a Unix socket endpoint, got {:?}", handle.endpoint)
    };
    assert!(path.starts_with(state.path()), "{} is not under the state dir", path.display());
    let health = handle.client().expect("client").health().await.expect("health over the unix socket");
    assert_eq!(health.version, sbx_agent::VERSION);

    // No routes and no way out, not even to the host's end of Docker's bridge.
    let routes = p.exec(&sandbox.id, &ExecSpec::new(["ip", "route"])).await.expect("ip route");
    assert_eq!(routes.exit_code, 0, "{}", String::from_utf8_lossy(&routes.stderr));
    assert_eq!(String::from_utf8_lossy(&routes.stdout).trim(), "", "routes in a --network none sandbox");
    // The host's end of the bridge, as a bridge-networked sandbox sees it.
    let bridged = p.create(&SandboxSpec::named("bridged")).await.expect("create a bridged sandbox");
    let _bridged_guard = Cleanup(bridged.id.clone());
    let gateway = inspect(&bridged.id).await["NetworkSettings"]["Gateway"].as_str().unwrap_or_default().to_owned();
    p.destroy(&bridged.id).await.expect("destroy");
    assert!(gateway.parse::<std::net::Ipv4Addr>().is_ok(), "bridge gateway `{gateway}`");
    let connect = "import socket, sys\ns = socket.socket()\ns.settimeout(5)\ns.connect((sys.argv[1], 2375))";
    let out = p.exec(&sandbox.id, &ExecSpec::new(["python3", "-c", connect, &gateway])).await.expect("exec");
    assert_ne!(out.exit_code, 0, "connecting to {gateway} worked from a --network none sandbox");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreachable"), "{}", String::from_utf8_lossy(&out.stderr));

    // Other ports can't be reached at all, and destroy removes the socket directory.
    let other = p.endpoint(&sandbox.id, 8080).await;
    assert!(matches!(other, Err(Error::Unsupported { .. })), "{other:?}");
    let dir = path.parent().expect("socket dir").to_path_buf();
    p.destroy(&sandbox.id).await.expect("destroy");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

/// Imports a one-directory image (no shell, no runtime) with the docker CLI.
async fn import_empty_image(reference: &str) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o1777);
    header.set_size(0);
    header.set_cksum();
    tar.append_data(&mut header, "tmp/", std::io::empty()).expect("tar");
    let tar = tar.into_inner().expect("tar");
    let mut child = tokio::process::Command::new("docker")
        .args(["import", "-", reference])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("docker import");
    let mut stdin = child.stdin.take().expect("stdin");
    tokio::io::AsyncWriteExt::write_all(&mut stdin, &tar).await.expect("write tar");
    drop(stdin);
    assert!(child.wait().await.expect("wait").success(), "docker import {reference}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_without_a_shell_are_kept_up_by_the_runtime_and_bootstrap() {
    let state = tempfile::tempdir().expect("tempdir");
    let Some(p) = provider(state.path()).await else { return };
    let runtime = sbx_tests::static_runtime();
    // The scratch image of templates/docker/scratch.sh: nothing but the runtime.
    let script = sbx_tests::workspace_root().join("templates/docker/scratch.sh");
    let out = tokio::process::Command::new("bash")
        .arg(&script)
        .arg(&runtime)
        .arg("sbx-scratch:test")
        .output()
        .await
        .expect("scratch.sh");
    assert!(out.status.success(), "scratch.sh: {}", String::from_utf8_lossy(&out.stderr));
    // And an image with nothing at all: the provider puts the runtime in before starting it.
    let empty = format!("sbx-empty-{}:test", std::process::id());
    import_empty_image(&empty).await;
    let _empty_guard = RemoveImage(empty.clone());

    for image in ["sbx-scratch:test", empty.as_str()] {
        let mut spec = SandboxSpec::named("shellless");
        spec.image = Some(image.into());
        let sandbox = p.create(&spec).await.unwrap_or_else(|e| panic!("create from {image}: {e}"));
        let _guard = Cleanup(sandbox.id.clone());
        let info = inspect(&sandbox.id).await;
        assert_eq!(info["Config"]["Entrypoint"], serde_json::json!(["/usr/local/bin/sbx-agent", "idle"]), "{image}");
        assert_eq!(info["HostConfig"]["Init"], true);
        let layout = p.runtime_layout(&sandbox.id).await.expect("layout");
        let handle = bootstrap(&p, &sandbox.id, &runtime, &layout).await.expect("bootstrap");
        let health = handle.client().expect("client").health().await.expect("health");
        assert_eq!(health.version, sbx_agent::VERSION);
        let sh = p.exec(&sandbox.id, &ExecSpec::new(["sh", "-c", "true"])).await;
        assert!(!matches!(sh, Ok(ref o) if o.exit_code == 0), "{image} has a shell?");
        // Uploads need no shell either, even to a directory that does not exist yet.
        let tar = sbx_providers::single_file_tar("f.txt", b"no shell needed", 0o644).expect("tar");
        p.upload(&sandbox.id, sbx_providers::bytes_stream(tar), "/workspace/new/dir").await.expect("upload");
        let (ok, _, err) = docker(&["cp", &format!("{}:/workspace/new/dir/f.txt", sandbox.id), "-"]).await;
        assert!(ok, "{err}");
        p.destroy(&sandbox.id).await.expect("destroy");
    }
}

/// `docker-registry` serving on 127.0.0.1:`port`, stopped when dropped.
struct Registry {
    _child: tokio::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

/// Starts `docker-registry`; its storage is kept in `$SBX_TEST_CACHE/registry` when that is set, so a
/// later run pushes only what changed.
async fn start_registry() -> Registry {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = match std::env::var_os("SBX_TEST_CACHE") {
        Some(cache) => Path::new(&cache).join("registry"),
        None => dir.path().join("data"),
    };
    let config = format!(
        "version: 0.1\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\nlog: {{level: warn}}\n",
        storage.display()
    );
    let config_path = dir.path().join("config.yml");
    std::fs::write(&config_path, config).expect("write registry config");
    let child = tokio::process::Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(&config_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start docker-registry");
    let url = format!("http://127.0.0.1:{port}/v2/");
    let up = sbx_tests::wait_for(Duration::from_secs(20), || async {
        reqwest::get(&url).await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(up, "docker-registry did not answer on {url}");
    Registry { _child: child, port, _dir: dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_pulled_with_progress_per_layer() {
    let state = tempfile::tempdir().expect("tempdir");
    let Some(p) = provider(state.path()).await else { return };
    if !Path::new("/usr/bin/docker-registry").exists() {
        assert!(std::env::var("SBX_REQUIRE_DOCKER").as_deref() != Ok("1"), "docker-registry is not installed");
        eprintln!("skipping: /usr/bin/docker-registry is not installed (apt-get install docker-registry)");
        return;
    }
    let registry = start_registry().await;
    // sbx-base plus one layer of our own (a random marker), so the pull has a layer to download.
    let image = format!("127.0.0.1:{}/sbx-base:test-{}", registry.port, std::process::id());
    let marker = sbx_tests::random_token();
    let files = tempfile::tempdir().expect("tempdir");
    std::fs::write(files.path().join("marker"), &marker).expect("write marker");
    // Plus a few MB of random bytes: Docker reports no "Downloading" progress for a layer so small it
    // arrives in one read (the base image's own layers are already here, so this is the only download).
    let mut ballast = vec![0u8; 4 << 20];
    getrandom::fill(&mut ballast).expect("random");
    std::fs::write(files.path().join("ballast"), &ballast).expect("write ballast");
    let builder = format!("sbx-pull-test-{}", std::process::id());
    let marker_path = files.path().display().to_string() + "/.";
    let marker_dest = format!("{builder}:/");
    let steps: [Vec<&str>; 6] = [
        vec!["create", "--name", &builder, "sbx-base:latest", "true"],
        vec!["cp", &marker_path, &marker_dest],
        vec!["commit", &builder, &image],
        vec!["rm", &builder],
        vec!["push", &image],
        vec!["rmi", &image],
    ];
    let _builder_guard = Cleanup(builder.clone());
    let _image_guard = RemoveImage(image.clone());
    for args in steps {
        let (ok, _, err) = docker(&args).await;
        assert!(ok, "docker {}: {err}", args.join(" "));
    }

    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let p = p.with_pull_progress(move |e| sink.lock().expect("events").push(e.clone()));
    let mut spec = SandboxSpec::named("pulled");
    spec.image = Some(image.clone());
    let sandbox = p.create(&spec).await.expect("create pulls the image");
    let _guard = Cleanup(sandbox.id.clone());
    let events = events.lock().expect("events").clone();
    let downloads = events.iter().filter(|e| e.status == "Downloading" && e.layer.is_some() && e.total.is_some());
    assert!(downloads.count() > 0, "no per-layer download progress: {events:?}");
    assert!(events.iter().any(|e| e.status == "Pull complete" && e.layer.is_some()), "{events:?}");
    assert!(events.iter().all(|e| e.image == image));
    let layout = p.runtime_layout(&sandbox.id).await.expect("layout");
    let handle = bootstrap(&p, &sandbox.id, &sbx_tests::static_runtime(), &layout).await.expect("bootstrap");
    handle.client().expect("client").health().await.expect("health");
    let cat = p.exec(&sandbox.id, &ExecSpec::new(["cat", "/marker"])).await.expect("cat");
    assert_eq!(String::from_utf8_lossy(&cat.stdout), marker, "the sandbox runs the pulled image");
    p.destroy(&sandbox.id).await.expect("destroy");

    // A pull that fails is ImageNotFound with a hint; sbx-base itself is never pulled.
    spec.image = Some(format!("127.0.0.1:{}/sbx-base:no-such-tag", registry.port));
    let err = p.create(&spec).await.expect_err("no such tag");
    assert!(matches!(err, Error::ImageNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("docker login"), "{err}");
    spec.image = Some("sbx-base:no-such-tag".into());
    let err = p.create(&spec).await.expect_err("no such tag");
    assert!(matches!(&err, Error::ImageNotFound { hint, .. } if hint.contains("templates/docker/build.sh")), "{err:?}");
    let leftovers = p.list(&sbx_providers::Labels::from([(sbx_providers::labels::NAME.into(), "pulled".into())])).await;
    assert!(leftovers.expect("list").is_empty(), "a failed create leaves nothing behind");

    // The same through the CLI: `sbx up --image` pulls from the registry, drawing each layer.
    let (ok, _, err) = docker(&["rmi", &image]).await;
    assert!(ok, "docker rmi: {err}");
    let home = tempfile::tempdir().expect("tempdir");
    let sbx = |args: &[&str], docker_host: Option<&str>| {
        let mut c = std::process::Command::new(sbx_tests::bin("sbx"));
        c.args(args).env("XDG_STATE_HOME", home.path()).env("SBX_RUNTIME", sbx_tests::static_runtime()).env("NO_COLOR", "1");
        if let Some(h) = docker_host {
            c.env("DOCKER_HOST", h);
        }
        c.output().expect("run sbx")
    };
    let up = sbx(&["up", "--provider", "docker", "--image", &image, "--name", "from-registry"], None);
    let up_err = String::from_utf8_lossy(&up.stderr).into_owned();
    assert!(up.status.success(), "sbx up --image from the registry failed:\n{up_err}");
    assert!(up_err.lines().any(|l| l.starts_with("layer ") && l.ends_with("Pull complete")), "no per-layer lines:\n{up_err}");
    let cat = sbx(&["exec", "from-registry", "--", "cat", "/marker"], None);
    assert_eq!(String::from_utf8_lossy(&cat.stdout), marker, "the CLI's sandbox runs the pulled image");
    assert!(sbx(&["down", "from-registry"], None).status.success());

    // Bad input through the CLI: one clear line; a missing image is a usage error (exit 2), an
    // engine that does not answer a provider failure (exit 4).
    let missing = format!("127.0.0.1:{}/sbx-base:no-such-tag", registry.port);
    let out = sbx(&["up", "--provider", "docker", "--image", &missing, "--name", "nope", "-q"], None);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: image") && last.contains("not found"), "{err}");
    let out = sbx(&["up", "--provider", "docker", "--name", "nope", "-q"], Some("unix:///nonexistent/docker.sock"));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.lines().count() == 1 && err.contains("is Docker running?"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_limits_env_and_ports_reach_the_container() {
    let state = tempfile::tempdir().expect("tempdir");
    let Some(p) = provider(state.path()).await else { return };
    let mut spec = SandboxSpec::named("limits");
    spec.labels.insert("dev.sbx.test".into(), "labels".into());
    spec.env.insert("SBX_TEST_ENV".into(), "from the spec".into());
    spec.cpus = Some(0.5);
    spec.memory_mb = Some(256);
    spec.ports = vec![8080];
    spec.ttl = Some(Duration::from_secs(3600));
    let sandbox = p.create(&spec).await.expect("create");
    let _guard = Cleanup(sandbox.id.clone());

    let id = sandbox.id.as_str();
    let suffix = id.strip_prefix("sbx-limits-").expect("name is sbx-<name>-<hex>");
    assert!(suffix.len() == 4 && suffix.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    let info = inspect(id).await;
    let labels = &info["Config"]["Labels"];
    assert_eq!(labels["dev.sbx.managed"], "true");
    assert_eq!(labels["dev.sbx.name"], "limits");
    assert_eq!(labels["dev.sbx.test"], "labels");
    assert!(labels["dev.sbx.expires-at"].as_str().and_then(|s| s.parse::<u64>().ok()).is_some(), "{labels}");
    assert_eq!(info["HostConfig"]["Init"], true);
    assert_eq!(info["HostConfig"]["NanoCpus"], 500_000_000);
    assert_eq!(info["HostConfig"]["Memory"], 256 * 1024 * 1024);
    for port in ["2468/tcp", "8080/tcp"] {
        let bindings = info["NetworkSettings"]["Ports"][port].as_array().cloned().unwrap_or_default();
        assert!(!bindings.is_empty(), "{port} not published");
        assert!(bindings.iter().all(|b| b["HostIp"] == "127.0.0.1"), "{port} published beyond loopback: {bindings:?}");
    }
    let env = p.exec(id, &ExecSpec::new(["sh", "-c", "echo \"$SBX_TEST_ENV\""])).await.expect("exec");
    assert_eq!(String::from_utf8_lossy(&env.stdout), "from the spec\n");

    // An extra port is reachable from the host through its endpoint.
    let serve = "cd /tmp && echo served > index.html && exec python3 -m http.server 8080 >/dev/null 2>&1 &";
    p.exec(id, &ExecSpec::new(["sh", "-c", serve])).await.expect("start a server");
    let endpoint = p.endpoint(id, 8080).await.expect("endpoint");
    let Transport::Http { url } = endpoint.transport else { panic!("http endpoint expected") };
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let body = Arc::new(Mutex::new(String::new()));
    let served = sbx_tests::wait_for(Duration::from_secs(20), || {
        let (url, body) = (url.clone(), body.clone());
        async move {
            let Ok(resp) = reqwest::get(format!("{url}/index.html")).await else { return false };
            *body.lock().expect("body") = resp.text().await.unwrap_or_default();
            true
        }
    })
    .await;
    assert!(served, "nothing answered on {url}");
    assert_eq!(body.lock().expect("body").trim(), "served");
    let unpublished = p.endpoint(id, 9999).await;
    assert!(matches!(unpublished, Err(Error::InvalidSpec(_))), "{unpublished:?}");

    p.destroy(id).await.expect("destroy");
    let (exists, _, _) = docker(&["inspect", id]).await;
    assert!(!exists, "container {id} still exists after destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_that_are_not_sbx_are_left_alone() {
    let state = tempfile::tempdir().expect("tempdir");
    let Some(p) = provider(state.path()).await else { return };
    let name = format!("sbx-unmanaged-{}", std::process::id());
    let (ok, _, err) = docker(&["create", "--name", &name, &base_image(), "sleep", "infinity"]).await;
    assert!(ok, "{err}");
    let _guard = Cleanup(name.clone());
    assert!(p.get(&name).await.expect("get").is_none());
    let exec = p.exec(&name, &ExecSpec::new(["true"])).await;
    assert!(matches!(&exec, Err(e) if e.is_not_found()), "{exec:?}");
    p.destroy(&name).await.expect("destroy of a foreign container is a no-op");
    let (exists, _, _) = docker(&["inspect", &name]).await;
    assert!(exists, "destroy removed a container sbx did not make");
    let all = p.list(&Default::default()).await.expect("list");
    assert!(all.iter().all(|s| s.id != name), "list shows a foreign container");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_stopped_behind_our_back_resumes_and_its_runtime_restarts() {
    let state = tempfile::tempdir().expect("tempdir");
    let Some(p) = provider(state.path()).await else { return };
    let sandbox = p.create(&SandboxSpec::named("stopped")).await.expect("create");
    let _guard = Cleanup(sandbox.id.clone());
    let layout = p.runtime_layout(&sandbox.id).await.expect("layout");
    let handle = bootstrap(&p, &sandbox.id, &sbx_tests::static_runtime(), &layout).await.expect("bootstrap");
    let (ok, _, err) = docker(&["stop", "-t", "5", &sandbox.id]).await;
    assert!(ok, "{err}");
    assert_eq!(p.get(&sandbox.id).await.expect("get").expect("exists").state, sbx_providers::SandboxState::Stopped);
    p.resume(&sandbox.id).await.expect("resume starts it");
    assert_eq!(p.get(&sandbox.id).await.expect("get").expect("exists").state, sbx_providers::SandboxState::Running);
    // The published port may change with the restart: look it up again.
    let handle = sbx_providers::bootstrap::RuntimeHandle {
        endpoint: p.endpoint(&sandbox.id, layout.port).await.expect("endpoint"),
        token: handle.token.clone(),
    };
    let lc = sbx_providers::lifecycle::Lifecycle::new(std::sync::Arc::new(p.clone()));
    let client = lc.reconnect(&sandbox.id, &handle, &layout).await.expect("restart").client;
    client.health().await.expect("health after restart");
    p.destroy(&sandbox.id).await.expect("destroy");
}
