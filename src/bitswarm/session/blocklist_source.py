"""Loading a :class:`~bitswarm.session.blocklist.Blocklist` from a file or an http(s) URL.

A URL is fetched only when the user gives one (``--blocklist URL``, the daemon's ``blocklist_url``);
through httpx, bounded in size and time, through the session's proxy when one is set. Reading a file
and parsing run in a thread: a 30 MiB list must not stall the event loop.
"""

from __future__ import annotations

import asyncio
import os

from bitswarm.session.blocklist import MAX_SIZE, Blocklist, BlocklistError

#: Seconds a blocklist download may take altogether.
FETCH_TIMEOUT = 120.0


def is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


async def fetch_blocklist_bytes(
    url: str, *, proxy: str | None = None, timeout: float = FETCH_TIMEOUT, max_size: int = MAX_SIZE
) -> bytes:
    """The body at ``url`` (at most ``max_size`` bytes); BlocklistError on any failure."""
    import httpx

    from bitswarm.session.proxy import httpx_proxy

    try:
        async with (
            asyncio.timeout(timeout),
            httpx.AsyncClient(
                follow_redirects=True, trust_env=False, timeout=httpx.Timeout(timeout),
                proxy=httpx_proxy(proxy),
            ) as client,
            client.stream("GET", url) as response,
        ):  # fmt: skip
            if response.status_code != 200:
                raise BlocklistError(f"blocklist {url}: HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_size:
                    raise BlocklistError(f"blocklist {url}: larger than {max_size} bytes")
            return bytes(body)
    except TimeoutError:
        raise BlocklistError(f"blocklist {url}: timed out after {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise BlocklistError(f"blocklist {url}: {exc or type(exc).__name__}") from None


def _read_file(path: str, max_size: int) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(max_size + 1)
    except OSError as exc:
        raise BlocklistError(f"blocklist {path}: {exc.strerror or exc}") from None
    if len(data) > max_size:
        raise BlocklistError(f"blocklist {path}: larger than {max_size} bytes")
    return data


async def load_blocklist(
    source: str | os.PathLike[str], *, proxy: str | None = None, max_size: int = MAX_SIZE
) -> Blocklist:
    """A blocklist from a file path or an http(s) URL, gzip'd or not; BlocklistError on failure."""
    src = os.fspath(source)
    if is_url(src):
        data = await fetch_blocklist_bytes(src, proxy=proxy, max_size=max_size)
    else:
        data = await asyncio.to_thread(_read_file, src, max_size)
    try:
        return await asyncio.to_thread(Blocklist.parse, data, max_size=max_size)
    except BlocklistError as exc:
        raise BlocklistError(f"blocklist {src}: {exc}") from None
