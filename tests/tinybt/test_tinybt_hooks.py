"""tinybt facade: custom query handler and router, user_setup, shutdown, public-DHT guard."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from typing import Any

import pytest

from bitswarm.dht.krpc import Addr, NodeInfo
from bitswarm.tinybt import DHT, DHT_Router, KRPCDict, KRPCPeer, KRPCRemoteError, SendResponse
from testtools import eventually

LOCAL = ("127.0.0.1", 0)


@pytest.fixture(autouse=True)
def _no_public_dht(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITSWARM_NO_PUBLIC_DHT", "1")


def _wait(cond: Any, timeout: float = 10.0) -> bool:
    try:
        return bool(eventually(cond, timeout=timeout))
    except AssertionError:
        return False


def test_custom_query_handler_on_a_dht() -> None:
    a = DHT(LOCAL, bootstrap_connection=LOCAL)
    client = KRPCPeer(LOCAL)
    seen: list[bytes] = []

    def handler(send_krpc_response: SendResponse, rec: KRPCDict, source: Addr) -> bool:
        seen.append(rec["q"])
        if rec["q"] == b"compute":  # a distributed-computing method of the application
            send_krpc_response(result=sum(rec["a"]["numbers"]))
            return True
        return False  # the node answers everything else

    try:
        a.query_handler = handler
        assert a.query_handler is handler
        r = client.send_krpc_query(a.listen_connection, "compute", id=b"c" * 20, numbers=[1, 2, 3]).get(5)
        assert r["result"] == 6 and r["id"] == a.node_id
        assert client.send_krpc_query(a.listen_connection, "ping", id=b"c" * 20).get(5)["id"] == a.node_id
        assert seen == [b"compute", b"ping"]
        a.query_handler = None
        client.send_krpc_query(a.listen_connection, "ping", id=b"c" * 20).get(5)
        assert seen == [b"compute", b"ping"]

        def blocking(send_krpc_response: SendResponse, rec: KRPCDict, source: Addr) -> bool:
            a.dht_ping(source)  # a blocking call on the loop thread: refused, not a deadlock
            return True

        a.query_handler = blocking
        with pytest.raises(KRPCRemoteError) as err:  # the handler raised: 202, and the node lives on
            client.send_krpc_query(a.listen_connection, "ping", id=b"c" * 20).get(5)
        assert err.value.code == 202
        a.query_handler = None
        assert client.send_krpc_query(a.listen_connection, "ping", id=b"c" * 20).get(5)["id"] == a.node_id
    finally:
        client.shutdown()
        a.shutdown()


class ListRouter:
    """A user router: a plain list of contacts, handed out as is."""

    def __init__(self) -> None:
        self.contacts: list[NodeInfo] = [NodeInfo(b"\x42" * 20, ("127.9.9.9", 9999))]
        self.responded: list[NodeInfo] = []
        self.failed: list[Addr] = []
        self.lock = threading.Lock()

    def node_seen(self, node: NodeInfo, responded: bool) -> None:
        with self.lock:
            if responded:
                self.responded.append(node)
            if node not in self.contacts:
                self.contacts.append(node)

    def node_failed(self, addr: Addr) -> None:
        self.failed.append(addr)

    def closest_nodes(self, target: bytes, count: int) -> list[NodeInfo]:
        with self.lock:
            return self.contacts[:count]


def test_user_router_is_used() -> None:
    a = DHT(LOCAL, bootstrap_connection=LOCAL)
    router = ListRouter()
    r: DHT_Router = router
    b = DHT(LOCAL, bootstrap_connection=a.listen_connection, user_router=r)
    c = DHT(LOCAL, bootstrap_connection=a.listen_connection)
    try:
        assert b.dht_ping(a.listen_connection) is not None
        assert NodeInfo(a.node_id, a.listen_connection) in router.responded
        # b hands out exactly its router's contacts
        found = c.find_node(b.listen_connection, c.node_id, b"\x00" * 20).get_result(5)
        assert found["nodes"][:26] == b"\x42" * 20 + socket.inet_aton("127.9.9.9") + (9999).to_bytes(2, "big")
        # b's lookups start from the router's contacts too; the dead one is reported as failed
        assert list(b.dht_find_node(a.node_id, timeout=10)) == [a.listen_connection]
        assert _wait(lambda: ("127.9.9.9", 9999) in router.failed)
    finally:
        for d in (a, b, c):
            d.shutdown()


def test_user_setup_drives_the_maintenance_tasks() -> None:
    with pytest.raises(ValueError, match="unknown user_setup key"):
        DHT(LOCAL, LOCAL, user_setup={"discover": 1})
    with pytest.raises(ValueError, match="check_t"):
        DHT(LOCAL, LOCAL, user_setup={"check_t": 0})
    with pytest.raises(ValueError, match="check_N"):
        DHT(LOCAL, LOCAL, user_setup={"check_N": "10"})  # type: ignore[dict-item]
    a = DHT(LOCAL, bootstrap_connection=LOCAL)
    got: list[bytes] = []
    a.query_handler = lambda send, rec, source: bool(got.append(rec["q"]))
    b = DHT(LOCAL, a.listen_connection, {"discover_t": 0.1, "check_t": 0.1, "check_N": 1})
    try:
        assert b.setup == {"discover_t": 0.1, "check_t": 0.1, "check_N": 1}
        assert _wait(lambda: got.count(b"ping") >= 3)  # health checks of its one contact
        assert _wait(lambda: got.count(b"find_node") >= 5)  # bootstrap, refreshes, then discovery
    finally:
        a.shutdown()
        b.shutdown()


def test_shutdown_frees_the_port_and_the_process_exits() -> None:
    code = (
        "from bitswarm.tinybt import DHT\n"
        "d = DHT(('127.0.0.1', 0), bootstrap_connection=('127.0.0.1', 0))\n"
        "print(d.listen_connection[1], flush=True)\n"
        "d.shutdown()\n"
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.bind(('127.0.0.1', d.listen_connection[1])); print('rebound', flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1] == "rebound"
    d = DHT(LOCAL, LOCAL)
    port = d.listen_connection[1]
    d.shutdown()
    d.shutdown()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))
    with pytest.raises(RuntimeError):
        d.dht_ping(("127.0.0.1", port))
    with pytest.raises(RuntimeError):
        d.ping(("127.0.0.1", port), b"x" * 20)
    k = KRPCPeer(LOCAL)
    k.shutdown()
    with pytest.raises(RuntimeError):
        k.send_krpc_query(("127.0.0.1", port), "ping", id=b"x" * 20)


def test_public_bootstrap_is_not_contacted_under_bitswarm_no_public_dht(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_dns(*args: object, **kwargs: object) -> object:
        raise OSError("DNS was asked")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    DHT(LOCAL).shutdown()  # default bootstrap router.bittorrent.com: never resolved
    monkeypatch.delenv("BITSWARM_NO_PUBLIC_DHT")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(LOCAL)
        port = s.getsockname()[1]
        with pytest.raises(OSError):
            DHT(("127.0.0.1", port), ("127.0.0.1", port))  # the port is taken: a clear error
    with pytest.raises(OSError, match="DNS was asked"):
        DHT(("127.0.0.1", port))  # without the guard it would resolve (and contact) the public router
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))  # the failed constructor freed its port
