"""Transmission's RPC (rpc-version 16, as Transmission 3.00) at ``/transmission/rpc`` on the daemon's
API port, so ``transmission-remote``, Transmission Remote GUI and the ``transmission-rpc`` library
drive bitswarm.

HTTP basic auth: any user name, the daemon's token as password (a request without credentials gets
the 401 challenge, as ``transmission-remote`` expects); then the ``X-Transmission-Session-Id`` 409
handshake. Requests are ``{"method", "arguments", "tag"}``; answers ``{"result": "success" or an
error text, "arguments", "tag"}``. Ids are stable integers (kept in the torrent's record), hash
strings or ``"recently-active"``. docs/daemon.md lists the methods and fields and where they differ.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import secrets
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from bitswarm import __version__
from bitswarm.daemon import _compat as c
from bitswarm.daemon._core import MAX_PRIORITY, Daemon, DaemonError, RowCache, dumps_with_raw, gc_paused
from bitswarm.errors import BitswarmError
from bitswarm.session.lifecycle import TRANSMISSION_STATUS, State

RPC_VERSION = 16
#: Transmission's kB (speed-units: 1000 bytes).
KB = 1000
_SESSION_HEADER = "X-Transmission-Session-Id"
#: fields that need the torrent's details (files, peers, trackers, pieces)
_DETAIL_FIELDS = frozenset(
    {
        "files", "fileStats", "priorities", "wanted", "peers", "trackers", "trackerStats", "pieces",
        "pieceSize", "comment", "isPrivate", "magnetLink", "file-count", "webseeds", "peersFrom",
        "peersSendingToUs", "peersGettingFromUs", "primary-mime-type",
    }
)  # fmt: skip
#: detail fields that need only the peer list
_PEER_FIELDS = frozenset({"peersSendingToUs", "peersGettingFromUs"})
_TR_PRIORITY = {"priority-high": 1, "priority-normal": 0, "priority-low": -1}


#: session-set/-get keys kept by the daemon's automation: key → (setting, scale: bool, 1.0 for a
#: number as is, KB for kB/s, 1 for an int as is)
_SESSION_AUTOMATION: dict[str, tuple[str, Any]] = {
    "alt-speed-enabled": ("alt_speed_enabled", bool),
    "alt-speed-down": ("alt_speed_down", KB),
    "alt-speed-up": ("alt_speed_up", KB),
    "alt-speed-time-enabled": ("alt_speed_time_enabled", bool),
    "alt-speed-time-begin": ("alt_speed_time_begin", 1),
    "alt-speed-time-end": ("alt_speed_time_end", 1),
    "alt-speed-time-day": ("alt_speed_time_day", 1),
    "download-queue-enabled": ("queue_downloads_enabled", bool),
    "download-queue-size": ("queue_downloads_max", 1),
    "seed-queue-enabled": ("queue_seeds_enabled", bool),
    "seed-queue-size": ("queue_seeds_max", 1),
    "queue-stalled-enabled": ("queue_stalled_enabled", bool),
    "queue-stalled-minutes": ("queue_stalled_minutes", 1),
    "seedRatioLimited": ("seed_ratio_enabled", bool),
    "seedRatioLimit": ("seed_ratio_limit", 1.0),
    "blocklist-enabled": ("blocklist_enabled", bool),
    "blocklist-url": ("blocklist_url", str),
}


class RpcError(Exception):
    """A request Transmission refuses: its ``result`` text."""


class TransmissionRPC:
    """One daemon's RPC endpoint (the session id changes when the daemon restarts)."""

    def __init__(self, daemon: Daemon, token: str) -> None:
        self.daemon = daemon
        self.token = token
        self.session_id = secrets.token_urlsafe(32)
        #: torrent-get's last row of each torrent, reused while the daemon's cached status is the
        #: same object and nothing else it shows changed (issue 24)
        self._rows = RowCache()
        self.methods: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "torrent-add": self.torrent_add,
            "torrent-get": self.torrent_get,
            "torrent-set": self.torrent_set,
            "torrent-start": self._control(self.daemon.resume),
            "torrent-start-now": self.torrent_start_now,
            "torrent-stop": self._control(self.daemon.pause),
            "torrent-verify": self._control(self.daemon.recheck),
            "torrent-reannounce": self._control(self.daemon.reannounce),
            "torrent-remove": self.torrent_remove,
            "torrent-set-location": self.torrent_set_location,
            "queue-move-top": self._queue("top"),
            "queue-move-up": self._queue("up"),
            "queue-move-down": self._queue("down"),
            "queue-move-bottom": self._queue("bottom"),
            "session-get": self.session_get,
            "session-set": self.session_set,
            "session-stats": self.session_stats,
            "session-close": self._nothing,
            "free-space": self.free_space,
            "blocklist-update": self.blocklist_update,
            "port-test": self.port_test,
        }

    # -- HTTP ----------------------------------------------------------------------------------

    def authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return False
        _, sep, password = decoded.partition(":")
        return bool(sep) and hmac.compare_digest(password.encode(), self.token.encode())

    async def endpoint(self, request: Request) -> Response:
        if not self.authorized(request):
            return Response(
                "<h1>401: Unauthorized</h1>Unauthorized User",
                401,
                headers={"WWW-Authenticate": 'Basic realm="Transmission"'},
                media_type="text/html",
            )
        headers = {_SESSION_HEADER: self.session_id}
        given = request.headers.get(_SESSION_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.session_id.encode()):
            body = (
                "<h1>409: Conflict</h1><p>Your request had an invalid session-id header.</p>"
                f"<p><code>{_SESSION_HEADER}: {self.session_id}</code></p>"
            )
            return Response(body, 409, headers=headers, media_type="text/html")
        try:
            req = json.loads(await request.body())
            json.dumps(req, ensure_ascii=False).encode()  # lone surrogates ("\ud800") are not text
        except (ValueError, RecursionError):  # not JSON, not text, or nested deeper than the parser goes
            return _answer({"result": "JSON parse error", "arguments": {}}, headers)
        if not isinstance(req, dict):
            return _answer({"result": "no method name", "arguments": {}}, headers)
        out: dict[str, Any] = {"arguments": {}}
        if "tag" in req:
            out["tag"] = req["tag"]
        method = req.get("method")
        args = req.get("arguments", {})
        handler = self.methods.get(method) if isinstance(method, str) else None
        if handler is None:
            out["result"] = "method name not recognized"
        elif not isinstance(args, dict):
            out["result"] = "arguments must be an object"
        else:
            try:
                out["arguments"] = await handler(args)
                out["result"] = "success"
            except (RpcError, BitswarmError) as exc:  # DaemonError, LifecycleError ...
                out["result"] = str(exc)
            except (ValueError, OSError) as exc:  # e.g. a path that is not Unicode text
                out["result"] = f"bad argument: {exc}"[:300]
        return _answer(out, headers)

    # -- ids -----------------------------------------------------------------------------------

    def select(self, ids: Any) -> list[str]:
        """The torrents ``ids`` names (all when absent); unknown ids are skipped, as Transmission does."""
        all_ids = self.daemon.ids()
        if ids is None or ids == "recently-active":
            return all_ids
        items = ids if isinstance(ids, list) else [ids]
        by_num = {c.number(self.daemon, t): t for t in all_ids}
        out: list[str] = []
        for item in items:
            tid: str | None = None
            if isinstance(item, int) and not isinstance(item, bool):
                tid = by_num.get(item)
            elif isinstance(item, str) and item.isdigit():
                tid = by_num.get(int(item))
            elif isinstance(item, str) and item.lower() in all_ids:
                tid = item.lower()
            if tid is not None and tid not in out:
                out.append(tid)
        return out

    def _ref(self, status: dict[str, Any]) -> dict[str, Any]:
        tid = status["id"]
        return {"id": c.number(self.daemon, tid), "name": status["name"], "hashString": tid}

    def _control(
        self, op: Callable[[str], Awaitable[object]]
    ) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
        async def run(args: dict[str, Any]) -> dict[str, Any]:
            for tid in self.select(args.get("ids")):
                await op(tid)
            return {}

        return run

    def _queue(self, where: str) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
        async def run(args: dict[str, Any]) -> dict[str, Any]:
            c.move_in_queue(self.daemon, self.select(args.get("ids")), where)
            return {}

        return run

    async def _nothing(self, args: dict[str, Any]) -> dict[str, Any]:
        return {}

    # -- torrents ------------------------------------------------------------------------------

    async def torrent_add(self, args: dict[str, Any]) -> dict[str, Any]:
        save_path = _opt_str(args, "download-dir")
        start = (self.daemon.setting("transmission", {}) or {}).get("start-added-torrents", True)
        paused = bool(args.get("paused", not start))
        metainfo = args.get("metainfo")
        filename = args.get("filename")
        try:
            if isinstance(metainfo, str) and metainfo:
                try:
                    data = base64.b64decode(metainfo)
                except (binascii.Error, ValueError):
                    raise RpcError("invalid or corrupt torrent file") from None
                status = await self.daemon.add_torrent(data, save_path=save_path, paused=paused)
            elif isinstance(filename, str) and filename:
                status = await c.add_source(self.daemon, filename, save_path=save_path, paused=paused)
            else:
                raise RpcError("no filename or metainfo specified")
        except DaemonError as exc:
            if exc.code == "duplicate":
                tid = str(exc).split()[1]
                return {"torrent-duplicate": self._ref(self.daemon.details(tid))}
            if exc.code in ("bad_torrent", "bad_magnet"):
                raise RpcError(f"invalid or corrupt torrent file ({exc})") from None
            raise
        labels = args.get("labels")
        tid = status["id"]
        if isinstance(labels, list):
            c.compat(self.daemon, tid)["labels"] = [str(x) for x in labels]
            c.save(self.daemon, tid)
        await self._set_files(tid, args)
        return {"torrent-added": self._ref(status)}

    async def torrent_start_now(self, args: dict[str, Any]) -> dict[str, Any]:
        """Start at once: to the top of the queue (it takes a slot; one below may wait), then resume."""
        ids = self.select(args.get("ids"))
        self.daemon.move_in_queue(ids, "top")
        for tid in ids:
            await self.daemon.resume(tid)
        return {}

    async def torrent_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        delete = bool(args.get("delete-local-data", False))
        for tid in self.select(args.get("ids")):
            await self.daemon.remove(tid, delete_data=delete)
        return {}

    async def torrent_set_location(self, args: dict[str, Any]) -> dict[str, Any]:
        location = _opt_str(args, "location")
        if not location:
            raise RpcError("no location")
        if not args.get("move", False):
            raise RpcError("setting a location without moving the data is not supported by bitswarm")
        for tid in self.select(args.get("ids")):
            await self.daemon.move(tid, location)
        return {}

    async def torrent_set(self, args: dict[str, Any]) -> dict[str, Any]:
        for tid in self.select(args.get("ids")):
            comp = c.compat(self.daemon, tid)
            for key, name in (("downloadLimit", "dl_kb"), ("uploadLimit", "ul_kb")):
                if key in args:
                    comp[name] = _int(args[key], key)
            for key, name in (("downloadLimited", "dl_on"), ("uploadLimited", "ul_on")):
                if key in args:
                    comp[name] = bool(args[key])
            goals: dict[str, Any] = {}
            if "seedRatioLimit" in args:
                goals["ratio_limit"] = _num(args["seedRatioLimit"], "seedRatioLimit")
            if "seedRatioMode" in args:
                goals["ratio_mode"] = _int(args["seedRatioMode"], "seedRatioMode")
            if "labels" in args:
                if not isinstance(args["labels"], list):
                    raise RpcError("labels must be a list of strings")
                comp["labels"] = [str(x) for x in args["labels"]]
            c.save(self.daemon, tid)
            if goals:
                await self.daemon.set_goals(tid, goals)  # ratio mode 0 global, 1 own, 2 unlimited
            if any(k in args for k in ("downloadLimit", "uploadLimit", "downloadLimited", "uploadLimited")):
                await self.daemon.set_limits(
                    tid,
                    download=int(comp.get("dl_kb", 0)) * KB if comp.get("dl_on") else 0,
                    upload=int(comp.get("ul_kb", 0)) * KB if comp.get("ul_on") else 0,
                )
            await self._set_files(tid, args)
            if "queuePosition" in args:
                self._queue_position(tid, _int(args["queuePosition"], "queuePosition"))
            location = _opt_str(args, "location")
            if location:
                await self.daemon.move(tid, location)
        return {}

    def _queue_position(self, tid: str, pos: int) -> None:
        self.daemon.set_queue_position(tid, pos)

    async def _set_files(self, tid: str, args: dict[str, Any]) -> None:
        """files-wanted / files-unwanted / priority-high|normal|low (file indices; [] = all files)."""
        keys = ("files-wanted", "files-unwanted", *_TR_PRIORITY)
        if not any(k in args for k in keys):
            return
        files = self.daemon.details(tid)["files"]
        if not files and self.daemon.record(tid).magnet is not None:
            raise RpcError("the torrent has no metadata yet")
        comp = c.compat(self.daemon, tid)
        tr_prio: list[int] = list(comp.get("file_priorities") or [0] * len(files))[: len(files)]
        tr_prio += [0] * (len(files) - len(tr_prio))
        wanted = [f["priority"] > 0 for f in files]
        for key in keys:
            if key not in args:
                continue
            chosen = _indices(args[key], len(files), key)
            for i in chosen:
                if key == "files-wanted":
                    wanted[i] = True
                elif key == "files-unwanted":
                    wanted[i] = False
                else:
                    tr_prio[i] = _TR_PRIORITY[key]
        comp["file_priorities"] = tr_prio
        c.save(self.daemon, tid)
        engine = [(MAX_PRIORITY if p > 0 else 1) if w else 0 for p, w in zip(tr_prio, wanted, strict=True)]
        await self.daemon.set_priorities(tid, engine)

    async def torrent_get(self, args: dict[str, Any]) -> dict[str, Any]:
        with gc_paused():  # thousands of rows and their JSON (issue 24)
            return self._torrent_get(args)

    def _torrent_get(self, args: dict[str, Any]) -> dict[str, Any]:
        fields = args.get("fields")
        if not isinstance(fields, list) or not fields:
            raise RpcError("no fields specified")
        names = [f for f in fields if isinstance(f, str)]
        statuses = {s["id"]: s for s in self.daemon.list()}
        position = {tid: i for i, tid in enumerate(c.queue_order(self.daemon))}
        # ``transmission-remote -l`` asks for the peer counts: the peer list alone, not every
        # torrent's details (files, pieces ...), and no queue positions per torrent (issue 24)
        need_details = any(f in _DETAIL_FIELDS and f not in _PEER_FIELDS for f in names)
        need_peers = any(f in _PEER_FIELDS for f in names)
        positions = self.daemon.positions() if need_details else None
        rows: list[dict[str, Any]] = []
        selected = self.select(args.get("ids"))
        ratio = self.daemon.automation_settings()["seed_ratio_limit"]
        wanted = tuple(names)
        seeding_time = "secondsSeeding" in names  # the status dict is kept as the seeding time grows
        cache = self._rows
        getters = _getters(names)
        for tid in selected:
            if need_details:
                st = self.daemon.details(tid, positions)
                x = _Row(self.daemon, tid, st, position.get(tid, 0), ratio, c.compat(self.daemon, tid))
                rows.append({k: get(x, st) for k, get in getters})
                continue
            # the list's fields: the row is kept while nothing it is made of changed. The daemon
            # gives the same status dict again only while the torrent has no peer connected and
            # nothing moves, and makes a new one when its record's ``compat`` (number, labels,
            # limits) changed: a kept row of the same dict needs neither the peer list nor the
            # record (10,000 idle torrents: their engine objects were read at every call; issue 24)
            base = statuses[tid]
            key = (wanted, position.get(tid, 0), ratio, base["seeding_time"] if seeding_time else None)
            row = cache.get(tid, base, key)
            if row is None:  # one look-up of the torrent; its peer list beside the status, not in a copy
                comp, peers = self.daemon.row_inputs(tid, peers=need_peers)
                x = _Row(self.daemon, tid, base, position.get(tid, 0), ratio, comp, peers)
                row = {k: get(x, base) for k, get in getters}
                cache.put(tid, base, key, row)
            rows.append(row)
        cache.keep(statuses)
        out: dict[str, Any]
        if args.get("format") == "table":
            table: list[list[Any]] = [names]
            table += [[row.get(k) for k in names] for row in rows]
            out = {"torrents": table}
        else:  # each kept row's JSON is kept too
            out = {"torrents": cache.array(zip(selected, rows, strict=True))}
        if args.get("ids") == "recently-active":
            out["removed"] = []
        return out

    # -- session -------------------------------------------------------------------------------

    async def session_get(self, args: dict[str, Any]) -> dict[str, Any]:
        d = self.daemon
        limits = d.global_limits()
        tr = d.setting("transmission", {}) or {}
        auto = d.automation_settings()
        values: dict[str, Any] = {
            "version": f"3.00 (bitswarm {__version__})",
            "rpc-version": RPC_VERSION,
            "rpc-version-minimum": 14,
            "rpc-version-semver": "5.2.0",
            "session-id": self.session_id,
            "download-dir": str(d.download_dir),
            "download-dir-free-space": _free(d.download_dir),
            "incomplete-dir": str(d.download_dir),
            "incomplete-dir-enabled": False,
            "config-dir": str(d.data.root),
            "peer-port": d.session.port,
            "peer-port-random-on-start": False,
            "port-forwarding-enabled": False,
            "dht-enabled": getattr(d.session, "dht", None) is not None,
            "pex-enabled": True,
            "lpd-enabled": False,
            "utp-enabled": True,
            "encryption": {"require": "required", "prefer": "preferred"}.get(
                d.session.config.encryption.value, "tolerated"
            ),
            "speed-limit-down": tr.get("speed-limit-down", limits["download_limit"] // KB),
            "speed-limit-down-enabled": bool(limits["download_limit"]),
            "speed-limit-up": tr.get("speed-limit-up", limits["upload_limit"] // KB),
            "speed-limit-up-enabled": bool(limits["upload_limit"]),
            "alt-speed-down": auto["alt_speed_down"] // KB,
            "alt-speed-up": auto["alt_speed_up"] // KB,
            "alt-speed-enabled": auto["alt_speed_enabled"],
            "alt-speed-time-enabled": auto["alt_speed_time_enabled"],
            "alt-speed-time-begin": auto["alt_speed_time_begin"],
            "alt-speed-time-end": auto["alt_speed_time_end"],
            "alt-speed-time-day": auto["alt_speed_time_day"],
            "blocklist-enabled": auto["blocklist_enabled"],
            "blocklist-size": d.privacy.status()["blocklist_rules"],
            "blocklist-url": auto["blocklist_url"],
            "download-queue-enabled": auto["queue_downloads_enabled"],
            "download-queue-size": auto["queue_downloads_max"],
            "seed-queue-enabled": auto["queue_seeds_enabled"],
            "seed-queue-size": auto["queue_seeds_max"],
            "queue-stalled-enabled": auto["queue_stalled_enabled"],
            "queue-stalled-minutes": max(1, round(auto["queue_stalled_minutes"])),
            "seedRatioLimit": auto["seed_ratio_limit"],
            "seedRatioLimited": auto["seed_ratio_enabled"],
            "idle-seeding-limit": 30,
            "idle-seeding-limit-enabled": False,
            "peer-limit-global": 200,
            "peer-limit-per-torrent": 50,
            "rename-partial-files": False,
            "start-added-torrents": bool(tr.get("start-added-torrents", True)),
            "trash-original-torrent-files": False,
            "script-torrent-done-enabled": False,
            "script-torrent-done-filename": "",
            "cache-size-mb": 4,
            "units": {
                "speed-units": ["kB/s", "MB/s", "GB/s", "TB/s"],
                "speed-bytes": KB,
                "size-units": ["kB", "MB", "GB", "TB"],
                "size-bytes": KB,
                "memory-units": ["KiB", "MiB", "GiB", "TiB"],
                "memory-bytes": 1024,
            },
        }
        fields = args.get("fields")
        if isinstance(fields, list) and fields:
            return {k: v for k, v in values.items() if k in fields}
        return values

    async def session_set(self, args: dict[str, Any]) -> dict[str, Any]:
        d = self.daemon
        tr = dict(d.setting("transmission", {}) or {})
        for key in ("speed-limit-down", "speed-limit-up"):
            if key in args:
                tr[key] = _int(args[key], key)
        for key in ("speed-limit-down-enabled", "speed-limit-up-enabled", "start-added-torrents"):
            if key in args:
                tr[key] = bool(args[key])
        auto: dict[str, Any] = {}
        for key, (name, scale) in _SESSION_AUTOMATION.items():
            if key in args:
                value = args[key]
                if scale is bool:
                    auto[name] = bool(value)
                elif scale is str:
                    auto[name] = _str_arg(value, key)
                elif scale == 1.0:
                    auto[name] = _num(value, key)
                else:
                    auto[name] = _int(value, key) * int(scale)
        if auto:
            d.update_settings(auto)  # DaemonError (out of range) is the RPC's result text
        limits = d.global_limits()
        down_on = tr.get("speed-limit-down-enabled", bool(limits["download_limit"]))
        up_on = tr.get("speed-limit-up-enabled", bool(limits["upload_limit"]))
        d.set_setting("transmission", tr)
        if any(k.startswith("speed-limit-") for k in args):
            d.set_global_limits(
                download=int(tr.get("speed-limit-down", 0)) * KB if down_on else 0,
                upload=int(tr.get("speed-limit-up", 0)) * KB if up_on else 0,
            )
        location = _opt_str(args, "download-dir")
        if location:
            path = Path(location).expanduser()
            if not path.is_absolute():
                raise RpcError(f"download directory path is not absolute: {location}")
            await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
            d.download_dir = path
        return {}

    async def session_stats(self, args: dict[str, Any]) -> dict[str, Any]:
        st = self.daemon.stats()
        current = {
            "uploadedBytes": st["uploaded"],
            "downloadedBytes": st["downloaded"],
            "filesAdded": st["torrents"],
            "sessionCount": 1,
            "secondsActive": int(st["uptime"]),
        }
        return {
            "activeTorrentCount": st["active"],
            "pausedTorrentCount": st["paused"],
            "torrentCount": st["torrents"],
            "downloadSpeed": int(st["download_rate"]),
            "uploadSpeed": int(st["upload_rate"]),
            "cumulative-stats": current,
            "current-stats": current,
        }

    async def free_space(self, args: dict[str, Any]) -> dict[str, Any]:
        path = _opt_str(args, "path") or str(self.daemon.download_dir)
        try:
            usage = await asyncio.to_thread(shutil.disk_usage, path)
        except OSError as exc:
            raise RpcError(f"{path}: {exc.strerror or exc}") from None
        return {"path": path, "size-bytes": usage.free, "total_size": usage.total}

    async def blocklist_update(self, args: dict[str, Any]) -> dict[str, Any]:
        """Transmission downloads ``blocklist-url`` again; here the blocklist file or URL of the
        settings is loaded again (used at once while ``blocklist-enabled``)."""
        from bitswarm.daemon.privacy import blocklist_source
        from bitswarm.session.blocklist import BlocklistError

        settings = self.daemon.automation_settings()
        if not blocklist_source(settings):
            return {"blocklist-size": 0}  # nothing to load
        try:
            blocklist = await self.daemon.privacy.update(settings)
        except BlocklistError as exc:
            raise RpcError(str(exc)) from None
        return {"blocklist-size": blocklist.rules}

    async def port_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"port-is-open": False}


def mount(app: FastAPI, daemon: Daemon, token: str) -> TransmissionRPC:
    """Serve the RPC at ``/transmission/rpc`` and ``/transmission/rpc/`` (outside the OpenAPI schema)."""
    rpc = TransmissionRPC(daemon, token)
    for path in ("/transmission/rpc", "/transmission/rpc/"):
        app.add_api_route(path, rpc.endpoint, methods=["GET", "POST"], include_in_schema=False)
    return rpc


class _Row:
    """What one torrent's Transmission fields are made of, read once per torrent and call (the
    fields are module-level functions of it: a dict of ~70 closures per torrent was a third of a
    cold ``torrent-get``; issue 24)."""

    __slots__ = (
        "added", "comp", "daemon", "done", "downloaded", "error", "global_ratio", "has_meta", "left",
        "peers", "position", "state", "tid", "total", "uploaded", "wanted_size",
    )  # fmt: skip

    def __init__(
        self,
        daemon: Daemon,
        tid: str,
        s: dict[str, Any],
        position: int,
        global_ratio: Any,
        comp: dict[str, Any],
        peers: list[dict[str, Any]] | None = None,
    ) -> None:
        self.daemon = daemon
        #: the connected peers (``s["peer_list"]`` when not given: the details' status has it)
        self.peers: list[dict[str, Any]] = (s.get("peer_list") or []) if peers is None else peers
        self.tid = tid
        self.position = position
        self.global_ratio = global_ratio
        self.comp = comp  #: the record's ``compat``
        self.state = c.STATE_OF.get(s["state"], State.ERROR)
        self.wanted_size = int(s.get("wanted_size") or s.get("total_size") or 0)
        self.done = int(s.get("done_size") or 0)
        self.left = max(0, self.wanted_size - self.done)
        self.uploaded, self.downloaded = int(s.get("uploaded") or 0), int(s.get("downloaded") or 0)
        self.added = int(s.get("added_at") or 0)
        self.error = s.get("error")
        self.total = int(s.get("total_size") or 0)
        self.has_meta = bool(s.get("num_pieces"))


#: field name → its value from a :class:`_Row` and the status ``s`` (only requested fields are built)
_FIELDS: dict[str, Callable[[_Row, dict[str, Any]], Any]] = {
    "id": lambda r, s: n if type(n := r.comp.get("num")) is int else c.number(r.daemon, r.tid),
    "hashString": lambda r, s: r.tid,
    "name": lambda r, s: s["name"],
    # held by the queue: 3 download-wait, 5 seed-wait
    "status": lambda r, s: (
        (5 if s.get("progress", 0) >= 1.0 else 3) if s.get("held") else TRANSMISSION_STATUS[r.state]
    ),
    "error": lambda r, s: 3 if r.error else 0,
    "errorString": lambda r, s: r.error or "",
    "percentDone": lambda r, s: float(s.get("progress") or 0.0) if r.has_meta else 0.0,
    "percentComplete": lambda r, s: (r.done / r.total) if r.total else 0.0,
    "metadataPercentComplete": lambda r, s: 1.0 if r.has_meta else 0.0,
    "recheckProgress": lambda r, s: float(s.get("check_progress") or 0.0),
    "totalSize": lambda r, s: r.total,
    "sizeWhenDone": lambda r, s: r.wanted_size,
    "leftUntilDone": lambda r, s: r.left,
    "desiredAvailable": lambda r, s: r.left if s.get("seeds") else 0,
    "haveValid": lambda r, s: r.done,
    "haveUnchecked": lambda r, s: 0,
    "corruptEver": lambda r, s: 0,
    "downloadedEver": lambda r, s: r.downloaded,
    "uploadedEver": lambda r, s: r.uploaded,
    "uploadRatio": lambda r, s: c.ratio(r.uploaded, r.downloaded or r.done),
    "rateDownload": lambda r, s: int(s.get("download_rate") or 0),
    "rateUpload": lambda r, s: int(s.get("upload_rate") or 0),
    "eta": lambda r, s: int(s["eta"]) if s.get("eta") is not None and r.left else -1,
    "etaIdle": lambda r, s: -1,
    "isFinished": lambda r, s: bool(s.get("goal_reached")),
    "isStalled": lambda r, s: bool(s.get("stalled")),
    "peersConnected": lambda r, s: int(s.get("peers") or 0),
    "peersSendingToUs": lambda r, s: sum(1 for p in r.peers if p.get("download_rate")) if r.peers else 0,
    "peersGettingFromUs": lambda r, s: sum(1 for p in r.peers if p.get("upload_rate")) if r.peers else 0,
    "webseedsSendingToUs": lambda r, s: int(s.get("web_seeds") or 0),
    "peer-limit": lambda r, s: 50,
    "maxConnectedPeers": lambda r, s: 50,
    "peersFrom": lambda r, s: _peers_from(s),
    "downloadDir": lambda r, s: s["save_path"],
    "addedDate": lambda r, s: r.added,
    "activityDate": lambda r, s: c.now() if s.get("download_rate") or s.get("upload_rate") else r.added,
    "startDate": lambda r, s: r.added,
    "doneDate": lambda r, s: 0,
    "dateCreated": lambda r, s: 0,
    "editDate": lambda r, s: 0,
    "manualAnnounceTime": lambda r, s: -1,
    "secondsDownloading": lambda r, s: 0,
    "secondsSeeding": lambda r, s: int(s.get("seeding_time") or 0),
    "creator": lambda r, s: "",
    "source": lambda r, s: "",
    "comment": lambda r, s: s.get("comment") or "",
    "isPrivate": lambda r, s: bool(s.get("private")),
    "magnetLink": lambda r, s: s.get("magnet") or "",
    "pieceCount": lambda r, s: int(s.get("num_pieces") or 0),
    "pieceSize": lambda r, s: int(s.get("piece_length") or 0),
    "pieces": lambda r, s: base64.b64encode(bytes.fromhex(s.get("pieces") or "")).decode(),
    "downloadLimit": lambda r, s: int(r.comp.get("dl_kb", s.get("download_limit", 0) // KB)),
    "downloadLimited": lambda r, s: bool(s.get("download_limit")),
    "uploadLimit": lambda r, s: int(r.comp.get("ul_kb", s.get("upload_limit", 0) // KB)),
    "uploadLimited": lambda r, s: bool(s.get("upload_limit")),
    "honorsSessionLimits": lambda r, s: True,
    "bandwidthPriority": lambda r, s: 0,
    "seedRatioLimit": lambda r, s: float((s.get("goals") or {}).get("ratio_limit", r.global_ratio)),
    "seedRatioMode": lambda r, s: int((s.get("goals") or {}).get("ratio_mode", 0)),
    "seedIdleLimit": lambda r, s: 30,
    "seedIdleMode": lambda r, s: 0,
    "queuePosition": lambda r, s: r.position,
    "labels": lambda r, s: list(r.comp.get("labels", [])),
    "group": lambda r, s: "",
    "sequentialDownload": lambda r, s: False,
    "files": lambda r, s: _files(s),
    "file-count": lambda r, s: len(s["files"]),
    "fileStats": lambda r, s: _file_stats(s, r.comp),
    "priorities": lambda r, s: [st["priority"] for st in _file_stats(s, r.comp)],
    "wanted": lambda r, s: [1 if st["wanted"] else 0 for st in _file_stats(s, r.comp)],
    "primary-mime-type": lambda r, s: next((f["mime"] for f in s["files"] if f["mime"]), ""),
    "peers": lambda r, s: [_peer(p) for p in s["peer_list"]],
    "trackers": lambda r, s: [_tracker(i, t) for i, t in enumerate(s["trackers"])],
    "trackerStats": lambda r, s: [_tracker_stats(i, t) for i, t in enumerate(s["trackers"])],
    "webseeds": lambda r, s: [],
}


def _getters(names: list[str]) -> list[tuple[str, Callable[[_Row, dict[str, Any]], Any]]]:
    """(name, getter) of the known fields of ``names``, in order (unknown ones are left out)."""
    return [(k, _FIELDS[k]) for k in names if k in _FIELDS]


def _answer(out: dict[str, Any], headers: dict[str, str]) -> Response:
    body = dumps_with_raw(out)
    return Response(body, 200, headers=headers, media_type="application/json")


def _opt_str(args: dict[str, Any], key: str) -> str | None:
    value = args.get(key)
    if value is not None and not isinstance(value, str):
        raise RpcError(f"{key} must be a string")
    return value


def _int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1 << 40:
        raise RpcError(f"{key} must be a non-negative number")
    return int(value)


def _str_arg(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise RpcError(f"{key} must be a string")
    return value


def _num(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1e9:
        raise RpcError(f"{key} must be a non-negative number")
    return float(value)


def _indices(value: Any, count: int, key: str) -> list[int]:
    if not isinstance(value, list):
        raise RpcError(f"{key} must be a list of file indices")
    if not value:
        return list(range(count))
    out = []
    for i in value:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < count:
            raise RpcError(f"file index {i!r} out of range")
        out.append(i)
    return out


def _free(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return -1


def _files(s: dict[str, Any]) -> list[dict[str, Any]]:
    n = len(s["files"])
    return [
        {
            "name": c.file_name(s["name"], f["path"], n),
            "length": f["length"],
            "bytesCompleted": int(f["length"] * f["progress"]),
        }
        for f in s["files"]
    ]


def _file_stats(s: dict[str, Any], comp: dict[str, Any]) -> list[dict[str, Any]]:
    tr_prio = list(comp.get("file_priorities") or [])
    out = []
    for i, f in enumerate(s["files"]):
        prio = tr_prio[i] if i < len(tr_prio) else (1 if f["priority"] > 1 else 0)
        out.append(
            {
                "bytesCompleted": int(f["length"] * f["progress"]),
                "wanted": f["priority"] > 0,
                "priority": prio,
            }
        )
    return out


def _peer(p: dict[str, Any]) -> dict[str, Any]:
    host, _, port = str(p["address"]).rpartition(":")
    down, up = int(p.get("download_rate") or 0), int(p.get("upload_rate") or 0)
    flags = ("D" if down else "") + ("U" if up else "") + ("E" if p.get("encrypted") else "")
    flags += "T" if p.get("transport") == "utp" else ""
    return {
        "address": host.strip("[]"),
        "port": int(port) if port.isdigit() else 0,
        "clientName": str(p.get("client") or ""),
        "progress": 1.0 if p.get("seed") else 0.0,
        "rateToClient": down,
        "rateToPeer": up,
        "flagStr": flags,
        "isEncrypted": bool(p.get("encrypted")),
        "isUTP": p.get("transport") == "utp",
        "isDownloadingFrom": bool(down),
        "isUploadingTo": bool(up),
        "isIncoming": False,
        "clientIsChoked": bool(p.get("choked")),
        "clientIsInterested": True,
        "peerIsChoked": bool(p.get("choking")),
        "peerIsInterested": False,
    }


def _peers_from(s: dict[str, Any]) -> dict[str, int]:
    return {
        "fromCache": 0, "fromDht": 0, "fromIncoming": 0, "fromLpd": 0, "fromLtep": 0, "fromPex": 0,
        "fromTracker": len(s["peer_list"]),
    }  # fmt: skip


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _tracker(i: int, t: dict[str, Any]) -> dict[str, Any]:
    url = str(t["url"])
    return {"id": i, "announce": url, "scrape": "", "tier": t["tier"], "sitename": _host(url)}


def _tracker_stats(i: int, t: dict[str, Any]) -> dict[str, Any]:
    """Transmission's tracker stats from the daemon's tracker row (its last announce, when known)."""
    url = str(t["url"])
    answered = t.get("status") == "ok"
    failed = t.get("status") == "error"
    last = int(t.get("last_announce") or 0)
    result = "Success" if answered else str(t.get("error") or "") if failed else ""
    return {
        **_tracker(i, t),
        "host": _host(url),
        "isBackup": False,
        "announceState": 1 if t.get("next_announce") else 0,  # waiting / inactive
        "scrapeState": 0,
        "hasAnnounced": bool(answered or failed),
        "hasScraped": False,
        "lastAnnounceResult": result,
        "lastAnnouncePeerCount": int(t.get("peers") or 0),
        "lastAnnounceStartTime": last,
        "lastAnnounceSucceeded": answered,
        "lastAnnounceTime": last,
        "lastAnnounceTimedOut": False,
        "lastScrapeResult": "",
        "lastScrapeStartTime": 0,
        "lastScrapeSucceeded": False,
        "lastScrapeTime": 0,
        "lastScrapeTimedOut": False,
        "nextAnnounceTime": int(t.get("next_announce") or 0),
        "nextScrapeTime": 0,
        "seederCount": _count(t.get("seeders")),
        "leecherCount": _count(t.get("leechers")),
        "downloadCount": -1,
    }


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int) else -1
