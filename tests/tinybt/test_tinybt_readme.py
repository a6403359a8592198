"""tinybt's README (seed 004) ported to a test: its names, arguments and defaults, and every
documented function used the way the README describes, on three DHT nodes on 127.0.0.1."""

from __future__ import annotations

import inspect
import socket
from collections.abc import Iterator

import pytest

import bitswarm.tinybt as tinybt
from bitswarm.tinybt import DHT, AsyncResult, AsyncTimeout, KRPCPeer, KRPCRemoteError

IH = bytes(range(20))
LOCAL = ("127.0.0.1", 0)


@pytest.fixture(autouse=True)
def _no_public_dht(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITSWARM_NO_PUBLIC_DHT", "1")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(LOCAL)
        return int(s.getsockname()[1])


@pytest.fixture
def nodes() -> Iterator[list[DHT]]:
    """A first node bootstrapping from its own address, two more bootstrapping from it."""
    for attempt in range(5):  # the free port may be taken again before we bind it
        port = _free_udp_port()
        try:
            first = DHT(("127.0.0.1", port), bootstrap_connection=("127.0.0.1", port))
            break
        except OSError:
            if attempt == 4:
                raise
    out = [first]
    try:
        for _ in range(2):
            out.append(DHT(LOCAL, bootstrap_connection=first.listen_connection))
        yield out
    finally:
        for d in out:
            d.shutdown()


def _defaults(fn: object) -> dict[str, object]:
    return {
        name: (p.default if p.default is not inspect.Parameter.empty else "<required>")
        for name, p in inspect.signature(fn).parameters.items()  # type: ignore[arg-type]
    }


def test_names_arguments_and_defaults_are_the_seeds() -> None:
    krpc_init = inspect.signature(KRPCPeer.__init__).parameters
    assert [n for n, p in krpc_init.items() if p.kind is not p.KEYWORD_ONLY] == [
        "self",
        "connection",
        "query_handler",
    ]
    assert all(
        krpc_init[n].kind is inspect.Parameter.KEYWORD_ONLY for n in ("cleanup_timeout", "max_handlers")
    )
    assert list(_defaults(KRPCPeer.send_krpc_query)) == ["self", "connection", "method", "kwargs"]
    assert _defaults(DHT.__init__) == {
        "self": "<required>",
        "listen_connection": "<required>",
        "bootstrap_connection": ("router.bittorrent.com", 6881),
        "user_setup": {},
        "user_router": None,
    }
    assert _defaults(tinybt.init) == {k: v for k, v in _defaults(DHT.__init__).items() if k != "self"}
    assert tinybt.DEFAULT_SETUP == {"discover_t": 180, "check_t": 30, "check_N": 10}
    assert list(_defaults(DHT.ping)) == ["self", "target_connection", "sender_id"]
    assert list(_defaults(DHT.find_node)) == ["self", "target_connection", "sender_id", "search_id"]
    assert list(_defaults(DHT.get_peers)) == ["self", "target_connection", "sender_id", "info_hash"]
    assert _defaults(DHT.announce_peer)["implied_port"] is None
    assert list(_defaults(DHT.announce_peer))[1:6] == [
        "target_connection", "sender_id", "info_hash", "port", "token"
    ]  # fmt: skip
    assert _defaults(DHT.dht_ping) == {"self": "<required>", "connection": "<required>", "timeout": 5}
    assert _defaults(DHT.dht_find_node) == {
        "self": "<required>", "search_id": "<required>", "timeout": 5, "retries": 2
    }  # fmt: skip
    assert _defaults(DHT.dht_get_peers) == {
        "self": "<required>", "info_hash": "<required>", "timeout": 5, "retries": 2
    }  # fmt: skip
    assert _defaults(DHT.dht_announce_peer) == {
        "self": "<required>",
        "info_hash": "<required>",
        "implied_port": 1,
    }
    assert list(_defaults(DHT.shutdown)) == ["self"]
    assert list(_defaults(DHT.get_external_connection)) == ["self"]


def test_readme_usage_on_three_local_nodes(nodes: list[DHT]) -> None:
    a, b, c = nodes
    # dht_ping: the complete result dictionary (str keys work as in tinybt's Python 2 code)
    reply = b.dht_ping(a.listen_connection)
    assert reply is not None and reply["id"] == a.node_id == reply[b"id"]
    # get_external_connection: (ip, port) as soon as one node reported it
    assert b.get_external_connection() == b.listen_connection
    # dht_get_peers yields nothing yet; dht_announce_peer then registers with every token giver
    assert list(b.dht_get_peers(IH, timeout=5, retries=0)) == []
    assert b.dht_announce_peer(IH) >= 2  # a and c stored it (implied_port=1: b's UDP port)
    # another node finds it; the announcer itself is never handed its own address
    assert list(c.dht_get_peers(IH)) == [b.listen_connection]
    assert list(b.dht_get_peers(IH, timeout=2, retries=0)) == []
    # dht_find_node yields the connection of the node with that id
    assert list(c.dht_find_node(a.node_id)) == [a.listen_connection]
    assert list(c.dht_find_node(b.node_id)) == [b.listen_connection]
    # the raw BEP 5 methods return async result holders with the unprocessed reply
    res = c.ping(a.listen_connection, c.node_id)
    assert isinstance(res, AsyncResult)
    assert res.get_result(5)["id"] == a.node_id and res.get_source() == a.listen_connection
    found = c.find_node(a.listen_connection, c.node_id, b.node_id).get_result(5)
    assert b.node_id in found["nodes"]  # compact node info, as on the wire
    peers = c.get_peers(a.listen_connection, c.node_id, IH).get_result(5)
    assert peers["values"] == [socket.inet_aton("127.0.0.1") + b.listen_connection[1].to_bytes(2, "big")]
    ih2 = bytes(reversed(IH))
    token = c.get_peers(a.listen_connection, c.node_id, ih2).get_result(5)["token"]
    assert c.announce_peer(a.listen_connection, c.node_id, ih2, 4321, token).get_result(5)["id"] == a.node_id
    assert list(b.dht_get_peers(ih2)) == [("127.0.0.1", 4321)]
    # a bad token is answered with a KRPC error (203), raised by the holder
    with pytest.raises(KRPCRemoteError) as err:
        c.announce_peer(a.listen_connection, c.node_id, ih2, 4321, b"bad", implied_port=0).get_result(5)
    assert err.value.code == 203


def test_krpc_peer_query_handler_and_shutdown() -> None:
    def handler(
        send_krpc_response: tinybt.SendResponse, rec: tinybt.KRPCDict, source: tuple[str, int]
    ) -> None:
        if rec["q"] == b"echo":
            send_krpc_response(id=b"s" * 20, echo=rec["a"]["msg"], seen=list(source))
        else:
            raise ValueError("unsupported")

    server = KRPCPeer(LOCAL, handler)
    client = KRPCPeer(LOCAL, None)
    try:
        r = client.send_krpc_query(server.connection, "echo", id=b"c" * 20, msg="hello").get_result(5)
        assert r["echo"] == b"hello" and r["seen"] == [b"127.0.0.1", client.connection[1]]
        with pytest.raises(KRPCRemoteError) as err:  # the handler raised: 202
            client.send_krpc_query(server.connection, "other", id=b"c" * 20).get_result(5)
        assert err.value.code == 202
        with pytest.raises(KRPCRemoteError) as err:  # no handler: 204
            server.send_krpc_query(client.connection, "ping", id=b"s" * 20).get_result(5)
        assert err.value.code == 204
        # a KRPCPeer talks to a DHT node: ping it with the bare KRPC layer
        d = DHT(LOCAL, bootstrap_connection=LOCAL)
        try:
            pong = client.send_krpc_query(d.listen_connection, "ping", id=b"c" * 20).get_result(5)
            assert pong["id"] == d.node_id
        finally:
            d.shutdown()
        # nothing answers on a closed port: the holder times out
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        silent.bind(LOCAL)
        with pytest.raises(AsyncTimeout):
            client.send_krpc_query(silent.getsockname(), "ping", id=b"c" * 20).get_result(0.3)
        silent.close()
    finally:
        server.shutdown()
        client.shutdown()
    # the port is free again
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(server.connection)


def test_module_level_init_shutdown_get_external_connection() -> None:
    assert tinybt.get_external_connection() is None
    dht = tinybt.init(LOCAL, LOCAL)
    try:
        with pytest.raises(RuntimeError):
            tinybt.init(LOCAL, LOCAL)
        other = DHT(LOCAL, bootstrap_connection=dht.listen_connection)
        try:
            assert other.dht_ping(dht.listen_connection) is not None
            assert dht.dht_ping(other.listen_connection) is not None
            assert tinybt.get_external_connection() == dht.listen_connection
        finally:
            other.shutdown()
    finally:
        tinybt.shutdown()
    assert tinybt.get_external_connection() is None
    tinybt.shutdown()  # idempotent
