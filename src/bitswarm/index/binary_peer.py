"""A peer of the binary index protocol (seed 001), as ``bitswarm index-peer`` runs it.

:func:`sharing` registers a folder's files (``name|MB|sha1``), logs in with the port its file server
listens on (the 4th LOGIN line, so SEARCH results carry it), sends KEEP_ALIVE every 5 minutes, sends
REGISTER_UPDATE when :meth:`SharingPeer.update` finds the folder changed, logs in again when the
connection is lost, and sends LOGOUT on exit.
:func:`logged_in` opens a logged-in connection for the calls the seed only allows after LOGIN
(SEARCH, BROWSE, SHOW_PEERS); :func:`fetch` downloads a SEARCH hit from the peer that hosts it
(:mod:`bitswarm.index.peer_files`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bitswarm.index.binary import MAX_FIELD, SearchHit, SharedFile
from bitswarm.index.binary_client import (
    KEEP_ALIVE_EVERY,
    BinaryIndexClient,
    BinaryIndexError,
    BinaryIndexRefused,
)
from bitswarm.index.peer_files import (
    LocalFile,
    PeerFileError,
    PeerFileServer,
    download,
    file_url,
    scan_folder,
    size_bound,
)

log = logging.getLogger("bitswarm.index.binary_peer")


@dataclass(frozen=True, slots=True)
class Account:
    """Where the index is and who this peer is (``peer_id``: an id from an earlier REGISTER)."""

    host: str
    port: int
    username: str
    password: str
    peer_id: str | None = None
    timeout: float = 10.0


def shared(files: Sequence[LocalFile]) -> tuple[SharedFile, ...]:
    return tuple(SharedFile(f.name, f.size_mb, f.sha1) for f in files)


async def _shareable(directory: str | Path) -> list[LocalFile]:
    """The folder's files whose names the protocol can carry (no ``|``, newline or NUL, at most
    1024 characters); the others are left out with a warning."""
    files = []
    for f in await scan_folder(directory):
        if len(f.name) > MAX_FIELD or any(c in f.name for c in "|\n\x00"):
            log.warning("not sharing %r: seed 001 cannot carry that file name", f.name)
        else:
            files.append(f)
    return files


@dataclass
class SharingPeer:
    """A registered, logged-in peer serving ``directory`` (see :func:`sharing`)."""

    account: Account
    client: BinaryIndexClient
    server: PeerFileServer
    directory: Path
    peer_id: str
    port: int
    files: list[LocalFile] = field(default_factory=list)

    async def update(self) -> bool:
        """Rescan the folder; when its files changed, REGISTER_UPDATE the new list (True)."""
        files = await _shareable(self.directory)
        if shared(files) == shared(self.files):
            return False
        self.server.set_files(files)
        a = self.account
        await self.client.register_update(a.username, a.password, self.peer_id, shared(files))
        self.files = files
        return True

    async def keep_online(
        self, interval: float = KEEP_ALIVE_EVERY, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> None:
        """KEEP_ALIVE every ``interval`` seconds until cancelled. When one fails (the connection was
        lost, the index restarted or forgot the peer) connect again, REGISTER_UPDATE the files (a
        fresh REGISTER if the id is gone) and LOGIN; a failure there is retried at the next tick."""
        while True:
            await sleep(interval)
            try:
                await self.client.keep_alive(self.peer_id)
                continue
            except BinaryIndexError as exc:
                log.warning("KEEP_ALIVE failed (%s): logging in again", exc)
            try:
                await self._login_again()
            except BinaryIndexError as exc:
                log.warning("cannot log in to the index again: %s", exc)

    async def _login_again(self) -> None:
        a = self.account
        await self.client.aclose()
        self.client = await BinaryIndexClient.connect(a.host, a.port, timeout=a.timeout)
        try:
            await self.client.register_update(a.username, a.password, self.peer_id, shared(self.files))
        except BinaryIndexRefused:
            self.peer_id = await self.client.register(a.username, a.password, shared(self.files))
            log.warning("the index forgot peer id; registered again as %s", self.peer_id)
        await self.client.login(a.username, a.password, self.peer_id, self.port)


async def _register(client: BinaryIndexClient, account: Account, files: tuple[SharedFile, ...]) -> str:
    if account.peer_id is None:
        return await client.register(account.username, account.password, files)
    await client.register_update(account.username, account.password, account.peer_id, files)
    return account.peer_id


@contextlib.asynccontextmanager
async def sharing(
    account: Account,
    directory: str | Path,
    *,
    listen_host: str = "0.0.0.0",
    listen_port: int = 0,
    keep_alive_every: float = KEEP_ALIVE_EVERY,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[SharingPeer]:
    """Serve ``directory``'s files, REGISTER them (REGISTER_UPDATE when ``account.peer_id`` is
    given), LOGIN with the file server's port and keep alive until the block ends; then LOGOUT."""
    files = await _shareable(directory)
    async with PeerFileServer(files) as server:
        port = await server.start(listen_host, listen_port)
        client = await BinaryIndexClient.connect(account.host, account.port, timeout=account.timeout)
        try:
            peer_id = await _register(client, account, shared(files))
            await client.login(account.username, account.password, peer_id, port)
        except BaseException:
            await client.aclose()
            raise
        peer = SharingPeer(account, client, server, Path(directory), peer_id, port, files)
        keeper = asyncio.create_task(peer.keep_online(keep_alive_every, sleep))
        try:
            yield peer
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            with contextlib.suppress(BinaryIndexError):
                await peer.client.logout(account.username, account.password, peer.peer_id)
            await peer.client.aclose()


@contextlib.asynccontextmanager
async def logged_in(account: Account) -> AsyncIterator[BinaryIndexClient]:
    """A connection logged in as ``account``, for the calls the seed allows only after LOGIN.

    With ``account.peer_id`` (a peer that :func:`sharing` runs elsewhere) this LOGINs with that id
    and does not LOGOUT: the sharing process owns the peer's online state and logs out when it quits.
    Without one, a fresh peer id is REGISTERed with no files and logged out on exit (the seed's
    REGISTER without an id drops the account's older peer ids: use ``peer_id`` for an account that
    is sharing)."""
    async with await BinaryIndexClient.connect(account.host, account.port, timeout=account.timeout) as client:
        peer_id = account.peer_id or await client.register(account.username, account.password, ())
        await client.login(account.username, account.password, peer_id)
        try:
            yield client
        finally:
            if account.peer_id is None:
                with contextlib.suppress(BinaryIndexError):
                    await client.logout(account.username, account.password, peer_id)


def pick(hits: Sequence[SearchHit], name: str) -> list[SearchHit]:
    """The hits to try for ``name``: exact file-name matches (else all), reachable holders only."""
    exact = [h for h in hits if h.filename == name]
    return [h for h in exact or hits if h.peer_port and h.peer_ip and h.sha1]


async def fetch(
    hits: Sequence[SearchHit], directory: str | Path, *, timeout: float = 60.0
) -> tuple[SearchHit, Path]:
    """Download the first hit that a holder serves, SHA-1 checked; PeerFileError when none does."""
    errors = []
    for hit in hits:
        url = file_url(hit.peer_ip, hit.peer_port, sha1=hit.sha1)
        try:
            got = await download(
                url,
                directory,
                hit.filename,
                sha1=hit.sha1,
                timeout=timeout,
                max_bytes=size_bound(hit.size_mb),
            )
            return hit, got
        except PeerFileError as exc:
            log.info("download from %s failed: %s", url, exc)
            errors.append(str(exc))
    if not errors:
        raise PeerFileError("no peer holding the file is reachable (no hit with an address and a sha1)")
    raise PeerFileError(f"no holder served the file: {errors[-1]}")


__all__ = ["Account", "SharingPeer", "fetch", "logged_in", "pick", "shared", "sharing"]
