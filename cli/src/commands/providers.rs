//! `sbx providers`: the provider registry (names, what each is, capabilities, keys and env vars).

use anyhow::Result;
use clap::Args;
use sbx_providers::registry;

use crate::output::{Exit, Output};

/// `sbx providers` flags.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  sbx providers\n  sbx providers --json\n  sbx providers --markdown   # the table in docs/providers/README.md")]
pub struct ProvidersArgs {
    /// Print the Markdown table the docs hold.
    #[arg(long, conflicts_with = "json")]
    pub markdown: bool,
}

/// Runs `sbx providers`.
pub fn run(out: &Output, a: &ProvidersArgs) -> Result<Exit> {
    if a.markdown {
        print!("{}", registry::markdown_table());
        return Ok(Exit::Success);
    }
    if out.json {
        let all: Vec<serde_json::Value> = registry::all()
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name, "summary": p.summary, "capabilities": p.capabilities, "env": p.env,
                    "auth": p.auth, "connect": p.connect, "docs": p.docs, "keepAlive": p.keep_alive,
                })
            })
            .collect();
        out.json_value(&serde_json::Value::Array(all));
        return Ok(Exit::Success);
    }
    let width = registry::all().iter().map(|p| p.name.len()).max().unwrap_or(0);
    for p in registry::all() {
        let key = if p.auth.is_empty() { "no key".to_owned() } else { format!("key: {}", p.auth.join(" or ")) };
        out.line(format!("{:width$}  {} ({key})", p.name, p.summary));
    }
    Ok(Exit::Success)
}
