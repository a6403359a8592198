"""The :class:`PortMapper` service: map our TCP and UDP ports on the home router, keep them, unmap.

Every method (UPnP IGD, and NAT-PMP/PCP) runs in its own task, in parallel from :meth:`start`; each
finds its gateway (SSDP; the default route for port 5351), asks for every port, then sleeps on the
injected clock until a :class:`~bitswarm.portmap.lease.MappingLease` is due (renewal at half the
lease, back-off after errors). :meth:`refresh` wakes them all at once: a watcher calls it when the
default gateway or our address towards it changes (checked every ``network_check_interval``).
:meth:`stop` cancels them and deletes every mapping the gateway still holds for us, each delete
bounded by a timeout. :meth:`status` is one :class:`MappingStatus` per method and port.

The gateway side is behind :class:`MappingBackend` (``map``/``unmap``), so the scheduling is tested
with fakes and a manual clock; the real backends are :class:`~bitswarm.portmap.upnp.UpnpIgdClient`
and :class:`~bitswarm.portmap.natpmp_client.NatPmpClient`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bitswarm.portmap import natpmp
from bitswarm.portmap.errors import MappingRefused, NoMappingService, PortMapError
from bitswarm.portmap.lease import MappingLease, Phase, RenewalPolicy
from bitswarm.portmap.natpmp import Protocol as IPProtocol
from bitswarm.portmap.natpmp_client import Granted, NatPmpClient, default_gateway

__all__ = [
    "BackendFactory",
    "Clock",
    "MappingBackend",
    "MappingStatus",
    "PortMapConfig",
    "PortMapper",
    "current_network",
    "default_backends",
]

log = logging.getLogger(__name__)
METHODS = ("upnp", "natpmp")


class MappingBackend(Protocol):
    """One gateway speaking one mapping protocol."""

    @property
    def method(self) -> str:
        """``"upnp"``, ``"pcp"`` or ``"natpmp"`` (a PCP client may fall back to NAT-PMP)."""
        ...

    async def map(
        self, protocol: IPProtocol, internal_port: int, external_port: int, lifetime: int
    ) -> Granted: ...

    async def unmap(self, protocol: IPProtocol, internal_port: int, external_port: int) -> None: ...

    def close(self) -> None: ...


#: finds a gateway for one method; raises NoMappingService when there is none
BackendFactory = Callable[[], Awaitable[MappingBackend]]


@dataclass(frozen=True)
class PortMapConfig:
    methods: Sequence[str] = METHODS  #: which of "upnp", "natpmp" (NAT-PMP and PCP) to use
    policy: RenewalPolicy = field(default_factory=RenewalPolicy)
    discover_timeout: float = 3.0  #: SSDP wait; NAT-PMP/PCP retransmits give up after ~3.75 s
    request_timeout: float = 10.0  #: one map request (UPnP SOAP call, or a NAT-PMP/PCP exchange)
    unmap_timeout: float = 1.5  #: the deletes on stop (they run at once)
    network_check_interval: float = 30.0  #: how often to look for a network change (0: never)
    #: seconds before the first UPnP search (PCP/NAT-PMP go at once): a command done within that
    #: time never loads the UPnP stack (aiohttp) nor waits for its thread when it exits
    upnp_delay: float = 0.0


@dataclass(frozen=True)
class MappingStatus:
    """One method's mapping of one of our ports, as :meth:`PortMapper.status` shows it."""

    method: str  #: "upnp", "pcp" or "natpmp"
    protocol: str  #: "tcp" or "udp"
    internal_port: int
    state: str  #: "pending", "mapped", "failed", "unavailable" or "removed"
    external_ip: str | None
    external_port: int | None
    lifetime: int | None  #: seconds granted by the gateway (0: permanent)
    expires_in: float | None  #: seconds left of the current lease
    renewals: int
    error: str | None

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Clock(Protocol):
    """What the mapper needs of time: the session's clocks (``bitswarm.session.clock.LoopClock``,
    ``ManualClock``) fit."""

    def now(self) -> float: ...

    async def wait(self, event: asyncio.Event, timeout: float) -> bool: ...


class _LoopClock:
    """The real clock (``loop.time``), for when none is injected."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()
        return event.is_set()


async def import_in_daemon_thread(module: str) -> None:
    """Import ``module`` in a daemon thread of its own (not the loop's executor): the loop stays free
    meanwhile, and a process that ends during the import (a one-shot download done, a stop) never
    waits for it, as it would for an executor thread (joined at loop and interpreter shutdown)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(exc: BaseException | None) -> None:
        if not done.done():
            if exc is None:
                done.set_result(None)
            else:
                done.set_exception(exc)

    def run() -> None:
        exc: BaseException | None = None
        try:
            importlib.import_module(module)
        except BaseException as e:  # handed to the awaiting task
            exc = e
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(settle, exc)

    threading.Thread(target=run, name=f"import-{module}", daemon=True).start()
    await done


def default_backends(config: PortMapConfig) -> dict[str, BackendFactory]:
    """The real gateways: an SSDP-discovered UPnP IGD, and NAT-PMP/PCP on the default gateway."""

    async def upnp() -> MappingBackend:
        if config.upnp_delay > 0:
            await asyncio.sleep(config.upnp_delay)
        # no default route: no router to be an IGD, and an SSDP search would only wait. Else the
        # UPnP stack (aiohttp, async-upnp-client: ~0.3 s of imports) is imported in a thread, not on
        # the event loop, which is busy starting the transfers meanwhile.
        if await asyncio.to_thread(default_gateway) is None:
            raise NoMappingService("no IPv4 default gateway: no router to ask over UPnP")
        await import_in_daemon_thread("bitswarm.portmap.upnp")
        from bitswarm.portmap.upnp import UpnpIgdClient  # imported above: only a lookup now

        return await UpnpIgdClient.discover(config.discover_timeout)

    async def natpmp() -> MappingBackend:
        gateway = await asyncio.to_thread(default_gateway)
        if gateway is None:
            raise NoMappingService("no IPv4 default gateway to ask with NAT-PMP/PCP")
        return NatPmpClient(gateway)

    factories: dict[str, BackendFactory] = {"upnp": upnp, "natpmp": natpmp}
    unknown = set(config.methods) - set(factories)
    if unknown:
        raise ValueError(f"unknown port-mapping method(s): {', '.join(sorted(unknown))}")
    return {name: factories[name] for name in config.methods}


def _local_address(gateway: str) -> str | None:
    """The local address a packet to ``gateway`` would leave from (a UDP connect sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((gateway, natpmp.NATPMP_PORT))
            return str(s.getsockname()[0])
    except OSError:
        return None


def _network_now() -> tuple[str | None, str | None]:
    gateway = default_gateway()
    return gateway, _local_address(gateway) if gateway else None


async def current_network() -> tuple[str | None, str | None]:
    """(IPv4 default gateway, our address towards it): what :class:`PortMapper` watches."""
    return await asyncio.to_thread(_network_now)


class PortMapper:
    """Maps ``ports`` (protocol -> local port) on the home router with every configured method."""

    def __init__(
        self,
        ports: Mapping[IPProtocol, int],
        *,
        config: PortMapConfig | None = None,
        clock: Clock | None = None,
        backends: Mapping[str, BackendFactory] | None = None,
        on_external_address: Callable[[str, str], object] | None = None,
        network_probe: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.config = config or PortMapConfig()
        self.ports = dict(ports)
        self._clock: Clock = clock if clock is not None else _LoopClock()
        self._factories = dict(backends) if backends is not None else default_backends(self.config)
        self._on_external = on_external_address
        #: what identifies "the network we are on"; a different answer means: map again
        self._network_probe = network_probe if network_probe is not None else current_network
        self._leases: dict[str, list[MappingLease]] = {
            name: [MappingLease(name, proto, port) for proto, port in self.ports.items()]
            for name in self._factories
        }
        self._backends: dict[str, MappingBackend] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        #: deletes of unanswered map requests, sent on stop and not waited for
        self._forgetting: set[asyncio.Task[None]] = set()
        self._in_flight: set[tuple[str, str]] = set()
        self._rediscover: set[str] = set()
        self._first_round: dict[str, asyncio.Event] = {}
        self.external_ip: str | None = None
        self.changed = asyncio.Event()  #: set on every status change (a watcher clears it)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start every method in parallel; returns at once (see :meth:`wait_settled`)."""
        if self._tasks:
            return
        for name in self._factories:
            self._wake[name] = asyncio.Event()
            self._first_round[name] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._run(name), name=f"portmap-{name}"))
        if self.config.network_check_interval > 0:
            self._tasks.append(asyncio.create_task(self._watch_network(), name="portmap-network"))

    async def _watch_network(self) -> None:
        """Call :meth:`refresh` when the network changes (another gateway or local address)."""
        never = asyncio.Event()
        last = await self._network_probe()
        while True:
            await self._clock.wait(never, self.config.network_check_interval)
            now = await self._network_probe()
            if now != last:
                log.info("network changed (%s -> %s): mapping again", last, now)
                last = now
                self.refresh()

    async def wait_settled(self, timeout: float) -> bool:
        """Wait (real time) until every method has tried once; True if they all did in time."""
        events = list(self._first_round.values())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                for event in events:
                    await event.wait()
        return all(e.is_set() for e in events)

    def refresh(self) -> None:
        """Ask again now with every method (after a network change): rediscover, remap."""
        now = self._clock.now()
        for name, leases in self._leases.items():
            self._rediscover.add(name)  # the task drops the old gateway before its next request
            for lease in leases:
                if lease.phase is not Phase.REMOVED:
                    lease.next_at = now
            if name in self._wake:
                self._wake[name].set()

    async def stop(self) -> None:
        """Stop renewing and delete every mapping we hold, all at once: within ``unmap_timeout``
        seconds whatever the gateways do (a CLI has ~2 s between SIGTERM and exit). Idempotent.

        A map request the gateway has not answered may still have been granted: its delete is sent
        too, but not waited for (it finishes in the background while the loop runs, and the
        backend is closed after it). A gateway that ignores NAT-PMP/PCP, or an IGD still thinking,
        so never holds a one-shot download's exit (issue 24)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        held: list[tuple[MappingBackend, MappingLease]] = []
        unanswered: dict[str, list[MappingLease]] = {}
        for name, leases in self._leases.items():
            backend = self._backends.get(name)
            for lease in leases:
                if backend is None:
                    continue
                if lease.active:
                    held.append((backend, lease))
                elif (name, lease.protocol) in self._in_flight:
                    unanswered.setdefault(name, []).append(lease)
        loop = asyncio.get_running_loop()
        for name, leases in unanswered.items():
            backend = self._backends[name]
            deletes = [loop.create_task(self._unmap(backend, lease, last=True)) for lease in leases]
            task = loop.create_task(self._close_after(backend, deletes), name=f"portmap-{name}-forget")
            self._forgetting.add(task)
            task.add_done_callback(self._forgetting.discard)
        if unanswered:
            await asyncio.sleep(0)  # each delete runs to its first wait: it has been sent
        outcomes = await asyncio.gather(*(self._unmap(b, lease, last=False) for b, lease in held))
        # a refusal may be the other method's mapping of the same port in the way (miniupnpd deletes
        # a PCP mapping only when the first rule of that internal port is it): once more, after it
        refused = [
            pair for pair, outcome in zip(held, outcomes, strict=True) if isinstance(outcome, MappingRefused)
        ]
        await asyncio.gather(*(self._unmap(b, lease, last=True) for b, lease in refused))
        for leases in self._leases.values():
            for lease in leases:
                if lease.phase is not Phase.REMOVED:
                    lease.removed()
        self._in_flight.clear()
        for name, backend in self._backends.items():
            if name not in unanswered:  # those close once their deletes are done
                backend.close()
        self._backends.clear()
        self.changed.set()

    @staticmethod
    async def _close_after(backend: MappingBackend, deletes: list[asyncio.Task[Exception | None]]) -> None:
        """Close ``backend`` once the deletes of its unanswered requests are done (or cancelled)."""
        try:
            await asyncio.gather(*deletes)
        finally:
            for d in deletes:
                d.cancel()
            backend.close()

    async def _unmap(self, backend: MappingBackend, lease: MappingLease, *, last: bool) -> Exception | None:
        """Delete one mapping; the failure (logged unless a retry follows: ``last`` False and the
        gateway refused), None when it is gone."""
        port = lease.external_port or lease.internal_port
        proto: IPProtocol = "tcp" if lease.protocol == "tcp" else "udp"
        try:
            async with asyncio.timeout(self.config.unmap_timeout):
                await backend.unmap(proto, lease.internal_port, port)
        except (PortMapError, TimeoutError) as exc:
            if last or not isinstance(exc, MappingRefused):
                log.warning("%s: could not remove the %s mapping of port %d: %s", backend.method,
                            proto, port, exc)  # fmt: skip
            return exc
        return None

    # -- the per-method task --------------------------------------------------------------------
    async def _run(self, name: str) -> None:
        leases = self._leases[name]
        while True:
            now = self._clock.now()
            due = [lease for lease in leases if lease.due(now)]
            if name in self._rediscover:
                self._rediscover.discard(name)
                old = self._backends.pop(name, None)
                if old is not None:
                    old.close()
            if due:
                backend = await self._backend(name, due)
                if backend is not None:
                    for lease in due:
                        await self._attempt(name, backend, lease)
                self._first_round[name].set()
                self.changed.set()
            wake = self._wake[name]
            wake.clear()
            delay = min(lease.next_at for lease in leases) - self._clock.now()
            if delay > 0:
                await self._clock.wait(wake, delay)

    async def _backend(self, name: str, due: list[MappingLease]) -> MappingBackend | None:
        backend = self._backends.get(name)
        if backend is not None:
            return backend
        try:
            async with asyncio.timeout(self.config.discover_timeout + self.config.request_timeout):
                backend = await self._factories[name]()
        except (PortMapError, TimeoutError) as exc:
            error = str(exc) or f"{name}: no answer"
            for lease in due:
                lease.failed(self._clock.now(), self.config.policy, error, no_service=True)
            return None
        self._backends[name] = backend
        return backend

    async def _attempt(self, name: str, backend: MappingBackend, lease: MappingLease) -> None:
        policy = self.config.policy
        proto: IPProtocol = "tcp" if lease.protocol == "tcp" else "udp"
        key = (name, lease.protocol)
        self._in_flight.add(key)  # until the gateway answers, it may hold a mapping: stop deletes it
        try:
            async with asyncio.timeout(self.config.request_timeout):
                granted = await backend.map(
                    proto, lease.internal_port, lease.external_port or lease.internal_port, policy.lifetime
                )
        except NoMappingService as exc:
            self._in_flight.discard(key)
            self._backends.pop(name, None)
            backend.close()
            lease.failed(self._clock.now(), policy, str(exc), no_service=True)
        except MappingRefused as exc:
            self._in_flight.discard(key)
            lease.failed(self._clock.now(), policy, str(exc), retry_after=exc.retry_after)
        except (PortMapError, TimeoutError) as exc:  # an answer may be lost: stays in flight
            lease.failed(self._clock.now(), policy, str(exc) or "request timed out")
        else:
            self._in_flight.discard(key)
            lease.method = backend.method
            lease.granted(self._clock.now(), policy, granted.external_ip, granted.external_port,
                          granted.lifetime)  # fmt: skip
            self._note_external(granted.external_ip, backend.method)

    def _note_external(self, address: str | None, method: str) -> None:
        if address and address != self.external_ip:
            self.external_ip = address
            if self._on_external is not None:
                self._on_external(address, method)

    # -- status ---------------------------------------------------------------------------------
    def status(self) -> list[MappingStatus]:
        now = self._clock.now()
        out = []
        for leases in self._leases.values():
            for lease in leases:
                expires = None
                if lease.granted_at is not None and lease.lifetime and lease.active:
                    expires = max(0.0, lease.granted_at + lease.lifetime - now)
                out.append(
                    MappingStatus(
                        method=lease.method,
                        protocol=lease.protocol,
                        internal_port=lease.internal_port,
                        state=lease.phase.value,
                        external_ip=lease.external_ip,
                        external_port=lease.external_port if lease.active else None,
                        lifetime=lease.lifetime,
                        expires_in=expires,
                        renewals=lease.renewals,
                        error=lease.error,
                    )
                )
        return out

    def summary(self) -> str:
        """One line for a status display: where we are reachable, or why not."""
        mapped = [s for s in self.status() if s.state == "mapped"]
        if mapped:
            parts = sorted(
                {f"{s.protocol} {s.external_ip or '?'}:{s.external_port} ({s.method})" for s in mapped}
            )
            return "mapped " + ", ".join(parts)
        states = {s.state for s in self.status()}
        if states == {"unavailable"}:
            errors = "; ".join(sorted({s.error or "" for s in self.status()}))
            return f"no mapping service ({errors})"
        if "pending" in states:
            return "port mapping: trying"
        if states == {"removed"}:
            return "port mapping: stopped"
        return "port mapping failed: " + "; ".join(sorted({s.error or "" for s in self.status() if s.error}))
