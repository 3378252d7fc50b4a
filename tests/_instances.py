"""Consumer instances on loopback for the probe tests: real servers, each on its own address.

``Instance`` is an HTTP server (stdlib ``ThreadingHTTPServer`` in a thread) answering whatever
the test sets in ``answer``, and remembering the ``Host`` header (and, over TLS, the server name)
of every request. ``RawInstance`` is a TCP listener that misbehaves below HTTP: it closes at
once, sends something that is not HTTP, or holds the connection until the test ends (released by
an event, never a sleep). Every address in 127.0.0.0/8 is loopback on Linux, so instances can
share a port and differ by address, as the pods behind one DNS name do.
"""

from __future__ import annotations

import errno
import json
import socket
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from rotator.config.settings import TargetSettings

PATH = "/.well-known/intercom-secret"
#: Put in answer bodies by the tests; must never reach a log line or a probe's result.
MARKER = "Zq7-BODY-MARKER-do-not-log"


def probe_target(*consumers: dict[str, Any]) -> TargetSettings:
    """Target ``web`` with these ``[[targets.consumers]]`` tables."""
    return TargetSettings(
        name="web",
        secret_name="Web",
        vault_path="secrets/web",
        token_env="INTERCOM_TOKEN",
        confirmation="consumers",
        consumers=consumers,
    )


@dataclass
class Answer:
    """What an ``Instance`` sends: ``length=False`` leaves out Content-Length (the body then
    ends when the connection closes, as HTTP/1.0 allows)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    length: bool = True

    @classmethod
    def of(cls, document: Any, **kwargs: Any) -> Answer:
        return cls(body=json.dumps(document).encode(), **kwargs)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up early (a "too large" answer) is expected here


class Instance:
    """A consumer instance: ``GET`` anywhere answers ``answer``; ``hosts`` and ``server_names``
    record what each request said it was for."""

    def __init__(
        self,
        host: str,
        port: int = 0,
        answer: Answer | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.answer = answer or Answer.of({"intercom_id": "103"})
        self.hosts: list[str | None] = []
        self.server_names: list[str | None] = []
        instance = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                instance.hosts.append(self.headers.get("Host"))
                answer = instance.answer
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if answer.length:
                    self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, *_args: object) -> None:
                pass

        server_class = type("Server", (_Server,), {"address_family": _family(host)})
        self.server = server_class((host, port), Handler)
        if tls is not None:
            tls.sni_callback = self._sni
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.host = host
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def _sni(self, _socket: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        self.server_names.append(name)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://{self.address}{PATH}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class RawInstance:
    """A listener that never answers HTTP: ``close`` hangs up at once, ``garbage`` sends a line
    that is no status line, ``hold`` keeps every connection open until ``stop``."""

    def __init__(self, host: str, behaviour: Literal["close", "garbage", "hold"]) -> None:
        self.behaviour = behaviour
        self.listener = socket.socket(_family(host), socket.SOCK_STREAM)
        self.listener.bind((host, 0))
        self.listener.listen(64)
        self.listener.settimeout(0.05)  # how often the accept loop notices ``stop``
        self.host = host
        self.port = int(self.listener.getsockname()[1])
        self.accepted = 0
        self.held: list[socket.socket] = []
        self.released = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self) -> str:
        return f"http://{self.address}{PATH}"

    def _serve(self) -> None:
        while not self.released.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self.behaviour == "hold":
                self.held.append(connection)
                continue
            if self.behaviour == "garbage":
                connection.settimeout(1)
                try:
                    connection.recv(4096)
                    connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
                except OSError:
                    pass
            connection.close()

    def stop(self) -> None:
        self.released.set()
        self.thread.join()
        for connection in self.held:
            connection.close()
        self.listener.close()


class Servers:
    """The servers one test started (the ``serve`` fixture), stopped together at its end."""

    def __init__(self) -> None:
        self.running: list[Instance | RawInstance] = []

    def http(self, host: str, **kwargs: Any) -> Instance:
        self.running.append(instance := Instance(host, **kwargs))
        return instance

    def raw(self, host: str, behaviour: Literal["close", "garbage", "hold"]) -> RawInstance:
        self.running.append(raw := RawInstance(host, behaviour))
        return raw

    def same_port(self, hosts: Iterable[str], **kwargs: Any) -> list[Instance]:
        started = same_port(hosts, **kwargs)
        self.running += started
        return started

    def stop(self) -> None:
        for server in self.running:
            server.stop()


def same_port(hosts: Iterable[str], **kwargs: Any) -> list[Instance]:
    """One ``Instance`` on each host, all on one port (the pods behind one DNS name)."""
    hosts = list(hosts)
    for _ in range(20):
        first = Instance(hosts[0], **kwargs)
        started = [first]
        try:
            started += [Instance(host, first.port, **kwargs) for host in hosts[1:]]
        except OSError as e:
            for instance in started:
                instance.stop()
            if e.errno != errno.EADDRINUSE:
                raise
            continue
        return started
    raise RuntimeError(f"found no port free on all of {hosts}")


def ipv6_loopback() -> bool:
    """Whether ``::1`` can be bound here (containers often lack IPv6)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True
