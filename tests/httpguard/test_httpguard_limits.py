"""The shared HTTP limits' bookkeeping (no sockets): the per-address key (an IPv6 /64), the
connection counter's caps (Hypothesis) and raising the soft open-files limit."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitswarm.httpguard import ConnectionCounter, HttpLimits, client_key, raise_nofile_limit


def test_client_key() -> None:
    assert client_key("10.1.2.3") == "10.1.2.3"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:10.1.2.3") == "10.1.2.3"
    assert client_key("") == ""


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.booleans(), st.sampled_from(["10.0.0.1", "10.0.0.2", "2001:db8::1", "2001:db8::2"]))
    ),
    per_ip=st.integers(0, 4),
    total=st.integers(1, 6),
)
def test_connection_counter_never_exceeds_its_caps(
    ops: list[tuple[bool, str]], per_ip: int, total: int
) -> None:
    counter = ConnectionCounter(HttpLimits(max_per_ip=per_ip, max_connections=total))
    held: list[str] = []
    for opening, host in ops:
        if opening:
            key = counter.admit(host)
            if key is not None:
                held.append(key)
        elif held:
            counter.release(held.pop(0))
        assert counter.total == len(held) == sum(counter.per_ip.values()) <= total
        assert per_ip == 0 or all(0 < n <= per_ip for n in counter.per_ip.values())
    for key in held:
        counter.release(key)
    assert counter.total == 0 and counter.per_ip == {}


def test_the_defaults_are_the_daemon_api_s() -> None:
    lim = HttpLimits()
    assert (lim.header_timeout, lim.body_timeout, lim.idle_timeout) == (10.0, 60.0, 30.0)
    assert (lim.max_per_ip, lim.max_connections, lim.max_head_bytes) == (64, 1024, 16 * 1024)


@pytest.mark.skipif(sys.platform == "win32", reason="no RLIMIT_NOFILE")
def test_raise_nofile_limit_lifts_the_soft_limit_to_the_hard_one() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if target <= 64:
        pytest.skip("the hard open-files limit is already tiny")
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        assert raise_nofile_limit() == target
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (target, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))  # as it was
