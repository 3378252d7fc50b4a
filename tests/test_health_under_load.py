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
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from _load import PROBE_BUDGET, SlowClients, probe, worst_probe
from test_commands import run
from test_commands import setup as setup  # noqa: PLC0414 - the fixture, re-exported here
from test_rotation import HOOK_TOKEN, World, _wait, bootstrap
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here

from rotator.cli.status import STATUS_TIMEOUT
from rotator.config import ServerSettings
from rotator.core.record import Phase
from rotator.daemon import Daemon
from rotator.daemon.service import STOP_TIMEOUT
from rotator.hook.app import ConfirmOutcome, ConfirmRequest, ConfirmStatus, make_app
from rotator.hook.auth import HookCredentials
from rotator.hook.server import MAX_REQUEST_HEADERS, HttpServer
from rotator.redaction import SecretValue

TOKEN = "load-hook-token-5f2c9a7e1b3d"


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
    daemon = world.daemon(reconciler)
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


def test_more_silent_connections_than_the_limit_cannot_keep_a_probe_out(serve):
    """Three hundred silent connections, more than the server keeps open, cannot make it stop
    accepting: the quietest are closed to make room, and /healthz answers in under a second."""
    server, _ = serve()
    crowd = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(300)]
    try:
        health = worst_probe(server.url)
    finally:
        for s in crowd:
            s.close()
    print(f"worst probe with 300 silent connections: healthz {health:.3f}s")
    assert health < PROBE_BUDGET


def test_a_header_sent_slowly_past_the_limit_is_cut_off(serve):
    """A client sending headers a kilobyte at a time past the server's header limit is cut off
    (431 or a closed connection) before it has sent much more than the limit, and /healthz
    keeps answering."""
    server, _ = serve()
    sent = 0
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: rotator\r\n")
        with contextlib.suppress(OSError):
            for i in range(64):
                s.sendall(b"X-Pad-%d: " % i + b"y" * 1024 + b"\r\n")
                sent += 1024
                health_now = probe(server.url)
                assert health_now[1] == 200
                assert health_now[0] < PROBE_BUDGET
            s.sendall(b"\r\n")
            s.settimeout(5)
            answer = s.recv(64)
    assert sent <= 2 * MAX_REQUEST_HEADERS
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer


def test_stop_with_hook_calls_in_flight_on_a_paused_vault_ends_within_its_bound(world: World):
    """Stopping the daemon while confirmations wait on a frozen Vault returns within
    STOP_TIMEOUT: each call ends at hook_timeout with its 503, and none is cut off unanswered."""
    bootstrap(world)
    world.clock.advance(days=31)
    reconciler = world.reconciler()
    daemon = world.daemon(reconciler)
    daemon.start()
    url = daemon.server.url
    answers: list[int | str] = []

    def call(pending: str | None) -> None:
        try:
            answers.append(
                httpx.post(
                    f"{url}/v1/targets/web/confirm",
                    json={"secret_id": pending},
                    headers={"Authorization": f"Bearer {HOOK_TOKEN}"},
                    timeout=60,
                ).status_code
            )
        except httpx.HTTPError as e:
            answers.append(type(e).__name__)

    try:
        _wait(lambda: world.record().phase is Phase.AWAITING_ROLLOUT)
        pending = world.record().pending_id
        with paused(world.openbao._process):
            callers = [threading.Thread(target=call, args=(pending,)) for _ in range(3)]
            for caller in callers:
                caller.start()
            channels = daemon.server._server.active_channels  # all three reached the app
            _wait(lambda: sum(bool(c.requests) for c in channels.values()) == 3)
            started = time.monotonic()
            daemon.stop()
            seconds = time.monotonic() - started
            for caller in callers:
                caller.join(10)
    finally:
        if daemon._scheduler.running:  # stop() above raised or was not reached
            daemon.stop()
    print(f"stop with 3 hook calls in flight on a paused Vault: {seconds:.2f}s, {answers}")
    assert seconds < STOP_TIMEOUT
    assert answers == [503, 503, 503]


def test_stop_with_a_pass_stuck_on_a_paused_vault_ends_within_stop_timeout(world: World):
    """Stopping the daemon while its reconcile pass waits on a frozen Vault returns within
    STOP_TIMEOUT (the pass is abandoned between persisted steps, as a crash would be)."""
    bootstrap(world)
    # A shorter Vault timeout keeps this test quick; the pass still outlives STOP_TIMEOUT.
    vault = world.settings.vault.model_copy(update={"timeout": 3.0})
    world.settings = world.settings.model_copy(update={"vault": vault})
    reconciler = world.reconciler()
    daemon = Daemon(world.settings, reconciler, reconciler.vault, environ=world.environ)
    daemon.start()
    first = datetime.now(UTC)
    scheduler = daemon._scheduler
    try:
        _wait(lambda: scheduler.get_job("reconcile").next_run_time > first)
        _wait(lambda: daemon.readiness.state()[0])  # the first pass is over: Vault answered
        with paused(world.openbao._process):
            again = datetime.now(UTC)
            daemon.watch.wake()  # every target due: the quiet daemon reads none unasked
            scheduler.modify_job("reconcile", next_run_time=again)
            _wait(lambda: scheduler.get_job("reconcile").next_run_time > again)
            started = time.monotonic()
            daemon.stop()
            seconds = time.monotonic() - started
    finally:
        if scheduler.running:
            daemon.stop()
    print(f"stop with a pass stuck on a paused Vault: {seconds:.2f}s")
    assert seconds < STOP_TIMEOUT
    assert daemon.abandoned  # the process exits without waiting for that pass's thread
    daemon.stop()  # a second stop is harmless
