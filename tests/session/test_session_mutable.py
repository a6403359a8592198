"""BEP 46 mutable torrents: links, pointers and key files (unit), then a publisher and a follower on
a loopback DHT of several bitswarm nodes: the follower resolves the link, downloads, and after a new
version is published resolves the new one."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bitswarm.dht.server import DHTServer
from bitswarm.metainfo import Torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.session import Session, SessionConfig
from bitswarm.session.mutable import (
    MutableLink,
    MutableTorrentError,
    Publisher,
    create_key,
    is_mutable_link,
    load_key,
    parse_mutable_link,
    parse_pointer,
    pointer_value,
    public_key,
    resolve,
)

pytestmark = pytest.mark.timeout(90)


def test_link_round_trip_and_garbage() -> None:
    link = MutableLink(bytes(range(32)), b"v1")
    uri = link.to_uri()
    assert uri == f"magnet:?xs=urn:btpk:{bytes(range(32)).hex()}&s=7631"
    assert is_mutable_link(uri) and parse_mutable_link(uri) == link
    full = uri + "&tr=http%3A%2F%2Ft%2Fa&x.pe=1.2.3.4:5"
    parsed = parse_mutable_link(full)
    assert parsed.magnet_for(b"\x01" * 20) == (
        f"magnet:?xt=urn:btih:{'01' * 20}&tr=http%3A%2F%2Ft%2Fa&x.pe=1.2.3.4%3A5"
    )
    assert parsed.magnet_for(b"\x02" * 32).startswith(f"magnet:?xt=urn:btmh:1220{'02' * 32}")
    assert not is_mutable_link(f"magnet:?xt=urn:btih:{'00' * 20}")
    for bad in ("magnet:?xs=urn:btpk:abcd", "magnet:?xs=urn:btpk:" + "zz" * 32, "http://x",
                uri + "&xs=urn:btpk:" + "00" * 32, uri.replace("s=7631", "s=zz")):  # fmt: skip
        with pytest.raises(MutableTorrentError):
            parse_mutable_link(bad)


def test_pointer_values() -> None:
    assert parse_pointer(pointer_value(b"\x07" * 20)) == b"\x07" * 20
    for bad in (b"garbage", b"d2:ih3:abce", b"li1ee", b"d1:xi1ee"):
        with pytest.raises(MutableTorrentError):
            parse_pointer(bad)


def test_key_files(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    key = create_key(tmp_path / "k")
    assert os.stat(tmp_path / "k").st_mode & 0o777 == 0o600
    assert public_key(load_key(tmp_path / "k")) == public_key(key)
    with pytest.raises(MutableTorrentError):
        create_key(tmp_path / "k")  # never over an existing key
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    (tmp_path / "raw").write_bytes(raw)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    (tmp_path / "pem").write_bytes(pem)
    assert public_key(load_key(tmp_path / "raw")) == public_key(load_key(tmp_path / "pem")) == public_key(key)
    (tmp_path / "bad").write_text("not a key")
    for bad in ("bad", "missing"):
        with pytest.raises(MutableTorrentError):
            load_key(tmp_path / bad)


@contextlib.asynccontextmanager
async def loopback_dht(n: int) -> AsyncIterator[tuple[str, int]]:
    """``n`` bitswarm DHT nodes on 127.0.0.1 that know each other; yields the first one's address."""
    async with contextlib.AsyncExitStack() as stack:
        boot = await stack.enter_async_context(DHTServer("127.0.0.1", 0))
        for _ in range(n - 1):
            node = await stack.enter_async_context(DHTServer("127.0.0.1", 0, bootstrap=[boot.address]))
            await node.bootstrap([boot.address], timeout=5)
        yield boot.address


def config(boot: tuple[str, int]) -> SessionConfig:
    return SessionConfig(
        listen_host="127.0.0.1", listen_port=0, dht_bootstrap=[boot], dht_announce_interval=1.0,
        encryption="off", transports=("tcp",),
    )  # fmt: skip


def version(root: Path, n: int) -> Torrent:
    path = root / "release.bin"
    root.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(n).randbytes(200_000 + n))
    return parse_torrent(create_torrent(path, version="v1", piece_length=32768))


async def test_publish_resolve_download_and_update(tmp_path: Path) -> None:
    key = create_key(tmp_path / "key")
    v1 = version(tmp_path / "v1", 1)
    v2 = version(tmp_path / "v2", 2)
    async with (
        loopback_dht(4) as boot,
        Session(config(boot)) as publisher,
        Session(config(boot)) as follower,
    ):
        assert publisher.dht is not None and follower.dht is not None
        await publisher.add(v1, tmp_path / "v1")
        pub = Publisher(publisher.dht, key, v1.swarm_hash)
        assert await pub.publish_once(timeout=10) == 1
        assert await pub.publish_once(timeout=10) == 1  # the same pointer: the same seq
        link = parse_mutable_link(pub.link.to_uri())
        ih = await resolve(follower.dht, link, timeout=20)
        assert ih == v1.swarm_hash
        h = await follower.add(link.magnet_for(ih), tmp_path / "f1", metadata_timeout=30)
        await h.wait_complete(timeout=30)
        got = (tmp_path / "f1" / "release.bin").read_bytes()
        assert got == (tmp_path / "v1" / "release.bin").read_bytes()
        # a new version: the same key, the next seq; the link now leads there
        await publisher.add(v2, tmp_path / "v2")
        pub2 = Publisher(publisher.dht, key, v2.swarm_hash)
        assert await pub2.publish_once(timeout=10) == 2
        assert await resolve(follower.dht, link, timeout=20) == v2.swarm_hash
        # a key nobody published under
        other = MutableLink(public_key(create_key(tmp_path / "other")))
        with pytest.raises(MutableTorrentError, match="no BEP 46 item"):
            await resolve(follower.dht, other, timeout=2)
