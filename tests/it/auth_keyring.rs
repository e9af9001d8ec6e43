//! `sbx auth login` against a real Secret Service: GNOME Keyring on a private session bus. The key goes
//! to the keyring (no file holds it in plain text), survives a restart of the keyring daemon (a reboot,
//! as far as the key is concerned), `status` names the store, `logout` removes it; where the bus has no
//! Secret Service the file is used at once, with a note; `SBX_KEYRING` forces either store.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sbx_tests::bin;

/// A private D-Bus session bus, optionally with GNOME Keyring's Secret Service on it; both are killed
/// on drop.
struct Bus {
    address: String,
    daemon: Child,
    keyring: Option<Child>,
    dir: PathBuf,
}

/// Whether the programs are installed; under the test command (SBX_REQUIRE_DOCKER=1, which CI sets and
/// install/test-deps.sh provides for) their absence is a failure, never a skip.
fn tools_present() -> bool {
    let has = |p: &str| Command::new("sh").args(["-c", &format!("command -v {p}")]).output().is_ok_and(|o| o.status.success());
    let ok = has("dbus-daemon") && has("gnome-keyring-daemon");
    if !ok && std::env::var("SBX_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("dbus-daemon and gnome-keyring-daemon are required (install/test-deps.sh installs them)");
    }
    if !ok {
        eprintln!("skipped: dbus-daemon or gnome-keyring-daemon is not installed");
    }
    ok
}

impl Bus {
    /// A bus with no service activation, so nothing answers for org.freedesktop.secrets unless we start it.
    fn start(dir: &Path) -> Bus {
        let socket = dir.join("bus");
        let config = dir.join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .unwrap();
        let mut daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon starts");
        let mut line = String::new();
        BufReader::new(daemon.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let address = line.trim().to_owned();
        assert!(address.starts_with("unix:"), "dbus-daemon printed {line:?}");
        Bus { address, daemon, keyring: None, dir: dir.to_owned() }
    }

    /// Starts GNOME Keyring's Secret Service on the bus, unlocking (creating, the first time) the login
    /// collection under `home` with a fixed password, and waits until it owns its name.
    fn start_keyring(&mut self, home: &Path) {
        let mut child = Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", home)
            .env("XDG_DATA_HOME", home.join("data"))
            .env("XDG_RUNTIME_DIR", &self.dir)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gnome-keyring-daemon starts");
        // The unlock password comes on stdin, then stdin closes.
        child.stdin.take().unwrap().write_all(b"test-password").unwrap();
        self.keyring = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let out = Command::new("dbus-send")
                .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
                .args(["--session", "--print-reply", "--dest=org.freedesktop.secrets", "/org/freedesktop/secrets"])
                .args(["org.freedesktop.Secret.Service.ReadAlias", "string:default"])
                .output()
                .unwrap();
            if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("/collection/") {
                return;
            }
            assert!(Instant::now() < deadline, "the Secret Service never came up: {}", String::from_utf8_lossy(&out.stderr));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop_keyring(&mut self) {
        if let Some(mut k) = self.keyring.take() {
            let _ = k.kill();
            let _ = k.wait();
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        self.stop_keyring();
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// `sbx ARGS` with a clean environment on `bus`.
fn sbx(home: &Path, bus: &Bus, args: &[&str], stdin: Option<&str>, extra: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin("sbx"));
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env("NO_COLOR", "1")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn json(out: &Output, what: &str) -> serde_json::Value {
    assert!(out.status.success(), "{what} failed ({:?}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn status_row(home: &Path, bus: &Bus, provider: &str) -> serde_json::Value {
    let v = json(&sbx(home, bus, &["auth", "status", "--json"], None, &[]), "status");
    v.as_array().unwrap().iter().find(|r| r["provider"] == provider).unwrap().clone()
}

/// Every regular file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() && std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes())) {
                hits.push(p);
            }
        }
    }
    hits
}

#[test]
fn login_uses_the_secret_service_and_the_key_survives_a_restart() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut bus = Bus::start(tmp.path());
    bus.start_keyring(&home);
    let key = format!("e2b_{}", sbx_tests::random_token());

    let v = json(&sbx(&home, &bus, &["auth", "login", "e2b", "--with-token", "--json"], Some(&key), &[]), "login");
    assert_eq!(v["store"], "secret-service", "{v}");
    assert!(v["path"].is_null(), "{v}");
    assert!(!v.to_string().contains(&key), "login never prints the key: {v}");
    // Nothing on disk holds the key in plain text (the keyring file is encrypted).
    assert_eq!(files_containing(tmp.path(), &key), Vec::<PathBuf>::new());

    let row = status_row(&home, &bus, "e2b");
    assert_eq!((row["found"].as_bool(), row["store"].as_str()), (Some(true), Some("secret-service")), "{row}");

    // A restart of the keyring daemon (as after a reboot) keeps the key.
    bus.stop_keyring();
    bus.start_keyring(&home);
    let row = status_row(&home, &bus, "e2b");
    assert_eq!(row["store"], "secret-service", "after a restart: {row}");
    // The environment still wins over the stored key.
    let v = json(&sbx(&home, &bus, &["auth", "status", "--json"], None, &[("E2B_API_KEY", "e2b_from_env_0123456789")]), "status");
    let e2b = v.as_array().unwrap().iter().find(|r| r["provider"] == "e2b").unwrap();
    assert_eq!(e2b["store"], "env");

    // Forcing the file puts the key there and takes it out of the keyring, so the two never disagree.
    let v = json(&sbx(&home, &bus, &["auth", "login", "e2b", "--with-token", "--json"], Some(&key), &[("SBX_KEYRING", "file")]), "login file");
    assert_eq!(v["store"], "file");
    let row = status_row(&home, &bus, "e2b");
    assert_eq!(row["store"], "file", "{row}");
    // And back: the keyring takes it and the file no longer holds it.
    json(&sbx(&home, &bus, &["auth", "login", "e2b", "--with-token", "--json"], Some(&key), &[]), "login again");
    assert_eq!(files_containing(tmp.path(), &key), Vec::<PathBuf>::new());

    let v = json(&sbx(&home, &bus, &["auth", "logout", "e2b", "--json"], None, &[]), "logout");
    assert_eq!(v["from"], serde_json::json!(["secret-service"]), "{v}");
    assert_eq!(status_row(&home, &bus, "e2b")["found"], false);
}

#[test]
fn a_bus_without_a_secret_service_falls_back_to_the_file_at_once() {
    if !tools_present() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let bus = Bus::start(tmp.path());
    let key = format!("dtn_{}", sbx_tests::random_token());

    let started = Instant::now();
    let out = sbx(&home, &bus, &["auth", "login", "daytona", "--with-token"], Some(&key), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(4), "no waiting on an absent service: {:?}", started.elapsed());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("credentials.toml") && err.contains("Secret Service was not usable"), "{err}");
    assert_eq!(status_row(&home, &bus, "daytona")["store"], "file");

    // Asked for the Secret Service explicitly, it is a clear error instead.
    let out = sbx(&home, &bus, &["auth", "login", "daytona", "--with-token"], Some(&key), &[("SBX_KEYRING", "secret-service")]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SBX_KEYRING=secret-service"));
    let out = sbx(&home, &bus, &["auth", "status"], None, &[("SBX_KEYRING", "wallet")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("auto, secret-service or file"));
}
