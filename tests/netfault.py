"""A small TCP fault proxy on loopback, in the manner of Toxiproxy, for broker-trouble tests.

    with Proxy(target_port=broker_port) as proxy:   # listens on 127.0.0.1:proxy.port
        ...                  # clients connect to proxy.port, bytes go to the target and back
        proxy.cut()          # every open connection is reset; new ones are reset at once
        proxy.restore()      # new connections are forwarded again

Threads only: one accepts, two pump each connection's bytes. It talks to 127.0.0.1 only
(the target must be a loopback address) and is bounded: it stops by itself after `lifetime`
seconds, and `stop()` (or leaving the `with` block) closes the listener and every connection.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from types import TracebackType

LOOPBACK = "127.0.0.1"


def _reset(sock: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), waking any thread blocked in recv on it."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class Proxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target_port` until `cut()`."""

    def __init__(self, target_port: int, *, target_host: str = LOOPBACK,
                 lifetime: float = 300.0, connect_timeout: float = 5.0) -> None:
        if target_host not in (LOOPBACK, "localhost"):
            raise ValueError(f"netfault.Proxy forwards to loopback only, not {target_host!r}")
        self.target = (LOOPBACK, target_port)
        self.lifetime = lifetime
        self.connect_timeout = connect_timeout
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.accepted = 0  # connections forwarded
        self.refused = 0   # connections reset at once while cut

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def is_cut(self) -> bool:
        return self._cut.is_set()

    def start(self) -> Proxy:
        if self._thread is None:
            self._thread = threading.Thread(target=self._accept_loop, name="netfault-accept",
                                            daemon=True)
            self._thread.start()
        return self

    def cut(self) -> None:
        """Reset every open connection; reset each new one at once until `restore()`."""
        self._cut.set()
        self._close_all()

    def restore(self) -> None:
        self._cut.clear()

    def stop(self) -> None:
        self._stopped.set()
        self._close_all()
        if self._thread is not None:
            self._thread.join(5)
        with contextlib.suppress(OSError):
            self._listener.close()

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _close_all(self) -> None:
        with self._lock:
            socks, self._open = list(self._open), set()
        for s in socks:
            _reset(s)

    def _accept_loop(self) -> None:
        deadline = time.monotonic() + self.lifetime
        try:
            while not self._stopped.is_set() and time.monotonic() < deadline:
                try:
                    client, _ = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    break
                if self._cut.is_set():
                    self.refused += 1
                    _reset(client)
                    continue
                try:
                    upstream = socket.create_connection(self.target, self.connect_timeout)
                except OSError:
                    _reset(client)
                    continue
                client.settimeout(None)
                upstream.settimeout(None)
                with self._lock:
                    if self._cut.is_set() or self._stopped.is_set():
                        _reset(client)
                        _reset(upstream)
                        continue
                    self._open.update((client, upstream))
                self.accepted += 1
                for src, dst in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(src, dst), name="netfault-pump",
                                     daemon=True).start()
        finally:
            self._stopped.set()
            self._close_all()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                ours = src in self._open or dst in self._open
                self._open.discard(src)
                self._open.discard(dst)
            if ours:  # a clean end on one side: pass it on to the other
                for s in (src, dst):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                    s.close()
