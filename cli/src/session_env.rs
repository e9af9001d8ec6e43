//! The `sbx up --credentials` keys after `up`: the runtime holds them in memory only (they are in no
//! file, command line or environment inside the sandbox), so a runtime that started again (after a
//! crash, a Daytona stop/start, a container restart) has none until the host sends them again, read
//! from this machine as at `up`.

use anyhow::{Context as _, Result};
use sbx_agent::client::Client;

use crate::state::{SandboxRecord, State};

/// The agents whose keys the sandbox was made with (`sbx up --credentials`).
fn named_agents(rec: &SandboxRecord) -> Vec<String> {
    rec.labels
        .get(sbx_providers::labels::CREDENTIALS)
        .map(|names| names.split(',').filter(|n| !n.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The sandbox's named credentials, read from this machine again (empty when none were named), and
/// its LLM relay token when it is keyless.
pub fn for_record(state: &State, rec: &SandboxRecord) -> Result<Vec<(String, String)>> {
    let mut env = crate::provision::credential_env(&named_agents(rec))?;
    env.extend(crate::keyless::session_env_for(state, &rec.name)?);
    Ok(env)
}

/// Sends the sandbox's named credentials to its runtime. Nothing when none were named.
pub async fn push(state: &State, client: &Client, rec: &SandboxRecord) -> Result<()> {
    let env = for_record(state, rec)?;
    sbx_providers::bootstrap::push_session_env(client, &env).await.with_context(|| format!("sandbox `{}`", rec.name))
}

/// Sends them again when the runtime holds none (it restarted without this host noticing, e.g. a
/// Daytona sandbox whose runtime its autostart brought back). One request, and only for sandboxes
/// made with `--credentials` or keyless.
pub async fn restore(state: &State, client: &Client, rec: &SandboxRecord) -> Result<()> {
    if named_agents(rec).is_empty() && state.relay_token(&rec.name)?.is_none() {
        return Ok(());
    }
    match client.session_env_names().await {
        Ok(held) if !held.names.is_empty() => Ok(()),
        Ok(_) => push(state, client, rec).await,
        // A runtime older than this route cannot take them this way; its sessions run without them.
        Err(e) => {
            tracing::debug!(error = %e, "could not ask the runtime which session variables it holds");
            Ok(())
        }
    }
}
