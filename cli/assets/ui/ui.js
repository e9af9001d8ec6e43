// sbx ui: the sandboxes, and per sandbox its sessions (events live over server-sent events, permission
// prompts), files, processes and a terminal. Everything goes through this page's own server
// (/api/…), which holds the runtimes' tokens. The view is in the URL's hash: a reload comes back to
// the same sandbox, tab and session, and replays the session's events from the start.
"use strict";
(() => {
  const CFG = JSON.parse(document.getElementById("sbx-ui").textContent);
  const RO = !!CFG.readOnly;
  const $ = (s) => document.querySelector(s);
  const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ESC[c]);
  const enc = encodeURIComponent;
  const TABS = RO ? ["sessions", "files", "processes"] : ["sessions", "files", "processes", "terminal"];
  let view = { sb: "", tab: "sessions", session: "", dir: "", process: "" };
  let events = null; // the open EventSource
  let term = null, socket = null;
  const seen = new Set();
  const pending = new Map();

  if (RO) $("#mode").textContent = "read-only";
  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    view = { sb: p.get("sb") || "", tab: p.get("tab") || "sessions", session: p.get("session") || "", dir: p.get("dir") || "", process: p.get("process") || "" };
    if (!TABS.includes(view.tab)) view.tab = "sessions";
  }
  function go(changes) {
    const next = Object.assign({}, view, changes);
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(next)) if (v && !(k === "tab" && v === "sessions")) p.set(k, v);
    location.hash = p.toString();
  }
  const api = (path) => `/api/sb/${enc(view.sb)}/v1${path}`;
  async function getJson(url) {
    const r = await fetch(url, { credentials: "same-origin" });
    if (!r.ok) throw new Error(`${r.status} ${await r.text()}`);
    return r.json();
  }
  async function post(url, body) {
    const r = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body || {}) });
    if (!r.ok) throw new Error(`${r.status} ${await r.text()}`);
    return r;
  }
  function age(s) {
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m";
    if (s < 86400) return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0");
    return Math.floor(s / 86400) + "d";
  }
  function status(msg, bad) {
    const el = $("#status");
    el.textContent = msg || "";
    el.className = bad ? "bad" : "note";
  }

  // ---- sandboxes ---------------------------------------------------------------------------------
  async function loadSandboxes() {
    try {
      const list = await getJson("/api/sandboxes");
      $("#sandboxes").innerHTML = list.length
        ? list
            .map(
              (s) =>
                (s.orphan
                  ? `<li class="orphan" title="made by sbx but not in this machine's state: no runtime token here (sbx gc removes orphans)">`
                  : `<li data-sandbox="${esc(s.name)}" class="${s.name === view.sb ? "sel" : ""}">`) +
                `<div class="name">${esc(s.name)}</div>` +
                `<div class="note">${esc(s.provider)} · ${esc(s.state || s.status)}${s.orphan ? " · orphan" : ""}${s.ageSecs != null ? " · " + esc(age(s.ageSecs)) : ""}</div></li>`,
            )
            .join("")
        : `<li class="note">No sandboxes: <code>sbx up</code> makes one.</li>`;
    } catch (e) {
      status("sandboxes: " + e.message, true);
    }
  }

  // ---- the chosen sandbox ------------------------------------------------------------------------
  function closeStreams() {
    if (events) events.close();
    events = null;
    if (socket) socket.close();
    socket = null;
    term = null;
  }
  function render() {
    readHash();
    closeStreams();
    for (const li of document.querySelectorAll("#sandboxes li[data-sandbox]")) li.classList.toggle("sel", li.dataset.sandbox === view.sb);
    if (!view.sb) return;
    const tabs = TABS.map((t) => `<button data-tab="${t}" aria-selected="${t === view.tab}">${t}</button>`).join("");
    $("#main").innerHTML = `<h2 class="path">${esc(view.sb)}</h2><div class="tabs">${tabs}</div><div id="pane"></div>`;
    ({ sessions, files, processes, terminal })[view.tab]().catch((e) => status(e.message, true));
  }

  // Sessions: the list, and the chosen one's events as they arrive, with its open prompts.
  async function sessions() {
    const got = await getJson(api("/sessions"));
    const list = Array.isArray(got) ? got : got.sessions || [];
    const rows = list
      .map((s) => `<tr data-session="${esc(s.id)}" class="${s.id === view.session ? "sel" : ""}"><td>${esc(s.id)}</td><td>${esc(s.agent)}</td><td>${esc(s.state || s.status || "")}${(s.pendingPermissions || []).length ? ' <span class="bad">· waiting for you</span>' : ""}</td></tr>`)
      .join("");
    $("#pane").innerHTML =
      `<div class="split"><div><table id="sessions"><thead><tr><th>session</th><th>agent</th><th>status</th></tr></thead><tbody>${rows || '<tr><td class="note" colspan="3">No sessions.</td></tr>'}</tbody></table></div>` +
      `<div>${view.session ? `<div id="prompts"></div><div id="events"></div><p class="note" id="live"></p>` : '<p class="note">Choose a session.</p>'}</div></div>`;
    if (view.session) follow(view.session);
  }

  function summary(e) {
    const x = e.data || {};
    switch (e.type) {
      case "item.delta": return x.delta;
      case "item.started": case "item.completed": {
        const parts = (x.content || []).map((p) => p.text || p.output || (p.name ? `${p.name} ${JSON.stringify(p.arguments)}` : p.path ? `${p.action} ${p.path}` : "")).filter(Boolean);
        return `${x.kind}${x.role ? " (" + x.role + ")" : ""} ${parts.join(" ")}`;
      }
      case "permission.requested": return `${x.title} [${x.kind}]`;
      case "permission.resolved": return `${x.decision} by ${x.by}`;
      case "question.requested": return x.question;
      case "turn.completed": return `${x.outcome} in ${x.durationMs} ms`;
      case "error": return `${x.code}: ${x.message}`;
      case "session.ended": return `${x.reason} (by ${x.terminatedBy})`;
      default: return x.turnId || x.agent || "";
    }
  }

  // The most event rows kept on the page; older ones are dropped from the view (the count says how
  // many), so a session of 100,000 events stays light. Deltas are appended to their item's row.
  const MAX_ROWS = 2000;
  // The most text one row shows (a streamed answer of 100,000 deltas is one row).
  const MAX_TEXT = 4000;
  const clip = (t) => (t.length > MAX_TEXT ? `${t.slice(0, MAX_TEXT / 2)} … (${t.length - MAX_TEXT} more characters) … ${t.slice(-MAX_TEXT / 2)}` : t);
  function follow(id) {
    seen.clear();
    pending.clear();
    let received = 0, last = 0, dropped = 0, ended = false, queued = [], scheduled = false;
    const rows = new Map(); // itemId → {span, text} of its row, for deltas
    // From the first event: a reload shows the whole session; the browser resumes a dropped
    // connection after the last event it got (Last-Event-ID), so nothing is missed or repeated.
    events = new EventSource(api(`/sessions/${enc(id)}/events/stream?offset=0`));
    const box = $("#events");
    const live = $("#live");
    function row(e) {
      const div = document.createElement("div");
      const failed = e.type === "turn.completed" && e.data && e.data.outcome !== "completed";
      div.className = `ev t-${e.type.replace(".", "-")}${failed ? " t-turn-failed" : ""}`;
      div.dataset.seq = e.sequence;
      div.dataset.type = e.type;
      div.innerHTML = `<span class="seq">${e.sequence}</span> <span class="ty">${esc(e.type)}</span> <span class="tx"></span>`;
      div.lastChild.textContent = clip(summary(e));
      if (e.type === "item.started") rows.set(e.data.itemId, { span: div.lastChild, text: div.lastChild.textContent });
      return div;
    }
    function flush() {
      scheduled = false;
      const stick = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
      const frag = document.createDocumentFragment();
      let prompted = false;
      const grown = new Set();
      for (const e of queued) {
        if (e.type === "item.delta" && rows.has(e.data.itemId)) {
          const r = rows.get(e.data.itemId);
          r.text += e.data.delta;
          grown.add(r);
          continue;
        }
        if (e.type === "item.completed") rows.delete(e.data.itemId);
        frag.appendChild(row(e));
        if (e.type === "permission.requested") pending.set(e.data.permissionId, e.data);
        if (e.type === "permission.resolved") pending.delete(e.data.permissionId);
        if (e.type === "question.requested") pending.set("q:" + e.data.questionId, e.data);
        if (e.type === "question.resolved") pending.delete("q:" + e.data.questionId);
        prompted = prompted || e.type.startsWith("permission.") || e.type.startsWith("question.");
      }
      queued = [];
      for (const r of grown) r.span.textContent = clip(r.text);
      box.appendChild(frag);
      while (box.childElementCount > MAX_ROWS) {
        box.firstElementChild.remove();
        dropped++;
      }
      if (stick) box.scrollTop = box.scrollHeight;
      if (prompted) prompts(id);
      live.dataset.count = seen.size;
      live.dataset.received = received;
      live.dataset.last = last;
      live.textContent = `${seen.size} events${dropped ? ` (the first ${dropped} rows are no longer shown)` : ""} · ${ended ? "session ended" : "live"}`;
    }
    events.addEventListener("event", (m) => {
      received++;
      const e = JSON.parse(m.data);
      if (seen.has(e.sequence)) return;
      seen.add(e.sequence);
      last = Math.max(last, e.sequence);
      queued.push(e);
      if (e.type === "session.ended") {
        ended = true;
        events.close();
      }
      if (!scheduled) {
        scheduled = true;
        setTimeout(flush, 30);
      }
    });
    events.onerror = () => { if (!ended && document.contains(live)) live.textContent = `${seen.size} events · reconnecting…`; };
  }

  function prompts(id) {
    const box = $("#prompts");
    if (!box) return;
    box.innerHTML = [...pending.entries()]
      .map(([k, p]) => {
        if (k.startsWith("q:")) {
          const opts = RO ? "" : (p.options || []).map((o) => `<button data-answer="${esc(o)}" data-question="${esc(p.questionId)}">${esc(o)}</button>`).join(" ");
          return `<div class="prompt"><div class="title">${esc(p.question)}</div>${opts}</div>`;
        }
        const buttons = RO
          ? `<span class="note">read-only: answer it elsewhere</span>`
          : `<button class="allow" data-permission="${esc(p.permissionId)}" data-decision="allow">Allow</button> ` +
            `<button data-permission="${esc(p.permissionId)}" data-decision="allow_always">Always allow ${esc(p.toolName)}</button> ` +
            `<button class="deny" data-permission="${esc(p.permissionId)}" data-decision="deny">Deny</button>`;
        return `<div class="prompt" data-prompt="${esc(p.permissionId)}"><div class="title">${esc(p.title)}</div><pre class="box">${esc(JSON.stringify(p.input, null, 2))}</pre><p>${buttons}</p></div>`;
      })
      .join("");
  }

  // Files: a directory's entries; a file downloads; an upload goes into the directory shown.
  async function files() {
    const list = await getJson(api(`/fs/entries?path=${enc(view.dir || ".")}`));
    const up = list.path.replace(/\/[^/]*$/, "") || "/";
    const rows = list.entries.map((e) => {
      const p = list.path.replace(/\/$/, "") + "/" + e.name;
      const name = e.type === "dir" ? `<a data-dir="${esc(p)}" href="#">${esc(e.name)}/</a>` : `<a href="${esc(api(`/fs/file?path=${enc(p)}`))}" download="${esc(e.name)}">${esc(e.name)}</a>`;
      return `<tr data-entry="${esc(e.name)}"><td>${name}</td><td class="num">${e.type === "dir" ? "" : esc(e.size)}</td><td>${esc(e.type)}</td><td class="note">${e.modified ? esc(new Date(e.modified).toISOString().replace("T", " ").slice(0, 19)) : ""}</td></tr>`;
    });
    const upload = RO ? "" : `<label class="note">upload into this directory: <input type="file" id="upload" multiple></label>`;
    $("#pane").innerHTML =
      `<p class="path">${esc(list.path)} ${list.path !== "/" ? `<a href="#" data-dir="${esc(up)}">(up)</a>` : ""}</p>${upload}` +
      `<table id="files"><thead><tr><th>name</th><th class="num">bytes</th><th>type</th><th>modified (UTC)</th></tr></thead><tbody>${rows.join("")}</tbody></table>`;
    const input = $("#upload");
    if (input)
      input.addEventListener("change", async () => {
        for (const f of input.files) {
          const dest = list.path.replace(/\/$/, "") + "/" + f.name;
          const r = await fetch(api(`/fs/file?path=${enc(dest)}`), { method: "PUT", headers: { "content-type": "application/octet-stream" }, body: f });
          status(r.ok ? `uploaded ${f.name} (${f.size} bytes)` : `upload of ${f.name} failed: ${r.status} ${await r.text()}`, !r.ok);
        }
        files();
      });
  }

  // Processes: the runtime's managed processes, and one's logs (bytes shown as text).
  async function processes() {
    const got = await getJson(api("/processes"));
    const list = Array.isArray(got) ? got : got.processes || [];
    const rows = list.map(
      (p) => `<tr data-process="${esc(p.id)}" class="${p.id === view.process ? "sel" : ""}"><td>${esc(p.id)}</td><td>${esc(p.pid)}</td><td><code>${esc([p.command].concat(p.args || []).join(" "))}</code></td><td>${esc(p.status)}${p.exitCode != null ? " (" + esc(p.exitCode) + ")" : ""}</td></tr>`,
    );
    let logs = "";
    if (view.process) {
      const l = await getJson(api(`/processes/${enc(view.process)}/logs`));
      const dec = new TextDecoder();
      const text = l.entries.map((e) => dec.decode(Uint8Array.from(atob(e.dataBase64), (c) => c.charCodeAt(0)), { stream: true })).join("");
      logs = `<h3>${esc(view.process)} · ${esc(l.status)}${l.dropped ? " · older output dropped" : ""}</h3><pre class="box" id="logs">${esc(text)}</pre>`;
    }
    $("#pane").innerHTML = `<table id="processes"><thead><tr><th>id</th><th>pid</th><th>command</th><th>status</th></tr></thead><tbody>${rows.join("") || '<tr><td class="note" colspan="4">No managed processes.</td></tr>'}</tbody></table>${logs}`;
  }

  // Terminal: term.js on the runtime's PTY, through this server's WebSocket.
  async function terminal() {
    $("#pane").innerHTML = `<div id="term"></div><p class="note" id="term-state">connecting…</p>`;
    const cols = 100, rows = 28;
    term = new Terminal({ cols, rows, useStyle: true, screenKeys: false, cursorBlink: false });
    term.open($("#term"));
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/sb/${enc(view.sb)}/pty?cols=${cols}&rows=${rows}`);
    ws.binaryType = "arraybuffer";
    socket = ws;
    const dec = new TextDecoder();
    const encd = new TextEncoder();
    ws.onopen = () => { $("#term-state").textContent = "connected"; document.body.dataset.terminal = "open"; };
    ws.onmessage = (m) => { if (term) term.write(typeof m.data === "string" ? m.data : dec.decode(new Uint8Array(m.data), { stream: true })); };
    ws.onclose = () => { const s = $("#term-state"); if (s) s.textContent = "closed"; };
    term.on("data", (d) => { if (ws.readyState === 1) ws.send(encd.encode(d)); });
    term.focus();
  }

  // ---- events ------------------------------------------------------------------------------------
  document.addEventListener("click", async (ev) => {
    const el = ev.target.closest("[data-sandbox],[data-tab],[data-session],[data-dir],[data-process],[data-permission],[data-answer]");
    if (!el) return;
    if (el.dataset.dir !== undefined) ev.preventDefault();
    try {
      if (el.dataset.sandbox) go({ sb: el.dataset.sandbox, tab: "sessions", session: "", dir: "", process: "" });
      else if (el.dataset.tab) go({ tab: el.dataset.tab });
      else if (el.dataset.session) go({ session: el.dataset.session });
      else if (el.dataset.dir !== undefined) go({ dir: el.dataset.dir });
      else if (el.dataset.process) go({ process: el.dataset.process });
      else if (el.dataset.permission) {
        el.closest(".prompt").querySelectorAll("button").forEach((b) => (b.disabled = true));
        await post(api(`/sessions/${enc(view.session)}/permissions/${enc(el.dataset.permission)}`), { decision: el.dataset.decision });
      } else if (el.dataset.answer) {
        await post(api(`/sessions/${enc(view.session)}/questions/${enc(el.dataset.question)}`), { answer: el.dataset.answer });
      }
    } catch (e) {
      status(e.message, true);
    }
  });
  window.addEventListener("hashchange", render);
  loadSandboxes().then(() => {
    render();
    document.body.dataset.ready = "1";
  });
  setInterval(loadSandboxes, 5000);
})();
