"""``GET /metrics``: the daemon in the Prometheus text exposition format (version 0.0.4), written by
``prometheus_client`` from a collector that reads the daemon's status at each scrape (nothing is
counted on the transfer paths).

Counters stay monotonic while torrents come and go: what a removed (or restarted) torrent had
counted is kept in the total. Everything restarts from zero with the daemon, as Prometheus expects.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bitswarm.session.announce import dht_nodes
from bitswarm.session.lifecycle import DISPLAY_NAME

if TYPE_CHECKING:
    from bitswarm.daemon._core import Daemon

__all__ = ["CONTENT_TYPE", "DaemonMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
#: the lifecycle states, each a ``state`` label value of ``bitswarm_torrents`` (0 when none)
STATES = tuple(dict.fromkeys(DISPLAY_NAME.values()))
TRACKER_STATES = ("ok", "error", "not contacted")


class _Total:
    """A counter summed over torrents that stays monotonic when one goes away or starts again at 0:
    its last value is banked."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._banked = 0.0

    def update(self, values: dict[str, float]) -> float:
        for key, old in self._last.items():
            new = values.get(key)
            if new is None or new < old:
                self._banked += old
        self._last = dict(values)
        return self._banked + sum(values.values())


class DaemonMetrics(Collector):
    """The daemon's metrics, read at each scrape. :meth:`render` is the ``/metrics`` body."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._downloaded = _Total()
        self._uploaded = _Total()
        self._tracker_errors = _Total()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)

    def render(self) -> bytes:
        return generate_latest(self._registry)

    def collect(self) -> Iterator[Metric]:
        daemon = self.daemon
        statuses = daemon.list()
        by_id = {str(s["id"]): s for s in statuses}
        trackers = {tid: daemon.trackers(tid)["trackers"] for tid in by_id}

        def gauge(name: str, doc: str, value: float, unit: str = "") -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value, unit=unit)

        yield gauge(
            "bitswarm_download_rate", "Payload download rate, bytes/s",
            sum(float(s["download_rate"]) for s in statuses), "bytes_per_second",
        )  # fmt: skip
        yield gauge(
            "bitswarm_upload_rate", "Payload upload rate, bytes/s",
            sum(float(s["upload_rate"]) for s in statuses), "bytes_per_second",
        )  # fmt: skip
        yield CounterMetricFamily(
            "bitswarm_downloaded", "Payload bytes received since the daemon started",
            value=self._downloaded.update({k: float(s["downloaded"]) for k, s in by_id.items()}),
            unit="bytes",
        )  # fmt: skip
        yield CounterMetricFamily(
            "bitswarm_uploaded", "Payload bytes sent since the daemon started",
            value=self._uploaded.update({k: float(s["uploaded"]) for k, s in by_id.items()}),
            unit="bytes",
        )  # fmt: skip
        yield gauge("bitswarm_peers", "Connected peers", sum(int(s["peers"]) for s in statuses))
        yield gauge("bitswarm_seeds", "Connected seeds", sum(int(s["seeds"]) for s in statuses))
        yield gauge(
            "bitswarm_known_peers", "Peer addresses known and not connected",
            sum(int(s["known_peers"]) for s in statuses),
        )  # fmt: skip
        states = GaugeMetricFamily("bitswarm_torrents", "Torrents by lifecycle state", labels=["state"])
        for state in STATES:
            states.add_metric([state], sum(1 for s in statuses if s["state"] == state))
        yield states
        yield gauge(
            "bitswarm_disk_errors", "Torrents stopped by a disk error (read, write or move) now",
            sum(1 for s in statuses if str(s.get("error") or "").startswith("disk error")),
        )  # fmt: skip
        yield gauge(
            "bitswarm_torrents_waiting", "Downloading torrents with no peer (see waiting_reason)",
            sum(1 for s in statuses if s.get("waiting_reason")),
        )  # fmt: skip
        by_status = GaugeMetricFamily("bitswarm_trackers", "Trackers by last outcome", labels=["status"])
        rows = [row for tid in trackers for row in trackers[tid]]
        for status in TRACKER_STATES:
            by_status.add_metric([status], sum(1 for row in rows if row["status"] == status))
        yield by_status
        yield CounterMetricFamily(
            "bitswarm_tracker_errors", "Failed tracker announces since the daemon started",
            value=self._tracker_errors.update(
                {f"{tid} {row['url']}": float(row["failures"]) for tid in trackers for row in trackers[tid]}
            ),
        )  # fmt: skip
        dht = daemon.session.dht
        yield gauge("bitswarm_dht_nodes", "Nodes in the DHT routing table", dht_nodes(dht) if dht else 0)
