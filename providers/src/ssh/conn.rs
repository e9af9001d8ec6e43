//! One SSH connection to one host: where to go (`~/.ssh/config`), whether the host is who it says
//! (`known_hosts`), who we are (ssh-agent, then key files), and the two things sbx does over it: run a
//! `/bin/sh` script with a byte stream on its stdin, and open a `direct-tcpip` channel. A dropped
//! connection is made again on the next use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use russh::client::{self, Handle};
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::ChannelMsg;
use tokio::sync::{Mutex, Semaphore};

use super::known_hosts::{self, Verdict};
use crate::{ByteStream, Error, ExecOutput, Result};

const NAME: &str = "ssh";

/// How the provider reaches hosts (everything a test must be able to point elsewhere).
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// The user's home on this machine (`~/.ssh` is under it).
    pub home: PathBuf,
    /// `ssh_config` to read (default `~/.ssh/config`; a missing file is fine).
    pub config_file: Option<PathBuf>,
    /// known_hosts to check and learn into (default `~/.ssh/known_hosts`, or `UserKnownHostsFile`).
    pub known_hosts: Option<PathBuf>,
    /// Extra key files to try after the agent and before the default `~/.ssh/id_*`.
    pub identity_files: Vec<PathBuf>,
    /// The ssh-agent socket (default `$SSH_AUTH_SOCK`).
    pub agent_socket: Option<PathBuf>,
    /// Learn the key of a host known_hosts does not know yet (trust on first use). A changed key is
    /// refused all the same.
    pub accept_new: bool,
    /// Give up connecting after this long.
    pub connect_timeout: Duration,
}

impl SshOptions {
    /// From the environment: `HOME`, `SSH_AUTH_SOCK`, `SBX_SSH_ACCEPT_NEW=1`.
    pub fn from_env() -> Self {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"));
        Self {
            home,
            config_file: None,
            known_hosts: None,
            identity_files: Vec::new(),
            agent_socket: std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()).map(PathBuf::from),
            accept_new: std::env::var(super::ENV_ACCEPT_NEW).is_ok_and(|v| v == "1" || v == "true"),
            connect_timeout: Duration::from_secs(15),
        }
    }
}

/// Where a destination (`[user@]host[:port]`, `ssh://user@host:port` or a config alias) leads.
#[derive(Debug, Clone)]
pub struct Target {
    /// The destination as given.
    pub dest: String,
    /// The host name to connect to (after `HostName`).
    pub host: String,
    /// The port.
    pub port: u16,
    /// The remote user.
    pub user: String,
    /// Key files to try, in order (config's `IdentityFile`s, then the options', then the defaults).
    pub identity_files: Vec<PathBuf>,
    /// `ProxyCommand`, if configured.
    pub proxy_command: Option<String>,
    /// `ProxyJump`, if configured.
    pub proxy_jump: Option<String>,
    /// The known_hosts file.
    pub known_hosts: PathBuf,
}

/// Splits `[ssh://][user@]host[:port]` (IPv6 as `[::1]:22`).
pub fn split_dest(dest: &str) -> Result<(Option<String>, String, Option<u16>)> {
    let bad = || Error::InvalidSpec(format!("bad SSH destination `{dest}`: use [user@]host[:port] or an alias from ~/.ssh/config"));
    let d = dest.strip_prefix("ssh://").unwrap_or(dest).trim_end_matches('/');
    let (user, rest) = match d.rsplit_once('@') {
        Some((u, r)) if !u.is_empty() => (Some(u.to_owned()), r),
        Some(_) => return Err(bad()),
        None => (None, d),
    };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        (h.to_owned(), after.strip_prefix(':').map(|p| p.parse().map_err(|_| bad())).transpose()?)
    } else if rest.matches(':').count() == 1 {
        let (h, p) = rest.split_once(':').expect("one colon");
        (h.to_owned(), Some(p.parse().map_err(|_| bad())?))
    } else {
        (rest.to_owned(), None)
    };
    if host.is_empty() || host.contains(['/', ' ', '\'', '"']) {
        return Err(bad());
    }
    Ok((user, host, port))
}

/// Resolves a destination with `~/.ssh/config`: what was typed wins over the config, which wins over
/// the defaults (port 22, the local user name).
pub fn resolve(dest: &str, opts: &SshOptions) -> Result<Target> {
    let (user, alias, port) = split_dest(dest)?;
    let config_file = opts.config_file.clone().unwrap_or_else(|| opts.home.join(".ssh/config"));
    let cfg = match std::fs::read_to_string(&config_file) {
        Ok(text) => russh_config::parse(&text, &alias).map_err(|e| Error::InvalidSpec(format!("{}: {e}", config_file.display())))?.host_config,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => russh_config::HostConfig::default(),
        Err(e) => return Err(Error::io(format!("read {}", config_file.display()), e)),
    };
    let user = user
        .or(cfg.user.clone())
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .or_else(|| nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|u| u.name))
        .ok_or_else(|| Error::InvalidSpec(format!("no user for `{dest}`: write user@host")))?;
    let mut identity_files = cfg.identity_file.clone().unwrap_or_default();
    identity_files.extend(opts.identity_files.iter().cloned());
    for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
        identity_files.push(opts.home.join(".ssh").join(name));
    }
    identity_files.dedup();
    let known_hosts = opts.known_hosts.clone().or(cfg.user_known_hosts_file.clone()).unwrap_or_else(|| opts.home.join(".ssh/known_hosts"));
    Ok(Target {
        dest: dest.to_owned(),
        host: cfg.hostname.clone().unwrap_or_else(|| alias.clone()),
        port: port.or(cfg.port).unwrap_or(22),
        user,
        identity_files,
        proxy_command: cfg.proxy_command.clone().filter(|c| !c.eq_ignore_ascii_case("none")),
        proxy_jump: cfg.proxy_jump.clone().filter(|c| !c.eq_ignore_ascii_case("none")),
        known_hosts,
    })
}

/// Checks the server's key against known_hosts and remembers why it refused.
struct Checker {
    target: Target,
    accept_new: bool,
    problem: Arc<StdMutex<Option<String>>>,
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            *self.problem.lock().expect("lock") = Some("the server offered a host certificate; sbx checks plain host keys only".into());
            return Ok(false);
        };
        let t = &self.target;
        let path = &t.known_hosts;
        let fp = known_hosts::fingerprint(key);
        let token = known_hosts::host_token(&t.host, t.port);
        let problem = match known_hosts::check(path, &t.host, t.port, key) {
            Ok(Verdict::Known) => return Ok(true),
            Ok(Verdict::Unknown) if self.accept_new => match known_hosts::learn(path, &t.host, t.port, key) {
                Ok(()) => {
                    tracing::info!(host = %token, fingerprint = %fp, file = %path.display(), "learnt a new host key (--accept-new)");
                    return Ok(true);
                }
                Err(e) => format!("could not add {token}'s key to {}: {e}", path.display()),
            },
            Ok(Verdict::Unknown) => format!(
                "host key of {token} is not in {} ({} {fp}); check the fingerprint, then connect once with \
                 --accept-new (or SBX_SSH_ACCEPT_NEW=1) to learn it, or add it with `ssh-keyscan -p {} {} >> {}`",
                path.display(),
                key.algorithm(),
                t.port,
                t.host,
                path.display()
            ),
            Ok(Verdict::Changed { lines }) => format!(
                "HOST KEY OF {token} HAS CHANGED (now {} {fp}); someone may be intercepting the connection. \
                 If the host was reinstalled, remove the old key at {}:{} (`ssh-keygen -R '{token}' -f {}`) and connect again",
                key.algorithm(),
                path.display(),
                lines.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
                path.display()
            ),
            Ok(Verdict::OtherTypes { lines }) => format!(
                "{} knows {token} only by keys of another type (line {}), and the server offered {} {fp}; \
                 refusing to learn it silently: verify it and add it by hand",
                path.display(),
                lines.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
                key.algorithm()
            ),
            Ok(Verdict::Revoked { line }) => format!("host key {fp} of {token} is revoked at {}:{line}", path.display()),
            Err(e) => format!("cannot read {}: {e}", path.display()),
        };
        *self.problem.lock().expect("lock") = Some(problem);
        Ok(false)
    }
}

/// A live, authenticated connection and what we learnt about the host.
pub struct Live {
    handle: Handle<Checker>,
    /// The jump host's connection, kept open while this one lives.
    _jump: Option<Arc<Live>>,
    /// The remote user's home directory, asked of the host on first need (with its platform
    /// checked): each remote command costs a login shell's start, and reaching a running sandbox's
    /// runtime needs none.
    home: tokio::sync::OnceCell<String>,
}

/// A connection to one destination, made (again) on demand.
pub struct Conn {
    target: Target,
    opts: SshOptions,
    live: Mutex<Option<Arc<Live>>>,
    no_forwarding: std::sync::atomic::AtomicBool,
    // OpenSSH allows 10 session channels per connection (MaxSessions); stay under it.
    sessions: Semaphore,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("dest", &self.target.dest).finish_non_exhaustive()
    }
}

fn unavailable(t: &Target, what: impl std::fmt::Display) -> Error {
    Error::Unavailable { provider: NAME, message: format!("{}@{}:{}: {what}", t.user, t.host, t.port) }
}

impl Conn {
    /// A connection to `dest` (nothing is dialled until first use).
    pub fn new(dest: &str, opts: &SshOptions) -> Result<Self> {
        Ok(Self {
            target: resolve(dest, opts)?,
            opts: opts.clone(),
            live: Mutex::new(None),
            no_forwarding: Default::default(),
            sessions: Semaphore::new(8),
        })
    }

    /// Where it goes.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The live connection, dialling (again) when there is none or it dropped.
    pub async fn live(&self) -> Result<Arc<Live>> {
        let mut slot = self.live.lock().await;
        if let Some(l) = slot.as_ref().filter(|l| !l.handle.is_closed()) {
            return Ok(l.clone());
        }
        let live = Arc::new(Box::pin(dial(&self.target, &self.opts, 0)).await?);
        *slot = Some(live.clone());
        Ok(live)
    }

    /// The remote user's home directory; the first call checks that the host runs `/bin/sh` on
    /// Linux x86_64 (what the runtime is built for).
    pub async fn home(&self) -> Result<String> {
        let live = self.live().await?;
        live.home.get_or_try_init(|| probe(&live, &self.target)).await.cloned()
    }

    /// Forgets the live connection (the next use dials again).
    pub async fn reset(&self) {
        *self.live.lock().await = None;
    }

    /// Opens a `direct-tcpip` channel to `127.0.0.1:port` on the host, reconnecting once when the
    /// connection had dropped. `None` when the server forbids forwarding (`AllowTcpForwarding no`),
    /// remembered for the next time.
    pub async fn direct_tcpip(&self, port: u16) -> Result<Option<russh::Channel<client::Msg>>> {
        if self.no_forwarding.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(None);
        }
        for attempt in 0..2 {
            let live = self.live().await?;
            match live.handle.channel_open_direct_tcpip("127.0.0.1", u32::from(port), "127.0.0.1", 0).await {
                Ok(ch) => return Ok(Some(ch)),
                Err(russh::Error::ChannelOpenFailure(russh::ChannelOpenFailure::AdministrativelyProhibited)) => {
                    tracing::info!(dest = %self.target.dest, "the server forbids TCP forwarding; HTTP goes over exec channels");
                    self.no_forwarding.store(true, std::sync::atomic::Ordering::Relaxed);
                    return Ok(None);
                }
                Err(e) if attempt == 0 && live.handle.is_closed() => {
                    tracing::info!(error = %e, "ssh connection dropped; connecting again");
                    self.reset().await;
                }
                Err(e) => return Err(unavailable(&self.target, format!("forwarding to the runtime on 127.0.0.1:{port}: {e}"))),
            }
        }
        unreachable!("the loop returns")
    }

    /// Opens a `direct-streamlocal` channel to the Unix socket `path` on the host (its Docker engine,
    /// for `--isolation docker`), reconnecting once when the connection had dropped. A server that
    /// forbids it (`AllowStreamLocalForwarding no`) or has nothing listening there is an error that
    /// says which.
    pub async fn direct_streamlocal(&self, path: &str) -> Result<russh::Channel<client::Msg>> {
        for attempt in 0..2 {
            let live = self.live().await?;
            match live.handle.channel_open_direct_streamlocal(path).await {
                Ok(ch) => return Ok(ch),
                Err(russh::Error::ChannelOpenFailure(russh::ChannelOpenFailure::AdministrativelyProhibited)) => {
                    return Err(unavailable(
                        &self.target,
                        format!("the server forbids forwarding to Unix sockets (AllowStreamLocalForwarding no), so {path} cannot be reached"),
                    ));
                }
                Err(e) if attempt == 0 && live.handle.is_closed() => {
                    tracing::info!(error = %e, "ssh connection dropped; connecting again");
                    self.reset().await;
                }
                Err(e) => return Err(unavailable(&self.target, format!("forwarding to {path}: {e}"))),
            }
        }
        unreachable!("the loop returns")
    }

    /// Opens a `direct-tcpip` channel to `127.0.0.1:port` on the host with no fallback (a port that
    /// Docker published there, for `--isolation docker`).
    pub async fn direct_tcpip_only(&self, port: u16) -> Result<russh::Channel<client::Msg>> {
        self.direct_tcpip(port).await?.ok_or_else(|| {
            unavailable(&self.target, format!("the server forbids TCP forwarding (AllowTcpForwarding no), so port {port} on its loopback cannot be reached"))
        })
    }

    /// A session channel, reconnecting once when the connection had dropped.
    async fn open_session(&self) -> Result<russh::Channel<client::Msg>> {
        for attempt in 0..2 {
            let live = self.live().await?;
            match live.handle.channel_open_session().await {
                Ok(ch) => return Ok(ch),
                Err(e) if attempt == 0 && live.handle.is_closed() => {
                    tracing::info!(error = %e, "ssh connection dropped; connecting again");
                    self.reset().await;
                }
                Err(e) => return Err(unavailable(&self.target, format!("opening a session: {e}"))),
            }
        }
        unreachable!("the loop returns")
    }

    /// Runs `script` with `/bin/sh` on the host whatever the login shell is, with `stdin` after it,
    /// and returns its exit code and output. Output that the login shell's startup files print before
    /// the script starts is dropped.
    pub async fn run(&self, script: &str, stdin: Option<ByteStream>, timeout: Option<Duration>) -> Result<ExecOutput> {
        let _permit = self.sessions.acquire().await.expect("never closed");
        let channel = self.open_session().await?;
        let work = run_on(channel, script, stdin);
        let out = match timeout {
            Some(t) => tokio::time::timeout(t, work).await.map_err(|_| Error::Timeout { op: "ssh command".into(), after: t })?,
            None => work.await,
        };
        out.map_err(|e| unavailable(&self.target, e))
    }

    /// Runs `script` and joins its stdin/stdout to `local` both ways until either side ends (what the
    /// login shell prints first is dropped): HTTP over an exec channel where forwarding is forbidden.
    pub async fn pipe(&self, script: &str, local: tokio::net::UnixStream) -> Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let channel = self.open_session().await?;
        let word = format!("sbx-begin-{}", crate::random_hex(8));
        let body = format!("printf '%s\\n' {word}\n{script}\n");
        let marker = format!("{word}\n");
        channel.exec(true, BOOT).await.map_err(|e| unavailable(&self.target, format!("exec: {e}")))?;
        let (mut rd, wr) = channel.split();
        wr.data_bytes(Bytes::from(format!("{}\n{body}", body.len()))).await.map_err(|e| unavailable(&self.target, e))?;
        let (mut lr, mut lw) = local.into_split();
        let up = async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match lr.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if wr.data_bytes(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = wr.eof().await;
        };
        let down = async move {
            let (mut pending, mut started) = (Vec::new(), false);
            while let Some(msg) = rd.wait().await {
                let ChannelMsg::Data { data } = msg else { continue };
                if started {
                    if lw.write_all(&data).await.is_err() {
                        break;
                    }
                    continue;
                }
                pending.extend_from_slice(&data);
                if let Some(pos) = pending.windows(marker.len()).position(|w| w == marker.as_bytes()) {
                    started = true;
                    if lw.write_all(&pending[pos + marker.len()..]).await.is_err() {
                        break;
                    }
                    pending = Vec::new();
                }
            }
            let _ = lw.shutdown().await;
        };
        tokio::join!(up, down);
        Ok(())
    }

    /// Whether the server was found to forbid TCP forwarding.
    pub fn forwarding_forbidden(&self) -> bool {
        self.no_forwarding.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The command line sent to the login shell: valid the same in sh, bash, zsh, fish and csh (single
/// quotes around a text with no `'` and no `\`). It reads the real script's length, then the script,
/// from stdin; what follows on stdin is the script's own input.
const BOOT: &str = "/bin/sh -c 'IFS= read -r n && eval \"$(dd bs=1 count=\"$n\" 2>/dev/null)\"'";

async fn run_on(channel: russh::Channel<client::Msg>, script: &str, stdin: Option<ByteStream>) -> std::result::Result<ExecOutput, String> {
    let marker = format!("sbx-begin-{}", crate::random_hex(8));
    let body = format!("printf '%s\\n' {marker}; printf '%s\\n' {marker} >&2\n{script}\n");
    let head = format!("{}\n{body}", body.len());
    channel.exec(true, BOOT).await.map_err(|e| format!("exec: {e}"))?;
    let (mut rd, wr) = channel.split();
    let write = async move {
        wr.data_bytes(Bytes::from(head)).await.map_err(|e| format!("sending the script: {e}"))?;
        if let Some(mut s) = stdin {
            while let Some(chunk) = s.next().await {
                let chunk = chunk.map_err(|e| format!("reading the data to send: {e}"))?;
                if wr.data_bytes(chunk).await.is_err() {
                    // The remote side stopped reading (its command exited): its exit code tells why.
                    break;
                }
            }
        }
        let _ = wr.eof().await;
        Ok::<_, String>(wr)
    };
    let read = async {
        let (mut out, mut err, mut code) = (Vec::new(), Vec::new(), None);
        while let Some(msg) = rd.wait().await {
            match msg {
                ChannelMsg::Data { data } => out.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, ext: 1 } => err.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => code = Some(i64::from(exit_status)),
                ChannelMsg::ExitSignal { .. } => code = Some(-1),
                _ => {}
            }
        }
        (out, err, code)
    };
    let (w, (out, err, code)) = tokio::join!(write, read);
    let _wr = w?;
    let code = code.ok_or_else(|| "the connection closed before the command ended".to_owned())?;
    Ok(ExecOutput { exit_code: code, stdout: after_marker(out, &marker), stderr: after_marker(err, &marker) })
}

/// Drops what came before `marker`'s line (login-shell chatter); all of it when there is no marker
/// (the shell never reached the script, so nothing of it is ours... but keep it: it says why).
fn after_marker(mut buf: Vec<u8>, marker: &str) -> Vec<u8> {
    let line = format!("{marker}\n");
    if let Some(pos) = buf.windows(line.len()).position(|w| w == line.as_bytes()) {
        buf.drain(..pos + line.len());
    }
    buf
}

/// Dials and authenticates (through a jump host when configured), then asks the host for its home.
async fn dial(t: &Target, opts: &SshOptions, depth: usize) -> Result<Live> {
    if depth > 4 {
        return Err(unavailable(t, "ProxyJump chain longer than 4 hosts"));
    }
    let config =
        Arc::new(client::Config { keepalive_interval: Some(Duration::from_secs(15)), keepalive_max: 3, nodelay: true, ..Default::default() });
    let problem = Arc::new(StdMutex::new(None));
    let checker = Checker { target: t.clone(), accept_new: opts.accept_new, problem: problem.clone() };
    let mut jump = None;
    let connect = async {
        let made = if let Some(cmd) = &t.proxy_command {
            let cmd = cmd.replace("%h", &t.host).replace("%p", &t.port.to_string()).replace("%r", &t.user).replace("%%", "%");
            let stream = russh_config::Stream::proxy_command("/bin/sh", &["-c", cmd.as_str()])
                .await
                .map_err(|e| unavailable(t, format!("ProxyCommand `{cmd}`: {e}")))?;
            client::connect_stream(config, stream, checker).await
        } else if let Some(j) = &t.proxy_jump {
            let first = j.split(',').next().unwrap_or_default().trim();
            let jt = resolve(first, opts)?;
            let jl = Arc::new(Box::pin(dial(&jt, opts, depth + 1)).await?);
            let ch = jl
                .handle
                .channel_open_direct_tcpip(t.host.clone(), u32::from(t.port), "127.0.0.1", 0)
                .await
                .map_err(|e| unavailable(t, format!("through ProxyJump {first}: {e}")))?;
            jump = Some(jl);
            client::connect_stream(config, ch.into_stream(), checker).await
        } else {
            let tcp = tokio::net::TcpStream::connect((t.host.as_str(), t.port)).await.map_err(|e| unavailable(t, e))?;
            client::connect_stream(config, tcp, checker).await
        };
        made.map_err(|e| match problem.lock().expect("lock").take() {
            Some(p) => Error::Auth { provider: NAME, message: p },
            None => unavailable(t, format!("SSH handshake: {e}")),
        })
    };
    let mut handle = tokio::time::timeout(opts.connect_timeout, connect)
        .await
        .map_err(|_| unavailable(t, format!("no answer within {} s", opts.connect_timeout.as_secs())))??;
    // A server that stalls while authenticating (overloaded, a PAM module waiting) must not hang sbx.
    tokio::time::timeout(opts.connect_timeout, authenticate(&mut handle, t, opts))
        .await
        .map_err(|_| unavailable(t, format!("no answer to authentication within {} s", opts.connect_timeout.as_secs())))??;
    Ok(Live { handle, _jump: jump, home: tokio::sync::OnceCell::new() })
}

/// The agent's keys, then each key file; the error lists everything tried.
async fn authenticate(handle: &mut Handle<Checker>, t: &Target, opts: &SshOptions) -> Result<()> {
    let mut tried = Vec::new();
    let rsa_hash = handle.best_supported_rsa_hash().await.ok().flatten().flatten();
    match &opts.agent_socket {
        None => tried.push("ssh-agent: SSH_AUTH_SOCK is not set".to_owned()),
        Some(sock) => match russh::keys::agent::client::AgentClient::connect_uds(sock).await {
            Err(e) => tried.push(format!("ssh-agent at {}: {e}", sock.display())),
            Ok(mut agent) => {
                let ids = agent.request_identities().await.unwrap_or_default();
                if ids.is_empty() {
                    tried.push(format!("ssh-agent at {}: holds no keys", sock.display()));
                }
                for id in ids {
                    let russh::keys::agent::AgentIdentity::PublicKey { key, comment } = id else { continue };
                    let fp = known_hosts::fingerprint(&key);
                    let hash = if key.algorithm().is_rsa() { rsa_hash } else { None };
                    match handle.authenticate_publickey_with(t.user.clone(), key, hash, &mut agent).await {
                        Ok(r) if r.success() => return Ok(()),
                        Ok(_) => tried.push(format!("agent key {fp} ({comment}): refused")),
                        Err(e) => tried.push(format!("agent key {fp} ({comment}): {e:?}")),
                    }
                }
            }
        },
    }
    for path in &t.identity_files {
        let shown = path.display();
        if !path.exists() {
            continue;
        }
        match russh::keys::load_secret_key(path, None) {
            Ok(key) => {
                let key = PrivateKeyWithHashAlg::new(Arc::new(key), rsa_hash);
                match handle.authenticate_publickey(t.user.clone(), key).await {
                    Ok(r) if r.success() => return Ok(()),
                    Ok(_) => tried.push(format!("{shown}: refused")),
                    Err(e) => tried.push(format!("{shown}: {e}")),
                }
            }
            Err(russh::keys::Error::KeyIsEncrypted) => tried.push(format!("{shown}: passphrase-protected (add it to ssh-agent: `ssh-add {shown}`)")),
            Err(e) => tried.push(format!("{shown}: unreadable ({e})")),
        }
    }
    if !t.identity_files.iter().any(|p| p.exists()) {
        tried.push(format!("key files: none of {}", t.identity_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")));
    }
    Err(Error::Auth { provider: NAME, message: format!("{}@{}:{} accepted none of our keys. Tried: {}", t.user, t.host, t.port, tried.join("; ")) })
}

/// The remote home, checking on the way that the host runs what the runtime is built for.
async fn probe(live: &Live, t: &Target) -> Result<String> {
    let ch = live.handle.channel_open_session().await.map_err(|e| unavailable(t, format!("opening a session: {e}")))?;
    let out = run_on(ch, r#"printf '%s\n%s %s\n' "$HOME" "$(uname -s)" "$(uname -m)""#, None).await.map_err(|e| unavailable(t, e))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let (home, platform) = (lines.next().unwrap_or_default(), lines.next().unwrap_or_default());
    if out.exit_code != 0 || !home.starts_with('/') {
        return Err(unavailable(
            t,
            format!("the host did not run /bin/sh (exit {}): {}", out.exit_code, String::from_utf8_lossy(&out.stderr).trim()),
        ));
    }
    if platform != "Linux x86_64" {
        return Err(Error::Provider {
            provider: NAME,
            message: format!("{} runs `{platform}`; the sbx-agent runtime is built for Linux x86_64 only", t.host),
        });
    }
    Ok(home.to_owned())
}

/// A stable short hash of a text (for file names).
pub fn short_hash(text: &str) -> String {
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..6])
}

/// Whether `p` is a directory that only we can enter.
pub fn private_dir(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(p)?;
    let m = std::fs::metadata(p)?;
    if m.uid() != nix::unistd::getuid().as_raw() || m.permissions().mode() & 0o077 != 0 {
        return Err(std::io::Error::other(format!("{} is not a private directory of ours (mode 0700)", p.display())));
    }
    Ok(())
}
