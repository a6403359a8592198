"""Who can reach whom on the namespace internet, before and after each mechanism: a markdown table.

    sudo .venv/bin/python tests/net/reachability.py [--duration 20] [--out table.md]

Builds the test bed of docs/testing-net.md (:func:`internet.standard_internet` plus the second plain
home of the BEP 55 tests, every IPv4 home router dropping unsolicited packets like a home router's
firewall) and a public ``relay`` host (198.18.0.13), then runs real bitswarm sessions on five peers —
``pub1`` (public), ``upnp1`` (behind miniupnpd), ``plain1`` and ``plain21`` (behind routers without a
mapping service), ``v61`` (IPv6-only home) — once per column, each column adding a mechanism:

1. *nothing*: IPv4 only, no port mapping, no hole punching;
2. *+ port mapping*: ``SessionConfig.port_mapping`` (UPnP IGD, NAT-PMP/PCP);
3. *+ hole punching*: BEP 55 on, and a public bitswarm relay every peer connects to;
4. *+ IPv6*: dual-stack sockets, and each peer's IPv6 address given too.

A cell answers "can X open a connection to Y": every ordered pair has a torrent of its own, in which
only X is given Y's address(es) (X's dialing session has PEX on; Y's listening session has PEX off
and knows nothing but the relay, so Y never dials X). ``yes`` = X's session connected to Y directly,
``punched`` = after a BEP 55 ``connect`` from the relay (over the uTP dials it starts), ``no`` =
nothing within ``--duration``. Root only (network namespaces); the table goes to stdout (and ``--out``).

``node`` is the per-host helper this script runs inside each namespace (not for direct use).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]

PEERS = ("pub1", "upnp1", "plain1", "plain21", "v61")
LABELS = {
    "pub1": "public",
    "upnp1": "UPnP home",
    "plain1": "plain home A",
    "plain21": "plain home B",
    "v61": "IPv6 home",
}
COLUMNS = ("nothing", "+ port mapping", "+ hole punching", "+ IPv6")
#: The sessions' ports in column 0; each column adds 10: a NAT hole a column punched (conntrack keeps
#: an assured UDP flow for 120 s) must not let the next column's dial through.
DIAL_PORT, LISTEN_PORT, RELAY_PORT = 6881, 6882, 6883
RELAY = "relay"


# -- the per-namespace node ---------------------------------------------------------------------------


async def run_node(spec: dict[str, Any], name: str) -> dict[str, Any]:
    """Run the listening session (and, for a peer, the dialing one) of ``name``; return what the
    dialing session connected to, per torrent."""
    from bitswarm.session import Session, SessionConfig

    col = spec["column"]
    common: dict[str, Any] = {
        "listen_host": "::" if col >= 3 else "0.0.0.0",
        "enable_dht": False,
        "pex_interval": 1.0,
        "port_mapping": col >= 1,
        "enable_holepunch": col >= 2,
    }
    torrents: dict[str, str] = spec["torrents"]  # info-hash hex -> path
    result: dict[str, Any] = {"connected": {}, "punched": {}}
    async with contextlib.AsyncExitStack() as stack:
        if name == RELAY:
            cfg = SessionConfig(listen_port=RELAY_PORT + 10 * col, **common)
            relay = await stack.enter_async_context(Session(cfg))
            for ih, path in torrents.items():
                await relay.add(path, spec["save"] + f"/{name}-{ih}")
            print(json.dumps({"ready": True}), flush=True)  # the peers start now
            await asyncio.sleep(spec["dial_after"] + spec["duration"])
            return result
        relay_addrs = [tuple(a) for a in spec["relay"]] if col >= 2 else []
        listener = await stack.enter_async_context(
            Session(SessionConfig(listen_port=LISTEN_PORT + 10 * col, enable_pex=False, **common))
        )
        for ih, pair in spec["pairs"].items():
            if pair[1] == name:
                await listener.add(torrents[ih], spec["save"] + f"/{name}-l-{ih}", peers=relay_addrs)
        await asyncio.sleep(spec["dial_after"])  # mappings settle before anyone dials
        cfg = SessionConfig(listen_port=DIAL_PORT + 10 * col, **common)
        dialer = await stack.enter_async_context(Session(cfg))
        relay_ips = {_ip(a[0]) for a in spec["relay"]}
        events = dialer.events()
        told: set[str] = set()  # torrents whose relay sent us a BEP 55 connect

        async def watch() -> None:
            async for ev in events:
                pair = spec["pairs"].get(ev.info_hash)
                if pair is None:
                    continue
                if ev.kind in ("peer_connected", "holepunch"):  # the log of this node: NAME-COL.err
                    print(json.dumps({"pair": pair, "kind": ev.kind, **ev.data}), file=sys.stderr, flush=True)
                if ev.kind == "peer_connected" and _ip(ev.data["address"].rsplit(":", 1)[0]) not in relay_ips:
                    result["connected"].setdefault(ev.info_hash, []).append(ev.data["address"])
                    if ev.info_hash in told:  # after the relay's connect: a punched connection
                        result["punched"].setdefault(ev.info_hash, []).append(ev.data["address"])
                elif ev.kind == "holepunch" and ev.data.get("message") == "connect":
                    told.add(ev.info_hash)

        watcher = asyncio.get_running_loop().create_task(watch())
        await asyncio.sleep(0)
        for ih, pair in spec["pairs"].items():
            if pair[0] == name:
                addrs = [tuple(a) for a in spec["addresses"][pair[1]]]
                await dialer.add(torrents[ih], spec["save"] + f"/{name}-d-{ih}", peers=addrs + relay_addrs)
        await asyncio.sleep(spec["duration"])
        watcher.cancel()
    return result


def _ip(host: str) -> str:
    """``host`` (maybe bracketed, maybe IPv4-mapped) in one text form."""
    import ipaddress

    ip = ipaddress.ip_address(host.strip("[]"))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.compressed


# -- the bed and the table --------------------------------------------------------------------------


def build(workdir: Path) -> Any:
    from internet import Internet, add_second_plain_home, drop_unsolicited, standard_internet

    net = Internet(workdir)
    try:
        standard_internet(net)
        add_second_plain_home(net)
        net.add_public_host(RELAY, 13)
        for home in net.homes.values():
            if not home.ipv6_only:
                drop_unsolicited(home)
    except BaseException:
        net.close()
        raise
    return net


def peer_hosts(net: Any) -> dict[str, Any]:
    hosts = {"pub1": net.public["pub1"]}
    for home in net.homes.values():
        hosts.update(home.hosts)
    return {n: hosts[n] for n in PEERS}


def public_addresses(net: Any, name: str, col: int) -> list[tuple[str, int]]:
    """Where others dial ``name``'s listening session: the router's WAN address for a NATed home;
    IPv6 addresses only in the IPv6 column (the IPv6-only home has nothing else)."""
    if name == "pub1":
        host = net.public["pub1"]
        v4, v6 = host.addr, host.addr6
    else:
        home = next(h for h in net.homes.values() if name in h.hosts)
        v4 = None if home.ipv6_only else home.router.addr
        v6 = home.hosts[name].addr6 if home.ipv6_only else None
    port = LISTEN_PORT + 10 * col
    out = [(v4, port)] if v4 else []
    if col >= 3 and v6:
        out.append((v6, port))
    return out


def make_torrents(workdir: Path) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    from bitswarm.metainfo import parse_torrent
    from bitswarm.metainfo._create import create_torrent

    torrents: dict[str, str] = {}
    pairs: dict[str, tuple[str, str]] = {}
    for x in PEERS:
        for y in PEERS:
            if x == y:
                continue
            data = workdir / "data" / f"{x}-{y}.bin"
            data.parent.mkdir(parents=True, exist_ok=True)
            data.write_bytes(f"reachability {x} -> {y}\n".encode() * 100)
            raw = create_torrent(data, piece_length=16384)
            ih = parse_torrent(raw).swarm_hash.hex()
            path = workdir / "torrents" / f"{x}-{y}.torrent"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(raw)
            torrents[ih] = str(path)
            pairs[ih] = (x, y)
    return torrents, pairs


def run_column(net: Any, workdir: Path, col: int, duration: float) -> dict[tuple[str, str], str]:
    torrents, pairs = make_torrents(workdir)
    relay_host = net.public[RELAY]
    port = RELAY_PORT + 10 * col
    relay = [(relay_host.addr, port)] + ([(relay_host.addr6, port)] if col >= 3 else [])
    spec = {
        "column": col,
        "torrents": torrents,
        "pairs": pairs,
        "addresses": {n: public_addresses(net, n, col) for n in PEERS},
        "relay": relay,
        "save": str(workdir / f"save{col}"),
        "dial_after": 5.0,
        "duration": duration,
    }
    spec_path = workdir / f"spec{col}.json"
    spec_path.write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if k != "BITSWARM_NO_PORT_MAPPING"}
    hosts = {RELAY: relay_host} if col >= 2 else {}
    hosts.update(peer_hosts(net))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for name, host in hosts.items():
        with open(workdir / f"{name}-{col}.err", "wb") as err:
            procs[name] = proc = subprocess.Popen(
                host.argv(sys.executable, __file__, "node", str(spec_path), name),
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
            )
        if name == RELAY:  # everyone dials the relay at start: it must listen by then
            assert proc.stdout is not None
            if b"ready" not in proc.stdout.readline():
                raise RuntimeError(f"the relay did not start: see {workdir}/{name}-{col}.err")
    results: dict[str, Any] = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=duration + 60)
        lines = out.decode().strip().splitlines()
        results[name] = json.loads(lines[-1]) if lines else {"connected": {}, "punched": {}}
    cells: dict[tuple[str, str], str] = {}
    for ih, (x, y) in pairs.items():
        res = results.get(x, {})
        if ih in res.get("punched", {}):
            cells[(x, y)] = "punched"
        elif ih in res.get("connected", {}):
            cells[(x, y)] = "yes"
        else:
            cells[(x, y)] = "no"
    return cells


def table(cells: list[dict[tuple[str, str], str]]) -> str:
    lines = [
        "| from | to | " + " | ".join(COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for x in PEERS:
        for y in PEERS:
            if x != y:
                row = [c[(x, y)] for c in cells]
                lines.append(f"| {LABELS[x]} | {LABELS[y]} | " + " | ".join(row) + " |")
    totals = [sum(v != "no" for v in c.values()) for c in cells]
    lines.append("| **pairs that connect** | | " + " | ".join(f"**{t}/20**" for t in totals) + " |")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "node":
        spec = json.loads(Path(sys.argv[2]).read_text())
        print(json.dumps(asyncio.run(run_node(spec, sys.argv[3]))), flush=True)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds the dialers get per column")
    ap.add_argument("--out", type=Path, help="also write the table here")
    ap.add_argument("--keep", type=Path, help="keep the work directory (logs) here")
    args = ap.parse_args()
    from internet import internet_unavailable_reason

    reason = internet_unavailable_reason()
    if reason is not None:
        print(f"cannot build the namespace internet: {reason}", file=sys.stderr)
        return 2
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bitswarm-reach-") as tmp:
        workdir = args.keep or Path(tmp)
        net = build(workdir)
        try:
            cells = [run_column(net, workdir / f"col{i}", i, args.duration) for i in range(len(COLUMNS))]
        finally:
            net.close()
    out = table(cells)
    print(out)
    print(f"\n({time.monotonic() - started:.0f} s)", file=sys.stderr)
    if args.out is not None:
        args.out.write_text(out + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
