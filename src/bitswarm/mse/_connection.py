"""The MSE/PE handshake as a sans-I/O object (Message Stream Encryption, as libtorrent,
Transmission and Vuze implement it).

The handshake, A the initiator and B the responder (ENCRYPT is RC4 keyed per direction, ENCRYPT2
the method B selects)::

    1 A->B: Ya, PadA
    2 B->A: Yb, PadB
    3 A->B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
            ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
    4 B->A: ENCRYPT(VC, crypto_select, len(PadD), PadD), ENCRYPT2(payload)
    5 A->B: ENCRYPT2(payload)

Use: ``receive_data(bytes)`` (``b""`` for EOF), then ``next_event()`` until :data:`NEED_DATA`, and
write ``data_to_send()`` after each round. The events are :class:`PlaintextHandshake` (responder:
the peer spoke plaintext BitTorrent) and :class:`HandshakeComplete`; after the latter, take
:attr:`MSEHandshake.cipher` for the payload. Bytes from the peer that break the handshake raise
:class:`MSEProtocolError`; our own misuse raises :class:`LocalMSEError`. Transitions come from
``_state.TRANSITIONS``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final

from bitswarm.mse._crypto import (
    KEY_LENGTH,
    VC,
    RC4Stream,
    key_a,
    key_b,
    private_key,
    public_key,
    req1_hash,
    req2_hash,
    req3_hash,
    shared_secret,
    xor20,
)
from bitswarm.mse._errors import LocalMSEError, MSEProtocolError
from bitswarm.mse._events import (
    NEED_DATA,
    CryptoMethod,
    EncryptionPolicy,
    Event,
    HandshakeComplete,
    PlaintextHandshake,
    Sniff,
    _Need,
)
from bitswarm.mse._skey import SKEY_LENGTH, SkeyIndex
from bitswarm.mse._state import FINAL, TRANSITIONS, Role, State, Step
from bitswarm.mse._stream import StreamCipher

#: The first 20 bytes of a plaintext BitTorrent handshake (BEP 3).
PLAINTEXT_HEADER: Final = b"\x13BitTorrent protocol"
#: Longest PadA/PadB/PadC/PadD the spec allows; the synchronisation scans stop after it.
MAX_PAD: Final = 512
#: Longest initial payload (IA): its length field has 2 bytes. libtorrent accepts only 68 (exactly
#: a BitTorrent handshake); we accept what the spec allows.
MAX_INITIAL_PAYLOAD: Final = 0xFFFF

_DH_HASH: Final = 20  # SHA-1 digest length (req1, req2^req3)
_PROVIDE_FIELDS: Final = _DH_HASH + len(VC) + 4 + 2  # req2^req3, VC, crypto_provide, len(PadC)
_SELECT_FIELDS: Final = 4 + 2  # crypto_select, len(PadD)
_KNOWN_METHODS: Final = CryptoMethod.PLAINTEXT | CryptoMethod.RC4


def sniff(data: bytes | bytearray | memoryview) -> Sniff:
    """Tell a plaintext BitTorrent handshake from MSE by the first bytes of an incoming connection.

    Decides as soon as the bytes stop matching ``\\x13BitTorrent protocol`` (usually the first
    byte: a DH key starts with 0x13 once in 256), and after 20 bytes at the latest.
    """
    n = min(len(data), len(PLAINTEXT_HEADER))
    if data[:n] != PLAINTEXT_HEADER[:n]:
        return Sniff.ENCRYPTED
    return Sniff.PLAINTEXT if n == len(PLAINTEXT_HEADER) else Sniff.NEED_MORE


def _allowed(policy: EncryptionPolicy) -> CryptoMethod:
    return CryptoMethod.RC4 if policy is EncryptionPolicy.REQUIRE else _KNOWN_METHODS


class MSEHandshake:
    """One side of one MSE handshake. Build it with :meth:`initiator` or :meth:`responder`."""

    __slots__ = (
        "_buf",
        "_cipher",
        "_dec",
        "_enc",
        "_eof",
        "_ia",
        "_ia_len",
        "_out",
        "_pad_len",
        "_pad_length",
        "_private",
        "_random_bytes",
        "_reported",
        "_scan",
        "_secret",
        "_skeys",
        "_sync_target",
        "method",
        "policy",
        "prefer_rc4",
        "provide",
        "role",
        "skey",
        "state",
    )

    def __init__(
        self,
        role: Role,
        *,
        policy: EncryptionPolicy,
        skey: bytes | None = None,
        skeys: SkeyIndex | None = None,
        initial_payload: bytes = b"",
        prefer_rc4: bool = True,
        random_bytes: Callable[[int], bytes] = os.urandom,
        pad_length: Callable[[], int] | None = None,
    ) -> None:
        self.role = role
        self.policy = policy
        #: Initiator: what we offer. Responder: what the peer offered (once read).
        self.provide = CryptoMethod(0)
        #: The selected method, once known.
        self.method: CryptoMethod | None = None
        #: The stream key: given to an initiator, found by a responder.
        self.skey = skey
        self.prefer_rc4 = prefer_rc4
        self.state = State.SNIFF if role is Role.RESPONDER else State.AWAIT_KEY
        self._skeys = skeys
        self._random_bytes = random_bytes
        self._pad_length = pad_length if pad_length is not None else self._random_pad_length
        self._buf = bytearray()
        self._out = bytearray()
        self._eof = False
        self._reported = False
        self._scan = 0
        self._sync_target = b""
        self._secret = b""
        self._private = 0
        self._enc: RC4Stream | None = None
        self._dec: RC4Stream | None = None
        self._cipher: StreamCipher | None = None
        self._ia = initial_payload
        self._ia_len = 0
        self._pad_len = 0
        if role is Role.INITIATOR:
            if policy is EncryptionPolicy.OFF:
                raise LocalMSEError("encryption=off never starts an MSE handshake: speak plaintext")
            if skey is None or len(skey) != SKEY_LENGTH:
                raise LocalMSEError("an initiator needs the 20-byte SKEY (v1 or truncated v2 info-hash)")
            if len(initial_payload) > MAX_INITIAL_PAYLOAD:
                raise LocalMSEError(f"initial payload is {len(initial_payload)} bytes, at most 65535")
            self.provide = _allowed(policy)
            self._private = private_key(random_bytes)
            self._out += public_key(self._private)
            self._out += random_bytes(self._checked_pad())
        elif skeys is None:
            raise LocalMSEError("a responder needs the SkeyIndex of the torrents it serves")

    @classmethod
    def initiator(
        cls,
        skey: bytes,
        *,
        policy: EncryptionPolicy = EncryptionPolicy.PREFER,
        initial_payload: bytes = b"",
        random_bytes: Callable[[int], bytes] = os.urandom,
        pad_length: Callable[[], int] | None = None,
    ) -> MSEHandshake:
        """We dialled. ``initial_payload`` (IA) is normally our 68-byte BitTorrent handshake; it
        travels RC4-encrypted inside step 3 whatever method the peer then selects. Ya and PadA are
        ready in :meth:`data_to_send` at once."""
        return cls(
            Role.INITIATOR,
            policy=policy,
            skey=bytes(skey),
            initial_payload=bytes(initial_payload),
            random_bytes=random_bytes,
            pad_length=pad_length,
        )

    @classmethod
    def responder(
        cls,
        skeys: SkeyIndex,
        *,
        policy: EncryptionPolicy = EncryptionPolicy.PREFER,
        prefer_rc4: bool = True,
        random_bytes: Callable[[int], bytes] = os.urandom,
        pad_length: Callable[[], int] | None = None,
    ) -> MSEHandshake:
        """The peer dialled. Every incoming connection can start here: a plaintext BitTorrent
        handshake comes out as :class:`PlaintextHandshake` (refused under ``require``), MSE is
        answered (refused under ``off``). When the peer offers both methods, ``prefer_rc4``
        selects RC4 (libtorrent's ``prefer_rc4`` setting; see ``docs/protocols/mse.md``)."""
        return cls(
            Role.RESPONDER,
            policy=policy,
            skeys=skeys,
            prefer_rc4=prefer_rc4,
            random_bytes=random_bytes,
            pad_length=pad_length,
        )

    # -- the h11-style interface ---------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes from the peer; ``b""`` means it closed its side (EOF)."""
        if self.state in FINAL:
            raise LocalMSEError(f"receive_data() in state {self.state.value}: the handshake is over")
        if self._eof:
            raise LocalMSEError("receive_data() after EOF")
        if not data:
            self._eof = True
        else:
            self._buf += data

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer now (possibly empty); each byte is returned once."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event | _Need:
        """The next event, or :data:`NEED_DATA`. Raises :class:`MSEProtocolError` on bad input."""
        if self.state is State.ERROR:
            raise LocalMSEError("next_event() after the handshake failed")
        if self._reported:
            raise LocalMSEError("next_event() after the handshake's final event")
        try:
            while self.state not in FINAL:
                step = self._parse()
                if step is None:
                    if self._eof:
                        raise MSEProtocolError(
                            f"peer closed the connection during the MSE handshake ({self.state.value})"
                        )
                    return NEED_DATA
                nxt = TRANSITIONS.get((self.role, self.state, step))
                if nxt is None:  # pragma: no cover - the parsers only return listed steps
                    raise LocalMSEError(f"no transition for {self.role.value} {self.state.value} {step}")
                self.state = nxt
        except MSEProtocolError as exc:
            if exc.state is None:
                exc.state = self.state
            self.state = State.ERROR
            raise
        self._reported = True
        return self._final_event()

    @property
    def cipher(self) -> StreamCipher | None:
        """The payload cipher once the handshake is done; ``None`` when PLAINTEXT was selected."""
        if self.state is not State.DONE:
            raise LocalMSEError(f"no payload cipher in state {self.state.value}")
        return self._cipher

    # -- parsing -------------------------------------------------------------------------------

    def _parse(self) -> Step | None:
        state = self.state
        if state is State.SNIFF:
            return self._parse_sniff()
        if state is State.AWAIT_KEY:
            return self._parse_key()
        if state is State.SYNC_REQ1:
            return Step.REQ1_FOUND if self._sync("HASH('req1', S)") else None
        if state is State.AWAIT_PROVIDE:
            return self._parse_provide()
        if state is State.AWAIT_PAD_C:
            return self._parse_pad_c()
        if state is State.AWAIT_IA:
            return self._parse_ia()
        if state is State.SYNC_VC:
            return Step.VC_FOUND if self._sync("ENCRYPT(VC)") else None
        if state is State.AWAIT_SELECT:
            return self._parse_select()
        if state is State.AWAIT_PAD_D:
            return self._parse_pad_d()
        raise LocalMSEError(f"nothing to parse in state {state.value}")  # pragma: no cover

    def _take(self, n: int) -> bytes:
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def _parse_sniff(self) -> Step | None:
        verdict = sniff(self._buf)
        if verdict is Sniff.NEED_MORE:
            return None
        if verdict is Sniff.PLAINTEXT:
            if self.policy is EncryptionPolicy.REQUIRE:
                raise MSEProtocolError("plaintext BitTorrent handshake refused (encryption=require)")
            return Step.PLAINTEXT_HEADER
        if self.policy is EncryptionPolicy.OFF:
            raise MSEProtocolError("not a plaintext BitTorrent handshake, and MSE is off (encryption=off)")
        return Step.MSE_START

    def _parse_key(self) -> Step | None:
        if len(self._buf) < KEY_LENGTH:
            return None
        remote = self._take(KEY_LENGTH)
        if self.role is Role.RESPONDER:
            self._private = private_key(self._random_bytes)
            self._out += public_key(self._private)
            self._out += self._random_bytes(self._checked_pad())
        secret = self._secret = shared_secret(self._private, remote)
        self._private = 0
        if self.role is Role.RESPONDER:
            self._sync_target = req1_hash(secret)
            return Step.PUBLIC_KEY
        # Initiator: both keys are known now; answer with step 3 and look for B's ENCRYPT(VC).
        assert self.skey is not None
        enc = self._enc = RC4Stream(key_a(secret, self.skey))
        dec = self._dec = RC4Stream(key_b(secret, self.skey))
        self._sync_target = dec.process(VC)  # advances B's stream past the VC, as receiving it would
        pad_c = self._checked_pad()
        plain = b"".join(
            (
                VC,
                int(self.provide).to_bytes(4, "big"),
                pad_c.to_bytes(2, "big"),
                bytes(pad_c),  # PadC: zeros, as the spec asks for padding-only use
                len(self._ia).to_bytes(2, "big"),
                self._ia,
            )
        )
        self._out += req1_hash(secret)
        self._out += xor20(req2_hash(self.skey), req3_hash(secret))
        self._out += enc.process(plain)
        self._ia = b""
        return Step.PUBLIC_KEY

    def _sync(self, what: str) -> bool:
        """Find the synchronisation target after at most MAX_PAD bytes of padding; consume through it."""
        target = self._sync_target
        limit = MAX_PAD + len(target)
        buf = self._buf
        i = buf.find(target, self._scan, limit)
        if i >= 0:
            del buf[: i + len(target)]
            self._scan = 0
            return True
        if len(buf) >= limit:
            raise MSEProtocolError(f"{what} not found within {MAX_PAD} bytes of padding")
        self._scan = max(0, len(buf) - len(target) + 1)
        return False

    def _parse_provide(self) -> Step | None:
        if len(self._buf) < _PROVIDE_FIELDS:
            return None
        masked = self._take(_DH_HASH)
        assert self._skeys is not None
        skey = self._skeys.find(xor20(masked, req3_hash(self._secret)))
        if skey is None:
            raise MSEProtocolError("no active torrent matches the peer's obfuscated info-hash (req2^req3)")
        self.skey = skey
        self._dec = RC4Stream(key_a(self._secret, skey))
        self._enc = RC4Stream(key_b(self._secret, skey))
        plain = self._dec.process(self._take(_PROVIDE_FIELDS - _DH_HASH))
        if plain[:8] != VC:
            raise MSEProtocolError("bad MSE verification constant (VC)")
        provide = int.from_bytes(plain[8:12], "big")
        self._pad_len = self._checked_remote_pad(int.from_bytes(plain[12:14], "big"), "PadC")
        self.provide = CryptoMethod(provide & _KNOWN_METHODS)
        common = self.provide & _allowed(self.policy)
        if not common:
            raise MSEProtocolError(
                f"no common crypto method: the peer provides 0x{provide:08x}, "
                f"encryption={self.policy.value} allows 0x{int(_allowed(self.policy)):08x}"
            )
        if common == _KNOWN_METHODS:
            common = CryptoMethod.RC4 if self.prefer_rc4 else CryptoMethod.PLAINTEXT
        self.method = common
        return Step.PROVIDE

    def _parse_pad_c(self) -> Step | None:
        n = self._pad_len + 2
        if len(self._buf) < n:
            return None
        assert self._dec is not None
        plain = self._dec.process(self._take(n))
        self._ia_len = int.from_bytes(plain[-2:], "big")
        return Step.PAD_C

    def _parse_ia(self) -> Step | None:
        if len(self._buf) < self._ia_len:
            return None
        assert self._dec is not None and self._enc is not None and self.method is not None
        self._ia = self._dec.process(self._take(self._ia_len))  # IA is RC4 whatever was selected
        pad_d = self._checked_pad()
        self._out += self._enc.process(
            b"".join((VC, int(self.method).to_bytes(4, "big"), pad_d.to_bytes(2, "big"), bytes(pad_d)))
        )
        return Step.INITIAL_PAYLOAD

    def _parse_select(self) -> Step | None:
        if len(self._buf) < _SELECT_FIELDS:
            return None
        assert self._dec is not None
        plain = self._dec.process(self._take(_SELECT_FIELDS))
        select = int.from_bytes(plain[:4], "big")
        if select not in (CryptoMethod.PLAINTEXT, CryptoMethod.RC4) or not select & self.provide:
            raise MSEProtocolError(
                f"crypto_select 0x{select:08x} is not one of the methods we offered "
                f"(0x{int(self.provide):08x})"
            )
        self.method = CryptoMethod(select)
        self._pad_len = self._checked_remote_pad(int.from_bytes(plain[4:6], "big"), "PadD")
        return Step.SELECT

    def _parse_pad_d(self) -> Step | None:
        if len(self._buf) < self._pad_len:
            return None
        assert self._dec is not None
        self._dec.process(self._take(self._pad_len))
        return Step.PAD_D

    # -- helpers -------------------------------------------------------------------------------

    def _final_event(self) -> Event:
        rest = self._take(len(self._buf))
        if self.state is State.PLAINTEXT:
            return PlaintextHandshake(rest)
        assert self.method is not None and self.skey is not None
        assert self._enc is not None and self._dec is not None
        if self.method is CryptoMethod.RC4:
            self._cipher = StreamCipher(self._enc, self._dec)
            trailing = self._dec.process(rest) if rest else b""
        else:
            trailing = rest
        self._enc = self._dec = None
        ia, self._ia = self._ia, b""
        return HandshakeComplete(self.method, self.skey, ia, trailing)

    def _random_pad_length(self) -> int:
        return int.from_bytes(self._random_bytes(2), "big") % (MAX_PAD + 1)

    def _checked_pad(self) -> int:
        n = self._pad_length()
        if not 0 <= n <= MAX_PAD:
            raise LocalMSEError(f"padding length {n} outside 0..{MAX_PAD}")
        return n

    def _checked_remote_pad(self, n: int, name: str) -> int:
        if n > MAX_PAD:
            raise MSEProtocolError(f"len({name}) is {n}, more than {MAX_PAD}")
        return n

    def __repr__(self) -> str:
        return f"<MSEHandshake {self.role.value} {self.state.value} policy={self.policy.value}>"
