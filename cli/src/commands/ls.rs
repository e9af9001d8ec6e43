//! `sbx ls`: local state merged with each provider's own listing of sbx-labelled sandboxes.

use std::collections::BTreeMap;

use anyhow::Result;
use clap::Args;
use sbx_providers::{labels, managed_labels, Sandbox};
use serde::Serialize;

use crate::context::{provider, Ctx};
use crate::output::Exit;
use crate::state::now_secs;

/// `sbx ls` flags.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  sbx ls\n  sbx ls --json | jq -r '.[] | select(.orphan) | .id'")]
pub struct LsArgs {
    /// Only this provider.
    #[arg(short, long, value_parser = crate::provider_arg::ProviderArg::Any, hide_possible_values = true)]
    pub provider: Option<String>,
}

/// One row of `sbx ls`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// sbx name (from state, or the label for orphans).
    pub name: String,
    /// Provider.
    pub provider: String,
    /// Provider id.
    pub id: String,
    /// What the provider says (or `missing` when it no longer has it).
    pub state: String,
    /// Unix seconds.
    pub created_at: Option<u64>,
    /// Unix seconds after which gc may remove it.
    pub expires_at: Option<u64>,
    /// Made by sbx but not in this host's state (a killed `sbx up`, another machine).
    pub orphan: bool,
}

/// Lists the providers' sbx sandboxes, skipping providers that are not reachable (with a note).
pub async fn provider_listings(ctx: &Ctx, only: Option<&str>) -> BTreeMap<String, Vec<Sandbox>> {
    let mut names: Vec<String> = ctx.state.list().unwrap_or_default().into_iter().map(|r| r.provider).collect();
    // Every registered provider that needs no key, and those whose key is at hand, are listed too, so
    // `sbx gc` finds their orphans even when this host has no state row for them.
    for p in sbx_providers::registry::all() {
        let usable = p.auth.is_empty() || {
            let auth = crate::auth::provider_auth(p.name).ok();
            auth.and_then(|a| crate::auth::resolve(a, None).ok().flatten()).is_some()
        };
        if usable {
            names.push(p.name.to_owned());
        }
    }
    names.sort();
    names.dedup();
    let mut out = BTreeMap::new();
    for name in names.into_iter().filter(|n| only.is_none_or(|o| o == n)) {
        match provider(&name).await {
            Ok(p) => match p.list(&managed_labels()).await {
                Ok(list) => {
                    out.insert(name, list);
                }
                Err(e) => tracing::info!(provider = %name, error = %e, "cannot list"),
            },
            Err(e) => tracing::info!(provider = %name, error = %e, "provider unavailable"),
        }
    }
    out
}

/// The merged rows.
pub async fn rows(ctx: &Ctx, only: Option<&str>) -> Result<Vec<Row>> {
    let listings = provider_listings(ctx, only).await;
    let records = ctx.state.list()?;
    let mut rows = Vec::new();
    for r in records.iter().filter(|r| only.is_none_or(|o| o == r.provider)) {
        let live = listings.get(&r.provider).and_then(|l| l.iter().find(|s| s.id == r.id));
        let state = match (live, listings.contains_key(&r.provider)) {
            _ if r.status == "creating" => "creating".to_owned(),
            (Some(s), _) => s.state.to_string(),
            (None, true) => "missing".to_owned(),
            (None, false) => "unknown".to_owned(),
        };
        rows.push(Row {
            name: r.name.clone(),
            provider: r.provider.clone(),
            id: r.id.clone(),
            state,
            created_at: Some(r.created_at),
            expires_at: r.expires_at,
            orphan: false,
        });
    }
    for (prov, list) in &listings {
        for s in list {
            if records.iter().any(|r| &r.provider == prov && r.id == s.id) {
                continue;
            }
            rows.push(Row {
                name: s.sbx_name().unwrap_or("-").to_owned(),
                provider: prov.clone(),
                id: s.id.clone(),
                state: s.state.to_string(),
                created_at: s.created_at,
                expires_at: s.labels.get(labels::EXPIRES_AT).and_then(|e| e.parse().ok()),
                orphan: true,
            });
        }
    }
    Ok(rows)
}

/// "3m", "2h", "5d".
pub fn age(since: Option<u64>) -> String {
    let Some(t) = since else { return "-".into() };
    let s = now_secs().saturating_sub(t);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Runs `sbx ls`.
pub async fn run(ctx: &Ctx, a: LsArgs) -> Result<Exit> {
    let rows = rows(ctx, a.provider.as_deref()).await?;
    if ctx.out.json {
        ctx.out.json_value(&serde_json::to_value(&rows)?);
        return Ok(Exit::Success);
    }
    if rows.is_empty() {
        ctx.out.note("no sandboxes; make one with `sbx up --name dev`");
        return Ok(Exit::Success);
    }
    ctx.out.line(format!("{:<20} {:<8} {:<28} {:<9} {:>5}  NOTE", "NAME", "PROVIDER", "ID", "STATE", "AGE"));
    for r in &rows {
        let note = if r.orphan {
            "orphan (not in local state; `sbx gc` removes it)"
        } else if r.state == "missing" {
            "gone at the provider; `sbx down` forgets it"
        } else {
            ""
        };
        let id: String = r.id.chars().take(28).collect();
        ctx.out.line(format!("{:<20} {:<8} {:<28} {:<9} {:>5}  {note}", r.name, r.provider, id, r.state, age(r.created_at)));
    }
    Ok(Exit::Success)
}
