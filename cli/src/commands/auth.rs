//! `sbx auth login|logout|status`: cloud provider API keys, stored in a file only this user can read
//! (see [`crate::auth`]).

use std::io::{IsTerminal, Read};

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use sbx_agent::credentials::Secret;

use crate::auth::{desktop_session_bus, provider_auth, resolve, stored_delete, stored_set, KeySource, PROVIDERS};
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
    /// Store a provider's API key in $XDG_CONFIG_HOME/sbx/credentials.toml (mode 0600), asked without
    /// echo, or read from stdin.
    #[command(after_help = "Examples:\n  sbx auth login e2b\n  printf %s \"$KEY\" | sbx auth login daytona --with-token\n  sbx auth login modal          # asks for ID:SECRET")]
    Login {
        /// e2b, daytona, vercel or modal.
        provider: String,
        /// Read the key from standard input (even on a terminal), never from a prompt.
        #[arg(long)]
        with_token: bool,
    },
    /// Remove a provider's stored API key.
    Logout {
        /// e2b, daytona, vercel or modal.
        provider: String,
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
            let path = stored_set(auth.provider, &key)?;
            if ctx.out.json {
                ctx.out.json_value(&serde_json::json!({"provider": auth.provider, "stored": true, "store": "file", "path": path, "key": key}));
            } else {
                ctx.out.note(format!("stored the {} key ({}) in {} (readable only by you)", auth.provider, key.masked(), path.display()));
                if desktop_session_bus() {
                    ctx.out.note("note: this build does not use the desktop's Secret Service; the key is in that file");
                }
            }
            Ok(Exit::Success)
        }
        AuthCommand::Logout { provider } => {
            let auth = provider_auth(&provider)?;
            let removed = stored_delete(auth.provider)?;
            let path = crate::auth::credentials_path();
            if ctx.out.json {
                ctx.out.json_value(&serde_json::json!({"provider": auth.provider, "removed": removed}));
            } else if removed {
                ctx.out.note(format!("removed the {} key from {}", auth.provider, path.display()));
            } else {
                ctx.out.note(format!("no {} key was stored in {}", auth.provider, path.display()));
            }
            Ok(Exit::Success)
        }
        AuthCommand::Status => {
            let mut rows = Vec::new();
            for auth in PROVIDERS {
                let found = resolve(auth, None)?;
                let store = found.as_ref().map(|f| match &f.source {
                    KeySource::Flag => "flag",
                    KeySource::Env(_) => "env",
                    KeySource::Stored(_) => "file",
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
                ctx.out.line(format!("{:<9} {:<6} {:<22} {:<7} {}", "PROVIDER", "FOUND", "KEY", "STORE", "FROM"));
                for r in rows {
                    ctx.out.line(format!(
                        "{:<9} {:<6} {:<22} {:<7} {}",
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
