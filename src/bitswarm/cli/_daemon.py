"""``bitswarm daemon`` (a long-running session with a control API and a web UI), ``bitswarm ctl ...``
(commands to a running daemon) and ``bitswarm top`` (a terminal dashboard of a running daemon).

Config file (``--config daemon.toml``), top-level keys named like the options plus session settings::

    api = "127.0.0.1:9091"
    port = 6881
    host = "::"               # peer listen address (dual-stack; "0.0.0.0": IPv4 only)
    data = "/var/lib/bitswarm-daemon"
    download_dir = "/srv/torrents"
    dht = true
    lsd = false
    port_mapping = true       # UPnP IGD / NAT-PMP/PCP mapping of the peer port
    holepunch = true          # NAT hole punching (BEP 55 ut_holepunch), as relay and as initiator
    encryption = "prefer"     # MSE/PE: prefer (fall back to plaintext), require (RC4 only), off
    download_rate_limit = 0   # bytes/s, also settable at run time (PUT /api/v1/limits)
    api_max_per_ip = 64       # open API connections per client address (0: no cap)
    api_header_timeout = 10   # seconds for a request's line and headers
    api_idle_timeout = 30     # seconds a keep-alive API connection may stay silent

Command-line options win over the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import select
import signal
import sys
import termios
import time
import tty
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from bitswarm.cli._app import app, console, err_console, fail, load_toml, print_json, real_console
from bitswarm.cli._peer import BootstrapOption, parse_hostport
from bitswarm.mse import EncryptionPolicy

_KEYS = {
    "api",
    "port",
    "host",
    "data",
    "download_dir",
    "token",
    "dht",
    "lsd",
    "pex",
    "max_peers_per_torrent",
    "upload_slots",
    "seed_upload_slots",
    "announce_ip",
    "preallocate",
    "super_seed",
    "port_mapping",
    "holepunch",
    "encryption",
    "transports",
    "api_max_per_ip",
    "api_header_timeout",
    "api_idle_timeout",
}

ApiOption = Annotated[
    str, typer.Option("--api", help="The daemon's API URL (default http://127.0.0.1:9091).")
]
TokenOption = Annotated[
    str | None, typer.Option("--token", help="API token (default: read from the daemon's data dir).")
]
DataOption = Annotated[Path | None, typer.Option("--data", help="The daemon's data dir (to find its token).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="JSON output.")]


def _load_config(path: Path) -> dict[str, Any]:
    return load_toml(path, _KEYS)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@app.command()
def daemon(
    port: Annotated[int | None, typer.Option("--port", "-p", help="Peer listen port (0: any).")] = None,
    api: Annotated[str | None, typer.Option("--api", help="API address HOST:PORT [127.0.0.1:9091].")] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="Data dir [~/.local/share/bitswarm/daemon].")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML config file.")] = None,
    token: Annotated[
        str | None, typer.Option("--token", help="API token [generated into DATA/token].")
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Peer listen address ('::': IPv6 and IPv4) [::].")
    ] = None,
    download_dir: Annotated[Path | None, typer.Option("--download-dir", help="Default save path.")] = None,
    no_dht: Annotated[bool, typer.Option("--no-dht", help="No DHT node (BEP 5).")] = False,
    no_port_mapping: Annotated[
        bool,
        typer.Option("--no-port-mapping", help="Do not map the peer port on the router (UPnP, NAT-PMP/PCP)."),
    ] = False,
    bootstrap: BootstrapOption = None,
    encryption: Annotated[
        EncryptionPolicy | None,
        typer.Option("--encryption", help="MSE/PE protocol encryption: prefer, require or off [prefer]."),
    ] = None,
    transports: Annotated[
        str | None,
        typer.Option("--transports", metavar="LIST", help="Peer transports: tcp,utp, utp or tcp [tcp,utp]."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the startup line as JSON.")] = False,
) -> None:
    """Run a BitTorrent client in the background, controlled by a REST API and a web UI."""
    from bitswarm.daemon import Daemon, HttpLimits, create_app, server_config
    from bitswarm.daemon.client import default_data_dir
    from bitswarm.session import SessionConfig
    from bitswarm.session.config import parse_transports

    cfg = _load_config(config) if config else {}
    api_addr = api or str(cfg.get("api", "127.0.0.1:9091"))
    api_host, api_port = parse_hostport(api_addr, "--api", allow_zero=True)
    data_dir = data or (Path(str(cfg["data"])) if "data" in cfg else default_data_dir())
    dl_dir = download_dir or (Path(str(cfg["download_dir"])) if "download_dir" in cfg else None)
    peer_host = host or str(cfg.get("host", "::"))
    peer_port = port if port is not None else int(cfg.get("port", 6881))
    scfg = SessionConfig(listen_host=peer_host, listen_port=peer_port)
    scfg.enable_dht = not no_dht and bool(cfg.get("dht", True))
    nodes = [parse_hostport(b, "--bootstrap") for b in bootstrap or cfg.get("bootstrap", [])]
    if nodes:
        scfg.dht_bootstrap = nodes
    scfg.enable_lsd = bool(cfg.get("lsd", False))
    scfg.enable_pex = bool(cfg.get("pex", True))
    scfg.port_mapping = not no_port_mapping and bool(cfg.get("port_mapping", True))
    scfg.first_announce_wait = 1.0  # a long-running daemon: its first announces carry the mapped port
    scfg.enable_holepunch = bool(cfg.get("holepunch", True))  # BEP 55, relay and initiator
    for key in ("max_peers_per_torrent", "upload_slots", "seed_upload_slots"):
        if key in cfg:
            setattr(scfg, key, int(cfg[key]))
    if "announce_ip" in cfg:
        scfg.announce_ip = str(cfg["announce_ip"])
    if cfg.get("preallocate", "sparse") not in ("sparse", "full"):
        fail(f"preallocate must be sparse or full, not {cfg.get('preallocate')!r}")
    scfg.preallocate = str(cfg.get("preallocate", "sparse"))  # new torrents' data files (issue 20)
    scfg.super_seed = bool(cfg.get("super_seed", False))  # BEP 16 for every seeding torrent
    try:
        scfg.encryption = encryption or EncryptionPolicy(str(cfg.get("encryption", "prefer")))
    except ValueError:
        fail(f"encryption must be prefer, require or off, not {cfg.get('encryption')!r}")
    try:  # "tcp,utp" or a TOML list (the same as the peer commands' --transports)
        scfg.transports = parse_transports(transports or cfg.get("transports", "tcp,utp"))
    except (ValueError, TypeError):
        fail(f"transports must be tcp, utp or tcp,utp, not {transports or cfg.get('transports')!r}")
    if hasattr(scfg, "dht_state_file"):
        scfg.dht_state_file = str(Path(data_dir) / "dht.state")

    dflt = HttpLimits()
    try:
        limits = HttpLimits(
            header_timeout=float(cfg.get("api_header_timeout", dflt.header_timeout)),
            idle_timeout=float(cfg.get("api_idle_timeout", dflt.idle_timeout)),
            max_per_ip=int(cfg.get("api_max_per_ip", dflt.max_per_ip)),
        )
    except (TypeError, ValueError):
        fail("api_header_timeout and api_idle_timeout are seconds, api_max_per_ip a number")
    if not limits.header_timeout > 0 or not limits.idle_timeout > 0 or limits.max_per_ip < 0:
        fail("api_header_timeout and api_idle_timeout must be > 0, api_max_per_ip >= 0")

    async def main() -> None:
        import uvicorn

        from bitswarm.httpguard import raise_nofile_limit

        raise_nofile_limit()  # every API connection and peer is a descriptor
        try:
            d = Daemon(data_dir, scfg, download_dir=dl_dir)
        except OSError as exc:
            fail(f"cannot use data dir {data_dir}: {exc.strerror or exc}")
        tok = d.data.token(token or (str(cfg["token"]) if "token" in cfg else None))
        allowed = {"127.0.0.1", "localhost", "::1"} if _is_loopback(api_host) else None
        fastapi_app = create_app(d, tok, allowed_hosts=allowed)
        await d.start()

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:  # our own handlers stop the daemon
                yield

        server = _Server(server_config(fastapi_app, api_host, api_port, limits, timeout_graceful_shutdown=3))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        serve = loop.create_task(server.serve())
        while not server.started and not serve.done():
            await asyncio.sleep(0.02)
        if serve.done():
            await d.close()
            problem = serve.exception()
            fail(f"cannot serve the API on {api_addr}: {problem or 'bind failed'}")
        bound = server.servers[0].sockets[0].getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        url = f"http://{shown}:{bound[1]}"
        if json_out:
            print_json(
                {
                    "event": "listening",
                    "api": url,
                    "peer_port": d.session.port,
                    "data": str(d.data.root),
                    "token_file": str(d.data.token_path),
                }
            )
        else:
            console.print(f"bitswarm daemon: web UI {url}/#token={tok}")
            console.print(
                f"API {url}/api/v1 (OpenAPI {url}/openapi.json), peers on port {d.session.port}, "
                f"data in {d.data.root}"
            )
        sys.stdout.flush()
        try:
            await asyncio.wait([serve, loop.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
        finally:
            d.closing.set()
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(serve, 5)
            await d.close()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:  # pragma: no cover
        asyncio.run(main())


# -- ctl ---------------------------------------------------------------------------------------

ctl = typer.Typer(help="Control a running bitswarm daemon.", no_args_is_help=True)
app.add_typer(ctl, name="ctl")


def _client(api: str, token: str | None, data: Path | None, *, timeout: float = 30.0) -> Any:
    from bitswarm.daemon.client import DaemonClient, find_token

    tok = token or os.environ.get("BITSWARM_TOKEN") or find_token(data)
    return DaemonClient(api, tok, timeout=timeout)


def _run(fn: Any) -> Any:
    from bitswarm.daemon.client import DaemonClientError

    try:
        return fn()
    except DaemonClientError as exc:
        fail(str(exc), exc.exit_code)


def _line(t: dict[str, Any]) -> str:
    from bitswarm.daemon._top import rate, size

    return (
        f"{t['id'][:12]}  {t['state']:<11} {t['progress'] * 100:5.1f}%  {size(t.get('wanted_size')):>10}"
        f"  ↓{rate(t.get('download_rate')):>12} ↑{rate(t.get('upload_rate')):>12}  {t['name']}"
    )


@ctl.command("add")
def ctl_add(
    source: Annotated[str, typer.Argument(help="A .torrent file, a magnet link, or a name on --index.")],
    save_path: Annotated[
        str | None, typer.Option("--save-path", "-o", help="Directory on the daemon's side.")
    ] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Add without starting.")] = False,
    peer: Annotated[list[str] | None, typer.Option("--peer", help="HOST:PORT to dial; repeatable.")] = None,
    index: Annotated[
        str | None, typer.Option("--index", help="Index URL: SOURCE is a name or hash there.")
    ] = None,
    remote_path: Annotated[
        bool, typer.Option("--remote-path", help="SOURCE is a path on the daemon's machine.")
    ] = False,
    api: ApiOption = "http://127.0.0.1:9091",
    token: TokenOption = None,
    data: DataOption = None,
    json_out: JsonFlag = False,
) -> None:
    """Add a torrent to the daemon."""
    with _client(api, token, data) as c:
        peers = list(peer or [])
        if index:
            t = _run(
                lambda: c.add_json(
                    index_url=index, index_name=source, save_path=save_path, paused=paused, peers=peers
                )
            )
        elif source.startswith("magnet:"):
            t = _run(lambda: c.add_json(magnet=source, save_path=save_path, paused=paused, peers=peers))
        elif remote_path:
            t = _run(lambda: c.add_json(path=source, save_path=save_path, paused=paused, peers=peers))
        else:
            try:
                blob = Path(source).read_bytes()
            except OSError as exc:
                fail(f"cannot read {source}: {exc.strerror or exc}")
            t = _run(lambda: c.add_file(blob, save_path=save_path, paused=paused, peers=peers))
    if json_out:
        print_json(t)
    else:
        console.print(f"added {t['name']} ({t['id']})")


@ctl.command("list")
def ctl_list(
    api: ApiOption = "http://127.0.0.1:9091",
    token: TokenOption = None,
    data: DataOption = None,
    json_out: JsonFlag = False,
) -> None:
    """List the daemon's torrents."""
    with _client(api, token, data) as c:
        items = _run(c.list)
    if json_out:
        print_json({"torrents": items})
        return
    for t in items:
        console.print(_line(t), highlight=False, markup=False)
    if not items:
        err_console.print("no torrents")


@ctl.command("show")
def ctl_show(
    ref: Annotated[str, typer.Argument(help="Id, id prefix, list number or name.")],
    api: ApiOption = "http://127.0.0.1:9091",
    token: TokenOption = None,
    data: DataOption = None,
    json_out: JsonFlag = False,
) -> None:
    """Details of one torrent: files, peers, trackers."""
    from bitswarm.daemon._top import rate, size

    with _client(api, token, data) as c:
        d = _run(lambda: c.show(_run(lambda: c.resolve(ref))))
    if json_out:
        print_json(d)
        return
    out = [
        _line(d),
        f"  save path  {d['save_path']}",
        f"  pieces     {d['pieces_done']}/{d['num_pieces']}",
        f"  peers      {d['peers']} connected, {d.get('known_peers', 0)} known",
        f"  limits     ↓{rate(d['download_limit']) if d['download_limit'] else 'unlimited'} "
        f"↑{rate(d['upload_limit']) if d['upload_limit'] else 'unlimited'}",
    ]
    if d.get("error"):
        out.append(f"  error      {d['error']}")
    if d.get("waiting_reason"):
        out.append(f"  {d['waiting_reason']}")
    out.append("  files:")
    out += [
        f"    [{f['index']}] prio {f['priority']}  {f['progress'] * 100:5.1f}%"
        f"  {size(f['length']):>10}  {f['path']}"
        for f in d["files"]
    ]
    if d["trackers"]:
        out.append("  trackers:")
        out += [_tracker_line(t) for t in d["trackers"]]
    if d["peer_list"]:
        out.append("  peers:")
        out += [
            f"    {p['address']:<24} {p.get('client') or '':<20} {p.get('transport') or '':<8}"
            f" ↓{rate(p['download_rate'])} ↑{rate(p['upload_rate'])}"
            for p in d["peer_list"]
        ]
    for line in out:
        console.print(line, highlight=False, markup=False)


def _tracker_line(t: dict[str, Any]) -> str:
    """``tier 0  URL  ok: 12 peers (3 seeders, 9 leechers), last 14:02:11, next in 1790 s``, or
    ``error: <why>`` instead of the peers."""
    status = t.get("status") or "not contacted"
    line = f"    tier {t['tier']}  {t['url']}  {status}"
    if status == "error":
        line += f": {t.get('error')}"
    elif status == "ok":
        line += f": {t.get('peers')} peers"
        if t.get("seeders") is not None:
            line += f" ({t['seeders']} seeders, {t.get('leechers')} leechers)"
    if t.get("last_announce"):
        line += f", last {time.strftime('%H:%M:%S', time.localtime(t['last_announce']))}"
    if t.get("next_announce"):
        line += f", next in {max(0, round(t['next_announce'] - time.time()))} s"
    return line


def _simple(op: str, help_text: str) -> None:
    def command(
        ref: Annotated[str, typer.Argument(help="Id, id prefix, list number or name.")],
        api: ApiOption = "http://127.0.0.1:9091",
        token: TokenOption = None,
        data: DataOption = None,
        json_out: JsonFlag = False,
    ) -> None:
        with _client(api, token, data) as c:
            t = _run(lambda: getattr(c, op)(_run(lambda: c.resolve(ref))))
        if json_out:
            print_json(t)
        else:
            console.print(f"{op}: {t['name']} ({t['state']})", highlight=False, markup=False)

    command.__doc__ = help_text
    ctl.command(op)(command)


_simple("pause", "Pause a torrent (it stays in the list, its data is kept).")
_simple("resume", "Resume a paused torrent.")
_simple("recheck", "Hash every piece of a torrent again.")


@ctl.command("move")
def ctl_move(
    ref: Annotated[str, typer.Argument(help="Id, id prefix, list number or name.")],
    save_path: Annotated[str, typer.Argument(help="The new directory (on the daemon's machine).")],
    api: ApiOption = "http://127.0.0.1:9091",
    token: TokenOption = None,
    data: DataOption = None,
    json_out: JsonFlag = False,
) -> None:
    """Move a torrent's files to another directory; it goes on seeding or downloading from there."""
    with _client(api, token, data) as c:
        t = _run(lambda: c.move(_run(lambda: c.resolve(ref)), save_path))
    if json_out:
        print_json(t)
    else:
        console.print(f"move: {t['name']} ({t['state']}) to {save_path}", highlight=False, markup=False)


@ctl.command("remove")
def ctl_remove(
    ref: Annotated[str, typer.Argument(help="Id, id prefix, list number or name.")],
    delete_data: Annotated[bool, typer.Option("--delete-data", help="Also delete its files.")] = False,
    api: ApiOption = "http://127.0.0.1:9091",
    token: TokenOption = None,
    data: DataOption = None,
    json_out: JsonFlag = False,
) -> None:
    """Remove a torrent (its files stay unless --delete-data)."""
    with _client(api, token, data) as c:
        r = _run(lambda: c.remove(_run(lambda: c.resolve(ref)), delete_data=delete_data))
    if json_out:
        print_json(r)
    else:
        console.print(f"removed {r['id']}" + (" and its data" if delete_data else ""))


def _parse_rate(text: str | None) -> int | None:
    if text is None:
        return None
    t = text.strip().lower().removesuffix("/s").removesuffix("b").removesuffix("i")
    mult = {"k": 1024, "m": 1024**2, "g": 1024**3}.get(t[-1:], 1)
    num = t[:-1] if t[-1:] in "kmg" else t
    try:
        value = int(float(num) * mult)
    except ValueError:
        fail(f"bad rate {text!r} (bytes/s, e.g. 500k, 2M, 0 = unlimited)")
    if value < 0:
        fail(f"bad rate {text!r}")
    return value


@ctl.command("limits")
def ctl_limits(
    ref: Annotated[str | None, typer.Argument(help="A torrent (omit for the global limits).")] = None,
    down: Annotated[
        str | None, typer.Option("--down", "-d", help="Download limit, e.g. 2M (0: none).")
    ] = None,
    up: Annotated[str | None, typer.Option("--up", "-u", help="Upload limit, e.g. 500k (0: none).")] = None,
    api: ApiOption = "http://127.0.0.1:9091",
    token: TokenOption = None,
    data: DataOption = None,
    json_out: JsonFlag = False,
) -> None:
    """Show or set rate limits (global, or of one torrent)."""
    from bitswarm.daemon._top import rate

    d, u = _parse_rate(down), _parse_rate(up)
    with _client(api, token, data) as c:
        tid = _run(lambda: c.resolve(ref)) if ref else None
        if d is None and u is None:
            r = _run(c.limits) if tid is None else _run(lambda: c.show(tid))
        else:
            r = _run(lambda: c.set_limits(tid, download=d, upload=u))
    res = {"download_limit": r["download_limit"], "upload_limit": r["upload_limit"]}
    if json_out:
        print_json(res)
    else:
        shown = {k: rate(v) if v else "unlimited" for k, v in res.items()}
        console.print(f"download {shown['download_limit']}, upload {shown['upload_limit']}")


# -- top ---------------------------------------------------------------------------------------


@app.command()
def top(
    api: ApiOption = "http://127.0.0.1:9091",
    interval: Annotated[float, typer.Option("--interval", help="Seconds between refreshes.")] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
    token: TokenOption = None,
    data: DataOption = None,
) -> None:
    """A live terminal dashboard of a running daemon's torrents (q or Ctrl-C to quit)."""
    from rich.live import Live

    from bitswarm.daemon._top import render
    from bitswarm.daemon.client import DaemonClientError

    with _client(api, token, data, timeout=5.0) as c:

        def frame() -> Any:  # piped or redirected: as wide as the rows, nothing left out
            width = real_console(console).width if real_console(console).is_terminal else None
            return render(c.list(), c.stats(), c.api, width=width)

        if once:
            try:
                console.print(frame())
            except DaemonClientError as exc:
                fail(str(exc), exc.exit_code)
            return
        fd = sys.stdin.fileno() if sys.stdin.isatty() else None
        old = termios.tcgetattr(fd) if fd is not None else None
        try:
            if fd is not None:
                tty.setcbreak(fd)
            with Live(console=real_console(console), screen=True, auto_refresh=False) as live:
                while True:
                    try:
                        live.update(frame(), refresh=True)
                    except DaemonClientError as exc:
                        from rich.text import Text

                        live.update(Text(f"{exc} — retrying", style="red"), refresh=True)
                    deadline = time.monotonic() + interval
                    while (left := deadline - time.monotonic()) > 0:
                        if fd is None:
                            time.sleep(left)
                            break
                        ready, _, _ = select.select([fd], [], [], left)
                        if ready and os.read(fd, 1) in (b"q", b"Q", b"\x03"):
                            return
        except KeyboardInterrupt:
            return
        finally:
            if fd is not None and old is not None:
                termios.tcsetattr(fd, termios.TCSADRAIN, old)
