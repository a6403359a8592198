# ruff: noqa: E501
"""The daemon's web UI: one self-contained page (no external assets, works offline).

It reads the live state from the server-sent events of ``/api/v1/events`` (read with ``fetch``, as
EventSource cannot send a header; polling ``/api/v1/torrents`` while that stream is down) and sends
every request with the bearer token, which it takes from the URL fragment (``/#token=...``, never sent
to the server in the URL) or asks for once and keeps in localStorage.
"""

FAVICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><rect width="64" height="64" rx="14" '
    'fill="#4f46e5"/><g fill="#fff"><circle cx="20" cy="22" r="6"/><circle cx="44" cy="22" r="6"/>'
    '<circle cx="32" cy="44" r="6"/></g><g stroke="#c7d2fe" stroke-width="3"><path d="M20 22L44 22M20 22'
    'L32 44M44 22L32 44"/></g></svg>'
)

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bitswarm</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<style>
:root{
  --bg:#f4f5f9; --panel:#fff; --ink:#1c1f2e; --muted:#6b7085; --line:#e4e6ef; --brand:#4f46e5;
  --brand-2:#6366f1; --ok:#10b981; --warn:#f59e0b; --err:#ef4444; --idle:#94a3b8; --chip:#eef0f7;
  --shadow:0 1px 2px rgba(16,24,40,.06),0 1px 3px rgba(16,24,40,.08);
  font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif;
  font-size:14px; color:var(--ink); background:var(--bg);
}
*{box-sizing:border-box}
body{margin:0;min-height:100vh}
button{font:inherit;cursor:pointer}
header{background:#15172b;color:#fff;display:flex;align-items:center;gap:24px;padding:0 24px;height:60px;
  position:sticky;top:0;z-index:5;box-shadow:0 2px 8px rgba(0,0,0,.2)}
.logo{display:flex;align-items:center;gap:10px;font-weight:700;font-size:18px;letter-spacing:.2px}
.logo svg{width:28px;height:28px}
.gstats{display:flex;gap:18px;margin-left:auto;color:#c7cae0;font-variant-numeric:tabular-nums}
.gstats b{color:#fff;font-weight:600}
.gstats .down b{color:#7dd3fc}.gstats .up b{color:#86efac}
.btn{border:1px solid var(--line);background:var(--panel);color:var(--ink);border-radius:8px;padding:7px 14px;
  display:inline-flex;align-items:center;gap:6px;transition:background .12s,border-color .12s}
.btn:hover{background:#f7f7fb;border-color:#d3d6e4}
.btn.primary{background:var(--brand);border-color:var(--brand);color:#fff;font-weight:600}
.btn.primary:hover{background:var(--brand-2)}
.btn.danger{color:var(--err)}
.btn.danger.solid{background:var(--err);color:#fff;border-color:var(--err)}
.btn.small{padding:4px 10px;font-size:13px}
main{max-width:1180px;margin:0 auto;padding:22px 24px 60px}
.toolbar{display:flex;align-items:center;gap:10px;margin-bottom:14px}
.tabs{display:flex;gap:4px;background:var(--chip);padding:3px;border-radius:10px}
.tab{border:0;background:transparent;padding:6px 14px;border-radius:8px;color:var(--muted);font-weight:500}
.tab.on{background:var(--panel);color:var(--ink);box-shadow:var(--shadow)}
.tab .n{display:inline-block;min-width:18px;margin-left:4px;color:var(--muted);font-size:12px}
.tab .n:empty{display:none}
.search{margin-left:auto;border:1px solid var(--line);border-radius:8px;padding:7px 12px;width:220px;background:#fff}
.list{display:flex;flex-direction:column;gap:10px}
.row{background:var(--panel);border-radius:12px;box-shadow:var(--shadow);padding:14px 18px;display:grid;
  grid-template-columns:1fr auto;gap:6px 18px;cursor:pointer;border:1px solid transparent;transition:border-color .12s}
.row:hover{border-color:#d9dcf0}
.row.sel{border-color:var(--brand)}
.name{font-weight:600;font-size:15px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.meta{color:var(--muted);font-size:13px;display:flex;gap:16px;flex-wrap:wrap;font-variant-numeric:tabular-nums}
.meta .down{color:#0284c7}.meta .up{color:#059669}
.actions{grid-row:1/span 3;grid-column:2;display:flex;align-items:center;gap:6px}
.bar{height:8px;background:#eceef5;border-radius:99px;overflow:hidden;position:relative}
.bar>i{display:block;height:100%;width:0;background:linear-gradient(90deg,var(--brand),var(--brand-2));
  border-radius:99px;transition:width .6s ease}
.row[data-state=seeding] .bar>i{background:linear-gradient(90deg,#059669,var(--ok))}
.row[data-state=paused] .bar>i,.row[data-state=stopped] .bar>i{background:var(--idle)}
.row[data-state=error] .bar>i{background:var(--err)}
.row[data-state=checking] .bar>i,.row[data-state=queued] .bar>i,.row[data-state=metadata] .bar>i,.row[data-state=moving] .bar>i{background:var(--warn)}
.badge{display:inline-block;padding:1px 8px;border-radius:99px;font-size:12px;font-weight:600;background:var(--chip);
  color:var(--muted);text-transform:capitalize}
.badge.downloading{background:#e0e7ff;color:#4338ca}.badge.seeding{background:#d1fae5;color:#047857}
.badge.paused,.badge.stopped{background:#f1f5f9;color:#64748b}.badge.error{background:#fee2e2;color:#b91c1c}
.badge.checking,.badge.queued,.badge.metadata,.badge.moving{background:#fef3c7;color:#b45309}
.pct{font-weight:600;color:var(--ink)}
.empty{text-align:center;color:var(--muted);padding:70px 20px;background:var(--panel);border-radius:12px;
  box-shadow:var(--shadow)}
.empty h2{color:var(--ink);margin:0 0 6px;font-size:18px}
.icon{width:16px;height:16px;display:inline-block;vertical-align:-3px}
/* detail panel */
.drawer{position:fixed;top:60px;right:0;bottom:0;width:min(560px,100vw);background:var(--panel);
  box-shadow:-6px 0 24px rgba(16,24,40,.12);transform:translateX(105%);transition:transform .2s ease;z-index:4;
  display:flex;flex-direction:column}
.drawer.open{transform:none}
.dhead{padding:18px 22px 10px;border-bottom:1px solid var(--line)}
.dhead h2{margin:0 0 6px;font-size:17px;word-break:break-all}
.dhead .close{float:right;border:0;background:none;font-size:22px;color:var(--muted);line-height:1}
.dtabs{display:flex;gap:2px;padding:0 18px;border-bottom:1px solid var(--line)}
.dtab{border:0;background:none;padding:10px 12px;color:var(--muted);border-bottom:2px solid transparent;font-weight:500}
.dtab.on{color:var(--brand);border-bottom-color:var(--brand)}
.dbody{padding:16px 22px;overflow:auto;flex:1}
table{width:100%;border-collapse:collapse;font-size:13px}
th{text-align:left;color:var(--muted);font-weight:500;padding:6px 8px;border-bottom:1px solid var(--line)}
td{padding:7px 8px;border-bottom:1px solid #f1f2f7;vertical-align:middle;font-variant-numeric:tabular-nums}
td.path{word-break:break-all}
.mini{height:5px;background:#eceef5;border-radius:9px;overflow:hidden;width:80px}
.mini>i{display:block;height:100%;background:var(--brand)}
.play{color:var(--brand);text-decoration:none;font-weight:600}
.kv{display:grid;grid-template-columns:140px 1fr;gap:8px 12px;font-size:13px}
.kv dt{color:var(--muted)}.kv dd{margin:0;word-break:break-all}
canvas.pieces{width:100%;height:80px;border-radius:6px;background:#eceef5;image-rendering:pixelated}
select.prio{border:1px solid var(--line);border-radius:6px;padding:2px 4px;background:#fff;font-size:12px}
/* dialogs */
dialog{border:0;border-radius:14px;padding:0;width:min(520px,94vw);box-shadow:0 20px 50px rgba(0,0,0,.25)}
dialog::backdrop{background:rgba(15,17,35,.45)}
dialog form{padding:22px 24px}
dialog h3{margin:0 0 14px;font-size:17px}
label.f{display:block;font-size:13px;color:var(--muted);margin:12px 0 5px}
input[type=text],input[type=password]{width:100%;border:1px solid var(--line);border-radius:8px;padding:9px 11px;font:inherit}
input:focus,.search:focus{outline:2px solid #c7d2fe;border-color:var(--brand)}
.drop{border:2px dashed #cfd3e6;border-radius:10px;padding:20px;text-align:center;color:var(--muted);cursor:pointer}
.drop.over{border-color:var(--brand);background:#eef2ff}
.drop b{color:var(--brand)}
.or{text-align:center;color:var(--muted);margin:10px 0 0;font-size:12px}
.dfoot{display:flex;justify-content:flex-end;gap:8px;margin-top:20px;align-items:center}
.dfoot .check{margin-right:auto;color:var(--muted);font-size:13px}
.err{color:var(--err);font-size:13px;min-height:18px;margin-top:10px}
.toast{position:fixed;left:50%;bottom:24px;transform:translateX(-50%);background:#15172b;color:#fff;
  padding:10px 18px;border-radius:10px;box-shadow:0 8px 24px rgba(0,0,0,.25);opacity:0;transition:opacity .2s;z-index:20}
.toast.show{opacity:1}
.conn{width:8px;height:8px;border-radius:50%;background:var(--idle);display:inline-block}
.conn.live{background:var(--ok);box-shadow:0 0 0 3px rgba(16,185,129,.2)}
</style>
</head>
<body>
<header>
  <div class="logo"><svg viewBox="0 0 64 64"><rect width="64" height="64" rx="14" fill="#4f46e5"/><g stroke="#c7d2fe"
  stroke-width="3"><path d="M20 22L44 22M20 22L32 44M44 22L32 44"/></g><g fill="#fff"><circle cx="20" cy="22" r="6"/>
  <circle cx="44" cy="22" r="6"/><circle cx="32" cy="44" r="6"/></g></svg>bitswarm</div>
  <div class="gstats">
    <span class="down">&darr; <b id="g-down">0 B/s</b></span>
    <span class="up">&uarr; <b id="g-up">0 B/s</b></span>
    <span><b id="g-count">0</b> torrents</span>
    <span><b id="g-peers">0</b> peers</span>
    <span title="live updates"><i class="conn" id="conn"></i></span>
  </div>
  <button class="btn primary" id="add-btn">+ Add torrent</button>
</header>
<main>
  <div class="toolbar">
    <div class="tabs" id="tabs">
      <button class="tab on" data-f="all">All<span class="n" id="n-all"></span></button>
      <button class="tab" data-f="downloading">Downloading<span class="n" id="n-downloading"></span></button>
      <button class="tab" data-f="seeding">Seeding<span class="n" id="n-seeding"></span></button>
      <button class="tab" data-f="paused">Paused<span class="n" id="n-paused"></span></button>
    </div>
    <input class="search" id="search" placeholder="Filter by name" autocomplete="off">
  </div>
  <div class="list" id="list"></div>
  <div class="empty" id="empty" hidden><h2>No torrents yet</h2>Add a .torrent file or a magnet link to start.<br><br>
    <button class="btn primary" onclick="openAdd()">+ Add torrent</button></div>
</main>

<aside class="drawer" id="drawer">
  <div class="dhead"><button class="close" id="d-close" title="Close">&times;</button><h2 id="d-name"></h2>
    <div class="meta" id="d-meta"></div></div>
  <div class="dtabs" id="dtabs">
    <button class="dtab on" data-t="files">Files</button><button class="dtab" data-t="peers">Peers</button>
    <button class="dtab" data-t="trackers">Trackers</button><button class="dtab" data-t="pieces">Pieces</button>
    <button class="dtab" data-t="info">Info</button></div>
  <div class="dbody" id="d-body"></div>
</aside>

<dialog id="add-dlg"><form method="dialog" id="add-form">
  <h3>Add torrent</h3>
  <div class="drop" id="drop"><input type="file" id="file" accept=".torrent,application/x-bittorrent" hidden>
    Drop a <b>.torrent</b> file here or <b>browse</b><div id="file-name" style="margin-top:6px;color:var(--ink)"></div></div>
  <div class="or">or</div>
  <label class="f" for="magnet">Magnet link</label><input type="text" id="magnet" placeholder="magnet:?xt=urn:btih:...">
  <label class="f" for="save">Save to (optional)</label><input type="text" id="save" placeholder="default download folder">
  <label class="f" for="peers">Peers (optional, host:port, comma separated)</label><input type="text" id="peers">
  <div class="err" id="add-err"></div>
  <div class="dfoot"><label class="check"><input type="checkbox" id="start-paused"> Start paused</label>
    <button class="btn" value="cancel" formnovalidate>Cancel</button>
    <button class="btn primary" id="add-go" value="default">Add</button></div>
</form></dialog>

<dialog id="rm-dlg"><form method="dialog">
  <h3>Remove torrent?</h3><div id="rm-name" style="word-break:break-all"></div>
  <div class="dfoot"><label class="check"><input type="checkbox" id="rm-data"> Also delete the downloaded files</label>
    <button class="btn" value="cancel">Cancel</button><button class="btn danger solid" id="rm-go" value="ok">Remove</button></div>
</form></dialog>

<dialog id="tok-dlg"><form method="dialog">
  <h3>Control token</h3><div style="color:var(--muted);font-size:13px">The daemon needs its token
  (in <code>DATA_DIR/token</code>, or printed by <code>bitswarm daemon</code>).</div>
  <label class="f" for="tok">Token</label><input type="password" id="tok" autocomplete="off">
  <div class="dfoot"><button class="btn" value="cancel">Cancel</button><button class="btn primary" value="ok">Save</button></div>
</form></dialog>
<div class="toast" id="toast"></div>

<script>
"use strict";
const $ = (id) => document.getElementById(id);
const API = "/api/v1";
let torrents = [], filter = "all", selected = null, dtab = "files", detail = null;
const rows = new Map();

// token: from the URL fragment once, then localStorage
(function () {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) { localStorage.setItem("bitswarm-token", decodeURIComponent(m[1])); history.replaceState(null, "", location.pathname); }
})();
const token = () => localStorage.getItem("bitswarm-token") || "";
const auth = () => ({ Authorization: "Bearer " + token() });  // every API request needs the token

function fmtBytes(n) {
  if (n == null) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0) : n.toFixed(0)) + " " + u[i];
}
const fmtRate = (r) => fmtBytes(r || 0) + "/s";
function fmtEta(s) {
  if (s == null) return "∞"; if (s <= 0) return "–";
  s = Math.round(s); const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return d ? d + "d " + h + "h" : h ? h + "h " + m + "m" : m ? m + "m " + (s % 60) + "s" : s + "s";
}
const pct = (p) => (Math.floor((p || 0) * 1000) / 10).toFixed(1) + " %";
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

function toast(msg) { const t = $("toast"); t.textContent = msg; t.classList.add("show"); clearTimeout(t._h); t._h = setTimeout(() => t.classList.remove("show"), 3500); }

async function call(method, path, body, isForm) {
  const headers = auth();
  if (body && !isForm) headers["Content-Type"] = "application/json";
  const r = await fetch(API + path, { method, headers, body: isForm ? body : body ? JSON.stringify(body) : undefined });
  let data = null; try { data = await r.json(); } catch (e) { }
  if (r.status === 401) { askToken(); throw new Error("the daemon needs its token"); }
  if (!r.ok) throw new Error((data && data.error && data.error.message) || ("HTTP " + r.status));
  return data;
}

function askToken() { if (!$("tok-dlg").open) { $("tok").value = token(); $("tok-dlg").showModal(); } }
$("tok-dlg").addEventListener("close", () => { if ($("tok-dlg").returnValue === "ok") { localStorage.setItem("bitswarm-token", $("tok").value.trim()); toast("Token saved"); } });

// ---- list -----------------------------------------------------------------------------------
const ICON = {
  pause: '<svg class="icon" viewBox="0 0 16 16"><rect x="3" y="2" width="3.5" height="12" rx="1" fill="currentColor"/><rect x="9.5" y="2" width="3.5" height="12" rx="1" fill="currentColor"/></svg>',
  resume: '<svg class="icon" viewBox="0 0 16 16"><path d="M4 2.5v11l9.5-5.5z" fill="currentColor"/></svg>',
  remove: '<svg class="icon" viewBox="0 0 16 16"><path d="M3 4h10M6 4V2.5h4V4M4.5 4l.7 9.5h5.6l.7-9.5" stroke="currentColor" stroke-width="1.5" fill="none" stroke-linecap="round"/></svg>',
};

function makeRow(t) {
  const el = document.createElement("div");
  el.className = "row"; el.dataset.id = t.id;
  el.innerHTML = '<div class="name"></div><div class="actions">' +
    '<button class="btn small" data-action="toggle"></button>' +
    '<button class="btn small danger" data-action="remove" title="Remove">' + ICON.remove + '</button></div>' +
    '<div class="bar"><i></i></div><div class="meta"><span class="badge"></span><span class="pct"></span>' +
    '<span class="size"></span><span class="down"></span><span class="up"></span><span class="peers"></span><span class="eta"></span></div>';
  el.addEventListener("click", (ev) => {
    const b = ev.target.closest("button");
    if (!b) { openDetail(t.id); return; }
    ev.stopPropagation();
    if (b.dataset.action === "toggle") toggle(el.dataset.id, b.dataset.op);
    else if (b.dataset.action === "remove") askRemove(el.dataset.id);
  });
  return el;
}

function updateRow(el, t) {
  el.dataset.state = t.state;
  el.querySelector(".name").textContent = t.name;
  el.querySelector(".name").title = t.name;
  const shown = t.state === "checking" && t.check_progress != null ? t.check_progress : t.progress;
  el.querySelector(".bar>i").style.width = (shown * 100).toFixed(2) + "%";
  const badge = el.querySelector(".badge"); badge.className = "badge " + t.state; badge.textContent = t.state;
  el.querySelector(".pct").textContent = pct(shown);
  el.querySelector(".size").textContent = !t.total_size && t.magnet ? "magnet link · waiting for metadata"
    : fmtBytes(t.done_size) + " of " + fmtBytes(t.wanted_size || t.total_size);
  const active = t.state === "downloading" || t.state === "seeding";
  el.querySelector(".down").textContent = active ? "↓ " + fmtRate(t.download_rate) : "";
  el.querySelector(".up").textContent = active ? "↑ " + fmtRate(t.upload_rate) : "";
  el.querySelector(".peers").textContent = active ? t.peers + (t.peers === 1 ? " peer" : " peers") : "";
  el.querySelector(".eta").textContent = t.state === "downloading" ? "ETA " + fmtEta(t.eta) : t.state === "error" ? (t.error || "") : "";
  const b = el.querySelector('[data-action="toggle"]');
  const op = t.paused ? "resume" : "pause";
  if (b.dataset.op !== op) { b.dataset.op = op; b.innerHTML = ICON[op] + (op === "pause" ? " Pause" : " Resume"); }
  el.classList.toggle("sel", t.id === selected);
}

function matches(t) {
  const q = $("search").value.trim().toLowerCase();
  if (q && !t.name.toLowerCase().includes(q)) return false;
  if (filter === "all") return true;
  if (filter === "paused") return t.state === "paused" || t.state === "stopped";
  if (filter === "downloading") return ["downloading", "checking", "queued", "metadata"].includes(t.state);
  return t.state === filter;
}

function render() {
  const list = $("list"), seen = new Set();
  for (const t of torrents) {
    seen.add(t.id);
    let el = rows.get(t.id);
    if (!el) { el = makeRow(t); rows.set(t.id, el); }
    updateRow(el, t);
    const show = matches(t);
    if (show && el.parentNode !== list) list.appendChild(el);
    if (!show && el.parentNode) el.remove();
  }
  for (const [id, el] of rows) if (!seen.has(id)) { el.remove(); rows.delete(id); }
  $("empty").hidden = torrents.length > 0;
  const c = (f) => torrents.filter((t) => { const o = filter; filter = f; const r = matches(t); filter = o; return r; }).length;
  for (const f of ["all", "downloading", "seeding", "paused"]) $("n-" + f).textContent = c(f) || "";
}

function setStats(s) {
  $("g-down").textContent = fmtRate(s.download_rate); $("g-up").textContent = fmtRate(s.upload_rate);
  $("g-count").textContent = s.torrents; $("g-peers").textContent = s.peers;
}

function applySnapshot(list, stats) {
  torrents = list; render(); if (stats) setStats(stats);
  if (selected) { if (!torrents.some((t) => t.id === selected)) closeDetail(); else refreshDetail(); }
}

// ---- live updates: server-sent events read with fetch (EventSource cannot send the token) -----
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
function onEvent(kind, data) {
  if (kind === "torrents") { const d = JSON.parse(data); applySnapshot(d.torrents, d.stats); $("conn").classList.add("live"); }
  else if (["added", "removed", "paused", "resumed", "started"].includes(kind)) refresh();
  else if (kind === "torrent_completed") { toast("Completed: " + JSON.parse(data).name); refresh(); }
}
async function connect() {
  for (;;) {
    try {
      const r = await fetch(API + "/events", { headers: auth() });
      if (r.status === 401) askToken();
      if (r.ok && r.body) {
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          for (let i; (i = buf.indexOf("\n\n")) >= 0; buf = buf.slice(i + 2)) {
            let kind = "message", data = "";
            for (const line of buf.slice(0, i).split("\n")) {
              if (line.startsWith("event: ")) kind = line.slice(7);
              else if (line.startsWith("data: ")) data += line.slice(6);
            }
            if (data) onEvent(kind, data);
          }
        }
      }
    } catch (e) { }
    $("conn").classList.remove("live");
    await sleep(2000); refresh();  // polled while the stream is down
  }
}
async function refresh() {
  try {
    const get = (path) => fetch(API + path, { headers: auth() }).then((r) => { if (r.status === 401) askToken(); return r.json(); });
    const [l, s] = await Promise.all([get("/torrents"), get("/stats")]);
    applySnapshot(l.torrents, s);
  } catch (e) { }
}

// ---- actions --------------------------------------------------------------------------------
async function toggle(id, op) {
  try { const t = await call("POST", "/torrents/" + id + "/" + op); patch(t); toast((op === "pause" ? "Paused " : "Resumed ") + t.name); }
  catch (e) { toast(e.message); }
}
function patch(t) { const i = torrents.findIndex((x) => x.id === t.id); if (i >= 0) torrents[i] = t; else torrents.push(t); render(); }
let removing = null;
function askRemove(id) {
  const t = torrents.find((x) => x.id === id); if (!t) return;
  removing = id; $("rm-name").textContent = t.name; $("rm-data").checked = false; $("rm-dlg").showModal();
}
$("rm-dlg").addEventListener("close", async () => {
  if ($("rm-dlg").returnValue !== "ok" || !removing) return;
  const id = removing; removing = null;
  try { await call("DELETE", "/torrents/" + id + "?delete_data=" + $("rm-data").checked); torrents = torrents.filter((t) => t.id !== id); render(); toast("Removed"); }
  catch (e) { toast(e.message); }
});

function openAdd() { $("add-err").textContent = ""; $("add-form").reset(); $("file-name").textContent = ""; pickedFile = null; $("add-dlg").showModal(); }
$("add-btn").onclick = openAdd;
let pickedFile = null;
$("drop").onclick = () => $("file").click();
$("file").onchange = () => { pickedFile = $("file").files[0] || null; $("file-name").textContent = pickedFile ? pickedFile.name : ""; };
$("drop").ondragover = (e) => { e.preventDefault(); $("drop").classList.add("over"); };
$("drop").ondragleave = () => $("drop").classList.remove("over");
$("drop").ondrop = (e) => { e.preventDefault(); $("drop").classList.remove("over"); pickedFile = e.dataTransfer.files[0] || null; $("file-name").textContent = pickedFile ? pickedFile.name : ""; };
$("add-go").onclick = async (e) => {
  e.preventDefault();
  const magnet = $("magnet").value.trim();
  if (!pickedFile && !magnet) { $("add-err").textContent = "Choose a .torrent file or paste a magnet link."; return; }
  const form = new FormData();
  if (pickedFile) form.append("torrent", pickedFile); else form.append("magnet", magnet);
  if ($("save").value.trim()) form.append("save_path", $("save").value.trim());
  if ($("peers").value.trim()) form.append("peers", $("peers").value.trim());
  form.append("paused", $("start-paused").checked ? "true" : "false");
  try { const t = await call("POST", "/torrents", form, true); patch(t); $("add-dlg").close(); toast("Added " + t.name); }
  catch (err) { $("add-err").textContent = err.message; }
};

// ---- tabs, search ---------------------------------------------------------------------------
$("tabs").onclick = (e) => { const b = e.target.closest(".tab"); if (!b) return; filter = b.dataset.f;
  for (const x of document.querySelectorAll(".tab")) x.classList.toggle("on", x === b); render(); };
$("search").oninput = render;

// ---- detail ---------------------------------------------------------------------------------
function openDetail(id) { selected = id; $("drawer").classList.add("open"); render(); refreshDetail(); }
function closeDetail() { selected = null; detail = null; $("drawer").classList.remove("open"); render(); }
$("d-close").onclick = closeDetail;
$("dtabs").onclick = (e) => { const b = e.target.closest(".dtab"); if (!b) return; dtab = b.dataset.t;
  for (const x of document.querySelectorAll(".dtab")) x.classList.toggle("on", x === b); drawDetail(); };
let loading = false;
async function refreshDetail() {
  if (!selected || loading) return; loading = true;
  try { const r = await fetch(API + "/torrents/" + selected, { headers: auth() }); if (r.ok) { detail = await r.json(); drawDetail(); } }
  finally { loading = false; }
}
function drawDetail() {
  const d = detail; if (!d) return;
  $("d-name").textContent = d.name;
  $("d-meta").innerHTML = '<span class="badge ' + d.state + '">' + d.state + '</span><span class="pct">' + pct(d.progress) +
    "</span><span>" + fmtBytes(d.total_size) + "</span><span>↓ " + fmtRate(d.download_rate) + "</span><span>↑ " + fmtRate(d.upload_rate) + "</span>";
  const body = $("d-body");
  if (dtab === "files") {
    if (body.querySelector("select:focus")) return;
    body.innerHTML = '<table><tr><th>File</th><th>Size</th><th>Done</th><th>Priority</th><th></th></tr>' + d.files.map((f) =>
      '<tr><td class="path">' + esc(f.path) + "</td><td>" + fmtBytes(f.length) + '</td><td><div class="mini"><i style="width:' +
      (f.progress * 100).toFixed(1) + '%"></i></div></td><td><select class="prio" data-i="' + f.index + '">' +
      [[0, "Skip"], [1, "Normal"], [4, "High"], [7, "Highest"]].map(([v, n]) => '<option value="' + v + '"' + (f.priority === v ? " selected" : "") + ">" + n + "</option>").join("") +
      "</select></td><td>" + (f.media && d.state !== "paused" && d.state !== "stopped" ? '<a class="play" target="_blank" href="' + f.stream_url + '">▶ Play</a>' : "") + "</td></tr>").join("") + "</table>" +
      (d.files.length ? "" : '<p style="color:var(--muted)">Waiting for the metadata…</p>');
    for (const s of body.querySelectorAll("select.prio")) s.onchange = async () => {
      const pr = d.files.map((f) => f.priority); pr[+s.dataset.i] = +s.value;
      try { detail = await call("PUT", "/torrents/" + d.id + "/priorities", { priorities: pr }); drawDetail(); toast("Priorities saved"); } catch (e) { toast(e.message); }
    };
  } else if (dtab === "peers") {
    body.innerHTML = d.peer_list.length ? '<table><tr><th>Address</th><th>Client</th><th>Transport</th><th>↓</th><th>↑</th><th></th></tr>' + d.peer_list.map((p) =>
      "<tr><td>" + esc(p.address) + "</td><td>" + esc(p.client || "") + "</td><td>" + esc((p.transport || "").split("+")[0]) +
      (p.encrypted ? " 🔒 RC4" : "") + "</td><td>" + fmtRate(p.download_rate) + "</td><td>" +
      fmtRate(p.upload_rate) + "</td><td>" + (p.seed ? '<span class="badge seeding">seed</span>' : "") + "</td></tr>").join("") + "</table>"
      : '<p style="color:var(--muted)">No connected peers.</p>';
  } else if (dtab === "trackers") {
    const when = (s) => (s ? new Date(s * 1000).toLocaleTimeString() : "–");
    const num = (n) => (n === null || n === undefined ? "–" : String(n));
    body.innerHTML = (d.waiting_reason ? '<p id="waiting" style="color:var(--muted);margin-top:0">' + esc(d.waiting_reason) + "</p>" : "") +
      (d.trackers.length ? "<table><tr><th>Tier</th><th>URL</th><th>Status</th><th>Peers</th><th>Seeds / leechers</th><th>Last announce</th><th>Next</th></tr>" +
      d.trackers.map((t) => "<tr><td>" + t.tier + '</td><td class="path">' + esc(t.url) + '</td><td class="tstatus">' +
        esc(t.status === "error" ? "error: " + (t.error || "") : t.status) + (t.warning ? " ⚠ " + esc(t.warning) : "") + "</td><td>" + num(t.peers) +
        "</td><td>" + num(t.seeders) + " / " + num(t.leechers) + "</td><td>" + when(t.last_announce) + "</td><td>" + when(t.next_announce) + "</td></tr>").join("") + "</table>"
      : '<p style="color:var(--muted)">No trackers (peers come from the DHT, PEX or were given directly).</p>');
  } else if (dtab === "pieces") {
    body.innerHTML = '<p style="color:var(--muted);margin-top:0">' + d.pieces_done + " of " + d.num_pieces + " pieces · " + fmtBytes(d.piece_length || 0) + ' each</p><canvas class="pieces" id="pc"></canvas>';
    drawPieces($("pc"), d);
  } else {
    const kv = [["Id", d.id], ["Save path", d.save_path], ["Size", fmtBytes(d.total_size)], ["Downloaded", fmtBytes(d.downloaded)],
      ["Uploaded", fmtBytes(d.uploaded)], ["Download limit", d.download_limit ? fmtRate(d.download_limit) : "unlimited"],
      ["Upload limit", d.upload_limit ? fmtRate(d.upload_limit) : "unlimited"], ["Added", new Date(d.added_at * 1000).toLocaleString()],
      ["Private", d.private ? "yes" : "no"], ["Magnet", d.magnet || ""]];
    body.innerHTML = '<dl class="kv">' + kv.map(([k, v]) => "<dt>" + k + "</dt><dd>" + esc(v) + "</dd>").join("") + "</dl>" +
      '<div style="margin-top:18px;display:flex;gap:8px"><button class="btn small" id="recheck">Verify data</button></div>';
    $("recheck").onclick = async () => { try { await call("POST", "/torrents/" + d.id + "/recheck"); toast("Verifying " + d.name); } catch (e) { toast(e.message); } };
  }
}
function drawPieces(cv, d) {
  const n = d.num_pieces, hex = d.pieces || ""; const w = cv.clientWidth || 500, h = 80;
  cv.width = w; cv.height = h; const g = cv.getContext("2d"); g.fillStyle = "#eceef5"; g.fillRect(0, 0, w, h);
  g.fillStyle = "#4f46e5";
  for (let x = 0; x < w; x++) {
    const a = Math.floor(x * n / w), b = Math.max(a + 1, Math.floor((x + 1) * n / w)); let have = 0;
    for (let i = a; i < b; i++) { const byte = parseInt(hex.substr((i >> 3) * 2, 2), 16) || 0; if (byte & (128 >> (i & 7))) have++; }
    if (have) { g.globalAlpha = 0.25 + 0.75 * have / (b - a); g.fillRect(x, 0, 1, h); }
  }
  g.globalAlpha = 1;
}
document.addEventListener("keydown", (e) => { if (e.key === "Escape" && selected && !document.querySelector("dialog[open]")) closeDetail(); });

refresh(); connect();
</script>
</body>
</html>
"""
