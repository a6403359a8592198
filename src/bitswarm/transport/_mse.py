"""A stream that opens with the MSE/PE handshake, then carries the payload RC4-encrypted or plain.

:class:`MSEStream` sits between a transport (TCP, later uTP) and a peer connection. The peer
connection gets ``connection_made`` as soon as the transport is up (so its handshake timeout covers
MSE too) and never sees a handshake byte: during the handshake the stream reads into its own small
scratch buffer and drives :class:`~bitswarm.mse.MSEHandshake`; afterwards every read goes into the
receiver's own buffer (a block's slot in its piece buffer included) and, with RC4, is decrypted
there in place -- the zero-copy block path keeps its single copy.

* Initiator: the receiver's first write (its BitTorrent handshake) travels as MSE's initial payload
  (IA) in step 3; later writes wait for the handshake's end.
* Responder: a plaintext BitTorrent handshake (``\\x13BitTorrent protocol``) is told from MSE by its
  first bytes; the torrent of an MSE connection is found from the obfuscated SKEY hash in the
  session's :class:`~bitswarm.mse.SkeyIndex`.

The end of the handshake is reported once through ``on_done``: ``None``, or the
:class:`~bitswarm.mse.MSEProtocolError` that ended it (the peer closing or the connection being lost
during the handshake included; its ``state`` says how far it got). A dialer under ``prefer`` retries
in plaintext when an initiator fails in ``AWAIT_KEY`` (the peer did not answer with a DH key).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Iterable

from bitswarm.mse import (
    NEED_DATA,
    EncryptionPolicy,
    HandshakeComplete,
    MSEHandshake,
    MSEProtocolError,
    PlaintextHandshake,
    SkeyIndex,
    State,
    StreamCipher,
)
from bitswarm.transport._stream import PeerStream, StreamReceiver, StreamWrapper, deliver

log = logging.getLogger("bitswarm.mse")

#: Bytes read at once during the handshake (its messages are at most 96 + 512 + 68 + 532 bytes).
_SCRATCH = 4096


class _Phase(enum.Enum):
    WAIT_IA = "WAIT_IA"  # initiator: the receiver's handshake (IA) not written yet
    HANDSHAKE = "HANDSHAKE"
    OPEN = "OPEN"
    FAILED = "FAILED"


class MSEStream(StreamWrapper):
    """A :class:`PeerStream` that runs MSE first (build it with :meth:`initiator` or :meth:`responder`)."""

    def __init__(
        self,
        receiver: StreamReceiver,
        *,
        policy: EncryptionPolicy,
        skey: bytes | None = None,
        skeys: SkeyIndex | None = None,
        prefer_rc4: bool = False,
        on_done: Callable[[MSEProtocolError | None], None] | None = None,
    ) -> None:
        self.receiver = receiver
        self.policy = policy
        self.inner: PeerStream | None = None
        #: The payload cipher once the handshake selected RC4 (None: plaintext payload).
        self.cipher: StreamCipher | None = None
        #: True once the connection used an MSE handshake (False: plaintext BitTorrent, responder).
        self.obfuscated = False
        #: The stream key: given to an initiator; found by a responder (the torrent's hash, 20 bytes).
        self.skey = skey
        self._skey = skey
        self._on_done = on_done
        self._hs: MSEHandshake | None = None
        if skey is None:
            if skeys is None:
                raise ValueError("an MSEStream needs the initiator's skey or the responder's skeys")
            self._hs = MSEHandshake.responder(skeys, policy=policy, prefer_rc4=prefer_rc4)
            self._phase = _Phase.HANDSHAKE
        else:
            self._phase = _Phase.WAIT_IA
        self._scratch: bytearray | None = bytearray(_SCRATCH)
        self._pending: list[bytes] = []  # our writes held until the handshake ends
        self._buf: memoryview | None = None

    @classmethod
    def initiator(
        cls,
        receiver: StreamReceiver,
        skey: bytes,
        *,
        policy: EncryptionPolicy = EncryptionPolicy.PREFER,
        on_done: Callable[[MSEProtocolError | None], None] | None = None,
    ) -> MSEStream:
        """We dial: offer RC4 (and plaintext under ``prefer``) for the torrent whose SKEY is ``skey``."""
        return cls(receiver, policy=policy, skey=skey, on_done=on_done)

    @classmethod
    def responder(
        cls,
        receiver: StreamReceiver,
        skeys: SkeyIndex,
        *,
        policy: EncryptionPolicy = EncryptionPolicy.PREFER,
        prefer_rc4: bool = False,
        on_done: Callable[[MSEProtocolError | None], None] | None = None,
    ) -> MSEStream:
        """Someone dialed us: plaintext BitTorrent or MSE for any torrent in ``skeys``. When the
        dialer offers both methods, ``prefer_rc4`` selects RC4 (else plaintext, as libtorrent)."""
        return cls(receiver, policy=policy, skeys=skeys, prefer_rc4=prefer_rc4, on_done=on_done)

    @property
    def handshaking(self) -> bool:
        return self._phase in (_Phase.WAIT_IA, _Phase.HANDSHAKE)

    # -- receiver side (called by the inner stream) --------------------------------------------

    def connection_made(self, stream: PeerStream) -> None:
        self.inner = stream
        self.receiver.connection_made(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._phase is _Phase.OPEN:
            self._buf = buf = self.receiver.get_buffer(sizehint)
            return buf
        assert self._scratch is not None
        self._buf = None
        return memoryview(self._scratch)

    def buffer_updated(self, nbytes: int) -> None:
        if self._phase is _Phase.OPEN:
            buf = self._buf
            assert buf is not None
            if self.cipher is not None:
                self.cipher.decrypt_in_place(buf[:nbytes])
            self._buf = None
            self.receiver.buffer_updated(nbytes)
        elif self._phase is _Phase.HANDSHAKE and self._scratch is not None:
            self._handshake_bytes(bytes(self._scratch[:nbytes]))
        # WAIT_IA: the peer speaks before our Ya (not MSE); FAILED: closing. Either way: dropped.

    def eof_received(self) -> bool | None:
        if self._phase is _Phase.OPEN:
            return self.receiver.eof_received()
        if self._phase is _Phase.HANDSHAKE:
            self._handshake_bytes(b"")  # raises "peer closed during the handshake" inside
        if self._phase is not _Phase.FAILED:
            self._fail(MSEProtocolError("peer closed before the MSE handshake", state=State.AWAIT_KEY))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.handshaking:
            state = self._hs.state if self._hs is not None else State.AWAIT_KEY
            self._phase = _Phase.FAILED
            self._report(MSEProtocolError(f"connection lost during the MSE handshake ({exc})", state=state))
        self.receiver.connection_lost(exc)

    # -- the handshake -------------------------------------------------------------------------

    def _handshake_bytes(self, data: bytes) -> None:
        hs = self._hs
        assert hs is not None and self.inner is not None
        try:
            hs.receive_data(data)
            ev = hs.next_event()
        except MSEProtocolError as exc:
            self._fail(exc)
            return
        out = hs.data_to_send()
        if out:
            self.inner.write(out)
        if ev is NEED_DATA:
            return
        self._hs = None
        self._scratch = None
        payload: tuple[bytes, ...]
        if isinstance(ev, HandshakeComplete):
            self.obfuscated = True
            self.skey = ev.skey
            self.cipher = hs.cipher
            payload = (ev.initial_payload, ev.trailing)
        else:
            assert isinstance(ev, PlaintextHandshake)  # every byte so far: the peer's BT handshake
            payload = (ev.data,)
        self._phase = _Phase.OPEN
        pending, self._pending = self._pending, []
        if pending:
            self.writelines(pending)
        self._report(None)
        for part in payload:
            if part and self._phase is _Phase.OPEN:  # b"" would be EOF to the wire codec
                deliver(self.receiver, part)

    def _fail(self, exc: MSEProtocolError) -> None:
        if self._phase is _Phase.FAILED:
            return
        self._phase = _Phase.FAILED
        log.debug("MSE handshake with %s failed: %s", self.peer_address, exc)
        self._report(exc)
        if self.inner is not None:
            self.inner.abort()

    def _report(self, exc: MSEProtocolError | None) -> None:
        done, self._on_done = self._on_done, None
        if done is not None:
            done(exc)

    # -- stream side (called by the upper receiver) --------------------------------------------

    @property
    def encrypted(self) -> bool:
        return self.cipher is not None

    def write(self, data: bytes) -> None:
        if self._phase is _Phase.OPEN:
            if self.inner is not None:
                self.inner.write(self.cipher.encrypt(data) if self.cipher is not None else data)
        elif self._phase is _Phase.WAIT_IA:
            # the receiver's first write is its BitTorrent handshake: MSE's initial payload
            assert self._skey is not None and self.inner is not None
            self._hs = hs = MSEHandshake.initiator(self._skey, policy=self.policy, initial_payload=data)
            self._phase = _Phase.HANDSHAKE
            self.inner.write(hs.data_to_send())
        elif self._phase is _Phase.HANDSHAKE:
            self._pending.append(bytes(data))

    def writelines(self, parts: Iterable[bytes | memoryview]) -> None:
        if self._phase is _Phase.OPEN:
            if self.inner is not None:
                cipher = self.cipher
                self.inner.writelines(cipher.encrypt_chunks(parts) if cipher is not None else parts)
        elif self._phase is not _Phase.FAILED:
            data = b"".join(parts)
            if data:
                self.write(data)

    def set_receive_hint(self, nbytes: int) -> None:
        if self._phase is _Phase.OPEN:
            super().set_receive_hint(nbytes)


async def initiate_mse(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    skey: bytes,
    *,
    policy: EncryptionPolicy,
    initial_payload: bytes,
) -> tuple[StreamCipher | None, bytes]:
    """The MSE initiator over asyncio streams (a magnet's metadata fetch dials this way).

    ``initial_payload`` is our BitTorrent handshake. Returns the payload cipher (None: the peer
    selected plaintext) and the payload bytes that came with the handshake's end, decrypted.
    Raises :class:`~bitswarm.mse.MSEProtocolError` (the peer closing during it included); the caller
    bounds it in time."""
    hs = MSEHandshake.initiator(skey, policy=policy, initial_payload=initial_payload)
    while True:
        ev = hs.next_event()
        out = hs.data_to_send()
        if out:
            writer.write(out)
        if ev is not NEED_DATA:
            break
        hs.receive_data(await reader.read(_SCRATCH))  # b"": EOF, reported by next_event
    assert isinstance(ev, HandshakeComplete)
    return hs.cipher, ev.trailing
