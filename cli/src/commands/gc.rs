//! `sbx gc`: destroy sbx-labelled sandboxes that are orphaned or past their ttl, and forget state rows
//! whose sandbox is gone.
//!
//! A sandbox is orphaned when it carries sbx's label, is not in this host's state (or only as a
//! half-made `creating` row), was labelled with this state database's id, and the `sbx` process that
//! created it on this host is no longer alive. Sandboxes of other hosts or other state databases are left
//! alone unless they are past their ttl.

use anyhow::Result;
use clap::Args;
use sbx_providers::{labels, Sandbox};

use crate::context::{provider, Ctx};
use crate::output::Exit;
use crate::state::{now_secs, SandboxRecord};

/// `sbx gc` flags.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  sbx gc --dry-run\n  sbx gc")]
pub struct GcArgs {
    /// Only print what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

fn creator_dead(s: &Sandbox, this_host: &str, state_id: &str) -> bool {
    // Only sandboxes this state database would have recorded can be its orphans; others belong to
    // another user or another XDG_STATE_HOME, whose own `sbx gc` decides.
    if s.labels.get(labels::STATE_ID).is_some_and(|id| id != state_id) {
        return false;
    }
    let same_host = s.labels.get(labels::CREATOR_HOST).is_some_and(|h| h == this_host);
    let pid = s.labels.get(labels::CREATOR_PID).and_then(|p| p.parse::<u32>().ok());
    match (same_host, pid) {
        (true, Some(pid)) => !sbx_agent::process_alive(pid),
        // No creator recorded: treat as orphan only when on this host.
        (true, None) => true,
        (false, _) => false,
    }
}

/// Why `s` should go, if it should.
fn reason(records: &[SandboxRecord], s: &Sandbox, this_host: &str, state_id: &str) -> Option<&'static str> {
    let now = now_secs();
    if s.labels.get(labels::EXPIRES_AT).and_then(|e| e.parse::<u64>().ok()).is_some_and(|e| e <= now) {
        return Some("past its ttl");
    }
    let ready = records.iter().any(|r| r.id == s.id && r.status == "ready");
    if !ready && creator_dead(s, this_host, state_id) {
        return Some("orphaned (its creator is gone)");
    }
    None
}

/// Runs `sbx gc`.
pub async fn run(ctx: &Ctx, a: GcArgs) -> Result<Exit> {
    let this_host = crate::provision::hostname();
    let state_id = ctx.state.instance_id()?;
    let listings = super::ls::provider_listings(ctx, None).await;
    let records = ctx.state.list()?;
    let mut removed = Vec::new();
    for (prov, list) in &listings {
        let p = provider(prov).await?;
        for s in list {
            let Some(why) = reason(&records, s, &this_host, &state_id) else { continue };
            let name = s.sbx_name().unwrap_or("-").to_owned();
            if !a.dry_run {
                p.destroy(&s.id).await?;
                if let Some(rec) = records.iter().find(|r| r.id == s.id) {
                    ctx.state.remove(&rec.name)?;
                }
            }
            ctx.out.note(format!("{} {prov} sandbox {} ({name}): {why}", if a.dry_run { "would remove" } else { "removed" }, s.id));
            removed.push(serde_json::json!({ "provider": prov, "id": s.id, "name": name, "reason": why }));
        }
    }
    // State rows whose sandbox the provider no longer has.
    let mut forgotten = Vec::new();
    for r in ctx.state.list()? {
        let Some(list) = listings.get(&r.provider) else { continue };
        let half_made = r.status == "creating" && r.id.is_empty() && now_secs() > r.created_at + 3600;
        let gone = r.status == "ready" && !list.iter().any(|s| s.id == r.id);
        if gone || half_made {
            if !a.dry_run {
                ctx.state.remove(&r.name)?;
            }
            forgotten.push(r.name);
        }
    }
    if ctx.out.json {
        ctx.out.json_value(&serde_json::json!({ "removed": removed, "forgotten": forgotten, "dryRun": a.dry_run }));
    } else if removed.is_empty() && forgotten.is_empty() {
        ctx.out.note("nothing to clean up");
    } else if !forgotten.is_empty() {
        ctx.out.note(format!("forgot {} sandbox(es) the provider no longer has: {}", forgotten.len(), forgotten.join(", ")));
    }
    Ok(Exit::Success)
}
