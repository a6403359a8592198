"""A peer of the CentralizedP2P REST API (seed 002), as ``bitswarm centralized-peer`` runs it.

* :class:`CentralizedClient` — ``POST /resource``, ``POST /heartbeat`` and ``GET /resource`` (the
  resource name both as the seed's GET body and as a ``?resource_name=`` query).
* :func:`sharing` — serve a folder's files on the listen port (:mod:`bitswarm.index.peer_files`),
  register each with ``peer_port`` = that port and its SHA-1 as ``resource_hash``, heartbeat until
  the block ends.
* :func:`fetch_resource` — find the holders of a name and download from the first that serves it.
* :class:`ActionServer` — the peer's command interface on the action port: one command per line
  (:func:`parse_command`), one JSON object per reply line.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import shlex
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bitswarm.errors import BitswarmError
from bitswarm.index import peer_files as pf

log = logging.getLogger("bitswarm.index.centralized_peer")

#: Seconds between heartbeats (the index marks a peer offline after 600 s without one).
HEARTBEAT_EVERY = 300.0
#: The index's default HTTP port (``bitswarm index``), used when SERVER_IP has no port.
DEFAULT_SERVER_PORT = 42070
_SHA1 = re.compile(r"[0-9a-fA-F]{40}")


class CentralizedError(BitswarmError):
    """The server refused a call or could not be reached, or no holder served a resource.
    ``exit_code``: the command line's code (``docs/cli.md``): 1 when the operation failed at run time
    (unreachable, not JSON, no holder), 2 when the server refused the request."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class Holder:
    """A peer ``GET /resource`` lists as holding a resource."""

    peer_id: str
    ip: str
    port: int
    online: bool
    name: str
    resource_hash: str


class CentralizedClient:
    """The seed-002 calls against ``base_url`` (``http://host:port``)."""

    def __init__(
        self, base_url: str, *, timeout: float = 10.0, transport: httpx.AsyncBaseTransport | None = None
    ):
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport)

    async def __aenter__(self) -> CentralizedClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def _call(
        self, method: str, path: str, body: dict[str, Any], params: dict[str, str] | None = None
    ) -> Any:
        try:
            reply = await self._http.request(method, path, json=body, params=params)
        except httpx.HTTPError as exc:
            raise CentralizedError(f"{self.base_url}: {exc or type(exc).__name__}") from None
        try:
            data = reply.json()
        except ValueError:
            raise CentralizedError(f"{self.base_url}{path}: HTTP {reply.status_code}, not JSON") from None
        if reply.status_code >= 400:
            reason = data.get("error") if isinstance(data, dict) else None
            raise CentralizedError(
                f"{self.base_url}{path}: HTTP {reply.status_code} {reason or ''}".rstrip(),
                1 if reply.status_code >= 500 else 2,
            )
        return data

    async def post_resource(
        self, peer_id: str, peer_ip: str, peer_port: int, name: str, path: str, resource_hash: str
    ) -> dict[str, Any]:
        body = {
            "peer_id": peer_id,
            "peer_ip": peer_ip,
            "peer_port": peer_port,
            "resource_name": name,
            "resource_path": path,
            "resource_hash": resource_hash,
        }
        out: dict[str, Any] = await self._call("POST", "/resource", body)
        return out

    async def heartbeat(self, peer_id: str) -> None:
        await self._call("POST", "/heartbeat", {"peer_id": peer_id})

    async def holders(self, name: str) -> list[Holder]:
        """The peers holding a resource named ``name`` (online ones first)."""
        peers = await self._call("GET", "/resource", {"resource_name": name}, {"resource_name": name})
        if not isinstance(peers, list):
            raise CentralizedError(f"{self.base_url}/resource: expected a list of peers")
        out = []
        for p in peers:
            if not isinstance(p, dict) or not p.get("peer_ip") or not p.get("peer_port"):
                continue
            for r in p.get("resources") or []:
                if isinstance(r, dict) and r.get("resource_name") == name:
                    out.append(
                        Holder(str(p.get("peer_id", "")), str(p["peer_ip"]), int(p["peer_port"]),
                               bool(p.get("online", True)), name, str(r.get("resource_hash") or ""))
                    )  # fmt: skip
        return sorted(out, key=lambda h: not h.online)


def server_url(text: str) -> str:
    """``SERVER_IP[:PORT]`` (or a URL) → ``http://host:port``."""
    if "://" in text:
        return text.rstrip("/")
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and host and (host.startswith("[") or ":" not in host):
        return f"http://{text}"
    if ":" in text and not text.startswith("["):
        return f"http://[{text}]:{DEFAULT_SERVER_PORT}"
    return f"http://{text}:{DEFAULT_SERVER_PORT}"


@dataclass
class SharingPeer:
    peer_id: str
    peer_ip: str
    port: int
    files: list[pf.LocalFile] = field(default_factory=list)


@contextlib.asynccontextmanager
async def sharing(
    client: CentralizedClient,
    directory: str | Path | None,
    *,
    peer_ip: str,
    listen_port: int,
    peer_id: str | None = None,
    heartbeat_every: float = HEARTBEAT_EVERY,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[SharingPeer]:
    """Serve ``directory`` (None: nothing) on ``peer_ip:listen_port`` and register each file;
    heartbeat meanwhile."""
    files = await pf.scan_folder(directory) if directory is not None else []
    pid = peer_id or str(uuid.uuid4())
    async with pf.PeerFileServer(files) as server:
        port = await server.start(peer_ip, listen_port)
        for f in files:
            await client.post_resource(pid, peer_ip, port, f.name, str(f.path.parent.resolve()), f.sha1)

        async def beat() -> None:
            while True:
                await sleep(heartbeat_every)
                try:
                    await client.heartbeat(pid)
                except CentralizedError as exc:
                    log.warning("heartbeat failed: %s", exc)

        task = asyncio.create_task(beat())
        try:
            yield SharingPeer(pid, peer_ip, port, files)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def fetch_resource(
    client: CentralizedClient, name: str, directory: str | Path, *, timeout: float = 60.0
) -> tuple[Holder, Path]:
    """Download ``name`` from the first holder that serves it (SHA-1 checked when the holder
    registered a SHA-1). :class:`CentralizedError` when no holder answers."""
    holders = await client.holders(name)
    if not holders:
        raise CentralizedError(f"no peer holds {name!r}")
    errors = []
    for h in holders:
        sha1 = h.resource_hash if _SHA1.fullmatch(h.resource_hash) else None
        url = pf.file_url(h.ip, h.port, sha1=sha1, name=name)
        try:
            return h, await pf.download(url, directory, name, sha1=sha1, timeout=timeout)
        except pf.PeerFileError as exc:
            log.info("download from %s failed: %s", url, exc)
            errors.append(f"{h.ip}:{h.port}: {exc}")
    raise CentralizedError(f"no holder of {name!r} answered ({len(holders)} tried; last: {errors[-1]})")


# -- the action port's command interface ---------------------------------------------------------


class CommandError(BitswarmError):
    """A command line the action port does not understand."""


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    arg: str | None = None


#: command -> (takes an argument, help text)
COMMANDS: dict[str, tuple[bool, str]] = {
    "help": (False, "list the commands"),
    "list": (False, "the resources this peer shares"),
    "find": (True, "find NAME: the peers holding NAME (GET /resource)"),
    "get": (True, "get NAME: download NAME from a holder into the output folder"),
    "quit": (False, "close this connection"),
}


def parse_command(line: str) -> Command:
    """One command line (``find "a file.txt"``) → :class:`Command`; :class:`CommandError` if bad."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise CommandError(f"cannot parse the line: {exc}") from None
    if not words:
        raise CommandError("empty command (try help)")
    name, args = words[0].lower(), words[1:]
    if name not in COMMANDS:
        raise CommandError(f"unknown command {words[0]!r} (try help)")
    takes_arg = COMMANDS[name][0]
    if takes_arg and len(args) != 1:
        raise CommandError(f"{name} takes one argument (quote a name with spaces)")
    if not takes_arg and args:
        raise CommandError(f"{name} takes no argument")
    return Command(name, args[0] if args else None)


class ActionServer:
    """The command interface on the action port (seed 002: "the port used by peer's CLI")."""

    MAX_LINE = 4096
    IDLE_TIMEOUT = 300.0

    def __init__(self, client: CentralizedClient, shared: list[pf.LocalFile], output: Path) -> None:
        self.client = client
        self.shared = shared
        self.output = output
        self._server: asyncio.Server | None = None
        self._slots = asyncio.Semaphore(16)

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._serve, host, port, limit=self.MAX_LINE)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def run(self, command: Command) -> dict[str, Any]:
        if command.name == "help":
            return {"ok": True, "commands": {k: v[1] for k, v in COMMANDS.items()}}
        if command.name == "list":
            return {
                "ok": True,
                "resources": [{"name": f.name, "size": f.size, "sha1": f.sha1} for f in self.shared],
            }
        assert command.arg is not None
        if command.name == "find":
            holders = await self.client.holders(command.arg)
            return {"ok": True, "holders": [dataclasses.asdict(h) for h in holders]}
        holder, path = await fetch_resource(self.client, command.arg, self.output)
        return {"ok": True, "path": str(path), "from": f"{holder.ip}:{holder.port}"}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._slots.locked():
            writer.close()
            return
        async with self._slots:
            try:
                while True:
                    line = await asyncio.wait_for(reader.readline(), self.IDLE_TIMEOUT)
                    if not line:
                        break
                    try:
                        command = parse_command(line.decode("utf-8"))
                        if command.name == "quit":
                            break
                        reply = await self.run(command)
                    except UnicodeDecodeError:
                        reply = {"ok": False, "error": "the line is not UTF-8"}
                    except BitswarmError as exc:
                        reply = {"ok": False, "error": str(exc)}
                    writer.write(json.dumps(reply).encode() + b"\n")
                    await writer.drain()
            except (TimeoutError, ValueError, ConnectionError):  # idle, a line over MAX_LINE, gone
                pass
            finally:
                writer.close()


__all__ = [
    "DEFAULT_SERVER_PORT",
    "HEARTBEAT_EVERY",
    "ActionServer",
    "CentralizedClient",
    "CentralizedError",
    "Command",
    "CommandError",
    "Holder",
    "fetch_resource",
    "parse_command",
    "server_url",
    "sharing",
]
