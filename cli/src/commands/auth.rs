//! `sbx auth login|logout|status`: cloud provider API keys in the OS keyring.

use std::io::{IsTerminal, Read};

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use sbx_agent::credentials::Secret;

use crate::auth::{keyring_delete, keyring_set, provider_auth, resolve, PROVIDERS};
use crate::context::Ctx;
use crate::output::{usage, Exit};

/// `sbx auth` subcommands.
#[derive(Args, Debug)]
pub struct AuthArgs {
    #[command(subcommand)]
    command: AuthCommand,
}

#[derive(Subcommand, Debug)]
enum AuthCommand {
    /// Store a provider's API key in the OS keyring (asked without echo, or read from stdin).
    #[command(after_help = "Examples:\n  sbx auth login e2b\n  printf %s \"$KEY\" | sbx auth login daytona\n  sbx auth login modal          # asks for ID:SECRET")]
    Login {
        /// e2b, daytona, vercel or modal.
        provider: String,
    },
    /// Remove a provider's API key from the OS keyring.
    Logout {
        /// e2b, daytona, vercel or modal.
        provider: String,
    },
    /// For each provider: whether a key is found, where (flag, env, keyring, config file), masked.
    Status,
}

/// Runs `sbx auth …`.
pub async fn run(ctx: &Ctx, a: AuthArgs) -> Result<Exit> {
    match a.command {
        AuthCommand::Login { provider } => {
            let auth = provider_auth(&provider)?;
            let key = if std::io::stdin().is_terminal() {
                rpassword::prompt_password(format!("{}: ", auth.prompt)).context("reading the key")?
            } else {
                let mut s = String::new();
                std::io::stdin().read_to_string(&mut s).context("reading the key from stdin")?;
                s
            };
            let key = key.trim().to_owned();
            if key.is_empty() {
                return Err(usage("no key given: type it at the prompt or pipe it on stdin"));
            }
            if auth.provider == "modal" && !key.contains(':') {
                return Err(usage("a Modal token is two parts: give it as TOKEN_ID:TOKEN_SECRET"));
            }
            let key = Secret::new(key);
            keyring_set(auth.provider, &key)?;
            if ctx.out.json {
                ctx.out.json_value(&serde_json::json!({"provider": auth.provider, "stored": true, "key": key}));
            } else {
                ctx.out.note(format!("stored the {} key ({}) in the OS keyring", auth.provider, key.masked()));
            }
            Ok(Exit::Success)
        }
        AuthCommand::Logout { provider } => {
            let auth = provider_auth(&provider)?;
            let removed = keyring_delete(auth.provider)?;
            if ctx.out.json {
                ctx.out.json_value(&serde_json::json!({"provider": auth.provider, "removed": removed}));
            } else if removed {
                ctx.out.note(format!("removed the {} key from the OS keyring", auth.provider));
            } else {
                ctx.out.note(format!("no {} key was in the OS keyring", auth.provider));
            }
            Ok(Exit::Success)
        }
        AuthCommand::Status => {
            let mut rows = Vec::new();
            for auth in PROVIDERS {
                let found = resolve(auth, None)?;
                rows.push(serde_json::json!({
                    "provider": auth.provider,
                    "found": found.is_some(),
                    "source": found.as_ref().map(|f| f.source.to_string()),
                    "key": found.as_ref().map(|f| f.key.masked()),
                    "env": auth.env,
                    "alsoReads": auth.extra_env,
                }));
            }
            if ctx.out.json {
                ctx.out.json_value(&serde_json::Value::Array(rows));
            } else {
                ctx.out.line(format!("{:<9} {:<6} {:<36} {}", "PROVIDER", "FOUND", "FROM", "KEY"));
                for r in rows {
                    ctx.out.line(format!(
                        "{:<9} {:<6} {:<36} {}",
                        r["provider"].as_str().unwrap_or_default(),
                        if r["found"].as_bool().unwrap_or(false) { "yes" } else { "no" },
                        r["source"].as_str().unwrap_or("-"),
                        r["key"].as_str().unwrap_or("-"),
                    ));
                }
            }
            Ok(Exit::Success)
        }
    }
}
