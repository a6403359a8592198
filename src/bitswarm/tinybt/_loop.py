"""Plumbing of the tinybt facade: a private event loop thread, tinybt's async result holder, the
errors it raises and the dict type its replies come in.

tinybt's calls block the caller's thread; bitswarm's DHT is asyncio. Each :class:`KRPCPeer` /
:class:`DHT` owns one :class:`LoopThread` (a daemon thread running its own loop) and hands work to it
thread-safely; the loop answers through :class:`AsyncResult`, which any thread can wait on.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from bitswarm.dht.krpc import Addr
from bitswarm.errors import BitswarmError

__all__ = [
    "AsyncResult",
    "AsyncTimeout",
    "KRPCDict",
    "KRPCRemoteError",
    "LoopThread",
    "resolve",
    "to_krpc_args",
    "wrap",
]

T = TypeVar("T")


class AsyncTimeout(BitswarmError, TimeoutError):
    """No reply arrived in time (:meth:`AsyncResult.get_result`)."""


class KRPCRemoteError(BitswarmError):
    """The remote node answered with a KRPC error (``y=e``): ``code`` (BEP 5: 201-204) and ``message``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"KRPC error {code}: {message}")
        self.code = code
        self.message = message


def _key(key: object) -> object:
    return key.encode("ascii", "replace") if isinstance(key, str) else key


class KRPCDict(dict[bytes, Any]):
    """A received bencoded dict. Keys are bytes; ``str`` keys work as well, so tinybt code written for
    Python 2 strings (``reply['id']``, ``rec['a']['info_hash']``) runs unchanged."""

    def __getitem__(self, key: bytes | str) -> Any:
        return super().__getitem__(_key(key))  # type: ignore[index]

    def __contains__(self, key: object) -> bool:
        return super().__contains__(_key(key))

    def get(self, key: bytes | str, default: Any = None) -> Any:
        return super().get(_key(key), default)  # type: ignore[call-overload]


def wrap(value: Any) -> Any:
    """Turn every dict inside a decoded bencode value into a :class:`KRPCDict`."""
    if isinstance(value, dict):
        return KRPCDict({k: wrap(v) for k, v in value.items()})
    if isinstance(value, list):
        return [wrap(v) for v in value]
    return value


def _bvalue(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, dict):
        return {_key(k): _bvalue(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_bvalue(v) for v in value]
    return value


def to_krpc_args(kwargs: dict[str, Any]) -> dict[bytes, Any]:
    """tinybt keyword arguments as a KRPC dict: names and ``str`` values become bytes, bools ints."""
    out: dict[bytes, Any] = _bvalue(kwargs)
    return out


class AsyncResult(Generic[T]):
    """tinybt's async result holder: the reply of one query, set once by the event loop thread.

    ``get_result(timeout)`` (alias ``get``) waits for it: the value, or raises :class:`AsyncTimeout`
    when none came within ``timeout`` seconds, or the error the query ended with
    (:class:`KRPCRemoteError` for a KRPC error reply). ``get_source()`` is the replying (host, port)."""

    def __init__(self, source: Addr | None = None) -> None:
        self._event = threading.Event()
        self._value: T | None = None
        self._error: BaseException | None = None
        self._source = source

    def set_result(self, value: T, source: Addr | None = None) -> None:
        self._value = value
        if source is not None:
            self._source = source
        self._event.set()

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._event.set()

    def has_result(self) -> bool:
        return self._event.is_set()

    def get_source(self) -> Addr | None:
        return self._source

    def get_result(self, timeout: float | None = None) -> T:
        if not self._event.wait(timeout):
            raise AsyncTimeout(f"no reply from {self._source} within {timeout} s")
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    get = get_result


async def resolve(connection: tuple[str, int]) -> Addr:
    """``(host, port)`` with ``host`` an IP literal (resolved in the loop's resolver thread if a name)."""
    host, port = connection[0], int(connection[1])
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port out of range: {port}")
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"cannot resolve {host!r}")
    return str(infos[0][4][0]), port


class LoopThread:
    """An asyncio loop running in its own daemon thread (a process whose user forgets ``shutdown()``
    still exits). :meth:`run` and :meth:`call` block the calling thread until the loop has done the
    work; calling them from the loop's own thread (e.g. inside a handler) raises RuntimeError
    instead of deadlocking."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            if tasks:
                self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _check(self) -> None:
        if self.in_loop_thread():
            raise RuntimeError("blocking tinybt call from its own event loop thread (a handler)")
        if not self._thread.is_alive():
            raise RuntimeError("this tinybt object has been shut down")

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        try:
            self._check()
        except RuntimeError:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run_or_stop(self, coro: Coroutine[Any, Any, T]) -> T:
        """:meth:`run` a start-up coroutine; if it fails, stop the loop thread and re-raise."""
        try:
            return self.run(coro)
        except BaseException:
            self.stop()
            raise

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Start ``coro`` on the loop from any thread without waiting (it reports through its own means,
        e.g. an :class:`AsyncResult`). RuntimeError once shut down."""
        if not self._thread.is_alive() or self.loop.is_closed():
            coro.close()
            raise RuntimeError("this tinybt object has been shut down")
        asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Call ``fn(*args)`` on the loop thread and wait for its result."""

        async def once() -> T:
            return fn(*args)

        return self.run(once())

    def soon(self, fn: Callable[..., object], *args: Any) -> None:
        """Schedule ``fn(*args)`` on the loop thread (from any thread; never blocks)."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(fn, *args)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop (pending tasks are cancelled) and wait for the thread to end."""
        if self._thread.is_alive() and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.in_loop_thread():
            self._thread.join(timeout)
