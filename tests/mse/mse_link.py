"""Test helpers for bitswarm.mse: a fake link joining two handshakes, and an independent
hand-written MSE peer (spec formulas, hashlib, and a pure-Python RC4) for crafted transcripts."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from bitswarm.mse import (
    NEED_DATA,
    Event,
    MSEHandshake,
    MSEProtocolError,
    State,
)

INFO_HASH = bytes(range(20))
OTHER_HASH = bytes(range(100, 120))
V2_HASH = bytes(range(200, 232))
#: A BitTorrent handshake (68 bytes) as the initial payload.
BT_HANDSHAKE = b"\x13BitTorrent protocol" + bytes(8) + INFO_HASH + b"-BS0001-aaaaaaaaaaaa"

# The spec's constants, written out again here so the known-answer test does not trust the package.
SPEC_P = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563",
    16,
)


def sha1(*parts: bytes) -> bytes:
    return hashlib.sha1(b"".join(parts)).digest()


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


class PyRC4:
    """RC4 in pure Python (the textbook KSA + PRGA), 1024 bytes discarded as MSE requires."""

    def __init__(self, key: bytes, *, discard: int = 1024) -> None:
        s = list(range(256))
        j = 0
        for i in range(256):
            j = (j + s[i] + key[i % len(key)]) % 256
            s[i], s[j] = s[j], s[i]
        self.s, self.i, self.j = s, 0, 0
        self.crypt(bytes(discard))

    def crypt(self, data: bytes) -> bytes:
        s, i, j = self.s, self.i, self.j
        out = bytearray()
        for byte in data:
            i = (i + 1) % 256
            j = (j + s[i]) % 256
            s[i], s[j] = s[j], s[i]
            out.append(byte ^ s[(s[i] + s[j]) % 256])
        self.i, self.j = i, j
        return bytes(out)


@dataclass
class HandPeer:
    """One side of MSE computed by hand from the spec; the test decides every field."""

    x: int
    skey: bytes = INFO_HASH
    secret: bytes = b""
    out_rc4: PyRC4 | None = None
    in_rc4: PyRC4 | None = None

    @property
    def y(self) -> bytes:
        return pow(2, self.x, SPEC_P).to_bytes(96, "big")

    def agree(self, remote_y: bytes, *, initiator: bool) -> None:
        self.secret = pow(int.from_bytes(remote_y, "big"), self.x, SPEC_P).to_bytes(96, "big")
        key_a = sha1(b"keyA", self.secret, self.skey)
        key_b = sha1(b"keyB", self.secret, self.skey)
        self.out_rc4 = PyRC4(key_a if initiator else key_b)
        self.in_rc4 = PyRC4(key_b if initiator else key_a)

    def enc(self, data: bytes) -> bytes:
        assert self.out_rc4 is not None
        return self.out_rc4.crypt(data)

    def dec(self, data: bytes) -> bytes:
        assert self.in_rc4 is not None
        return self.in_rc4.crypt(data)

    def step3(
        self,
        *,
        provide: int = 3,
        pad_c: bytes = b"",
        ia: bytes = BT_HANDSHAKE,
        vc: bytes = bytes(8),
        pad_len: int | None = None,
        skey: bytes | None = None,
    ) -> bytes:
        """HASH('req1', S), HASH('req2', SKEY)^HASH('req3', S), ENCRYPT(VC, provide, len(PadC), PadC,
        len(IA), IA)."""
        head = sha1(b"req1", self.secret) + xor(sha1(b"req2", skey or self.skey), sha1(b"req3", self.secret))
        n = len(pad_c) if pad_len is None else pad_len
        body = vc + provide.to_bytes(4, "big") + n.to_bytes(2, "big") + pad_c + len(ia).to_bytes(2, "big")
        return head + self.enc(body + ia)

    def step4(self, *, select: int = 2, pad_d: bytes = b"", pad_len: int | None = None) -> bytes:
        """ENCRYPT(VC, crypto_select, len(PadD), PadD)."""
        n = len(pad_d) if pad_len is None else pad_len
        return self.enc(bytes(8) + select.to_bytes(4, "big") + n.to_bytes(2, "big") + pad_d)


def drain(hs: MSEHandshake) -> list[Event]:
    """The handshake's final event if it is available now (a handshake has exactly one event)."""
    if hs.state in (State.DONE, State.PLAINTEXT, State.ERROR):
        return []
    ev = hs.next_event()
    if ev is NEED_DATA:
        return []
    assert isinstance(ev, Event), ev
    return [ev]


def feed(hs: MSEHandshake, data: bytes, step: int | None = None) -> list[Event]:
    """Feed ``data`` whole (or ``step`` bytes at a time); stops early once the handshake is over."""
    if step is None:
        hs.receive_data(data)
        return drain(hs)
    events: list[Event] = []
    for i in range(0, len(data), step):
        hs.receive_data(data[i : i + step])
        events.extend(drain(hs))
        if events:  # the rest belongs to the wire codec
            break
    return events


@dataclass
class Side:
    hs: MSEHandshake
    events: list[Event] = field(default_factory=list)
    error: MSEProtocolError | None = None
    got_eof: bool = False

    @property
    def over(self) -> bool:
        return self.error is not None or bool(self.events)


def link(a: MSEHandshake, b: MSEHandshake, *, step: int | None = None) -> tuple[Side, Side]:
    """Run two handshakes against each other until both are over; a failing side closes the link
    (the other gets EOF). Bytes written after a side's final event are not delivered."""
    sides = (Side(a), Side(b))
    for _ in range(50):
        progress = False
        for src, dst in (sides, sides[::-1]):
            if dst.over:
                continue
            if src.error is not None:
                if not dst.got_eof:
                    dst.got_eof = True
                    progress = True
                    _deliver(dst, b"", None)
                continue
            data = src.hs.data_to_send()
            if data:
                progress = True
                _deliver(dst, data, step)
        if not progress:
            break
    return sides


def _deliver(dst: Side, data: bytes, step: int | None) -> None:
    try:
        if not data:
            dst.hs.receive_data(b"")
            dst.events.extend(drain(dst.hs))
        else:
            dst.events.extend(feed(dst.hs, data, step))
    except MSEProtocolError as exc:
        dst.error = exc
