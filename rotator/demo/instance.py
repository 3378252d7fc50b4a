"""One consumer instance's state and its HTTP face: the probe answer and ``/__control``.

``Consumer`` is what the instance holds and how it behaves, shared by the threads of
``rotator.demo.consumer`` under one lock. ``ProbeServer`` serves, from it:

* ``GET /.well-known/intercom-secret``: ``{"intercom_id", "fingerprint"}`` of the secret signed
  with now (``docs/probe-protocol.md``); 503 before anything is loaded.
* with ``control``, ``GET /__control``: what it really holds, its mode and its signature checks
  (the ground truth tests compare a probe's verdict with), and ``POST /__control`` with
  ``{"mode": "ok|garbage|slow|old|down", "reload": bool}``: answer non-JSON (garbage), answer
  after 30 s (slow), keep naming the secret held before the last switch (old), answer 503
  (down); stop switching to new secrets (``reload: false``).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rotator.redaction import SecretValue

PROBE_PATH = "/.well-known/intercom-secret"
CONTROL_PATH = "/__control"
SLOW_SECONDS = 30.0
MAX_CONTROL_BYTES = 4096

MODES = ("ok", "garbage", "slow", "old", "down")
METHODS = ("user_hash", "jwt")
OUTCOMES = ("ok", "failed", "errors")  # verified; rejected by the emulator; no answer from it


@dataclass(frozen=True, slots=True)
class Held:
    """A secret as the consumer holds it: its id, its material (never shown), its fingerprint."""

    intercom_id: str
    secret: SecretValue = field(repr=False)
    fingerprint: str


class Consumer:
    """What one instance holds and how it behaves; every method is safe from any thread."""

    def __init__(self, reload_delay: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._delay = reload_delay
        self._clock = clock
        self._lock = threading.Lock()
        self._held: Held | None = None
        self._before: Held | None = None  # held until the last switch (mode "old" answers it)
        self._pending: Held | None = None
        self._due = 0.0
        self._mode = "ok"
        self._reload = True
        self._checks = {m: dict.fromkeys(OUTCOMES, 0) for m in METHODS}

    @property
    def held(self) -> Held | None:
        with self._lock:
            return self._held

    @property
    def mode(self) -> str:
        with self._lock:
            return self._mode

    def saw(self, found: Held) -> tuple[Held | None, Held] | None:
        """The poller found ``found`` on the path; ``(before, now held)`` when that made it
        switch. The first secret is taken at once (a service starting up loads what is there);
        a later one after the reload delay, counted from when it was first seen, unless
        reloading is off. A path that changes back before then cancels the switch."""
        now = self._clock()
        with self._lock:
            if self._held is None:
                self._held = found
                return None, found
            if found == self._held:
                self._pending = None
            elif found != self._pending:
                self._pending, self._due = found, now + self._delay
            if self._pending is None or not self._reload or now < self._due:
                return None
            self._before, self._held, self._pending = self._held, self._pending, None
            return self._before, self._held

    def probe_answer(self) -> Held | None:
        """The secret the probe names: the one signed with now, or in mode "old" the one held
        before the last switch (when there was one)."""
        with self._lock:
            if self._mode == "old" and self._before is not None:
                return self._before
            return self._held

    def count(self, method: str, outcome: str) -> None:
        with self._lock:
            self._checks[method][outcome] += 1

    def control(self, *, mode: str | None = None, reload: bool | None = None) -> dict[str, Any]:
        """Change the behaviour (what is given) and say what it is now: ``GET /__control``."""
        with self._lock:
            if mode is not None:
                self._mode = mode
            if reload is not None:
                self._reload = reload
            return {
                "holds": self._held.intercom_id if self._held else None,
                "mode": self._mode,
                "reload": self._reload,
                "checks": {m: dict(c) for m, c in self._checks.items()},
            }


# --- HTTP -------------------------------------------------------------------------------------


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) into its parts; raises ``ValueError``."""
    host, sep, port = text.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT (e.g. 127.0.0.2:0 or [::1]:8080), not {text!r}")
    return host, int(port)


class ProbeServer(ThreadingHTTPServer):
    """The instance's HTTP server; ``address`` is ``HOST:PORT`` as bound."""

    daemon_threads = True  # a slow answer in progress does not hold up the exit

    def __init__(
        self, address: tuple[str, int], consumer: Consumer, *, control: bool, stop: threading.Event
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.consumer = consumer
        self.control = control
        self.stop = stop
        super().__init__(address, _Handler)

    @property
    def address(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A prober that gave up (slow mode) closes its end: not worth a traceback on stderr.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: ProbeServer
    timeout = 10  # a client that sends nothing does not hold a thread forever

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # probes come several times a second: the request lines are noise

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if path == PROBE_PATH:
            self._probe()
        elif path == CONTROL_PATH and self.server.control:
            self._send(200, self.server.consumer.control())
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        if self.path.partition("?")[0] != CONTROL_PATH or not self.server.control:
            self._send(404, {"error": "not found"})
            return
        try:
            changes = _control_changes(self._body())
        except ValueError as e:
            self._send(400, {"error": str(e)})
            return
        self._send(200, self.server.consumer.control(**changes))

    def _probe(self) -> None:
        consumer = self.server.consumer
        mode = consumer.mode
        if mode == "down":
            self._send(503, {"error": "down (control)"})
            return
        if mode == "garbage":
            self._send_bytes(200, b"<html>this is not JSON</html>", "text/html")
            return
        if mode == "slow" and self.server.stop.wait(SLOW_SECONDS):
            return  # stopping: no answer at all
        held = consumer.probe_answer()
        if held is None:
            self._send(503, {"error": "no secret loaded yet"})
            return
        self._send(200, {"intercom_id": held.intercom_id, "fingerprint": held.fingerprint})

    def _body(self) -> Any:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise ValueError("send a JSON body with a Content-Length") from None
        if not 0 < length <= MAX_CONTROL_BYTES:
            raise ValueError(f"the body must be 1 to {MAX_CONTROL_BYTES} bytes")
        try:
            return json.loads(self.rfile.read(length))
        except ValueError:
            raise ValueError("the body is not JSON") from None

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), "application/json")

    def _send_bytes(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


def _control_changes(body: Any) -> dict[str, Any]:
    usage = f'send {{"mode": "{"|".join(MODES)}", "reload": true|false}} (either key)'
    if not isinstance(body, dict) or not body or set(body) - {"mode", "reload"}:
        raise ValueError(usage)
    if "mode" in body and body["mode"] not in MODES:
        raise ValueError(f"unknown mode: {usage}")
    if "reload" in body and not isinstance(body["reload"], bool):
        raise ValueError(f"reload must be true or false: {usage}")
    return {"mode": body.get("mode"), "reload": body.get("reload")}
