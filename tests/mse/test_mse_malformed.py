"""Crafted bad handshakes from a hand-written peer: each must end in MSEProtocolError (or, where
the spec allows the input, succeed)."""

from __future__ import annotations

import pytest
from mse_link import BT_HANDSHAKE, INFO_HASH, SPEC_P, HandPeer, feed

from bitswarm.mse import (
    CryptoMethod,
    EncryptionPolicy,
    HandshakeComplete,
    MSEHandshake,
    MSEProtocolError,
    SkeyIndex,
    State,
)

X_HAND = 0x0123456789ABCDEF0123456789ABCDEF01234567


def responder_after_key(*, pad_a: bytes = b"", **kw: object) -> tuple[MSEHandshake, HandPeer]:
    """Our responder that has received a hand initiator's Ya (+ PadA) and answered with Yb."""
    b = MSEHandshake.responder(SkeyIndex([INFO_HASH]), **kw)  # type: ignore[arg-type]
    a = HandPeer(x=X_HAND)
    assert feed(b, a.y + pad_a) == []
    a.agree(b.data_to_send()[:96], initiator=True)
    return b, a


def initiator_after_key(
    policy: EncryptionPolicy = EncryptionPolicy.PREFER, *, pad_b: bytes = b""
) -> tuple[MSEHandshake, HandPeer, list[object]]:
    """Our initiator that has received a hand responder's Yb (+ PadB) and sent step 3."""
    a = MSEHandshake.initiator(INFO_HASH, policy=policy, initial_payload=BT_HANDSHAKE)
    b = HandPeer(x=X_HAND)
    b.agree(a.data_to_send()[:96], initiator=False)
    events: list[object] = list(feed(a, b.y + pad_b))
    step3 = a.data_to_send()
    if step3:
        b.dec(step3[40:])
    return a, b, events


@pytest.mark.parametrize("step", [None, 1])
def test_pad_a_of_512_is_accepted_and_513_is_not(step: int | None) -> None:
    b, a = responder_after_key()
    (done,) = feed(b, a.step3(), step)
    assert isinstance(done, HandshakeComplete)
    b, a = responder_after_key(pad_a=b"\x77" * 512)
    assert isinstance(feed(b, a.step3(), step)[0], HandshakeComplete)
    b, a = responder_after_key(pad_a=b"\x77" * 513)
    with pytest.raises(MSEProtocolError, match=r"HASH\('req1', S\) not found within 512") as info:
        feed(b, a.step3(), step)
    assert info.value.state is State.SYNC_REQ1


def test_pad_b_of_513_is_refused() -> None:
    a, b, events = initiator_after_key(pad_b=b"\x55" * 513)
    assert events == []  # 513 bytes could still be PadB + part of a VC
    with pytest.raises(MSEProtocolError, match=r"ENCRYPT\(VC\) not found within 512"):
        feed(a, b.step4())
    a, b, events = initiator_after_key(pad_b=b"\x55" * 512)
    assert events == []
    (done,) = feed(a, b.step4())
    assert isinstance(done, HandshakeComplete)


def test_bad_verification_constant() -> None:
    b, a = responder_after_key()
    with pytest.raises(MSEProtocolError, match="verification constant") as info:
        feed(b, a.step3(vc=b"\x00" * 7 + b"\x01"))
    assert info.value.state is State.AWAIT_PROVIDE


def test_wrong_skey_in_req2() -> None:
    b, a = responder_after_key()
    with pytest.raises(MSEProtocolError, match="no active torrent"):
        feed(b, a.step3(skey=bytes(20)))


def test_pad_c_and_pad_d_length_limits() -> None:
    b, a = responder_after_key()
    with pytest.raises(MSEProtocolError, match=r"len\(PadC\) is 513"):
        feed(b, a.step3(pad_c=bytes(513)))
    b, a = responder_after_key()
    assert isinstance(feed(b, a.step3(pad_c=bytes(512)))[0], HandshakeComplete)
    a2, b2, _ = initiator_after_key()
    with pytest.raises(MSEProtocolError, match=r"len\(PadD\) is 513"):
        feed(a2, b2.step4(pad_d=bytes(513)))
    a2, b2, _ = initiator_after_key()
    assert isinstance(feed(a2, b2.step4(pad_d=bytes(512)))[0], HandshakeComplete)


@pytest.mark.parametrize("provide", [0x00, 0x04, 0xFFFFFFFC])
def test_provide_without_a_known_method(provide: int) -> None:
    b, a = responder_after_key()
    with pytest.raises(MSEProtocolError, match="no common crypto method"):
        feed(b, a.step3(provide=provide))


def test_provide_with_unknown_extra_bits_still_selects_rc4() -> None:
    b, a = responder_after_key()
    (done,) = feed(b, a.step3(provide=0xFFFFFFFF))
    assert isinstance(done, HandshakeComplete) and done.method is CryptoMethod.RC4


def test_empty_initial_payload() -> None:
    b, a = responder_after_key()
    (done,) = feed(b, a.step3(ia=b""))
    assert isinstance(done, HandshakeComplete) and done.initial_payload == b""


@pytest.mark.parametrize(
    ("policy", "select", "ok"),
    [
        (EncryptionPolicy.REQUIRE, 0x02, True),
        (EncryptionPolicy.REQUIRE, 0x01, False),  # we offered RC4 only
        (EncryptionPolicy.REQUIRE, 0x03, False),  # two methods: select means one
        (EncryptionPolicy.PREFER, 0x01, True),
        (EncryptionPolicy.PREFER, 0x02, True),
        (EncryptionPolicy.PREFER, 0x03, False),
        (EncryptionPolicy.PREFER, 0x00, False),
        (EncryptionPolicy.PREFER, 0x04, False),  # never offered
        (EncryptionPolicy.PREFER, 0x80000002, False),
    ],
)
def test_crypto_select_must_be_one_offered_method(policy: EncryptionPolicy, select: int, ok: bool) -> None:
    a, b, _ = initiator_after_key(policy)
    payload = b"\x00\x00\x00\x00"  # a keep-alive right behind step 4
    if not ok:
        with pytest.raises(MSEProtocolError, match="crypto_select") as info:
            feed(a, b.step4(select=select))
        assert info.value.state is State.AWAIT_SELECT
        return
    rc4 = select == CryptoMethod.RC4
    (done,) = feed(a, b.step4(select=select) + (b.enc(payload) if rc4 else payload))
    assert isinstance(done, HandshakeComplete)
    assert done.method is CryptoMethod(select) and done.trailing == payload
    assert (a.cipher is not None) is rc4


@pytest.mark.parametrize("y", [0, 1, SPEC_P - 1, SPEC_P, 2**768 - 1])
@pytest.mark.parametrize("role", ["initiator", "responder"])
def test_degenerate_dh_public_keys(y: int, role: str) -> None:
    if role == "responder":
        hs = MSEHandshake.responder(SkeyIndex([INFO_HASH]))
        data = y.to_bytes(96, "big")
        if data[:1] == b"\x13":  # pragma: no cover - none of these start like a BT handshake
            pytest.skip("looks like plaintext")
    else:
        hs = MSEHandshake.initiator(INFO_HASH)
        data = y.to_bytes(96, "big")
    with pytest.raises(MSEProtocolError, match="invalid Diffie-Hellman public key") as info:
        feed(hs, data)
    assert info.value.state is State.AWAIT_KEY
