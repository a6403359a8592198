"""``bitswarm tracker``: run the HTTP + UDP BitTorrent tracker until SIGTERM or Ctrl-C.

Prints where it listens (the ports actually bound, so ``:0`` works), or with ``--json`` one line
``{"http": [...], "udp": [...], ...}``. Peer changes reach the database within a second (a SIGKILL
loses at most that); shutting down saves counters and a peer snapshot. The HTTP limits
(``--http-header-timeout``, ``--http-idle-timeout``, ``--http-max-per-ip``) are in docs/security.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from bitswarm.cli._app import app, console, fail, hostport, listen_failure, print_json
from bitswarm.tracker.server import Mode, TrackerConfig, TrackerConfigError, TrackerServer, parse_address
from bitswarm.tracker.server.config import normalize_ip


@app.command()
def tracker(
    http: Annotated[
        list[str] | None,
        typer.Option("--http", help="HTTP listen HOST:PORT (repeatable; default 0.0.0.0:6969)."),
    ] = None,
    udp: Annotated[
        list[str] | None,
        typer.Option("--udp", help="UDP listen HOST:PORT (repeatable; default 0.0.0.0:6969)."),
    ] = None,
    no_udp: Annotated[bool, typer.Option("--no-udp", help="Do not serve UDP.")] = False,
    db: Annotated[
        str | None,
        typer.Option("--db", help="SQLite database (default ./tracker.sqlite; 'none' = no persistence)."),
    ] = None,
    redis: Annotated[
        str | None, typer.Option("--redis", help="Keep swarm state in Redis (redis://HOST:PORT/DB).")
    ] = None,
    redis_sync: Annotated[
        float | None,
        typer.Option(
            "--redis-sync",
            help="With --redis: seconds between syncs with the other instances (default 0.25; "
            "0: every announce goes to Redis).",
        ),
    ] = None,
    mode: Annotated[Mode | None, typer.Option("--mode", help="open, whitelist or private.")] = None,
    admin_token: Annotated[
        str | None, typer.Option("--admin-token", help="Bearer token of the /admin API.")
    ] = None,
    trusted_proxy: Annotated[
        list[str] | None, typer.Option("--trusted-proxy", help="Honour X-Forwarded-For/ip= from it.")
    ] = None,
    interval: Annotated[
        int | None, typer.Option("--interval", help="Announce interval in seconds (default 1800).")
    ] = None,
    header_timeout: Annotated[
        float | None,
        typer.Option("--http-header-timeout", help="Seconds an HTTP request may take (default 10)."),
    ] = None,
    idle_timeout: Annotated[
        float | None,
        typer.Option("--http-idle-timeout", help="Keep-alive idle seconds (default 30)."),
    ] = None,
    max_per_ip: Annotated[
        int | None,
        typer.Option("--http-max-per-ip", help="HTTP connections per client IP (default 64; 0: no cap)."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="tracker.toml with the same settings.")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the bound addresses as one JSON line.")
    ] = False,
) -> None:
    """Run a BitTorrent tracker (HTTP BEP 3/23/48 and UDP BEP 15)."""
    overrides: dict[str, Any] = {}
    try:
        if http:
            overrides["http"] = tuple(parse_address(a) for a in http)
        if udp:
            overrides["udp"] = tuple(parse_address(a) for a in udp)
        if no_udp:
            overrides["udp"] = ()
        if db is not None:
            overrides["db"] = None if db.lower() == "none" else Path(db)
        if redis:
            overrides["redis"] = redis
        if redis_sync is not None:
            overrides["redis_sync"] = redis_sync
        if mode is not None:
            overrides["mode"] = mode
        if admin_token:
            overrides["admin_token"] = admin_token
        if trusted_proxy:
            overrides["trusted_proxies"] = frozenset(normalize_ip(p) for p in trusted_proxy)
        if interval is not None:
            overrides["interval"] = interval
        if header_timeout is not None:
            overrides["http_header_timeout"] = header_timeout
        if idle_timeout is not None:
            overrides["http_idle_timeout"] = idle_timeout
        if max_per_ip is not None:
            overrides["http_max_per_ip"] = max_per_ip
        cfg = TrackerConfig.from_toml(config, **overrides) if config else TrackerConfig(**overrides)
    except (TrackerConfigError, OSError, ValueError) as exc:
        fail(str(exc))
    try:
        import uvloop

        uvloop.run(_serve(cfg, json_out))
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        asyncio.run(_serve(cfg, json_out))


async def _serve(cfg: TrackerConfig, json_out: bool) -> None:
    server = TrackerServer(cfg)
    try:
        await server.start()
    except OSError as exc:  # an HTTP address is in asyncio's message; a UDP one is the first not bound
        udp = cfg.udp[len(server.udp_addresses) :] or cfg.udp
        fail(listen_failure(exc, *(f"{hostport(h, p)} (UDP)" for h, p in udp[:1])))
    info = server.describe()
    if json_out:
        print_json(info)
    else:
        for url in info["http"] + info["udp"]:
            console.print(f"tracker listening on {url}", highlight=False, soft_wrap=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()
