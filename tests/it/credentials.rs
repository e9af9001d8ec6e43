//! Credentials through the binaries: `sbx credentials` and `sbx-agent credentials` (masking,
//! `--reveal`, a shell round trip of `env --export`), `sbx auth` with its private file, deliberate
//! injection with `sbx up --credentials`, and nothing crossing into a sandbox unless named, with no
//! secret in any log or output even at `RUST_LOG=trace`.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use sbx_tests::bin;

const TRICKY: &str = "sk-ant-it's a \"key\" with $HOME, `ticks`\nand a newline";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `program ARGS` with a clean environment: only PATH, HOME and what the test adds.
fn cmd(program: &Path, home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    c
}

fn write(home: &Path, rel: &str, body: &str) {
    let p = home.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed ({:?}): {}", out.status, text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn extract_masks_unless_revealed_and_both_binaries_agree() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    write(h, ".claude.json", r#"{"primaryApiKey": "sk-ant-api03-FILEKEY-abcdefghij"}"#);
    write(h, ".codex/auth.json", "{ broken");
    let sbx = ok(cmd(&bin("sbx"), h, &["credentials", "extract", "--json"]).output().unwrap(), "extract");
    let v: serde_json::Value = serde_json::from_str(&sbx).unwrap();
    assert_eq!(v["credentials"][0]["agent"], "claude");
    assert_eq!(v["credentials"][0]["kind"], "api_key");
    assert!(!sbx.contains("FILEKEY"), "masked by default: {sbx}");
    assert!(v["warnings"][0].as_str().unwrap().contains("auth.json"));
    let agent = ok(cmd(&bin("sbx-agent"), h, &["credentials", "extract", "--json"]).output().unwrap(), "sbx-agent extract");
    assert_eq!(agent, sbx, "sbx and sbx-agent share one implementation");
    let shown = ok(cmd(&bin("sbx"), h, &["credentials", "extract", "-a", "claude", "--reveal"]).output().unwrap(), "reveal");
    assert!(shown.contains("sk-ant-api03-FILEKEY-abcdefghij"));
    // A malformed file is a warning on stderr naming it, not a failure.
    let out = cmd(&bin("sbx"), h, &["credentials", "extract"]).output().unwrap();
    assert!(out.status.success());
    assert!(text(&out.stderr).contains(".codex/auth.json"), "{}", text(&out.stderr));
    // A bad filter is a usage error that lists the choices.
    let out = cmd(&bin("sbx"), h, &["credentials", "extract", "-a", "cursor"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("claude, codex, opencode, amp"));
}

#[test]
fn env_export_survives_a_shell_round_trip() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    write(h, ".codex/auth.json", r#"{"OPENAI_API_KEY": "sk-proj-plain-1234567890"}"#);
    let script = format!(
        "eval \"$('{}' credentials env --export)\"; printf '%s' \"$ANTHROPIC_API_KEY\" > {}/a; printf '%s' \"$OPENAI_API_KEY\" > {}/o",
        bin("sbx").display(),
        h.display(),
        h.display()
    );
    let out = cmd(Path::new("/bin/sh"), h, &["-c", &script]).env("ANTHROPIC_API_KEY", TRICKY).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(h.join("a")).unwrap(), TRICKY, "quotes, spaces, $, backticks and newlines stay intact");
    assert_eq!(std::fs::read_to_string(h.join("o")).unwrap(), "sk-proj-plain-1234567890");
    let plain = ok(cmd(&bin("sbx"), h, &["credentials", "env"]).output().unwrap(), "env");
    assert!(plain.lines().any(|l| l == "OPENAI_API_KEY='sk-proj-plain-1234567890'"), "{plain}");
}

#[test]
fn auth_login_stores_a_private_file_and_status_says_which_store() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let secret = format!("vercel-token-{}", sbx_tests::random_token());
    // `--with-token` reads the key from stdin.
    let mut login = cmd(&bin("sbx"), h, &["auth", "login", "vercel", "--with-token"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    login.stdin.take().unwrap().write_all(format!("{secret}\n").as_bytes()).unwrap();
    let out = login.wait_with_output().unwrap();
    assert!(out.status.success(), "login: {}", text(&out.stderr));
    assert!(!text(&out.stderr).contains(&secret) && !text(&out.stdout).contains(&secret));
    // A file only this user can read, in a directory only this user can enter; it survives a reboot
    // (the kernel keyring, used before, did not).
    let file = h.join("config/sbx/credentials.toml");
    let mode = |p: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&h.join("config/sbx")), 0o700);
    assert!(std::fs::read_to_string(&file).unwrap().contains(&secret));
    // A second provider keeps the first.
    let mut login = cmd(&bin("sbx"), h, &["auth", "login", "e2b", "--with-token"]).stdin(Stdio::piped()).spawn().unwrap();
    login.stdin.take().unwrap().write_all(b"e2b_0123456789abcdef0123456789").unwrap();
    assert!(login.wait().unwrap().success());
    assert_eq!(mode(&file), 0o600);

    let status = |extra: &[(&str, &str)]| -> serde_json::Value {
        let mut c = cmd(&bin("sbx"), h, &["auth", "status", "--json"]);
        for (k, v) in extra {
            c.env(k, v);
        }
        let s = ok(c.output().unwrap(), "status");
        assert!(!s.contains(&secret), "status never prints the key: {s}");
        serde_json::from_str::<serde_json::Value>(&s).unwrap().as_array().unwrap().iter().find(|r| r["provider"] == "vercel").unwrap().clone()
    };
    let row = status(&[]);
    assert_eq!((row["found"].as_bool(), row["store"].as_str()), (Some(true), Some("file")));
    // The environment wins over the stored key.
    let row = status(&[("VERCEL_TOKEN", "from-env-token-1234567890")]);
    assert_eq!((row["store"].as_str(), row["source"].as_str()), (Some("env"), Some("env VERCEL_TOKEN")));
    ok(cmd(&bin("sbx"), h, &["auth", "logout", "vercel"]).output().unwrap(), "logout");
    assert_eq!(status(&[])["found"], false);
    assert_eq!(mode(&file), 0o600);
    // What a person reads: every provider, the key masked, which store holds it.
    let human = ok(cmd(&bin("sbx"), h, &["auth", "status"]).output().unwrap(), "status");
    insta::assert_snapshot!("auth_status", human.replace(&h.display().to_string(), "[HOME]"));
    // Then the config file.
    write(h, "config/sbx/config.toml", "[providers.vercel]\napi_key = \"from-config-file-123456\"\n");
    let row = status(&[]);
    assert_eq!(row["store"], "config");
    assert!(row["source"].as_str().unwrap().ends_with("config.toml"));
    // A provider command without any key says how to give one.
    std::fs::remove_file(h.join("config/sbx/config.toml")).unwrap();
    let out = cmd(&bin("sbx"), h, &["up", "--provider", "daytona", "--name", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "a missing key is an auth failure");
    let err = text(&out.stderr);
    assert!(err.contains("DAYTONA_API_KEY") && err.contains("sbx auth login daytona"), "{err}");
}

/// Nothing crosses into a sandbox unless named: a plain `sbx up` with keys on the host leaves no
/// trace of them in the sandbox's environment or files; `--credentials claude` gives them to agent
/// sessions only; and no secret shows up in any output or log even at `RUST_LOG=trace`.
#[test]
fn no_implicit_secrets_in_a_docker_sandbox_and_no_secret_in_logs() {
    if !sbx_tests::docker_available() {
        eprintln!("skipped: Docker is not available");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let api_key = format!("sk-ant-api03-HOSTKEY{}", sbx_tests::random_token());
    let oauth = format!("sk-ant-oat01-HOSTOAUTH{}", sbx_tests::random_token());
    write(h, ".claude/.credentials.json", &format!(r#"{{"claudeAiOauth": {{"accessToken": "{oauth}", "expiresAt": 99999999999999}}}}"#));
    let name = format!("nosecret-{}", &sbx_tests::random_token()[..6]);
    let named = format!("withcreds-{}", &sbx_tests::random_token()[..6]);
    let mut transcript = String::new();
    let mut sbx = |args: &[&str]| -> Output {
        let out = cmd(&bin("sbx"), h, args)
            .env("ANTHROPIC_API_KEY", &api_key)
            .env("SBX_RUNTIME", sbx_tests::static_runtime())
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        transcript.push_str(&text(&out.stdout));
        transcript.push_str(&text(&out.stderr));
        out
    };
    struct Down(std::path::PathBuf, Vec<String>);
    impl Drop for Down {
        fn drop(&mut self) {
            for n in &self.1 {
                let _ = cmd(&bin("sbx"), &self.0, &["down", n]).output();
            }
        }
    }
    let _down = Down(h.to_path_buf(), vec![name.clone(), named.clone()]);
    let image = crate::conformance::base_image();
    ok(sbx(&["up", "--provider", "docker", "--image", &image, "--name", &name]), "plain up");
    let container = container_of(h, &name);
    // Every process's environment, and every file outside /proc and /sys.
    // (The random parts of the values, so unrelated files that happen to contain "HOSTKEY" don't match.)
    let (k, o) = (&api_key[api_key.len() - 16..], &oauth[oauth.len() - 16..]);
    let scan = format!(
        "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c -e {k} -e {o}; \
         grep -rl -e {k} -e {o} / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev 2>/dev/null | head -5; true"
    );
    let found = Command::new("docker").args(["exec", &container, "sh", "-c", &scan]).output().unwrap();
    assert_eq!(text(&found.stdout).trim(), "0", "a plain sbx up must not put host secrets in the sandbox");
    let inspect = Command::new("docker").args(["inspect", &container]).output().unwrap();
    assert!(!text(&inspect.stdout).contains(k) && !text(&inspect.stdout).contains(o));

    // Named: agent sessions get them; plain commands don't.
    ok(sbx(&["up", "--provider", "docker", "--image", &image, "--name", &named, "--credentials", "claude"]), "up --credentials");
    let exec_env = ok(sbx(&["exec", &named, "--", "env"]), "exec env");
    assert!(!exec_env.contains("HOSTKEY") && !exec_env.contains("HOSTOAUTH"), "sbx exec does not see session-only keys");
    let out = ok(
        sbx(&["prompt", &named, "run printf '%s|%s' \"$ANTHROPIC_API_KEY\" \"$CLAUDE_CODE_OAUTH_TOKEN\" | sha256sum > /tmp/seen", "--agent", "mock", "--approve", "all"]),
        "mock session",
    );
    let _ = out;
    let seen = ok(sbx(&["exec", &named, "--", "cat", "/tmp/seen"]), "cat");
    // Compared by hash, so the check itself prints no secret.
    use sha2::{Digest, Sha256};
    let want = hex::encode(Sha256::digest(format!("{api_key}|{oauth}")));
    assert_eq!(seen.split_whitespace().next(), Some(want.as_str()), "the agent session got exactly the named agent's credentials");
    // The runtime's own log, read through the CLI, at trace level.
    let logs = ok(sbx(&["logs", &named]), "logs");
    let token = runtime_token(h, &named);
    assert!(!token.is_empty());
    for (what, secret) in [("api key", &api_key), ("oauth token", &oauth), ("runtime token", &token)] {
        for (place, hay) in [("sbx's output and logs", &transcript), ("the runtime's log", &logs)] {
            if let Some(at) = hay.find(secret.as_str()) {
                let from = hay[..at].char_indices().rev().nth(150).map_or(0, |(i, _)| i);
                let context = hay[from..(at + secret.len() + 40).min(hay.len())].replace(secret.as_str(), "<SECRET>");
                panic!("the {what} leaked into {place}: …{context}…");
            }
        }
    }
    // The host state keeps the runtime token, readable only by the user.
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(h.join("state/sbx/sbx.db")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let db = std::fs::read(h.join("state/sbx/sbx.db")).unwrap();
    assert!(!String::from_utf8_lossy(&db).contains("HOSTKEY"), "credentials are never stored in the host state");
}

fn container_of(home: &Path, name: &str) -> String {
    let out = ok(cmd(&bin("sbx"), home, &["status", name, "--json"]).output().unwrap(), "status");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["id"].as_str().unwrap_or_default().to_owned()
}

fn runtime_token(home: &Path, name: &str) -> String {
    let db = rusqlite::Connection::open(home.join("state/sbx/sbx.db")).unwrap();
    db.query_row("SELECT token FROM sandboxes WHERE name = ?1", [name], |r| r.get::<_, String>(0)).unwrap()
}
