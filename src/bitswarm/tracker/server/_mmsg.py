"""Linux ``recvmmsg(2)`` / ``sendmmsg(2)`` through :mod:`ctypes` for the UDP tracker (BEP 15).

Python's :mod:`socket` has no batched datagram calls, and on loopback the two syscalls per datagram
(``recvfrom`` + ``sendto``) cost more than the tracker's own work. :class:`MmsgRing` preallocates,
once per socket, ``count`` receive slots and ``count`` send slots plus the ``struct mmsghdr`` /
``struct iovec`` arrays that point into them, so one ``recvmmsg`` fills up to ``count`` slots and
one ``sendmmsg`` sends up to ``count`` replies. The ctypes calls release the GIL.

Receive slot ``i`` (``slot`` bytes) holds the sender's ``sockaddr_in``/``sockaddr_in6`` at offset 0
and the datagram at offset :data:`DATA_OFFSET`, so one ``struct.unpack_from`` reads both the raw
address and the BEP 15 fields. A reply ``j`` is written into send slot ``j`` and aimed at the
address of any receive slot with :meth:`MmsgRing.aim`.

Only the struct layouts of 64-bit Linux (LP64) are described here; :func:`available` is False
elsewhere and the tracker falls back to ``recvfrom``/``sendto``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import sys

#: recvmmsg flag: block for the first datagram only, then take whatever is queued (no added latency)
MSG_WAITFORONE = 0x10000
#: where a datagram starts inside a receive slot (after a 28-byte sockaddr_in6, 8-aligned)
DATA_OFFSET = 32
#: bytes of one datagram kept (BEP 15 requests are at most 16 + 74 * 20 = 1496 bytes)
DATAGRAM_MAX = 2048
RECV_SLOT = DATA_OFFSET + DATAGRAM_MAX
_SOCKADDR_MAX = 28  # sizeof(struct sockaddr_in6)
_MMSGHDR = 64  # sizeof(struct mmsghdr) on LP64 Linux
_IOVEC = 16


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


_libc: ctypes.CDLL | None = None
_recvmmsg = None
_sendmmsg = None


def _load() -> bool:
    global _libc, _recvmmsg, _sendmmsg
    if _libc is not None:
        return _recvmmsg is not None
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8:
        return False
    if ctypes.sizeof(_MMsgHdr) != _MMSGHDR or ctypes.sizeof(_IoVec) != _IOVEC:
        return False
    try:
        _libc = ctypes.CDLL(None, use_errno=True)
        recv = _libc.recvmmsg
        send = _libc.sendmmsg
    except (OSError, AttributeError):
        return False
    # int recvmmsg(int fd, struct mmsghdr *v, unsigned n, int flags, struct timespec *timeout)
    recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    recv.restype = ctypes.c_int
    # int sendmmsg(int fd, struct mmsghdr *v, unsigned n, int flags)
    send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    send.restype = ctypes.c_int
    _recvmmsg, _sendmmsg = recv, send
    return True


def available() -> bool:
    """True when ``recvmmsg``/``sendmmsg`` can be called (64-bit Linux with a libc that has them)."""
    return _load()


class MmsgRing:
    """Preallocated ``recvmmsg``/``sendmmsg`` buffers for one UDP socket.

    Attributes used on the hot path (all writable buffers shared with the kernel):

    * ``rbuf``: ``count`` receive slots of :data:`RECV_SLOT` bytes (address, then datagram);
    * ``lens``: ``memoryview`` of ``unsigned int``; ``lens[i * 16 + 14]`` is slot ``i``'s datagram size;
    * ``sbuf``: ``count`` send slots of ``send_slot`` bytes;
    * ``send_q`` / ``send_iov``: ``memoryview`` of ``uint64`` over the send headers / iovecs, written by
      :meth:`aim` (inlined by the tracker: ``send_q[j * 8] = rbase + i * RECV_SLOT`` and
      ``send_iov[j * 2 + 1] = size``).
    """

    def __init__(self, sock: socket.socket, count: int = 64, send_slot: int = 4096) -> None:
        if not _load():
            raise OSError(errno.ENOSYS, "recvmmsg/sendmmsg are not available")
        self.sock = sock
        self.fd = sock.fileno()
        self.count = count
        self.send_slot = send_slot
        self.namelen = 28 if sock.family == socket.AF_INET6 else 16
        self.rbuf = bytearray(count * RECV_SLOT)
        self.sbuf = bytearray(count * send_slot)
        self._rhdr = bytearray(count * _MMSGHDR)
        self._riov = bytearray(count * _IOVEC)
        self._shdr = bytearray(count * _MMSGHDR)
        self._siov = bytearray(count * _IOVEC)
        # ctypes views pin the bytearrays (they can no longer be resized) and give their addresses
        self._views = [
            (ctypes.c_char * len(b)).from_buffer(b)
            for b in (self.rbuf, self.sbuf, self._rhdr, self._riov, self._shdr, self._siov)
        ]
        self.rbase, sbase, self._rhdr_addr, riov, self._shdr_addr, siov = (
            ctypes.addressof(v) for v in self._views
        )
        rh = (_MMsgHdr * count).from_buffer(self._rhdr)
        ri = (_IoVec * count).from_buffer(self._riov)
        sh = (_MMsgHdr * count).from_buffer(self._shdr)
        si = (_IoVec * count).from_buffer(self._siov)
        for i in range(count):
            ri[i].iov_base = self.rbase + i * RECV_SLOT + DATA_OFFSET
            ri[i].iov_len = DATAGRAM_MAX
            rh[i].msg_hdr.msg_name = self.rbase + i * RECV_SLOT
            rh[i].msg_hdr.msg_namelen = _SOCKADDR_MAX
            rh[i].msg_hdr.msg_iov = riov + i * _IOVEC
            rh[i].msg_hdr.msg_iovlen = 1
            si[i].iov_base = sbase + i * send_slot
            si[i].iov_len = 0
            sh[i].msg_hdr.msg_name = self.rbase + i * RECV_SLOT
            sh[i].msg_hdr.msg_namelen = self.namelen
            sh[i].msg_hdr.msg_iov = siov + i * _IOVEC
            sh[i].msg_hdr.msg_iovlen = 1
        del rh, ri, sh, si
        self.lens = memoryview(self._rhdr).cast("I")
        self.send_q = memoryview(self._shdr).cast("Q")
        self.send_iov = memoryview(self._siov).cast("Q")
        #: per receive slot i: (i, offset in rbuf, index of its size in lens, address of its sockaddr)
        self.slots = [(i, i * RECV_SLOT, i * 16 + 14, self.rbase + i * RECV_SLOT) for i in range(count)]
        #: per send slot j: (offset in sbuf, index of its msg_name in send_q, of its iov_len in send_iov)
        self.outs = [(j * send_slot, j * 8, j * 2 + 1) for j in range(count)]

    def recv(self) -> int:
        """Block until at least one datagram is queued, then take up to ``count`` (MSG_WAITFORONE).

        Returns how many slots were filled (0: interrupted, or woken by a shutdown). Raises
        :class:`OSError` for a socket error (e.g. ``EBADF`` after close).
        """
        n: int = _recvmmsg(self.fd, self._rhdr_addr, self.count, MSG_WAITFORONE, None)  # type: ignore[misc]
        if n < 0:
            err = ctypes.get_errno()
            if err in (errno.EINTR, errno.EAGAIN):
                return 0
            raise OSError(err, os.strerror(err))
        # msg_namelen now holds the size of the address written (16 or 28): one family per socket,
        # so it stays large enough for the next call
        return n

    def aim(self, j: int, i: int, size: int) -> None:
        """Make send header ``j`` carry ``size`` bytes of send slot ``j`` to receive slot ``i``'s sender."""
        self.send_q[j * 8] = self.rbase + i * RECV_SLOT
        self.send_iov[j * 2 + 1] = size

    def send(self, m: int) -> int:
        """Send the first ``m`` prepared replies (``sendmmsg``, retried until all are out).

        A reply the kernel refuses (e.g. unreachable address) is skipped; returns how many were
        refused that way.
        """
        done = 0
        refused = 0
        while done < m:
            r: int = _sendmmsg(self.fd, self._shdr_addr + done * _MMSGHDR, m - done, 0)  # type: ignore[misc]
            if r < 0:
                err = ctypes.get_errno()
                if err == errno.EINTR:
                    continue
                if err in (errno.EBADF, errno.ENOTSOCK):
                    raise OSError(err, os.strerror(err))
                done += 1  # the first one of this call failed: drop it, go on with the rest
                refused += 1
                continue
            done += r
        return refused

    def address(self, i: int) -> tuple[str, int]:
        """The sender of receive slot ``i`` as a ``(host, port)`` tuple (the slow path)."""
        o = i * RECV_SLOT
        raw = self.rbuf
        port = int.from_bytes(raw[o + 2 : o + 4], "big")
        if self.namelen == 28:
            return socket.inet_ntop(socket.AF_INET6, bytes(raw[o + 8 : o + 24])), port
        return socket.inet_ntop(socket.AF_INET, bytes(raw[o + 4 : o + 8])), port

    def datagram(self, i: int) -> bytes:
        o = i * RECV_SLOT + DATA_OFFSET
        return bytes(self.rbuf[o : o + self.lens[i * 16 + 14]])
