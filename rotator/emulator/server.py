"""Serving the emulator: in a background thread (tests, demo) or in the foreground (CLI).

The server is werkzeug's threaded WSGI server, the one moto uses for the same job. It is a test
tool's server: rotator's own hook server is a different one.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Self

from werkzeug.serving import (
    BaseWSGIServer,
    WSGIRequestHandler,
    get_sockaddr,
    make_server,
    select_address_family,
)

from rotator.emulator.app import EmulatorApp
from rotator.emulator.faults import Faults, FaultSpec
from rotator.emulator.limits import RateLimit
from rotator.emulator.state import Store, StoredSecret, Token

#: Accepted when no token is configured: convenient for a first try, named so nobody ships it.
DEFAULT_TOKEN = Token.parse("emulator-token:read,write")
#: The token the pytest fixture's emulator accepts (both scopes).
INTERCOM_EMULATOR_TOKEN = "intercom-emulator-test-token"  # noqa: S105 - a test fixture's token

WSGIMiddleware = Callable[[Any], Any]


class _Handler(WSGIRequestHandler):
    """Request lines are logged by the app itself (with its request id); a drop ends the
    connection instead of waiting for a next request on it."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def connection_dropped(
        self,
        error: BaseException,  # noqa: ARG002 - werkzeug's signature
        environ: dict[str, Any] | None = None,  # noqa: ARG002
    ) -> None:
        self.close_connection = True


class Emulator:
    """An emulated Intercom: its store, tokens and faults, servable on a port."""

    def __init__(
        self,
        *,
        tokens: Iterable[Token] = (DEFAULT_TOKEN,),
        faults: FaultSpec | None = None,
        state_file: Path | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        on_delete: Callable[[StoredSecret], None] | None = None,
        rate_limit: RateLimit | None = None,
    ) -> None:
        """``rate_limit``: Intercom's documented one (enforced) unless another is given."""
        self.store = Store(state_file, clock=clock, on_delete=on_delete)
        self.faults = Faults(faults)
        self.app = EmulatorApp(
            self.store, tokens, self.faults, clock=clock, sleep=sleep, rate_limit=rate_limit
        )

    def add_token(self, token: Token) -> None:
        self.app.tokens[token.value] = token

    def revoke_token(self, value: str) -> None:
        """Stop accepting the token ``value`` (401 from now on), as Intercom does once an app's
        token is revoked."""
        self.app.tokens.pop(value, None)

    def serve(
        self, host: str = "127.0.0.1", port: int = 0, middleware: WSGIMiddleware | None = None
    ) -> RunningEmulator:
        """Start serving in a background thread; ``port=0`` picks a free port."""
        app = middleware(self.app) if middleware is not None else self.app
        # werkzeug meets a port in use with its own message and sys.exit(1), past any caller's
        # handler: bind here, so a taken port is an OSError its caller reports in its own words.
        family = select_address_family(host, port)
        with socket.socket(family, socket.SOCK_STREAM) as listening:
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug does
            listening.bind(get_sockaddr(host, port, family))
            listening.listen(socket.SOMAXCONN)
            server = make_server(  # werkzeug serves a duplicate of this descriptor
                host, port, app, threaded=True, request_handler=_Handler, fd=listening.fileno()
            )
        return RunningEmulator(self, server)


class RunningEmulator:
    """A started emulator; use as a context manager or call ``stop()``."""

    def __init__(self, emulator: Emulator, server: BaseWSGIServer) -> None:
        self.emulator = emulator
        self._server = server
        self.host = server.host
        self.port = server.port
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            daemon=True,
            name=f"intercom-emulator-{self.port}",
        )
        self._thread.start()

    @property
    def store(self) -> Store:
        return self.emulator.store

    def revoke_token(self, value: str) -> None:
        """Answer 401 to the token ``value`` from now on."""
        self.emulator.revoke_token(value)

    def set_faults(self, spec: FaultSpec | str) -> None:
        """Change the injected faults while running (a spec object or its text)."""
        self.emulator.faults.set(FaultSpec.parse(spec) if isinstance(spec, str) else spec)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def wait(self) -> None:
        """Block until ``stop()`` is called from another thread (or a signal handler)."""
        while self._thread.is_alive():
            self._thread.join(timeout=0.5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
