//! What every command needs: the state, the output mode, providers by name, and a runtime client for a
//! named sandbox (restarting the runtime when it stopped answering).

use std::sync::Arc;

use anyhow::{Context as _, Result};
use sbx_agent::client::Client;
use sbx_providers::local::LocalProvider;
use sbx_providers::Provider;

use crate::output::{usage, Output};
use crate::state::{state_dir, SandboxRecord, State};

/// Provider names the CLI accepts.
pub const PROVIDERS: &[&str] = &["local", "docker", "e2b", "daytona", "vercel", "modal"];

/// Shared command context.
pub struct Ctx {
    /// How to print.
    pub out: Output,
    /// Host state.
    pub state: State,
}

impl Ctx {
    /// Opens the state.
    pub fn open(out: Output) -> Result<Self> {
        Ok(Self { out, state: State::open_default()? })
    }

    /// A sandbox by name, or an error that says how to find names.
    pub fn record(&self, name: &str) -> Result<SandboxRecord> {
        self.state
            .get(name)?
            .ok_or_else(|| usage(format!("no sandbox named `{name}`; `sbx ls` lists them, `sbx up --name {name}` makes one")))
    }

    /// A client for the sandbox's runtime, restarting the runtime first if three health checks fail.
    /// The provider (for Docker, a connection to the engine) is only opened when a restart is needed,
    /// which keeps it off the path of every `sbx exec`.
    pub async fn client(&self, rec: &SandboxRecord) -> Result<Client> {
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
            crate::session_env::restore(&client, rec).await?;
            return Ok(client);
        }
        let provider = provider(&rec.provider).await?;
        // The endpoint may have changed (Daytona issues new preview tokens when a sandbox restarts).
        let mut handle = handle;
        let recorded_layout = rec.layout.clone().unwrap_or_default();
        if let Ok(endpoint) = provider.endpoint(&rec.id, recorded_layout.port).await {
            if endpoint != handle.endpoint {
                handle.endpoint = endpoint;
                self.state.set_ready(&rec.name, &handle.endpoint, &handle.token, &recorded_layout)?;
                let client = handle.client()?;
                if sbx_providers::bootstrap::answers(&client).await {
                    crate::session_env::restore(&client, rec).await?;
                    return Ok(client);
                }
            }
        }
        let client = sbx_providers::bootstrap::restart(provider.as_ref(), &rec.id, &handle, &recorded_layout)
            .await
            .with_context(|| format!("sandbox `{}`", rec.name))?;
        // A restarted runtime gets the credentials the user named at `sbx up`, read from this machine again.
        crate::session_env::push(&client, rec).await?;
        Ok(client)
    }
}

/// E2B and Vercel end a sandbox when its timeout runs out, however busy it is: every command that uses
/// such a sandbox made without `--ttl` pushes its end out again (E2B: `SBX_E2B_TIMEOUT`, default 1 h,
/// from now; Vercel: `SBX_VERCEL_TIMEOUT`, default 45 min, from now, as far as the plan allows).
/// Best effort, at the same time as the health check and bounded to 3 s: it never fails the command.
async fn keep_alive(rec: &SandboxRecord) {
    if rec.labels.contains_key(sbx_providers::labels::EXPIRES_AT) {
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
fn vercel_provider() -> Result<sbx_providers::vercel::VercelProvider> {
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

/// A provider by name; unknown names list the valid ones.
pub async fn provider(name: &str) -> Result<Arc<dyn Provider>> {
    provider_with_pull_bars(name, None).await
}

/// A provider by name that draws image pulls (where it pulls images) with `bars`.
pub async fn provider_with_pull_bars(name: &str, bars: Option<Arc<crate::output::LayerBars>>) -> Result<Arc<dyn Provider>> {
    match name {
        "local" => {
            let mut p = LocalProvider::new(local_base());
            if let Ok(rt) = sbx_providers::bootstrap::locate_runtime(false) {
                p = p.with_runtime(rt);
            }
            Ok(Arc::new(p))
        }
        "docker" => {
            let mut p = sbx_providers::docker::DockerProvider::connect().await?;
            if let Some(bars) = bars {
                p = p.with_pull_progress(move |ev| bars.update(ev));
            }
            Ok(Arc::new(p))
        }
        "e2b" => {
            let key = crate::auth::require(crate::auth::provider_auth("e2b")?, None)?;
            Ok(Arc::new(sbx_providers::e2b::E2bProvider::new(key.key.expose())?))
        }
        "daytona" => {
            let key = crate::auth::require(crate::auth::provider_auth("daytona")?, None)?;
            Ok(Arc::new(sbx_providers::daytona::DaytonaProvider::from_env_with_key(key.key.expose())?))
        }
        "vercel" => Ok(Arc::new(vercel_provider()?)),
        "modal" => {
            // The key is looked up the same way the providers will use it, so its error comes first.
            crate::auth::require(crate::auth::provider_auth(name)?, None)?;
            Err(usage(format!(
            "the `{name}` provider is not available in this build yet; use `local` or `docker`"
            )))
        }
        other => Err(usage(format!("unknown provider `{other}`; valid providers: {}", PROVIDERS.join(", ")))),
    }
}
