//! Installing agents from the vendors' release channels, as the vendors lay them out, served by a
//! local HTTP server ([`sbx_tests::release_channel`]): the channel pointers and pinned versions are
//! honoured, a checksum mismatch is refused and leaves the installed agent alone, and `auto` with no
//! source that works names everything it tried. The runtime is the real one (in-process); the
//! binaries are stand-ins whose `--version` says which one was installed.

use sbx_agent::api::session::InstallAgentRequest;
use sbx_tests::release_channel::{fake_agent, ReleaseChannel};
use sbx_tests::TestRuntime;

async fn runtime() -> (TestRuntime, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().to_path_buf();
    (TestRuntime::start_with(move |c| c.state_dir = Some(dir)).await, state)
}

fn vendor(channel: String, version: Option<&str>) -> InstallAgentRequest {
    InstallAgentRequest {
        source: Some("vendor".into()),
        channel_url: Some(channel),
        version: version.map(str::to_owned),
        reinstall: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn claude_from_its_release_channel_honours_channels_and_pins_and_refuses_a_bad_checksum() {
    let bins = tempfile::tempdir().unwrap();
    let ch = ReleaseChannel::start().await;
    for v in ["1.0.0", "1.1.0"] {
        ch.publish_claude(v, &fake_agent(bins.path(), &format!("claude-{v}"), &format!("{v} (Claude Code)")), None);
    }
    ch.point_claude("stable", "1.0.0");
    ch.point_claude("latest", "1.1.0");
    let evil = fake_agent(bins.path(), "claude-evil", "6.6.6 (Claude Code)");
    ch.publish_claude("6.6.6", &evil, Some(&"ab".repeat(32)));
    let (rt, _state) = runtime().await;

    // Default: the stable channel.
    let r = rt.client.install_agent("claude", &vendor(ch.claude_url(), None)).await.expect("install stable");
    assert_eq!((r.source.as_str(), r.channel_version.as_deref()), ("vendor", Some("1.0.0")));
    assert_eq!(r.agent.version.as_deref(), Some("1.0.0 (Claude Code)"));
    let r = rt.client.install_agent("claude", &vendor(ch.claude_url(), Some("latest"))).await.expect("install latest");
    assert_eq!(r.agent.version.as_deref(), Some("1.1.0 (Claude Code)"));
    // A pinned version, not what either channel points at.
    let r = rt.client.install_agent("claude", &vendor(ch.claude_url(), Some("1.0.0"))).await.expect("install pinned");
    assert_eq!(r.agent.version.as_deref(), Some("1.0.0 (Claude Code)"));
    assert!(ch.hits().contains(&format!("/claude/1.0.0/{}/claude", sbx_tests::release_channel::claude_platform())));

    let err = rt.client.install_agent("claude", &vendor(ch.claude_url(), Some("6.6.6"))).await.expect_err("mismatch");
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    let now = rt.client.agent("claude").await.unwrap();
    assert_eq!(now.version.as_deref(), Some("1.0.0 (Claude Code)"), "a refused download leaves the agent as it was");
    let err = rt.client.install_agent("claude", &vendor(ch.claude_url(), Some("9.9.9"))).await.expect_err("no such version");
    assert!(err.to_string().contains("/claude/9.9.9/manifest.json") && err.to_string().contains("404"), "{err}");
    rt.stop().await;
}

#[tokio::test]
async fn codex_from_its_release_channel_unpacks_the_package_and_honours_pins() {
    let bins = tempfile::tempdir().unwrap();
    let ch = ReleaseChannel::start().await;
    ch.publish_codex("0.1.0", &fake_agent(bins.path(), "codex-0.1.0", "codex-cli 0.1.0"), false, None);
    ch.publish_codex("0.2.0", &fake_agent(bins.path(), "codex-0.2.0", "codex-cli 0.2.0"), true, None);
    ch.publish_codex("0.6.6", &fake_agent(bins.path(), "codex-evil", "codex-cli 0.6.6"), false, Some(&"cd".repeat(32)));
    let (rt, state) = runtime().await;

    let r = rt.client.install_agent("codex", &vendor(ch.codex_url(), None)).await.expect("install latest");
    assert_eq!((r.source.as_str(), r.agent.version.as_deref()), ("vendor", Some("codex-cli 0.2.0")));
    assert_eq!(r.channel_version.as_deref(), Some("0.2.0"), "read from the package's codex-package.json");
    let r = rt.client.install_agent("codex", &vendor(ch.codex_url(), Some("0.1.0"))).await.expect("install pinned");
    assert_eq!(r.agent.version.as_deref(), Some("codex-cli 0.1.0"));
    assert!(ch.hits().iter().any(|h| h == &format!("/codex/download/rust-v0.1.0/codex-package-{}.tar.gz", sbx_tests::release_channel::codex_target())));
    // The whole package is unpacked (Codex runs with the resources beside its binary).
    let link = std::fs::read_link(state.path().join("agents/bin/codex")).unwrap();
    assert!(link.ends_with("bin/codex") && link.starts_with(state.path().join("agents/packages")), "{}", link.display());

    let err = rt.client.install_agent("codex", &vendor(ch.codex_url(), Some("0.6.6"))).await.expect_err("mismatch");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert_eq!(rt.client.agent("codex").await.unwrap().version.as_deref(), Some("codex-cli 0.1.0"));
    rt.stop().await;
}

#[tokio::test]
async fn auto_with_nothing_that_works_says_what_it_tried() {
    let (rt, _state) = runtime().await;
    // A refused port for both the channel and the package index: no network, in effect.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let req = InstallAgentRequest {
        channel_url: Some(format!("http://127.0.0.1:{port}/claude")),
        pip_index_url: Some(format!("http://127.0.0.1:{port}/simple")),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let err = rt.client.install_agent("claude", &req).await.expect_err("nothing works");
    let msg = err.to_string();
    assert!(msg.contains("tried vendor:") && msg.contains("; pip:"), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{port}/claude/stable")), "names the URL it tried: {msg}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "took {:?}", started.elapsed());
    // `image` only looks.
    let req = InstallAgentRequest { source: Some("image".into()), ..Default::default() };
    let err = rt.client.install_agent("codex", &req).await.expect_err("not in the image");
    assert!(err.to_string().contains("not in this sandbox's image"), "{err}");
    rt.stop().await;
}
