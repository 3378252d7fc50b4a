"""The HTTP server the daemon runs its WSGI app on: waitress, with request limits, in background
threads. werkzeug's own is a development server.

Why waitress: its event loop (one thread) accepts connections and reads each request, headers
and body, into a buffer; only a *complete* request reaches a worker thread. A client that
connects and says nothing, or sends its request a byte at a time, costs a buffer and never a
worker, so it cannot starve ``/healthz``. (cheroot gave each connection a worker while it read
the request: four silent sockets took all four and liveness failed.) What can still hold a
worker is the app's own work, which the app bounds (``rotator.hook.app``: a share of the
workers for the hook, the rest always free for health, readiness and metrics).

Connections are bounded too, but never by refusing new ones: at ``CONNECTION_LIMIT`` the
connection that has been quiet longest, with no request in a worker and nothing left to send, is
closed to make room. (waitress's own limit stops accepting instead: 256 silent sockets, and the
kubelet's probe waited in the backlog until they timed out.)

Stopping closes the listening socket first (new connections are refused), lets the requests in
flight finish and their answers go out, and gives up waiting at its timeout.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Self, cast

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, MultiSocketServer, create_server

from rotator.errors import SetupError, transport_cause
from rotator.hook.app import WSGIApp
from rotator.logs import get_logger

#: The server's own bound on any request body, on every route: the largest ``max_body_bytes``
#: the configuration allows. The hook's tighter, configured limit is the app's, answered in JSON.
MAX_REQUEST_BODY = 1024 * 1024
MAX_REQUEST_HEADERS = 16 * 1024
#: Worker threads: the hook may use half (``rotator.hook.app.HOOK_CONCURRENCY``).
THREADS = 8
#: Seconds a connection may sit idle (keep-alive, or silent from the start) before it is closed.
IDLE_TIMEOUT = 10.0
#: Connections open at once; beyond it the quietest idle one is closed for each new one.
CONNECTION_LIMIT = 256
#: Room above CONNECTION_LIMIT before waitress would stop accepting (several accepted in a tick).
_ACCEPT_MARGIN = 64
#: Seconds the event loop waits for sockets before looking at its own state (a stop) again.
_TICK = 0.05

log = get_logger()


class HttpServer:
    """Serves a WSGI app with waitress in background threads; also a context manager."""

    def __init__(
        self,
        app: WSGIApp,
        host: str,
        port: int,
        *,
        threads: int = THREADS,
        max_request_body: int = MAX_REQUEST_BODY,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._options: dict[str, Any] = {
            "threads": threads,
            "max_request_body_size": max_request_body,
            "max_request_header_size": MAX_REQUEST_HEADERS,
            "channel_timeout": idle_timeout,
            "cleanup_interval": max(0.5, idle_timeout / 4),
            "connection_limit": CONNECTION_LIMIT + _ACCEPT_MARGIN,
            "ident": "rotator",  # the Server header: not waitress's name
            "asyncore_use_poll": True,  # select() cannot watch descriptors past 1024
            "asyncore_loop_timeout": _TICK,
        }
        self._server: BaseWSGIServer | None = None
        # waitress's socket map (its stubs call the values sockets; they are its dispatchers).
        self._map: dict[int, Any] = {}
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._drained = threading.Event()
        self._halt = threading.Event()

    def start(self) -> None:
        """Bind and listen (``port=0`` picks a free port), then serve in the background."""
        if self._thread is not None:
            raise RuntimeError("the server was already started")
        where = f"{self._host}:{self._port}"
        try:
            server = create_server(
                self._app, self._map, host=self._host, port=self._port, **self._options
            )
        except OSError as e:  # the port taken, an address not on this host: errno in words
            raise SetupError(
                f"cannot listen on {where} ([server] listen): {transport_cause(e)}"
            ) from e
        except ValueError as e:  # waitress's word for a host getaddrinfo cannot resolve
            raise SetupError(
                f"cannot listen on {where} ([server] listen): {self._host!r} does not resolve "
                "to an address; use an IP address of this host, such as 0.0.0.0 or 127.0.0.1"
            ) from e
        if isinstance(server, MultiSocketServer):  # pragma: no cover - one host, one socket
            raise SetupError(f"{self._host} resolves to several addresses: name one")
        self._server = server
        # Remembered now: once stopped, the listening socket (and its name) is gone.
        self._port = int(server.getsockname()[1])
        self._thread = threading.Thread(
            target=self._serve, name=f"rotator-http-{self.port}", daemon=True
        )
        self._thread.start()
        log.info("http.listening", host=self._host, port=self.port)

    def _serve(self) -> None:
        server = self._server
        if server is None:  # pragma: no cover - start() sets it before starting this thread
            return
        listening = True
        try:
            while not self._halt.is_set():
                if self._stopping.is_set():
                    if listening:
                        # The listening socket only; the trigger the workers wake us with
                        # stays open until the end.
                        wasyncore.dispatcher.close(server)
                        listening = False
                    if _idle(server):
                        self._drained.set()
                _shed(server, CONNECTION_LIMIT)
                wasyncore.loop(timeout=_TICK, map=self._map, use_poll=True, count=1)
        except BaseException:  # the last word of a background thread: log it
            log.exception("http.serve_failed")
        finally:
            for channel in list(self._map.values()):
                channel.close()

    @property
    def port(self) -> int:
        """The port listened on (the real one once started, when asked for port 0)."""
        return self._port

    @property
    def url(self) -> str:
        """A URL that reaches the server from this host."""
        wildcards = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 - not a bind
        host = wildcards.get(self._host, self._host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, let requests in flight finish, and return within ``timeout``."""
        thread, server = self._thread, self._server
        if thread is None or server is None or self._stopping.is_set():
            return
        deadline = time.monotonic() + timeout
        self._stopping.set()
        drained = self._drained.wait(timeout)
        self._halt.set()
        thread.join(max(0.0, deadline - time.monotonic()))
        # Workers end after their task; one stuck in the app is abandoned (a daemon thread that
        # ends when its work does).
        left = max(0.0, deadline - time.monotonic())
        server.task_dispatcher.shutdown(timeout=cast("int", left))  # float seconds; stubs: int
        if not drained or thread.is_alive():
            log.warning("http.stop_timeout", timeout=timeout, detail="a request still runs")
        else:
            log.info("http.stopped", port=self.port)

    def __enter__(self) -> Self:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _idle(server: BaseWSGIServer) -> bool:
    """No request in progress and no answer left to send, on any connection."""
    # Its stubs type active_channels as one channel; it is a dict of them by descriptor.
    channels = cast("dict[int, HTTPChannel]", server.active_channels)
    return not any(channel.requests or channel.total_outbufs_len for channel in channels.values())


def _shed(server: BaseWSGIServer, limit: int) -> None:
    """Close the connections quiet longest, and doing nothing, until fewer than ``limit``
    remain: so a new connection (a probe) is always accepted."""
    channels = cast("dict[int, HTTPChannel]", server.active_channels)
    excess = len(channels) - limit + 1
    if excess <= 0:
        return
    idle = [c for c in channels.values() if not c.requests and not c.total_outbufs_len]
    for channel in sorted(idle, key=lambda c: c.last_activity)[:excess]:
        channel.handle_close()
