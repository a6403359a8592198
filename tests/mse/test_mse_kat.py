"""Known-answer tests: whole MSE transcripts computed independently in the test from the spec's
formulas (pow() for DH, hashlib SHA-1, a pure-Python RC4), compared byte for byte with ours."""

from __future__ import annotations

import pytest
from mse_link import BT_HANDSHAKE, INFO_HASH, SPEC_P, HandPeer, PyRC4, feed, sha1, xor

from bitswarm.mse import CryptoMethod, HandshakeComplete, MSEHandshake, RC4Stream, SkeyIndex

FILL = 0x5A


def fixed_random(n: int) -> bytes:
    """Our side's "randomness": a constant fill, so the expected bytes do not depend on call order."""
    return bytes([FILL]) * n


X_OURS = int.from_bytes(fixed_random(20), "big")


@pytest.mark.parametrize(
    ("key", "plain", "cipher_hex"),
    [  # the classic RC4 vectors, no bytes discarded: checks the test's own RC4 first
        (b"Key", b"Plaintext", "bbf316e8d940af0ad3"),
        (b"Wiki", b"pedia", "1021bf0420"),
        (b"Secret", b"Attack at dawn", "45a01f645fc35b383552544b9bf5"),
    ],
)
def test_reference_rc4_vectors(key: bytes, plain: bytes, cipher_hex: str) -> None:
    assert PyRC4(key, discard=0).crypt(plain).hex() == cipher_hex


def test_rc4_stream_matches_reference_after_discard() -> None:
    key = sha1(b"any key")
    ours = RC4Stream(key)
    ref = PyRC4(key)
    data = bytes(range(256)) * 3
    assert ours.process(data) == ref.crypt(data)
    buf = bytearray(data)
    ours.process_in_place(memoryview(buf)[7:700])
    assert bytes(buf[7:700]) == ref.crypt(data[7:700])
    assert buf[:7] == data[:7] and buf[700:] == data[700:]


def test_initiator_transcript() -> None:
    a = MSEHandshake.initiator(
        INFO_HASH, initial_payload=BT_HANDSHAKE, random_bytes=fixed_random, pad_length=lambda: 7
    )
    # step 1: Ya = 2^Xa mod P (96 bytes, big-endian), PadA
    ya = pow(2, X_OURS, SPEC_P).to_bytes(96, "big")
    assert a.data_to_send() == ya + bytes([FILL]) * 7

    # step 2 from a hand-made responder
    b = HandPeer(x=0x1234567890ABCDEF1234567890ABCDEF12345678)
    b.agree(ya, initiator=False)
    assert feed(a, b.y + b"\xee" * 33) == []

    # step 3, every field from the spec's formulas
    s = pow(int.from_bytes(b.y, "big"), X_OURS, SPEC_P).to_bytes(96, "big")
    assert s == b.secret
    key_a = PyRC4(sha1(b"keyA", s, INFO_HASH))
    expected = (
        sha1(b"req1", s)
        + xor(sha1(b"req2", INFO_HASH), sha1(b"req3", s))
        + key_a.crypt(
            bytes(8)  # VC
            + (CryptoMethod.PLAINTEXT | CryptoMethod.RC4).to_bytes(4, "big")  # crypto_provide
            + (7).to_bytes(2, "big")  # len(PadC)
            + bytes(7)  # PadC: zeros
            + len(BT_HANDSHAKE).to_bytes(2, "big")
            + BT_HANDSHAKE  # IA
        )
    )
    step3 = a.data_to_send()
    assert step3 == expected
    b.dec(step3[40:])  # keep the hand peer's keyA stream in step with ours

    # step 4 with RC4 selected, and the responder's first payload in the same segment
    (done,) = feed(a, b.step4(select=2, pad_d=bytes(5)) + b.enc(b"hello"))
    assert done == HandshakeComplete(CryptoMethod.RC4, INFO_HASH, b"", b"hello")
    cipher = a.cipher
    assert cipher is not None
    assert cipher.encrypt(b"ping") == key_a.crypt(b"ping")
    assert cipher.decrypt(b.enc(b"pong")) == b"pong"


def test_responder_transcript() -> None:
    b = MSEHandshake.responder(SkeyIndex([INFO_HASH]), random_bytes=fixed_random, pad_length=lambda: 3)
    a = HandPeer(x=0xFEDCBA9876543210FEDCBA9876543210FEDCBA98)
    assert feed(b, a.y + b"\x01" * 200) == []
    # step 2: Yb = 2^Xb mod P, PadB
    yb = pow(2, X_OURS, SPEC_P).to_bytes(96, "big")
    assert b.data_to_send() == yb + bytes([FILL]) * 3
    a.agree(yb, initiator=True)
    (done,) = feed(b, a.step3(provide=3, pad_c=bytes(9), ia=BT_HANDSHAKE))
    assert done == HandshakeComplete(CryptoMethod.RC4, INFO_HASH, BT_HANDSHAKE, b"")
    # step 4: ENCRYPT(VC, crypto_select, len(PadD), PadD) with keyB = SHA1('keyB', S, SKEY)
    s = pow(int.from_bytes(a.y, "big"), X_OURS, SPEC_P).to_bytes(96, "big")
    key_b = PyRC4(sha1(b"keyB", s, INFO_HASH))
    step4 = b.data_to_send()
    assert step4 == key_b.crypt(bytes(8) + (2).to_bytes(4, "big") + (3).to_bytes(2, "big") + bytes(3))
    cipher = b.cipher
    assert cipher is not None
    assert cipher.encrypt(b"bitfield") == key_b.crypt(b"bitfield")
    assert cipher.decrypt(a.enc(b"request")) == b"request"
