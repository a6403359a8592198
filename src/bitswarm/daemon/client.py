"""A small synchronous client of a running daemon's control API (``bitswarm ctl``, ``bitswarm top``)."""

from __future__ import annotations

import builtins
import os
from pathlib import Path
from typing import Any

from bitswarm.errors import BitswarmError

DEFAULT_API = "http://127.0.0.1:9091"


class DaemonClientError(BitswarmError):
    """The daemon refused a request or could not be reached (``status`` 0)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status

    @property
    def exit_code(self) -> int:
        """The ``bitswarm ctl`` exit code (``docs/cli.md``): 2 when the request was wrong — a bad
        token (401/403), no such torrent (404), a bad argument (any other 4xx); 1 when the daemon
        could not be reached, failed (5xx) or is not a bitswarm daemon."""
        return 2 if 400 <= self.status < 500 else 1


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "bitswarm" / "daemon"


def find_token(data_dir: str | os.PathLike[str] | None = None) -> str | None:
    """The token saved by a daemon in ``data_dir`` (default: the default data dir)."""
    path = Path(data_dir) if data_dir else default_data_dir()
    try:
        return (path / "token").read_text().strip() or None
    except OSError:
        return None


class DaemonClient:
    def __init__(self, api: str = DEFAULT_API, token: str | None = None, *, timeout: float = 30.0) -> None:
        if "://" not in api:
            api = "http://" + api
        self.api = api.rstrip("/")
        self.token = token
        import httpx  # not at module level: the daemon process imports this module (issue 24, RSS)

        self._http = httpx.Client(base_url=self.api + "/api/v1", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kw: Any) -> Any:
        headers = dict(kw.pop("headers", {}) or {})
        if self.token:  # every API request needs it, reads too
            headers["Authorization"] = f"Bearer {self.token}"
        import httpx

        try:
            reply = self._http.request(method, path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            why = str(exc) or type(exc).__name__  # a timeout has no text of its own
            raise DaemonClientError(f"cannot reach the daemon at {self.api}: {why}") from None
        if reply.status_code >= 400:
            try:
                message = reply.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = reply.text[:200]
            if reply.status_code in (401, 403):
                raise DaemonClientError(
                    f"the daemon at {self.api} refused the token (HTTP {reply.status_code}: {message}); "
                    "give it with --token, $BITSWARM_TOKEN or --data DIR (the daemon's data dir)",
                    reply.status_code,
                )
            raise DaemonClientError(f"HTTP {reply.status_code}: {message}", reply.status_code)
        try:
            return reply.json()
        except ValueError:
            raise DaemonClientError(f"{self.api}: not JSON (is this a bitswarm daemon?)") from None

    # -- operations ----------------------------------------------------------------------------

    def list(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/torrents")["torrents"])

    def resolve(self, ref: str) -> str:
        """A torrent id from an id, a unique id prefix, a 1-based list number or a unique name."""
        items = self.list()
        if ref.isdigit() and 0 < int(ref) <= len(items) and len(ref) < 6:
            return str(items[int(ref) - 1]["id"])
        low = ref.lower()
        hits = [t for t in items if t["id"].startswith(low)] or [t for t in items if t["name"] == ref]
        if not hits:
            hits = [t for t in items if low in t["name"].lower()]
        if len(hits) != 1:
            what = "no torrent matches" if not hits else "several torrents match"
            raise DaemonClientError(f"{what} {ref!r}", 404)
        return str(hits[0]["id"])

    def show(self, torrent_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/torrents/{torrent_id}"))

    def add_file(self, data: bytes, **opts: Any) -> dict[str, Any]:
        params = {k: v for k, v in opts.items() if v is not None and k in ("save_path", "paused")}
        if not opts.get("peers"):
            return dict(
                self.request(
                    "POST",
                    "/torrents",
                    content=data,
                    params={k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()},
                    headers={"Content-Type": "application/x-bittorrent"},
                )
            )
        import base64

        return self.add_json(torrent_base64=base64.b64encode(data).decode(), **opts)

    def add_json(self, **body: Any) -> dict[str, Any]:
        return dict(self.request("POST", "/torrents", json={k: v for k, v in body.items() if v is not None}))

    def pause(self, torrent_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/torrents/{torrent_id}/pause"))

    def resume(self, torrent_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/torrents/{torrent_id}/resume"))

    def recheck(self, torrent_id: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/torrents/{torrent_id}/recheck"))

    def move(self, torrent_id: str, save_path: str) -> dict[str, Any]:
        return dict(self.request("PUT", f"/torrents/{torrent_id}/location", json={"save_path": save_path}))

    def remove(self, torrent_id: str, *, delete_data: bool = False) -> dict[str, Any]:
        return dict(
            self.request(
                "DELETE", f"/torrents/{torrent_id}", params={"delete_data": str(delete_data).lower()}
            )
        )

    def set_priorities(self, torrent_id: str, priorities: builtins.list[int]) -> dict[str, Any]:
        return dict(
            self.request("PUT", f"/torrents/{torrent_id}/priorities", json={"priorities": priorities})
        )

    def set_limits(
        self, torrent_id: str | None = None, *, download: int | None = None, upload: int | None = None
    ) -> dict[str, Any]:
        body = {k: v for k, v in (("download", download), ("upload", upload)) if v is not None}
        path = f"/torrents/{torrent_id}/limits" if torrent_id else "/limits"
        return dict(self.request("PUT", path, json=body))

    def limits(self) -> dict[str, Any]:
        return dict(self.request("GET", "/limits"))

    def stats(self) -> dict[str, Any]:
        return dict(self.request("GET", "/stats"))
