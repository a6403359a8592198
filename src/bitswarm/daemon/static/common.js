// Shared by every page of the daemon's web UI: the token (from the URL fragment once, then
// localStorage; never sent in a URL), API calls with it, formatting, toasts.
"use strict";
const $ = (id) => document.getElementById(id);
const API = "/api/v1";
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

