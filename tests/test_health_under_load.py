"""Liveness and readiness answer within a second whatever the hook, its clients and Vault do.

Real sockets play the slow clients (connected and silent, or sending a request a byte at a
time); a real OpenBao, paused with SIGSTOP, plays the Vault that stopped answering. Latencies are
measured on the wall clock of this test: a probe that takes a second is a failed probe.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from test_commands import run
from test_commands import setup as setup  # noqa: PLC0414 - the fixture, re-exported here
from test_rotation import HOOK_TOKEN, World, _wait, bootstrap
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here

from rotator.cli.status import STATUS_TIMEOUT
from rotator.config import ServerSettings
from rotator.core.record import Phase
from rotator.daemon import Daemon
from rotator.hook.app import ConfirmOutcome, ConfirmRequest, ConfirmStatus, make_app
from rotator.hook.auth import HookCredentials
from rotator.hook.server import HttpServer
from rotator.redaction import SecretValue

TOKEN = "load-hook-token-5f2c9a7e1b3d"
PROBE_BUDGET = 1.0  # seconds: a Kubernetes probe's timeout is 1 s by default


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
    some sending a request one byte every ``pace`` seconds (a slowloris)."""

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
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)) as s:
            for byte in request:
                if self.stop.wait(pace):  # the client's pace, not a wait on the server
                    return
                s.sendall(bytes([byte]))
                self.sent += 1

    def close(self) -> None:
        self.stop.set()
        for s in self.sockets:
            s.close()
        for thread in self._dribblers:
            thread.join(5)


class BlockedConfirm:
    """A confirm callback that holds every call until released (Vault hanging, say)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)
        self.calls = 0

    def __call__(self, _target: str, _request: ConfirmRequest) -> ConfirmOutcome:
        self.calls += 1
        self.entered.release()
        self.release.wait(30)
        return ConfirmOutcome(ConfirmStatus.CONFIRMED, "confirmed", "rot-1", "90210")


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[HttpServer, BlockedConfirm]]]:
    """Start the real server on a free port with a blocking confirm callback."""
    running: list[tuple[HttpServer, BlockedConfirm]] = []

    def start() -> tuple[HttpServer, BlockedConfirm]:
        confirm = BlockedConfirm()
        app = make_app(
            confirm=confirm,
            credentials=HookCredentials(SecretValue(TOKEN), None),
            settings=ServerSettings(),
            ready=lambda: (True, ""),
        )
        server = HttpServer(app, "127.0.0.1", 0)
        server.start()
        running.append((server, confirm))
        return server, confirm

    yield start
    for server, confirm in running:
        confirm.release.set()
        server.stop(timeout=2)


def test_silent_and_dribbling_connections_cannot_starve_health(serve):
    """Sixteen silent connections and sixteen sending a request a byte at a time leave
    /healthz and /readyz answering in under a second, every time."""
    server, _ = serve()
    slow = SlowClients(server.port, silent=16, dribbling=16)
    try:
        _wait(lambda: slow.sent >= 16)  # every dribbler has started its request
        health, ready = worst_probe(server.url), worst_probe(server.url, "/readyz")
    finally:
        slow.close()
    print(f"worst probe with 32 slow clients: healthz {health:.3f}s, readyz {ready:.3f}s")
    assert health < PROBE_BUDGET
    assert ready < PROBE_BUDGET


def test_hook_calls_stuck_in_their_work_cannot_starve_health(serve):
    """Twelve confirmations stuck in their work (Vault hanging) hold at most a bounded share of
    the workers: the ones beyond it get an immediate 503 with Retry-After, and /healthz keeps
    answering in under a second."""
    server, confirm = serve()
    answers: list[httpx.Response | Exception] = []

    def call() -> None:
        try:
            answers.append(
                httpx.post(
                    f"{server.url}/v1/targets/web/confirm",
                    content=json.dumps({"secret_id": "90210"}),
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    timeout=30,
                )
            )
        except httpx.HTTPError as e:
            answers.append(e)

    callers = [threading.Thread(target=call, daemon=True) for _ in range(12)]
    for caller in callers:
        caller.start()
    try:
        assert confirm.entered.acquire(timeout=5)  # at least one is stuck in the callback

        def refused() -> list[httpx.Response]:
            return [a for a in answers if isinstance(a, httpx.Response) and a.status_code == 503]

        _wait(lambda: len(refused()) + confirm.calls >= 12, timeout=5)
        health = worst_probe(server.url)
        assert 0 < confirm.calls < 12
        busy = refused()[0]
        assert busy.json()["error"]["code"] == "temporarily_unavailable"
        assert int(busy.headers["Retry-After"]) >= 1
    finally:
        confirm.release.set()
        for caller in callers:
            caller.join(10)
    print(f"worst health probe with {confirm.calls} stuck hook calls: {health:.3f}s")
    assert health < PROBE_BUDGET
    assert sorted({a.status_code for a in answers if isinstance(a, httpx.Response)}) == [200, 503]


@contextlib.contextmanager
def paused(process: Any) -> Iterator[None]:
    """SIGSTOP a real server for the block; SIGCONT whatever happens."""
    os.kill(process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(process.pid, signal.SIGCONT)


def test_health_readiness_and_the_hook_answer_in_time_while_vault_is_paused(world: World):
    """With OpenBao frozen by SIGSTOP, /healthz and /readyz still answer within a second
    (readiness turns 503 naming Vault, from a state checked in the background), and the hook
    answers 503 temporarily_unavailable with Retry-After within its bound, not after Vault's
    41 s of timeouts and retries; once Vault is back, the daemon is ready again."""
    bootstrap(world)
    world.clock.advance(days=31)
    reconciler = world.reconciler()
    daemon = Daemon(
        world.settings,
        reconciler,
        reconciler.vault,
        environ=world.environ,
        clock=lambda: world.clock().timestamp(),
    )
    daemon.start()
    url = daemon.server.url
    try:
        _wait(lambda: world.record().phase is Phase.AWAITING_ROLLOUT)
        _wait(lambda: probe(url, "/readyz")[1] == 200)
        pending = world.record().pending_id
        with paused(world.openbao._process):
            started = time.monotonic()
            answer = httpx.post(
                f"{url}/v1/targets/web/confirm",
                json={"secret_id": pending},
                headers={"Authorization": f"Bearer {HOOK_TOKEN}"},
                timeout=60,
            )
            hook_seconds = time.monotonic() - started
            health, ready = worst_probe(url), worst_probe(url, "/readyz")
            _wait(lambda: probe(url, "/readyz")[1] == 503, timeout=15)
            reason = httpx.get(f"{url}/readyz", timeout=5).json()["reason"]
        print(
            f"Vault paused: hook {hook_seconds:.2f}s ({answer.status_code}), worst healthz "
            f"{health:.3f}s, worst readyz {ready:.3f}s"
        )
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "temporarily_unavailable"
        assert int(answer.headers["Retry-After"]) >= 1
        assert hook_seconds < daemon.hook_timeout + 2
        assert health < PROBE_BUDGET
        assert ready < PROBE_BUDGET
        assert "Vault" in reason
        _wait(lambda: probe(url, "/readyz")[1] == 200, timeout=20)
    finally:
        daemon.stop()


def test_status_says_vault_is_unreachable_within_its_bound_while_vault_is_paused(setup, openbao):
    """`rotator status` with OpenBao frozen by SIGSTOP exits 1 within STATUS_TIMEOUT (plus the
    process's start-up), saying Vault is unreachable, instead of waiting out Vault's timeouts
    and retries (53 s)."""
    _, env, _ = setup
    assert run(env, "reconcile").returncode == 0
    with paused(openbao._process):
        started = time.monotonic()
        result = run(env, "status", "--json", timeout=120)
        seconds = time.monotonic() - started
    said = result.stderr.strip().splitlines()[-1]
    print(f"status with Vault paused: {seconds:.2f}s, exit {result.returncode}: {said}")
    assert result.returncode == 1
    assert "Vault at http" in result.stderr
    assert "unreachable" in result.stderr
    assert "did not answer within" in result.stderr
    assert seconds < STATUS_TIMEOUT + 5
    assert run(env, "status", "--json").returncode == 0  # and back once Vault is
