"""The daemon's IP blocklist and proxy settings (issue 21), applied to its session.

Settings (``automation.SPECS``): ``blocklist_enabled``; ``blocklist_path`` (a file, P2P/DAT/CIDR,
gzip'd or not) or else ``blocklist_url`` (http/https, fetched only when set, through the proxy);
``proxy`` (``socks5://[user:pass@]host:port``, applied when the daemon starts: the session opens no
uTP socket and no DHT node then). The list is (re)loaded in the background when the daemon starts
with it enabled, when one of the blocklist settings changes, and on demand (Transmission's
``blocklist-update``); a failed load keeps the previous list and says why in :meth:`status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from bitswarm.session.blocklist import Blocklist, BlocklistError
from bitswarm.session.blocklist_source import load_blocklist

if TYPE_CHECKING:
    from bitswarm.session import Session

log = logging.getLogger("bitswarm.daemon")

#: the settings whose change reloads the blocklist
BLOCKLIST_KEYS = frozenset({"blocklist_enabled", "blocklist_path", "blocklist_url"})


def blocklist_source(settings: dict[str, Any]) -> str:
    """Where the blocklist comes from: the path if set, else the URL ("" for neither)."""
    return str(settings.get("blocklist_path") or settings.get("blocklist_url") or "")


class Privacy:
    """Loads the blocklist the settings name into the session; its counts and last error."""

    def __init__(self, session: Session) -> None:
        self.session = session
        #: the last loaded list (kept while disabled, for ``blocklist-size``)
        self.loaded: Blocklist | None = None
        self.source = ""
        self.error: str | None = None
        self._task: asyncio.Task[Blocklist | None] | None = None

    def configure(self, settings: dict[str, Any]) -> None:
        """Apply the settings: load the list in the background when enabled, drop it when not."""
        if not settings.get("blocklist_enabled"):
            self._cancel()
            self.session.set_blocklist(None)
            return
        source = blocklist_source(settings)
        if not source:
            self.error = "blocklist enabled but neither blocklist_path nor blocklist_url is set"
            self.session.set_blocklist(None)
            return
        self._cancel()
        self._task = asyncio.get_running_loop().create_task(self.load(source, apply=True))

    async def load(self, source: str, *, apply: bool) -> Blocklist | None:
        """Load ``source`` (use it at once if ``apply``); None, with :attr:`error` set, on failure."""
        try:
            blocklist = await load_blocklist(source, proxy=self.session.config.proxy)
        except BlocklistError as exc:
            self.error = str(exc)
            log.warning("%s", exc)
            return None
        self.loaded, self.source, self.error = blocklist, source, None
        log.info("blocklist %s: %d rules, %d ranges", source, blocklist.rules, blocklist.ranges)
        if apply:
            closed = self.session.set_blocklist(blocklist)
            if closed:
                log.info("blocklist: closed %d connections it covers", closed)
        return blocklist

    async def update(self, settings: dict[str, Any]) -> Blocklist:
        """Load the list the settings name now (used only while enabled); BlocklistError says why not."""
        source = blocklist_source(settings)
        if not source:
            raise BlocklistError("no blocklist_path or blocklist_url is set")
        self._cancel()
        blocklist = await self.load(source, apply=bool(settings.get("blocklist_enabled")))
        if blocklist is None:
            raise BlocklistError(self.error or "blocklist not loaded")
        return blocklist

    def status(self) -> dict[str, Any]:
        """The session's counts (rules, ranges, refused) and the source and last error."""
        out = self.session.privacy_status()
        if self.loaded is not None and not out["blocklist_enabled"]:
            out["blocklist_rules"] = self.loaded.rules
            out["blocklist_ranges"] = self.loaded.ranges
        out["blocklist_source"] = self.source
        out["blocklist_error"] = self.error
        out["blocklist_loading"] = self._task is not None and not self._task.done()
        return out

    def _cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
