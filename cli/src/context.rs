//! What every command needs: the state, the output mode, providers by name, and a runtime client for a
//! named sandbox (restarting the runtime when it stopped answering).

use anyhow::{Context as _, Result};
use sbx_agent::client::Client;
use sbx_providers::lifecycle::Lifecycle;

use crate::output::{usage, Output};
use crate::state::{state_dir, SandboxRecord, State};

pub use crate::provision::provider;

/// Shared command context.
pub struct Ctx {
    /// How to print.
    pub out: Output,
    /// Host state.
    pub state: State,
    /// The LLM relays of keyless sandboxes this command serves while it runs (none unless
    /// [`Ctx::serve_relays`] was called: only commands that run agents serve them).
    pub attachments: crate::keyless::Attachments,
}

impl Ctx {
    /// Opens the state.
    pub fn open(out: Output) -> Result<Self> {
        Ok(Self { out, state: State::open_default()?, attachments: Default::default() })
    }

    /// From now on, every keyless sandbox this command reaches gets its LLM relay served by this
    /// process until it ends (`sbx session`, `sbx prompt`, `sbx run`).
    pub fn serve_relays(&mut self) {
        self.attachments = crate::keyless::Attachments::new(self.state.path());
    }

    /// A sandbox by name, or an error that says how to find names.
    pub fn record(&self, name: &str) -> Result<SandboxRecord> {
        self.state
            .get(name)?
            .ok_or_else(|| usage(format!("no sandbox named `{name}`; `sbx ls` lists them, `sbx up --name {name}` makes one")))
    }

    /// A client for the sandbox's runtime. When it does not answer, the lifecycle follows a moved
    /// endpoint or starts the runtime again (with the credentials named at `sbx up`, read from this
    /// machine again). The provider (for Docker, a connection to the engine) is only opened then,
    /// which keeps it off the path of every `sbx exec`.
    pub async fn client(&self, rec: &SandboxRecord) -> Result<Client> {
        let client = self.connect(rec).await?;
        if self.state.relay_token(&rec.name)?.is_some() {
            self.attachments.ensure(&rec.name, &client)?;
        }
        Ok(client)
    }

    async fn connect(&self, rec: &SandboxRecord) -> Result<Client> {
        if rec.status != "ready" {
            anyhow::bail!("sandbox `{}` is still being created (or its creation was interrupted; `sbx down {}` removes it)", rec.name, rec.name);
        }
        let handle = sbx_providers::bootstrap::RuntimeHandle {
            endpoint: rec.endpoint.clone().context("no runtime endpoint recorded")?,
            token: rec.token.clone().context("no runtime token recorded")?,
        };
        crate::redact::register(&handle.token);
        let client = handle.client()?;
        let (answers, ()) = tokio::join!(sbx_providers::bootstrap::answers(&client), keep_alive(rec));
        if answers {
            crate::session_env::restore(&self.state, &client, rec).await?;
            return Ok(client);
        }
        let layout = rec.layout.clone().unwrap_or_default();
        let lc = Lifecycle::new(provider(&rec.provider).await?).with_session_env(crate::session_env::for_record(&self.state, rec)?);
        let back = lc.recover(&rec.id, &handle, &layout).await.with_context(|| format!("sandbox `{}`", rec.name))?;
        if back.runtime.endpoint != handle.endpoint {
            self.state.set_ready(&rec.name, &back.runtime.endpoint, &back.runtime.token, &layout)?;
        }
        if !back.restarted {
            crate::session_env::restore(&self.state, &back.client, rec).await?;
        }
        Ok(back.client)
    }
}

/// E2B and Vercel end a sandbox when its timeout runs out, however busy it is: every command that uses
/// such a sandbox made without `--ttl` pushes its end out again (E2B: `SBX_E2B_TIMEOUT`, default 1 h,
/// from now; Vercel: `SBX_VERCEL_TIMEOUT`, default 45 min, from now, as far as the plan allows).
/// Best effort, at the same time as the health check and bounded to 3 s: it never fails the command.
async fn keep_alive(rec: &SandboxRecord) {
    let keep_alive = sbx_providers::registry::get(&rec.provider).is_ok_and(|p| p.keep_alive);
    if !keep_alive || rec.labels.contains_key(sbx_providers::labels::EXPIRES_AT) {
        return;
    }
    if rec.provider == "vercel" {
        let Ok(p) = vercel_provider() else { return };
        let timeout = p.timeout();
        match tokio::time::timeout(std::time::Duration::from_secs(3), p.keep_alive(&rec.id, timeout)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(sandbox = %rec.id, error = %e, "vercel: could not extend the timeout"),
            Err(_) => tracing::debug!(sandbox = %rec.id, "vercel: extending the timeout took too long"),
        }
        return;
    }
    if rec.provider != "e2b" {
        return;
    }
    let Ok(Some(key)) = crate::auth::provider_auth("e2b").and_then(|a| crate::auth::resolve(a, None)) else { return };
    let Ok(p) = sbx_providers::e2b::E2bProvider::new(key.key.expose()) else { return };
    let timeout = p.timeout();
    match tokio::time::timeout(std::time::Duration::from_secs(3), p.set_timeout(&rec.id, timeout)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(sandbox = %rec.id, error = %e, "e2b: could not extend the timeout"),
        Err(_) => tracing::debug!(sandbox = %rec.id, "e2b: extending the timeout took too long"),
    }
}

/// The Vercel provider: a token from `sbx auth login` or the config file wins; otherwise the
/// environment in the SDK's order (`VERCEL_OIDC_TOKEN`, `VERCEL_OIDC_TOKEN_FILE`, `VERCEL_TOKEN`), whose
/// error names them all.
pub fn vercel_provider() -> Result<sbx_providers::vercel::VercelProvider> {
    use sbx_providers::vercel::VercelProvider;
    let stored = crate::auth::resolve(crate::auth::provider_auth("vercel")?, None)?
        .filter(|k| !matches!(k.source, crate::auth::KeySource::Env(_)));
    Ok(match stored {
        Some(key) => VercelProvider::from_env_with_token(key.key.expose())?,
        None => VercelProvider::from_env()?,
    })
}

/// Where the local provider keeps sandboxes.
pub fn local_base() -> std::path::PathBuf {
    state_dir().join("local")
}
