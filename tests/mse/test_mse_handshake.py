"""The MSE handshake through a fake link: every policy pair, byte-at-a-time delivery, payload after
the handshake, wrong keys, padding limits, and our own misuse."""

from __future__ import annotations

import pytest
from mse_link import BT_HANDSHAKE, INFO_HASH, OTHER_HASH, V2_HASH, feed, link

from bitswarm.mse import (
    PLAINTEXT_HEADER,
    TRANSITIONS,
    CryptoMethod,
    EncryptionPolicy,
    HandshakeComplete,
    LocalMSEError,
    MSEHandshake,
    MSEProtocolError,
    PlaintextHandshake,
    Role,
    SkeyIndex,
    Sniff,
    State,
    skey_for,
    sniff,
)

PREFER, REQUIRE, OFF = EncryptionPolicy.PREFER, EncryptionPolicy.REQUIRE, EncryptionPolicy.OFF


def responder(policy: EncryptionPolicy = PREFER, **kw: object) -> MSEHandshake:
    return MSEHandshake.responder(SkeyIndex([INFO_HASH, OTHER_HASH]), policy=policy, **kw)  # type: ignore[arg-type]


def initiator(policy: EncryptionPolicy = PREFER, skey: bytes = INFO_HASH, **kw: object) -> MSEHandshake:
    return MSEHandshake.initiator(skey, policy=policy, initial_payload=BT_HANDSHAKE, **kw)  # type: ignore[arg-type]


# -- every policy pair ---------------------------------------------------------------------------

#: (initiator policy, responder policy) -> outcome. An ``off`` initiator speaks plaintext BitTorrent.
MATRIX = {
    (OFF, OFF): "plaintext",
    (OFF, PREFER): "plaintext",
    (OFF, REQUIRE): "responder refuses plaintext",
    (PREFER, OFF): "responder refuses MSE",
    (PREFER, PREFER): CryptoMethod.RC4,
    (PREFER, REQUIRE): CryptoMethod.RC4,
    (REQUIRE, OFF): "responder refuses MSE",
    (REQUIRE, PREFER): CryptoMethod.RC4,
    (REQUIRE, REQUIRE): CryptoMethod.RC4,
}


@pytest.mark.parametrize(("pair", "outcome"), list(MATRIX.items()), ids=lambda v: str(v))
@pytest.mark.parametrize("step", [None, 1])
def test_policy_pairs(
    pair: tuple[EncryptionPolicy, EncryptionPolicy], outcome: object, step: int | None
) -> None:
    ini_policy, resp_policy = pair
    b = responder(resp_policy)
    if ini_policy is OFF:
        # a plaintext initiator: its BitTorrent handshake goes straight to the responder
        if outcome == "plaintext":
            events = feed(b, BT_HANDSHAKE, step)
            assert events == [PlaintextHandshake(BT_HANDSHAKE[:20] if step == 1 else BT_HANDSHAKE)]
            assert b.state is State.PLAINTEXT
        else:
            with pytest.raises(MSEProtocolError, match="plaintext BitTorrent handshake refused"):
                feed(b, BT_HANDSHAKE, step)
            assert b.state is State.ERROR
        return
    a_side, b_side = link(initiator(ini_policy), b, step=step)
    if isinstance(outcome, CryptoMethod):
        assert a_side.error is None and b_side.error is None
        (ea,) = a_side.events
        (eb,) = b_side.events
        assert isinstance(ea, HandshakeComplete) and isinstance(eb, HandshakeComplete)
        assert ea.method is eb.method is outcome
        assert ea.skey == eb.skey == INFO_HASH
        assert eb.initial_payload == BT_HANDSHAKE and ea.initial_payload == b""
        assert a_side.hs.state is b_side.hs.state is State.DONE
    else:
        assert b_side.error is not None and "MSE is off" in str(b_side.error)
        # the initiator only sees the connection close before any DH key came back: a peer without
        # MSE, which a ``prefer`` driver answers by redialling in plaintext
        assert a_side.error is not None and a_side.error.state is State.AWAIT_KEY
        assert "closed" in str(a_side.error)


def test_plaintext_sniff_keeps_every_byte_for_the_wire_codec() -> None:
    b = responder()
    data = BT_HANDSHAKE + b"\x00\x00\x00\x01\x02"  # handshake and an "interested" in one read
    assert feed(b, data) == [PlaintextHandshake(data)]


# -- payload after the handshake ------------------------------------------------------------------


@pytest.mark.parametrize("prefer_rc4", [True, False])
def test_payload_both_ways_after_handshake(prefer_rc4: bool) -> None:
    a_side, b_side = link(initiator(), responder(prefer_rc4=prefer_rc4))
    a, b = a_side.hs, b_side.hs
    method = CryptoMethod.RC4 if prefer_rc4 else CryptoMethod.PLAINTEXT
    assert a.method is b.method is method
    if method is CryptoMethod.PLAINTEXT:
        assert a.cipher is None and b.cipher is None
        return
    ca, cb = a.cipher, b.cipher
    assert ca is not None and cb is not None
    for n in (1, 100, 16 * 1024 + 13):
        msg = bytes(range(256)) * (n // 256) + bytes(n % 256)
        wire = bytearray(ca.encrypt(msg))
        assert wire != msg
        cb.decrypt_in_place(memoryview(wire))  # in the receive buffer itself
        assert wire == msg
        back = cb.encrypt(msg[::-1])
        assert ca.decrypt(back) == msg[::-1]
    chunks = [b"abc", bytearray(b"defg"), memoryview(b"hij")]
    assert cb.decrypt(b"".join(ca.encrypt_chunks(chunks))) == b"abcdefghij"


@pytest.mark.parametrize("rc4", [True, False])
def test_trailing_payload_arriving_with_the_end_of_the_handshake(rc4: bool) -> None:
    """The responder's BitTorrent handshake often comes in the same read as step 4 (and the
    initiator's first messages with step 3's IA): they come out decrypted as ``trailing``."""
    a = initiator()
    b = responder(prefer_rc4=rc4)
    assert feed(b, a.data_to_send()) == []
    assert feed(a, b.data_to_send()) == []
    step3 = a.data_to_send()
    (eb,) = feed(b, step3)
    assert isinstance(eb, HandshakeComplete) and eb.trailing == b""
    reply = b"\x13BitTorrent protocol" + bytes(48) + b"\x00\x00\x00\x01\x02"
    cb = b.cipher
    step4 = b.data_to_send() + (cb.encrypt(reply) if cb is not None else reply)
    (ea,) = feed(a, step4)
    assert isinstance(ea, HandshakeComplete)
    assert ea.trailing == reply
    ca = a.cipher
    assert (ca is None) is (cb is None)
    if ca is not None and cb is not None:  # the streams stay in step after the trailing bytes
        assert cb.decrypt(ca.encrypt(b"after")) == b"after"


def test_v2_torrent_uses_the_truncated_hash_as_skey() -> None:
    b = MSEHandshake.responder(SkeyIndex([V2_HASH]))
    a_side, b_side = link(MSEHandshake.initiator(skey_for(V2_HASH), initial_payload=BT_HANDSHAKE), b)
    (eb,) = b_side.events
    assert isinstance(eb, HandshakeComplete) and eb.skey == V2_HASH[:20]
    assert a_side.error is None


def test_responder_finds_the_torrent_among_several() -> None:
    _, b_side = link(initiator(skey=OTHER_HASH), responder())
    (eb,) = b_side.events
    assert isinstance(eb, HandshakeComplete) and eb.skey == OTHER_HASH


# -- failures -------------------------------------------------------------------------------------


def test_wrong_skey() -> None:
    a_side, b_side = link(initiator(skey=bytes(20)), responder())
    assert b_side.error is not None and "no active torrent" in str(b_side.error)
    assert b_side.error.state is State.AWAIT_PROVIDE
    # the initiator sent step 3 and was waiting for ENCRYPT(VC) when the responder closed
    assert a_side.error is not None and a_side.error.state is State.SYNC_VC


def test_require_responder_rejects_plaintext_only_provide() -> None:
    """The peer offers only the plaintext method; ``require`` has nothing to select."""
    a = MSEHandshake.initiator(INFO_HASH, policy=PREFER, initial_payload=BT_HANDSHAKE)
    a.provide = CryptoMethod.PLAINTEXT  # what a "plaintext only" MSE peer would offer
    _, b_side = link(a, responder(REQUIRE))
    assert b_side.error is not None and "no common crypto method" in str(b_side.error)
    a2 = MSEHandshake.initiator(INFO_HASH, policy=PREFER, initial_payload=BT_HANDSHAKE)
    a2.provide = CryptoMethod.PLAINTEXT
    _, b_side = link(a2, responder(PREFER))
    (eb,) = b_side.events
    assert isinstance(eb, HandshakeComplete) and eb.method is CryptoMethod.PLAINTEXT


@pytest.mark.parametrize("cut", [0, 10, 96, 200])
def test_eof_during_the_handshake(cut: int) -> None:
    a = initiator(pad_length=lambda: 100)
    b = responder()
    data = a.data_to_send()[:cut]
    if data:
        feed(b, data)
    b.receive_data(b"")
    with pytest.raises(MSEProtocolError, match="closed the connection") as info:
        b.next_event()
    assert info.value.state in (State.SNIFF, State.AWAIT_KEY, State.SYNC_REQ1)
    assert b.state is State.ERROR
    with pytest.raises(LocalMSEError):
        b.next_event()


@pytest.mark.parametrize("pad", [0, 1, 511, 512])
@pytest.mark.parametrize("step", [None, 1])
def test_padding_at_the_limits(pad: int, step: int | None) -> None:
    a_side, b_side = link(initiator(pad_length=lambda: pad), responder(pad_length=lambda: pad), step=step)
    assert a_side.error is None and b_side.error is None
    assert a_side.hs.state is b_side.hs.state is State.DONE


# -- local misuse ---------------------------------------------------------------------------------


def test_local_misuse() -> None:
    with pytest.raises(LocalMSEError, match="encryption=off"):
        MSEHandshake.initiator(INFO_HASH, policy=OFF)
    with pytest.raises(LocalMSEError, match="20-byte SKEY"):
        MSEHandshake.initiator(V2_HASH)
    with pytest.raises(LocalMSEError, match="65535"):
        MSEHandshake.initiator(INFO_HASH, initial_payload=bytes(65536))
    with pytest.raises(LocalMSEError, match="padding length"):
        MSEHandshake.initiator(INFO_HASH, pad_length=lambda: 513)
    with pytest.raises(LocalMSEError, match="SkeyIndex"):
        MSEHandshake(Role.RESPONDER, policy=PREFER)
    b = responder()
    with pytest.raises(LocalMSEError, match="no payload cipher"):
        _ = b.cipher
    link(initiator(), b)
    with pytest.raises(LocalMSEError, match="handshake is over"):
        b.receive_data(b"more")
    with pytest.raises(LocalMSEError, match="final event"):
        b.next_event()
    c = responder()
    c.receive_data(b"")
    with pytest.raises(LocalMSEError, match="after EOF"):
        c.receive_data(b"x")
    with pytest.raises(LocalMSEError, match=r"20 \(v1\) or 32"):
        skey_for(b"short")


# -- helpers: sniff, SkeyIndex, the table ---------------------------------------------------------


def test_sniff() -> None:
    assert sniff(b"") is Sniff.NEED_MORE
    assert sniff(PLAINTEXT_HEADER[:5]) is Sniff.NEED_MORE
    assert sniff(PLAINTEXT_HEADER) is Sniff.PLAINTEXT
    assert sniff(PLAINTEXT_HEADER + b"xyz") is Sniff.PLAINTEXT
    assert sniff(b"\x14") is Sniff.ENCRYPTED
    assert sniff(PLAINTEXT_HEADER[:19] + b"X") is Sniff.ENCRYPTED


def test_skey_index() -> None:
    from bitswarm.mse._crypto import req2_hash  # the same formula the handshake uses

    index = SkeyIndex()
    assert index.add(V2_HASH) == V2_HASH[:20]
    index.add(INFO_HASH)
    assert len(index) == 2 and V2_HASH in index and INFO_HASH in index and OTHER_HASH not in index
    assert index.find(req2_hash(INFO_HASH)) == INFO_HASH
    index.discard(INFO_HASH)
    index.discard(INFO_HASH)
    assert index.find(req2_hash(INFO_HASH)) is None and len(index) == 1
    assert "x" not in index


def _walk(a: MSEHandshake, b: MSEHandshake) -> set[tuple[Role, State, State]]:
    """Run a handshake one byte at a time and record every state change of both sides."""
    seen: set[tuple[Role, State, State]] = set()
    sides = [a, b]
    for _ in range(50):
        moved = False
        for src, dst in ((a, b), (b, a)):
            for byte in src.data_to_send():
                before = dst.state
                if before in (State.DONE, State.PLAINTEXT):
                    break
                feed(dst, bytes([byte]))
                if dst.state is not before:
                    seen.add((dst.role, before, dst.state))
                moved = True
        if not moved:
            break
    assert all(s.state in (State.DONE, State.PLAINTEXT) for s in sides)
    return seen


def test_every_transition_of_the_table_is_taken() -> None:
    seen = _walk(initiator(), responder())
    b = responder()
    before = b.state
    feed(b, BT_HANDSHAKE)
    seen.add((b.role, before, b.state))
    # SNIFF -> AWAIT_KEY and onwards can pass several states on one byte; collapse the table the same
    table = {(role, st, nxt) for (role, st, _), nxt in TRANSITIONS.items()}
    assert seen == table
