"""Pacing under Intercom's rate limit: the shared budget, the emulator's enforcement, and many
targets rotated against it without a single 429.

Time is injected everywhere: a budget's clock and sleep are a ``SimTime`` whose sleep moves the
clock, the emulator counts its 10-second windows on the same clock, and nothing here waits.
"""

from __future__ import annotations

import email.utils
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from rotator.config import IntercomSettings, parse_settings
from rotator.emulator import Emulator, RateLimit, Token
from rotator.intercom import IntercomClient, RetryPolicy
from rotator.intercom.pacing import Budget, Budgets
from rotator.reconciler import Reconciler, client_factory_with
from rotator.redaction import SecretValue
from rotator.vault import Vault

WALL = 1_800_000_000.0  # Unix seconds at the start of every simulated run


class SimTime:
    """One simulated clock for every thread: ``sleep(d)`` moves it to ``d`` after the moment
    the sleeping thread last read it (so concurrent sleepers overlap, as real ones do)."""

    def __init__(self, start: float = WALL) -> None:
        self.now = start
        self._lock = threading.Lock()
        self._read = threading.local()

    def clock(self) -> float:
        with self._lock:
            self._read.at = self.now
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now = max(self.now, getattr(self._read, "at", self.now) + seconds)


def budget(per_minute: float, time: SimTime, **kwargs: Any) -> Budget:
    return Budget(per_minute, clock=time.clock, sleep=time.sleep, wall=time.clock, **kwargs)


# --- the budget alone ---------------------------------------------------------------------------


def test_budget_spends_its_burst_then_spaces_calls_at_its_rate() -> None:
    """A second's worth of calls goes at once; every later one waits exactly 1/rate."""
    time = SimTime()
    paced = budget(600, time)  # 10 a second, a burst of 10
    waits = [paced.acquire() for _ in range(30)]
    assert waits[:10] == [0.0] * 10
    assert waits[10:] == pytest.approx([0.1] * 20, abs=1e-5)
    assert time.now - WALL == pytest.approx(2.0, abs=1e-5)
    assert paced.waits == 20


def test_no_ten_second_window_sees_more_than_intercom_allows() -> None:
    """At the default 8,000 a minute, 5,000 back-to-back calls put at most rate/6 + burst
    (1,466) in any aligned 10-second window: under the 1,666 Intercom allows."""
    time = SimTime()
    paced = budget(IntercomSettings().max_calls_per_minute, time)
    per_window: dict[int, int] = {}
    for _ in range(5000):
        paced.acquire()
        window = int(time.now) // 10
        per_window[window] = per_window.get(window, 0) + 1
    assert max(per_window.values()) <= 8000 / 6 + paced.burst
    assert max(per_window.values()) < RateLimit().app_window


def test_threads_reserve_distinct_turns_in_one_budget() -> None:
    """Threads asking at the same instant each get their own turn: a burst at once, then one
    call per 1/rate, whatever their order (the clock stands still: nobody really sleeps)."""
    frozen = 100.0
    slept: list[float] = []
    lock = threading.Lock()

    def record(seconds: float) -> None:
        with lock:
            slept.append(seconds)

    paced = Budget(60, burst=5, clock=lambda: frozen, sleep=record, wall=lambda: WALL)
    waits: list[float] = []
    threads = [threading.Thread(target=lambda: waits.append(paced.acquire())) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(waits) == pytest.approx([0.0] * 5 + [float(n) for n in range(1, 46)])
    assert sorted(slept) == pytest.approx([float(n) for n in range(1, 46)])


@pytest.mark.parametrize(
    ("status", "headers", "held"),
    [
        (200, {"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": str(int(WALL) + 7)}, 7.0),
        (200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(WALL) + 4)}, 4.0),
        (200, {"X-RateLimit-Remaining": "900", "X-RateLimit-Reset": str(int(WALL) + 7)}, 0.0),
        (200, {"X-RateLimit-Remaining": "²", "X-RateLimit-Reset": str(int(WALL) + 7)}, 0.0),
        (200, {"X-RateLimit-Remaining": "2", "X-RateLimit-Reset": "soon"}, 0.0),
        (200, {}, 0.0),
        (429, {"Retry-After": "5"}, 5.0),
        (429, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(WALL) + 3)}, 3.0),
        (429, {"Retry-After": "86400"}, 60.0),  # a whole budget is never held past a minute
    ],
)
def test_the_servers_headers_hold_the_budget(
    status: int, headers: dict[str, str], held: float
) -> None:
    """A window the server says is (nearly) spent, or a 429, holds every caller of the budget
    until the server's time; headers that do not parse strictly change nothing."""
    time = SimTime()
    paced = budget(6000, time)
    encoded = httpx.Headers({k: v.encode() for k, v in headers.items()})  # as a server sent it
    assert paced.note(status, encoded) == pytest.approx(held, abs=1e-5)
    wait = paced.acquire()
    if held:
        assert wait == pytest.approx(held + 1 / paced.rate, abs=1e-5)
    else:
        assert wait == 0.0


@pytest.mark.parametrize("skew", [-120.0, 120.0])
def test_a_nearly_spent_window_holds_until_the_reset_on_the_servers_clock(skew: float) -> None:
    """Our clock ``skew`` seconds off the server's: the reset (a time on the server's clock)
    is read against the answer's ``Date``, so the budget holds about the 7 s the server means,
    not 7 s plus or minus the skew (a minute's stall, or none and a 429)."""
    time = SimTime()
    paced = budget(6000, time)
    server = WALL + skew  # our clock reads WALL when the server's reads this
    headers = {
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(int(server) + 7),
        "Date": email.utils.formatdate(server, usegmt=True),
    }
    held = paced.note(200, httpx.Headers(headers))
    assert 6.0 <= held <= 7.0


def test_budgets_are_per_token_and_endpoint_or_per_endpoint() -> None:
    """Targets sharing a token and base URL share a budget; another token has its own, unless
    the scope is the endpoint. Keys hold a digest, never the token."""
    by_token = Budgets(600)
    a = by_token.get("https://api.intercom.io/", "token-a")
    assert by_token.get("https://api.intercom.io", "token-a") is a
    assert by_token.get("https://api.intercom.io", "token-b") is not a
    assert by_token.get("https://api.eu.intercom.io", "token-a") is not a
    assert "token-a" not in repr(by_token._budgets)
    by_endpoint = Budgets(600, "endpoint")
    shared = by_endpoint.get("https://api.intercom.io", "token-a")
    assert by_endpoint.get("https://api.intercom.io", "token-b") is shared
    assert len(by_endpoint) == 1


def test_client_factory_gives_one_budget_to_the_targets_of_one_token() -> None:
    """The production factory paces by ``[intercom]``: at 60 calls a minute (a burst of 1)
    a second client of the same token waits its turn, one of another token does not."""
    slept: list[float] = []
    make = client_factory_with(slept.append, pacing=IntercomSettings(max_calls_per_minute=60))
    emulator = Emulator(tokens=[Token.parse("TOK_A:read"), Token.parse("TOK_B:read")])
    with emulator.serve() as running:
        settings = _settings(running.url, 3, token_envs=["TOK_A", "TOK_A", "TOK_B"])
        for target in settings.targets:
            client = make(target, SecretValue(target.token_env or ""))
            try:
                client.list_secrets()
            finally:
                client.close()
    assert len(slept) == 1
    assert 0.5 < slept[0] <= 1.0


# --- the emulator enforces Intercom's limit -----------------------------------------------------


def test_emulator_refuses_calls_beyond_an_apps_window() -> None:
    """Beyond the window's allowance the emulator answers 429 ``rate_limit_exceeded`` with the
    window's headers; the next window serves again; tokens of one app share its allowance."""
    time = SimTime(WALL)  # WALL is a multiple of 10: a window starts here
    tokens = [
        Token.parse("one:read:ws1:shared"),
        Token.parse("two:read:ws2:shared"),
        Token.parse("solo:read:ws3"),
    ]
    emulator = Emulator(tokens=tokens, clock=time.clock, rate_limit=RateLimit(per_app=60))
    with emulator.serve() as running, httpx.Client(base_url=running.url) as http:

        def get(token: str) -> httpx.Response:
            return http.get("/secure_mode_secrets", headers={"Authorization": f"Bearer {token}"})

        answers = [get("one" if n % 2 else "two") for n in range(10)]
        assert [a.status_code for a in answers] == [200] * 10
        assert answers[-1].headers["X-RateLimit-Limit"] == "10"
        assert answers[-1].headers["X-RateLimit-Remaining"] == "0"
        refused = get("one")
        assert refused.status_code == 429
        assert refused.json()["errors"][0]["code"] == "rate_limit_exceeded"
        assert refused.json()["errors"][0]["message"] == "Exceeded rate limit of 10 in 10_seconds"
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        assert refused.headers["X-RateLimit-Reset"] == str(int(WALL) + 10)
        assert get("solo").status_code == 200  # another app: its own allowance
        time.now += 10
        assert get("two").status_code == 200
        assert emulator.app.rates.refused == 1


def test_emulator_rate_limit_can_inform_without_refusing() -> None:
    """``RateLimit(enforce=False)`` keeps the headers and never refuses."""
    emulator = Emulator(
        tokens=[Token.parse("t:read")], rate_limit=RateLimit(per_app=60, enforce=False)
    )
    with emulator.serve() as running, httpx.Client(base_url=running.url) as http:
        for _ in range(12):
            answer = http.get("/secure_mode_secrets", headers={"Authorization": "Bearer t"})
            assert answer.status_code == 200
        assert answer.headers["X-RateLimit-Remaining"] == "0"


# --- many targets rotated against the enforced limit -------------------------------------------


def _settings(url: str, n: int, *, token_envs: list[str] | None = None, state: str = "x") -> Any:
    envs = token_envs or ["INTERCOM_TOKEN"] * n
    return parse_settings(
        {
            "vault": {"address": "http://127.0.0.1:1", "state_path": f"{state}/state"},
            "daemon": {"concurrency": 4},
            "targets": [
                {
                    "name": f"t{i}",
                    "base_url": url,
                    "token_env": envs[i],
                    "secret_name": f"Paced {i}",
                    "vault_path": f"{state}/t{i}",
                    "schedule": "1d",
                    "grace_period": "0s",
                }
                for i in range(n)
            ],
        }
    )


def _rotate_many(openbao: Any, vault_settings: Any, vault_env: dict[str, str], paced: bool) -> Any:
    """Twelve targets of one app (one token) provisioned, then all rotated a day later, four at
    a time, against an emulator allowing 20 calls per 10 s; pacing at 80 % of that, or none."""
    time = SimTime()
    emulator = Emulator(
        tokens=[Token.parse("paced-token:read,write")],
        clock=time.clock,
        rate_limit=RateLimit(per_app=120),
    )
    budgets = Budgets(96, factory=lambda per_minute: budget(per_minute, time))
    with emulator.serve() as running:
        raw = _settings(running.url, 12, state=vault_settings.state_path.removesuffix("/state"))
        settings = raw.model_copy(update={"vault": vault_settings})

        def make(target: Any, token: SecretValue) -> IntercomClient:
            return IntercomClient(
                token,
                base_url=target.base_url,
                retry=RetryPolicy(attempts=2),
                sleep=time.sleep,
                clock=time.clock,
                budget=budgets.get(target.endpoint, token.reveal()) if paced else None,
            )

        now = [datetime(2026, 11, 30, tzinfo=UTC)]
        environ = {**vault_env, "INTERCOM_TOKEN": "paced-token"}
        vault = Vault(settings.vault, environ=environ)
        reconciler = Reconciler(
            settings, vault, environ=environ, client_factory=make, clock=lambda: now[0]
        )
        try:
            first = reconciler.reconcile_all()
            now[0] += timedelta(days=2)
            second = reconciler.reconcile_all()
        finally:
            reconciler.close()
            vault.close()
        return time, emulator, budgets, first, second


def test_rotating_many_targets_of_one_app_is_paced_without_a_429(
    openbao: Any, vault_settings: Any, vault_env: dict[str, str]
) -> None:
    """Provisioning and rotating twelve targets of one app (60 calls, three times what one
    window allows) meets no 429: the shared budget spaces the calls across windows instead."""
    time, emulator, budgets, first, second = _rotate_many(
        openbao, vault_settings, vault_env, paced=True
    )
    assert all(r.error is None for r in [*first, *second]), [*first, *second]
    assert len(emulator.store.all()) == 24  # one secret each, then one more each
    assert len([s for s in emulator.store.all() if s.deleted_at is None]) == 12
    assert emulator.app.rates.refused == 0
    assert emulator.app.rates.busiest <= 20
    (paced,) = budgets._budgets.values()
    assert paced.waits > 0
    # 60 calls at 96 a minute, a burst of 1.6: at least 36 simulated seconds.
    assert time.now - WALL >= (60 - paced.burst) * 60 / 96 - 1e-6


def test_the_same_rotations_unpaced_meet_429s(
    openbao: Any, vault_settings: Any, vault_env: dict[str, str]
) -> None:
    """The control: without a budget the same run outruns the emulator's limit and is refused,
    so the test above proves pacing, not an idle emulator."""
    _time, emulator, _budgets, _first, _second = _rotate_many(
        openbao, vault_settings, vault_env, paced=False
    )
    assert emulator.app.rates.refused > 0
