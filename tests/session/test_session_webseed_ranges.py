"""The pure part of web seeds: piece-space ranges onto files, URLs, back-off (no sockets)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bitswarm.metainfo._model import FileEntry, InfoDict
from bitswarm.session.webseed import (
    BACKOFF_MAX,
    Segment,
    backoff_delay,
    file_url,
    httpseed_url,
    map_range,
)


def info_of(entries: list[tuple[int, int, bool]], *, single: bool = False) -> InfoDict:
    """Files from (gap before it, length, is padding)."""
    files, pos = [], 0
    for k, (gap, length, pad) in enumerate(entries):
        pos += gap
        files.append(FileEntry((f"f{k}",), length, pos, "p" if pad else ""))
        pos += length
    return InfoDict("t", 16384, tuple(files), single, None, None, False, None, b"")


layouts = st.lists(
    st.tuples(st.integers(0, 40), st.integers(0, 100), st.booleans()), min_size=1, max_size=8
).filter(lambda fs: sum(g + n for g, n, _ in fs) > 0)


@given(layouts, st.data())
def test_map_range_covers_each_byte_once_in_order(
    entries: list[tuple[int, int, bool]], data: st.DataObject
) -> None:
    info = info_of(entries)
    space = info.piece_space
    start = data.draw(st.integers(0, space - 1))
    length = data.draw(st.integers(1, space - start))
    # what each byte of the piece space is: (file, offset) or None (padding, gap)
    owner: list[tuple[int, int] | None] = [None] * space
    for i, f in enumerate(info.files):
        for j in range(f.length):
            owner[f.offset + j] = None if f.pad else (i, j)
    segs = map_range(info, start, length)
    assert sum(s.length for s in segs) == length
    assert all(s.length > 0 for s in segs)
    got: list[tuple[int, int] | None] = []
    for s in segs:
        got += [None if s.file is None else (s.file, s.offset + j) for j in range(s.length)]
    assert got == owner[start : start + length]
    for s in segs:
        if s.file is not None:
            f = info.files[s.file]
            assert not f.pad and s.offset >= 0 and s.offset + s.length <= f.length


def test_map_range_example_across_a_padding_file() -> None:
    info = info_of([(0, 10, False), (0, 6, True), (0, 20, False)])
    assert map_range(info, 5, 20) == [Segment(0, 5, 5), Segment(None, 0, 6), Segment(2, 0, 9)]


def test_file_urls_bep19() -> None:
    single = info_of([(0, 5, False)], single=True)
    object.__setattr__(single, "name", "a b.iso")
    assert file_url("http://h/dist/x.iso", single, 0) == "http://h/dist/x.iso"
    assert file_url("http://h/dist/", single, 0) == "http://h/dist/a%20b.iso"
    multi = InfoDict(
        "album", 16384, (FileEntry(("cd 1", "t#1.flac"), 5, 0),), False, None, None, False, None, b""
    )
    assert file_url("http://h/m", multi, 0) == "http://h/m/album/cd%201/t%231.flac"
    assert file_url("http://h/m/", multi, 0) == "http://h/m/album/cd%201/t%231.flac"


def test_httpseed_url_bep17() -> None:
    ih = bytes(range(20))
    assert httpseed_url("http://h/seed.php", ih, 7) == (
        "http://h/seed.php?info_hash=%00%01%02%03%04%05%06%07%08%09%0A%0B%0C%0D%0E%0F%10%11%12%13&piece=7"
    )
    assert httpseed_url("http://h/s?x=1", ih, 0).startswith("http://h/s?x=1&info_hash=")


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_delay(n) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert backoff_delay(40) == BACKOFF_MAX
