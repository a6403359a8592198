"""MSEStream (bitswarm.transport): the MSE handshake in front of a receiver, over in-memory streams.

No sockets: two MSEStreams (or one and a plain receiver) joined by the in-memory stream pair of
``test_transport_streams``. Checked: the handshake completes and the payload runs RC4 both ways,
decrypted in the receiver's own buffers; writes made during the handshake wait and then go out
encrypted; a responder passes a plaintext BitTorrent handshake through unchanged (``prefer``) or
refuses it (``require``); an initiator whose peer closes reports ``AWAIT_KEY`` (the dialer's cue to
retry in plaintext); the responder finds the torrent by SKEY among several.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from test_transport_streams import Recorder, memory_pair

from bitswarm.mse import EncryptionPolicy, MSEProtocolError, SkeyIndex, State, skey_for
from bitswarm.transport import MSEStream
from testtools import until

pytestmark = pytest.mark.timeout(30)

A, B = ("10.0.0.1", 6881), ("10.0.0.2", 51413)
HASH_V1 = bytes(range(20))
HASH_V2 = bytes(range(100, 132))


class Outcome:
    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.error: MSEProtocolError | None = None
        self.calls = 0

    def __call__(self, exc: MSEProtocolError | None) -> None:
        self.calls += 1
        self.error = exc
        self.done.set()


async def settle(*events: asyncio.Event) -> None:
    async with asyncio.timeout(5):
        for ev in events:
            await ev.wait()
    for _ in range(5):  # loop turns: the deliveries queued behind the outcome run (memory pair, no I/O)
        await asyncio.sleep(0)


@pytest.mark.parametrize("info_hash", [HASH_V1, HASH_V2], ids=["v1", "v2"])
async def test_handshake_then_rc4_both_ways_in_the_receivers_buffers(info_hash: bytes) -> None:
    index = SkeyIndex([os.urandom(20), info_hash, os.urandom(32)])
    top_a, top_b = Recorder(size=9), Recorder(size=9)
    out_a, out_b = Outcome(), Outcome()
    ini = MSEStream.initiator(top_a, skey_for(info_hash), policy=EncryptionPolicy.REQUIRE, on_done=out_a)
    res = MSEStream.responder(top_b, index, policy=EncryptionPolicy.PREFER, on_done=out_b)
    sa, sb = memory_pair(ini, res, A, B)
    assert top_a.stream is ini and top_b.stream is res  # connected at once, before the handshake
    ini.write(b"HELLO-HANDSHAKE")  # the initiator's first write: the IA
    ini.write(b" and more")  # held until the handshake ends
    await settle(out_a.done, out_b.done)
    assert out_a.error is None and out_b.error is None and out_a.calls == out_b.calls == 1
    assert ini.encrypted and res.encrypted and res.obfuscated and res.skey == skey_for(info_hash)
    assert bytes(top_b.got) == b"HELLO-HANDSHAKE and more"
    res.writelines([b"answer ", memoryview(b"from B")])
    await until(lambda: bytes(top_a.got) == b"answer from B")
    assert bytes(top_a.got) == b"answer from B"
    assert b"HELLO" not in sa.sent and b"answer" not in sb.sent  # the wire carried ciphertext
    assert all(len(b) == 9 for b in top_b.buffers)  # decrypted where the receiver asked to read


async def test_responder_passes_plaintext_bittorrent_through_under_prefer() -> None:
    top = Recorder(size=7)
    out = Outcome()
    res = MSEStream.responder(top, SkeyIndex([HASH_V1]), policy=EncryptionPolicy.PREFER, on_done=out)
    peer = Recorder()
    sa, _ = memory_pair(peer, res, A, B)
    hello = b"\x13BitTorrent protocol" + bytes(8) + HASH_V1 + b"-XX0000-" + bytes(12)
    sa.write(hello)
    await settle(out.done)
    assert out.error is None and not res.encrypted and not res.obfuscated
    assert bytes(top.got) == hello
    res.write(b"reply")
    await until(lambda: bytes(peer.got) == b"reply")
    assert bytes(peer.got) == b"reply"


async def test_require_refuses_a_plaintext_handshake() -> None:
    top = Recorder()
    out = Outcome()
    res = MSEStream.responder(top, SkeyIndex([HASH_V1]), policy=EncryptionPolicy.REQUIRE, on_done=out)
    sa, sb = memory_pair(Recorder(), res, A, B)
    sa.write(b"\x13BitTorrent protocol" + bytes(48))
    await settle(out.done)
    assert isinstance(out.error, MSEProtocolError) and "refused" in str(out.error)
    await until(lambda: sb.closed and top.lost)
    assert sb.closed and top.lost and top.got == b""  # nothing reached the peer connection


async def test_an_initiator_whose_peer_closes_reports_await_key() -> None:
    """A plaintext-only peer reads Ya as a bad handshake and closes: AWAIT_KEY, the retry cue."""
    top = Recorder()
    out = Outcome()
    ini = MSEStream.initiator(top, HASH_V1, policy=EncryptionPolicy.PREFER, on_done=out)
    peer = Recorder()
    _, sb = memory_pair(ini, peer, A, B)
    ini.write(b"IA")
    await until(lambda: peer.got)  # the peer has read Ya before it closes
    sb.close()
    await settle(out.done)
    assert isinstance(out.error, MSEProtocolError) and out.error.state is State.AWAIT_KEY
    assert top.lost and out.calls == 1


async def test_unknown_skey_is_refused() -> None:
    out_a, out_b = Outcome(), Outcome()
    ini = MSEStream.initiator(Recorder(), HASH_V1, policy=EncryptionPolicy.PREFER, on_done=out_a)
    res = MSEStream.responder(Recorder(), SkeyIndex([HASH_V2]), policy=EncryptionPolicy.PREFER, on_done=out_b)
    memory_pair(ini, res, A, B)
    ini.write(b"IA")
    await settle(out_a.done, out_b.done)
    assert out_b.error is not None and "no active torrent" in str(out_b.error)
    assert out_a.error is not None and out_a.error.state is not State.AWAIT_KEY  # not a plaintext peer
