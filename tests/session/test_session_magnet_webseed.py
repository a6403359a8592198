"""A magnet link's ``ws`` web seeds (BEP 19) serve the download once the metadata is in: the only
peer sends the metadata but has no piece (it has just started downloading), so every byte comes
from nginx."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from tests.session.test_session_transfer import make_tree
from tests.session.test_session_webseed import Nginx, nginx, torrent  # noqa: F401 - the fixture

from bitswarm.metainfo import magnet_from_torrent, parse_magnet
from bitswarm.session import Session, SessionConfig

pytestmark = pytest.mark.timeout(90)


def config(**kw: object) -> SessionConfig:
    return SessionConfig(listen_host="127.0.0.1", listen_port=0, enable_dht=False, **kw)  # type: ignore[arg-type]


async def test_magnet_ws_is_a_web_seed(tmp_path: Path, nginx: Nginx) -> None:  # noqa: F811
    src = make_tree(tmp_path / "src", {"data.bin": 400_000})
    shutil.copy(src / "data.bin", nginx.root / "mirror.bin")
    t = torrent(src / "data.bin", [])  # the .torrent names no web seed: only the link does
    assert t.url_list == []
    link = dataclasses.replace(
        magnet_from_torrent(t), web_seeds=[f"{nginx.url}/mirror.bin"], trackers=[], peers=[]
    ).to_uri()
    assert parse_magnet(link).web_seeds == [f"{nginx.url}/mirror.bin"]
    async with Session(config()) as other, Session(config()) as leech:
        await other.add(t, tmp_path / "other")  # knows the metadata, has no data
        h = await leech.add(link, tmp_path / "dl", peers=[("127.0.0.1", other.port)], metadata_timeout=30)
        assert h.torrent.url_list == [f"{nginx.url}/mirror.bin"]
        await h.wait_complete(timeout=60)
        st = h.status()
        assert st.web_seeds == 1 and st.web_seed_downloaded == 400_000
    assert (tmp_path / "dl" / "data.bin").read_bytes() == (src / "data.bin").read_bytes()
