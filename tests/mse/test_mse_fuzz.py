"""Garbage and mutated input: the handshake may only complete, ask for more, or raise
MSEProtocolError. Any other exception fails (Hypothesis reports it)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from mse_link import BT_HANDSHAKE, INFO_HASH, HandPeer

from bitswarm.mse import (
    NEED_DATA,
    EncryptionPolicy,
    HandshakeComplete,
    MSEHandshake,
    MSEProtocolError,
    PlaintextHandshake,
    SkeyIndex,
    State,
)

POLICIES = st.sampled_from(list(EncryptionPolicy))
CHUNK_SIZES = st.lists(st.integers(1, 700), min_size=1, max_size=8)
PAD = st.integers(0, 512)
FLIP = st.integers(1, 255)


def run(hs: MSEHandshake, data: bytes, chunks: list[int], *, eof: bool) -> object:
    """Feed ``data`` in ``chunks`` (cycled), then EOF; return the outcome or the typed error."""
    try:
        pos = 0
        i = 0
        while pos < len(data):
            n = chunks[i % len(chunks)]
            hs.receive_data(data[pos : pos + n])
            pos += n
            i += 1
            ev = hs.next_event()
            if ev is not NEED_DATA:
                assert isinstance(ev, HandshakeComplete | PlaintextHandshake)
                return ev
        if eof:
            hs.receive_data(b"")
            ev = hs.next_event()
            raise AssertionError(f"EOF during the handshake gave {ev!r}")  # pragma: no cover
    except MSEProtocolError as exc:
        assert hs.state is State.ERROR
        return exc
    return NEED_DATA


@given(data=st.binary(max_size=2000), chunks=CHUNK_SIZES, policy=POLICIES, eof=st.booleans())
def test_garbage_to_a_responder(data: bytes, chunks: list[int], policy: EncryptionPolicy, eof: bool) -> None:
    hs = MSEHandshake.responder(SkeyIndex([INFO_HASH]), policy=policy)
    out = run(hs, data, chunks, eof=eof)
    if isinstance(out, HandshakeComplete):  # pragma: no cover - would need a forged SHA-1
        raise AssertionError("garbage completed an MSE handshake")
    if isinstance(out, PlaintextHandshake):
        assert data.startswith(b"\x13BitTorrent protocol") and policy is not EncryptionPolicy.REQUIRE


@given(
    data=st.binary(max_size=2000),
    chunks=CHUNK_SIZES,
    policy=st.sampled_from([EncryptionPolicy.PREFER, EncryptionPolicy.REQUIRE]),
    eof=st.booleans(),
)
def test_garbage_to_an_initiator(data: bytes, chunks: list[int], policy: EncryptionPolicy, eof: bool) -> None:
    hs = MSEHandshake.initiator(INFO_HASH, policy=policy, initial_payload=BT_HANDSHAKE)
    out = run(hs, data, chunks, eof=eof)
    assert not isinstance(out, HandshakeComplete | PlaintextHandshake)


@given(pad_a=PAD, pad_c=PAD, flip_at=st.integers(0, 2000), flip=FLIP, chunks=CHUNK_SIZES)
def test_mutated_initiator_stream(pad_a: int, pad_c: int, flip_at: int, flip: int, chunks: list[int]) -> None:
    """A valid initiator stream with one byte changed: the responder completes (the byte was in
    padding, or the IA changes) or raises MSEProtocolError."""
    b = MSEHandshake.responder(SkeyIndex([INFO_HASH]))
    a = HandPeer(x=0xC0FFEE_C0FFEE_C0FFEE_C0FFEE_C0FFEE_C0FFEE_C0FFEE_C0)
    step1 = bytearray(a.y + bytes(pad_a))
    n1 = len(step1)
    if flip_at < n1:
        step1[flip_at] ^= flip
    out = run(b, bytes(step1), chunks, eof=False)
    if isinstance(out, MSEProtocolError):
        return
    assert out is NEED_DATA
    yb = b.data_to_send()[:96]
    a.agree(yb, initiator=True)
    step3 = bytearray(a.step3(pad_c=bytes(pad_c)))
    if n1 <= flip_at < n1 + len(step3):
        step3[flip_at - n1] ^= flip
    out = run(b, bytes(step3), chunks, eof=True)
    if isinstance(out, HandshakeComplete):
        flipped_ia = n1 + len(step3) - len(BT_HANDSHAKE) <= flip_at < n1 + len(step3)
        assert (out.initial_payload != BT_HANDSHAKE) is flipped_ia
    else:
        assert isinstance(out, MSEProtocolError)


@given(pad_b=PAD, pad_d=PAD, flip_at=st.integers(0, 1200), flip=FLIP, chunks=CHUNK_SIZES)
def test_mutated_responder_stream(pad_b: int, pad_d: int, flip_at: int, flip: int, chunks: list[int]) -> None:
    a = MSEHandshake.initiator(INFO_HASH, initial_payload=BT_HANDSHAKE)
    b = HandPeer(x=0xBEEF_BEEF_BEEF_BEEF_BEEF_BEEF_BEEF_BEEF_BEEF_BEEF)
    b.agree(a.data_to_send()[:96], initiator=False)
    step2 = b.y + b"\xab" * pad_b
    out = run(a, step2, chunks, eof=False)
    assert out is NEED_DATA  # the hand peer's Yb is valid
    b.dec(a.data_to_send()[40:])
    stream = bytearray(b.step4(select=2, pad_d=bytes(pad_d)))
    if flip_at < len(stream):
        stream[flip_at] ^= flip
    out = run(a, bytes(stream), chunks, eof=True)
    if isinstance(out, HandshakeComplete):
        # only len(PadD) (shorter: the rest of PadD becomes payload) or PadD itself may change
        # without breaking the handshake
        assert flip_at >= 12
        assert (out.trailing == b"") is (flip_at >= 14)
    else:
        assert isinstance(out, MSEProtocolError)
