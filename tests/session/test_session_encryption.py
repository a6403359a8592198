"""MSE/PE in the session (``SessionConfig.encryption``): bitswarm <-> bitswarm with every policy pair.

Which pairs connect, and how: ``require`` on either side means RC4; ``prefer`` <-> ``prefer``
obfuscates the handshake and selects plaintext (RC4 with ``prefer_rc4``, tested below);
``prefer`` dialing ``off`` falls back to plaintext; ``require`` and ``off`` never connect.
Also the dial plan, the PEX flag and the extended handshake's ``e`` key, and the SKEY index of the
incoming path (v1 and v2 hashes, added and dropped with the torrents).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
from pathlib import Path

import pytest

from bitswarm.metainfo import Torrent, magnet_from_torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.metainfo._model import TorrentVersion
from bitswarm.mse import EncryptionPolicy, skey_for
from bitswarm.session import Session, SessionConfig
from bitswarm.session.peer import PeerProtocol
from bitswarm.session.peer_manager import DialAttempt, dial_plan
from bitswarm.transport import initiate_mse
from bitswarm.wire import Handshake, PeerConnection, Reserved

pytestmark = pytest.mark.timeout(60)

PREFER, REQUIRE, OFF = EncryptionPolicy.PREFER, EncryptionPolicy.REQUIRE, EncryptionPolicy.OFF


def config(encryption: EncryptionPolicy, **kw: object) -> SessionConfig:
    return SessionConfig(
        listen_host="127.0.0.1",
        listen_port=0,
        enable_dht=False,
        encryption=encryption,
        transports=("tcp",),  # MSE over TCP here; over uTP: test_session_utp.py
        **kw,  # type: ignore[arg-type]
    )


def make_torrent(root: Path, version: TorrentVersion = "v1", size: int = 700_000) -> tuple[Path, Torrent]:
    root.mkdir(parents=True, exist_ok=True)
    f = root / "data.bin"
    f.write_bytes(random.Random(7).randbytes(size))
    return f, parse_torrent(create_torrent(f, version=version, piece_length=32768))


def test_dial_plan() -> None:
    tcp_mse, tcp_plain = DialAttempt("tcp", True), DialAttempt("tcp", False)
    assert dial_plan(PREFER) == [tcp_mse, tcp_plain]
    assert dial_plan(PREFER, mse_hint=True) == [tcp_mse, tcp_plain]
    assert dial_plan(PREFER, mse_hint=False) == [tcp_plain]  # refused MSE before
    assert dial_plan(REQUIRE, mse_hint=False) == [tcp_mse]
    assert dial_plan(OFF, mse_hint=True) == [tcp_plain]
    assert dial_plan(PREFER, transports=("utp", "tcp")) == [
        DialAttempt("utp", True),
        DialAttempt("utp", False),
        tcp_mse,
        tcp_plain,
    ]


def test_config_takes_the_policy_as_text() -> None:
    assert SessionConfig(encryption="require").encryption is REQUIRE  # type: ignore[arg-type]
    assert SessionConfig().encryption is PREFER
    with pytest.raises(ValueError, match="prefer, require, off"):
        SessionConfig(encryption="always")  # type: ignore[arg-type]


# (leecher's policy, seeder's policy) -> the leecher's peer entry ("transport", "encrypted"), or
# None when the two must not connect
PAIRS: list[tuple[EncryptionPolicy, EncryptionPolicy, tuple[str, bool] | None]] = [
    (PREFER, PREFER, ("tcp", False)),  # obfuscated handshake, plaintext payload (prefer_rc4 off)
    (PREFER, REQUIRE, ("tcp+enc", True)),
    (PREFER, OFF, ("tcp", False)),  # MSE refused: redialed in plaintext
    (REQUIRE, PREFER, ("tcp+enc", True)),
    (REQUIRE, REQUIRE, ("tcp+enc", True)),
    (REQUIRE, OFF, None),
    (OFF, PREFER, ("tcp", False)),
    (OFF, REQUIRE, None),
    (OFF, OFF, ("tcp", False)),
]


@pytest.mark.parametrize(
    ("leech", "seed", "expect"), PAIRS, ids=[f"{a.value}-{b.value}" for a, b, _ in PAIRS]
)
async def test_policy_pairs(
    tmp_path: Path, leech: EncryptionPolicy, seed: EncryptionPolicy, expect: tuple[str, bool] | None
) -> None:
    f, t = make_torrent(tmp_path / "seed")
    async with Session(config(seed)) as seeder, Session(config(leech, handshake_timeout=3.0)) as leecher:
        await seeder.add(t, f.parent)
        hl = await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)])
        if expect is None:
            # the leecher's dial ends (refused) and nobody ever joins either side
            await asyncio.sleep(1.5)
            assert hl.peers() == [] and seeder.torrents[0].peers() == []
            assert hl.status().progress == 0.0
            return
        await hl.wait_complete(timeout=30)
        peers = hl.peers()
        if peers:  # the seed may already have closed the finished connection
            assert (peers[0]["transport"], peers[0]["encrypted"]) == expect
    assert (
        hashlib.sha256((tmp_path / "leech" / "data.bin").read_bytes()).digest()
        == hashlib.sha256(f.read_bytes()).digest()
    )



async def test_prefer_rc4_selects_rc4_between_two_prefer_peers(tmp_path: Path) -> None:
    """With ``prefer_rc4`` on the listener, a ``prefer`` dialer's offer of both methods gets RC4;
    without it (the default, as libtorrent) the same pair runs plaintext after the MSE handshake."""
    for prefer_rc4, expect in [(True, ("tcp+enc", True)), (False, ("tcp", False))]:
        f, t = make_torrent(tmp_path / f"seed{prefer_rc4}", size=3_000_000)
        slow = config(PREFER, download_rate_limit=1_500_000)  # still downloading while we look
        async with Session(config(PREFER, prefer_rc4=prefer_rc4)) as seeder, Session(slow) as leecher:
            await seeder.add(t, f.parent)
            hl = await leecher.add(t, tmp_path / f"leech{prefer_rc4}", peers=[("127.0.0.1", seeder.port)])
            for _ in range(200):
                if hl.peers():
                    break
                await asyncio.sleep(0.02)
            assert [(p["transport"], p["encrypted"]) for p in hl.peers()] == [expect]
            await hl.wait_complete(timeout=30)
        assert (tmp_path / f"leech{prefer_rc4}" / "data.bin").read_bytes() == f.read_bytes()


@pytest.mark.parametrize("version", ["v1", "hybrid", "v2"])
async def test_encrypted_transfer_keeps_the_connection_encrypted(
    tmp_path: Path, version: TorrentVersion
) -> None:
    """Both sides require RC4; the leecher checks its live connection mid-transfer."""
    f, t = make_torrent(tmp_path / "seed", version, size=3_000_000)
    slow = config(REQUIRE, download_rate_limit=1_500_000)  # still downloading while we look
    async with Session(config(REQUIRE)) as seeder, Session(slow) as leecher:
        await seeder.add(t, f.parent)
        hl = await leecher.add(t, tmp_path / "leech", peers=[("127.0.0.1", seeder.port)])
        for _ in range(200):
            if hl.peers():
                break
            await asyncio.sleep(0.02)
        assert [(p["transport"], p["encrypted"]) for p in hl.peers()] == [("tcp+enc", True)]
        hs = seeder.torrents[0]
        assert [(p["transport"], p["encrypted"]) for p in hs.peers()] == [("tcp+enc", True)]
        await hl.wait_complete(timeout=30)
    assert (tmp_path / "leech" / "data.bin").read_bytes() == f.read_bytes()


async def test_skey_index_follows_the_torrents(tmp_path: Path) -> None:
    f, t = make_torrent(tmp_path / "seed", "hybrid")
    assert t.info_hash_v1 is not None and t.info_hash_v2 is not None
    async with Session(config(PREFER)) as s:
        assert len(s.mse_skeys()) == 0
        h = await s.add(t, f.parent)
        index = s.mse_skeys()
        assert t.info_hash_v1 in index and t.info_hash_v2 in index
        assert skey_for(t.info_hash_v2) in index
        await s.remove(h)
        assert t.info_hash_v1 not in s.mse_skeys() and t.info_hash_v2 not in s.mse_skeys()


async def first_peer(session: Session, t: Torrent) -> PeerProtocol:
    """The session's first peer of ``t`` once its extended handshake is in."""
    rt = session.lookup(t.swarm_hash)
    assert rt is not None
    for _ in range(300):
        peer = next(iter(rt.peers.values()), None)
        if peer is not None and peer.client is not None:
            return peer
        await asyncio.sleep(0.02)
    raise AssertionError("no peer with an extended handshake")


async def test_extended_handshake_e_and_pex_flag(tmp_path: Path) -> None:
    """``e`` = 1 under prefer/require (not under off), read into ``prefers_encryption``; a peer that
    sent it, or that connected through MSE, carries PEX flag 0x01 (``supports_encryption``)."""
    f, t = make_torrent(tmp_path / "seed", size=3_000_000)
    for leech_policy, seed_policy, e_seen in [(PREFER, REQUIRE, True), (PREFER, OFF, False)]:
        slow = config(leech_policy, download_rate_limit=500_000)  # still downloading while we look
        async with Session(config(seed_policy)) as seeder, Session(slow) as leecher:
            await seeder.add(t, f.parent)
            await leecher.add(t, tmp_path / f"leech-{seed_policy.value}", peers=[("127.0.0.1", seeder.port)])
            peer = await first_peer(seeder, t)
            # the seeder sees the leecher's ``e`` = 1 (prefer) in both cases
            assert peer.prefers_encryption is True and peer.supports_encryption
            lpeer = await first_peer(leecher, t)
            lrt = leecher.lookup(t.swarm_hash)
            assert lrt is not None
            assert lpeer.prefers_encryption is (True if e_seen else None)
            assert lpeer.supports_encryption is e_seen
            # a refused MSE dial is remembered: the next dial of that address goes plaintext first
            assert lrt.peer_manager.mse_hint.get(("127.0.0.1", seeder.port)) is e_seen


@pytest.mark.parametrize(
    ("leech", "seed"), [(PREFER, OFF), (REQUIRE, REQUIRE), (REQUIRE, PREFER)], ids=lambda p: p.value
)
async def test_magnet_metadata_fetch_follows_the_policy(
    tmp_path: Path, leech: EncryptionPolicy, seed: EncryptionPolicy
) -> None:
    """The metadata fetch of a magnet link dials like the torrent: MSE (RC4 under require), and
    plaintext again when an ``off`` seed refuses MSE under ``prefer``."""
    f, t = make_torrent(tmp_path / "seed", "hybrid")
    async with Session(config(seed)) as seeder, Session(config(leech)) as leecher:
        await seeder.add(t, f.parent)
        uri = dataclasses.replace(magnet_from_torrent(t), trackers=[], peers=[("127.0.0.1", seeder.port)])
        hl = await leecher.add(uri.to_uri(), tmp_path / "leech", metadata_timeout=20)
        await hl.wait_complete(timeout=30)
    assert (tmp_path / "leech" / "data.bin").read_bytes() == f.read_bytes()


async def test_handshake_must_name_the_torrent_of_the_mse_stream_key(tmp_path: Path) -> None:
    """An MSE connection for torrent A whose BitTorrent handshake names torrent B is dropped (the
    SKEY chose A); the same handshake under A's own SKEY is answered."""
    fa, ta = make_torrent(tmp_path / "a")
    fb, tb = make_torrent(tmp_path / "b", size=300_000)
    async with Session(config(REQUIRE)) as seeder:
        await seeder.add(ta, fa.parent)
        await seeder.add(tb, fb.parent)
        for skey_of, expect_answer in [(ta, False), (tb, True)]:
            reader, writer = await asyncio.open_connection("127.0.0.1", seeder.port)
            try:
                hello = Handshake(tb.swarm_hash, b"-XX0000-" + bytes(12), Reserved.make(fast=True))
                cipher, trailing = await initiate_mse(
                    reader,
                    writer,
                    skey_for(skey_of.swarm_hash),
                    policy=REQUIRE,
                    initial_payload=PeerConnection().send(hello),
                )
                assert cipher is not None
                got = bytearray(trailing)
                async with asyncio.timeout(5):
                    while len(got) < 68 and (data := await reader.read(4096)):
                        got += cipher.decrypt(data)
                answered = got[28:48] == tb.swarm_hash
                assert answered is expect_answer, bytes(got[:68])
            finally:
                writer.close()
