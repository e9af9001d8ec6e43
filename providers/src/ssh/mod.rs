//! `ssh`: any Linux x86_64 machine the user can `ssh` into becomes a sandbox host, with nothing
//! installed there beforehand, no port opened and no root.
//!
//! - **Connection** ([`conn`]): `~/.ssh/config` (HostName, User, Port, IdentityFile, ProxyCommand,
//!   ProxyJump, UserKnownHostsFile), keys from the ssh-agent then key files, host keys checked against
//!   known_hosts ([`known_hosts`]; `--accept-new` learns an unknown key, a changed one is refused with
//!   the line to fix). One connection per host carries everything and is dialled again when it drops.
//! - **Commands** run as `/bin/sh` scripts whatever the login shell (fish included), with output the
//!   shell's startup files print dropped.
//! - **A sandbox** is a directory `~/.sbx/sandboxes/<name>/` on the host: `workspace/` (the runtime's
//!   `--root`), `state/` (its `XDG_STATE_HOME`), `tmp/` (`TMPDIR`, so a `noexec` `/tmp` does not
//!   matter), `meta.json` (labels, so `sbx ls`/`sbx gc` find it) and `env.sh`. The runtime binary is
//!   shared per build at `~/.sbx/bin/sbx-agent-<version>-<sha256 prefix>`, uploaded through the exec
//!   channel's stdin and checked by SHA-256.
//! - **The runtime** listens on the host's loopback only; the host reaches it through a Unix socket
//!   of this process forwarded over the connection ([`forward`]).
//!
//! A directory is not a security boundary: processes run as the SSH user, with the user's rights.
//!
//! Sandbox ids are `<destination>/<name>` (e.g. `me@box:2222/dev-1a2b3c4d`), so any `sbx` process can
//! reach a sandbox from its id alone.

pub mod conn;
pub mod docker;
pub mod forward;
pub mod known_hosts;
mod upload;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use conn::{Conn, SshOptions};
pub use docker::Isolation;

use crate::bootstrap::RuntimeLayout;
use crate::{
    ByteStream, Capabilities, Endpoint, Error, ExecOutput, ExecSpec, Labels, Provider, Result, Sandbox, SandboxSpec, SandboxState, Transport,
};

const NAME: &str = "ssh";

/// Env var: the host(s) to use, `[user@]host[:port]` or a `~/.ssh/config` alias; comma-separated,
/// the first is where `sbx up` makes sandboxes, all are listed by `sbx ls`/`sbx gc`.
pub const ENV_HOST: &str = "SBX_SSH_HOST";
/// Env var: `docker` makes new sandboxes containers of the host's Docker engine (as
/// `--isolation docker`); `none` (default) makes them directories.
pub const ENV_ISOLATION: &str = "SBX_SSH_ISOLATION";
/// Env var: `1` learns unknown host keys (as `--accept-new`).
pub const ENV_ACCEPT_NEW: &str = "SBX_SSH_ACCEPT_NEW";
/// Env var: the directory on the host that holds sbx's files (default `.sbx`, relative to the home).
pub const ENV_DIR: &str = "SBX_SSH_DIR";

/// Env var: seconds (or `30m`, `12h`, `2d`) with no request and no process after which a sandbox's
/// runtime ends itself (default 24 h; `0`: never). The directory stays; the next command starts the
/// runtime again.
pub const ENV_IDLE_TIMEOUT: &str = "SBX_SSH_IDLE_TIMEOUT";

/// The runtime's idle timeout unless [`ENV_IDLE_TIMEOUT`] says otherwise.
pub const DEFAULT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// `90`, `90s`, `30m`, `12h`, `2d`.
fn parse_secs(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return None,
    })
}

/// What the host's `exec` answers on stderr (with exit 255) when the sandbox directory is gone.
const GONE: &str = "sbx-no-such-sandbox";

/// Quotes for `/bin/sh`.
pub(crate) fn q(s: &str) -> String {
    shlex::try_quote(s).map(|c| c.into_owned()).unwrap_or_else(|_| "''".into())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    name: String,
    dest: String,
    labels: Labels,
    created_at: u64,
    runtime_port: u16,
    env: BTreeMap<String, String>,
}

/// The SSH provider.
#[derive(Debug)]
pub struct SshProvider {
    opts: SshOptions,
    hosts: Vec<String>,
    remote_dir: String,
    idle_timeout: std::time::Duration,
    runtime: Option<PathBuf>,
    runtime_tag: std::sync::OnceLock<String>,
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    forwards: Mutex<HashMap<(String, u16), PathBuf>>,
    isolation: Isolation,
    /// Hosts whose Docker engine `list` also asks (those of `--isolation docker` sandboxes).
    docker_hosts: Vec<String>,
    /// Per host, the Docker provider driving its engine through a forwarded socket.
    engines: tokio::sync::Mutex<HashMap<String, Arc<crate::docker::DockerProvider>>>,
}

impl SshProvider {
    /// Sandboxes on `hosts` (the first is where new ones go), reached with `opts`.
    pub fn new(hosts: Vec<String>, opts: SshOptions) -> Self {
        Self {
            opts,
            hosts,
            remote_dir: ".sbx".into(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            runtime: None,
            runtime_tag: std::sync::OnceLock::new(),
            conns: Mutex::new(HashMap::new()),
            forwards: Mutex::new(HashMap::new()),
            isolation: Isolation::Directory,
            docker_hosts: Vec::new(),
            engines: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Where new sandboxes live on the host: a directory (default) or a container of its Docker engine.
    pub fn with_isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        if isolation == Isolation::Docker {
            let hosts = self.hosts.clone();
            self.also_list_containers(hosts)
        } else {
            self
        }
    }

    /// Adds hosts whose Docker engine `list` asks for `--isolation docker` sandboxes.
    pub fn also_list_containers(mut self, dests: impl IntoIterator<Item = String>) -> Self {
        for d in dests {
            if !self.docker_hosts.contains(&d) {
                self.docker_hosts.push(d.clone());
            }
            if !self.hosts.contains(&d) {
                self.hosts.push(d);
            }
        }
        self
    }

    /// From the environment: [`ENV_HOST`], [`ENV_DIR`], and [`SshOptions::from_env`].
    pub fn from_env() -> Self {
        let hosts = std::env::var(ENV_HOST).unwrap_or_default();
        let hosts = hosts.split(',').map(str::trim).filter(|h| !h.is_empty()).map(str::to_owned).collect();
        let mut p = Self::new(hosts, SshOptions::from_env());
        if let Some(d) = std::env::var(ENV_DIR).ok().filter(|d| !d.is_empty()) {
            p.remote_dir = d;
        }
        match std::env::var(ENV_ISOLATION).ok().filter(|v| !v.is_empty()).map(|v| (v.parse::<Isolation>(), v)) {
            Some((Ok(i), _)) => p = p.with_isolation(i),
            Some((Err(_), v)) => tracing::warn!("{ENV_ISOLATION}={v} is not `docker` or `none`; sandboxes are directories"),
            None => {}
        }
        match std::env::var(ENV_IDLE_TIMEOUT).ok().filter(|v| !v.is_empty()).map(|v| (parse_secs(&v), v)) {
            Some((Some(secs), _)) => p.idle_timeout = std::time::Duration::from_secs(secs),
            Some((None, v)) => tracing::warn!("{ENV_IDLE_TIMEOUT}={v} is not a duration (e.g. 90s, 30m, 12h); using 24h"),
            None => {}
        }
        p
    }

    /// How long a sandbox's runtime may sit idle before it ends itself (zero: never).
    pub fn with_idle_timeout(mut self, after: std::time::Duration) -> Self {
        self.idle_timeout = after;
        self
    }

    /// The directory on the host for sbx's files (absolute, or relative to the remote home).
    pub fn with_remote_dir(mut self, dir: impl Into<String>) -> Self {
        self.remote_dir = dir.into();
        self
    }

    /// The runtime binary that will be uploaded: its SHA-256 goes into the remote file name, so a
    /// host keeps one copy per build and reuses it.
    pub fn with_runtime(mut self, path: &std::path::Path) -> Self {
        self.runtime = Some(path.to_path_buf());
        self
    }

    /// `<version>-<first 16 hex of the runtime's SHA-256>` (hashed once, when first needed: `sbx ls`
    /// makes this provider too and never needs it).
    fn runtime_tag(&self) -> &str {
        self.runtime_tag.get_or_init(|| {
            use sha2::Digest as _;
            let hashed = self.runtime.as_ref().and_then(|p| {
                let mut f = std::fs::File::open(p).ok()?;
                let mut h = sha2::Sha256::new();
                std::io::copy(&mut f, &mut h).ok()?;
                Some(hex::encode(h.finalize()))
            });
            match hashed {
                Some(h) => format!("{}-{}", sbx_agent::VERSION, &h[..16]),
                None => sbx_agent::VERSION.to_owned(),
            }
        })
    }

    /// Where this build of the runtime is on a host whose sbx directory is `base`.
    fn binary_path(&self, base: &str) -> String {
        binary_in(base, self.runtime_tag())
    }

    /// Makes `dest` the host for new sandboxes (in front of the others).
    pub fn with_host(mut self, dest: impl Into<String>) -> Self {
        let dest = dest.into();
        self.hosts.retain(|h| h != &dest);
        self.hosts.insert(0, dest.clone());
        if self.isolation == Isolation::Docker && !self.docker_hosts.contains(&dest) {
            self.docker_hosts.push(dest);
        }
        self
    }

    /// Learns unknown host keys (`--accept-new`).
    pub fn accept_new(mut self) -> Self {
        self.opts.accept_new = true;
        self
    }

    /// Adds hosts to list (e.g. those of sandboxes recorded on this machine).
    pub fn also_list(mut self, dests: impl IntoIterator<Item = String>) -> Self {
        for d in dests {
            if !self.hosts.contains(&d) {
                self.hosts.push(d);
            }
        }
        self
    }

    /// The connection to `dest` (one per destination, shared).
    pub fn conn(&self, dest: &str) -> Result<Arc<Conn>> {
        let mut conns = self.conns.lock().expect("lock");
        if let Some(c) = conns.get(dest) {
            return Ok(c.clone());
        }
        let c = Arc::new(Conn::new(dest, &self.opts)?);
        conns.insert(dest.to_owned(), c.clone());
        Ok(c)
    }

    fn base(&self, home: &str) -> String {
        base_dir(&self.remote_dir, home)
    }

    /// The sandbox's directory on its host, and the connection.
    async fn locate(&self, id: &str) -> Result<Option<(Arc<Conn>, String, String)>> {
        let Some((dest, name)) = split_id(id) else { return Ok(None) };
        let conn = self.conn(dest)?;
        let base = self.base(&conn.home().await?);
        Ok(Some((conn, sandbox_dir(&base, name), base)))
    }

    async fn require(&self, id: &str) -> Result<(Arc<Conn>, String, String)> {
        self.locate(id).await?.ok_or_else(|| Error::NotFound { sandbox: id.to_owned() })
    }

    async fn read_meta(&self, id: &str) -> Result<Option<Meta>> {
        let Some((conn, dir, _)) = self.locate(id).await? else { return Ok(None) };
        let out = conn.run(&format!("cat {}/meta.json 2>/dev/null || exit 3", q(&dir)), None, None).await?;
        match out.exit_code {
            0 => serde_json::from_slice(&out.stdout)
                .map(Some)
                .map_err(|e| Error::Provider { provider: NAME, message: format!("corrupt {dir}/meta.json: {e}") }),
            3 => Ok(None),
            c => Err(remote_failure("reading the sandbox's metadata", c, &out)),
        }
    }

    fn to_sandbox(meta: Meta) -> Sandbox {
        Sandbox {
            id: format!("{}/{}", meta.dest, meta.name),
            provider: NAME.into(),
            labels: meta.labels,
            state: SandboxState::Running,
            image: None,
            created_at: Some(meta.created_at),
        }
    }

    async fn list_host(&self, dest: &str, labels: &Labels) -> Result<Vec<Sandbox>> {
        let conn = self.conn(dest)?;
        let base = self.base(&conn.home().await?);
        let script = format!(r#"for f in {}/sandboxes/*/meta.json; do [ -f "$f" ] && cat "$f" && echo; done; exit 0"#, q(&base));
        let out = conn.run(&script, None, None).await?;
        let mut found = Vec::new();
        for line in out.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<Meta>(line) {
                Ok(mut m) => {
                    // The id is the way this machine reaches it (the file says how its creator did).
                    m.dest = dest.to_owned();
                    if labels.iter().all(|(k, v)| m.labels.get(k) == Some(v)) {
                        found.push(Self::to_sandbox(m));
                    }
                }
                Err(e) => tracing::warn!(host = dest, error = %e, "ssh: skipping an unreadable meta.json"),
            }
        }
        Ok(found)
    }
}

/// sbx's directory on a host whose user's home is `home`: `remote_dir` (`--remote-dir`), under the
/// home unless absolute.
fn base_dir(remote_dir: &str, home: &str) -> String {
    if remote_dir.starts_with('/') {
        remote_dir.trim_end_matches('/').to_owned()
    } else {
        format!("{}/{}", home.trim_end_matches('/'), remote_dir.trim_end_matches('/'))
    }
}

/// The directory of sandbox `name` under sbx's directory `base`.
fn sandbox_dir(base: &str, name: &str) -> String {
    format!("{base}/sandboxes/{name}")
}

/// Where the runtime build `tag` is under sbx's directory `base`.
fn binary_in(base: &str, tag: &str) -> String {
    format!("{base}/bin/sbx-agent-{tag}")
}

/// `<dest>/<name>` → (`dest`, `name`), when `name` is a valid directory name.
fn split_id(id: &str) -> Option<(&str, &str)> {
    let (dest, name) = id.rsplit_once('/')?;
    let ok = !dest.is_empty()
        && !dest.trim_start_matches("ssh://").contains('/')
        && !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    ok.then_some((dest, name))
}

fn remote_failure(what: &str, code: i64, out: &ExecOutput) -> Error {
    Error::Provider { provider: NAME, message: format!("{what} failed on the host (exit {code}): {}", String::from_utf8_lossy(&out.stderr).trim()) }
}

fn gone(out: &ExecOutput) -> bool {
    out.exit_code == 255 && out.stderr.starts_with(GONE.as_bytes())
}

/// The line of a script that stops with [`GONE`] when `dir` is not there.
fn must_exist(dir: &str) -> String {
    format!("[ -d {d} ] || {{ printf '%s\\n' {GONE} >&2; exit 255; }}", d = q(dir))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A port for the runtime on the host's loopback: random in 20000-59999 (a collision makes the start
/// fail with the port named, never reach another sandbox: each runtime has its own token).
fn pick_port() -> u16 {
    let mut b = [0u8; 2];
    getrandom::fill(&mut b).expect("OS random source");
    20000 + u16::from_le_bytes(b) % 40000
}

#[async_trait::async_trait]
impl Provider for SshProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = crate::registry::SSH.capabilities;
        if self.isolation == Isolation::Docker {
            // A container of the host's engine: paused, limited and isolated as Docker's are.
            caps.pause = true;
            caps.isolated = true;
            caps.resource_limits = true;
        }
        caps
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<Sandbox> {
        if self.isolation == Isolation::Docker {
            let dest = self.hosts.first().ok_or_else(|| Error::InvalidSpec(format!("no SSH host: pass --host [user@]host[:port] or set {ENV_HOST}")))?;
            let mut spec = spec.clone();
            spec.labels.insert(docker::VIA_LABEL.into(), "docker".into());
            return Ok(docker::wrap(dest, self.engine(dest).await?.create(&spec).await?));
        }
        if spec.network == crate::Network::None {
            return Err(Error::Unsupported { op: "--network none (processes run on the host as the SSH user)", provider: NAME });
        }
        if spec.image.is_some() {
            return Err(Error::InvalidSpec("the ssh provider has no images; drop --image".into()));
        }
        let dest = self.hosts.first().ok_or_else(|| Error::InvalidSpec(format!("no SSH host: pass --host [user@]host[:port] or set {ENV_HOST}")))?;
        let conn = self.conn(dest)?;
        let base = self.base(&conn.home().await?);
        // Two more random bytes than the other providers: names share one directory per host.
        let name = format!("{}{}", crate::util::fresh_name(&spec.name, 40), crate::random_hex(2));
        let dir = format!("{base}/sandboxes/{name}");
        let meta = Meta {
            name: name.clone(),
            dest: dest.clone(),
            labels: spec.labels.clone(),
            created_at: now_secs(),
            runtime_port: pick_port(),
            env: spec.env.clone(),
        };
        let env_sh: String = spec.env.iter().map(|(k, v)| format!("export {}={}\n", q(k), q(v))).collect();
        let mut stdin = serde_json::to_vec(&meta).expect("serializable");
        stdin.push(b'\n');
        // meta.json is the first line of stdin, env.sh the rest.
        stdin.extend_from_slice(env_sh.as_bytes());
        let script = format!(
            r#"umask 077
b={b}; d={d}
mkdir -p "$b/sandboxes" "$b/bin" || exit 70
mkdir "$d" || exit 71
mkdir "$d/workspace" "$d/state" "$d/tmp" || exit 70
p="$b/bin/.probe-{name}"
printf '#!/bin/sh\nexit 0\n' > "$p" && chmod 700 "$p" && "$p" 2>/dev/null; ok=$?; rm -f "$p"
[ "$ok" = 0 ] || {{ rm -rf "$d"; exit 72; }}
IFS= read -r meta
printf '%s\n' "$meta" > "$d/meta.json.tmp" && cat > "$d/env.sh" && mv "$d/meta.json.tmp" "$d/meta.json""#,
            b = q(&base),
            d = q(&dir),
        );
        let out = conn.run(&script, Some(crate::bytes_stream(stdin)), None).await?;
        match out.exit_code {
            0 => Ok(Self::to_sandbox(meta)),
            70 => Err(Error::Provider {
                provider: NAME,
                message: format!(
                    "cannot create {base} on {dest} (no writable home?): {}; set {ENV_DIR} to a writable directory",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            }),
            72 => Err(Error::Provider {
                provider: NAME,
                message: format!("{base} on {dest} does not let programs run (mounted noexec?); set {ENV_DIR} to a directory that does"),
            }),
            c => Err(remote_failure("creating the sandbox directory", c, &out)),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Sandbox>> {
        if let Some((dest, c)) = docker::split(id) {
            return Ok(self.engine(dest).await?.get(c).await?.map(|sb| docker::wrap(dest, sb)));
        }
        Ok(self.read_meta(id).await?.map(|mut m| {
            if let Some((dest, _)) = split_id(id) {
                m.dest = dest.to_owned();
            }
            Self::to_sandbox(m)
        }))
    }

    async fn list(&self, labels: &Labels) -> Result<Vec<Sandbox>> {
        let mut all = Vec::new();
        for dest in &self.hosts {
            all.extend(self.list_host(dest, labels).await?);
        }
        for dest in &self.docker_hosts {
            all.extend(self.list_containers(dest, labels).await?);
        }
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    async fn exec(&self, id: &str, cmd: &ExecSpec) -> Result<ExecOutput> {
        if cmd.argv.is_empty() {
            return Err(Error::InvalidSpec("empty command".into()));
        }
        if let Some((dest, c)) = docker::split(id) {
            return self.engine(dest).await?.exec(c, cmd).await;
        }
        let (conn, dir, _) = self.require(id).await?;
        let mut script = format!("{}\n. {d}/env.sh\nexport XDG_STATE_HOME={d}/state TMPDIR={d}/tmp\n", must_exist(&dir), d = q(&dir));
        for (k, v) in &cmd.env {
            script.push_str(&format!("export {}={}\n", q(k), q(v)));
        }
        let cwd = cmd.cwd.clone().unwrap_or_else(|| format!("{dir}/workspace"));
        script.push_str(&format!("cd {} || exit 126\nexec", q(&cwd)));
        for a in &cmd.argv {
            script.push(' ');
            script.push_str(&q(a));
        }
        let out = conn.run(&script, None, cmd.timeout).await?;
        if gone(&out) {
            return Err(Error::NotFound { sandbox: id.to_owned() });
        }
        Ok(out)
    }

    async fn upload(&self, id: &str, archive: ByteStream, dest: &str) -> Result<()> {
        if let Some((host, c)) = docker::split(id) {
            return self.engine(host).await?.upload(c, archive, dest).await;
        }
        let (conn, dir, _) = self.require(id).await?;
        upload::upload(&conn, id, &dir, archive, dest).await
    }

    async fn endpoint(&self, id: &str, port: u16) -> Result<Endpoint> {
        if let Some((dest, c)) = docker::split(id) {
            return self.container_endpoint(id, dest, c, port).await;
        }
        let (dest, name) = split_id(id).ok_or_else(|| Error::NotFound { sandbox: id.to_owned() })?;
        // The recorded layout names the runtime's own port: then nothing is asked of the host, and
        // reaching a running runtime costs the SSH handshake and a forwarded channel, no login shell.
        let port = if port == sbx_agent::DEFAULT_PORT {
            self.read_meta(id).await?.ok_or_else(|| Error::NotFound { sandbox: id.to_owned() })?.runtime_port
        } else {
            port
        };
        let key = (id.to_owned(), port);
        if let Some(p) = self.forwards.lock().expect("lock").get(&key) {
            return Ok(Endpoint { transport: Transport::Unix { path: p.clone() }, headers: Vec::new() });
        }
        let (remote_dir, tag, name) = (self.remote_dir.clone(), self.runtime_tag().to_owned(), name.to_owned());
        let paths: forward::Paths = Arc::new(move |home: &str| {
            let base = base_dir(&remote_dir, home);
            (binary_in(&base, &tag), sandbox_dir(&base, &name))
        });
        let path = forward::start(self.conn(dest)?, &format!("{id}:{port}"), forward::Remote::Runtime { port, paths })?;
        self.forwards.lock().expect("lock").insert(key, path.clone());
        Ok(Endpoint { transport: Transport::Unix { path }, headers: Vec::new() })
    }

    async fn pause(&self, id: &str) -> Result<()> {
        match docker::split(id) {
            Some((dest, c)) => self.engine(dest).await?.pause(c).await,
            None => match self.read_meta(id).await? {
                Some(_) => Err(Error::Unsupported { op: "pause (a directory sandbox; --isolation docker ones pause)", provider: NAME }),
                None => Err(Error::NotFound { sandbox: id.to_owned() }),
            },
        }
    }

    async fn resume(&self, id: &str) -> Result<()> {
        match docker::split(id) {
            Some((dest, c)) => self.engine(dest).await?.resume(c).await,
            None => match self.read_meta(id).await? {
                Some(_) => Err(Error::Unsupported { op: "resume", provider: NAME }),
                None => Err(Error::NotFound { sandbox: id.to_owned() }),
            },
        }
    }

    async fn destroy(&self, id: &str) -> Result<()> {
        if let Some((dest, c)) = docker::split(id) {
            self.engine(dest).await?.destroy(c).await?;
            self.forwards.lock().expect("lock").retain(|(i, _), _| i != id);
            return Ok(());
        }
        let Some((conn, dir, _)) = self.locate(id).await? else { return Ok(()) };
        // The runtime ends its processes on SIGTERM; anything else still working in the directory (a
        // process that left the runtime's group) is ended by its cwd. Only our own processes are
        // visible in /proc/*/cwd, so nobody else's are touched.
        let script = format!(
            r#"d={d}
[ -d "$d" ] || exit 0
pids=
for f in "$d"/state/sbx-agent/daemons/*.json; do
  [ -f "$f" ] || continue
  pid=$(sed -n 's/.*"pid": *\([0-9][0-9]*\).*/\1/p' "$f")
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && pids="$pids $pid"
done
i=0
while [ $i -lt 50 ]; do
  alive=
  for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ -z "$alive" ] && break
  sleep 0.1; i=$((i+1))
done
for p in $pids; do kill -KILL "$p" 2>/dev/null; done
for p in /proc/[0-9]*; do
  case "$(readlink "$p/cwd" 2>/dev/null)" in "$d"|"$d"/*) kill -KILL "${{p#/proc/}}" 2>/dev/null;; esac
done
rm -rf "$d" || {{ sleep 0.5; rm -rf "$d"; }}"#,
            d = q(&dir)
        );
        let out = conn.run(&script, None, None).await?;
        if out.exit_code != 0 {
            return Err(remote_failure("removing the sandbox", out.exit_code, &out));
        }
        self.forwards.lock().expect("lock").retain(|(i, _), _| i != id);
        Ok(())
    }

    async fn runtime_layout(&self, id: &str) -> Result<RuntimeLayout> {
        if let Some((dest, c)) = docker::split(id) {
            return self.engine(dest).await?.runtime_layout(c).await;
        }
        let (_, dir, base) = self.require(id).await?;
        let meta = self.read_meta(id).await?.ok_or_else(|| Error::NotFound { sandbox: id.to_owned() })?;
        Ok(RuntimeLayout {
            binary_path: self.binary_path(&base),
            listen_host: "127.0.0.1".into(),
            port: meta.runtime_port,
            root: Some(format!("{dir}/workspace")),
            unix_socket: None,
            env: vec![
                ("XDG_STATE_HOME".into(), format!("{dir}/state")),
                ("TMPDIR".into(), format!("{dir}/tmp")),
                ("SBX_AGENT_IDLE_TIMEOUT".into(), self.idle_timeout.as_secs().to_string()),
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_destination() {
        assert_eq!(split_id("me@box:2222/dev-1a2b"), Some(("me@box:2222", "dev-1a2b")));
        assert_eq!(split_id("box/../x"), None);
        assert_eq!(split_id("dev-1a2b"), None);
        assert_eq!(split_id("box/.hidden"), None);
    }

    #[test]
    fn destinations_parse() {
        use conn::split_dest;
        assert_eq!(split_dest("me@box:2222").unwrap(), (Some("me".into()), "box".into(), Some(2222)));
        assert_eq!(split_dest("ssh://box").unwrap(), (None, "box".into(), None));
        assert_eq!(split_dest("[::1]:22").unwrap(), (None, "::1".into(), Some(22)));
        assert!(split_dest("me@").is_err());
        assert!(split_dest("box:notaport").is_err());
    }
}
