"""Wall-clock deadlines for network exchanges: every phase of a request (name resolution, connecting, the
TLS handshake, sending, the status line and headers, the body) ends by the deadline of the exchange.

A socket's own timeout bounds one wait and starts again with every byte that arrives, so a server that
sends one byte a second would hold an exchange for ever. Here a :class:`Deadline` is applied to the
calling thread (:meth:`Deadline.applied`), and the sockets built by this module (:class:`ClockedSocket`,
and :class:`ClockedSSLSocket` through :func:`clocked_ssl_context`) shorten their timeout to the time left
before every call that may wait; name resolution runs on a few daemon threads (``getaddrinfo`` has no
timeout) and the caller waits no longer than the time left (:func:`resolve`). A thread without a deadline
gets plain socket behaviour.

Reads: nothing. Writes: nothing. Failure: a wait that reaches the deadline raises :class:`DeadlineExceeded`
(a ``TimeoutError``) saying ``deadline of 3 s exceeded (TLS handshake)``; callers map it to their own error.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

AWAITING = "awaiting the response"
RESOLVER_THREADS = 16  # a lookup that hangs holds one until the system resolver gives up (about 10-30 s)
_current = threading.local()


class DeadlineExceeded(TimeoutError):
    """A network wait reached the deadline of its exchange."""


class Deadline:
    """The wall-clock limit of one exchange, ``seconds`` from now; :meth:`extend` moves it later (time
    spent queued outside the exchange). ``phase`` names what the exchange is doing, for the message."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.phase = "connecting"

    def left(self) -> float:
        """Seconds left; raises :class:`DeadlineExceeded` when none are."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise self.exceeded()
        return left

    def exceeded(self) -> DeadlineExceeded:
        return DeadlineExceeded(f"deadline of {self.seconds:g} s exceeded ({self.phase})")

    def extend(self, seconds: float) -> None:
        self.at += seconds

    @contextlib.contextmanager
    def applied(self) -> Iterator[Deadline]:
        """The clocked sockets and the resolver of this thread honour this deadline inside the block."""
        previous = getattr(_current, "deadline", None)
        _current.deadline = self
        try:
            yield self
        finally:
            _current.deadline = previous


def current() -> Deadline | None:
    """The deadline applied to the calling thread, if any."""
    return getattr(_current, "deadline", None)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps (``__cause__``, urllib3's ``reason``, exception args, ``__context__``)."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        wrapped = [link.__cause__, getattr(link, "reason", None), *link.args, link.__context__]
        link = next((e for e in wrapped if isinstance(e, BaseException)), None)


def limit(timeout: float | None, phase: str | None = None) -> tuple[float | None, Deadline | None]:
    """The wait to allow for ``timeout``: shortened to the time left before this thread's deadline, and that
    deadline when it is the shorter (a wait ending then means the deadline passed). ``phase``, when given,
    becomes the deadline's phase. Raises :class:`DeadlineExceeded` when no time is left."""
    deadline = current()
    if deadline is None:
        return timeout, None
    if phase is not None:
        deadline.phase = phase
    left = deadline.left()
    return (left, deadline) if timeout is None or left < timeout else (timeout, None)


class _Clocked:
    """Mixin for sockets: each call that may wait first shortens the socket's timeout to the time left
    before the thread's deadline; :meth:`gettimeout` still answers the timeout set by the owner."""

    _base_timeout: float | None = None

    def settimeout(self, value: float | None) -> None:
        self._base_timeout = value
        super().settimeout(value)  # type: ignore[misc]

    def gettimeout(self) -> float | None:
        return self._base_timeout

    def _waiting(self, call: Callable[..., Any], *args: Any, phase: str | None = None) -> Any:
        """``call(*args)`` within the deadline; ``phase``: the exchange's phase during the call, followed
        by ``awaiting the response`` once it succeeds (connecting, the TLS handshake)."""
        if self._base_timeout == 0:  # non-blocking: nothing waits
            return call(*args)
        wait, cutting = limit(self._base_timeout, phase)
        super().settimeout(wait)  # type: ignore[misc]
        try:
            result = call(*args)
        except TimeoutError as exc:
            if cutting is not None:
                raise cutting.exceeded() from exc
            raise
        if phase is not None and (deadline := current()) is not None:
            deadline.phase = AWAITING
        return result


class ClockedSocket(_Clocked, socket.socket):
    """A TCP socket whose waits end by the calling thread's deadline."""

    def connect(self, address: Any) -> None:
        return self._waiting(super().connect, address, phase="connecting")

    def recv(self, *args: Any) -> bytes:
        return self._waiting(super().recv, *args)

    def recv_into(self, *args: Any) -> int:
        return self._waiting(super().recv_into, *args)

    def send(self, *args: Any) -> int:
        return self._waiting(super().send, *args)

    def sendall(self, *args: Any) -> None:
        return self._waiting(super().sendall, *args)


class ClockedSSLSocket(_Clocked, ssl.SSLSocket):
    """A TLS socket whose handshake, reads and writes end by the calling thread's deadline (``recv``,
    ``recv_into`` and ``sendall`` go through ``read`` and ``send``)."""

    def do_handshake(self, block: bool = False) -> None:
        self._waiting(super().do_handshake, block, phase="TLS handshake")

    def read(self, *args: Any) -> Any:
        return self._waiting(super().read, *args)

    def send(self, *args: Any) -> int:
        return self._waiting(super().send, *args)


def clocked_ssl_context(ca_certs: str | None = None) -> ssl.SSLContext:
    """urllib3's default client context (certificates and hostnames verified) with clocked sockets;
    ``ca_certs``: a CA bundle other than certifi's."""
    import certifi
    from urllib3.util.ssl_ import create_urllib3_context

    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    context.load_verify_locations(ca_certs or certifi.where())
    context.sslsocket_class = ClockedSSLSocket
    return context


# ------------------------------------------------------------------ name resolution
class _Resolver:
    """``getaddrinfo`` on a few daemon threads, started on first use, so that a caller can stop waiting;
    an abandoned lookup finishes on its own thread (a daemon: it never holds up the interpreter's exit)."""

    def __init__(self, threads: int):
        self.threads = threads
        self._jobs: queue.SimpleQueue[tuple[Future, tuple[Any, ...]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started_in: int | None = None  # the process whose threads serve (a forked child has none)

    def lookup(self, args: tuple[Any, ...], timeout: float | None) -> list[tuple[Any, ...]]:
        self._start()
        future: Future = Future()
        self._jobs.put((future, args))
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()  # not started yet: never runs
            raise

    def _start(self) -> None:
        with self._lock:
            if self._started_in != os.getpid():
                for i in range(self.threads):
                    threading.Thread(target=self._work, name=f"curate-resolver-{i}", daemon=True).start()
                self._started_in = os.getpid()

    def _work(self) -> None:
        while True:
            future, args = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(socket.getaddrinfo(*args))
            except BaseException as exc:  # noqa: BLE001 (handed to the caller)
                future.set_exception(exc)


_resolver = _Resolver(RESOLVER_THREADS)


def resolve(host: str, port: int, family: int, timeout: float | None) -> list[tuple[Any, ...]]:
    """``socket.getaddrinfo(host, port, family, SOCK_STREAM)``, waiting at most ``timeout`` seconds and no
    later than this thread's deadline (then :class:`DeadlineExceeded`; after ``timeout``, ``TimeoutError``)."""
    wait, cutting = limit(timeout, "name resolution")
    if _is_ip_literal(host):  # nothing to look up: answered at once, no thread needed
        return socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    try:
        return _resolver.lookup((host, port, family, socket.SOCK_STREAM), wait)
    except TimeoutError as exc:
        if cutting is not None:
            raise cutting.exceeded() from exc
        if wait is None:  # the resolver's own error
            raise
        raise TimeoutError(f"resolving {host} took over {wait:g} s") from None


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
