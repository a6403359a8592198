"""The transport seam: the byte stream a peer connection runs on, whatever carries it.

A :class:`~bitswarm.session.peer.PeerProtocol` needs only a :class:`PeerStream` (write, pause and
resume reading, close, a receive hint, the peer's address, "encrypted?" and "which transport?") and
is itself a :class:`StreamReceiver`: the stream hands bytes over the way asyncio's
``BufferedProtocol`` does (``get_buffer`` -> the stream writes into that buffer -> ``buffer_updated``),
so the wire codec can point a read straight into a piece buffer (the zero-copy *block sink*).

Implementations:

* :class:`TcpStream` — an asyncio ``BufferedProtocol`` over a TCP transport (``kind="tcp"``);
  any asyncio transport with ``write``/``writelines``/``pause_reading``/``resume_reading`` works the
  same way (a uTP stream that looks like an asyncio transport: ``kind="utp"``).
* :class:`CipherStream` — wraps another stream: encrypts what is written and decrypts received
  bytes in place in the receiver's own buffer (MSE/PE's RC4 stream cipher after its handshake).
* :class:`MSEStream` — opens with the MSE/PE handshake (initiator or responder; a responder also
  accepts plaintext BitTorrent under ``prefer``), then carries the payload RC4-encrypted, decrypted
  in place like :class:`CipherStream`, or plain.
* :func:`deliver` — for transports that receive whole chunks (uTP datagrams, a handshake's
  leftover bytes): copies them into a receiver through ``get_buffer``/``buffer_updated``.

Incoming connections on any transport are routed by the info-hash of their BitTorrent handshake:
the transport gives a receiver from ``Session.incoming_connection()`` its stream, nothing more.
"""

from bitswarm.transport._cipher import Cipher, CipherStream
from bitswarm.transport._mse import MSEStream, initiate_mse
from bitswarm.transport._stream import PeerStream, StreamReceiver, deliver
from bitswarm.transport._tcp import TcpStream, connect_tcp

__all__ = [
    "Cipher",
    "CipherStream",
    "MSEStream",
    "PeerStream",
    "StreamReceiver",
    "TcpStream",
    "connect_tcp",
    "deliver",
    "initiate_mse",
]
