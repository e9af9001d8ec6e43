// The sbx run report: reads the JSON in #sbx-data and draws the header, the status filters, the task
// table, the agent × provider matrix, the timeline and one task's details. Everything the page shows
// is in that JSON; it loads nothing. The URL's hash holds the view (filters, tab, task), so a link or a
// reload comes back to the same place.
"use strict";
(() => {
  const D = JSON.parse(document.getElementById("sbx-data").textContent);
  const S = D.summary || {};
  const DETAILS = D.details || {};
  const STATUSES = ["passed", "failed", "error", "timed_out", "cancelled", "not_run"];
  const LABEL = { passed: "passed", failed: "failed", error: "error", timed_out: "timed out", cancelled: "cancelled", not_run: "not run" };
  const PHASE_COLOURS = {
    create: "#8dd3c7", runtime_upload: "#80b1d3", start: "#bebada", healthy: "#b3de69", workspace: "#fdb462", setup: "#fccde5",
    agent_install: "#bc80bd", agent: "#4e79a7", diff: "#ccebc5", check: "#f28e2b", collect: "#ffed6f", down: "#d9d9d9",
  };
  const TASKS = (S.tasks || []).map((t) => Object.assign({}, t));
  for (const name of S.notRun || []) TASKS.push({ name, status: "not_run", agent: "", provider: "", phases: [], durationMs: 0 });
  const BY_NAME = new Map(TASKS.map((t) => [t.name, t]));
  const DEFAULTS = { status: "", q: "", agent: "", provider: "", tab: "tasks", sort: "", task: "", view: "transcript" };
  let state = Object.assign({}, DEFAULTS);

  // ---- helpers -----------------------------------------------------------------------------------
  const $ = (sel) => document.querySelector(sel);
  const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ESC[c]);
  const attr = esc;
  function ms(n) {
    if (n == null) return "";
    if (n < 1000) return n + " ms";
    if (n < 60000) return (n / 1000).toFixed(1) + " s";
    const m = Math.floor(n / 60000);
    return m + " m " + Math.round((n % 60000) / 1000) + " s";
  }
  function bytes(n) {
    if (n == null) return "";
    if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + " MiB";
    if (n >= 1 << 10) return (n / 1024).toFixed(1) + " KiB";
    return n + " B";
  }
  const num = (n) => (n == null ? "" : Number(n).toLocaleString("en-US"));
  const tokens = (u) => (u ? u.inputTokens + (u.cacheReadTokens || 0) + (u.cacheWriteTokens || 0) + u.outputTokens : null);
  const cost = (c) => (c == null ? "" : "$" + (c < 0.01 ? c.toFixed(4) : c.toFixed(2)));
  function utc(secs) {
    if (!secs) return "";
    return new Date(secs * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }
  const badge = (s) => `<span class="st st-${attr(s)}">${esc(LABEL[s] || s)}</span>`;
  const filePath = (...parts) => parts.join("/").split("/").map(encodeURIComponent).join("/");
  const diffBytes = (t) => (t.diff ? t.diff.bytes : null);

  // ---- state in the hash ---------------------------------------------------------------------------
  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    const next = Object.assign({}, DEFAULTS);
    for (const k of Object.keys(DEFAULTS)) if (p.has(k)) next[k] = p.get(k);
    state = next;
  }
  // Selecting a task adds a history entry (Back returns to the list); filters and typing replace it.
  function go(changes, push) {
    const next = Object.assign({}, state, changes);
    const p = new URLSearchParams();
    for (const k of Object.keys(DEFAULTS)) if (next[k] && next[k] !== DEFAULTS[k]) p.set(k, next[k]);
    const hash = "#" + p.toString();
    if (hash === location.hash || (hash === "#" && !location.hash)) return;
    if (push) location.hash = hash;
    else location.replace(hash);
    // A fragment change is synchronous but its `hashchange` event is not: draw now, so a click that
    // lands before the event sees the page it asked for, not the one before.
    render();
  }

  function visible() {
    const q = state.q.toLowerCase();
    let list = TASKS.filter(
      (t) =>
        (!state.status || t.status === state.status) &&
        (!state.agent || t.agent === state.agent) &&
        (!state.provider || t.provider === state.provider) &&
        (!q || (t.name + " " + t.agent + " " + t.provider + " " + (t.message || "")).toLowerCase().includes(q)),
    );
    const key = state.sort.replace(/^-/, "");
    const dir = state.sort.startsWith("-") ? -1 : 1;
    const get = SORT_KEYS[key];
    if (get) {
      list = list.slice().sort((a, b) => {
        const x = get(a), y = get(b);
        if (x == null && y == null) return 0;
        if (x == null) return 1;
        if (y == null) return -1;
        return (x < y ? -1 : x > y ? 1 : 0) * dir;
      });
    }
    return list;
  }
  const SORT_KEYS = {
    status: (t) => STATUSES.indexOf(t.status), name: (t) => t.name, agent: (t) => t.agent, provider: (t) => t.provider,
    exit: (t) => t.checkExitCode, duration: (t) => t.durationMs, tokens: (t) => tokens(t.usage), cost: (t) => t.costUsd,
    diff: diffBytes, attempts: (t) => t.attempts,
  };

  // ---- header and filters ------------------------------------------------------------------------
  function renderHead() {
    const parts = [
      `<span>${esc(S.passed)} of ${esc(S.total)} passed</span>`,
      S.failed ? `<span class="bad">${esc(S.failed)} failed</span>` : "",
      S.errors ? `<span class="warn">${esc(S.errors)} errors</span>` : "",
      S.interrupted ? `<span class="warn">interrupted: ${esc((S.notRun || []).length)} not run</span>` : "",
      `<span>${esc(ms(S.durationMs))}</span>`,
      `<span>started ${esc(utc(S.startedAt))}</span>`,
      `<span>config <code>${esc(S.config)}</code></span>`,
    ];
    const cost = TASKS.reduce((a, t) => a + (t.costUsd || 0), 0);
    const tok = TASKS.reduce((a, t) => a + (tokens(t.usage) || 0), 0);
    if (tok) parts.push(`<span>${esc(num(tok))} tokens</span>`);
    if (cost) parts.push(`<span>${esc(cost.toFixed(2))} USD</span>`);
    $("#head").innerHTML = `<h1>sbx run <code>${esc(S.runId)}</code></h1><div class="meta">${parts.filter(Boolean).join("")}</div>`;
  }

  function renderFilters() {
    const counts = {};
    for (const t of TASKS) counts[t.status] = (counts[t.status] || 0) + 1;
    const btn = (value, label, n) =>
      `<button data-status="${attr(value)}" aria-pressed="${state.status === value}">${esc(label)}<span class="n">${esc(n)}</span></button>`;
    let html = btn("", "all", TASKS.length);
    for (const s of STATUSES) if (counts[s] || state.status === s) html += btn(s, LABEL[s], counts[s] || 0);
    if (state.agent) html += `<button data-clear="agent" title="clear">agent: ${esc(state.agent)} ✕</button>`;
    if (state.provider) html += `<button data-clear="provider" title="clear">provider: ${esc(state.provider)} ✕</button>`;
    $("#filters").innerHTML = html;
    const q = $("#q");
    if (q.value !== state.q && document.activeElement !== q) q.value = state.q;
    for (const b of document.querySelectorAll("#tabs button")) b.setAttribute("aria-selected", String(b.dataset.tab === state.tab));
  }

  // ---- the task table ----------------------------------------------------------------------------
  function phaseBar(t, width) {
    const total = (t.phases || []).reduce((a, p) => a + p.durationMs, 0) || 1;
    return (t.phases || [])
      .map((p) => {
        const w = width ? (p.durationMs / total) * 100 : (p.durationMs / total) * 100;
        const c = PHASE_COLOURS[p.name] || "#999";
        return `<i class="ph-${attr(p.outcome)}" style="width:${w.toFixed(3)}%;background:${c}" title="${attr(p.name + ": " + ms(p.durationMs) + " (" + p.outcome + ")")}"></i>`;
      })
      .join("");
  }

  function renderTable(list) {
    const col = (key, label, cls) => {
      const mark = state.sort === key ? " ▲" : state.sort === "-" + key ? " ▼" : "";
      return `<th data-sort="${key}" class="${cls || ""}">${esc(label)}${mark}</th>`;
    };
    const rows = list.map((t) => {
      const u = t.usage;
      const tok = tokens(u);
      const d = t.diff;
      return (
        `<tr data-task="${attr(t.name)}" class="${t.name === state.task ? "sel" : ""}">` +
        `<td>${badge(t.status)}</td><td class="name" title="${attr(t.name)}">${esc(t.name)}</td>` +
        `<td>${esc(t.agent)}</td><td>${esc(t.provider)}</td>` +
        `<td class="num">${esc(t.checkExitCode == null ? "" : t.checkExitCode)}</td>` +
        `<td class="num">${esc(ms(t.durationMs))}</td>` +
        `<td class="opt"><div class="phases">${phaseBar(t)}</div></td>` +
        `<td class="num opt" title="${u ? attr(`in ${u.inputTokens}, out ${u.outputTokens}, cache read ${u.cacheReadTokens || 0}, cache write ${u.cacheWriteTokens || 0}`) : ""}">${esc(num(tok))}</td>` +
        `<td class="num opt">${esc(cost(t.costUsd))}</td>` +
        `<td class="num">${d ? (d.bytes ? esc(bytes(d.bytes)) : "none") : ""}</td>` +
        `<td class="num opt">${esc(t.attempts > 1 ? t.attempts : "")}</td>` +
        `<td class="msg opt" title="${attr(t.message || "")}">${esc(t.message || "")}</td></tr>`
      );
    });
    const legend = Object.entries(PHASE_COLOURS).map(([n, c]) => `<span><i style="background:${c}"></i>${esc(n)}</span>`).join("");
    return (
      `<p class="note" id="shown">${list.length} of ${TASKS.length} tasks shown</p>` +
      `<table id="tasks"><thead><tr>${col("status", "status")}${col("name", "task")}${col("agent", "agent")}${col("provider", "provider")}` +
      `${col("exit", "exit", "num")}${col("duration", "duration", "num")}<th class="opt">phases</th>${col("tokens", "tokens", "num opt")}` +
      `${col("cost", "cost", "num opt")}${col("diff", "diff", "num")}${col("attempts", "tries", "num opt")}<th class="opt">message</th></tr></thead>` +
      `<tbody>${rows.join("")}</tbody></table>` +
      (list.length ? `<div class="legend">${legend}</div>` : `<p class="empty">No task matches these filters.</p>`)
    );
  }

  // ---- the agent × provider matrix -----------------------------------------------------------------
  function renderMatrix(list) {
    const agents = [...new Set(TASKS.map((t) => t.agent).filter(Boolean))].sort();
    const providers = [...new Set(TASKS.map((t) => t.provider).filter(Boolean))].sort();
    const cells = new Map();
    for (const t of list) {
      const k = t.agent + "\u0000" + t.provider;
      const c = cells.get(k) || { total: 0, passed: 0, ms: 0, tokens: 0, cost: 0 };
      c.total++;
      if (t.status === "passed") c.passed++;
      c.ms += t.durationMs || 0;
      c.tokens += tokens(t.usage) || 0;
      c.cost += t.costUsd || 0;
      cells.set(k, c);
    }
    let html = grid(list);
    html += `<p class="note">Tasks shown by agent and provider (passed / run, mean duration); a cell filters the task list.</p>`;
    html += `<table class="pivot" id="matrix"><thead><tr><th>agent \\ provider</th>${providers.map((p) => `<th>${esc(p)}</th>`).join("")}</tr></thead><tbody>`;
    for (const a of agents) {
      html += `<tr><th>${esc(a)}</th>`;
      for (const p of providers) {
        const c = cells.get(a + "\u0000" + p);
        if (!c) {
          html += `<td class="note">–</td>`;
          continue;
        }
        const cls = c.passed === c.total ? "good" : "bad";
        const extra = [ms(Math.round(c.ms / c.total)), c.tokens ? num(c.tokens) + " tok" : "", c.cost ? cost(c.cost) : ""].filter(Boolean).join(" · ");
        html += `<td class="cell" data-agent="${attr(a)}" data-provider="${attr(p)}"><span class="${cls}">${c.passed} / ${c.total}</span><div class="note">${esc(extra)}</div></td>`;
      }
      html += `</tr>`;
    }
    return html + `</tbody></table>`;
  }

  // Tasks × their matrix values (agent, provider, model, …): one row per task of the file, one column
  // per combination, a cell per run task. Only when the file has a matrix.
  function grid(list) {
    if (!list.some((t) => t.matrix && Object.keys(t.matrix).length)) return "";
    const combo = (t) => Object.entries(t.matrix || {}).map(([k, v]) => `${k}=${v}`).join(" · ") || "(no matrix)";
    const bases = [...new Set(list.map((t) => t.base || t.name))];
    const combos = [...new Set(list.map(combo))].sort();
    const at = new Map(list.map((t) => [(t.base || t.name) + "\u0000" + combo(t), t]));
    let html = `<p class="note">Tasks by their matrix values; a cell opens the task.</p><table class="pivot" id="grid"><thead><tr><th>task</th>${combos.map((c) => `<th>${esc(c)}</th>`).join("")}</tr></thead><tbody>`;
    for (const b of bases) {
      html += `<tr><th>${esc(b)}</th>`;
      for (const c of combos) {
        const t = at.get(b + "\u0000" + c);
        html += t ? `<td class="cell" data-task="${attr(t.name)}" title="${attr(t.name)}">${badge(t.status)}<div class="note">${esc(ms(t.durationMs))}</div></td>` : `<td class="note">–</td>`;
      }
      html += `</tr>`;
    }
    return html + `</tbody></table>`;
  }

  // ---- the timeline --------------------------------------------------------------------------------
  function renderTimeline(list) {
    const timed = list.filter((t) => t.startedAtMs).sort((a, b) => a.startedAtMs - b.startedAtMs || (a.name < b.name ? -1 : 1));
    if (!timed.length) return `<p class="empty">No task of these has a start time (results from an older sbx, or none ran).</p>`;
    const t0 = Math.min(...timed.map((t) => t.startedAtMs));
    const t1 = Math.max(...timed.map((t) => t.startedAtMs + (t.durationMs || 0)));
    const span = Math.max(t1 - t0, 1);
    let axis = "";
    for (let i = 0; i <= 5; i++) axis += `<span style="left:${i * 20}%">+${esc(ms(Math.round((span * i) / 5)))}</span>`;
    const rows = timed.map((t) => {
      const left = ((t.startedAtMs - t0) / span) * 100;
      const width = Math.max(((t.durationMs || 0) / span) * 100, 0.2);
      const tip = `${t.name} on ${t.provider} (${t.sandbox || "no sandbox"}): ${LABEL[t.status]} in ${ms(t.durationMs)}`;
      return (
        `<div class="tl-row" data-task="${attr(t.name)}" title="${attr(tip)}"><div class="tl-label">${badge(t.status)} ${esc(t.name)} <span class="note">${esc(t.provider)}</span></div>` +
        `<div class="tl-track"><div class="tl-bar" style="left:${left.toFixed(3)}%;width:${width.toFixed(3)}%">${phaseBar(t)}</div></div></div>`
      );
    });
    return `<p class="note">Which task ran when, and on what; each bar is split into its phases.</p><div class="tl" id="timeline"><div class="tl-axis">${axis}</div>${rows.join("")}</div>`;
  }

  // ---- one task ------------------------------------------------------------------------------------
  function renderDetail() {
    const box = $("#detail");
    const t = BY_NAME.get(state.task);
    document.querySelector("main").classList.toggle("split", !!t);
    if (!t) {
      box.hidden = true;
      box.innerHTML = "";
      return;
    }
    const d = DETAILS[t.name] || {};
    const u = t.usage;
    const kv = [
      ["agent", t.agent + (t.agentInstall && t.agentInstall.version ? ` (${t.agentInstall.version}, from ${t.agentInstall.source})` : "")],
      ["provider", t.provider],
      ["sandbox", (t.sandbox || "") + (t.kept ? " (kept)" : "")],
      ["duration", ms(t.durationMs) + (t.attempts > 1 ? ` (attempt ${t.attempts})` : "")],
      ["check exit code", t.checkExitCode == null ? "–" : t.checkExitCode],
      ["tokens", u ? `${num(u.inputTokens)} in, ${num(u.outputTokens)} out, ${num(u.cacheReadTokens || 0)} cache read, ${num(u.cacheWriteTokens || 0)} cache write` : "–"],
      ["cost", t.costUsd == null ? "–" : cost(t.costUsd)],
      ["diff", t.diff ? (t.diff.bytes ? `${bytes(t.diff.bytes)} (${t.diff.path})` : "no change") : "–"],
    ];
    const views = [["transcript", "Transcript"], ["diff", "Diff"], ["logs", "Check & logs"], ["phases", "Phases"], ["files", "Files"]];
    const view = views.some(([v]) => v === state.view) ? state.view : "transcript";
    const body = { transcript, diff: diffView, logs, phases, files }[view](t, d);
    box.hidden = false;
    box.innerHTML =
      `<div class="dh"><h2>${badge(t.status)} ${esc(t.name)}</h2>` +
      (t.message ? `<div class="${t.status === "passed" ? "note" : "bad"}" id="message">${esc(t.message)}</div>` : "") +
      `<dl class="kv">${kv.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("")}</dl>` +
      `<div class="dtabs">${views.map(([v, l]) => `<button data-view="${v}" aria-selected="${v === view}">${esc(l)}</button>`).join("")}` +
      `<button data-close="1" title="close (Esc)">✕</button></div></div><div class="body" id="view-${view}">${body}</div>`;
  }

  const meta = (html) => `<div class="ev meta">${html}</div>`;
  function transcript(t, d) {
    const evs = d.events || [];
    const notes = [];
    if (d.eventsOmitted) notes.push(`${d.eventsOmitted} later events are not shown here (the page keeps each task's events under 1 MiB); all of them are in ${t.name}/events.jsonl.`);
    if (d.eventsUnreadable) notes.push(`${d.eventsUnreadable} lines of events.jsonl could not be read.`);
    const head = notes.map((n) => `<p class="note warn">${esc(n)}</p>`).join("");
    if (!evs.length) return head + `<p class="empty">No agent session was recorded for this task${t.message ? ": " + esc(t.message) : ""}.</p>`;
    const out = [];
    const asked = new Map();
    for (const e of evs) {
      const x = e.data || {};
      switch (e.type) {
        case "session.started":
          out.push(meta(`session started · agent ${esc(x.agent)}${x.model ? " · model " + esc(x.model) : ""} · cwd <code>${esc(x.cwd)}</code>`));
          break;
        case "turn.started":
          out.push(`<div class="ev turn">${esc(x.turnId)} started · ${esc(e.time)}</div>`);
          break;
        case "item.started":
        case "item.completed":
          out.push(item(x, e.type === "item.started"));
          break;
        case "permission.requested":
          asked.set(x.permissionId, x.title);
          out.push(`<div class="ev perm"><div class="who">permission asked</div>${esc(x.title)}<span class="tag">${esc(x.kind)}</span><span class="tag">${esc(x.toolName)}</span></div>`);
          break;
        case "permission.resolved":
          out.push(
            `<div class="ev perm"><div class="who">permission ${esc(String(x.decision).replace("_", " "))}</div>` +
              `${asked.has(x.permissionId) ? esc(asked.get(x.permissionId)) + " · " : ""}by ${esc(x.by)}${x.message ? ": " + esc(x.message) : ""}</div>`,
          );
          break;
        case "question.requested":
          out.push(`<div class="ev perm"><div class="who">question</div>${esc(x.question)}${(x.options || []).map((o) => `<span class="tag">${esc(o)}</span>`).join("")}</div>`);
          break;
        case "question.resolved":
          out.push(`<div class="ev perm"><div class="who">answer</div>${x.answer == null ? "(rejected)" : esc(x.answer)}</div>`);
          break;
        case "turn.completed": {
          const bits = [`${esc(x.turnId)} ${esc(x.outcome)}`, ms(x.durationMs)];
          if (x.stopReason) bits.push("stop: " + esc(x.stopReason));
          if (x.usage) bits.push(`${num(x.usage.inputTokens)} in / ${num(x.usage.outputTokens)} out tokens`);
          if (x.costUsd != null) bits.push(cost(x.costUsd));
          out.push(`<div class="ev turn${x.outcome === "completed" ? "" : " error"}">${bits.join(" · ")}</div>`);
          break;
        }
        case "error":
          out.push(`<div class="ev error"><div class="who">error ${esc(x.code)}${x.status ? " (HTTP " + esc(x.status) + ")" : ""}</div><pre>${esc(x.message)}</pre></div>`);
          break;
        case "session.ended":
          out.push(meta(`session ended: ${esc(x.reason)} (by ${esc(x.terminatedBy)})${x.message ? " · " + esc(x.message) : ""}`));
          break;
        default:
          out.push(meta(esc(e.type)));
      }
    }
    return head + `<div class="transcript">${out.join("")}</div>`;
  }

  function item(x, partial) {
    const parts = x.content || [];
    let cls = "meta", who = x.kind;
    if (x.kind === "message") [cls, who] = x.role === "user" ? ["user", "user"] : x.role === "assistant" ? ["assistant", "assistant"] : ["meta", x.role || "message"];
    else if (x.kind === "tool_call") [cls, who] = ["tool", "tool call"];
    else if (x.kind === "tool_result") [cls, who] = ["result", "tool result"];
    else if (x.kind === "reasoning") [cls, who] = ["meta", "reasoning"];
    const failed = x.status === "failed" || parts.some((p) => p.type === "tool_result" && p.is_error);
    const tags = (partial ? `<span class="tag">unfinished</span>` : "") + (failed ? `<span class="tag bad">failed</span>` : "");
    return `<div class="ev ${cls}${failed ? " is-error" : ""}"><div class="who">${esc(who)}${tags}</div>${parts.map(part).join("")}</div>`;
  }

  function part(p) {
    switch (p.type) {
      case "text":
        return `<pre>${esc(p.text)}</pre>`;
      case "reasoning":
        return `<details><summary class="note">reasoning</summary><pre>${esc(p.text)}</pre></details>`;
      case "json":
        return `<pre class="box">${esc(JSON.stringify(p.json, null, 2))}</pre>`;
      case "tool_call": {
        const args = typeof p.arguments === "string" ? p.arguments : JSON.stringify(p.arguments, null, 2);
        return `<div><code>${esc(p.name)}</code><span class="tag">${esc(p.call_id)}</span></div><pre class="box">${esc(args)}</pre>`;
      }
      case "tool_result":
        return `<pre class="box">${esc(p.output)}</pre>`;
      case "file_ref":
        return `<div>${esc(p.action)} <code>${esc(p.path)}</code></div>${p.diff ? renderDiff(p.diff) : ""}`;
      case "status":
        return `<div class="note">${esc(p.label)}${p.detail ? ": " + esc(p.detail) : ""}</div>`;
      default:
        return `<pre class="box">${esc(JSON.stringify(p))}</pre>`;
    }
  }

  function textNotes(t, f, name, what) {
    const n = [];
    if (f.truncated) n.push(`Showing ${what} ${bytes(f.shown)} of ${bytes(f.bytes)}; all of it is in ${t.name}/${name}.`);
    if (f.lossy) n.push(`Not all of it is UTF-8 text: bytes that are not are shown as �; ${t.name}/${name} holds the exact bytes.`);
    return n.map((s) => `<p class="note warn">${esc(s)}</p>`).join("");
  }

  function diffView(t, d) {
    const f = d.diff;
    if (!t.diff) return `<p class="empty">No diff: the task did not get as far as its workspace.</p>`;
    if (!f || !f.bytes) return `<p class="empty">The task changed nothing.</p>`;
    return textNotes(t, f, "diff.patch", "the first") + renderDiff(f.text);
  }

  function logs(t, d) {
    const list = d.logs || [];
    let html = `<p class="note">check exit code: <b>${esc(t.checkExitCode == null ? "none (the check did not run)" : t.checkExitCode)}</b></p>`;
    if (!list.length) return html + `<p class="empty">No logs were written.</p>`;
    for (const l of list) html += `<h3>${esc(l.name)}</h3>${textNotes(t, l, l.name, "the last")}<pre class="box log" data-log="${attr(l.name)}">${esc(l.text)}</pre>`;
    return html;
  }

  function phases(t) {
    const rows = (t.phases || []).map(
      (p) => `<tr><td><i style="display:inline-block;width:10px;height:10px;background:${PHASE_COLOURS[p.name] || "#999"}"></i> ${esc(p.name)}</td><td class="num">${esc(ms(p.durationMs))}</td><td>${esc(p.outcome)}</td></tr>`,
    );
    const inst = t.agentInstall
      ? `<p class="note">agent ${esc(t.agentInstall.agent)} from ${esc(t.agentInstall.source)}${t.agentInstall.version ? " (" + esc(t.agentInstall.version) + ")" : ""} in ${esc(ms(t.agentInstall.durationMs))}</p>`
      : "";
    return `<div class="phases" style="width:100%;height:14px">${phaseBar(t)}</div><table><thead><tr><th>phase</th><th class="num">time</th><th>outcome</th></tr></thead><tbody>${rows.join("")}</tbody></table>${inst}`;
  }

  function files(t, d) {
    const list = (d.files || []).map((f) => `<li><a href="${attr(filePath(t.name, f))}">${esc(t.name)}/${esc(f)}</a></li>`);
    const arts = (t.artifacts || []).map((a) => `<li><a href="${attr(filePath(t.name, "artifacts", a))}">${esc(t.name)}/artifacts/${esc(a)}</a></li>`);
    return `<p class="note">Files beside this report (links work where the results directory is kept whole).</p><ul>${list.join("")}</ul>` + (arts.length ? `<h3>artifacts</h3><ul>${arts.join("")}</ul>` : "");
  }

  // ---- diffs with syntax colouring -------------------------------------------------------------------
  const KEYWORDS = {
    js: "async await break case catch class const continue default delete do else export extends false finally for from function if import in instanceof let new null of return super switch this throw true try typeof undefined var void while yield",
    rs: "as async await break const continue crate dyn else enum extern false fn for if impl in let loop match mod move mut pub ref return self Self static struct super trait true type unsafe use where while",
    py: "and as assert async await break class continue def del elif else except False finally for from global if import in is lambda None nonlocal not or pass raise return self True try while with yield",
    go: "break case chan const continue default defer else fallthrough for func go goto if import interface map nil package range return select struct switch type var true false",
    c: "auto break case char class const continue default delete do double else enum extern false float for goto if int long namespace new private protected public return short signed sizeof static struct switch template this true typedef union unsigned void volatile while",
    java: "abstract boolean break byte case catch char class const continue default do double else enum extends final finally float for if implements import instanceof int interface long new null package private protected public return short static super switch this throw throws true false try void while",
    sh: "if then else elif fi for while until do done case esac in function return export local set unset readonly shift exit",
    conf: "true false null yes no on off",
  };
  const EXT = {
    js: "js", mjs: "js", cjs: "js", ts: "js", tsx: "js", jsx: "js", json: "js", rs: "rs", py: "py", go: "go", c: "c", h: "c", cc: "c", cpp: "c",
    hpp: "c", java: "java", kt: "java", cs: "java", sh: "sh", bash: "sh", zsh: "sh", yml: "conf", yaml: "conf", toml: "conf", rb: "py",
  };
  const HASH_COMMENTS = new Set(["py", "sh", "conf"]);
  const RULES = {};
  function rule(lang) {
    if (RULES[lang]) return RULES[lang];
    const comment = HASH_COMMENTS.has(lang) ? "#.*$" : "\\/\\/.*$|\\/\\*.*?(?:\\*\\/|$)";
    const strings = lang === "rs" ? `"(?:\\\\.|[^"\\\\])*"|'(?:\\\\.|[^'\\\\])'` : `"(?:\\\\.|[^"\\\\])*"|'(?:\\\\.|[^'\\\\])*'|\`(?:\\\\.|[^\`\\\\])*\``;
    const kw = KEYWORDS[lang].split(" ").join("|");
    return (RULES[lang] = new RegExp(`(${comment})|(${strings})|(\\b\\d[\\w.]*\\b)|\\b(${kw})\\b`, "g"));
  }
  function highlight(code, lang) {
    if (!lang || code.length > 800) return esc(code);
    const re = rule(lang);
    re.lastIndex = 0;
    let out = "", at = 0, m;
    while ((m = re.exec(code))) {
      if (m[0] === "") { re.lastIndex++; continue; }
      out += esc(code.slice(at, m.index));
      const cls = m[1] ? "tc" : m[2] ? "ts" : m[3] ? "tn" : "tk";
      out += `<span class="${cls}">${esc(m[0])}</span>`;
      at = m.index + m[0].length;
    }
    return out + esc(code.slice(at));
  }
  function langOf(path) {
    const ext = (path.match(/\.([A-Za-z0-9]+)$/) || [])[1];
    return ext ? EXT[ext.toLowerCase()] : undefined;
  }

  // Split a unified diff into files; each is a <details> with its +/- counts, lines coloured.
  function renderDiff(text) {
    const lines = text.split("\n");
    if (lines.length && lines[lines.length - 1] === "") lines.pop();
    const filesOut = [];
    let cur = null;
    const start = (header) => {
      const m = header.match(/^diff --git a\/(.*) b\/(.*)$/);
      cur = { path: m ? m[2] : header, lines: [], adds: 0, dels: 0, binary: false, inHunk: false };
      filesOut.push(cur);
    };
    let budget = 20000; // lines coloured; the rest is shown plain
    for (const l of lines) {
      if (l.startsWith("diff --git ") || !cur) start(l);
      if (cur.binary) { cur.lines.push(`<div class="l m">${esc(l)}</div>`); continue; }
      let cls = "", body;
      if (l.startsWith("@@")) { cls = "h"; cur.inHunk = true; body = esc(l); }
      else if (!cur.inHunk) { cls = "m"; body = esc(l); if (l.startsWith("GIT binary patch") || l.startsWith("Binary files")) cur.binary = true; }
      else if (l[0] === "+") { cls = "a"; cur.adds++; body = "+" + (budget-- > 0 ? highlight(l.slice(1), langOf(cur.path)) : esc(l.slice(1))); }
      else if (l[0] === "-") { cls = "d"; cur.dels++; body = "-" + (budget-- > 0 ? highlight(l.slice(1), langOf(cur.path)) : esc(l.slice(1))); }
      else if (l[0] === "\\") { cls = "m"; body = esc(l); }
      else { body = " " + (budget-- > 0 ? highlight(l.slice(1), langOf(cur.path)) : esc(l.slice(1))); }
      cur.lines.push(`<div class="l ${cls}">${body}</div>`);
    }
    return filesOut
      .map((f) => `<details class="diff" open data-file="${attr(f.path)}"><summary>${esc(f.path)} <span class="add">+${f.adds}</span> <span class="del">−${f.dels}</span>${f.binary ? ' <span class="tag">binary</span>' : ""}</summary>${f.lines.join("")}</details>`)
      .join("");
  }

  // ---- drawing and events ------------------------------------------------------------------------------
  let drawnHash = null;
  function render() {
    drawnHash = location.hash;
    readHash();
    renderFilters();
    const list = visible();
    const draw = { tasks: renderTable, matrix: renderMatrix, timeline: renderTimeline }[state.tab] || renderTable;
    $("#list").innerHTML = draw(list);
    renderDetail();
    if (!document.body.dataset.ready) performance.mark("sbx-ready");
    document.body.dataset.ready = "1";
  }

  document.addEventListener("click", (ev) => {
    const el = ev.target.closest("[data-status],[data-clear],[data-tab],[data-view],[data-close],[data-sort],td.cell,[data-task]");
    if (!el || ev.target.closest("a")) return;
    if (el.dataset.status !== undefined) go({ status: el.dataset.status });
    else if (el.dataset.clear) go({ [el.dataset.clear]: "" });
    else if (el.dataset.tab) go({ tab: el.dataset.tab });
    else if (el.dataset.view) go({ view: el.dataset.view });
    else if (el.dataset.close) go({ task: "" }, true);
    else if (el.dataset.sort) {
      const k = el.dataset.sort;
      go({ sort: state.sort === k ? "-" + k : state.sort === "-" + k ? "" : k });
    } else if (el.matches("td.cell") && !el.dataset.task) go({ agent: el.dataset.agent, provider: el.dataset.provider, tab: "tasks" });
    else if (el.dataset.task) go({ task: el.dataset.task }, true);
  });
  $("#q").addEventListener("input", (ev) => go({ q: ev.target.value }));
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && state.task) go({ task: "" }, true);
  });
  window.addEventListener("hashchange", () => {
    if (location.hash !== drawnHash) render();
  });
  renderHead();
  render();
})();
