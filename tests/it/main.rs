//! The one integration-test binary (`cargo nextest run -p sbx-tests`); each area is a module.
mod auth;
mod claude_agent;
mod cli;
mod codex_agent;
mod conformance;
mod credentials;
mod daytona;
mod docker;
mod e2b;
mod fake_llm;
mod fs;
mod output_bytes;
mod processes;
mod pty;
mod run;
mod secrets;
mod sessions;
