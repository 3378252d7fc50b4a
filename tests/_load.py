"""Load for the daemon's HTTP server, shared by the load tests and the torture suite: probes
timed as a kubelet makes them, and clients that are slow on purpose.

Latencies are measured on the wall clock of the caller: a probe that takes a second is a failed
probe (a Kubernetes probe's timeout is 1 s by default).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import httpx

PROBE_BUDGET = 1.0  # seconds


def probe(url: str, path: str = "/healthz") -> tuple[float, int | None]:
    """One probe on a new connection, as the kubelet makes them: (seconds, status or None)."""
    started = time.monotonic()
    try:
        status: int | None = httpx.get(f"{url}{path}", timeout=5).status_code
    except httpx.HTTPError:
        status = None
    return time.monotonic() - started, status


def worst_probe(url: str, path: str = "/healthz", count: int = 10) -> float:
    """The slowest of ``count`` probes (the first one over budget ends the series); a probe
    that got no answer counts as forever."""
    worst = 0.0
    for _ in range(count):
        seconds, status = probe(url, path)
        worst = max(worst, seconds if status is not None else float("inf"))
        if worst >= PROBE_BUDGET:
            break
    return worst


class SlowClients:
    """Connections that take a worker's time without ever finishing a request: some silent,
    some sending a request one byte every ``pace`` seconds (a slowloris). A connection the
    server closes (its idle timeout) is opened again, so the pressure lasts until ``close``."""

    def __init__(self, port: int, *, silent: int, dribbling: int, pace: float = 0.2) -> None:
        self.stop = threading.Event()
        self.sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(silent)]
        self._dribblers = [
            threading.Thread(target=self._dribble, args=(port, pace), daemon=True)
            for _ in range(dribbling)
        ]
        self.sent = 0
        for thread in self._dribblers:
            thread.start()

    def _dribble(self, port: int, pace: float) -> None:
        request = b"GET /healthz HTTP/1.1\r\nHost: rotator\r\nX-Padding: " + b"x" * 4096
        while not self.stop.is_set():
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)) as s:
                for byte in request:
                    if self.stop.wait(pace):  # the client's pace, not a wait on the server
                        return
                    s.sendall(bytes([byte]))
                    self.sent += 1
            if self.stop.wait(pace):  # refused (a daemon restarting): try again at our pace
                return

    def close(self) -> None:
        self.stop.set()
        for s in self.sockets:
            s.close()
        for thread in self._dribblers:
            thread.join(5)


class HealthWatch(threading.Thread):
    """Probes ``/healthz`` and ``/readyz`` of a running daemon every ``every`` seconds until
    stopped, from its first answer on; ``worst`` and ``over_budget`` say how it went (a probe
    without an answer counts as over budget)."""

    def __init__(self, url: str, every: float = 0.25) -> None:
        super().__init__(daemon=True, name=f"health-watch {url}")
        self.url = url
        self.every = every
        self.stop = threading.Event()
        self.probes = 0
        self.worst = 0.0
        self.over_budget: list[str] = []

    def run(self) -> None:
        answered = False
        while not self.stop.wait(self.every):
            for path in ("/healthz", "/readyz"):
                seconds, status = probe(self.url, path)
                answered = answered or status is not None
                if not answered:
                    continue  # still starting
                self.probes += 1
                self.worst = max(self.worst, seconds)
                if status is None or seconds >= PROBE_BUDGET:
                    self.over_budget.append(f"{path} {seconds:.2f}s status {status}")
