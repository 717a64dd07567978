// acp-relay web inbox. Plain JS, no framework, same-origin calls to the node's REST/SSE API.
// Everything that comes from peers is untrusted: it only ever reaches the page through
// textContent (never as HTML), and links are made only from http(s) URLs.
"use strict";

const state = {
  peers: [],
  messages: new Map(), // message_id -> message
  tasks: new Map(), // task id -> task
  lastSeq: 0,
  loaded: false,
  search: null, // {query, results}
};

const $ = (id) => document.getElementById(id);

// The token travelled in the address once; the node has put it in an HttpOnly cookie.
if (new URLSearchParams(location.search).has("access_token")) {
  history.replaceState(null, "", location.pathname);
}

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
  }
  for (const c of children) {
    if (c !== null && c !== undefined) e.append(c); // strings become text nodes
  }
  return e;
}

async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  let data = null;
  try { data = await resp.json(); } catch (_) { data = null; }
  if (resp.status === 401) showStatus("The node needs its API token: open this page as /?access_token=…", true);
  return { status: resp.status, data };
}

function showStatus(text, isError) {
  const s = $("form-status");
  s.textContent = text;
  s.classList.toggle("error", !!isError);
}

function errorText(r) {
  return (r.data && (r.data.error || r.data.message)) || "HTTP " + r.status;
}

// ---- data in ----

function msgTime(m) {
  if (typeof m.received_at === "number") return m.received_at * 1000;
  const t = Date.parse(m.ts || "");
  return Number.isFinite(t) ? t : Date.now();
}

function addMessage(m) {
  const id = m.message_id || m.id;
  if (!id || state.messages.has(id)) return false;
  state.messages.set(id, {
    id,
    role: m.role,
    parts: Array.isArray(m.parts) ? m.parts : [],
    context_id: m.context_id || null,
    task_id: m.task_id || null,
    direction: m.direction || "inbound",
    peer_id: m.peer_id || null,
    from: m.from || null,
    time: msgTime(m),
  });
  return true;
}

function addTask(t) {
  if (!t || !t.id) return;
  const old = state.tasks.get(t.id);
  if (old && (old.updated_at || "") > (t.updated_at || "")) return;
  state.tasks.set(t.id, t);
}

async function refreshTask(id) {
  const r = await api("GET", "/tasks/" + encodeURIComponent(id));
  if (r.status === 200 && r.data) { addTask(r.data); render(); }
}

async function loadPeers() {
  const r = await api("GET", "/peers");
  if (r.status === 200 && r.data) { state.peers = r.data.peers || []; renderPeers(); }
}

async function loadAll() {
  const [link, status, msgs, tasks] = await Promise.all([
    api("GET", "/link"), api("GET", "/status"),
    api("GET", "/messages?limit=100"), api("GET", "/tasks?limit=200"),
  ]);
  if (link.status === 200) $("link").value = link.data.link;
  if (status.status === 200) $("node-name").textContent = "· " + status.data.agent_name;
  if (msgs.status === 200) for (const m of msgs.data.messages || []) addMessage(m);
  if (tasks.status === 200) for (const t of tasks.data.tasks || []) addTask(t);
  await loadPeers();
  state.loaded = true;
  render();
}

function onEvent(raw) {
  let ev;
  try { ev = JSON.parse(raw.data); } catch (_) { return; }
  if (typeof ev.seq === "number") {
    if (ev.seq <= state.lastSeq) return;
    state.lastSeq = ev.seq;
  }
  switch (ev.type) {
    case "message":
      if (addMessage(ev)) {
        if (ev.direction === "inbound") announce(ev);
        if (ev.task_id && !state.tasks.has(ev.task_id)) refreshTask(ev.task_id);
        render();
      }
      break;
    case "status":
    case "artifact":
      refreshTask(ev.task_id);
      break;
    case "peer":
      loadPeers();
      break;
    default:
      break;
  }
}

function announce(ev) {
  const who = peerName(ev.peer_id) || ev.from || "a peer";
  const text = partsText(ev.parts).slice(0, 140);
  $("announce").textContent = "New message from " + who + ": " + text;
}

function connectStream() {
  const es = new EventSource("/stream");
  es.onopen = () => {
    $("live-state").textContent = "live";
    // Subscribed from here on: what we load now and what streams in overlap, never miss.
    if (!state.loaded) loadAll();
  };
  es.onerror = () => { $("live-state").textContent = "reconnecting…"; };
  es.onmessage = onEvent;
  es.addEventListener("acp.task.status", onEvent);
  es.addEventListener("acp.task.artifact", onEvent);
}

// ---- rendering ----

function peerName(id) {
  const p = state.peers.find((x) => x.id === id);
  return p ? (p.agent_name || p.name || p.id) : null;
}

function partsText(parts) {
  return (parts || []).map((p) => {
    if (!p) return "";
    if (p.type === "text") return String(p.content ?? "");
    if (p.type === "data") return JSON.stringify(p.content);
    if (p.type === "file") return String(p.name || p.url || "");
    return "";
  }).join(" ");
}

function safeUrl(u) {
  try {
    const url = new URL(String(u), location.href);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch (_) { return null; }
}

function renderParts(parts) {
  const frag = document.createDocumentFragment();
  for (const p of parts || []) {
    if (p && p.type === "text") {
      frag.append(el("div", { class: "text", text: String(p.content ?? "") }));
    } else if (p && p.type === "data") {
      frag.append(el("pre", { class: "data", text: JSON.stringify(p.content, null, 2) }));
    } else if (p && p.type === "file") {
      const href = safeUrl(p.url);
      const label = "file: " + String(p.name || p.url || "");
      frag.append(el("div", { class: "file" }, href
        ? el("a", { href, rel: "noopener noreferrer nofollow", target: "_blank", text: label })
        : el("span", { text: label })));
    } else {
      frag.append(el("pre", { class: "data", text: JSON.stringify(p, null, 2) }));
    }
  }
  return frag;
}

function renderMessage(m) {
  const who = m.direction === "outbound"
    ? "me → " + (peerName(m.peer_id) || m.peer_id || "?")
    : (peerName(m.peer_id) || m.from || m.peer_id || "?");
  const when = new Date(m.time);
  return el("li", { class: "msg " + m.direction, "data-id": m.id },
    el("div", { class: "meta" },
      el("span", { class: "who", text: who }), " · ",
      el("time", { datetime: when.toISOString(), text: when.toLocaleString() }),
      m.task_id ? " · task " + m.task_id : null),
    renderParts(m.parts));
}

const TERMINAL = ["completed", "failed", "canceled"];
const SETTABLE = ["working", "input_required", "completed", "failed"];

function renderTask(t) {
  const payload = t.payload || {};
  const box = el("article", { class: "task", "data-task": t.id, "aria-label": "task " + t.id },
    el("div", { class: "meta" },
      "task ", el("code", { text: t.id }), " · ",
      el("span", { class: "state", text: t.status }),
      t.peer_id ? " · " + (t.from_peer ? "from " : "for ") + (peerName(t.peer_id) || t.peer_id) : null),
    renderParts(payload.parts));
  if (t.error !== undefined && t.error !== null) {
    box.append(el("div", { class: "meta", text: "error: " + JSON.stringify(t.error) }));
  }
  for (const a of t.artifacts || []) {
    box.append(el("div", { class: "meta", text: "artifact:" }), renderParts(a && a.parts));
  }
  if (!TERMINAL.includes(t.status) && t.status !== "cancelling") {
    const sel = el("select", { id: "state-" + t.id, "aria-label": "new state for task " + t.id });
    for (const s of SETTABLE) sel.append(el("option", { value: s, text: s }));
    const art = el("input", { id: "art-" + t.id, placeholder: "artifact text (optional)", "aria-label": "artifact for task " + t.id });
    box.append(el("div", { class: "actions" }, sel, art,
      el("button", { type: "button", id: "upd-" + t.id, onclick: () => updateTask(t.id, sel.value, art.value) }, "Update"),
      el("button", { type: "button", id: "cancel-" + t.id, onclick: () => cancelTask(t.id) }, "Cancel task")));
  }
  return box;
}

function conversations() {
  const groups = new Map();
  const group = (key) => {
    if (!groups.has(key)) groups.set(key, { key, messages: [], tasks: [], newest: 0 });
    return groups.get(key);
  };
  for (const m of state.messages.values()) {
    const g = group(m.context_id || "");
    g.messages.push(m);
    g.newest = Math.max(g.newest, m.time);
  }
  for (const t of state.tasks.values()) {
    const g = group(t.context_id || "");
    g.tasks.push(t);
    const u = Date.parse(t.updated_at || "");
    if (Number.isFinite(u)) g.newest = Math.max(g.newest, u);
  }
  return [...groups.values()].sort((a, b) => b.newest - a.newest);
}

let scheduled = false;
function render() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => { scheduled = false; renderNow(); });
}

function renderNow() {
  const focused = document.activeElement && document.activeElement.id;
  const list = $("contexts-list");
  const groups = conversations();
  const frag = document.createDocumentFragment();
  const datalist = $("contexts");
  datalist.replaceChildren();
  for (const g of groups) {
    if (g.key) datalist.append(el("option", { value: g.key }));
    g.messages.sort((a, b) => a.time - b.time);
    const title = g.key ? "context " + g.key : "no context";
    const sec = el("section", { class: "context", "aria-label": title, "data-context": g.key },
      el("h3", { text: title }));
    if (g.tasks.length) {
      for (const t of g.tasks.sort((a, b) => (a.created_at || "").localeCompare(b.created_at || ""))) sec.append(renderTask(t));
    }
    const ol = el("ol", { class: "messages" });
    for (const m of g.messages) ol.append(renderMessage(m));
    sec.append(ol);
    frag.append(sec);
  }
  if (!groups.length) frag.append(el("p", { class: "muted", text: "No messages yet. Share the link above with another agent." }));
  list.replaceChildren(frag);
  if (state.search) renderResults();
  if (focused) { const f = $(focused); if (f && f !== document.activeElement) f.focus(); }
}

function renderPeers() {
  const ul = $("peers");
  ul.replaceChildren();
  const sel = $("send-peer");
  const chosen = sel.value;
  sel.replaceChildren();
  if (!state.peers.length) ul.append(el("li", { class: "muted", text: "no peers yet" }));
  for (const p of state.peers) {
    const name = p.agent_name || p.name || p.id;
    const verified = p.verified === true;
    // An A2A agent has no ACP key to verify: it is shown by its protocol and address.
    const a2a = p.kind === "a2a";
    ul.append(el("li", { "data-peer": p.id, "data-kind": a2a ? "a2a" : "acp" },
      el("span", { class: p.connected ? "dot on" : "dot", "aria-hidden": "true" }),
      el("strong", { text: name }),
      el("span", { class: "badge", text: p.connected ? "connected" : "offline" }),
      a2a ? el("span", { class: "badge", text: "A2A", title: "an agent that speaks A2A" })
        : el("span", { class: verified ? "badge ok" : "badge bad", text: verified ? "verified" : "not verified" }),
      a2a ? (p.link ? el("div", { class: "did", text: p.link }) : null)
        : (p.did ? el("div", { class: "did", text: p.did }) : null)));
    sel.append(el("option", { value: p.id, text: name + (p.connected ? "" : " (offline)") }));
  }
  if (chosen && state.peers.some((p) => p.id === chosen)) sel.value = chosen;
  render();
}

// ---- search ----

async function runSearch(q) {
  // The node's full-text search (words, "phrases", prefix*, OR, -exclusions), newest first.
  const r = await api("GET", "/messages?limit=100&q=" + encodeURIComponent(q));
  if (r.status !== 200 || !r.data) {
    showStatus("search failed: " + errorText(r), true);
    return;
  }
  const results = [];
  for (const raw of r.data.messages || []) {
    const id = raw.message_id || raw.id;
    addMessage(raw);
    const m = state.messages.get(id);
    if (m) results.push(m);
  }
  state.search = { query: q, results };
  renderResults();
  render();
}

function renderResults() {
  const s = state.search;
  $("results").hidden = !s;
  if (!s) return;
  $("results-title").textContent = s.results.length + " result" + (s.results.length === 1 ? "" : "s") + " for " + JSON.stringify(s.query);
  $("result-list").replaceChildren(...s.results.map(renderMessage));
}

// ---- actions ----

async function updateTask(id, status, artifactText) {
  const body = { status };
  if (artifactText) body.artifact = { parts: [{ type: "text", content: artifactText }] };
  const r = await api("POST", "/tasks/" + encodeURIComponent(id) + ":update", body);
  showStatus(r.status === 200 ? "task " + id + ": " + status : "update failed: " + errorText(r), r.status !== 200);
  if (r.status === 200) { addTask(r.data.task); render(); }
}

async function cancelTask(id) {
  const r = await api("POST", "/tasks/" + encodeURIComponent(id) + ":cancel", {});
  showStatus(r.status === 200 ? "task " + id + ": cancelling" : "cancel failed: " + errorText(r), r.status !== 200);
  if (r.status === 200) { addTask(r.data.task); render(); }
}

function wire() {
  $("copy-link").addEventListener("click", async () => {
    const link = $("link");
    try {
      await navigator.clipboard.writeText(link.value);
      $("copy-status").textContent = "copied";
    } catch (_) {
      link.select();
      $("copy-status").textContent = "selected: press Ctrl+C";
    }
  });
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = $("search").value.trim();
    if (q) runSearch(q); else { state.search = null; renderResults(); }
  });
  $("search-clear").addEventListener("click", () => {
    $("search").value = "";
    state.search = null;
    renderResults();
  });
  $("connect-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const link = $("connect-link").value.trim();
    const r = await api("POST", "/peers/connect", { link });
    if (r.status === 200) { $("connect-link").value = ""; showStatus("connecting to " + r.data.peer_id + "…"); loadPeers(); }
    else showStatus("connect failed: " + errorText(r), true);
  });
  $("send-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("send-text").value;
    if (!text.trim()) return;
    const body = { role: "user", text };
    if ($("send-peer").value) body.peer_id = $("send-peer").value;
    if ($("send-context").value.trim()) body.context_id = $("send-context").value.trim();
    const r = await api("POST", "/message:send", body);
    if (r.status === 200 || (r.data && r.data.queued)) {
      $("send-text").value = "";
      showStatus(r.status === 200 ? "sent" : "peer offline: queued, it goes out when the peer is back");
    } else showStatus("send failed: " + errorText(r), true);
  });
  $("send-text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("send-form").requestSubmit();
  });
  $("task-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("task-text").value;
    if (!text.trim()) return;
    const body = { role: "user", parts: [{ type: "text", content: text }] };
    if ($("send-peer").value) body.peer_id = $("send-peer").value;
    if ($("send-context").value.trim()) body.context_id = $("send-context").value.trim();
    if ($("task-delegate").checked) body.delegate = true;
    const r = await api("POST", "/tasks", body);
    if (r.status === 201) { $("task-text").value = ""; addTask(r.data.task); render(); showStatus("task " + r.data.task_id + " created"); }
    else showStatus("task failed: " + errorText(r), true);
  });
}

wire();
connectStream();
