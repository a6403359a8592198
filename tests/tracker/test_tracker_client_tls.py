"""HTTPS trackers: the client verifies certificates (its TLS transport is made lazily), also after an
http:// → https:// redirect; a trusted certificate works."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bitswarm.bencode import encode
from bitswarm.tracker.client import AnnounceParams, HttpTrackerClient, TrackerUnreachable

REPLY = encode({b"interval": 900, b"peers": b"\x7f\x00\x00\x01\x1a\xe1"})


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def _serve(handler_reply: bytes, ssl_ctx: ssl.SSLContext | None) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(handler_reply)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ssl_ctx)


def _ok() -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(REPLY) + REPLY


@pytest.fixture
async def tls_tracker(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    cert, key = _self_signed(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server = await _serve(_ok(), ctx)
    try:
        yield server.sockets[0].getsockname()[1], cert
    finally:
        server.close()
        await server.wait_closed()


PARAMS = AnnounceParams(info_hash=b"\x01" * 20, peer_id=b"-BW0100-" + b"x" * 12, port=6881, left=1)


@pytest.mark.timeout(30)
async def test_untrusted_certificate_is_refused(tls_tracker: tuple[int, Path]) -> None:
    port, _ = tls_tracker
    client = HttpTrackerClient(f"https://127.0.0.1:{port}/announce", timeout=10)
    try:
        with pytest.raises(TrackerUnreachable, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            await client.announce(PARAMS)
    finally:
        await client.aclose()


@pytest.mark.timeout(30)
async def test_redirect_to_untrusted_https_is_refused(tls_tracker: tuple[int, Path]) -> None:
    port, _ = tls_tracker
    redirect = (
        b"HTTP/1.1 302 Found\r\nLocation: https://127.0.0.1:%d/announce\r\nContent-Length: 0\r\n"
        b"Connection: close\r\n\r\n" % port
    )
    plain = await _serve(redirect, None)
    client = HttpTrackerClient(f"http://127.0.0.1:{plain.sockets[0].getsockname()[1]}/announce", timeout=10)
    try:
        with pytest.raises(TrackerUnreachable, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            await client.announce(PARAMS)
    finally:
        await client.aclose()
        plain.close()
        await plain.wait_closed()


@pytest.mark.timeout(30)
async def test_plain_http_tracker_answers() -> None:
    server = await _serve(_ok(), None)
    client = HttpTrackerClient(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/announce", timeout=10)
    try:
        result = await client.announce(PARAMS)
        assert result.peers == (("127.0.0.1", 6881),)
        assert result.interval == 900
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
