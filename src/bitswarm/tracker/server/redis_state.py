"""Swarm state in Redis, so several tracker instances (or processes) share one swarm.

Layout per info-hash ``H`` (hex): sorted sets ``bs:H:l4``, ``bs:H:s4``, ``bs:H:l6``, ``bs:H:s6``
(leechers/seeders, IPv4/IPv6 — BEP 7) whose members are compact addresses (BEP 23) scored by expiry
time; a hash ``bs:H:id`` address → peer id; and one hash ``bs:done`` info-hash → completed count.

Announces are batched: one Lua script call (one round trip, atomic) carries a whole batch and runs,
for each announce in arrival order, exactly what a lone announce does — expire a bounded batch of
old members, record the peer, count, pick peers with ``ZRANDMEMBER``. One clock reading serves the
batch, so a key already swept clean, or already given its TTL, in this batch is not swept or touched
again (the result would be the same). The HTTP front end (and the
asyncio UDP fallback) call :meth:`RedisStore.announce`, which queues the announce: while one batch
is on its way to Redis the next one fills up, so under load one round trip serves many announces
and at rest an announce waits for nothing but its own round trip. The UDP worker thread calls
:meth:`RedisStore.announce_batch` with the announces of one ``recvmmsg`` batch over its own
synchronous connection. Keys carry a TTL so dead swarms vanish on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aioredis

from bitswarm.tracker.server.errors import TrackerServerError

#: most announces in one script call (bounds the time Redis is busy with one batch)
BATCH_MAX = 256

# KEYS: bs:done, then 5 per announce (own-family leechers, seeders, ids, other-family leechers,
# seeders). ARGV: now, ttl, then 4 per announce (address, peer id, info-hash, flags = seeder +
# 2 * event + 8 * with_ids + 16 * numwant). Returns one {seeders, leechers, compact peers (the
# addresses concatenated), peer ids (with_ids) in the same order} each.
_ANNOUNCE = """
local done, now, ttl = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local out, swept, kept = {}, {}, {}
for n = 0, (#ARGV - 2) / 4 - 1 do
  local k, a = 1 + n * 5, 2 + n * 4
  local leech, seed, ids, oleech, oseed = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5]
  local addr, pid, ih, flags = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], tonumber(ARGV[a + 4])
  local seeder, event = flags % 2, math.floor(flags / 2) % 4
  local with_ids, numwant = math.floor(flags / 8) % 2, math.floor(flags / 16)
  -- the other address family's sets are usually absent: one EXISTS instead of sweeping and
  -- counting two empty keys
  local others = redis.call('EXISTS', oleech, oseed) > 0
  local sweep = {leech, seed}
  if others then sweep = {leech, seed, oleech, oseed} end
  for _, key in ipairs(sweep) do
    if not swept[key] then
      local old = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, 64)
      if #old > 0 then
        redis.call('ZREM', key, unpack(old))
        redis.call('HDEL', ids, unpack(old))
      end
      -- nothing older than `now` is left: a later announce of this batch would find nothing
      if #old < 64 then swept[key] = true end
    end
  end
  if event == 3 then
    redis.call('ZREM', leech, addr)
    redis.call('ZREM', seed, addr)
    redis.call('HDEL', ids, addr)
  else
    if seeder == 1 then
      if event == 1 and not redis.call('ZSCORE', seed, addr) then
        redis.call('HINCRBY', done, ih, 1)
      end
      redis.call('ZREM', leech, addr)
      redis.call('ZADD', seed, now + ttl, addr)
    else
      redis.call('ZREM', seed, addr)
      redis.call('ZADD', leech, now + ttl, addr)
    end
    redis.call('HSET', ids, addr, pid)
    for _, key in ipairs({leech, seed, ids}) do
      -- the same `now` in the whole batch: a second EXPIRE of a key would set the same deadline
      if not kept[key] then
        redis.call('EXPIRE', key, ttl * 2)
        kept[key] = true
      end
    end
  end
  local seeders, leechers = redis.call('ZCARD', seed), redis.call('ZCARD', leech)
  if others then
    seeders = seeders + redis.call('ZCARD', oseed)
    leechers = leechers + redis.call('ZCARD', oleech)
  end
  local peers = {}
  if event ~= 3 and numwant > 0 then
    local sources = {leech}
    if seeder == 0 then sources = {leech, seed} end
    for _, key in ipairs(sources) do
      if #peers < numwant then
        for _, m in ipairs(redis.call('ZRANDMEMBER', key, numwant + 1)) do
          if m ~= addr and #peers < numwant then peers[#peers + 1] = m end
        end
      end
    end
  end
  local pids = {}
  if with_ids == 1 and #peers > 0 then pids = redis.call('HMGET', ids, unpack(peers)) end
  -- the peers as one compact string (BEP 23): one bulk reply instead of one per peer
  out[n + 1] = {seeders, leechers, table.concat(peers), pids}
end
return out
"""

#: one announce as queued: info-hash, compact address, peer id, seeder, event, numwant, with_ids
Announce = tuple[bytes, bytes, bytes, bool, int, int, bool]


def _keys(info_hash: bytes) -> tuple[str, str, str, str]:
    h = info_hash.hex()
    return f"bs:{h}:l4", f"bs:{h}:s4", f"bs:{h}:l6", f"bs:{h}:s6"


def _script_args(batch: Sequence[Announce], ttl: int) -> tuple[list[str], list[object]]:
    keys: list[str] = ["bs:done"]
    args: list[object] = [time.time(), ttl]
    for info_hash, addr, peer_id, seeder, event, numwant, with_ids in batch:
        h = info_hash.hex()
        if len(addr) == 18:
            keys += (f"bs:{h}:l6", f"bs:{h}:s6", f"bs:{h}:id", f"bs:{h}:l4", f"bs:{h}:s4")
        else:
            keys += (f"bs:{h}:l4", f"bs:{h}:s4", f"bs:{h}:id", f"bs:{h}:l6", f"bs:{h}:s6")
        args += (addr, peer_id, info_hash, seeder + 2 * event + 8 * with_ids + 16 * numwant)
    return keys, args


async def connect_async(url: str) -> Any:
    """A ``redis.asyncio`` client of ``url`` that answered a PING (bytes replies);
    :class:`TrackerServerError` when Redis cannot be reached."""
    client = aioredis.from_url(url, decode_responses=False)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        raise TrackerServerError(f"cannot reach Redis at {url}: {exc}") from None
    return client


class RedisStore:
    """Asynchronous swarm store over ``redis.asyncio`` (same semantics as MemoryStore), plus a
    synchronous batch call for the UDP worker thread."""

    is_async = True

    def __init__(self, url: str, ttl: int) -> None:
        self.url = url
        self.ttl = ttl
        self._redis: Any = None
        self._script: Any = None
        self._sync: Any = None
        self._sync_script: Any = None
        self._queue: list[tuple[Announce, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        #: script calls made and announces they carried (the batching at work, for tests and ops)
        self.batches = 0
        self.batched = 0

    async def connect(self) -> None:
        self._redis = await connect_async(self.url)
        self._script = self._redis.register_script(_ANNOUNCE)
        # the UDP worker thread's own connection (one thread: a pool of one)
        self._sync = redis.Redis.from_url(self.url, decode_responses=False, max_connections=2)
        self._sync_script = self._sync.register_script(_ANNOUNCE)

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        for _, fut in self._queue:
            if not fut.done():
                fut.set_exception(TrackerServerError("tracker store closed"))
        self._queue.clear()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def announce(
        self,
        info_hash: bytes,
        addr: bytes,
        peer_id: bytes,
        seeder: bool,
        event: int,
        numwant: int,
        *,
        with_ids: bool = False,
        compact: bool = False,
    ) -> tuple[int, int, Any]:
        """Like :meth:`MemoryStore.announce`; peers come as ``(addr, peer_id or None)``, or with
        ``compact`` (and not ``with_ids``) as one string of compact addresses (BEP 23).

        Queued: it rides in the next script call with every other announce queued meanwhile.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append(((info_hash, addr, peer_id, seeder, event, numwant, with_ids), fut))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        seeders, leechers, blob, pids = await fut
        if compact and not with_ids:
            return int(seeders), int(leechers), blob
        size = len(addr)
        addrs = [blob[i : i + size] for i in range(0, len(blob), size)]
        if not with_ids:
            return int(seeders), int(leechers), [(p, None) for p in addrs]
        return int(seeders), int(leechers), list(zip(addrs, pids, strict=True))

    async def _flush(self) -> None:
        """Send the queue in script calls of at most :data:`BATCH_MAX`, one call at a time."""
        try:
            while self._queue:
                batch = self._queue[:BATCH_MAX]
                del self._queue[:BATCH_MAX]
                keys, args = _script_args([item for item, _ in batch], self.ttl)
                try:
                    results = await self._script(keys=keys, args=args)
                except Exception as exc:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                self.batches += 1
                self.batched += len(batch)
                for (_, fut), result in zip(batch, results, strict=True):
                    if not fut.done():
                        fut.set_result(result)
        finally:
            self._flusher = None

    def announce_batch(self, batch: Sequence[Announce]) -> list[tuple[int, int, bytes]]:
        """Blocking: the announces of one UDP ``recvmmsg`` batch in one script call per
        :data:`BATCH_MAX`; each answer is ``(seeders, leechers, compact peers)``. For the UDP worker
        thread only (its own connection); raises on a Redis error."""
        out: list[tuple[int, int, bytes]] = []
        for start in range(0, len(batch), BATCH_MAX):
            part = batch[start : start + BATCH_MAX]
            keys, args = _script_args(part, self.ttl)
            results = self._sync_script(keys=keys, args=args)
            self.batches += 1
            self.batched += len(part)
            out += [(int(s), int(lc), blob) for s, lc, blob, _ in results]
        return out

    def scrape_many_sync(self, hashes: Sequence[bytes]) -> list[tuple[int, int, int]]:
        """Blocking :meth:`scrape_many` for the UDP worker thread."""
        now = time.time()
        pipe = self._sync.pipeline(transaction=False)
        for info_hash in hashes:
            for key in _keys(info_hash):
                pipe.zcount(key, now, "+inf")
            pipe.hget("bs:done", info_hash)
        return _scrape_result(len(hashes), pipe.execute())

    async def scrape_many(self, hashes: Sequence[bytes]) -> list[tuple[int, int, int]]:
        now = time.time()
        pipe = self._redis.pipeline(transaction=False)
        for info_hash in hashes:
            for key in _keys(info_hash):
                pipe.zcount(key, now, "+inf")
            pipe.hget("bs:done", info_hash)
        return _scrape_result(len(hashes), await pipe.execute())

    async def counts(self) -> tuple[int, int, int]:
        """``(torrents, seeders, leechers)`` by scanning keys (for /stats; O(keys))."""
        now = time.time()
        torrents: set[bytes] = set()
        seeders = leechers = 0
        async for key in self._redis.scan_iter(match="bs:*:[ls][46]", count=1000):
            n = await self._redis.zcount(key, now, "+inf")
            if n:
                torrents.add(key.split(b":")[1])
                if key.endswith((b":s4", b":s6")):
                    seeders += n
                else:
                    leechers += n
        return len(torrents), seeders, leechers


def _scrape_result(count: int, res: list[Any]) -> list[tuple[int, int, int]]:
    out = []
    for i in range(count):
        l4, s4, l6, s6, done = res[i * 5 : i * 5 + 5]
        out.append((s4 + s6, int(done or 0), l4 + l6))
    return out
