"""``bitswarm stream``: download a torrent and serve its files over HTTP (with ``Range``) meanwhile.

Point a media player at the printed URL: reads block until their pieces arrive, the piece picker
fetches what is under the read position first and reads ahead, and seeking works.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from bitswarm.cli._app import app, fail, print_json
from bitswarm.cli._peer import (
    DEFAULT_PEER_PORT,
    BlocklistOption,
    BootstrapOption,
    DownloadLimitOption,
    EncryptionOption,
    HostOption,
    LsdOption,
    NoDhtOption,
    NoHolepunchOption,
    NoPortMappingOption,
    PeerOption,
    PreallocateOption,
    ProxyOption,
    TrackerOption,
    TransportsOption,
    UploadLimitOption,
    _config,
    _load_source,
    _run,
    _swarm_hash,
    _trackers,
    catch_stop_signals,
    install_stop,
    parse_hostport,
    peer_session,
    resume_dir,
    until_stopped,
)
from bitswarm.mse import EncryptionPolicy


@app.command()
def stream(
    source: Annotated[str, typer.Argument(help="A .torrent file or a magnet link.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Directory to download into.")] = Path("."),
    port: Annotated[int, typer.Option("--port", help="HTTP port to serve on (0: any free port).")] = 8080,
    http_host: Annotated[str, typer.Option("--http-host", help="HTTP address to serve on.")] = "127.0.0.1",
    file: Annotated[int | None, typer.Option("--file", help="Index of the file to print the URL of.")] = None,
    peer_port: Annotated[
        int | None,
        typer.Option(
            "--peer-port",
            help=f"BitTorrent listen port (default: {DEFAULT_PEER_PORT}, or a free one if taken; 0: any).",
        ),
    ] = None,
    download_limit: DownloadLimitOption = None,
    upload_limit: UploadLimitOption = None,
    encryption: EncryptionOption = EncryptionPolicy.PREFER,
    transports: TransportsOption = "tcp,utp",
    host: HostOption = "::",
    tracker: TrackerOption = None,
    peer: PeerOption = None,
    bootstrap: BootstrapOption = None,
    no_dht: NoDhtOption = False,
    lsd: LsdOption = False,
    no_port_mapping: NoPortMappingOption = False,
    no_holepunch: NoHolepunchOption = False,
    preallocate: PreallocateOption = "sparse",
    proxy: ProxyOption = None,
    blocklist: BlocklistOption = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the URLs as one JSON line.")] = False,
) -> None:
    """Download SOURCE and serve its files over HTTP while it downloads (Range requests, seeking)."""
    from bitswarm.session.stream import StreamServer

    catch_stop_signals()
    torrent = _load_source(source)
    peers = [parse_hostport(p) for p in peer or []]
    trackers = _trackers(tracker)
    # the settings (and a --blocklist, loaded or fetched through --proxy) before the event loop runs,
    # as download does: a bad option is one line and its exit code, nothing started yet
    config = _config(
        host, peer_port, bootstrap=bootstrap, no_dht=no_dht, lsd=lsd, port_mapping=not no_port_mapping,
        holepunch=not no_holepunch,
        download_limit=download_limit, upload_limit=upload_limit, encryption=encryption,
        transports=transports, preallocate=preallocate, proxy=proxy, blocklist=blocklist,
    )  # fmt: skip
    output.mkdir(parents=True, exist_ok=True)

    async def main() -> None:
        stop = asyncio.Event()
        install_stop(stop)  # every phase (metadata, checking, streaming) ends within 2 s of a signal
        async with peer_session(config, stop, peer_port) as session:
            if json_out and isinstance(torrent, str):
                print_json({"event": "metadata", "magnet": torrent, "port": session.port})
            rdir = await resume_dir(output, _swarm_hash(torrent))
            adding = session.add(
                torrent, output, resume_dir=rdir, trackers=trackers, peers=peers, sequential=True
            )
            handle = await until_stopped(stop, adding)
            files = handle.torrent.info.data_files
            if file is not None and not 0 <= file < len(files):
                fail(f"--file must be 0..{len(files) - 1}, got {file}")
            server = StreamServer(handle)
            try:
                await server.start(http_host, port)
            except OSError as exc:
                fail(f"cannot serve HTTP on {http_host}:{port}: {exc.strerror or exc}")
            urls = [server.file_url(i, http_host) for i in range(len(files))]
            if json_out:
                print_json(
                    {"event": "streaming", "index": f"http://{http_host}:{server.port}/", "files": urls}
                )
            else:
                shown = urls if file is None else [urls[file]]
                for u in shown:
                    print(u)  # plain lines: a URL is never wrapped
                print(f"all files: http://{http_host}:{server.port}/   (Ctrl-C to stop)", flush=True)
            try:
                await stop.wait()
            finally:
                await server.stop()

    _run(main)
