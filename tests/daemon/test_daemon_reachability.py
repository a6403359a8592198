"""The daemon's stats carry the port-mapping state and the external address (issue 19)."""

from __future__ import annotations

from pathlib import Path

from daemon_testlib import running_daemon


async def test_stats_show_the_port_mapping_state(tmp_path: Path) -> None:
    async with running_daemon(tmp_path / "d", port_mapping=True) as run, run.client() as c:
        stats = (await c.get("/api/v1/stats")).json()
        reach = stats["reachability"]
        assert reach["port_mapping"] == "loopback"  # a daemon on 127.0.0.1 has nothing to map
        assert reach["summary"] == "port mapping off (loopback)"
        assert reach["advertised_port"] == stats["listen_port"] == run.daemon.session.port
        assert reach["external_address"] is None and reach["mappings"] == []
    async with running_daemon(tmp_path / "e") as run, run.client() as c:
        assert (await c.get("/api/v1/stats")).json()["reachability"]["port_mapping"] == "off"
