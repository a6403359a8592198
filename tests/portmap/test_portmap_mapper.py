"""The renewal schedule (bitswarm.portmap.lease) and the PortMapper service over fake gateways and a
manual clock: no sockets, no sleeping."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitswarm.errors import LocalProtocolError
from bitswarm.portmap import MappingRefused, NoMappingService, PortMapConfig, PortMapper, RenewalPolicy
from bitswarm.portmap.lease import TRANSITIONS, MappingLease, Outcome, Phase
from bitswarm.portmap.mapper import MappingBackend
from bitswarm.portmap.natpmp import Protocol
from bitswarm.portmap.natpmp_client import Granted
from bitswarm.session.clock import ManualClock
from testtools import until

POLICY = RenewalPolicy(lifetime=3600, max_renew_interval=1800, retry_initial=10, retry_max=80,
                       unavailable_retry=300)  # fmt: skip


def config(*methods: str) -> PortMapConfig:
    """The test policy; no network watcher (a test of its own drives it with a fake probe)."""
    return PortMapConfig(methods=methods or ("upnp", "natpmp"), policy=POLICY, network_check_interval=0)


# -- lease ---------------------------------------------------------------------------------------
def test_every_phase_outcome_pair_is_in_the_table_except_after_removal() -> None:
    for phase in Phase:
        for outcome in Outcome:
            if phase is Phase.REMOVED and outcome is not Outcome.REMOVED:
                assert (phase, outcome) not in TRANSITIONS
            else:
                assert (phase, outcome) in TRANSITIONS
    lease = MappingLease("upnp", "tcp", 6881)
    lease.removed()
    with pytest.raises(LocalProtocolError):
        lease.granted(0, POLICY, None, 6881, 60)


def test_renewal_at_half_the_lease_capped() -> None:
    lease = MappingLease("pcp", "udp", 6881)
    lease.granted(100.0, POLICY, "203.0.114.1", 6881, 120)
    assert lease.phase is Phase.MAPPED and lease.next_at == 160.0
    lease.granted(160.0, POLICY, None, 6881, 7200)  # long lease: capped at max_renew_interval
    assert lease.next_at == 160.0 + 1800 and lease.renewals == 1 and lease.external_ip == "203.0.114.1"
    lease.granted(2000.0, POLICY, None, 6881, 0)  # permanent
    assert lease.next_at == 2000.0 + POLICY.permanent_renew_interval


def test_backoff_doubles_up_to_the_cap_and_respects_retry_after() -> None:
    lease = MappingLease("upnp", "tcp", 6881)
    delays = []
    for _ in range(5):
        lease.failed(0.0, POLICY, "refused")
        delays.append(lease.next_at)
    assert delays == [10, 20, 40, 80, 80]
    lease.failed(0.0, POLICY, "refused", retry_after=60)
    assert lease.next_at == 80  # the cap wins over a longer retry_after... and a shorter back-off
    fresh = MappingLease("pcp", "tcp", 1)
    fresh.failed(0.0, POLICY, "refused", retry_after=50)
    assert fresh.next_at == 50
    fresh.failed(0.0, POLICY, "nothing", no_service=True)
    assert fresh.phase is Phase.UNAVAILABLE and fresh.next_at == 300


def test_a_failed_renewal_retries_before_the_lease_runs_out() -> None:
    lease = MappingLease("upnp", "tcp", 6881)
    lease.granted(0.0, POLICY, "x", 6881, 100)
    lease.failed(50.0, POLICY, "timeout", no_service=True)  # 50 s of lease left
    assert lease.active and lease.next_at == 75.0
    lease.failed(120.0, POLICY, "timeout")  # lease over: the mapping is gone
    assert not lease.active and lease.next_at == 120.0 + 20


# -- PortMapper ----------------------------------------------------------------------------------
class FakeGateway:
    """A MappingBackend recording calls; ``fail`` makes the next map calls raise."""

    def __init__(self, method: str = "upnp", lifetime: int | None = None, ext: str = "203.0.114.1") -> None:
        self.method = method
        self.lifetime = lifetime
        self.ext = ext
        self.maps: list[tuple[str, int, int, int]] = []
        self.unmaps: list[tuple[str, int, int]] = []
        self.fail: list[Exception] = []
        self.closed = False
        self.hang = False
        self.hang_unmap = False

    async def map(self, protocol: Protocol, internal_port: int, external_port: int, lifetime: int) -> Granted:
        self.maps.append((protocol, internal_port, external_port, lifetime))
        if self.hang:
            await asyncio.Event().wait()
        if self.fail:
            raise self.fail.pop(0)
        return Granted(self.ext, external_port, self.lifetime if self.lifetime is not None else lifetime)

    async def unmap(self, protocol: Protocol, internal_port: int, external_port: int) -> None:
        self.unmaps.append((protocol, internal_port, external_port))
        if self.hang_unmap:
            await asyncio.Event().wait()

    def close(self) -> None:
        self.closed = True


def factory(gw: FakeGateway):  # type: ignore[no-untyped-def]
    async def make() -> MappingBackend:
        return gw

    return make


async def absent() -> MappingBackend:
    raise NoMappingService("no UPnP IGD answered SSDP within 3 s")


def states(mapper: PortMapper) -> dict[tuple[str, str], str]:
    return {(s.method, s.protocol): s.state for s in mapper.status()}


async def test_maps_both_ports_with_every_method_renews_and_unmaps_on_stop() -> None:
    clock = ManualClock(0.0)
    upnp, pcp = FakeGateway("upnp", lifetime=120), FakeGateway("pcp", lifetime=600)
    seen: list[tuple[str, str]] = []
    mapper = PortMapper(
        {"tcp": 6881, "udp": 6882},
        config=config(),
        clock=clock,
        backends={"upnp": factory(upnp), "natpmp": factory(pcp)},
        on_external_address=lambda addr, method: seen.append((addr, method)),
    )
    await mapper.start()
    assert await mapper.wait_settled(5)
    assert states(mapper) == {("upnp", "tcp"): "mapped", ("upnp", "udp"): "mapped",
                              ("pcp", "tcp"): "mapped", ("pcp", "udp"): "mapped"}  # fmt: skip
    assert upnp.maps == [("tcp", 6881, 6881, 3600), ("udp", 6882, 6882, 3600)]
    assert seen == [("203.0.114.1", "upnp")] or seen == [("203.0.114.1", "pcp")]
    status = {(s.method, s.protocol): s for s in mapper.status()}
    assert status["upnp", "tcp"].external_port == 6881 and status["upnp", "tcp"].expires_in == 120
    assert mapper.summary().startswith("mapped ")
    await clock.advance(59)
    assert len(upnp.maps) == 2
    await clock.advance(1)  # half of the 120 s lease
    assert len(upnp.maps) == 4 and len(pcp.maps) == 2
    await clock.advance(240)  # 300 s: pcp renews at half of 600
    assert len(pcp.maps) == 4 and len(upnp.maps) == 12  # at 0, 60, 120, 180, 240, 300
    assert {s.renewals for s in mapper.status() if s.method == "upnp"} == {5}
    await mapper.stop()
    assert sorted(upnp.unmaps) == [("tcp", 6881, 6881), ("udp", 6882, 6882)]
    assert sorted(pcp.unmaps) == [("tcp", 6881, 6881), ("udp", 6882, 6882)]
    assert upnp.closed and pcp.closed
    assert set(states(mapper).values()) == {"removed"}
    await clock.advance(10_000)
    assert len(upnp.maps) == 12  # nothing runs after stop


async def test_no_mapping_service_is_reported_and_reprobed() -> None:
    clock = ManualClock(0.0)
    probes = 0

    async def counting_absent() -> MappingBackend:
        nonlocal probes
        probes += 1
        return await absent()

    mapper = PortMapper({"tcp": 6881, "udp": 6881}, config=config(), clock=clock,
                        backends={"upnp": counting_absent, "natpmp": absent})  # fmt: skip
    await mapper.start()
    assert await mapper.wait_settled(5)
    assert set(states(mapper).values()) == {"unavailable"}
    assert mapper.summary() == "no mapping service (no UPnP IGD answered SSDP within 3 s)"
    assert probes == 1
    await clock.advance(300)
    assert probes == 2
    await mapper.stop()


async def test_refusal_backs_off_then_maps_and_stop_unmaps_only_what_is_held() -> None:
    clock = ManualClock(0.0)
    gw = FakeGateway("upnp")
    gw.fail = [MappingRefused("UPnP AddPortMapping refused: 718 ConflictInMappingEntry", code=718)]
    mapper = PortMapper({"tcp": 6881, "udp": 6881}, config=config("upnp"),
                        clock=clock, backends={"upnp": factory(gw)})  # fmt: skip
    await mapper.start()
    assert await mapper.wait_settled(5)
    assert states(mapper) == {("upnp", "tcp"): "failed", ("upnp", "udp"): "mapped"}
    failed = next(s for s in mapper.status() if s.state == "failed")
    assert failed.error is not None and "718" in failed.error and failed.external_port is None
    await clock.advance(10)
    assert states(mapper) == {("upnp", "tcp"): "mapped", ("upnp", "udp"): "mapped"}
    await mapper.stop()
    assert len(gw.unmaps) == 2


async def test_gateway_lost_then_refresh_rediscovers() -> None:
    clock = ManualClock(0.0)
    gw = FakeGateway("pcp", lifetime=120)
    mapper = PortMapper({"udp": 6881}, config=config("natpmp"), clock=clock,
                        backends={"natpmp": factory(gw)})  # fmt: skip
    await mapper.start()
    assert await mapper.wait_settled(5)
    gw.fail = [NoMappingService("no NAT-PMP/PCP answer")]
    await clock.advance(60)
    assert states(mapper) == {("pcp", "udp"): "unavailable"} and gw.closed
    status = mapper.status()[0]
    assert status.external_port == 6881 and status.expires_in == 60  # still inside the lease
    mapper.refresh()
    await clock.advance(0)
    assert states(mapper) == {("pcp", "udp"): "mapped"}
    await mapper.stop()


async def test_stop_during_a_hanging_request_unmaps_it_bounded() -> None:
    """A map request still in flight at stop may have been granted: it is deleted too."""
    gw = FakeGateway("upnp")
    gw.hang = True
    mapper = PortMapper({"tcp": 6881}, config=config("upnp"),
                        clock=ManualClock(0.0), backends={"upnp": factory(gw)})  # fmt: skip
    await mapper.start()
    await until(lambda: gw.maps, interval=0, what="the map request sent")
    assert gw.maps and mapper.status()[0].state == "pending"
    async with asyncio.timeout(5):
        await mapper.stop()
    assert gw.unmaps == [("tcp", 6881, 6881)]


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["granted", "refused", "no_service"]),
            st.floats(0, 5000),
            st.integers(0, 100_000),
            st.none() | st.floats(0, 10_000),
        ),
        max_size=30,
    )
)
def test_schedule_always_moves_forward(steps: list[tuple[str, float, int, float | None]]) -> None:
    """Whatever the gateways answer, the next attempt is strictly later (no busy loop) and within
    the longest interval of the policy; the mapping counts as held only inside a granted lease."""
    lease = MappingLease("upnp", "tcp", 6881)
    now = 0.0
    longest = max(POLICY.max_renew_interval, POLICY.retry_max, POLICY.unavailable_retry,
                  POLICY.permanent_renew_interval)  # fmt: skip
    for kind, dt, lifetime, retry_after in steps:
        now += dt
        if kind == "granted":
            lease.granted(now, POLICY, None, 6881, lifetime)
        else:
            lease.failed(now, POLICY, kind, no_service=kind == "no_service", retry_after=retry_after)
        assert now < lease.next_at <= now + longest
        if lease.active and lease.lifetime:
            assert lease.granted_at is not None and now < lease.granted_at + lease.lifetime
    lease.removed()
    assert not lease.due(now + 1e9) and not lease.active


def test_policy_rejects_intervals_that_would_spin() -> None:
    with pytest.raises(ValueError):
        RenewalPolicy(retry_initial=0)
    with pytest.raises(ValueError):
        RenewalPolicy(lifetime=0)


async def test_refresh_closes_the_old_gateway_and_asks_a_new_one() -> None:
    clock = ManualClock(0.0)
    first, second = FakeGateway("upnp", ext="203.0.114.1"), FakeGateway("upnp", ext="203.0.114.9")
    gateways = [first, second]

    async def next_gateway() -> MappingBackend:
        return gateways.pop(0)

    seen: list[str] = []
    mapper = PortMapper(
        {"tcp": 6881},
        config=config("upnp"),
        clock=clock,
        backends={"upnp": next_gateway},
        on_external_address=lambda a, m: seen.append(a),
    )
    await mapper.start()
    assert await mapper.wait_settled(5)
    mapper.refresh()
    await clock.advance(0)
    assert first.closed and len(second.maps) == 1
    assert seen == ["203.0.114.1", "203.0.114.9"] and mapper.external_ip == "203.0.114.9"
    await mapper.stop()
    assert second.unmaps == [("tcp", 6881, 6881)]


async def test_a_network_change_maps_again_at_once() -> None:
    clock = ManualClock(0.0)
    gw = FakeGateway("pcp", lifetime=3600)
    network = ["192.168.1.1/192.168.1.10"]

    async def probe() -> object:
        return network[0]

    mapper = PortMapper(
        {"tcp": 6881},
        config=PortMapConfig(methods=("natpmp",), policy=POLICY, network_check_interval=30),
        clock=clock,
        backends={"natpmp": factory(gw)},
        network_probe=probe,
    )
    await mapper.start()
    assert await mapper.wait_settled(5)
    await clock.advance(60)
    assert len(gw.maps) == 1  # same network: nothing until the renewal (at 1800 s)
    network[0] = "10.0.0.1/10.0.0.7"
    await clock.advance(30)
    assert len(gw.maps) == 2 and gw.closed  # remapped through a new gateway object
    await mapper.stop()


async def test_stop_is_bounded_when_gateways_do_not_answer_the_deletes() -> None:
    """Every delete runs at once under ``unmap_timeout``: four hanging deletes cost one timeout."""
    upnp, pcp = FakeGateway("upnp"), FakeGateway("pcp")
    cfg = PortMapConfig(policy=POLICY, network_check_interval=0, unmap_timeout=0.3)
    mapper = PortMapper({"tcp": 6881, "udp": 6881}, config=cfg, clock=ManualClock(0.0),
                        backends={"upnp": factory(upnp), "natpmp": factory(pcp)})  # fmt: skip
    await mapper.start()
    assert await mapper.wait_settled(5)
    upnp.hang_unmap = pcp.hang_unmap = True
    loop = asyncio.get_running_loop()
    started = loop.time()
    await mapper.stop()
    assert loop.time() - started < 0.9
    assert len(upnp.unmaps) == len(pcp.unmaps) == 2
    assert {s.state for s in mapper.status()} == {"removed"}


async def test_a_delete_refused_while_the_other_methods_mapping_exists_is_retried_after_it() -> None:
    """miniupnpd refuses to delete a PCP mapping of a port while the first rule of that internal port
    is the UPnP one (NOT_AUTHORIZED): stop asks again once the other deletes are done."""
    clock = ManualClock(0.0)
    upnp, pcp = FakeGateway("upnp"), FakeGateway("pcp")

    async def slow_upnp_unmap(protocol: Protocol, internal_port: int, external_port: int) -> None:
        await asyncio.sleep(0.05)  # a slow gateway on purpose: what is tested
        upnp.unmaps.append((protocol, internal_port, external_port))

    async def pcp_unmap(protocol: Protocol, internal_port: int, external_port: int) -> None:
        pcp.unmaps.append((protocol, internal_port, external_port))
        if (protocol, internal_port, external_port) not in upnp.unmaps:
            raise MappingRefused("PCP MAP refused: NOT_AUTHORIZED", code=2)

    upnp.unmap = slow_upnp_unmap  # type: ignore[method-assign]
    pcp.unmap = pcp_unmap  # type: ignore[method-assign]
    mapper = PortMapper({"tcp": 6881, "udp": 6881}, config=config(), clock=clock,
                        backends={"upnp": factory(upnp), "natpmp": factory(pcp)})  # fmt: skip
    await mapper.start()
    assert await mapper.wait_settled(5)
    await mapper.stop()
    assert sorted(pcp.unmaps) == [("tcp", 6881, 6881)] * 2 + [("udp", 6881, 6881)] * 2  # refused, then done
    assert sorted(upnp.unmaps) == [("tcp", 6881, 6881), ("udp", 6881, 6881)]
    assert set(states(mapper).values()) == {"removed"}
