"""``bitswarm download``, ``seed`` and ``share``: run a peer session from the command line.

Progress: a Rich bar on stderr (percent, rates, peers, ETA) when stderr is a terminal; with
``--json`` one JSON object per line on stdout — ``{"event": "progress", ...status}`` every half
second and one line per session event (``piece_verified``, ``torrent_completed`` ...).

Stopping: Ctrl-C (SIGINT) or SIGTERM stops every command within :data:`STOP_DEADLINE` seconds, in
every phase — starting, fetching a magnet's metadata, checking existing data, creating a torrent,
downloading, seeding. The phase under way is cancelled (a check cut short saves the pieces it
verified), resume data is saved, and the clean shutdown (``stopped`` announces, closing files) gets
the rest of the time; whatever is still unfinished then does not hold the process. Running the same
command again resumes where it stopped. A command stopped before it finished exits with code 130.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from bitswarm.cli._app import (
    EXIT_FAILURE,
    EXIT_STOPPED,
    app,
    console,
    dumps,
    err_console,
    fail,
    json_lines,
    parse_rate,
    print_json,
    real_console,
    state,
    tracker_url,
    write_new_file,
)
from bitswarm.errors import BitswarmError
from bitswarm.metainfo import Torrent, load_torrent, parse_torrent
from bitswarm.mse import EncryptionPolicy
from bitswarm.session import Session, SessionConfig, TorrentHandle
from bitswarm.session.config import parse_transports
from bitswarm.storage import DiskSpaceError

if TYPE_CHECKING:
    from rich.progress import Progress

    from bitswarm.session import SessionEvent, TorrentStatus
    from bitswarm.session.blocklist import Blocklist

T = TypeVar("T")

#: Seconds from SIGTERM/SIGINT to the end of the process, whatever it was doing.
STOP_DEADLINE = 1.5
#: Of those, what saving resume data and the clean close of the session may take.
_CLOSE_BUDGET = 1.0

#: The peer port the commands try first; when it is taken they listen on a free one and say so.
DEFAULT_PEER_PORT = 6881

PortOption = Annotated[
    int | None,
    typer.Option(
        "--port",
        "-p",
        help=f"TCP port to listen on for peers (default: {DEFAULT_PEER_PORT}, or a free port when "
        f"{DEFAULT_PEER_PORT} is taken; 0: any free port).",
    ),
]
DownloadLimitOption = Annotated[
    str | None,
    typer.Option("--download-limit", metavar="RATE", help="Most bytes/s to download (500k, 2M; 0: none)."),
]
UploadLimitOption = Annotated[
    str | None,
    typer.Option("--upload-limit", metavar="RATE", help="Most bytes/s to upload (500k, 2M; 0: none)."),
]
EncryptionOption = Annotated[
    EncryptionPolicy,
    typer.Option(
        "--encryption",
        help="MSE/PE protocol encryption. prefer: try it, fall back to plaintext; require: encrypted "
        "(RC4) peers only; off: plaintext only.",
    ),
]
TransportsOption = Annotated[
    str,
    typer.Option(
        "--transports",
        metavar="LIST",
        help="Transports to dial and accept peers on: tcp,utp (uTP first, TCP first to this host; "
        "the other when the first does not connect), utp (uTP only) or tcp.",
    ),
]
HostOption = Annotated[
    str,
    typer.Option(
        "--host",
        help="Address to listen on: '::' every IPv6 and IPv4 address (IPv4 only when the host has no "
        "IPv6), 0.0.0.0 IPv4 only, an address only that one.",
    ),
]
TrackerOption = Annotated[
    list[str] | None,
    typer.Option("--tracker", "-t", help="Tracker URL (HOST:PORT: http://HOST:PORT/announce); repeatable."),
]
PeerOption = Annotated[
    list[str] | None, typer.Option("--peer", help="Connect to this peer, HOST:PORT; repeatable.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Progress and events as JSON lines on stdout.")]
BootstrapOption = Annotated[
    list[str] | None,
    typer.Option(
        "--bootstrap",
        "-b",
        help="DHT node to join through, HOST:PORT; repeatable (default: public routers, only when "
        "listening on a public address).",
    ),
]
NoDhtOption = Annotated[bool, typer.Option("--no-dht", help="Do not run a DHT node (BEP 5).")]
NoPortMappingOption = Annotated[
    bool,
    typer.Option(
        "--no-port-mapping",
        help="Do not map the listen port on the home router (by default UPnP IGD and NAT-PMP/PCP are "
        "tried in the background, and the mapping is removed on exit).",
    ),
]
NoHolepunchOption = Annotated[
    bool,
    typer.Option(
        "--no-holepunch",
        help="Do not take part in NAT hole punching (BEP 55 ut_holepunch): neither ask peers to relay "
        "a punch nor relay one for others.",
    ),
]
LsdOption = Annotated[bool, typer.Option("--lsd", help="Find peers on the LAN by multicast (BEP 14).")]
PreallocateOption = Annotated[
    str,
    typer.Option(
        "--preallocate",
        metavar="sparse|full",
        help="How data files are created: sparse (allocated as data arrives) or full (allocated up "
        "front; fails before downloading when the disk is too small).",
    ),
]
SuperSeedOption = Annotated[
    bool,
    typer.Option(
        "--super-seed",
        help="BEP 16 super-seeding: offer each peer one rare piece at a time instead of a bitfield "
        "(for an initial seed with little upload capacity).",
    ),
]
ProxyOption = Annotated[
    str | None,
    typer.Option(
        "--proxy",
        metavar="URL",
        help="SOCKS5 proxy for outgoing peer connections, HTTP(S) trackers and web seeds: "
        "socks5://[USER:PASS@]HOST:PORT (socks5h://: the proxy resolves names). While it is set, "
        "uTP, the DHT and UDP trackers are off; incoming connections are not proxied.",
    ),
]
BlocklistOption = Annotated[
    str | None,
    typer.Option(
        "--blocklist",
        metavar="FILE|URL",
        help="IP blocklist (P2P 'name:1.2.3.4-1.2.3.255', DAT/ipfilter.dat or CIDR lines; gzip'd or "
        "not): its addresses are never dialed nor accepted. A URL is fetched at start (through --proxy).",
    ),
]
EmbedOption = Annotated[
    str | None,
    typer.Option(
        "--embed-tracker",
        metavar="[HOST:PORT]",
        help="Also run a tracker (HTTP+UDP) in this process for these torrents; bare flag = 0.0.0.0:6969.",
    ),
]


def parse_hostport(text: str, what: str = "peer", *, allow_zero: bool = False) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port); a clear error otherwise."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    low = 0 if allow_zero else 1
    if not sep or not host or not port.isdigit() or not low <= int(port) < 65536:
        fail(f"{what} must be HOST:PORT, got {text!r}")
    return host, int(port)


def _run(main: Any) -> None:
    """Run a coroutine function on uvloop (when installed) and map errors to one line."""
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    try:
        runner(main())
    except _Stopped:
        raise typer.Exit(EXIT_STOPPED) from None
    except DiskSpaceError as exc:  # --preallocate full on a disk too small: a run-time failure
        fail(str(exc), code=EXIT_FAILURE)
    except BitswarmError as exc:
        # a BEP 46 link nobody published under, a put nobody stored (the module is imported only
        # for such a link: a MutableTorrentError comes only once it is)
        mutable = sys.modules.get("bitswarm.session.mutable")
        if mutable is not None and isinstance(exc, mutable.MutableTorrentError):
            fail(str(exc), code=EXIT_FAILURE)
        fail(str(exc))
    finally:
        json_lines.flush()  # the lines of the loop's last iteration


class _Display:
    """Rich progress on stderr, or JSON lines on stdout."""

    def __init__(self, json_mode: bool, quiet: bool = False) -> None:
        self.json = json_mode
        self.progress: Progress | None = None
        if not json_mode and not quiet:
            from rich.progress import (  # not imported by --json runs
                BarColumn,
                DownloadColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                TextColumn("{task.fields[peers]} peers  ↑ {task.fields[up]}"),
                TimeRemainingColumn(),
                console=real_console(err_console),
                disable=not err_console.is_terminal,
                # drawn when :meth:`update` has news (every PROGRESS_INTERVAL), not by Rich's own
                # thread ten times a second: ~1.5 % of a core less on a terminal (issue 24)
                auto_refresh=False,
            )
        self._tasks: dict[str, Any] = {}
        self._escape: Callable[[str], str] = str
        if self.progress is not None:
            from rich.markup import escape

            self._escape = escape
        #: (kind, info_hash, name) → the line's text up to the event's own data (no closing brace)
        self._prefixes: dict[tuple[str, str, str], str] = {}
        #: set by :func:`_pump_events` on a completion or error event: :func:`_drive` stops waiting
        self.wake = asyncio.Event()

    def __enter__(self) -> _Display:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def update(self, handle: TorrentHandle) -> TorrentStatus:
        """Show ``handle``'s status (a ``progress`` line, the bar) and return it."""
        st = handle.status()
        if self.json:  # {"event": "progress", **status}: the status's dict after the event
            json_lines.write('{"event":"progress",' + dumps(st.as_dict())[1:] + "\n")
            return st
        if self.progress is None:
            return st
        task = self._tasks.get(st.info_hash)
        if task is None:
            task = self._tasks[st.info_hash] = self.progress.add_task(
                self._escape(st.name), total=st.wanted_size, peers=0, up="0 B/s"
            )
        self.progress.update(
            task,
            completed=st.done_size,
            peers=st.peers,
            up=f"{st.upload_rate / 1024:.0f} KiB/s",
            # no peer: why (each tracker's outcome, the DHT, the peers known), not "0 peers" forever;
            # escaped: the column reads markup, which took "[seeding]" (or a name's brackets) for a tag
            description=self._escape(
                f"{st.name} [{st.state}]" + (f" {st.waiting_reason}" if st.waiting_reason else "")
            ),
            refresh=True,
        )
        return st

    def event(self, kind: str, **data: Any) -> None:
        if self.json:
            json_lines.write(dumps({"event": kind, **data}) + "\n")

    def session_event(self, ev: SessionEvent) -> None:
        """``ev`` as its line: ``{"event": kind, "info_hash": ..., "name": ..., **data}``, the same
        text as :meth:`event` makes, from a prefix kept per kind and torrent (a ``piece_verified``
        per piece is most of a download's lines: its ``index`` is appended to the prefix)."""
        data = ev.data
        if _RESERVED.isdisjoint(data):
            key = (ev.kind, ev.info_hash, ev.name)
            prefix = self._prefixes.get(key)
            if prefix is None:
                head = {"event": ev.kind, "info_hash": ev.info_hash, "name": ev.name}
                prefix = self._prefixes[key] = dumps(head)[:-1]
            if not data:
                line = prefix + "}\n"
            elif len(data) == 1 and type(data.get("index")) is int:
                line = f'{prefix},"index":{data["index"]}}}\n'
            else:
                line = prefix + "," + dumps(data)[1:] + "\n"
            json_lines.write(line)
        else:  # a key of its own named like the line's: as the generic form makes it (or fails)
            self.event(ev.kind, info_hash=ev.info_hash, name=ev.name, **data)

    def checking(self, name: str) -> Callable[[int, int], None]:
        """A ``progress`` callback for checking existing data: ``{"event": "checking", "done": pieces
        hashed, "total": pieces to hash}`` at most twice a second, and once at the end."""
        last = 0.0

        def progress(done: int, total: int) -> None:
            nonlocal last
            now = asyncio.get_running_loop().time()
            if total and (now - last >= 0.5 or done == total):
                last = now
                self.event("checking", name=name, done=done, total=total)

        return progress


class _Stopped(Exception):
    """A stop signal came while the command was starting, fetching metadata, checking or hashing."""


def catch_stop_signals() -> None:
    """From the start of a command until its event loop takes over: SIGINT/SIGTERM exit at once
    (nothing is running yet that could save anything), quietly, with :data:`EXIT_STOPPED`."""

    def early(signum: int, frame: object) -> None:
        raise SystemExit(EXIT_STOPPED)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, early)


def _exit_by_deadline() -> None:
    """The clean shutdown gets :data:`STOP_DEADLINE` seconds; then the process ends anyway (an
    unanswered ``stopped`` announce, a hashing thread or a DNS lookup must not keep it alive)."""

    def end() -> None:
        with contextlib.suppress(Exception):
            json_lines.flush()  # best effort: lines the loop made but did not write yet
        os._exit(EXIT_STOPPED)

    timer = threading.Timer(STOP_DEADLINE, end)
    timer.daemon = True
    timer.start()


def install_stop(stop: asyncio.Event) -> None:
    """SIGINT/SIGTERM set ``stop`` (and start the :data:`STOP_DEADLINE` clock)."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if not stop.is_set():
            stop.set()
            _exit_by_deadline()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)


async def until_stopped(
    stop: asyncio.Event, aw: Awaitable[T], on_stop: Callable[[], None] | None = None
) -> T:
    """``await aw``, unless ``stop`` is set first: then ``aw`` is cancelled, its own clean-up runs
    (briefly: a check cut short saves what it verified), ``on_stop`` is called and :class:`_Stopped`
    raised. Every long phase of a command (start, metadata, checking, hashing) is raced this way."""
    task = asyncio.ensure_future(aw)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        stopper.cancel()
    if task.done():
        return task.result()
    if on_stop is not None:
        on_stop()
    task.cancel()
    await asyncio.wait({task}, timeout=_CLOSE_BUDGET)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: a clean-up error after the stop is not worth reporting
    raise _Stopped


def note(message: str) -> None:
    """A line for the user on stderr (not with ``-q``)."""
    if not state.quiet:
        err_console.print(message, markup=False, highlight=False)


def _port_is_free(host: str, port: int) -> bool:
    """Whether a TCP listener could bind ``host:port`` now (only "in use" counts as taken: any other
    error is left for the session to report, naming the address)."""
    import errno

    from bitswarm.session.listen import bind_socket

    try:  # bound as the session binds it: "::" dual-stack, so an IPv4-only holder counts too
        bind_socket(host, port).sock.close()
    except OSError as exc:
        return exc.errno != errno.EADDRINUSE
    return True


@contextlib.asynccontextmanager
async def peer_session(
    config: SessionConfig, stop: asyncio.Event, requested_port: int | None = 0
) -> AsyncIterator[Session]:
    """A started :class:`Session`, closed on exit; after a stop signal the close saves resume data
    first and is cut off at :data:`_CLOSE_BUDGET` seconds. ``requested_port`` None (no ``--port``)
    and a config on port 0: the default port was taken, which a note on stderr says."""
    session = Session(config)
    try:
        await until_stopped(stop, session.start())
        if requested_port is None and config.listen_port == 0:
            note(f"port {DEFAULT_PEER_PORT} is in use: listening for peers on port {session.port}")
        yield session
    finally:
        if not stop.is_set():
            await session.close()
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_BUDGET):
                    await asyncio.gather(
                        session.reachability.stop(),  # unmap now, beside saving: the deadline is near
                        *(h.save_resume() for h in session.torrents),
                        return_exceptions=True,
                    )
                    await session.close()


#: Seconds between two progress refreshes (Rich bar, ``--json`` ``progress`` lines).
PROGRESS_INTERVAL = 0.5
#: The session events after which :func:`_drive` looks at the torrents at once, not at its next tick.
_WAKE_EVENTS = frozenset({"torrent_completed", "torrent_error"})
#: The keys every event line starts with (an event whose data has one is written the generic way).
_RESERVED = frozenset({"event", "info_hash", "name"})


async def _pump_events(session: Session, display: _Display) -> None:
    shown_mapping = ""
    json_out = display.json
    async for ev in session.events():
        if json_out:
            display.session_event(ev)
        if ev.kind in _WAKE_EVENTS:  # printed first, then the command ends (or fails) at once
            display.wake.set()
        if ev.kind == "port_mapping" and not display.json:
            summary = str(ev.data["summary"])
            outcome = summary.split(" ", 1)[0]  # "mapped", "no", "port": a line when that changes
            if not summary.endswith(("trying", "stopped")) and outcome != shown_mapping:
                shown_mapping = outcome
                note(summary)  # where peers reach us, or why they cannot


async def _drive(
    session: Session,
    handles: list[TorrentHandle],
    display: _Display,
    *,
    until_complete: bool,
    stop: asyncio.Event,
) -> bool:
    """Refresh the display until every torrent completes (or forever when seeding) or ``stop``.

    Refreshes every :data:`PROGRESS_INTERVAL` seconds, and at once after a ``torrent_completed`` or
    ``torrent_error`` event (``display.wake``): a one-shot download ends as soon as its last piece
    is verified, not at the next tick."""
    while not stop.is_set():
        display.wake.clear()
        statuses = [display.update(h) for h in handles]  # one status per torrent and tick
        if any(st.state == "error" for st in statuses):
            for st in statuses:
                if st.error:
                    fail(f"{st.name}: {st.error}", code=EXIT_FAILURE)
        if until_complete and all(st.state == "seeding" for st in statuses):
            for h in handles:
                display.update(h)
            return True
        await _tick(stop, display.wake)
    return False


async def _tick(stop: asyncio.Event, wake: asyncio.Event) -> None:
    """Sleep :data:`PROGRESS_INTERVAL` seconds, or until ``stop`` or ``wake`` is set.

    (Two waiter tasks and ``asyncio.wait``: ~10 µs a tick, twice a second. A single
    ``asyncio.timeout`` around ``wake.wait()`` ended a download two loop iterations sooner and
    then lost the tracker's ``completed`` announce, which the session's close cancelled. The
    session's close now waits for that announce within the stop deadline (BEP 3 ``completed``:
    tests/session/test_session_announce_completed.py), so either form is correct; the ~7 µs a tick
    the other would save is not worth a change here.)"""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=PROGRESS_INTERVAL, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


def _config(
    host: str,
    port: int | None,
    *,
    bootstrap: list[str] | None = None,
    no_dht: bool = False,
    lsd: bool = False,
    port_mapping: bool = True,
    holepunch: bool = True,
    download_limit: str | None = None,
    upload_limit: str | None = None,
    encryption: EncryptionPolicy = EncryptionPolicy.PREFER,
    transports: str = "tcp,utp",
    preallocate: str = "sparse",
    super_seed: bool = False,
    proxy: str | None = None,
    blocklist: str | None = None,
) -> SessionConfig:
    """Session settings from the common options (``--port``: None is :data:`DEFAULT_PEER_PORT`, or 0
    when it is taken; ``--bootstrap``, ``--no-dht``, ``--lsd``, ``--no-port-mapping``,
    ``--no-holepunch``, ``--download-limit``, ``--upload-limit``,
    ``--preallocate``, ``--super-seed``, ``--proxy``, ``--blocklist``: a blocklist is loaded here,
    before the event loop runs)."""
    nodes = [parse_hostport(b, "--bootstrap") for b in bootstrap or []]
    if preallocate not in ("sparse", "full"):
        fail(f"--preallocate must be sparse or full, not {preallocate!r}")
    if proxy:
        from bitswarm.session.proxy import parse_proxy

        try:
            parse_proxy(proxy)
        except ValueError as exc:
            fail(f"--proxy: {exc}")
        if "tcp" not in _transports(transports):
            fail("--proxy carries TCP only: --transports must include tcp")
    if port is None:
        port = DEFAULT_PEER_PORT if _port_is_free(host, DEFAULT_PEER_PORT) else 0
    return SessionConfig(
        proxy=proxy or None,
        blocklist=_load_blocklist(blocklist, proxy) if blocklist else None,
        listen_host=host,
        listen_port=port,
        enable_dht=not no_dht,
        dht_bootstrap=nodes or None,
        enable_lsd=lsd,
        port_mapping=port_mapping,
        enable_holepunch=holepunch,
        download_rate_limit=parse_rate(download_limit, "--download-limit"),
        upload_rate_limit=parse_rate(upload_limit, "--upload-limit"),
        encryption=encryption,
        transports=_transports(transports),
        preallocate=preallocate,
        super_seed=super_seed,
    )


def _load_blocklist(source: str, proxy: str | None) -> Blocklist:
    """``--blocklist FILE|URL``, loaded (and a URL fetched) before the peer session starts."""
    from bitswarm.session.blocklist import BlocklistError
    from bitswarm.session.blocklist_source import load_blocklist

    try:
        blocklist = asyncio.run(load_blocklist(source, proxy=proxy))
    except BlocklistError as exc:
        fail(f"--blocklist: {exc}", code=EXIT_FAILURE)
    if not state.quiet:
        note(f"blocklist: {blocklist.rules} rules, {blocklist.ranges} ranges")
    return blocklist


def _transports(text: str) -> tuple[str, ...]:
    """``--transports``: tcp, utp or both, comma-separated."""
    try:
        return parse_transports(text)
    except ValueError:
        fail(f"--transports must be tcp, utp or tcp,utp, not {text!r}")


def _trackers(tracker: list[str] | None) -> list[str]:
    """The ``--tracker`` values as URLs (a bare HOST:PORT is an http:// announce URL)."""
    return [tracker_url(t) for t in tracker or []]


#: The resume directory of the library's default (inside the download directory), migrated from.
LEGACY_RESUME_DIR = ".bitswarm"


def resume_dir_for(save: Path) -> Path:
    """Where the one-shot commands keep the resume data of torrents saved in ``save``:
    ``$XDG_STATE_HOME/bitswarm/resume/<key>`` (``~/.local/state`` when unset), ``key`` the first 32
    hex digits of the SHA-256 of the absolute save path. Inside, each torrent's file is named by its
    info-hash (``<hash>.resume``; a magnet link's fetched info dictionary ``<hash>.info``): keyed by
    info-hash and save path, and nothing is written into the download directory."""
    import hashlib

    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    key = hashlib.sha256(os.fsencode(os.path.abspath(save))).hexdigest()[:32]
    return Path(base) / "bitswarm" / "resume" / key


def migrate_resume(save: Path, swarm_hash: bytes) -> list[str]:
    """Move a torrent's resume data (and a magnet's cached info dictionary) from the old
    ``save/.bitswarm/`` into :func:`resume_dir_for` ``(save)``, unless it is there already; the old
    directory is removed once empty. A ``.bitswarm`` that is a symbolic link is never followed (nothing
    is migrated from it). Returns the names moved. Blocking: run it off the event loop."""
    from bitswarm.storage.resume import ResumePathError, read_resume_file, write_resume_file

    old_dir = save / LEGACY_RESUME_DIR
    new_dir = resume_dir_for(save)
    moved: list[str] = []
    for name in (f"{swarm_hash.hex()}.resume", f"{swarm_hash.hex()}.info"):
        if (new_dir / name).exists():
            continue
        try:
            blob = read_resume_file(str(old_dir / name))
        except (ResumePathError, OSError):
            return moved  # a link (or not a directory): left alone
        if blob is None:
            continue
        write_resume_file(str(new_dir / name), blob)
        with contextlib.suppress(OSError):
            fd = os.open(old_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                os.unlink(name, dir_fd=fd)
            finally:
                os.close(fd)
        moved.append(name)
    if moved:
        with contextlib.suppress(OSError):
            os.rmdir(old_dir)  # only when empty
    return moved


async def resume_dir(save: Path, swarm_hash: bytes) -> str:
    """The resume directory to pass to :meth:`Session.add` for ``save``, after the migration."""
    moved = await asyncio.to_thread(migrate_resume, save, swarm_hash)
    if moved:
        note(f"moved resume data from {save / LEGACY_RESUME_DIR} to {resume_dir_for(save)}")
    return str(resume_dir_for(save))


def _swarm_hash(source: Torrent | str) -> bytes:
    if isinstance(source, str):
        from bitswarm.metainfo import parse_magnet

        return parse_magnet(source).swarm_hash
    return source.swarm_hash


def _load(source: str) -> Torrent:
    if source.startswith("magnet:"):
        fail("this command needs a .torrent file, not a magnet link")
    return load_torrent(source)


def _is_mutable_link(source: str) -> bool:
    """A BEP 46 link? (``bitswarm.session.mutable`` and its DHT modules are imported for magnet
    links only: a .torrent download starts without them.)"""
    if source[:7].lower() != "magnet:":
        return False
    from bitswarm.session.mutable import is_mutable_link

    return is_mutable_link(source)


def _load_source(source: str) -> Torrent | str:
    """A parsed .torrent, or the magnet link itself (checked here, resolved by the session)."""
    if source[:7].lower() == "magnet:":
        from bitswarm.metainfo import MetainfoError, parse_magnet

        if _is_mutable_link(source):  # BEP 46: resolved on the DHT once the session runs
            from bitswarm.session.mutable import MutableTorrentError, parse_mutable_link

            try:
                parse_mutable_link(source)
            except MutableTorrentError as exc:
                fail(f"bad magnet link: {exc}")
            return source
        try:
            parse_magnet(source)
        except MetainfoError as exc:
            fail(f"bad magnet link: {exc}")
        return source
    return load_torrent(source)


@app.command()
def download(
    source: Annotated[str, typer.Argument(help="A .torrent file or a magnet link.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Directory to download into.")],
    tracker: TrackerOption = None,
    peer: PeerOption = None,
    port: PortOption = None,
    host: HostOption = "::",
    download_limit: DownloadLimitOption = None,
    upload_limit: UploadLimitOption = None,
    encryption: EncryptionOption = EncryptionPolicy.PREFER,
    transports: TransportsOption = "tcp,utp",
    seed: Annotated[bool, typer.Option("--seed/--no-seed", help="Keep seeding after the download.")] = False,
    sequential: Annotated[bool, typer.Option("--sequential", help="Download pieces in order.")] = False,
    bootstrap: BootstrapOption = None,
    no_dht: NoDhtOption = False,
    lsd: LsdOption = False,
    no_port_mapping: NoPortMappingOption = False,
    no_holepunch: NoHolepunchOption = False,
    preallocate: PreallocateOption = "sparse",
    proxy: ProxyOption = None,
    blocklist: BlocklistOption = None,
    metadata_timeout: Annotated[
        float, typer.Option("--metadata-timeout", help="Seconds a magnet link may take to get its metadata.")
    ] = 300.0,
    json_out: JsonOption = False,
) -> None:
    """Download a torrent (.torrent file or magnet link) into a directory; exits 0 once every piece
    is verified (unless --seed). A magnet link needs no tracker: its peers come from x.pe, the DHT
    (--bootstrap) and peer exchange. A BEP 46 link (magnet:?xs=urn:btpk:KEY, from share --mutable)
    is looked up on the DHT first and leads to the latest torrent published with that key.

    Running it again with the same directory resumes the download.
    """
    catch_stop_signals()
    trackers = _trackers(tracker)
    config = _config(
        host, port, bootstrap=bootstrap, no_dht=no_dht, lsd=lsd, port_mapping=not no_port_mapping,
        holepunch=not no_holepunch,
        download_limit=download_limit, upload_limit=upload_limit, encryption=encryption,
        transports=transports, preallocate=preallocate, proxy=proxy, blocklist=blocklist,
    )  # fmt: skip
    source_ = _load_source(source)
    peers = [parse_hostport(p) for p in peer or []]
    output.mkdir(parents=True, exist_ok=True)

    async def main() -> None:
        stop = asyncio.Event()
        install_stop(stop)
        display = _Display(json_out, state.quiet)
        async with peer_session(config, stop, port) as session:
            pump = asyncio.get_running_loop().create_task(_pump_events(session, display))
            torrent = await _resolve_mutable(session, source_, display, stop, metadata_timeout)
            if isinstance(torrent, str):
                display.event("metadata", magnet=torrent, port=session.port)
                if not json_out and err_console.is_terminal:
                    note("fetching the torrent's metadata from peers ...")
            adding = session.add(
                torrent,
                output,
                resume_dir=await resume_dir(output, _swarm_hash(torrent)),
                trackers=trackers,
                peers=peers,
                sequential=sequential,
                metadata_timeout=metadata_timeout,
                progress=display.checking(torrent if isinstance(torrent, str) else torrent.name),
            )
            handle = await until_stopped(stop, adding)  # metadata fetch and checking end on a signal
            display.event("started", name=handle.name, info_hash=handle.info_hash.hex(), port=session.port)
            with display:
                done = await _drive(session, [handle], display, until_complete=True, stop=stop)
                if done and seed:
                    await _drive(session, [handle], display, until_complete=False, stop=stop)
            pump.cancel()
        if not done:
            raise typer.Exit(130)
        if not json_out and not state.quiet:
            console.print(f"[green]complete[/]: {handle.name} in {output}")

    _run(main)


async def _resolve_mutable(
    session: Session, source: Torrent | str, display: _Display, stop: asyncio.Event, timeout: float
) -> Torrent | str:
    """A BEP 46 link (``magnet:?xs=urn:btpk:...``): the magnet link of the version its publisher's
    DHT item points to now; anything else as it is."""
    if not isinstance(source, str) or not _is_mutable_link(source):
        return source
    from bitswarm.session.mutable import parse_mutable_link, resolve

    if session.dht is None:
        fail("a magnet:?xs=urn:btpk: link is resolved on the DHT: drop --no-dht")
    link = parse_mutable_link(source)
    if not display.json and err_console.is_terminal:
        note("looking the link's latest version up on the DHT ...")
    info_hash = await until_stopped(stop, resolve(session.dht, link, timeout=timeout))
    display.event("resolved", link=source, info_hash=info_hash.hex())
    return link.magnet_for(info_hash)


def _seed_paths(torrent: Torrent, data: Path) -> Path:
    """The save path for ``data``: a directory holding the content, or a single file's own path."""
    if data.is_file():
        if not torrent.info.single_file:
            fail(f"{data} is a file but the torrent has {len(torrent.info.data_files)} files")
        if data.name != torrent.info.name:
            fail(f"{data.name!r} is not the torrent's file name {torrent.info.name!r}")
        return data.parent
    if not data.is_dir():
        fail(f"{data} does not exist")
    if (data / torrent.info.name).exists():
        return data
    if not torrent.info.single_file and data.name == torrent.info.name:
        return data.parent  # the torrent's own directory was given
    fail(f"{data} does not hold {torrent.info.name!r}")


def _announce_host(host: str) -> str:
    """An address other machines can reach for a tracker bound to ``host``."""
    if host not in ("0.0.0.0", "::", ""):
        return host
    import socket

    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


async def _start_embedded_tracker(spec: str) -> tuple[Any, str]:
    """Start bitswarm's tracker in this process (open mode, in memory); returns it and its URL."""
    from bitswarm.tracker.server.app import TrackerServer
    from bitswarm.tracker.server.config import TrackerConfig

    thost, tport = parse_hostport(spec, "--embed-tracker", allow_zero=True)
    server = TrackerServer(TrackerConfig(http=((thost, tport),), udp=((thost, tport),), db=None))
    try:
        await server.start()
    except OSError as exc:
        fail(f"cannot start the embedded tracker on {spec}: {exc.strerror or exc}")
    bound = server.http_addresses[0][1]
    ahost = _announce_host(thost)
    if ":" in ahost:
        ahost = f"[{ahost}]"
    return server, f"http://{ahost}:{bound}/announce"


async def _seed_forever(
    torrents: list[tuple[Torrent, Path]],
    config: SessionConfig,
    trackers: list[str],
    json_out: bool,
    peers: list[tuple[str, int]],
    stop: asyncio.Event,
    tracker_server: Any = None,
    index: str | None = None,
    requested_port: int | None = 0,
    mutable: Path | None = None,
) -> None:
    display = _Display(json_out, state.quiet)
    try:
        await _seed_session(
            torrents, config, trackers, json_out, peers, stop, display, index, requested_port, mutable
        )
    finally:
        if tracker_server is not None:
            await tracker_server.stop()


async def _seed_session(
    torrents: list[tuple[Torrent, Path]],
    config: SessionConfig,
    trackers: list[str],
    json_out: bool,
    peers: list[tuple[str, int]],
    stop: asyncio.Event,
    display: _Display,
    index: str | None = None,
    requested_port: int | None = 0,
    mutable: Path | None = None,
) -> None:
    host = config.listen_host
    async with peer_session(config, stop, requested_port) as session, contextlib.AsyncExitStack() as stack:
        pump = asyncio.get_running_loop().create_task(_pump_events(session, display))
        handles = []
        for torrent, save in torrents:
            rdir = await resume_dir(save, torrent.swarm_hash)
            progress = display.checking(torrent.name)
            adding = session.add(
                torrent, save, resume_dir=rdir, trackers=trackers, peers=peers, progress=progress
            )
            h = await until_stopped(stop, adding)
            st = h.status()
            if st.state != "seeding":
                fail(f"{save}: only {st.progress:.1%} of {torrent.name!r} is there and verified", code=1)
            handles.append(h)
            display.event("seeding", name=h.name, info_hash=h.info_hash.hex(), port=session.port)
        if index is not None:  # register on the file index and keep the peer online while seeding
            from bitswarm.index.client import announce_share

            for h in handles:
                registering = stack.enter_async_context(
                    announce_share(index, h.torrent, host, session.port, save_path=h.save_path)
                )
                reg = await until_stopped(stop, registering)
                display.event("indexed", name=h.name, file_id=reg.file_id, peer_guid=reg.peer_guid)
        if mutable is not None:  # BEP 46: the key's DHT item points at this torrent from now on
            await _publish_mutable(session, mutable, handles[0].torrent, json_out, stop, stack)
        if not json_out:
            note(f"seeding on port {session.port} (Ctrl-C to stop)")
        with display:
            await _drive(session, handles, display, until_complete=False, stop=stop)
        pump.cancel()


async def _publish_mutable(
    session: Session,
    key_path: Path,
    torrent: Torrent,
    json_out: bool,
    stop: asyncio.Event,
    stack: contextlib.AsyncExitStack,
) -> None:
    """``share --mutable KEYFILE``: put the BEP 46 pointer (the key is made if the file does not
    exist), print the ``magnet:?xs=urn:btpk:`` link and keep the item on the DHT while sharing."""
    from bitswarm.session.mutable import Publisher, create_key, load_key

    if session.dht is None:
        fail("--mutable publishes on the DHT: drop --no-dht")
    if key_path.exists():
        key = load_key(key_path)
    else:
        key = create_key(key_path)
        note(f"new ed25519 key written to {key_path} (keep it: it is the torrent's identity)")
    ih = torrent.info_hash_v1 or torrent.info_hash_v2
    assert ih is not None
    publisher = Publisher(session.dht, key, ih)
    seq = await until_stopped(stop, publisher.publish_until())
    uri = publisher.link.to_uri()
    if json_out:
        print_json({"event": "mutable", "magnet": uri, "seq": seq, "info_hash": ih.hex()})
    else:
        print(f"mutable: {uri}")
    sys.stdout.flush()
    task = asyncio.get_running_loop().create_task(publisher.run(), name="bep46-republish")
    stack.callback(task.cancel)


@app.command()
def seed(
    torrent_path: Annotated[str, typer.Argument(metavar="TORRENT", help="The .torrent file.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Directory holding the content (or the file).")],
    tracker: TrackerOption = None,
    peer: PeerOption = None,
    port: PortOption = None,
    host: HostOption = "::",
    download_limit: DownloadLimitOption = None,
    upload_limit: UploadLimitOption = None,
    encryption: EncryptionOption = EncryptionPolicy.PREFER,
    transports: TransportsOption = "tcp,utp",
    embed_tracker: EmbedOption = None,
    bootstrap: BootstrapOption = None,
    no_dht: NoDhtOption = False,
    lsd: LsdOption = False,
    no_port_mapping: NoPortMappingOption = False,
    no_holepunch: NoHolepunchOption = False,
    preallocate: PreallocateOption = "sparse",
    super_seed: SuperSeedOption = False,
    proxy: ProxyOption = None,
    blocklist: BlocklistOption = None,
    json_out: JsonOption = False,
) -> None:
    """Seed a torrent whose content is already on disk (it is verified first)."""
    catch_stop_signals()
    torrent = _load(torrent_path)
    save = _seed_paths(torrent, data)
    peers = [parse_hostport(p) for p in peer or []]
    trackers = _trackers(tracker)
    config = _config(
        host, port, bootstrap=bootstrap, no_dht=no_dht, lsd=lsd, port_mapping=not no_port_mapping,
        holepunch=not no_holepunch,
        download_limit=download_limit, upload_limit=upload_limit, encryption=encryption,
        transports=transports, preallocate=preallocate, super_seed=super_seed, proxy=proxy,
        blocklist=blocklist,
    )  # fmt: skip

    async def main() -> None:
        stop = asyncio.Event()
        install_stop(stop)
        server = url = None
        if embed_tracker is not None:
            server, url = await _start_embedded_tracker(embed_tracker)
            _announce_tracker(url, json_out)
        extra = [*trackers, *([url] if url else [])]
        torrents = [(torrent, save)]
        await _seed_forever(torrents, config, extra, json_out, peers, stop, server, requested_port=port)

    _run(main)


def _announce_tracker(url: str, json_out: bool) -> None:
    if json_out:
        print_json({"event": "tracker", "announce": url})
    else:
        note(f"embedded tracker: {url}")


@app.command()
def share(
    path: Annotated[Path, typer.Argument(help="File or directory to share.")],
    tracker: TrackerOption = None,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Where to write the .torrent (default: NAME.torrent)."),
    ] = None,
    port: PortOption = None,
    host: HostOption = "::",
    download_limit: DownloadLimitOption = None,
    upload_limit: UploadLimitOption = None,
    encryption: EncryptionOption = EncryptionPolicy.PREFER,
    transports: TransportsOption = "tcp,utp",
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing .torrent.")] = False,
    embed_tracker: EmbedOption = None,
    bootstrap: BootstrapOption = None,
    no_dht: NoDhtOption = False,
    lsd: LsdOption = False,
    no_port_mapping: NoPortMappingOption = False,
    no_holepunch: NoHolepunchOption = False,
    preallocate: PreallocateOption = "sparse",
    super_seed: SuperSeedOption = False,
    proxy: ProxyOption = None,
    blocklist: BlocklistOption = None,
    json_out: JsonOption = False,
    index: Annotated[
        str | None,
        typer.Option("--index", help="Register on this file index (URL) and stay online while seeding."),
    ] = None,
    mutable: Annotated[
        Path | None,
        typer.Option(
            "--mutable",
            metavar="KEYFILE",
            help="BEP 46: point the ed25519 key's DHT item at this torrent (the key is created if the "
            "file does not exist) and print its magnet:?xs=urn:btpk: link, which always leads to the "
            "latest torrent shared with the key.",
        ),
    ] = None,
) -> None:
    """Create a torrent for PATH and seed it; prints the torrent path and its magnet link.

    With --embed-tracker and no --tracker, the embedded tracker becomes the torrent's announce URL.
    """
    from bitswarm.metainfo import magnet_from_torrent, make_torrent

    catch_stop_signals()
    if not path.exists():
        fail(f"{path} does not exist")
    out = output or Path(f"{path.resolve().name}.torrent")
    if out.exists() and not force:
        fail(f"{out} exists (use --force to overwrite)")
    trackers = _trackers(tracker)
    config = _config(
        host, port, bootstrap=bootstrap, no_dht=no_dht, lsd=lsd, port_mapping=not no_port_mapping,
        holepunch=not no_holepunch,
        download_limit=download_limit, upload_limit=upload_limit, encryption=encryption,
        transports=transports, preallocate=preallocate, super_seed=super_seed, proxy=proxy,
        blocklist=blocklist,
    )  # fmt: skip

    async def main() -> None:
        stop = asyncio.Event()
        install_stop(stop)
        server = url = None
        if embed_tracker is not None:
            server, url = await _start_embedded_tracker(embed_tracker)
            _announce_tracker(url, json_out)
        tiers = [[t] for t in trackers] or ([[url]] if url else [])
        interrupted = threading.Event()

        def hashed(done: int, total: int) -> None:  # runs in the hashing thread: a stop ends it
            if interrupted.is_set():
                raise _Stopped

        try:
            hashing = asyncio.to_thread(make_torrent, path, trackers=tiers, progress=hashed)
            made = await until_stopped(stop, hashing, on_stop=interrupted.set)
            write_new_file(out, made.data, force)
        except BaseException:
            if server is not None:
                await server.stop()
            raise
        torrent = parse_torrent(made.data)
        magnet = magnet_from_torrent(torrent).to_uri()
        if json_out:
            print_json({"event": "shared", "torrent": str(out), "magnet": magnet, "name": torrent.name})
        else:  # plain lines, never wrapped: a script takes the magnet link from its line
            print(f"torrent: {out}\nmagnet:  {magnet}")
        sys.stdout.flush()
        extra = [url] if url and tracker else []
        save = path.resolve().parent
        await _seed_forever(
            [(torrent, save)], config, extra, json_out, [], stop, server, index, port, mutable=mutable
        )

    _run(main)
