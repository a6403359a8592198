"""Write-behind sync of a :class:`~.cluster.ClusterStore` with the other instances through Redis.

Redis holds two keys (prefix ``bs:cluster:``):

- ``log``: a stream; each sync of each instance adds one entry ``{i: instance id, p: peers blob,
  c: completed blob}`` (formats in :mod:`.cluster`), trimmed to the last ``remote_ttl`` seconds
  (``XADD … MINID ~``), which holds every live peer at least once (each owner refreshes its
  peers once per ``refresh_every`` < ``remote_ttl``);
- ``done``: a hash info-hash → completed count, the cluster's totals.

Every ``sync_every`` seconds (``--redis-sync``, default 0.25) one script call does it all in one
round trip: add this instance's entry (if anything changed), add its completed increments to
``done``, trim, and return the entries added since the last one this instance read (its own
included, skipped by id). A peer announced to one instance is therefore in every other instance's
answers after at most about two sync intervals (the next sync of the first, then the next sync of
the second) plus one round trip. A starting instance reads ``done`` and replays the whole stream
before it opens its sockets, so it answers with the cluster's current swarms at once.

Crash loss: an instance killed with SIGKILL loses the changes of its last sync interval (a joined
peer reappears in the other instances at its next announce); its peers already published stay in
the others until their ``remote_ttl``. If Redis is down, announces are still answered from memory;
the unsent changes are kept (up to :data:`PENDING_MAX` bytes) and sent when Redis answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from typing import Any

from bitswarm.tracker.server.cluster import ClusterStore, pack_journal
from bitswarm.tracker.server.redis_state import connect_async

log = logging.getLogger("bitswarm.tracker.server")

LOG_KEY = "bs:cluster:log"
DONE_KEY = "bs:cluster:done"
#: entries read per call (more are read at once in further calls)
READ_COUNT = 512
#: unsent peer changes kept while Redis is unreachable
PENDING_MAX = 64 << 20
#: seconds one sync may take before it is abandoned (its changes wait for the next)
SYNC_TIMEOUT = 10.0

# KEYS: log, done. ARGV: instance id, last entry id read ('' = none), peers blob, completed blob,
# milliseconds of log to keep, entries to return. Returns {Redis time in ms, entries after last}.
_SYNC = """
local log, done = KEYS[1], KEYS[2]
local me, last, peers, comp = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local keep, count = tonumber(ARGV[5]), tonumber(ARGV[6])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if #peers > 0 or #comp > 0 then
  redis.call('XADD', log, 'MINID', '~', now - keep, '*', 'i', me, 'p', peers, 'c', comp)
  for i = 1, #comp - 23, 24 do
    local b1, b2, b3, b4 = string.byte(comp, i + 20, i + 23)
    redis.call('HINCRBY', done, string.sub(comp, i, i + 19), ((b1 * 256 + b2) * 256 + b3) * 256 + b4)
  end
else
  redis.call('XTRIM', log, 'MINID', '~', now - keep)
end
local from = '-'
if last ~= '' then from = '(' .. last end
return {now, redis.call('XRANGE', log, from, '+', 'COUNT', count)}
"""


def _ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


class RedisSync:
    """Connects ``store`` (guarded by ``lock``) to the cluster behind ``url``."""

    def __init__(self, url: str, store: ClusterStore, lock: threading.Lock) -> None:
        self.url = url
        self.store = store
        self.lock = lock
        self.instance = os.urandom(8).hex().encode()
        self._redis: Any = None
        self._script: Any = None
        self._last = b""
        self._pending = (b"", b"")
        #: syncs done, syncs failed and other instances' records merged (for tests and ops)
        self.syncs = 0
        self.failures = 0
        self.merged = 0

    async def connect(self) -> None:
        self._redis = await connect_async(self.url)
        self._script = self._redis.register_script(_SYNC)

    async def load(self) -> int:
        """Take the cluster's current state (before serving); returns records merged."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.time()
        pipe.hgetall(DONE_KEY)
        pipe.xrevrange(LOG_KEY, count=1)
        (secs, micros), done, newest = await pipe.execute()
        now_ms = secs * 1000 + micros // 1000
        store = self.store
        with self.lock:
            store.load_completed({bytes(h): int(c) for h, c in done.items()})
        if not newest:
            return 0
        end = newest[0][0]
        start = b"-"
        merged = 0
        while True:
            entries = await self._redis.xrange(LOG_KEY, start, end, count=READ_COUNT)
            with self.lock:
                for entry_id, fields in entries:
                    merged += store.merge(fields.get(b"p", b""), max(0, now_ms - _ms(entry_id)) // 1000)
            if len(entries) < READ_COUNT:
                break
            start = b"(" + entries[-1][0]
        self._last = end
        return merged

    async def sync(self) -> None:
        """Publish this instance's changes and merge everyone else's (one round trip, more while
        a backlog of entries remains)."""
        store = self.store
        with self.lock:
            journal, refresh, done = store.take_changes()
        peers = self._pending[0] + pack_journal(journal) + refresh  # packed outside the lock
        done = self._pending[1] + done
        if len(peers) > PENDING_MAX:  # Redis gone for long: the refresh pass repairs the others
            log.warning("tracker Redis sync: dropping %d bytes of unsent peer changes", len(peers))
            peers = b""
        # kept until Redis took them (an error or a cancelled call leaves them for the next sync)
        self._pending = (peers, done)
        keep_ms = store.remote_ttl * 1000
        for _ in range(64):  # bounded: 64 × READ_COUNT entries per sync
            now_ms, entries = await self._script(
                keys=[LOG_KEY, DONE_KEY],
                args=[self.instance, self._last, peers, done, keep_ms, READ_COUNT],
            )
            self._pending = (b"", b"")
            peers = done = b""
            self.syncs += 1
            if not entries:
                return
            with self.lock:
                for entry_id, flat in entries:
                    fields = dict(zip(flat[::2], flat[1::2], strict=True))
                    if fields.get(b"i") != self.instance:
                        age = max(0, now_ms - _ms(entry_id)) // 1000
                        self.merged += store.merge(fields.get(b"p", b""), age)
                        store.merge_completed(fields.get(b"c", b""))
            self._last = entries[-1][0]
            if len(entries) < READ_COUNT:
                return

    async def run(self) -> None:
        """Sync every ``sync_every`` seconds until cancelled."""
        loop = asyncio.get_running_loop()
        every = self.store.sync_every
        spent = 0.0
        down = False
        while True:
            await asyncio.sleep(max(0.0, every - spent))
            started = loop.time()
            try:
                await asyncio.wait_for(self.sync(), SYNC_TIMEOUT)
            except Exception as exc:  # keep answering from memory; the changes go out once Redis is back
                self.failures += 1
                if not down:  # once per outage
                    log.warning("tracker Redis sync failed (retrying every %.2f s): %r", every, exc)
                down = True
            else:
                if down:
                    log.warning("tracker Redis sync works again")
                down = False
            spent = loop.time() - started

    async def close(self) -> None:
        """Publish what is left, then disconnect."""
        if self._redis is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sync(), 5)
        await self._redis.aclose()
        self._redis = None
