//! A scripted fake LLM server that the real `claude` (Anthropic Messages API) and `codex` (OpenAI
//! Responses API) binaries can talk to, on loopback or on the Docker bridge gateway.
//!
//! ```ignore
//! let llm = FakeLlm::start().await;
//! llm.push(Reply::tool("Write", json!({"file_path": "/tmp/x", "content": "hi"})));
//! llm.push(Reply::text("done"));
//! // claude: ANTHROPIC_BASE_URL=llm.base_url()   codex: base_url = llm.base_url() + "/v1"
//! ```
//!
//! # Which requests consume the script
//!
//! Only *conversation* requests take the next scripted [`Reply`]; everything else is a *side
//! request* and gets a harmless default text (`"ok"`) without touching the script. The rule
//! ([`is_conversation`], replaceable with [`FakeLlm::classify_with`]): the body offers at least one
//! tool. When the script is empty, conversation requests get the fallback reply ([`FakeLlm::set_default`],
//! `"ok"` unless changed), never a hang, so an agent that makes one request more than expected
//! still finishes.
//!
//! # Observed against the real binaries (Claude Code 2.1.330, codex-cli 0.163.0)
//!
//! Claude Code (`ANTHROPIC_BASE_URL`, `ANTHROPIC_API_KEY`; key sent as `x-api-key`):
//! - Each turn is `POST /v1/messages?beta=true`, `"stream": true`, model `claude-opus-5-5` by default,
//!   with its 12 tools (`Agent`, `Bash`, `Edit`, `Read`, `Write`, `Skill`, `ToolSearch`, ...). The tool
//!   result comes back as a `tool_result` block in the last user message of the next request.
//! - Side requests: `HEAD /api/hello` (a connection pre-warm, answer ignored; not sent with
//!   `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`). Helper queries (session title, tool-use
//!   summaries, ...) use the same streaming pipeline with `"tools": []` and no `thinking`; one was
//!   seen with `CLAUDE_CODE_EMIT_TOOL_USE_SUMMARIES=1`, concurrent with the main turn. The quota probe
//!   (`max_tokens: 1`, "quota") sends no `tools`. In `-p` runs, with or without
//!   `--input-format stream-json`, no other side request was seen. With `--tools ""` the main agent
//!   also sends `"tools": []`: use `classify_with(|r| r.body.get("thinking").is_some())` there.
//! - Retries: *every* API error is retried, 401 included, `CLAUDE_CODE_MAX_RETRIES` times (default
//!   10, clamped to 15; `0` = none), backoff ~0.6 s doubling up to ~32-38 s, `Retry-After` honoured;
//!   each retry prints a `system`/`api_retry` line (`attempt`, `retry_delay_ms`, `error_status`). A
//!   persistent 401 takes ~3 min with the defaults. The failed turn's `result` line still says
//!   `subtype: "success"` but `is_error: true`, `api_error_status`, `terminal_reason: "api_error"`;
//!   the process exits 1.
//! - Timeouts: `API_TIMEOUT_MS` bounds a request that gets no response ([`Reply::Hang`]; result
//!   "Request timed out"). A stream that opened and went silent ([`Reply::Stall`]) is only abandoned by
//!   the idle watchdog, whose timeout has a 5-minute floor (`CLAUDE_STREAM_IDLE_TIMEOUT_MS` below
//!   300000 is raised to it): kill or interrupt instead.
//! - `CLAUDE_CODE_GZIP_REQUEST_BODY_LEVEL` would gzip request bodies (off by default); the fake
//!   decodes `Content-Encoding: gzip` anyway.
//!
//! Codex (`config.toml`: `model_provider = "fake"`, `[model_providers.fake]` with `base_url =
//! <base_url>/v1`, `wire_api = "responses"`, `env_key`; key sent as `Authorization: Bearer`):
//! - Each turn is `POST /v1/responses`, `"stream": true`, with tools `exec_command` (arguments
//!   `cmd` (required), `workdir`, `login`, `shell`, `tty`, `yield_time_ms`, `max_output_tokens`,
//!   `sandbox_permissions`, `justification`, `prefix_rule`), `write_stdin`,
//!   `request_user_input`, `view_image`, `multi_agent_v1` (a `namespace` tool), `get_goal`,
//!   `create_goal`, `update_goal`, `web_search` (no `shell`, no `apply_patch` for an unknown model).
//!   The result comes back as a `function_call_output` item whose `output` is a string
//!   (`"Chunk ID: ..\nWall time: ..\nProcess exited with code 0\n...Output:\n..."`). No other
//!   endpoint was called (no `/v1/models`); an unknown model only yields a warning item.
//! - On its default model (no `model` in `config.toml`, as in a keyless sandbox) codex 0.163 sends
//!   `x-openai-internal-codex-responses-lite: true` and a body with `tool_choice` but no `tools`, so
//!   [`is_conversation`] calls it a side request: classify `/v1/responses` as conversation there.
//! - Retries: a failed stream is retried `stream_max_retries` times (default 5, backoff 0.2 s
//!   doubling, 401 included; `exec --json` prints `error` "Reconnecting... n/N" items), and within
//!   each attempt 429/5xx are retried `request_max_retries` times (default 4). Both are provider
//!   keys; set them to 0 for fast failures. A failed turn prints `turn.failed` and exits 1.
//! - Timeouts: `stream_idle_timeout_ms` (provider key) ends a silent open stream ([`Reply::Stall`]:
//!   "idle timeout waiting for SSE"); a request that never gets response headers ([`Reply::Hang`])
//!   is waited for indefinitely.
//!
//! # Endpoints
//!
//! `POST /v1/messages` (streaming or plain JSON), `POST /v1/messages/count_tokens` (an estimate),
//! `POST /v1/responses` (streaming or plain JSON), `POST /v1/chat/completions` (streaming or plain
//! JSON, with tool calls: what `vibe-acp` speaks; see `chat.rs`), `GET /v1/models` (Anthropic or OpenAI shape, by the
//! `anthropic-version` header), `HEAD|GET /api/hello`; anything else is a JSON 404 in the API's error
//! shape. Request handling never panics. `SBX_FAKE_LLM_LOG=1` prints one line per request on stderr.

mod anthropic;
mod chat;
mod openai;
mod recorded;
mod script;
mod server;
mod wire;

pub use recorded::{Api, Recorded, ToolResult};
pub use script::{is_conversation, Reply, Responder};
pub use server::{docker_bridge_gateway, FakeLlm};

/// The default answer to side requests and to conversation requests once the script is empty.
pub const DEFAULT_TEXT: &str = "ok";

/// A `CODEX_HOME` whose `config.toml` points codex at `llm` (model provider `fake`, key from the
/// `FAKE_KEY` variable), with `extra_provider_lines` added to the provider's table.
pub fn codex_home(llm: &FakeLlm, extra_provider_lines: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "model = \"gpt-test\"\nmodel_provider = \"fake\"\n\n[model_providers.fake]\nname = \"fake\"\nbase_url = \"{}\"\nenv_key = \"FAKE_KEY\"\nwire_api = \"responses\"\n{extra_provider_lines}\n",
        llm.openai_base_url()
    );
    std::fs::write(dir.path().join("config.toml"), config).expect("write config.toml");
    dir
}
