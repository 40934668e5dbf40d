"""A loopback TCP server that answers each connection with a function, for exchanges no HTTP server library
would produce: headers sent one byte at a time, a TLS handshake never answered, a body that drips."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

Serve = Callable[[socket.socket, threading.Event], None]


class RawServer:
    """Listens on ``host`` (a free port); every connection is served by ``serve(connection, stop)`` on its
    own thread, ``stop`` being set by :meth:`close`."""

    def __init__(self, serve: Serve, host: str = "127.0.0.1"):
        self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        self.serve = serve
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._run, args=(connection,), daemon=True).start()

    def _run(self, connection: socket.socket) -> None:
        with connection:
            try:
                self.serve(connection, self.stop)
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


def drip(connection: socket.socket, stop: threading.Event, data: bytes, interval_s: float) -> None:
    """Send ``data`` one byte every ``interval_s`` seconds, until it is sent or ``stop`` is set."""
    for byte in data:
        if stop.wait(interval_s):
            return
        connection.sendall(bytes([byte]))
