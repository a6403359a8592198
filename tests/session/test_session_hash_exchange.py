"""BEP 52 hash exchange: v2-only and hybrid magnets fetch their piece layers from peers (hash request
/ hashes / hash reject), every answer checked against the file's pieces root; a peer that sends hashes
that do not prove out is banned like one that sends bad data."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from bitswarm.metainfo import Torrent, magnet_from_torrent, parse_torrent
from bitswarm.metainfo._create import create_torrent
from bitswarm.metainfo._model import TorrentVersion
from bitswarm.metainfo.merkle import (
    block_hashes,
    file_tree_height,
    full_proof_layers,
    piece_height,
    verify_hashes,
)
from bitswarm.session import Session, SessionConfig
from bitswarm.session.hash_exchange import (
    HashExchange,
    LeafRead,
    handshake_reply_hash,
    speaks_v2,
    upgrade_hash,
)
from bitswarm.storage import Storage
from bitswarm.wire import (
    NEED_DATA,
    Handshake,
    HandshakeHeader,
    Hashes,
    HashReject,
    HashRequest,
    HaveAll,
    HaveNone,
    Interested,
    PeerConnection,
    Piece,
    Request,
    Reserved,
    Unchoke,
    uncle_count,
)

pytestmark = pytest.mark.timeout(90)
PL = 16384


def config(**kw: object) -> SessionConfig:
    kw.setdefault("enable_dht", False)
    return SessionConfig(listen_host="127.0.0.1", listen_port=0, **kw)  # type: ignore[arg-type]


def make_tree(root: Path, sizes: list[int]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, size in enumerate(sizes):
        (root / f"f{i}.bin").write_bytes(random.Random(i).randbytes(size))
    return root


def torrent_of(path: Path, version: TorrentVersion) -> Torrent:
    return parse_torrent(create_torrent(path, version=version, piece_length=PL))


def magnet_uri(t: Torrent, peers: list[tuple[str, int]], *, v1: bool = True) -> str:
    m = dataclasses.replace(magnet_from_torrent(t), trackers=[], peers=peers)
    if not v1:
        m = dataclasses.replace(m, info_hash_v1=None)
    return m.to_uri()


async def eventually_async(cond: Callable[[], object], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


def same_tree(a: Path, b: Path) -> None:
    for p in a.iterdir():
        assert (b / p.name).read_bytes() == p.read_bytes(), p.name


# -- the policy, without sockets ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def exchange(t: Torrent, clock: Clock) -> tuple[HashExchange, dict[bytes, bytes], list[tuple[object, str]]]:
    got: dict[bytes, bytes] = {}
    bad: list[tuple[object, str]] = []
    ex = HashExchange(
        dataclasses.replace(t, piece_layers={}),
        clock=clock,
        on_layer=got.__setitem__,
        on_bad_peer=lambda p, why: bad.append((p, why)),
    )
    return ex, got, bad


@pytest.fixture(scope="module")
def v2(tmp_path_factory: pytest.TempPathFactory) -> Torrent:
    # 1100 pieces (three ranges of 512: the last one 76 pieces, asked as 128), 7 pieces, one piece
    return torrent_of(make_tree(tmp_path_factory.mktemp("v2") / "t", [1100 * PL - 5, 7 * PL, 1000]), "v2")


def test_fetch_layers_from_a_serving_peer(v2: Torrent) -> None:
    clock = Clock()
    seed = HashExchange(v2, clock=clock, on_layer=lambda r, layer: None, on_bad_peer=lambda p, w: None)
    assert seed.complete and not seed.blocking
    ex, got, bad = exchange(v2, clock)
    assert ex.blocking and len(ex.missing) == 2  # the one-piece file needs no layer
    reqs = ex.requests_for("A")
    assert len(reqs) == 4  # PER_PEER
    assert {(r.index, r.length) for r in reqs} == {(0, 512), (512, 512), (1024, 128), (0, 8)}
    while not ex.complete:
        for r in reqs:
            ans = seed.answer("L", r)
            assert isinstance(ans, Hashes)
            assert len(ans.hash_list()) == r.length + uncle_count(r.length, r.proof_layers)
            ex.on_hashes("A", ans)
        reqs = ex.requests_for("A")
    assert got == v2.piece_layers and not bad and not ex.blocking
    assert ex.requests_for("A") == []


def test_bad_hashes_report_the_peer_and_the_range_goes_elsewhere(v2: Torrent) -> None:
    clock = Clock()
    seed = HashExchange(v2, clock=clock, on_layer=lambda r, layer: None, on_bad_peer=lambda p, w: None)
    ex, got, bad = exchange(v2, clock)
    (req, *_) = ex.requests_for("A")
    ans = seed.answer("L", req)
    assert isinstance(ans, Hashes)
    flipped = dataclasses.replace(ans, hashes=ans.hashes[:40] + bytes([ans.hashes[40] ^ 1]) + ans.hashes[41:])
    ex.on_hashes("A", flipped)
    assert bad and bad[0][0] == "A" and "pieces root" in bad[0][1]
    ex.peer_gone("A")
    assert req in ex.requests_for("B")  # the range is asked again, of another peer
    # an answer nobody asked for (or with other fields) is ignored, not trusted
    ex.on_hashes("C", ans)
    assert not got


def test_rejects_and_silence_move_ranges(v2: Torrent) -> None:
    clock = Clock()
    ex, _, _ = exchange(v2, clock)
    reqs = ex.requests_for("A")
    r = reqs[0]
    ex.on_reject("A", HashReject(r.pieces_root, r.base_layer, r.index, r.length, r.proof_layers))
    assert r in ex.requests_for("B")  # B takes the rejected range
    assert r not in ex.requests_for("A")  # A is not asked for it again soon
    clock.t += 25  # everything in flight times out
    ex.expire()
    assert ex.requests_for("A") == [] and ex.requests_for("B") == []  # silent peers are left alone
    assert len(ex.requests_for("C")) == 4
    clock.t += 61  # ... for a minute (C, silent now too, frees its ranges)
    ex.expire()
    assert len(ex.requests_for("A")) == 4 and ex.requests_for("C") == []


def test_serving_rejects_what_it_cannot_answer(v2: Torrent) -> None:
    seed = HashExchange(v2, clock=Clock(), on_layer=lambda r, layer: None, on_bad_peer=lambda p, w: None)
    big = next(f for f in v2.info.files if f.length > 1000 * PL)
    small = next(f for f in v2.info.files if f.length == 1000)
    root = big.pieces_root
    assert root is not None and small.pieces_root is not None
    ph, h = piece_height(PL), file_tree_height(big.length)
    ok = HashRequest(root, ph, 512, 512, full_proof_layers(h, ph))
    assert isinstance(seed.answer("X", ok), Hashes)
    for bad in [
        HashRequest(b"\x07" * 32, ph, 0, 2, 0),  # unknown root
        HashRequest(small.pieces_root, 0, 0, 2, 0),  # a one-piece file has no piece layer
        HashRequest(root, ph, 3, 2, 0),  # index not a multiple of length
        HashRequest(root, ph, 0, 6, 0),  # length not a power of two
        HashRequest(root, ph, 2048, 2, 0),  # past the layer
        HashRequest(root, ph, 0, 512, h),  # proof layers above the root
    ]:
        ans = seed.answer("X", bad)
        assert ans == HashReject(bad.pieces_root, bad.base_layer, bad.index, bad.length, bad.proof_layers)
    # a per-peer limit: a flood is rejected, another peer is still served
    answers = [seed.answer("F", ok) for _ in range(300)]
    assert isinstance(answers[0], Hashes) and isinstance(answers[-1], HashReject)
    assert isinstance(seed.answer("G", ok), Hashes)


def test_leaf_layer_is_served_from_the_piece(tmp_path: Path) -> None:
    """Leaf-layer ranges (BEP 52: clients serve the leaf and piece layers) are answered from the
    block hashes of the one piece they lie in, with uncles from the piece's subtree and then the
    piece layer; every answer proves out against the pieces root."""
    src = make_tree(tmp_path / "t", [9 * 4 * PL + 5000, 2 * PL + 1])  # 4 blocks per piece
    t = parse_torrent(create_torrent(src, version="v2", piece_length=4 * PL))
    seed = HashExchange(t, clock=Clock(), on_layer=lambda r, layer: None, on_bad_peer=lambda p, w: None)
    for f in t.info.files:
        assert f.pieces_root is not None
        data = (src / f.path_str).read_bytes()
        h = file_tree_height(f.length)
        blocks = -(-f.length // PL)
        for index, length in [(0, 2), (4, 4), (36, 1), (38, 2), (8, 2), (2, 2)]:
            if index >= blocks:
                continue
            req = HashRequest(f.pieces_root, 0, index, length, full_proof_layers(h, 0))
            read = seed.answer("X", req)
            assert isinstance(read, LeafRead)
            k = index // 4
            assert read.piece == f.offset // (4 * PL) + k
            piece = data[k * 4 * PL : (k + 1) * 4 * PL]
            assert read.length == len(piece)
            ans = seed.leaf_answer("X", req, block_hashes(piece))
            assert isinstance(ans, Hashes)
            got = verify_hashes(f.pieces_root, h, 0, index, length, req.proof_layers, ans.hash_list())
            assert got == block_hashes(data)[index : index + length] + [bytes(32)] * (
                index + length - max(index, min(blocks, index + length))
            )
    big = t.info.files[0]
    assert big.pieces_root is not None
    h = file_tree_height(big.length)
    for bad in [
        HashRequest(big.pieces_root, 0, 0, 8, full_proof_layers(h, 0)),  # two pieces
        HashRequest(big.pieces_root, 0, 1, 2, full_proof_layers(h, 0)),  # not aligned
        HashRequest(big.pieces_root, 0, 60, 2, full_proof_layers(h, 0)),  # past the file
        HashRequest(big.pieces_root, 0, 0, 2, h),  # above the root
    ]:
        assert isinstance(seed.answer("X", bad), HashReject)
    # no more than two leaf answers in the making per peer; a read that failed is a reject
    req = HashRequest(big.pieces_root, 0, 0, 2, full_proof_layers(h, 0))
    assert [type(seed.answer("Y", req)) for _ in range(3)] == [LeafRead, LeafRead, HashReject]
    assert isinstance(seed.leaf_answer("Y", req, None), HashReject)
    assert isinstance(seed.answer("Y", req), LeafRead)


def test_who_gets_hash_requests(v2: Torrent, tmp_path: Path) -> None:
    assert speaks_v2(v2, None, None)
    hybrid = torrent_of(make_tree(tmp_path / "h", [3 * PL, 5]), "hybrid")
    v1 = torrent_of(tmp_path / "h", "v1")
    h1, h2 = hybrid.info_hash_v1, hybrid.info_hash_v2_short
    assert h1 is not None and h2 is not None
    assert not speaks_v2(hybrid, h1, h1)  # a v1 connection: libtorrent would close it
    assert speaks_v2(hybrid, h1, h2) and speaks_v2(hybrid, h2, h1) and speaks_v2(hybrid, h2, h2)
    assert not speaks_v2(v1, v1.info_hash_v1, v1.info_hash_v1)
    # the BEP 52 upgrade: a hybrid connection opened with the v1 hash and the v2 bit is answered
    # with the v2 hash; without the bit, or for a v1 or v2-only torrent, with the peer's own hash
    assert upgrade_hash(hybrid) == h2 and upgrade_hash(v2) is None and upgrade_hash(v1) is None
    assert handshake_reply_hash(hybrid, h1, True) == h2
    assert handshake_reply_hash(hybrid, h1, False) == h1
    assert handshake_reply_hash(hybrid, h2, True) == h2
    assert handshake_reply_hash(v2, v2.swarm_hash, True) == v2.swarm_hash


async def test_hybrid_connections_are_upgraded_to_v2(tmp_path: Path) -> None:
    """Our side of BEP 52's upgrade path: an initiator that sends the v1 hash with the v2 bit gets
    the v2 hash back, and the connection carries hash messages (a v1 one never does)."""
    src = make_tree(tmp_path / "seed" / "t", [20 * PL + 1, 3])
    t = torrent_of(src, "hybrid")
    assert t.info_hash_v1 is not None and t.info_hash_v2_short is not None
    async with Session(config(encryption="off", transports="tcp")) as seeder:
        await seeder.add(t, src.parent)
        for bit, expect in ((True, t.info_hash_v2_short), (False, t.info_hash_v1)):
            reader, writer = await asyncio.open_connection("127.0.0.1", seeder.port)
            codec = PeerConnection()
            codec.upgrade_info_hash = t.info_hash_v2_short
            reserved = Reserved.make(fast=True, extension_protocol=True, v2=bit)
            writer.write(codec.send(Handshake(t.info_hash_v1, b"-UP0001-" + bytes(12), reserved)))
            got: list[object] = []
            async with asyncio.timeout(10):
                while not any(isinstance(e, Handshake) for e in got):
                    codec.receive_data(await reader.read(65536))
                    while (ev := codec.next_event()) is not NEED_DATA:
                        got.append(ev)
            hs = next(e for e in got if isinstance(e, Handshake))
            assert hs.info_hash == expect and hs.reserved.v2
            writer.close()


# -- sessions over loopback ---------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v2", "hybrid"])
async def test_magnet_fetches_piece_layers(tmp_path: Path, version: TorrentVersion) -> None:
    """A v2-only magnet downloads (it was refused before BEP 52 hash requests); a hybrid one ends
    with every piece layer, so its pieces are checked against both hash trees."""
    src = make_tree(tmp_path / "seed" / "t", [600 * PL + 123, 5 * PL, 700])
    t = torrent_of(src, version)
    assert len(t.piece_layers) == 2
    async with Session(config()) as seeder, Session(config()) as leecher:
        await seeder.add(t, src.parent)
        uri = magnet_uri(t, [("127.0.0.1", seeder.port)], v1=version == "hybrid")
        h = await leecher.add(uri, tmp_path / "leech", metadata_timeout=20)
        assert not h.torrent.piece_layers  # the info dictionary alone
        await h.wait_complete(timeout=60)
        ex = h._rt.hashes.exchange
        assert ex.complete and ex.fetched == 2 and ex.layers == t.piece_layers
        assert h._rt.storage._hasher.use_v2
        await eventually_async(
            lambda: (tmp_path / "leech" / ".bitswarm" / f"{t.swarm_hash.hex()}.layers").exists()
        )
    same_tree(src, tmp_path / "leech" / "t")
    # the next run of the same magnet needs no peer: metadata and piece layers were kept
    async with Session(config()) as again:
        h = await again.add(magnet_uri(t, [], v1=version == "hybrid"), tmp_path / "leech")
        await h.wait_complete(timeout=10)
        ex = h._rt.hashes.exchange
        assert ex.complete and ex.fetched == 0 and ex.layers == t.piece_layers
        big = max(t.info.files, key=lambda f: f.length)
        assert big.pieces_root is not None
        ph, height = piece_height(PL), file_tree_height(big.length)
        ask = HashRequest(big.pieces_root, ph, 512, 128, full_proof_layers(height, ph))
        assert isinstance(ex.answer("X", ask), Hashes)  # a seed that can serve the layers again


class BadHashesPeer:
    """A seed of a v2-only torrent that has every piece but answers hash requests with hashes that
    do not lead to the pieces root (the right count, so the wire codec takes them); with
    ``bad_blocks``, it answers them right and sends garbage for every block instead."""

    def __init__(self, torrent: Torrent, *, bad_blocks: bool = False) -> None:
        self.info_hash = torrent.swarm_hash
        self.bad_blocks = bad_blocks
        self.good = HashExchange(torrent, clock=Clock(), on_layer=lambda r, layer: None, on_bad_peer=print)
        self.blocks = 0
        self.requests = 0
        self.closed = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        codec = PeerConnection()
        try:
            while data := await reader.read(65536):
                codec.receive_data(data)
                while (ev := codec.next_event()) is not NEED_DATA:
                    out = b""
                    if isinstance(ev, HandshakeHeader):
                        reserved = Reserved.make(fast=True, extension_protocol=True, v2=True)
                        out += codec.send(Handshake(self.info_hash, b"-BH0001-" + bytes(12), reserved))
                    elif isinstance(ev, Handshake):
                        out += codec.send(HaveAll())
                    elif isinstance(ev, HashRequest) and self.bad_blocks:
                        self.requests += 1
                        answer = self.good.answer("leecher", ev)
                        assert isinstance(answer, Hashes | HashReject)
                        out += codec.send(answer)
                    elif isinstance(ev, Interested):
                        out += codec.send(Unchoke())
                    elif isinstance(ev, Request):
                        self.blocks += 1
                        out += codec.send(Piece(ev.index, ev.begin, b"\xaa" * ev.length))
                    elif isinstance(ev, HashRequest):
                        self.requests += 1
                        n = ev.length + uncle_count(ev.length, ev.proof_layers)
                        junk = b"".join(hashlib.sha256(bytes([i % 256])).digest() for i in range(n))
                        out += codec.send(
                            Hashes(ev.pieces_root, ev.base_layer, ev.index, ev.length, ev.proof_layers, junk)
                        )
                    if out:
                        writer.write(out)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed.set()
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_peer_sending_bad_hashes_is_banned(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "seed" / "t", [40 * PL + 9, 100])  # one file alone would be single-file
    t = torrent_of(src, "v2")
    bad = BadHashesPeer(t)
    port = await bad.start()
    try:
        async with Session(config(encryption="off", transports="tcp")) as leecher:
            banned: list[dict[str, object]] = []

            async def watch() -> None:
                async for ev in leecher.events():
                    if ev.kind == "peer_banned":
                        banned.append(ev.data)

            watcher = asyncio.create_task(watch())
            await asyncio.sleep(0)  # subscribed
            layerless = dataclasses.replace(t, piece_layers={})
            h = await leecher.add(layerless, tmp_path / "leech", peers=[("127.0.0.1", port)])
            await asyncio.wait_for(bad.closed.wait(), 10)
            assert bad.requests >= 1
            await eventually_async(lambda: banned)
            assert banned[0]["port"] == port and "BEP 52" in str(banned[0]["reason"])
            watcher.cancel()
            assert h._rt.hashes.exchange.blocking  # nothing was taken from it
            # an honest seed comes along: the layer is fetched from it and the download completes
            async with Session(config(encryption="off", transports="tcp")) as seeder:
                await seeder.add(t, src.parent)
                h.add_peer("127.0.0.1", seeder.port)
                await h.wait_complete(timeout=40)
            assert not any(p["port"] == port for p in h.peers())
    finally:
        await bad.stop()
    same_tree(src, tmp_path / "leech" / "t")


def test_saved_layers_are_checked_before_use(v2: Torrent) -> None:
    ex, got, _ = exchange(v2, Clock())
    (root, layer), *_ = sorted(v2.piece_layers.items(), key=lambda kv: -len(kv[1]))
    assert not ex.add_layer(root, layer[:-32])  # short
    assert not ex.add_layer(root, layer[32:] + layer[:32])  # the right hashes, in the wrong order
    assert not ex.add_layer(b"\1" * 32, layer)  # no such file
    assert root in ex.missing and not got
    assert ex.add_layer(root, layer) and got == {root: layer} and root not in ex.missing


async def test_seed_answers_leaf_and_piece_layer_requests_on_the_wire(tmp_path: Path) -> None:
    """A scripted peer asks a seeding session for hashes of both layers BEP 52 requires (the leaf
    layer: read from disk and hashed; the piece layer) and for a root it does not know."""
    src = make_tree(tmp_path / "seed" / "t", [11 * 4 * PL + 3, 5000])
    t = parse_torrent(create_torrent(src, version="v2", piece_length=4 * PL))
    big = t.info.files[0]
    assert big.pieces_root is not None
    h = file_tree_height(big.length)
    asks = [
        HashRequest(big.pieces_root, 0, 44, 4, full_proof_layers(h, 0)),  # the last piece's blocks
        HashRequest(big.pieces_root, 2, 0, 16, full_proof_layers(h, 2)),  # the whole piece layer
        HashRequest(b"\x09" * 32, 2, 0, 2, 0),
    ]
    async with Session(config(encryption="off", transports="tcp")) as seeder:
        await seeder.add(t, src.parent)
        reader, writer = await asyncio.open_connection("127.0.0.1", seeder.port)
        codec = PeerConnection()
        bits = Reserved.make(fast=True, extension_protocol=True, v2=True)
        writer.write(codec.send(Handshake(t.swarm_hash, b"-SC0001-" + bytes(12), bits)))
        answers: list[Hashes | HashReject] = []
        sent = False
        async with asyncio.timeout(10):
            while len(answers) < len(asks):
                data = await reader.read(65536)
                assert data, "the seed closed the connection"
                codec.receive_data(data)
                while (ev := codec.next_event()) is not NEED_DATA:
                    if isinstance(ev, Handshake) and not sent:
                        writer.write(codec.send(HaveNone()) + b"".join(codec.send(a) for a in asks))
                        sent = True
                    elif isinstance(ev, Hashes | HashReject):
                        answers.append(ev)
        writer.close()
    by_base = {(a.pieces_root, a.base_layer): a for a in answers}
    leaf = by_base[(big.pieces_root, 0)]
    assert isinstance(leaf, Hashes)
    blocks = block_hashes((src / "f0.bin").read_bytes())
    got = verify_hashes(big.pieces_root, h, 0, 44, 4, asks[0].proof_layers, leaf.hash_list())
    assert len(blocks) == 45 and got == blocks[44:] + [bytes(32)] * 3  # the last piece: one block
    layer = by_base[(big.pieces_root, 2)]
    assert isinstance(layer, Hashes)
    assert b"".join(layer.hash_list()[:12]) == t.piece_layers[big.pieces_root]
    assert isinstance(by_base[(b"\x09" * 32, 2)], HashReject)


@pytest.mark.parametrize("version", ["v2", "hybrid"])
async def test_storage_checks_pieces_against_a_fetched_layer(tmp_path: Path, version: TorrentVersion) -> None:
    """What the exchange hands storage is used: a hybrid piece must pass SHA-1 *and* the merkle tree
    once its file's layer is in (a wrong layer fails a piece whose SHA-1 is right); a v2-only piece
    without its layer is simply not verified (never an error)."""
    src = make_tree(tmp_path / "seed" / "t", [6 * PL + 10, 4 * PL])
    t = torrent_of(src, version)
    big = t.info.files[0]
    assert big.pieces_root is not None
    data = (src / "f0.bin").read_bytes()
    pieces = [data[i * PL : (i + 1) * PL] for i in range(3)]
    async with Storage(dataclasses.replace(t, piece_layers={}), tmp_path / "dl") as st:
        assert await st.write_piece(0, pieces[0]) is (version == "hybrid")  # v2: no layer yet
        wrong = bytes(32) * 7
        st.set_piece_layer(big.pieces_root, wrong)
        assert await st.write_piece(1, pieces[1]) is False  # SHA-1 right, the tree says no
        st.set_piece_layer(big.pieces_root, t.piece_layers[big.pieces_root])
        assert await st.write_piece(2, pieces[2]) is True
        assert await st.write_piece(1, bytes(PL)) is False


async def test_peer_sending_blocks_that_fail_the_tree_is_banned(tmp_path: Path) -> None:
    """The layer proves out, the blocks do not: the piece fails its v2 check (a v2-only torrent has
    no SHA-1) and its sole sender is banned like any peer that sends bad data."""
    src = make_tree(tmp_path / "seed" / "t", [12 * PL + 9, 100])
    t = torrent_of(src, "v2")
    bad = BadHashesPeer(t, bad_blocks=True)
    port = await bad.start()
    try:
        async with Session(config(encryption="off", transports="tcp")) as leecher:
            banned: list[dict[str, object]] = []

            async def watch() -> None:
                async for ev in leecher.events():
                    if ev.kind == "peer_banned":
                        banned.append(ev.data)

            watcher = asyncio.create_task(watch())
            await asyncio.sleep(0)
            h = await leecher.add(
                dataclasses.replace(t, piece_layers={}), tmp_path / "leech", peers=[("127.0.0.1", port)]
            )
            await eventually_async(lambda: banned, timeout=20)
            watcher.cancel()
            assert banned[0]["port"] == port and "hash check" in str(banned[0]["reason"])
            assert h._rt.hashes.exchange.fetched == 1 and bad.blocks >= 1  # the layer was taken
            assert h._rt.scheduler.hash_failures >= 1
            async with Session(config(encryption="off", transports="tcp")) as seeder:
                await seeder.add(t, src.parent)
                h.add_peer("127.0.0.1", seeder.port)
                await h.wait_complete(timeout=40)
    finally:
        await bad.stop()
    same_tree(src, tmp_path / "leech" / "t")
