"use strict";
// The torrent list (sortable, filtered by state, category, tag and name), the detail drawer (files,
// peers, trackers, piece map, info with category, tags, queue, seeding goals and super-seeding), add and
// remove.
let torrents = [], filter = "all", selected = null, dtab = "files", detail = null;
let sortKey = localStorage.getItem("bitswarm-sort") || "queue", sortDir = +(localStorage.getItem("bitswarm-sort-dir") || 1);
let categories = {}, catFilter = "*", tagFilter = "*";
const rows = new Map();

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
    '<span class="size"></span><span class="down"></span><span class="up"></span><span class="peers"></span><span class="eta"></span>' +
    '<span class="qpos"></span><span class="cat"></span><span class="tags"></span></div>';
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
  el.querySelector(".qpos").textContent = t.state === "queued" ? "#" + (t.queue_position + 1) + " in queue" : "";
  const cat = el.querySelector(".cat"); cat.textContent = t.category || ""; cat.className = t.category ? "cat chip" : "cat";
  el.querySelector(".tags").textContent = (t.tags || []).map((x) => "#" + x).join(" ");
  const b = el.querySelector('[data-action="toggle"]');
  const op = t.paused ? "resume" : "pause";
  if (b.dataset.op !== op) { b.dataset.op = op; b.innerHTML = ICON[op] + (op === "pause" ? " Pause" : " Resume"); }
  el.classList.toggle("sel", t.id === selected);
}

function matches(t) {
  const q = $("search").value.trim().toLowerCase();
  if (q && !t.name.toLowerCase().includes(q)) return false;
  if (catFilter !== "*" && (t.category || "") !== catFilter) return false;
  if (tagFilter !== "*" && !(t.tags || []).includes(tagFilter)) return false;
  if (filter === "all") return true;
  if (filter === "paused") return t.state === "paused" || t.state === "stopped";
  if (filter === "downloading") return ["downloading", "checking", "queued", "metadata"].includes(t.state);
  return t.state === filter;
}

// sortable columns: the key of each column in a torrent's status
const SORT = {
  name: (t) => t.name.toLowerCase(), size: (t) => t.total_size || 0, progress: (t) => t.progress || 0,
  state: (t) => t.state, down: (t) => t.download_rate || 0, up: (t) => t.upload_rate || 0,
  ratio: (t) => t.ratio || 0, added: (t) => t.added_at || 0, queue: (t) => t.queue_position || 0,
};
function sorted(list) {
  const key = SORT[sortKey] || SORT.queue;
  return [...list].sort((a, b) => { const x = key(a), y = key(b); return (x < y ? -1 : x > y ? 1 : 0) * sortDir || (a.queue_position - b.queue_position); });
}
function drawCols() {
  for (const b of document.querySelectorAll(".col")) {
    const on = b.dataset.sort === sortKey; b.classList.toggle("on", on);
    b.querySelector("i").textContent = on ? (sortDir > 0 ? " ▲" : " ▼") : "";
  }
}

function render() {
  const list = $("list"), seen = new Set(), shown = [];
  for (const t of sorted(torrents)) {
    seen.add(t.id);
    let el = rows.get(t.id);
    if (!el) { el = makeRow(t); rows.set(t.id, el); }
    updateRow(el, t);
    if (matches(t)) shown.push(el); else if (el.parentNode) el.remove();
  }
  // put the rows in order, moving only those out of place (a row being clicked stays put)
  shown.forEach((el, i) => { if (list.children[i] !== el) list.insertBefore(el, list.children[i] || null); });
  for (const [id, el] of rows) if (!seen.has(id)) { el.remove(); rows.delete(id); }
  $("empty").hidden = torrents.length > 0;
  const c = (f) => torrents.filter((t) => { const o = filter; filter = f; const r = matches(t); filter = o; return r; }).length;
  for (const f of ["all", "downloading", "seeding", "queued", "paused"]) $("n-" + f).textContent = c(f) || "";
  drawFilters();
}

function drawFilters() {
  const fill = (sel, values, all) => {
    const want = ["*", ...values];
    if ([...sel.options].map((o) => o.value).join("\n") === want.join("\n")) return;
    const cur = sel.value; sel.innerHTML = "";
    for (const v of want) { const o = document.createElement("option"); o.value = v; o.textContent = v === "*" ? all : v === "" ? "(none)" : v; sel.appendChild(o); }
    sel.value = want.includes(cur) ? cur : "*";
  };
  fill($("cat-filter"), ["", ...Object.keys(categories).sort()], "All categories");
  fill($("tag-filter"), [...new Set(torrents.flatMap((t) => t.tags || []))].sort(), "All tags");
}
async function loadCategories() {
  try { categories = await call("GET", "/categories"); } catch (e) { return; }
  const sel = $("add-category"), cur = sel.value; sel.innerHTML = '<option value="">None</option>';
  for (const [name, path] of Object.entries(categories)) {
    const o = document.createElement("option"); o.value = name; o.textContent = name + (path ? " → " + path : ""); sel.appendChild(o);
  }
  sel.value = cur in categories ? cur : ""; drawFilters();
}

function setStats(s) {
  $("g-down").textContent = fmtRate(s.download_rate); $("g-up").textContent = fmtRate(s.upload_rate);
  $("g-count").textContent = s.torrents; $("g-peers").textContent = s.peers;
  $("g-alt").hidden = !s.alt_speed_enabled;
  const r = s.reachability || {};  // port mapping (issue 19): "mapped", or why the port is not open
  $("g-port-n").textContent = r.advertised_port || s.listen_port || "?";
  const mapped = (r.summary || "").startsWith("mapped");
  $("g-map").textContent = r.port_mapping === "on" ? (mapped ? "mapped ✓" : r.summary.startsWith("no mapping") ? "not mapped" : "mapping…") : "";
  $("g-port").title = (r.summary || "port mapping off") + (r.external_address ? " — external address " + r.external_address : "");
}

function applySnapshot(list, stats) {
  torrents = list; render(); if (stats) setStats(stats);
  if (selected) { if (!torrents.some((t) => t.id === selected)) closeDetail(); else refreshDetail(); }
}

// ---- live updates: server-sent events read with fetch (EventSource cannot send the token) -----
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
function onEvent(kind, data) {
  if (kind === "torrents") { const d = JSON.parse(data); applySnapshot(d.torrents, d.stats); $("conn").classList.add("live"); }
  else if (["added", "removed", "paused", "resumed", "started", "queued", "dequeued", "category", "tags"].includes(kind)) refresh();
  else if (kind === "goal_reached") { toast("Seeding goal reached: " + JSON.parse(data).name); refresh(); }
  else if (kind === "settings") loadCategories();
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

function openAdd() { $("add-err").textContent = ""; $("add-form").reset(); $("file-name").textContent = ""; pickedFile = null; loadCategories(); $("add-dlg").showModal(); }
$("add-btn").onclick = openAdd;
$("empty-add").onclick = openAdd;
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
  if ($("add-category").value) form.append("category", $("add-category").value);
  if ($("add-tags").value.trim()) form.append("tags", $("add-tags").value.trim());
  form.append("paused", $("start-paused").checked ? "true" : "false");
  try { const t = await call("POST", "/torrents", form, true); patch(t); $("add-dlg").close(); toast("Added " + t.name); }
  catch (err) { $("add-err").textContent = err.message; }
};

// ---- tabs, search ---------------------------------------------------------------------------
$("tabs").onclick = (e) => { const b = e.target.closest(".tab"); if (!b) return; filter = b.dataset.f;
  for (const x of document.querySelectorAll(".tab")) x.classList.toggle("on", x === b); render(); };
$("search").oninput = render;
$("cat-filter").onchange = () => { catFilter = $("cat-filter").value; render(); };
$("tag-filter").onchange = () => { tagFilter = $("tag-filter").value; render(); };
$("cols").onclick = (e) => {
  const b = e.target.closest(".col"); if (!b) return;
  if (sortKey === b.dataset.sort) sortDir = -sortDir; else { sortKey = b.dataset.sort; sortDir = 1; }
  localStorage.setItem("bitswarm-sort", sortKey); localStorage.setItem("bitswarm-sort-dir", String(sortDir));
  drawCols(); render();
};

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
      ["Private", d.private ? "yes" : "no"], ["Magnet", d.magnet || ""],
      ["Ratio", (d.ratio || 0).toFixed(2) + " (" + fmtBytes(d.uploaded_ever) + " up, " + fmtBytes(d.downloaded_ever) + " down, all sessions)"],
      ["Seeding time", fmtEta(d.seeding_time || 0)], ["Queue position", String((d.queue_position || 0) + 1)]];
    if (body.querySelector("input:focus, select:focus")) return;
    const g = d.goals || {};
    const mode = (m) => [[0, "global goal"], [1, "own goal"], [2, "no goal"]].map(([v, n]) => '<option value="' + v + '"' + ((m || 0) === v ? " selected" : "") + ">" + n + "</option>").join("");
    body.innerHTML = '<dl class="kv">' + kv.map(([k, v]) => "<dt>" + k + "</dt><dd>" + esc(v) + "</dd>").join("") + "</dl>" +
      '<h4>Organize</h4><div class="form-grid">' +
      '<label for="d-category">Category</label><select id="d-category"><option value="">None</option>' +
      Object.keys(categories).sort().map((c) => '<option' + (c === d.category ? " selected" : "") + ' value="' + esc(c) + '">' + esc(c) + "</option>").join("") + "</select>" +
      '<label for="d-tags">Tags</label><span class="inline"><input type="text" id="d-tags" value="' + esc((d.tags || []).join(", ")) + '"><button class="btn small" id="d-tags-save">Save</button></span>' +
      '<label>Queue</label><span class="inline">' + ["top", "up", "down", "bottom"].map((w) => '<button class="btn small" data-queue="' + w + '">' + w + "</button>").join("") + "</span>" +
      '<label for="d-ratio-mode">Ratio goal</label><span class="inline"><select id="d-ratio-mode">' + mode(g.ratio_mode) + '</select><input type="number" step="0.1" min="0" id="d-ratio" value="' + (g.ratio_limit ?? 2) + '"></span>' +
      '<label for="d-time-mode">Seeding-time goal</label><span class="inline"><select id="d-time-mode">' + mode(g.time_mode) + '</select><input type="number" min="0" id="d-time" value="' + (g.time_minutes ?? 1440) + '"> min</span>' +
      '<label for="d-super-seed">Super-seeding</label><span class="inline"><input type="checkbox" id="d-super-seed"' + (d.super_seed ? " checked" : "") + '><span id="d-super-seed-state" style="color:var(--muted)">' + superSeedText(d) + "</span></span>" +
      '</div><div class="inline" style="margin-top:18px"><button class="btn small" id="d-goals-save">Save goals</button><button class="btn small" id="recheck">Verify data</button>' +
      '<button class="btn small" id="d-move">Move…</button></div>';
    $("recheck").onclick = async () => { try { await call("POST", "/torrents/" + d.id + "/recheck"); toast("Verifying " + d.name); } catch (e) { toast(e.message); } };
    $("d-category").onchange = async () => {
      try { const t = await call("PUT", "/torrents/" + d.id + "/category", { category: $("d-category").value }); patch(t); toast(t.category ? "Category: " + t.category : "No category"); refreshDetail(); } catch (e) { toast(e.message); }
    };
    $("d-tags-save").onclick = async () => {
      const tags = $("d-tags").value.split(",").map((x) => x.trim()).filter(Boolean);
      try { patch(await call("PUT", "/torrents/" + d.id + "/tags", { tags })); toast("Tags saved"); refreshDetail(); } catch (e) { toast(e.message); }
    };
    for (const b of body.querySelectorAll("[data-queue]")) b.onclick = async () => {
      try { await call("POST", "/torrents/" + d.id + "/queue", { where: b.dataset.queue }); refresh(); refreshDetail(); } catch (e) { toast(e.message); }
    };
    $("d-super-seed").onchange = async () => {
      try {
        const t = await call("PUT", "/torrents/" + d.id + "/super_seed", { super_seed: $("d-super-seed").checked });
        patch(t); $("d-super-seed").blur(); $("d-super-seed-state").textContent = superSeedText(t);
        toast(t.super_seed ? "Super-seeding on" : "Super-seeding off"); refreshDetail();
      } catch (e) { toast(e.message); }
    };
    $("d-goals-save").onclick = async () => {
      const goals = { ratio_mode: +$("d-ratio-mode").value, ratio_limit: +$("d-ratio").value, time_mode: +$("d-time-mode").value, time_minutes: +$("d-time").value };
      try { await call("PUT", "/torrents/" + d.id + "/goals", goals); toast("Seeding goals saved"); refreshDetail(); } catch (e) { toast(e.message); }
    };
    $("d-move").onclick = async () => {
      const to = prompt("Move the files to (directory on the daemon's machine):", d.save_path); if (!to) return;
      try { await call("PUT", "/torrents/" + d.id + "/location", { save_path: to }); toast("Moving " + d.name); } catch (e) { toast(e.message); }
    };
  }
}
function superSeedText(t) {
  return t.super_seeding ? "active: one piece at a time per peer (BEP 16)" : t.super_seed ? "on (applies once every piece is here)" : "off";
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

drawCols(); loadCategories(); refresh(); connect();
