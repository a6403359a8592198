"""The library reference (mkdocs + mkdocstrings, ``mkdocs.yml``) builds with every warning an error
and documents the public API the issue names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from testtools import require_module

ROOT = Path(__file__).resolve().parents[2]

#: page -> objects it must document (the anchors mkdocstrings makes)
EXPECTED = {
    "session": ["bitswarm.session.session.Session.add", "bitswarm.session.session.Session.events",
                "bitswarm.session.torrent.TorrentHandle", "bitswarm.session.config.SessionConfig"],
    "events": ["bitswarm.session.session.SessionEvent"],
    "metainfo": ["bitswarm.metainfo._parse.parse_torrent", "bitswarm.metainfo._create.make_torrent",
                 "bitswarm.metainfo._magnet.parse_magnet"],
    "dht": ["bitswarm.dht.server.DHTServer"],
    "tracker": ["bitswarm.tracker.client.AnnounceManager"],
    "index-client": ["bitswarm.index.client.IndexClient"],
    "errors": ["bitswarm.errors.BitswarmError", "bitswarm.metainfo._model.MetainfoError"],
}  # fmt: skip


@pytest.mark.timeout(300)
def test_reference_builds_strict_and_covers_the_public_api(tmp_path: Path) -> None:
    require_module("mkdocs", "pip install -e '.[dev]'")
    require_module("mkdocstrings_handlers.python", "pip install -e '.[dev]'")
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-3000:]
    for page, anchors in EXPECTED.items():
        html = (site / page / "index.html").read_text()
        for anchor in anchors:
            assert f'id="{anchor}"' in html, (page, anchor)
