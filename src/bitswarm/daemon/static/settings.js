"use strict";
// The settings page: the form is rendered by the server from the settings' specification; this
// fills it from GET /api/v1/settings, sends the changed fields with PUT, and edits the categories.
let saved = {};

const fields = () => [...document.querySelectorAll("#settings-form [name], #settings-form .days")];
const keyOf = (el) => el.name || el.dataset.name;
const hhmm = (m) => String(Math.floor(m / 60)).padStart(2, "0") + ":" + String(m % 60).padStart(2, "0");

function fill(s) {
  saved = s;
  for (const el of fields()) {
    const v = s[keyOf(el)];
    if (v === undefined) continue;
    if (el.classList.contains("days")) { for (const c of el.querySelectorAll("input")) c.checked = (v & +c.dataset.bit) !== 0; }
    else if (el.dataset.kind === "bool") el.checked = !!v;
    else if (el.dataset.kind === "minutes") el.value = hhmm(v);
    else if (el.dataset.kind === "readonly") el.textContent = String(v);
    else el.value = String(v);
  }
  const body = $("cat-table").tBodies[0]; body.innerHTML = "";
  for (const [name, path] of Object.entries(s.categories || {})) {
    const tr = body.insertRow();
    tr.innerHTML = "<td>" + esc(name) + "</td><td>" + esc(path || "(default download folder)") + '</td><td><button class="btn small danger" data-rm="' + esc(name) + '">Remove</button></td>';
  }
  const wbody = $("watch-table").tBodies[0]; wbody.innerHTML = "";
  for (const w of (s.watch_results || []).slice().reverse()) {
    const tr = wbody.insertRow(); tr.innerHTML = "<td>" + esc(w.file) + "</td><td>" + esc(w.outcome) + "</td><td>" + esc(w.detail) + "</td>";
  }
}

function value(el) {
  if (el.classList.contains("days")) return [...el.querySelectorAll("input")].reduce((m, c) => m | (c.checked ? +c.dataset.bit : 0), 0);
  const kind = el.dataset.kind;
  if (kind === "bool") return el.checked;
  if (kind === "minutes") { const [h, m] = (el.value || "00:00").split(":").map(Number); return h * 60 + m; }
  if (kind === "int") return el.value === "" ? null : Math.round(Number(el.value));
  if (kind === "float") return el.value === "" ? null : Number(el.value);
  if (kind === "readonly") return undefined;
  return el.value;
}

async function load() {
  try { fill(await call("GET", "/settings")); } catch (e) { $("settings-err").textContent = e.message; }
}

$("settings-form").onsubmit = async (e) => {
  e.preventDefault();
  const changes = {};
  for (const el of fields()) {
    const k = keyOf(el), v = value(el);
    if (v !== undefined && v !== null && v !== saved[k]) changes[k] = v;
  }
  $("settings-err").textContent = "";
  if (!Object.keys(changes).length) { toast("Nothing changed"); return; }
  try { fill(await call("PUT", "/settings", changes)); toast("Settings saved"); }
  catch (err) { $("settings-err").textContent = err.message; }
};

$("cat-add").onclick = async () => {
  const name = $("cat-name").value.trim(); if (!name) return;
  try { await call("PUT", "/categories", { name, save_path: $("cat-path").value.trim() }); $("cat-name").value = ""; $("cat-path").value = ""; toast("Category " + name + " saved"); load(); }
  catch (e) { toast(e.message); }
};
$("cat-table").onclick = async (e) => {
  const b = e.target.closest("[data-rm]"); if (!b) return;
  try { await call("DELETE", "/categories/" + encodeURIComponent(b.dataset.rm)); toast("Removed " + b.dataset.rm); load(); } catch (err) { toast(err.message); }
};

load();
