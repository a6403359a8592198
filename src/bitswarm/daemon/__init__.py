"""The client daemon: a long-running session controlled over HTTP (like Transmission's RPC).

:class:`Daemon` keeps the torrent list and settings in a data directory and restores them after a
restart; :func:`create_app` is its control API (``/api/v1``, OpenAPI at ``/openapi.json``) with the
web UI at ``/``, served by uvicorn as :func:`server_config` sets it up (with :class:`HttpLimits`, both from
:mod:`bitswarm.httpguard`);
:class:`DaemonClient` talks to a running daemon (``bitswarm ctl``, ``bitswarm top``).
"""

from bitswarm.daemon._api import create_app
from bitswarm.daemon._core import MAX_TORRENT_BYTES, Daemon, DaemonError
from bitswarm.daemon._store import DataDir, TorrentRecord
from bitswarm.daemon.client import DaemonClient, DaemonClientError
from bitswarm.httpguard import HttpLimits, server_config

__all__ = [
    "MAX_TORRENT_BYTES",
    "Daemon",
    "DaemonClient",
    "DaemonClientError",
    "DaemonError",
    "DataDir",
    "HttpLimits",
    "TorrentRecord",
    "create_app",
    "server_config",
]
