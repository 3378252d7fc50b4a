"""The HTTP server the daemon runs its WSGI app on: cheroot (CherryPy's production server), with
request limits and socket timeouts, in background threads. werkzeug's own is a development server.
"""

from __future__ import annotations

import threading
import time
from typing import Self

from cheroot import wsgi

from rotator.errors import PermanentError
from rotator.hook.app import WSGIApp
from rotator.logs import get_logger

#: cheroot's own bound on any request body, on every route: the largest ``max_body_bytes`` the
#: configuration allows. The hook's tighter, configured limit is the app's, answered in JSON.
MAX_REQUEST_BODY = 1024 * 1024
MAX_REQUEST_HEADERS = 16 * 1024
SOCKET_TIMEOUT = 10.0

log = get_logger()


class _Cheroot(wsgi.Server):
    """cheroot's server, its error log sent to ours (and so through redaction)."""

    def error_log(self, msg: str = "", level: int = 20, traceback: bool = False) -> None:  # noqa: FBT001, FBT002 - cheroot's signature
        log.log(level, "http.server", message=msg, exc_info=traceback)


class HttpServer:
    """Serves a WSGI app with cheroot in background threads; also a context manager."""

    def __init__(
        self,
        app: WSGIApp,
        host: str,
        port: int,
        *,
        threads: int = 4,
        max_request_body: int = MAX_REQUEST_BODY,
        socket_timeout: float = SOCKET_TIMEOUT,
    ) -> None:
        self._host = host
        self._server = _Cheroot((host, port), app, numthreads=threads, max=threads)
        self._server.server_name = "rotator"
        self._server.software = "rotator"  # not cheroot's name and version
        self._server.timeout = socket_timeout
        self._server.max_request_body_size = max_request_body
        self._server.max_request_header_size = MAX_REQUEST_HEADERS
        # The serve loop notices a stop only between two waits on its sockets: wait less long.
        self._server.expiration_interval = 0.1
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        """Bind and listen (``port=0`` picks a free port), then serve in the background."""
        if self._thread is not None:
            raise RuntimeError("the server was already started")
        host, port = self._server.bind_addr
        try:
            self._server.prepare()  # binds, listens and starts the workers, in this thread
        except OSError as e:
            raise PermanentError(f"cannot listen on {host}:{port}: {e}") from e
        self._thread = threading.Thread(
            target=self._serve, name=f"rotator-http-{self.port}", daemon=True
        )
        self._thread.start()
        log.info("http.listening", host=self._host, port=self.port)

    def _serve(self) -> None:
        try:
            self._server.serve()
        except BaseException:  # the last word of a background thread: log it
            log.exception("http.serve_failed")

    @property
    def port(self) -> int:
        """The port listened on (the real one once started, when asked for port 0)."""
        return int(self._server.bind_addr[1])

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
        thread = self._thread
        if thread is None or self._stopping.is_set():
            return
        self._stopping.set()
        deadline = time.monotonic() + timeout
        # cheroot waits ``shutdown_timeout`` for its workers, then shuts their sockets and waits
        # again without a limit: a request stuck in the app would hold us forever. Its stop runs
        # aside, and we stop waiting at our deadline.
        self._server.shutdown_timeout = timeout
        stopper = threading.Thread(target=self._server.stop, name="rotator-http-stop", daemon=True)
        stopper.start()
        stopper.join(timeout)
        thread.join(max(0.0, deadline - time.monotonic()))
        if stopper.is_alive() or thread.is_alive():
            # Its worker thread is abandoned: it ends when the request's work does.
            log.warning("http.stop_timeout", timeout=timeout, detail="a request still runs")
        else:
            log.info("http.stopped", port=self.port)

    def __enter__(self) -> Self:
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
