"""The smart-ban policy (session/smartban.py): block digests per source -> whom to ban. No sockets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bitswarm.session.smartban import Ban, PeerKey, SmartBan

BAD = PeerKey("10.0.0.1", 6881, b"B" * 20)
HONEST = PeerKey("10.0.0.1", 6882, b"H" * 20)  # same IP, another port and peer id
OTHER = PeerKey("10.0.0.2", 6881, b"O" * 20)
GOOD, WRONG = b"g" * 20, b"w" * 20


def test_a_lone_sender_of_a_failed_piece_is_banned_not_its_ip() -> None:
    sb = SmartBan()
    assert sb.piece_failed(3, {0: (BAD, WRONG), 16384: (BAD, WRONG)}) == [
        Ban(BAD, "piece 3 failed its hash check")
    ]
    assert sb.is_banned(BAD.ip, BAD.port)  # its listen address is not dialed again
    assert sb.is_banned(BAD.ip, 40000, BAD.peer_id)  # nor accepted from another port
    assert not sb.is_banned(HONEST.ip, HONEST.port, HONEST.peer_id)
    assert not sb.is_banned(HONEST.ip)


def test_a_shared_failure_names_the_sender_once_a_good_copy_arrives() -> None:
    sb = SmartBan()
    assert sb.piece_failed(7, {0: (HONEST, GOOD), 16384: (BAD, WRONG)}) == []
    assert sorted(sb.suspect_blocks(7)) == [0, 16384]
    verdicts = sb.piece_passed(7, lambda begin: GOOD)
    assert verdicts == [Ban(BAD, "sent corrupt data for piece 7")]
    assert sb.suspect_blocks(7) == []
    assert not sb.is_banned(HONEST.ip, HONEST.port, HONEST.peer_id)


def test_a_piece_that_passes_without_suspects_bans_nobody() -> None:
    sb = SmartBan()
    assert sb.piece_passed(1, lambda begin: GOOD) == []


def test_too_many_shared_failures_ban_a_peer() -> None:
    sb = SmartBan(shared_failures_limit=3)
    verdicts: list[Ban] = []
    for i in range(3):
        verdicts += sb.piece_failed(i, {0: (BAD, WRONG), 16384: (OTHER, GOOD)})
    assert {v.peer for v in verdicts} == {BAD, OTHER}
    assert all(v.reason == "too many failed pieces" and not v.whole_ip for v in verdicts)


def test_the_whole_ip_only_after_several_distinct_bad_peers() -> None:
    sb = SmartBan(ban_ip_after=3)
    keys = [PeerKey("10.9.9.9", 7000 + i, bytes([i]) * 20) for i in range(3)]
    out = [sb.piece_failed(i, {0: (k, WRONG)}) for i, k in enumerate(keys)]
    assert [v[0].whole_ip for v in out] == [False, False, True]
    assert sb.is_banned("10.9.9.9", 1, b"x" * 20)  # anyone from it now
    assert sb.piece_failed(9, {0: (PeerKey("10.9.9.9", 1, b"y" * 20), WRONG)}) == []  # already covered


def test_the_same_peer_banned_twice_counts_once() -> None:
    sb = SmartBan(ban_ip_after=2)
    assert sb.piece_failed(0, {0: (BAD, WRONG)})
    assert sb.piece_failed(1, {0: (BAD, WRONG)}) == []
    assert not sb.is_banned(HONEST.ip, HONEST.port, HONEST.peer_id)


peers = st.builds(
    PeerKey,
    st.sampled_from(["10.0.0.1", "10.0.0.2"]),
    st.integers(1, 4),
    st.sampled_from([b"a" * 20, b"b" * 20, b"c" * 20]),
)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),
            st.booleans(),
            st.dictionaries(st.integers(0, 3), st.tuples(peers, st.sampled_from([GOOD, WRONG])), min_size=1),
        ),
        max_size=30,
    )
)
def test_only_senders_of_wrong_blocks_are_banned_as_peers(
    events: list[tuple[int, bool, dict[int, tuple[PeerKey, bytes]]]],
) -> None:
    """Whatever the order of failures and passes, a peer banned on a good copy's evidence sent a
    block whose digest was not the good one; a whole-IP ban needs ``ban_ip_after`` banned peers."""
    sb = SmartBan(shared_failures_limit=10**6)
    model: dict[int, dict[int, tuple[PeerKey, bytes]]] = {}  # what a shared failure leaves to judge
    for index, passed, blocks in events:
        if passed:
            wrong = {p for p, d in model.pop(index, {}).values() if d != GOOD}
            for v in sb.piece_passed(index, lambda begin: GOOD):
                assert v.peer in wrong
        else:
            if len({p for p, _ in blocks.values()}) > 1:
                model.setdefault(index, {}).update(blocks)
            sb.piece_failed(index, blocks)
        assert sorted(sb.suspect_blocks(index)) == sorted(model.get(index, {}))
    for ip in sb.banned_ips:
        assert sum(1 for p in sb.banned_peers if p.ip == ip) >= sb.ban_ip_after
