"""A subset of qBittorrent's Web API v2 at ``/api/v2`` on the daemon's API port: what Sonarr, Radarr,
Flood and the ``qbittorrent-api`` library call.

``POST /api/v2/auth/login`` (form ``username``, ``password``: any user name, the daemon's token as
password) answers ``Ok.`` and a ``SID`` cookie; a wrong password gets ``Fails.``; every other call
without a valid cookie gets 403; ``auth/logout`` ends the session. The Web API version reported is
2.8.3 (before 2.11, where clients switch from ``pause``/``resume`` to ``stop``/``start``); both pairs
are served. Categories (with their save paths) and tags are kept in the daemon's settings and each
torrent's record. docs/daemon.md lists the endpoints and where they differ from qBittorrent.
"""

from __future__ import annotations

import email.parser
import email.policy
import hmac
import json
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import Response

from bitswarm.daemon import _compat as c
from bitswarm.daemon._core import Daemon, DaemonError, RawJson, RowCache, dumps_with_raw, gc_paused
from bitswarm.daemon.automation import effective_goals
from bitswarm.errors import BitswarmError
from bitswarm.session.lifecycle import State

APP_VERSION = "v4.4.5"
WEBAPI_VERSION = "2.8.3"
#: logged-in sessions kept (the oldest is dropped beyond this)
MAX_SESSIONS = 256
#: qBittorrent's "infinite" ETA
ETA_INFINITE = 8640000


class QbitError(Exception):
    """A refused call: its HTTP status and qBittorrent's text."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class Form:
    """The call's parameters (query string, urlencoded or multipart body) and uploaded files."""

    def __init__(self, fields: dict[str, str], files: list[bytes]) -> None:
        self.fields = fields
        self.files = files

    def get(self, key: str, default: str = "") -> str:
        return self.fields.get(key, default)

    def flag(self, key: str) -> bool | None:
        value = self.fields.get(key)
        return None if value is None or value == "" else value.lower() in ("true", "1", "yes")

    def required(self, key: str) -> str:
        value = self.fields.get(key)
        if value is None:
            raise QbitError(400, f"Missing required parameter: {key}")
        return value


_Handler = Callable[[Form], Awaitable[Any]]


class QbittorrentAPI:
    def __init__(self, daemon: Daemon, token: str) -> None:
        self.daemon = daemon
        self.token = token
        self.sessions: OrderedDict[str, None] = OrderedDict()
        self.rid = 0
        #: each torrent's last ``torrents/info`` row, reused while the daemon's cached status is
        #: the same object and nothing else it shows changed (issue 24)
        self._rows = RowCache()
        d = daemon
        self.routes: dict[str, _Handler] = {
            "app/version": self._const(APP_VERSION),
            "app/webapiVersion": self._const(WEBAPI_VERSION),
            "app/buildInfo": self._const(
                {"qt": "", "libtorrent": "bitswarm", "boost": "", "openssl": "", "zlib": "", "bitness": 64}
            ),
            "app/preferences": self.preferences,
            "app/setPreferences": self.set_preferences,
            "app/defaultSavePath": self._call(lambda f: str(d.download_dir)),
            "torrents/info": self.info,
            "torrents/properties": self.properties,
            "torrents/files": self.files,
            "torrents/trackers": self.trackers,
            "torrents/add": self.add,
            "torrents/pause": self._each(d.pause),
            "torrents/stop": self._each(d.pause),
            "torrents/resume": self._each(d.resume),
            "torrents/start": self._each(d.resume),
            "torrents/recheck": self._each(d.recheck),
            "torrents/reannounce": self._each(d.reannounce),
            "torrents/delete": self.delete,
            "torrents/setLocation": self.set_location,
            "torrents/setDownloadLimit": self._limit("download"),
            "torrents/setUploadLimit": self._limit("upload"),
            "torrents/setCategory": self.set_category,
            "torrents/setSuperSeeding": self.set_super_seeding,
            "torrents/categories": self._call(lambda f: self.categories()),
            "torrents/createCategory": self.create_category,
            "torrents/editCategory": self.edit_category,
            "torrents/removeCategories": self.remove_categories,
            "torrents/addTags": self.add_tags,
            "torrents/removeTags": self.remove_tags,
            "torrents/tags": self._call(lambda f: self.tags()),
            "torrents/createTags": self.create_tags,
            "torrents/deleteTags": self.delete_tags,
            "transfer/info": self._call(lambda f: self.transfer_info()),
            "transfer/setDownloadLimit": self._global_limit("download"),
            "transfer/setUploadLimit": self._global_limit("upload"),
            "sync/maindata": self.maindata,
            # the daemon's automation: queue positions, seeding goals, alternative speed
            "torrents/topPrio": self._queue("top"),
            "torrents/bottomPrio": self._queue("bottom"),
            "torrents/increasePrio": self._queue("up"),
            "torrents/decreasePrio": self._queue("down"),
            "torrents/setShareLimits": self.set_share_limits,
            "transfer/speedLimitsMode": self._call(
                lambda f: int(self.daemon.automation_settings()["alt_speed_enabled"])
            ),
            "transfer/toggleSpeedLimitsMode": self.toggle_speed_limits,
        }

    # -- HTTP ----------------------------------------------------------------------------------

    async def endpoint(self, request: Request, name: str) -> Response:
        try:
            form = await _form(request)
            if name == "auth/login":
                return self.login(form)
            if not self.logged_in(request):
                return _text("Forbidden", 403)
            if name == "auth/logout":
                self.sessions.pop(request.cookies.get("SID", ""), None)
                return _text("")
            handler = self.routes.get(name)
            if handler is None:
                return _text("Not Found", 404)
            result = await handler(form)
        except QbitError as exc:
            return _text(str(exc), exc.status)
        except DaemonError as exc:
            return _text(str(exc), 404 if exc.status == 404 else 409 if exc.status == 409 else 400)
        except BitswarmError as exc:  # a control the torrent's state does not allow
            return _text(str(exc), 409)
        except (ValueError, OSError) as exc:  # e.g. a path that is not Unicode text
            return _text(f"Bad argument: {exc}"[:300], 400)
        if isinstance(result, str):
            return _text(result)
        return Response(dumps_with_raw(result), 200, media_type="application/json")

    def login(self, form: Form) -> Response:
        password = form.get("password")
        if not hmac.compare_digest(password.encode(), self.token.encode()):
            return _text("Fails.")
        sid = secrets.token_urlsafe(24)
        self.sessions[sid] = None
        while len(self.sessions) > MAX_SESSIONS:
            self.sessions.popitem(last=False)
        resp = _text("Ok.")
        resp.set_cookie("SID", sid, httponly=True, samesite="strict", path="/")
        return resp

    def logged_in(self, request: Request) -> bool:
        sid = request.cookies.get("SID", "")
        return any(hmac.compare_digest(sid.encode(), known.encode()) for known in self.sessions)

    # -- helpers -------------------------------------------------------------------------------

    def _const(self, value: Any) -> _Handler:
        async def run(form: Form) -> Any:
            return value

        return run

    def _call(self, fn: Callable[[Form], Any]) -> _Handler:
        async def run(form: Form) -> Any:
            return fn(form)

        return run

    def _each(self, op: Callable[[str], Awaitable[object]]) -> _Handler:
        async def run(form: Form) -> str:
            for tid in self.select(form.required("hashes")):
                await op(tid)
            return ""

        return run

    def _limit(self, which: str) -> _Handler:
        async def run(form: Form) -> str:
            limit = _rate(form.required("limit"))
            for tid in self.select(form.required("hashes")):
                await self.daemon.set_limits(tid, **{which: limit})
            return ""

        return run

    def _global_limit(self, which: str) -> _Handler:
        async def run(form: Form) -> str:
            self.daemon.set_global_limits(**{which: _rate(form.required("limit"))})
            return ""

        return run

    def select(self, hashes: str) -> list[str]:
        """``all`` or ``|``-separated info-hashes; unknown ones are skipped (as qBittorrent does)."""
        ids = self.daemon.ids()
        if hashes.strip().lower() == "all":
            return ids
        known = set(ids)
        return [h for h in (x.strip().lower() for x in hashes.split("|")) if h in known]

    def one(self, form: Form) -> str:
        tid = form.required("hash").strip().lower()
        if tid not in self.daemon.ids():
            raise QbitError(404, "Not Found")
        return tid

    # -- torrents ------------------------------------------------------------------------------

    def _queue(self, where: str) -> _Handler:
        async def run(form: Form) -> str:
            self.daemon.move_in_queue(self.select(form.required("hashes")), where)
            return ""

        return run

    async def set_share_limits(self, form: Form) -> str:
        """``ratioLimit`` / ``seedingTimeLimit`` (minutes): -2 the global goal, -1 none, else own."""
        goals: dict[str, Any] = {}
        for field, mode, limit in (
            ("ratioLimit", "ratio_mode", "ratio_limit"), ("seedingTimeLimit", "time_mode", "time_minutes")
        ):  # fmt: skip
            text = form.get(field)
            if not text:
                continue
            try:
                value = float(text)
            except ValueError:
                raise QbitError(400, f"{field} must be a number") from None
            if value == -2:
                goals[mode] = 0
            elif value == -1:
                goals[mode] = 2
            elif 0 <= value <= 1e8:
                goals[mode], goals[limit] = 1, value
            else:
                raise QbitError(400, f"{field} out of range")
        for tid in self.select(form.required("hashes")):
            await self.daemon.set_goals(tid, goals)
        return ""

    async def toggle_speed_limits(self, form: Form) -> str:
        on = bool(self.daemon.automation_settings()["alt_speed_enabled"])
        self.daemon.update_settings({"alt_speed_enabled": not on})
        return ""

    def positions(self) -> dict[str, int]:
        """Each torrent's 1-based queue position (qBittorrent's ``priority``)."""
        return {tid: i + 1 for i, tid in enumerate(c.queue_order(self.daemon))}

    def rows(self) -> list[dict[str, Any]]:
        """Every torrent's :meth:`torrent_info`, each rebuilt only when its status (the daemon's
        cached dict), queue position, category, tags or the global seeding goals changed. The rows
        are shared with the next calls: read them, never change them."""
        positions = self.positions()
        auto = self.daemon.automation_settings()
        goals = tuple(auto[k] for k in _GOAL_SETTINGS)
        cache, out, seen = self._rows, [], []
        for s in self.daemon.list():
            tid = s["id"]
            seen.append(tid)
            # the category and tags are in the record's ``compat``: the daemon makes a new status
            # dict when that changed (a kept row of the same dict needs no record read; issue 24)
            key = (positions.get(tid, 0), goals)
            row = cache.get(tid, s, key)
            if row is None:
                row = self.torrent_info(s, positions, auto)
                cache.put(tid, s, key, row)
            else:  # the status dict is kept as the seeding time grows: the row follows it
                cache.refresh(tid, row, "seeding_time", s["seeding_time"])
            out.append(row)
        cache.keep(seen)
        return out

    def torrent_info(
        self, s: dict[str, Any], positions: dict[str, int], auto: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        tid = s["id"]
        comp = c.compat(self.daemon, tid)
        wanted = int(s.get("wanted_size") or s.get("total_size") or 0)
        done = int(s.get("done_size") or 0)
        left = max(0, wanted - done)
        up, down = int(s.get("uploaded") or 0), int(s.get("downloaded") or 0)
        eta = s.get("eta")
        return {
            "hash": tid,
            "infohash_v1": tid,
            "infohash_v2": "",
            "name": s["name"],
            "state": _state(s),
            "progress": float(s.get("progress") or 0.0),
            "size": wanted,
            "total_size": int(s.get("total_size") or 0),
            "completed": done,
            "downloaded": down,
            "uploaded": up,
            "downloaded_session": down,
            "uploaded_session": up,
            "amount_left": left,
            "dlspeed": int(s.get("download_rate") or 0),
            "upspeed": int(s.get("upload_rate") or 0),
            "dl_limit": int(s.get("download_limit") or 0) or -1,
            "up_limit": int(s.get("upload_limit") or 0) or -1,
            "eta": int(eta) if eta is not None and left else ETA_INFINITE,
            "ratio": float(s.get("ratio") or 0.0),
            "num_seeds": int(s.get("seeds") or 0),
            "num_leechs": max(0, int(s.get("peers") or 0) - int(s.get("seeds") or 0)),
            "num_complete": -1,
            "num_incomplete": -1,
            "save_path": s["save_path"],
            "content_path": str(Path(s["save_path"], s["name"])),
            "download_path": "",
            "category": comp.get("category", ""),
            "tags": ", ".join(comp.get("tags", [])),
            "added_on": int(s.get("added_at") or 0),
            "completion_on": -1,
            "last_activity": c.now() if s.get("download_rate") or s.get("upload_rate") else 0,
            "magnet_uri": s.get("magnet") or "",
            "tracker": "",
            "priority": positions.get(tid, 0),
            "force_start": False,
            "auto_tmm": False,
            "seq_dl": False,
            "f_l_piece_prio": False,
            "super_seeding": bool(s.get("super_seed")),
            "availability": -1,
            "time_active": 0,
            "seeding_time": int(s.get("seeding_time") or 0),
            **self._share_limits(s, auto or self.daemon.automation_settings()),
        }

    def _share_limits(self, s: dict[str, Any], auto: dict[str, Any]) -> dict[str, Any]:
        goals = s.get("goals") or {}
        ratio, minutes = effective_goals(auto, goals)
        own = {0: -2, 2: -1}
        return {
            "max_ratio": ratio if ratio is not None else -1,
            "ratio_limit": own.get(goals.get("ratio_mode", 0), goals.get("ratio_limit", -2)),
            "max_seeding_time": int(minutes) if minutes is not None else -1,
            "seeding_time_limit": own.get(goals.get("time_mode", 0), int(goals.get("time_minutes", -2))),
        }

    async def info(self, form: Form) -> RawJson:
        with gc_paused():  # thousands of rows and their JSON (issue 24)
            return self._info(form)

    def _info(self, form: Form) -> RawJson:
        rows = self.rows()
        if form.get("hashes"):
            chosen = set(self.select(form.get("hashes")))
            rows = [r for r in rows if r["hash"] in chosen]
        if "category" in form.fields:
            rows = [r for r in rows if r["category"] == form.get("category")]
        if "tag" in form.fields:
            tag = form.get("tag")
            rows = [r for r in rows if (tag in r["tags"].split(", ") if tag else not r["tags"])]
        flt = form.get("filter", "all")
        if flt in _FILTERS:  # ``all`` (the default) and unknown filters keep every row
            rows = [r for r in rows if _matches(flt, r)]
        key = form.get("sort")
        if key:
            rows.sort(key=lambda r: (r.get(key) is None, r.get(key)), reverse=bool(form.flag("reverse")))
        offset = _int(form.get("offset", "0") or "0")
        if offset < 0:
            offset = max(0, len(rows) + offset)
        limit = _int(form.get("limit", "0") or "0")
        rows = rows[offset : offset + limit] if limit > 0 else rows[offset:]
        return self._rows.array((r["hash"], r) for r in rows)  # each kept row's JSON is kept too

    async def properties(self, form: Form) -> dict[str, Any]:
        tid = self.one(form)
        s = self.daemon.details(tid)
        info = self.torrent_info(s, self.positions())
        return {
            "hash": tid,
            "name": s["name"],
            "save_path": s["save_path"],
            "creation_date": -1,
            "piece_size": int(s.get("piece_length") or 0),
            "comment": s.get("comment") or "",
            "created_by": "",
            "total_wasted": int(s.get("redundant") or 0),
            "total_uploaded": info["uploaded"],
            "total_uploaded_session": info["uploaded"],
            "total_downloaded": info["downloaded"],
            "total_downloaded_session": info["downloaded"],
            "up_limit": info["up_limit"],
            "dl_limit": info["dl_limit"],
            "time_elapsed": 0,
            "seeding_time": 0,
            "nb_connections": int(s.get("peers") or 0),
            "nb_connections_limit": 50,
            "share_ratio": info["ratio"],
            "addition_date": info["added_on"],
            "completion_date": -1,
            "last_seen": -1,
            "dl_speed": info["dlspeed"],
            "dl_speed_avg": info["dlspeed"],
            "up_speed": info["upspeed"],
            "up_speed_avg": info["upspeed"],
            "eta": info["eta"],
            "pieces_have": int(s.get("pieces_done") or 0),
            "pieces_num": int(s.get("num_pieces") or 0),
            "total_size": info["total_size"],
            "seeds": info["num_seeds"],
            "seeds_total": info["num_seeds"],
            "peers": info["num_leechs"],
            "peers_total": info["num_leechs"],
            "reannounce": 0,
            "is_private": bool(s.get("private")),
            "super_seeding": info["super_seeding"],
        }

    async def files(self, form: Form) -> list[dict[str, Any]]:
        s = self.daemon.details(self.one(form))
        n = len(s["files"])
        plen = int(s.get("piece_length") or 1)
        out = []
        offset = 0
        for f in s["files"]:
            first = offset // plen
            last = max(first, (offset + max(f["length"], 1) - 1) // plen)
            offset += f["length"]
            prio = f["priority"]
            out.append(
                {
                    "index": f["index"],
                    "name": c.file_name(s["name"], f["path"], n),
                    "size": f["length"],
                    "progress": float(f["progress"]),
                    "priority": 0 if prio == 0 else 7 if prio >= 7 else 6 if prio > 1 else 1,
                    "is_seed": f["progress"] >= 1.0,
                    "piece_range": [first, last],
                    "availability": -1,
                }
            )
        return out

    async def trackers(self, form: Form) -> list[dict[str, Any]]:
        s = self.daemon.details(self.one(form))
        dht = "" if s.get("private") else "** [DHT] **"
        out: list[dict[str, Any]] = [
            {"url": u, "status": 2, "tier": "", "num_peers": 0, "num_seeds": 0, "num_leeches": 0,
             "num_downloaded": 0, "msg": ""}
            for u in ([dht] if dht else []) + ["** [PeX] **", "** [LSD] **"]
        ]  # fmt: skip
        for t in s["trackers"]:
            status = {"ok": 2, "error": 4}.get(str(t.get("status")), 1)
            out.append(
                {
                    "url": t["url"],
                    "status": status,
                    "tier": t["tier"],
                    "num_peers": int(t.get("peers") or 0),
                    "num_seeds": t.get("seeders") if isinstance(t.get("seeders"), int) else -1,
                    "num_leeches": t.get("leechers") if isinstance(t.get("leechers"), int) else -1,
                    "num_downloaded": -1,
                    "msg": str(t.get("error") or t.get("warning") or ""),
                }
            )
        return out

    async def add(self, form: Form) -> str:
        paused = bool(form.flag("paused") or form.flag("stopped"))
        category = form.get("category").strip()
        if category and category not in self.categories():
            self._save_categories({**self._categories(), category: ""})
        save_path = form.get("savepath") or (self._categories().get(category) if category else None) or None
        tags = _tag_list(form.get("tags"))
        added: list[str] = []
        sources: list[bytes | str] = [*form.files, *(u for u in form.get("urls").splitlines() if u.strip())]
        for source in sources:
            try:
                if isinstance(source, bytes):
                    st = await self.daemon.add_torrent(source, save_path=save_path, paused=paused)
                else:
                    st = await c.add_source(self.daemon, source, save_path=save_path, paused=paused)
            except DaemonError:
                continue
            added.append(st["id"])
        for tid in added:
            comp = c.compat(self.daemon, tid)
            if category:
                comp["category"] = category
            if tags:
                comp["tags"] = tags
                self._save_tags(tags)
            c.save(self.daemon, tid)
        if not added:
            raise QbitError(415 if form.files else 200, "Fails.")
        return "Ok."

    async def delete(self, form: Form) -> str:
        delete_files = bool(form.flag("deleteFiles"))
        for tid in self.select(form.required("hashes")):
            await self.daemon.remove(tid, delete_data=delete_files)
        return ""

    async def set_super_seeding(self, form: Form) -> str:
        """``hashes``, ``value`` (true/false): the torrents' BEP 16 switch, as qBittorrent's (which
        reports the switch, not whether it super-seeds now, in ``super_seeding``)."""
        value = form.flag("value")
        if value is None:
            raise QbitError(400, "Missing required parameter: value")
        for tid in self.select(form.required("hashes")):
            self.daemon.set_super_seed(tid, value)
        return ""

    async def set_location(self, form: Form) -> str:
        location = form.required("location")
        if not location:
            raise QbitError(400, "Save path cannot be empty")
        for tid in self.select(form.required("hashes")):
            await self.daemon.move(tid, location)
        return ""

    # -- categories and tags ------------------------------------------------------------------

    def _categories(self) -> dict[str, str]:
        saved = self.daemon.setting("categories", {}) or {}
        return {str(k): str(v) for k, v in saved.items()} if isinstance(saved, dict) else {}

    def _save_categories(self, cats: dict[str, str]) -> None:
        self.daemon.set_setting("categories", cats)

    def categories(self) -> dict[str, dict[str, str]]:
        return {name: {"name": name, "savePath": path} for name, path in self._categories().items()}

    async def create_category(self, form: Form) -> str:
        name = form.required("category").strip()
        if not _valid_category(name):
            raise QbitError(400, "Invalid category name")
        cats = self._categories()
        if name in cats:
            raise QbitError(409, "Category already exists")
        cats[name] = form.get("savePath")
        self._save_categories(cats)
        return ""

    async def edit_category(self, form: Form) -> str:
        name = form.required("category").strip()
        cats = self._categories()
        if name not in cats:
            raise QbitError(409, "Category doesn't exist")
        cats[name] = form.get("savePath")
        self._save_categories(cats)
        return ""

    async def remove_categories(self, form: Form) -> str:
        gone = {x.strip() for x in form.get("categories").splitlines() if x.strip()}
        self._save_categories({k: v for k, v in self._categories().items() if k not in gone})
        for tid in self.daemon.ids():
            comp = c.compat(self.daemon, tid)
            if comp.get("category") in gone:
                comp["category"] = ""
                c.save(self.daemon, tid)
        return ""

    async def set_category(self, form: Form) -> str:
        name = form.required("category").strip()
        if name and name not in self._categories():
            raise QbitError(409, "Incorrect category name")
        for tid in self.select(form.required("hashes")):
            c.compat(self.daemon, tid)["category"] = name
            c.save(self.daemon, tid)
        return ""

    def tags(self) -> list[str]:
        saved = self.daemon.setting("tags", []) or []
        return sorted(str(t) for t in saved) if isinstance(saved, list) else []

    def _save_tags(self, new: list[str]) -> None:
        self.daemon.set_setting("tags", sorted({*self.tags(), *new}))

    async def create_tags(self, form: Form) -> str:
        self._save_tags(_tag_list(form.get("tags")))
        return ""

    async def delete_tags(self, form: Form) -> str:
        gone = set(_tag_list(form.get("tags")))
        self.daemon.set_setting("tags", [t for t in self.tags() if t not in gone])
        self._retag(self.daemon.ids(), lambda tags: [t for t in tags if t not in gone])
        return ""

    async def add_tags(self, form: Form) -> str:
        new = _tag_list(form.get("tags"))
        self._save_tags(new)
        self._retag(self.select(form.required("hashes")), lambda tags: sorted({*tags, *new}))
        return ""

    async def remove_tags(self, form: Form) -> str:
        gone = set(_tag_list(form.get("tags")))
        chosen = self.select(form.required("hashes"))
        self._retag(chosen, lambda tags: [t for t in tags if t not in gone] if gone else [])
        return ""

    def _retag(self, ids: list[str], change: Callable[[list[str]], list[str]]) -> None:
        for tid in ids:
            comp = c.compat(self.daemon, tid)
            comp["tags"] = change(list(comp.get("tags", [])))
            c.save(self.daemon, tid)

    # -- session -------------------------------------------------------------------------------

    async def preferences(self, form: Form) -> dict[str, Any]:
        d = self.daemon
        limits = d.global_limits()
        return {
            "save_path": str(d.download_dir),
            "temp_path_enabled": False,
            "temp_path": "",
            "listen_port": d.session.port,
            "dl_limit": limits["download_limit"],
            "up_limit": limits["upload_limit"],
            "dht": getattr(d.session, "dht", None) is not None,
            "pex": True,
            "lsd": False,
            "encryption": {"require": 1, "prefer": 0}.get(d.session.config.encryption.value, 2),
            **_automation_prefs(d.automation_settings()),
            **_privacy_prefs(d.automation_settings()),
            "start_paused_enabled": False,
            "auto_tmm_enabled": False,
            "create_subfolder_enabled": True,
            "web_ui_port": 0,
            "bypass_local_auth": False,
        }

    async def set_preferences(self, form: Form) -> str:
        try:
            prefs = json.loads(form.required("json"))
            json.dumps(prefs, ensure_ascii=False).encode()  # lone surrogates ("\ud800") are not text
        except (ValueError, RecursionError):
            raise QbitError(400, "json is not valid JSON") from None
        if not isinstance(prefs, dict):
            raise QbitError(400, "json must be an object")
        auto = _automation_changes(prefs, d=self.daemon.automation_settings())
        auto.update(_privacy_changes(prefs, self.daemon.automation_settings()))
        if auto:
            try:
                self.daemon.update_settings(auto)
            except DaemonError as exc:
                raise QbitError(400, str(exc)) from None
        limits = {"download": prefs.get("dl_limit"), "upload": prefs.get("up_limit")}
        given = {k: max(0, v) for k, v in limits.items() if isinstance(v, int) and not isinstance(v, bool)}
        if given:
            self.daemon.set_global_limits(**given)
        save_path = prefs.get("save_path")
        if isinstance(save_path, str) and Path(save_path).is_absolute():
            Path(save_path).mkdir(parents=True, exist_ok=True)
            self.daemon.download_dir = Path(save_path)
        return ""

    def transfer_info(self) -> dict[str, Any]:
        st = self.daemon.stats()
        return {
            "dl_info_speed": int(st["download_rate"]),
            "dl_info_data": int(st["downloaded"]),
            "up_info_speed": int(st["upload_rate"]),
            "up_info_data": int(st["uploaded"]),
            "dl_rate_limit": int(st["download_limit"]),
            "up_rate_limit": int(st["upload_limit"]),
            "dht_nodes": 0,
            "connection_status": "connected",
        }

    async def maindata(self, form: Form) -> dict[str, Any]:
        """Always a full update (``full_update: true``): clients replace their state with it."""
        self.rid += 1
        free = await self._free()
        return {
            "rid": self.rid,
            "full_update": True,
            "torrents": {row["hash"]: row for row in self.rows()},
            "categories": self.categories(),
            "tags": self.tags(),
            "server_state": {
                **self.transfer_info(),
                "free_space_on_disk": free,
                "alltime_dl": 0,
                "alltime_ul": 0,
                "queueing": self.daemon.queueing(),
                "use_alt_speed_limits": bool(self.daemon.automation_settings()["alt_speed_enabled"]),
                "refresh_interval": 1500,
            },
        }

    async def _free(self) -> int:
        import asyncio
        import shutil

        try:
            return (await asyncio.to_thread(shutil.disk_usage, self.daemon.download_dir)).free
        except OSError:
            return 0


def mount(app: FastAPI, daemon: Daemon, token: str) -> QbittorrentAPI:
    """Serve the API at ``/api/v2/...`` (outside the OpenAPI schema)."""
    api = QbittorrentAPI(daemon, token)
    app.add_api_route("/api/v2/{name:path}", api.endpoint, methods=["GET", "POST"], include_in_schema=False)
    return api


def _text(text: str, status: int = 200) -> Response:
    return Response(text, status, media_type="text/plain; charset=UTF-8")


async def _form(request: Request) -> Form:
    fields = dict(request.query_params)
    files: list[bytes] = []
    if request.method == "POST":
        body = await request.body()
        ctype = request.headers.get("content-type", "")
        kind = ctype.split(";", 1)[0].strip().lower()
        if kind == "application/x-www-form-urlencoded":
            fields.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        elif kind == "multipart/form-data":
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + ctype.encode("latin-1", "replace") + b"\r\n\r\n" + body
            )
            if not msg.is_multipart():
                raise QbitError(400, "malformed multipart body")
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                if not isinstance(name, str) or not isinstance(payload, bytes):
                    continue
                if part.get_param("filename", header="content-disposition") is not None:
                    files.append(payload)
                else:
                    fields[name] = payload.decode("utf-8", "replace")
    return Form(fields, files)


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise QbitError(400, f"not an integer: {text[:40]!r}") from None


def _rate(text: str) -> int:
    return max(0, _int(text))


def _tag_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _valid_category(name: str) -> bool:
    return bool(name) and not name.startswith("/") and not name.endswith("/") and "//" not in name


#: qBittorrent's ``scheduler_days`` (0 every day, 1 weekdays, 2 weekends, 3 Monday ... 9 Sunday) →
#: Transmission's day mask (Sunday 1, Monday 2 ... Saturday 64), which the daemon keeps
_QB_DAYS = {0: 127, 1: 62, 2: 65, **{3 + i: 1 << ((i + 1) % 7) for i in range(7)}}


def _automation_prefs(a: dict[str, Any]) -> dict[str, Any]:
    """The daemon's automation settings as qBittorrent's preferences."""
    days = {v: k for k, v in _QB_DAYS.items()}.get(int(a["alt_speed_time_day"]), 0)
    return {
        "queueing_enabled": bool(a["queue_downloads_enabled"] or a["queue_seeds_enabled"]),
        "max_active_downloads": a["queue_downloads_max"] if a["queue_downloads_enabled"] else -1,
        "max_active_uploads": a["queue_seeds_max"] if a["queue_seeds_enabled"] else -1,
        "max_active_torrents": -1,
        "dont_count_slow_torrents": a["queue_stalled_enabled"],
        "slow_torrent_inactive_timer": int(a["queue_stalled_minutes"] * 60),
        "max_ratio_enabled": a["seed_ratio_enabled"],
        "max_ratio": a["seed_ratio_limit"] if a["seed_ratio_enabled"] else -1,
        "max_ratio_act": 1 if a["seed_goal_action"] == "remove" else 0,
        "max_seeding_time_enabled": a["seed_time_enabled"],
        "max_seeding_time": int(a["seed_time_minutes"]) if a["seed_time_enabled"] else -1,
        "alt_dl_limit": a["alt_speed_down"],
        "alt_up_limit": a["alt_speed_up"],
        "scheduler_enabled": a["alt_speed_time_enabled"],
        "schedule_from_hour": a["alt_speed_time_begin"] // 60,
        "schedule_from_min": a["alt_speed_time_begin"] % 60,
        "schedule_to_hour": a["alt_speed_time_end"] // 60,
        "schedule_to_min": a["alt_speed_time_end"] % 60,
        "scheduler_days": days,
    }


#: qBittorrent's proxy_type (WebAPI 2.8: numbers; 4.6 and later send names)
_QB_PROXY_NONE = (-1, 0, "None", "none", "")
_QB_SOCKS5 = (2, 4, "SOCKS5", "socks5")


def _privacy_prefs(a: dict[str, Any]) -> dict[str, Any]:
    """The blocklist and proxy settings as qBittorrent's preferences (the password is not sent)."""
    from bitswarm.session.proxy import parse_proxy

    out: dict[str, Any] = {
        "ip_filter_enabled": a["blocklist_enabled"],
        "ip_filter_path": a["blocklist_path"],
        "ip_filter_trackers": False,
        "proxy_type": -1,
        "proxy_ip": "",
        "proxy_port": 8080,
        "proxy_peer_connections": False,
        "proxy_auth_enabled": False,
        "proxy_username": "",
        "proxy_password": "",
        "proxy_hostname_lookup": False,
        "proxy_torrents_only": False,
    }
    if a["proxy"]:
        p = parse_proxy(a["proxy"])
        auth = p.username is not None
        out.update(
            proxy_type=4 if auth else 2, proxy_ip=p.host, proxy_port=p.port, proxy_peer_connections=True,
            proxy_auth_enabled=auth, proxy_username=p.username or "", proxy_hostname_lookup=p.remote_dns,
        )  # fmt: skip
    return out


def _privacy_changes(prefs: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """``ip_filter_*`` and ``proxy_*`` preferences → the daemon's settings. Only SOCKS5 proxies are
    served; every peer connection goes through the proxy (``proxy_peer_connections`` is not a choice).
    QbitError for another proxy type or a bad host/port."""
    from bitswarm.session.proxy import ProxyConfig, parse_proxy

    out: dict[str, Any] = {}
    if isinstance(prefs.get("ip_filter_enabled"), bool):
        out["blocklist_enabled"] = prefs["ip_filter_enabled"]
    if isinstance(prefs.get("ip_filter_path"), str):
        out["blocklist_path"] = prefs["ip_filter_path"]
    if not any(k.startswith("proxy_") for k in prefs):
        return out
    old = parse_proxy(current["proxy"]) if current["proxy"] else None
    kind = prefs.get("proxy_type", (4 if old and old.username else 2) if old else -1)
    if kind in _QB_PROXY_NONE:
        out["proxy"] = ""
        return out
    if kind not in _QB_SOCKS5:
        raise QbitError(400, "only SOCKS5 proxies are supported (proxy_type 2, 4 or SOCKS5)")
    host = prefs.get("proxy_ip", old.host if old else "")
    port = prefs.get("proxy_port", old.port if old else 0)
    if not isinstance(host, str) or not host or isinstance(port, bool) or not isinstance(port, int):
        raise QbitError(400, "proxy_ip and proxy_port are required for a SOCKS5 proxy")
    auth = prefs.get("proxy_auth_enabled", kind == 4 or (old is not None and old.username is not None))
    user = prefs.get("proxy_username", old.username if old else None) if auth else None
    password = prefs.get("proxy_password") or (old.password if old else None) if auth else None
    remote = prefs.get("proxy_hostname_lookup", old.remote_dns if old else False)
    scheme = "socks5h" if remote is True else "socks5"
    url = ProxyConfig(scheme, host, port, user or None, password if user else None).url()
    try:
        parse_proxy(url)
    except ValueError as exc:
        raise QbitError(400, str(exc)) from None
    out["proxy"] = url
    return out


def _automation_changes(prefs: dict[str, Any], d: dict[str, Any]) -> dict[str, Any]:
    """qBittorrent preferences → changes of the daemon's automation settings (others ignored)."""

    def num(key: str) -> float | None:
        v = prefs.get(key)
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    out: dict[str, Any] = {}
    if isinstance(prefs.get("queueing_enabled"), bool):
        out["queue_downloads_enabled"] = out["queue_seeds_enabled"] = prefs["queueing_enabled"]
    for key, name, enabled in (
        ("max_active_downloads", "queue_downloads_max", "queue_downloads_enabled"),
        ("max_active_uploads", "queue_seeds_max", "queue_seeds_enabled"),
    ):
        v = num(key)
        if v is not None and v < 0:
            out[enabled] = False
        elif v is not None:
            out[name] = int(v)
    if isinstance(prefs.get("dont_count_slow_torrents"), bool):
        out["queue_stalled_enabled"] = prefs["dont_count_slow_torrents"]
    if (v := num("slow_torrent_inactive_timer")) is not None:
        out["queue_stalled_minutes"] = max(0.05, v / 60)
    for key, name in (
        ("max_ratio_enabled", "seed_ratio_enabled"),
        ("max_seeding_time_enabled", "seed_time_enabled"),
    ):
        if isinstance(prefs.get(key), bool):
            out[name] = prefs[key]
    if (v := num("max_ratio")) is not None and v >= 0:
        out["seed_ratio_limit"] = v
    if (v := num("max_seeding_time")) is not None and v >= 0:
        out["seed_time_minutes"] = v
    if (v := num("max_ratio_act")) is not None:
        out["seed_goal_action"] = "remove" if v in (1, 3) else "pause"
    for key, name in (("alt_dl_limit", "alt_speed_down"), ("alt_up_limit", "alt_speed_up")):
        if (v := num(key)) is not None:
            out[name] = max(0, int(v))
    if isinstance(prefs.get("scheduler_enabled"), bool):
        out["alt_speed_time_enabled"] = prefs["scheduler_enabled"]
    for prefix, name in (("schedule_from", "alt_speed_time_begin"), ("schedule_to", "alt_speed_time_end")):
        h, m = num(prefix + "_hour"), num(prefix + "_min")
        if h is not None or m is not None:
            cur = int(d[name])
            out[name] = int(h if h is not None else cur // 60) * 60 + int(m if m is not None else cur % 60)
    if (v := num("scheduler_days")) is not None and int(v) in _QB_DAYS:
        out["alt_speed_time_day"] = _QB_DAYS[int(v)]
    return out


#: the global settings a row's share limits read (automation.effective_goals)
_GOAL_SETTINGS = ("seed_ratio_enabled", "seed_ratio_limit", "seed_time_enabled", "seed_time_minutes")


def _state(s: dict[str, Any]) -> str:
    state = c.STATE_OF.get(s["state"], State.ERROR)
    done = float(s.get("progress") or 0.0) >= 1.0
    if s.get("held"):
        return "queuedUP" if done else "queuedDL"
    if state is State.DOWNLOADING:
        return "downloading" if s.get("download_rate") else "stalledDL"
    if state is State.SEEDING:
        return "uploading" if s.get("upload_rate") else "stalledUP"
    if state in (State.PAUSED, State.STOPPED):
        return "pausedUP" if done else "pausedDL"
    return {
        State.QUEUED: "queuedDL",
        State.CHECKING: "checkingUP" if done else "checkingDL",
        State.METADATA: "metaDL",
        State.MOVING: "moving",
    }.get(state, "error")


def _paused(st: str, r: dict[str, Any]) -> bool:
    return st.startswith("paused")


def _active(st: str, r: dict[str, Any]) -> bool:
    return bool(r["dlspeed"] or r["upspeed"])


#: qBittorrent's list filters (``all`` and unknown ones select every torrent): each a test of the
#: row's state and the row, made only for the filter asked (a table of all of them was built per
#: row: ~5 ms of a 10,000-torrent list; issue 24)
_FILTERS: dict[str, Callable[[str, dict[str, Any]], bool]] = {
    "downloading": lambda st, r: (
        st in ("downloading", "stalledDL", "metaDL", "queuedDL", "checkingDL", "pausedDL")
    ),
    "seeding": lambda st, r: st in ("uploading", "stalledUP", "checkingUP"),
    "completed": lambda st, r: r["progress"] >= 1.0,
    "paused": _paused,
    "stopped": _paused,
    "resumed": lambda st, r: not _paused(st, r),
    "running": lambda st, r: not _paused(st, r),
    "active": _active,
    "inactive": lambda st, r: not _active(st, r),
    "stalled": lambda st, r: st in ("stalledDL", "stalledUP"),
    "stalled_uploading": lambda st, r: st == "stalledUP",
    "stalled_downloading": lambda st, r: st == "stalledDL",
    "checking": lambda st, r: st.startswith("checking"),
    "moving": lambda st, r: st == "moving",
    "errored": lambda st, r: st == "error",
}


def _matches(flt: str, r: dict[str, Any]) -> bool:
    test = _FILTERS.get(flt)
    return True if test is None else test(str(r["state"]), r)
