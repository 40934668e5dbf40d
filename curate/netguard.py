"""The connection layer under the fetcher and the web-API sources: urllib3 connections that resolve the
host themselves, check every resolved address against a policy before dialling (the address guard), dial
a checked IP, and wait no longer than the calling thread's deadline in any phase (:mod:`curate.netclock`).

Address guard: every connection, redirect hops included, resolves its host once and is refused when any
resolved address is loopback, private, link-local (cloud metadata), multicast, unspecified, reserved,
6to4, site-local or otherwise non-global (:func:`address_problem`), unless the policy allows it; it then
dials the checked IP, so DNS rebinding cannot slip between check and connect; TLS still verifies the
hostname. Name resolution and dialling together take at most the connect timeout, and never run past the
deadline; the TLS handshake, the request and the response are read through clocked sockets.

Reads: DNS. Writes: nothing. Failure: a refused address raises :class:`Refused` (``refused: 10.0.0.1 is a
private address``); resolution and connection failures raise urllib3's errors as urllib3's own connections
do, with :class:`~curate.netclock.DeadlineExceeded` as the cause when the deadline cut a wait short.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family

from curate.netclock import ClockedSocket, resolve

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressPolicy = Callable[[IPAddress], bool]


class Refused(Exception):
    """The address guard refused to dial a resolved address; the message says which and why."""


def address_problem(ip: IPAddress) -> str | None:
    """Why ``ip`` is not dialled by default (``"a private address"``), or None for a global unicast address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv6Address) and (ip.sixtofour is not None or ip.is_site_local):
        # 6to4 (2002::/16, deprecated by RFC 7526) tunnels to the IPv4 address it embeds, a private one included;
        # site-local (fec0::/10, deprecated by RFC 3879) is still routed inside some networks. Python calls both
        # global.
        return "a 6to4 tunnel address" if ip.sixtofour is not None else "a site-local address"
    kinds = (("a loopback", ip.is_loopback), ("a link-local", ip.is_link_local),
             ("an unspecified", ip.is_unspecified), ("a multicast", ip.is_multicast),
             ("a reserved", ip.is_reserved), ("a private", ip.is_private), ("a non-global", not ip.is_global))
    return next((f"{kind} address" for kind, hit in kinds if hit), None)


class _GuardedConnection:
    """Mixin for urllib3 connections: resolve, check every address, dial a checked IP (TLS keeps the name).
    ``address_allowed`` None: every address is allowed (the web-API sources, whose hosts the user names)."""

    def __init__(self, *args: Any, address_allowed: AddressPolicy | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.address_allowed = address_allowed

    def _new_conn(self) -> socket.socket:
        # Mirrors urllib3's HTTPConnection._new_conn, with the address check between resolving and dialling.
        timeout = self.timeout if isinstance(self.timeout, int | float) else None
        until = None if timeout is None else time.monotonic() + timeout
        try:
            addresses = _checked_addresses(self._dns_host, self.port, self.address_allowed, timeout)
            sock = _dial(addresses, self.port, until, self.source_address, self.socket_options)
            sock.settimeout(timeout)  # the TLS handshake and the request: as long again, as urllib3 allows
        except socket.gaierror as e:
            raise NameResolutionError(self.host, self, e) from e
        except TimeoutError as e:
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})") from e
        except OSError as e:
            raise NewConnectionError(self, f"Failed to establish a new connection: {e}") from e
        sys.audit("http.client.connect", self, self.host, self.port)
        return sock


class _GuardedHTTPConnection(_GuardedConnection, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnection, HTTPSConnection):
    pass


def _checked_addresses(host: str, port: int, allowed: AddressPolicy | None, timeout: float | None) -> list[str]:
    """Resolve ``host`` once; raise :class:`Refused` unless ``allowed`` accepts every address."""
    infos = resolve(host.strip("[]"), port, allowed_gai_family(), timeout)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if allowed is not None and not allowed(ip):
            raise Refused(f"refused: {ip} is {address_problem(ip) or 'not an allowed address'}")
    return addresses


def _dial(addresses: list[str], port: int, until: float | None, source_address: tuple[str, int] | None,
          socket_options: Any) -> socket.socket:
    """Connect to the first of the (already checked) IP addresses that answers before ``until``."""
    error: OSError | None = None
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = ClockedSocket(family, socket.SOCK_STREAM)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(None if until is None else max(until - time.monotonic(), 0.001))
            if source_address:
                sock.bind(source_address)
            sock.connect((address, port))
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or OSError(f"no address to dial on port {port}")


class GuardedPoolManager(urllib3.PoolManager):
    """A pool manager whose pools build guarded, clocked connections (``address_allowed`` None: no guard)."""

    def __init__(self, address_allowed: AddressPolicy | None, **kwargs: Any):
        super().__init__(**kwargs)
        self.address_allowed = address_allowed

    def _new_pool(self, scheme: str, host: str, port: int,
                  request_context: dict[str, Any] | None = None) -> HTTPConnectionPool:
        pool = super()._new_pool(scheme, host, port, request_context)
        guarded = _GuardedHTTPSConnection if scheme == "https" else _GuardedHTTPConnection
        pool.ConnectionCls = partial(guarded, address_allowed=self.address_allowed)
        return pool
