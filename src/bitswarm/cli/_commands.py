"""Imports every command module so that each registers itself on :data:`bitswarm.cli._app.app`.

Add one line here per command module.
"""

# ruff: noqa: F401
from bitswarm.cli import _create, _daemon, _demo, _dht, _index, _info, _peer, _serve, _stream, _tracker
