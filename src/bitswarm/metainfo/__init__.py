"""Torrent metainfo: read, validate and create .torrent files (v1, v2, hybrid) and magnet links.

BEP 3 (v1), BEP 12 (announce-list), BEP 19 (url-list), BEP 27 (private), BEP 47 (padding files and
attributes), BEP 52 (v2: file tree, piece layers, merkle roots), BEP 9/53 (magnet links).
"""

from typing import TYPE_CHECKING

from bitswarm.metainfo._model import FileEntry, InfoDict, MetainfoError, Torrent, TorrentVersion
from bitswarm.metainfo._parse import check_piece_layers, load_torrent, parse_info, parse_torrent

# Creating torrents (and its hashing pipeline) and magnet links are re-exported lazily (see
# :mod:`bitswarm._lazy`): a peer that downloads a .torrent file loads neither.
if TYPE_CHECKING:
    from bitswarm.metainfo._create import CreatedTorrent, auto_piece_length, create_torrent, make_torrent
    from bitswarm.metainfo._magnet import Magnet, MagnetError, magnet_from_torrent, parse_magnet
else:
    from bitswarm._lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(
        globals(),
        {
            "CreatedTorrent": "._create",
            "auto_piece_length": "._create",
            "create_torrent": "._create",
            "make_torrent": "._create",
            "Magnet": "._magnet",
            "MagnetError": "._magnet",
            "magnet_from_torrent": "._magnet",
            "parse_magnet": "._magnet",
        },
    )

__all__ = [
    "CreatedTorrent",
    "FileEntry",
    "InfoDict",
    "Magnet",
    "MagnetError",
    "MetainfoError",
    "Torrent",
    "TorrentVersion",
    "auto_piece_length",
    "check_piece_layers",
    "create_torrent",
    "load_torrent",
    "magnet_from_torrent",
    "make_torrent",
    "parse_info",
    "parse_magnet",
    "parse_torrent",
]
