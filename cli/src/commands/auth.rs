//! `sbx auth login|logout|status`: cloud provider API keys, stored in the desktop's Secret Service when
//! there is one, else in a file only this user can read (see [`crate::keystore`]).

use std::io::{IsTerminal, Read};

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use sbx_agent::credentials::Secret;

use crate::auth::{provider_auth, resolve, KeySource, PROVIDERS};
use crate::context::Ctx;
use crate::keystore;
use crate::output::{usage, Exit};

/// `sbx auth` subcommands.
#[derive(Args, Debug)]
pub struct AuthArgs {
    #[command(subcommand)]
    command: AuthCommand,
}

#[derive(Subcommand, Debug)]
enum AuthCommand {
    /// Store a provider's API key, asked without echo or read from stdin: in the desktop's Secret Service
    /// (GNOME Keyring, KWallet, KeePassXC) when the session has one, else in
    /// $XDG_CONFIG_HOME/sbx/credentials.toml (mode 0600).
    #[command(
        after_help = "Examples:\n  sbx auth login e2b\n  printf %s \"$KEY\" | sbx auth login daytona --with-token\n  sbx auth login modal          # asks for ID:SECRET\n  SBX_KEYRING=file sbx auth login e2b   # the file even where a keyring runs\n\nSBX_KEYRING picks the store: auto (default), secret-service or file."
    )]
    Login {
        /// A provider that takes an API key: e2b, daytona, vercel or modal.
        #[arg(value_parser = crate::provider_arg::ProviderArg::Keyed, hide_possible_values = true)]
        provider: String,
        /// Read the key from standard input (even on a terminal), never from a prompt.
        #[arg(long)]
        with_token: bool,
    },
    /// Remove a provider's stored API key.
    Logout {
        /// A provider that takes an API key: e2b, daytona, vercel or modal.
        #[arg(value_parser = crate::provider_arg::ProviderArg::Keyed, hide_possible_values = true)]
        provider: String,
    },
    /// Revoke a keyless sandbox's LLM relay token: its agents' model requests get 401 from now on
    /// (`sbx down` revokes too).
    Revoke {
        /// The keyless sandbox.
        name: String,
    },
    /// Give a keyless sandbox a new LLM relay token (after it expired or was revoked); sessions started
    /// from now on use it.
    Renew {
        /// The keyless sandbox.
        name: String,
    },
    /// For each provider: whether a key is found, which store holds it (env, the login file, the config
    /// file), masked.
    Status,
}

/// Runs `sbx auth …`.
pub async fn run(ctx: &Ctx, a: AuthArgs) -> Result<Exit> {
    match a.command {
        AuthCommand::Login { provider, with_token } => {
            let auth = provider_auth(&provider)?;
            let key = if std::io::stdin().is_terminal() && !with_token {
                rpassword::prompt_password(format!("{}: ", auth.prompt)).context("reading the key")?
            } else {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s).context("reading the key from stdin")?;
                s
            };
            let key = key.trim().to_owned();
            if key.is_empty() {
                return Err(usage("no key given: type it at the prompt or pipe it on stdin (--with-token)"));
            }
            if auth.provider == "modal" && !key.contains(':') {
                return Err(usage("a Modal token is two parts: give it as TOKEN_ID:TOKEN_SECRET"));
            }
            let key = Secret::new(key);
            let stored = keystore::set(auth.provider, &key)?;
            let path = match &stored.store {
                keystore::Store::File(p) => Some(p.clone()),
                keystore::Store::SecretService => None,
            };
            if ctx.out.json {
                ctx.out.json_value(&serde_json::json!({
                    "provider": auth.provider, "stored": true, "store": stored.store.kind(), "path": path, "key": key,
                    "secretServiceUnavailable": stored.fallback_reason,
                }));
            } else {
                let only_you = if path.is_some() { " (readable only by you)" } else { "" };
                ctx.out.note(format!("stored the {} key ({}) in {}{only_you}", auth.provider, key.masked(), stored.store));
                if let Some(why) = &stored.fallback_reason {
                    ctx.out.note(format!("note: the desktop's Secret Service was not usable ({why}), so the key is in that file"));
                }
            }
            Ok(Exit::Success)
        }
        AuthCommand::Logout { provider } => {
            let auth = provider_auth(&provider)?;
            let removed = keystore::delete(auth.provider)?;
            if ctx.out.json {
                let from: Vec<&str> = removed.iter().map(keystore::Store::kind).collect();
                ctx.out.json_value(&serde_json::json!({"provider": auth.provider, "removed": !removed.is_empty(), "from": from}));
            } else if removed.is_empty() {
                ctx.out.note(format!("no {} key was stored (by sbx auth login)", auth.provider));
            } else {
                for store in &removed {
                    ctx.out.note(format!("removed the {} key from {store}", auth.provider));
                }
            }
            Ok(Exit::Success)
        }
        AuthCommand::Revoke { name } => super::keyless::revoke(ctx, &name),
        AuthCommand::Renew { name } => super::keyless::renew(ctx, &name).await,
        AuthCommand::Status => {
            let mut rows = Vec::new();
            for auth in PROVIDERS {
                let found = resolve(auth, None)?;
                let store = found.as_ref().map(|f| match &f.source {
                    KeySource::Flag => "flag",
                    KeySource::Env(_) => "env",
                    KeySource::Stored(s) => s.kind(),
                    KeySource::ConfigFile(_) => "config",
                });
                rows.push(serde_json::json!({
                    "provider": auth.provider,
                    "found": found.is_some(),
                    "store": store,
                    "source": found.as_ref().map(|f| f.source.to_string()),
                    "key": found.as_ref().map(|f| f.key.masked()),
                    "env": auth.env,
                    "alsoReads": auth.extra_env,
                }));
            }
            if ctx.out.json {
                ctx.out.json_value(&serde_json::Value::Array(rows));
            } else {
                ctx.out.line(format!("{:<9} {:<6} {:<22} {:<14} {}", "PROVIDER", "FOUND", "KEY", "STORE", "FROM"));
                for r in rows {
                    ctx.out.line(format!(
                        "{:<9} {:<6} {:<22} {:<14} {}",
                        r["provider"].as_str().unwrap_or_default(),
                        if r["found"].as_bool().unwrap_or(false) { "yes" } else { "no" },
                        r["key"].as_str().unwrap_or("-"),
                        r["store"].as_str().unwrap_or("-"),
                        r["source"].as_str().unwrap_or("-"),
                    ));
                }
            }
            Ok(Exit::Success)
        }
    }
}
