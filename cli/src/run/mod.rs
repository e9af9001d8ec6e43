//! `sbx run -f sbx.yaml`: many tasks, each in a fresh sandbox with an agent, at bounded concurrency,
//! with everything that comes back written to a results directory CI systems and people can read.
//!
//! - `config.rs`: the file format and its errors (file:line:column, field path, "did you mean").
//! - `plan.rs`: defaults, matrix expansion, `--filter`, `--shard`.
//! - `task.rs`: one task's pipeline; `agent.rs`: its agent session; `diff.rs`: its `diff.patch`.
//! - `values.rs`: the validated value types of the file (sizes, durations, names).
//! - `report.rs`: `summary.json`, `junit.xml`, `summary.md`; `html.rs`: `report.html`.

pub mod agent;
pub mod config;
pub mod diff;
pub mod hosts;
pub mod html;
pub mod plan;
pub mod report;
pub mod task;
pub mod values;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;
use clap::{Args, Subcommand};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::context::Ctx;
use crate::output::{usage, Exit, Output};

/// `sbx run` flags.
#[derive(Args, Debug)]
#[command(after_help = "Exit code: 0 when every task passed, 1 when any failed, 2 for a config or setup error, 130 on Ctrl-C.\n\n\
Examples:\n  sbx run -f sbx.yaml\n  sbx run -f sbx.yaml --validate\n  sbx run -f sbx.yaml --dry-run --json\n  \
sbx run -f sbx.yaml --shard 2/4 --concurrency 8      # this CI machine's quarter\n  sbx run -f sbx.yaml --filter fix- --keep-failed\n\n\
Results: sbx-results/<run-id>/ (see docs/ci.md). The file format: docs/sbx.schema.json, `sbx config schema`.")]
pub struct RunArgs {
    /// The config file.
    #[arg(short, long, default_value = "sbx.yaml")]
    pub file: PathBuf,
    /// How many tasks run at once (default: the file's `defaults.concurrency`, else 4).
    #[arg(short, long)]
    pub concurrency: Option<usize>,
    /// Run only shard I of N (1-based), e.g. 2/4: CI machines split a run deterministically.
    #[arg(long)]
    pub shard: Option<plan::Shard>,
    /// Only tasks whose name contains this (repeatable).
    #[arg(long)]
    pub filter: Vec<String>,
    /// Print the expanded plan and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Check the file and stop.
    #[arg(long)]
    pub validate: bool,
    /// Keep every sandbox afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Keep the sandboxes of tasks that did not pass.
    #[arg(long)]
    pub keep_failed: bool,
    /// Where results go (default: sbx-results/<run-id>).
    #[arg(long)]
    pub results: Option<PathBuf>,
}

/// `sbx runs` subcommands.
#[derive(Args, Debug)]
pub struct RunsArgs {
    #[command(subcommand)]
    command: RunsCommand,
}

#[derive(Subcommand, Debug)]
enum RunsCommand {
    /// List recorded runs, newest first.
    Ls,
    /// Show one run's summary (and where its report.html is).
    Show {
        /// The run id.
        run: String,
        /// Open the run's report.html in the browser ($BROWSER, else xdg-open / open).
        #[arg(long)]
        open: bool,
    },
    /// Write DIR/report.html again from DIR's summary.json and task directories (results of an older
    /// sbx, or copied from CI).
    Report {
        /// A results directory (sbx-results/<run-id>).
        dir: PathBuf,
        /// Open it afterwards.
        #[arg(long)]
        open: bool,
    },
}

/// `sbx config` subcommands.
#[derive(Args, Debug)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Print the JSON Schema of sbx.yaml.
    Schema,
}

/// Runs `sbx config …`.
pub fn config_command(out: &Output, a: ConfigArgs) -> Result<Exit> {
    match a.command {
        ConfigCommand::Schema => {
            out.line(serde_json::to_string_pretty(&config::json_schema())?);
            Ok(Exit::Success)
        }
    }
}

fn config_error(e: config::ConfigError) -> anyhow::Error {
    usage(e.to_string())
}

/// Runs `sbx run`.
pub async fn run(ctx: &Ctx, a: RunArgs) -> Result<Exit> {
    let file = a.file.clone();
    let cfg = config::load(&file).map_err(config_error)?;
    let mut tasks = plan::expand(&cfg, &file).map_err(config_error)?;
    tasks = plan::filter(tasks, &a.filter);
    if let Some(s) = a.shard {
        tasks = plan::shard(tasks, s);
    }
    if a.validate {
        if ctx.out.json {
            ctx.out.json_value(&serde_json::json!({"valid": true, "tasks": tasks.len()}));
        } else {
            ctx.out.note(format!("{}: valid ({} tasks after expansion)", file.display(), tasks.len()));
        }
        return Ok(Exit::Success);
    }
    if a.dry_run {
        if ctx.out.json {
            ctx.out.json_value(&serde_json::to_value(&tasks)?);
        } else {
            for t in &tasks {
                ctx.out.line(format!("{:<32} {:<7} {:<7} {}", t.name, t.provider, t.agent, t.prompt.lines().next().unwrap_or_default()));
            }
        }
        return Ok(Exit::Success);
    }
    if tasks.is_empty() {
        return Err(usage("no tasks to run (check --filter and --shard)"));
    }
    let concurrency = a.concurrency.or(cfg.defaults.concurrency).unwrap_or(4).max(1);
    // The random part keeps runs started in the same second (CI shards) apart; sandbox names use it.
    let run_id = format!("{}-{}", utc_run_stamp(), &sbx_providers::random_hex(4));
    let results = a.results.clone().unwrap_or_else(|| PathBuf::from("sbx-results").join(&run_id));
    std::fs::create_dir_all(&results).map_err(|e| usage(format!("cannot create {}: {e}", results.display())))?;
    ctx.state.record_run(&run_id, "running", None)?;
    ctx.state.set_run_results(&run_id, &std::path::absolute(&results).unwrap_or_else(|_| results.clone()))?;
    ctx.out.note(format!("run {run_id}: {}, {concurrency} at a time; results in {}", report::count(tasks.len(), "task", "tasks"), results.display()));

    let cancel = CancellationToken::new();
    let view = View::new(&ctx.out, &tasks);
    let progress = |task: &str, phase: &str| view.phase(task, phase);
    let env = task::TaskEnv {
        ctx,
        run_id: &run_id,
        results: &results,
        keep: a.keep,
        keep_failed: a.keep_failed,
        diff_inline_limit: cfg.defaults.diff_inline_limit.map(values::Size::bytes).unwrap_or(diff::DEFAULT_INLINE_LIMIT),
        cancel: cancel.clone(),
        progress: &progress,
        hosts: hosts::HostPool::new(&cfg.defaults.hosts),
    };
    let started = Instant::now();
    let started_at = crate::state::now_secs();
    let launched: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let results_stream = futures::stream::iter(tasks.iter().enumerate())
        .take_while(|_| {
            let go = !cancel.is_cancelled();
            async move { go }
        })
        .map(|(index, t)| {
            launched.lock().unwrap_or_else(|e| e.into_inner()).push(t.name.clone());
            let env = &env;
            let view = &view;
            async move {
                let r = task::run(env, t, index).await;
                view.done(&r);
                r
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>();
    tokio::pin!(results_stream);
    let mut interrupted = false;
    let mut done = tokio::select! {
        r = &mut results_stream => r,
        _ = tokio::signal::ctrl_c() => {
            interrupted = true;
            ctx.out.note("\ninterrupted: stopping launches, cancelling running turns, destroying this run's sandboxes (Ctrl-C again to leave at once; `sbx gc` cleans up)");
            cancel.cancel();
            tokio::spawn(async {
                let _ = tokio::signal::ctrl_c().await;
                std::process::exit(130);
            });
            results_stream.await
        }
    };
    if interrupted {
        cleanup_run(ctx, &run_id).await;
    }
    view.finish();
    done.sort_by(|a, b| a.name.cmp(&b.name));
    let ran: Vec<String> = launched.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let not_run: Vec<String> = tasks.iter().filter(|t| !ran.contains(&t.name)).map(|t| t.name.clone()).collect();
    let summary = report::Summary::new(&run_id, &file.display().to_string(), started_at, started.elapsed().as_millis() as u64, interrupted, done, not_run);
    report::write(&results, &summary)?;
    let status = if interrupted { "interrupted" } else if summary.all_passed() { "passed" } else { "failed" };
    ctx.state.record_run(&run_id, status, Some(&serde_json::to_string(&summary)?))?;
    if ctx.out.json {
        ctx.out.json_value(&serde_json::to_value(&summary)?);
    } else {
        ctx.out.note(format!(
            "{} of {} passed, {} failed, {}{} — {}",
            summary.passed,
            summary.total,
            summary.failed,
            report::count(summary.errors, "error", "errors"),
            if interrupted { ", interrupted" } else { "" },
            results.join("report.html").display()
        ));
    }
    Ok(if interrupted {
        Exit::Interrupted
    } else if summary.all_passed() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// Destroys every sandbox of the run: those in the state and any the providers list with its label.
async fn cleanup_run(ctx: &Ctx, run_id: &str) {
    let mut providers = std::collections::BTreeSet::new();
    for rec in ctx.state.list().unwrap_or_default().into_iter().filter(|r| r.run_id == run_id) {
        providers.insert(rec.provider.clone());
        task::destroy(ctx, &rec.name).await;
    }
    let by_run = sbx_providers::Labels::from([(sbx_providers::labels::RUN_ID.to_owned(), run_id.to_owned())]);
    for name in providers {
        if let Ok(p) = crate::context::provider(&name).await {
            if let Ok(found) = p.list(&by_run).await {
                for s in found {
                    let _ = p.destroy(&s.id).await;
                }
            }
        }
    }
}

/// `YYYYMMDD-HHMMSS` in UTC, for run ids that sort by time.
fn utc_run_stamp() -> String {
    let t = crate::output::utc(crate::state::now_secs());
    format!("{:04}{:02}{:02}-{:02}{:02}{:02}", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second())
}

/// `2026-12-02 04:15:59` (UTC) from Unix seconds.
fn utc_time(secs: u64) -> String {
    let t = crate::output::utc(secs);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second())
}

/// Runs `sbx runs …`.
pub fn runs_command(ctx: &Ctx, a: RunsArgs) -> Result<Exit> {
    match a.command {
        RunsCommand::Ls => {
            let runs = ctx.state.list_runs()?;
            if ctx.out.json {
                let v: Vec<_> = runs.iter().map(|(id, at, status)| serde_json::json!({"id": id, "createdAt": at, "status": status})).collect();
                ctx.out.json_value(&serde_json::Value::Array(v));
            } else {
                ctx.out.line(format!("{:<24} {:<12} {}", "RUN", "STATUS", "CREATED (UTC)"));
                for (id, at, status) in runs {
                    ctx.out.line(format!("{id:<24} {status:<12} {}", utc_time(at)));
                }
            }
            Ok(Exit::Success)
        }
        RunsCommand::Show { run, open } => {
            let Some((status, summary)) = ctx.state.get_run(&run)? else {
                return Err(usage(format!("no run `{run}`; `sbx runs ls` lists them")));
            };
            let summary: Option<serde_json::Value> = summary.and_then(|s| serde_json::from_str(&s).ok());
            let results = ctx.state.run_results(&run)?;
            let report = results.as_ref().map(|d| d.join("report.html")).filter(|p| p.exists());
            if ctx.out.json {
                ctx.out.json_value(&serde_json::json!({"id": run, "status": status, "results": results, "report": report, "summary": summary}));
            } else {
                ctx.out.line(format!("run {run}: {status}"));
                if let Some(s) = summary {
                    for t in s["tasks"].as_array().cloned().unwrap_or_default() {
                        ctx.out.line(format!(
                            "  {:<32} {:<10} {}",
                            t["name"].as_str().unwrap_or_default(),
                            t["status"].as_str().unwrap_or_default(),
                            t["message"].as_str().unwrap_or_default()
                        ));
                    }
                }
                if let Some(r) = &report {
                    ctx.out.line(format!("report: {}", r.display()));
                }
            }
            if open {
                let Some(r) = report else {
                    let why = match results {
                        Some(d) => format!("{} has no report.html (`sbx runs report {}` writes one)", d.display(), d.display()),
                        None => "sbx did not record where its results went (a run from an older sbx)".to_owned(),
                    };
                    return Err(usage(format!("cannot open the report of `{run}`: {why}")));
                };
                open_in_browser(&r)?;
            }
            Ok(Exit::Success)
        }
        RunsCommand::Report { dir, open } => {
            let text = std::fs::read(dir.join("summary.json")).map_err(|e| usage(format!("cannot read {}: {e}", dir.join("summary.json").display())))?;
            let summary: serde_json::Value =
                serde_json::from_slice(&text).map_err(|e| usage(format!("{} is not a run summary: {e}", dir.join("summary.json").display())))?;
            html::write(&dir, &summary)?;
            let report = dir.join("report.html");
            if ctx.out.json {
                ctx.out.json_value(&serde_json::json!({"report": report}));
            } else {
                ctx.out.line(report.display().to_string());
            }
            if open {
                open_in_browser(&report)?;
            }
            Ok(Exit::Success)
        }
    }
}

/// Opens a file in the user's browser (see [`open_url`]).
fn open_in_browser(path: &std::path::Path) -> Result<()> {
    let abs = std::path::absolute(path)?;
    let url = url::Url::from_file_path(&abs).map_err(|_| anyhow::anyhow!("{} is not a path a browser can open", abs.display()))?.to_string();
    open_url(&url)
}

/// Opens a URL in the user's browser: `$BROWSER` (the first of its `:`-separated commands; `%s` is
/// the URL), else `xdg-open`, or `open` on macOS. Does not wait for the browser.
pub(crate) fn open_url(url: &str) -> Result<()> {
    let url = url.to_owned();
    let browser = std::env::var("BROWSER").ok().and_then(|b| b.split(':').map(str::trim).find(|c| !c.is_empty()).map(str::to_owned));
    let (program, args) = match browser {
        Some(cmd) => {
            let mut words = shlex::split(&cmd).unwrap_or_default();
            let program = if words.is_empty() { cmd.clone() } else { words.remove(0) };
            let mut args: Vec<String> = words.into_iter().map(|w| w.replace("%s", &url)).collect();
            if !cmd.contains("%s") {
                args.push(url.clone());
            }
            (program, args)
        }
        None if cfg!(target_os = "macos") => ("open".to_owned(), vec![url.clone()]),
        None => ("xdg-open".to_owned(), vec![url.clone()]),
    };
    std::process::Command::new(&program)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start `{program}` to open {url}: {e} (set $BROWSER, or open it yourself)"))?;
    Ok(())
}

/// The live view: one line per running task with its phase and elapsed time on a terminal
/// (indicatif), timestamped lines otherwise.
struct View {
    bars: Option<(indicatif::MultiProgress, std::collections::BTreeMap<String, indicatif::ProgressBar>)>,
    plain: bool,
}

impl View {
    fn new(out: &Output, tasks: &[plan::PlannedTask]) -> Self {
        if out.json || out.quiet > 0 {
            return Self { bars: None, plain: false };
        }
        if !out.fancy {
            return Self { bars: None, plain: true };
        }
        let mp = indicatif::MultiProgress::new();
        let style = indicatif::ProgressStyle::with_template("{spinner:.cyan} {prefix:<32} {msg:<20} {elapsed:>4}").expect("template");
        let mut bars = std::collections::BTreeMap::new();
        for t in tasks {
            let pb = indicatif::ProgressBar::hidden();
            pb.set_style(style.clone());
            pb.set_prefix(t.name.clone());
            bars.insert(t.name.clone(), pb);
        }
        Self { bars: Some((mp, bars)), plain: false }
    }

    fn phase(&self, task: &str, phase: &str) {
        if let Some((mp, bars)) = &self.bars {
            if let Some(pb) = bars.get(task) {
                if pb.is_hidden() {
                    let pb = mp.add(pb.clone());
                    pb.enable_steady_tick(std::time::Duration::from_millis(120));
                }
                pb.set_message(phase.to_owned());
            }
        } else if self.plain {
            eprintln!("{} {task}: {phase}", timestamp());
        }
    }

    fn done(&self, r: &task::TaskResult) {
        let status = serde_json::to_value(r.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let line = format!("{status} in {:.1}s{}", r.duration_ms as f64 / 1000.0, r.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default());
        if let Some((_, bars)) = &self.bars {
            if let Some(pb) = bars.get(&r.name) {
                pb.finish_with_message(line);
            }
        } else if self.plain {
            eprintln!("{} {}: {line}", timestamp(), r.name);
        }
    }

    fn finish(&self) {
        if let Some((mp, _)) = &self.bars {
            let _ = mp.clear();
        }
    }
}

fn timestamp() -> String {
    let now = crate::state::now_secs() % 86400;
    format!("{:02}:{:02}:{:02}", now / 3600, now % 3600 / 60, now % 60)
}
