"""BEP 46: a torrent that can be updated, through a BEP 44 mutable item on the DHT.

The publisher keeps an ed25519 key. Its mutable item (target ``SHA-1(public key + salt)``) holds
``{"ih": <20-byte info-hash>}``; publishing a new version puts the new info-hash with a higher
``seq``. A link ``magnet:?xs=urn:btpk:<public key, 64 hex>[&s=<salt, hex>]`` names the publisher,
not a version: :func:`resolve` gets the item with the highest ``seq`` (signature checked by the
DHT lookup) and gives the info-hash it points to, which is then downloaded like any magnet link.

Items expire from DHT nodes (BEP 44: after about two hours): :class:`Publisher` puts the item
again every ``REPUBLISH_INTERVAL`` while the torrent is shared.

Key files (:func:`load_key`): the 32-byte ed25519 seed as 64 hex digits (what :func:`create_key`
writes, mode 0600), the raw 32 bytes, or a PEM PKCS#8 private key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from bitswarm.bencode import BencodeError, decode, encode
from bitswarm.dht import bep44
from bitswarm.dht.lookup import Item
from bitswarm.errors import BitswarmError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from bitswarm.dht.server import DHTServer

log = logging.getLogger("bitswarm.mutable")

#: Seconds between puts of a published item (BEP 44 nodes keep items about two hours).
REPUBLISH_INTERVAL = 30 * 60.0
BTPK = "urn:btpk:"


class MutableTorrentError(BitswarmError):
    """A BEP 46 link, key file or DHT item that cannot be used."""


@dataclass(frozen=True, slots=True)
class MutableLink:
    """``magnet:?xs=urn:btpk:...``: a publisher's key and salt (and the link's other parameters,
    ``tr``, ``x.pe``, ``ws``, kept for the magnet link of the version it points to)."""

    public_key: bytes
    salt: bytes = b""
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def target(self) -> bytes:
        return bep44.mutable_target(self.public_key, self.salt)

    def to_uri(self) -> str:
        uri = f"magnet:?xs={BTPK}{self.public_key.hex()}"
        return uri + (f"&s={self.salt.hex()}" if self.salt else "")

    def magnet_for(self, info_hash: bytes) -> str:
        """The magnet link of the version ``info_hash`` (with this link's trackers, peers, web seeds)."""
        from urllib.parse import quote

        rest = "".join(f"&{k}={quote(v, safe='')}" for k, v in self.extra)
        xt = f"urn:btmh:1220{info_hash.hex()}" if len(info_hash) == 32 else f"urn:btih:{info_hash.hex()}"
        return f"magnet:?xt={xt}{rest}"


def is_mutable_link(uri: str) -> bool:
    """Does ``uri`` look like a BEP 46 link (a magnet with ``xs=urn:btpk:`` and no ``xt``)?"""
    if uri[:7].lower() != "magnet:":
        return False
    params = parse_qsl(urlsplit(uri).query, keep_blank_values=True)
    return any(k == "xs" and v.lower().startswith(BTPK) for k, v in params) and not any(
        k == "xt" for k, _ in params
    )


def parse_mutable_link(uri: str) -> MutableLink:
    """Parse ``magnet:?xs=urn:btpk:<64 hex>[&s=<hex salt>]``; :class:`MutableTorrentError` on garbage."""
    if uri[:7].lower() != "magnet:":
        raise MutableTorrentError("not a magnet link")
    params = parse_qsl(urlsplit(uri).query, keep_blank_values=True)
    keys = [v[len(BTPK) :] for k, v in params if k == "xs" and v.lower().startswith(BTPK)]
    if len(keys) != 1:
        raise MutableTorrentError("a BEP 46 link has exactly one xs=urn:btpk:<public key>")
    try:
        key = bytes.fromhex(keys[0])
    except ValueError:
        key = b""
    if len(key) != 32:
        raise MutableTorrentError("the btpk public key must be 64 hex digits (32 bytes)")
    salts = [v for k, v in params if k == "s"]
    try:
        salt = bytes.fromhex(salts[0]) if salts else b""
    except ValueError:
        raise MutableTorrentError("s= (the salt) must be hex") from None
    if len(salt) > bep44.MAX_SALT:
        raise MutableTorrentError(f"the salt is longer than {bep44.MAX_SALT} bytes")
    extra = tuple((k, v) for k, v in params if k in ("tr", "x.pe", "ws", "dn"))
    return MutableLink(key, salt, extra)


def pointer_value(info_hash: bytes) -> bytes:
    """The bencoded ``v`` of a BEP 46 item pointing at ``info_hash`` (20 bytes, or 32 for v2)."""
    if len(info_hash) not in (20, 32):
        raise ValueError("an info-hash is 20 or 32 bytes")
    return encode({b"ih": info_hash})


def parse_pointer(v: bytes) -> bytes:
    """The info-hash in a BEP 46 item's bencoded ``v``; :class:`MutableTorrentError` otherwise."""
    try:
        d = decode(v)
    except BencodeError as exc:
        raise MutableTorrentError(f"the DHT item is not bencoded: {exc}") from None
    ih = d.get(b"ih") if isinstance(d, Mapping) else None
    if not isinstance(ih, bytes) or len(ih) not in (20, 32):
        raise MutableTorrentError("the DHT item has no 20- or 32-byte 'ih' (not a BEP 46 pointer)")
    return ih


# -- keys ------------------------------------------------------------------------------------------


def create_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """A new ed25519 key, its seed written to ``path`` as 64 hex digits (mode 0600, never over an
    existing file)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise MutableTorrentError(f"cannot create key file {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w") as f:
        f.write(seed.hex() + "\n")
    return key


def load_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """The ed25519 key in ``path`` (64 hex digits, 32 raw bytes or PEM PKCS#8)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        with open(path, "rb") as f:
            raw = f.read(16384)
    except OSError as exc:
        raise MutableTorrentError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    text = raw.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            key = load_pem_private_key(text, password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise MutableTorrentError(f"{path}: not an ed25519 key")
            return key
        if len(text) == 64:
            return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text.decode("ascii")))
        if len(raw) == 32:
            return Ed25519PrivateKey.from_private_bytes(raw)
    except (ValueError, TypeError, UnicodeDecodeError):
        pass
    raise MutableTorrentError(f"{path}: not an ed25519 key (64 hex digits, 32 bytes or PEM)")


def public_key(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


# -- the DHT side ----------------------------------------------------------------------------------


async def resolve(dht: DHTServer, link: MutableLink, *, timeout: float = 30.0) -> bytes:
    """The info-hash the publisher's latest item points to; retried until ``timeout`` (a fresh
    node's routing table fills in its first seconds). :class:`MutableTorrentError` if none."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        item = None
        if left > 0:
            with contextlib.suppress(TimeoutError):
                item = await dht.get_item(link.target, salt=link.salt, timeout=min(left, 10.0))
        if item is not None and item.k == link.public_key:
            return parse_pointer(item.v)
        if loop.time() >= deadline:
            who = link.public_key.hex()[:16]
            raise MutableTorrentError(f"no BEP 46 item for key {who}... on the DHT within {timeout:g} s")
        await asyncio.sleep(min(1.0, max(0.0, deadline - loop.time())))


async def publish(
    dht: DHTServer, key: Ed25519PrivateKey, info_hash: bytes, *, salt: bytes = b"", timeout: float = 30.0
) -> int:
    """Put the pointer to ``info_hash``: the same ``seq`` if the DHT already has this pointer, one
    more than the stored one otherwise (a new version). Returns the seq; :class:`MutableTorrentError`
    if no node stored it."""
    pk = public_key(key)
    v = pointer_value(info_hash)
    current = None
    with contextlib.suppress(TimeoutError):
        current = await dht.get_item(bep44.mutable_target(pk, salt), salt=salt, timeout=timeout)
    seq = 1  # the first version
    if current is not None and current.seq is not None:
        seq = current.seq if current.v == v else current.seq + 1
    item = Item(v, pk, bep44.sign(key, seq, v, salt), seq, salt)
    result = await dht.put_item(item, timeout=timeout)
    if not result.stored:
        raise MutableTorrentError("no DHT node stored the BEP 46 item (is the DHT bootstrapped?)")
    return seq


class Publisher:
    """Keeps a BEP 46 pointer on the DHT while a torrent is shared: puts it now and every
    ``interval`` seconds (``clock_sleep`` is the session clock's sleep)."""

    def __init__(
        self,
        dht: DHTServer,
        key: Ed25519PrivateKey,
        info_hash: bytes,
        *,
        salt: bytes = b"",
        interval: float = REPUBLISH_INTERVAL,
    ) -> None:
        self.dht = dht
        self.key = key
        self.info_hash = info_hash
        self.salt = salt
        self.interval = interval
        self.seq: int | None = None
        self.error: str | None = None

    @property
    def link(self) -> MutableLink:
        return MutableLink(public_key(self.key), self.salt)

    async def publish_once(self, timeout: float = 30.0) -> int:
        self.seq = await publish(self.dht, self.key, self.info_hash, salt=self.salt, timeout=timeout)
        self.error = None
        return self.seq

    async def publish_until(self, timeout: float = 60.0) -> int:
        """:meth:`publish_once`, tried again until a node stores the item or ``timeout`` passes (a
        node that just started may know no other node yet)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                return await self.publish_once(timeout=max(1.0, min(10.0, deadline - loop.time())))
            except (MutableTorrentError, TimeoutError) as exc:
                if loop.time() >= deadline:
                    raise MutableTorrentError(f"publishing the BEP 46 item failed: {exc}") from None
            await asyncio.sleep(1.0)

    async def run(self) -> None:
        """Put again every ``interval`` (after :meth:`publish_once`); errors are kept in ``error``."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.publish_once()
            except (MutableTorrentError, TimeoutError, OSError) as exc:
                self.error = str(exc)
                log.info("BEP 46 republish failed: %s", exc)
