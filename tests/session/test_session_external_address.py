"""The external-address consensus (bitswarm.session.external_address): sans I/O, no sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitswarm.session.external_address import ExternalAddressVote, usable_external_address

PUB = "198.51.100.7"
OTHER = "203.0.114.1"


@pytest.mark.parametrize(
    "address",
    ["0.0.0.0", "127.0.0.1", "10.1.2.3", "192.168.1.1", "172.16.0.9", "169.254.1.1", "100.64.0.1",
     "224.0.0.1", "::", "::1", "fe80::1", "fd00::5", "::ffff:10.0.0.1", "garbage", "", "1.2.3"],
)  # fmt: skip
def test_addresses_nobody_can_dial_are_not_counted(address: str) -> None:
    assert usable_external_address(address) is None
    vote = ExternalAddressVote()
    assert vote.add(address, "mapping", "upnp") is False
    assert vote.address(4) is None and vote.address(6) is None and vote.reports() == []


def test_usable_addresses_are_canonical() -> None:
    assert usable_external_address("::ffff:198.51.100.7") == PUB
    assert usable_external_address("[2001:DB8::1]") == "2001:db8::1"
    assert usable_external_address("198.18.0.101") == "198.18.0.101"  # a test bed's public range


def test_one_mapping_or_one_tracker_decides() -> None:
    vote = ExternalAddressVote()
    assert vote.add(PUB, "mapping", "upnp") is True
    assert vote.address() == PUB and vote.addresses == [PUB]
    other = ExternalAddressVote()
    assert other.add(PUB, "tracker", "t.example") is True
    assert other.address() == PUB


def test_peers_and_dht_nodes_need_three_distinct_voters() -> None:
    vote = ExternalAddressVote()
    assert vote.add(PUB, "peer", "198.51.100.1") is False
    assert vote.add(PUB, "peer", "198.51.100.1") is False  # the same voter again counts once
    assert vote.add(PUB, "dht", "198.51.100.2") is False
    assert vote.address() is None
    assert vote.add(PUB, "dht", "198.51.100.3") is True
    assert vote.address() == PUB


def test_a_mapping_outweighs_many_peers_and_a_tie_keeps_the_decision() -> None:
    vote = ExternalAddressVote()
    for i in range(5):
        vote.add(OTHER, "peer", f"198.51.100.{i + 1}")
    assert vote.address() == OTHER
    assert vote.add(PUB, "mapping", "pcp") is True  # 8 > 5
    assert vote.address() == PUB
    for i in range(5, 8):
        assert vote.add(OTHER, "peer", f"198.51.100.{i + 1}") is False  # 8 == 8: no flapping
    assert vote.add(OTHER, "peer", "198.51.100.99") is True  # 9 > 8
    assert vote.address() == OTHER


def test_a_voter_changing_its_mind_moves_its_vote() -> None:
    vote = ExternalAddressVote()
    vote.add(PUB, "tracker", "t1")
    assert vote.scores() == {PUB: 3}
    assert vote.add(OTHER, "tracker", "t1") is True
    assert vote.scores() == {OTHER: 3} and vote.address() == OTHER


def test_withdrawing_the_only_vote_forgets_the_address() -> None:
    vote = ExternalAddressVote()
    vote.add(PUB, "mapping", "upnp")
    assert vote.withdraw("mapping", "upnp") is True
    assert vote.address() is None
    assert vote.withdraw("mapping", "upnp") is False


def test_families_are_decided_separately() -> None:
    vote = ExternalAddressVote()
    assert vote.add(PUB, "mapping", "upnp") is True
    assert vote.add("2001:db8::7", "tracker", "t") is True
    assert vote.address(4) == PUB and vote.address(6) == "2001:db8::7"
    assert vote.addresses == [PUB, "2001:db8::7"]
    status = vote.status()
    assert status["ipv4"] == PUB and status["ipv6"] == "2001:db8::7"
    assert status["votes"] == {PUB: {"score": 8, "mapping": 1}, "2001:db8::7": {"score": 3, "tracker": 1}}


def test_only_the_latest_voters_of_a_source_are_kept() -> None:
    vote = ExternalAddressVote(max_voters=3)
    for i in range(3):
        vote.add(OTHER, "dht", f"198.51.100.{i + 1}")
    assert vote.address() == OTHER
    for i in range(3, 6):
        vote.add(PUB, "dht", f"198.51.100.{i + 1}")
    assert vote.scores() == {PUB: 3}
    assert vote.address() == PUB


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        ExternalAddressVote(threshold=0)
    with pytest.raises(ValueError):
        ExternalAddressVote().add(PUB, "rumour", "x")


SOURCE = st.sampled_from(["mapping", "tracker", "peer", "dht"])
ADDRESS = st.sampled_from([PUB, OTHER, "10.0.0.1"])


@given(st.lists(st.tuples(SOURCE, st.integers(0, 9), ADDRESS), max_size=60))
def test_the_decision_is_always_a_best_scoring_address_past_the_threshold(
    reports: list[tuple[str, int, str]],
) -> None:
    vote = ExternalAddressVote()
    before: str | None = None
    for source, voter, address in reports:
        vote.add(address, source, f"v{voter}")
        decided = vote.address()
        scores = vote.scores(4)
        if decided is not None:
            assert scores[decided] == max(scores.values())  # never one that another outscores
            if decided != before:  # a new decision needs the threshold; a kept one may sink below
                assert scores[decided] >= vote.threshold
        before = decided
        assert "10.0.0.1" not in scores


def test_a_decided_address_that_voters_leave_stays_until_another_scores_more() -> None:
    """Found by the property above: three peers decide PUB; one moves to OTHER (PUB 2, OTHER 1):
    PUB stays (a tie or better keeps it); a second moves (PUB 1, OTHER 2): OTHER scores more but is
    not confirmed, so we are undecided; the third moves: OTHER (3) is decided."""
    vote = ExternalAddressVote()
    for v in ("a", "b", "c"):
        vote.add(PUB, "peer", v)
    assert vote.address() == PUB
    assert vote.add(OTHER, "peer", "a") is False and vote.address() == PUB
    assert vote.add(OTHER, "peer", "b") is True and vote.address() is None
    assert vote.add(OTHER, "peer", "c") is True and vote.address() == OTHER
