"""Swarm state in Redis, so several tracker instances (or processes) share one swarm.

Layout per info-hash ``H`` (hex): sorted sets ``bs:H:l4``, ``bs:H:s4``, ``bs:H:l6``, ``bs:H:s6``
(leechers/seeders, IPv4/IPv6 — BEP 7) whose members are compact addresses (BEP 23) scored by expiry
time; a hash ``bs:H:id`` address → peer id; and one hash ``bs:done`` info-hash → completed count.
Each announce is one Lua script call (one round trip, atomic): it expires a bounded batch of old
members, records the peer, counts, and picks peers with ``ZRANDMEMBER``. Keys carry a TTL so dead
swarms vanish on their own.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from bitswarm.tracker.server.errors import TrackerServerError

_ANNOUNCE = """
local leech, seed, ids, done, oleech, oseed = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local addr, pid = ARGV[1], ARGV[2]
local seeder, event, numwant = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now, ttl, ih, with_ids = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9])
for _, k in ipairs({leech, seed, oleech, oseed}) do
  local old = redis.call('ZRANGEBYSCORE', k, '-inf', now, 'LIMIT', 0, 64)
  if #old > 0 then
    redis.call('ZREM', k, unpack(old))
    redis.call('HDEL', ids, unpack(old))
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
  for _, k in ipairs({leech, seed, ids}) do redis.call('EXPIRE', k, ttl * 2) end
end
local seeders = redis.call('ZCARD', seed) + redis.call('ZCARD', oseed)
local leechers = redis.call('ZCARD', leech) + redis.call('ZCARD', oleech)
local peers = {}
if event ~= 3 and numwant > 0 then
  local sources = {leech}
  if seeder == 0 then sources = {leech, seed} end
  for _, k in ipairs(sources) do
    if #peers < numwant then
      for _, m in ipairs(redis.call('ZRANDMEMBER', k, numwant + 1)) do
        if m ~= addr and #peers < numwant then peers[#peers + 1] = m end
      end
    end
  end
end
local pids = {}
if with_ids == 1 and #peers > 0 then pids = redis.call('HMGET', ids, unpack(peers)) end
return {seeders, leechers, peers, pids}
"""


def _keys(info_hash: bytes) -> tuple[str, str, str, str]:
    h = info_hash.hex()
    return f"bs:{h}:l4", f"bs:{h}:s4", f"bs:{h}:l6", f"bs:{h}:s6"


class RedisStore:
    """Asynchronous swarm store over ``redis.asyncio`` (same semantics as MemoryStore)."""

    is_async = True

    def __init__(self, url: str, ttl: int) -> None:
        self.url = url
        self.ttl = ttl
        self._redis: Any = None
        self._script: Any = None

    async def connect(self) -> None:
        self._redis = aioredis.from_url(self.url, decode_responses=False)
        try:
            await self._redis.ping()
        except Exception as exc:
            await self._redis.aclose()
            raise TrackerServerError(f"cannot reach Redis at {self.url}: {exc}") from None
        self._script = self._redis.register_script(_ANNOUNCE)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

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
    ) -> tuple[int, int, list[tuple[bytes, bytes | None]]]:
        """Like :meth:`MemoryStore.announce`; peers come as ``(addr, peer_id or None)``."""
        l4, s4, l6, s6 = _keys(info_hash)
        mine, other = ((l6, s6), (l4, s4)) if len(addr) == 18 else ((l4, s4), (l6, s6))
        ids = f"bs:{info_hash.hex()}:id"
        seeders, leechers, peers, pids = await self._script(
            keys=[mine[0], mine[1], ids, "bs:done", other[0], other[1]],
            args=[
                addr,
                peer_id,
                int(seeder),
                event,
                numwant,
                time.time(),
                self.ttl,
                info_hash,
                int(with_ids),
            ],
        )
        if not with_ids:
            return int(seeders), int(leechers), [(p, None) for p in peers]
        return int(seeders), int(leechers), list(zip(peers, pids, strict=True))

    async def scrape_many(self, hashes: Sequence[bytes]) -> list[tuple[int, int, int]]:
        now = time.time()
        pipe = self._redis.pipeline(transaction=False)
        for info_hash in hashes:
            for key in _keys(info_hash):
                pipe.zcount(key, now, "+inf")
            pipe.hget("bs:done", info_hash)
        res = await pipe.execute()
        out = []
        for i in range(len(hashes)):
            l4, s4, l6, s6, done = res[i * 5 : i * 5 + 5]
            out.append((s4 + s6, int(done or 0), l4 + l6))
        return out

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
