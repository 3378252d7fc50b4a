"""Whole rotations on a real OpenBao dev server and the Intercom emulator.

The clock is injected: passes "later" are the same process (or a fresh reconciler, as a CronJob
would be) with the clock moved on. Every test ends by scanning everything logged for every
secret the emulator ever issued (see the ``logged`` fixture).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from rotator import failpoints
from rotator.cli.context import Parts
from rotator.config import Settings, parse_settings
from rotator.core.observation import RotateNow
from rotator.core.record import Phase
from rotator.daemon import Daemon
from rotator.emulator import Token, user_hash
from rotator.emulator.server import INTERCOM_EMULATOR_TOKEN
from rotator.intercom import IntercomClient, Platforms, RetryPolicy
from rotator.reconciler import Reconciler
from rotator.signing import signature_headers
from rotator.vault import Vault, VaultUnavailable

HOOK_TOKEN = "hook-token-for-tests-0123456789"
HMAC_KEY = "hmac-key-for-tests-0123456789abc"
START = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class World:
    """One target wired to the emulator and OpenBao, with helpers to look at both."""

    settings: Settings
    environ: dict[str, str]
    clock: Clock
    emulator: Any
    openbao: Any
    reconcilers: list[Reconciler] = field(default_factory=list)

    def reconciler(self, me: str | None = None, **kwargs: Any) -> Reconciler:
        """A reconciler on this world; ``client_factory`` may wrap the Intercom client."""
        vault = Vault(self.settings.vault, environ=self.environ)
        kwargs.setdefault(
            "client_factory",
            lambda target, token: IntercomClient(
                token,
                base_url=target.base_url,
                retry=RetryPolicy(attempts=2),
                sleep=lambda _s: None,
            ),
        )
        reconciler = Reconciler(
            self.settings, vault, environ=self.environ, clock=self.clock, me=me, **kwargs
        )
        self.reconcilers.append(reconciler)
        return reconciler

    def daemon(self, reconciler: Reconciler | None = None, **kwargs: Any) -> Daemon:
        """A daemon on this world (not started), its hook judging signatures on the world's
        clock."""
        reconciler = reconciler or self.reconciler()
        kwargs.setdefault("clock", lambda: self.clock().timestamp())
        return Daemon(self.settings, reconciler, reconciler.vault, environ=self.environ, **kwargs)

    def parts(self, **kwargs: Any) -> Parts:
        """What the CLI verbs work with (``rotator.cli.context.Parts``), on this world."""
        reconciler = self.reconciler(**kwargs)
        return Parts(self.settings, reconciler.vault, reconciler)

    @property
    def target(self):
        return self.settings.targets[0]

    def consumer(self) -> dict[str, Any]:
        """What a consumer reads from Vault: the documented five fields."""
        vault = Vault(self.settings.vault, environ=self.environ)
        try:
            data = vault.read(self.target.vault_path).data
        finally:
            vault.close()
        assert data is not None
        return data

    def hand_made_secret(self, name: str = "Legacy Web", created_at: int | None = None) -> str:
        """Create a secret at Intercom outside rotator and write it at the consumers' path, as
        an operator would by hand; returns its id."""
        client = IntercomClient(INTERCOM_EMULATOR_TOKEN, base_url=self.emulator.url)
        try:
            made = client.create_secret(name, Platforms.from_names(self.target.platforms))
        finally:
            client.close()
        stamp = int(self.clock().timestamp()) if created_at is None else created_at
        vault = Vault(self.settings.vault, environ=self.environ)
        try:
            vault.write(
                self.target.vault_path,
                {
                    "secret": made.secret.reveal(),
                    "intercom_id": made.info.id,
                    "name": name,
                    "created_at": stamp,
                    "rotation_id": None,
                },
                cas=vault.read(self.target.vault_path).version,
            )
        finally:
            vault.close()
        return made.info.id

    def live(self) -> list[str]:
        return [s.id for s in self.emulator.store.live("default")]

    def record(self):
        record, _ = self.reconciler().record(self.target.name)
        return record

    def close(self) -> None:
        for reconciler in self.reconcilers:
            reconciler.close()
            reconciler.vault.close()


def make_settings(openbao, emulator, vault_settings, **target: Any) -> Settings:
    raw = {
        "vault": {
            "address": openbao.address,
            "mount": "secret",
            "state_path": vault_settings.state_path,
        },
        "server": {
            "listen": "127.0.0.1:0",
            "hook_token_env": "ROTATOR_HOOK_TOKEN",
            "hook_hmac_key_env": "ROTATOR_HOOK_HMAC",
        },
        "daemon": {"reconcile_interval": "1h", "lease_ttl": "30s"},
        "targets": [
            {
                "name": "web",
                "base_url": emulator.url,
                "token_env": "INTERCOM_TOKEN",
                "secret_name": "Production Web",
                "platforms": ["web"],
                "vault_path": vault_settings.state_path.replace("/state", "/web"),
                "schedule": "30d",
                "grace_period": "24h",
                "confirmation": "hook-or-grace",
                **target,
            }
        ],
    }
    raw["targets"][0] = {k: v for k, v in raw["targets"][0].items() if v is not None}
    return parse_settings(raw)


@pytest.fixture
def world(openbao, emulator, vault_settings, vault_env, log_output, request):
    marker = request.node.get_closest_marker("target")
    overrides = marker.kwargs if marker else {}
    settings = make_settings(openbao, emulator, vault_settings, **overrides)
    environ = {
        **vault_env,
        "INTERCOM_TOKEN": INTERCOM_EMULATOR_TOKEN,
        "ROTATOR_HOOK_TOKEN": HOOK_TOKEN,
        "ROTATOR_HOOK_HMAC": HMAC_KEY,
    }
    w = World(settings, environ, Clock(), emulator, openbao)
    yield w
    w.close()
    output = log_output.getvalue()
    for secret in emulator.store.all():
        assert secret.secret not in output, "secret material reached the log"
    for value in (HOOK_TOKEN, HMAC_KEY, INTERCOM_EMULATOR_TOKEN, openbao.root_token):
        assert value not in output


def bootstrap(world: World) -> str:
    report = world.reconciler().reconcile_all()
    assert [r.phase for r in report] == ["idle"]
    return world.consumer()["intercom_id"]


# --- the rotation, three ways -------------------------------------------------------------------


def test_first_pass_provisions_a_secret_for_consumers(world):
    """An empty consumers' path gets a secret at once, in the documented shape."""
    first = bootstrap(world)
    data = world.consumer()
    assert set(data) == {"secret", "intercom_id", "name", "created_at", "rotation_id"}
    assert world.live() == [first]
    stored = world.emulator.store.get(first)
    assert data["secret"] == stored.secret
    assert data["name"] == stored.name
    assert data["name"].startswith("Production Web · rotator g1 ")


def test_rotation_via_grace(world):
    """Due -> new secret stored and both live -> grace elapses -> old one deleted."""
    old = bootstrap(world)
    world.clock.advance(days=31)
    reconciler = world.reconciler()
    [report] = reconciler.reconcile_all()
    assert report.phase == "awaiting_rollout"
    new = world.consumer()["intercom_id"]
    assert new != old
    assert sorted(world.live()) == sorted([old, new])
    world.clock.advance(hours=23)
    assert reconciler.reconcile_all()[0].phase == "awaiting_rollout"
    assert old in world.live()
    world.clock.advance(hours=2)
    assert reconciler.reconcile_all()[0].phase == "idle"
    assert world.live() == [new]
    record = world.record()
    assert (record.current_id, record.generation, record.history[-1].confirmed_by) == (
        new,
        2,
        "grace",
    )


def test_rotation_via_hook(world):
    """The daemon's hook confirms the new secret and the old one is retired right away."""
    old = bootstrap(world)
    world.clock.advance(days=31)
    reconciler = world.reconciler()
    daemon = world.daemon(reconciler)
    daemon.start()
    try:
        _wait(lambda: world.record().phase is Phase.AWAITING_ROLLOUT)
        new = world.consumer()["intercom_id"]
        answer = httpx.post(
            f"{daemon.server.url}/v1/targets/web/confirm",
            json={"secret_id": new},
            headers={"Authorization": f"Bearer {HOOK_TOKEN}"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "confirmed"
        _wait(lambda: world.record().phase is Phase.IDLE)
    finally:
        daemon.stop()
    assert world.live() == [new]
    assert old not in world.live()
    assert world.record().history[-1].confirmed_by == "hook:bearer"


def test_cronjob_style_passes_rotate_only_when_due(world):
    """A fresh reconciler every 5 minutes for two days (and a grace) rotates once a day."""
    world.settings = make_settings(
        world.openbao,
        world.emulator,
        world.settings.vault,
        schedule="1d",
        grace_period="1h",
        vault_path=world.target.vault_path,
    )
    bootstrap(world)
    phases = []
    for _ in range((2 * 24 + 1) * 12):
        world.clock.advance(minutes=5)
        reconciler = world.reconciler()
        phases.append(reconciler.reconcile_all()[0].phase)
        reconciler.close()
        reconciler.vault.close()
        world.reconcilers.clear()
    record = world.record()
    assert record.generation == 3  # the first secret, then one rotation per day
    assert len(record.history) == 3
    assert phases.count("awaiting_rollout") == 2 * 12  # one hour of grace, twice
    assert len(world.live()) == 1
    assert len(world.emulator.store.all()) == 3


def test_rotate_now_joins_a_rotation_in_progress(world):
    """A second rotate-now while one is awaiting rollout starts nothing new."""
    bootstrap(world)
    reconciler = world.reconciler()
    first = reconciler.reconcile_target("web", RotateNow())
    assert first.phase == "awaiting_rollout"
    second = reconciler.reconcile_target("web", RotateNow())
    assert second.rotation_id == first.rotation_id
    assert world.record().generation == 2
    assert len(world.emulator.store.all()) == 2


def test_emergency_rotation_retires_at_once(world):
    """rotate-now --emergency deletes the old secret once the new one is stored and read back."""
    old = bootstrap(world)
    report = world.reconciler().reconcile_target("web", RotateNow(emergency=True))
    assert report.phase == "idle"
    assert old not in world.live()
    assert world.live() == [world.consumer()["intercom_id"]]
    assert world.record().history[-1].emergency


# --- races ---------------------------------------------------------------------------------------


def test_racing_reconcilers_in_threads_rotate_once(world):
    """Eight reconcilers (as eight processes would be) race on rotate-now: one rotation."""
    bootstrap(world)
    reconcilers = [world.reconciler(me=f"racer-{i}") for i in range(8)]
    barrier = threading.Barrier(len(reconcilers))
    reports = []

    def race(r: Reconciler) -> None:
        barrier.wait()
        reports.append(r.reconcile_target("web", RotateNow()))

    threads = [threading.Thread(target=race, args=(r,)) for r in reconcilers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(reports) == 8
    assert world.record().generation == 2
    assert len(world.emulator.store.all()) == 2, "exactly one new secret was created"
    assert {r.rotation_id for r in reports if r.rotation_id} == {world.record().rotation_id}


# --- recovery and refusals --------------------------------------------------------------------


def test_lost_create_answer_orphan_is_deleted_and_rotation_completes(world):
    """post_drop: the secret is created but its answer lost; it is deleted, a fresh one made."""
    old = bootstrap(world)
    world.emulator.set_faults("post_drop=1:1")
    report = world.reconciler().reconcile_target("web", RotateNow())
    assert report.phase == "awaiting_rollout"
    secrets = world.emulator.store.all()
    assert len(secrets) == 3  # the first, the orphan, the new one
    orphan = secrets[1]
    assert orphan.deleted_at is not None
    new = world.consumer()["intercom_id"]
    assert new == secrets[2].id
    assert sorted(world.live()) == sorted([old, new])
    assert orphan.name in world.record().owned_names


def test_a_revoked_token_blocks_with_a_reason_and_no_side_effect(world):
    """A 401 blocks the target with a clear reason; nothing is created or written."""
    world.environ["INTERCOM_TOKEN"] = "revoked-token-0123456789"
    [report] = world.reconciler().reconcile_all()
    assert report.phase == "blocked"
    assert report.needs_operator
    record = world.record()
    assert "rejected the access token" in record.blocked_reason
    assert world.emulator.store.all() == []
    vault = Vault(world.settings.vault, environ=world.environ)
    assert vault.read(world.target.vault_path).data is None
    vault.close()


def test_blocked_target_resumes_on_rotate_now_after_the_fix(world):
    """Fix the cause, run rotate-now: the blocked target carries on."""
    world.environ["INTERCOM_TOKEN"] = "revoked-token-0123456789"
    world.reconciler().reconcile_all()
    world.environ["INTERCOM_TOKEN"] = INTERCOM_EMULATOR_TOKEN
    assert world.reconciler().reconcile_all()[0].phase == "blocked"
    report = world.reconciler().reconcile_target("web", RotateNow())
    assert report.phase == "idle"
    assert len(world.live()) == 1


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"Authorization": "Bearer forged-token-0123456789"}, {"secret_id": "NEW"}, 401),
        ({}, {"secret_id": "NEW"}, 401),
        ({"Authorization": f"Bearer {HOOK_TOKEN}"}, {"secret_id": "OLD"}, 409),
        ({"Authorization": f"Bearer {HOOK_TOKEN}"}, {"rotation_id": "rnotthisone1"}, 409),
    ],
)
def test_bad_confirmations_change_nothing(world, headers, body, status):
    """Forged tokens and confirmations naming the wrong secret are refused; state unchanged."""
    old = bootstrap(world)
    world.clock.advance(days=31)
    reconciler = world.reconciler()
    reconciler.reconcile_all()
    new = world.consumer()["intercom_id"]
    body = {k: {"NEW": new, "OLD": old}.get(v, v) for k, v in body.items()}
    before = reconciler.vault.read(reconciler.state_key("web"))
    daemon = world.daemon(reconciler)
    daemon.server.start()
    try:
        answer = httpx.post(
            f"{daemon.server.url}/v1/targets/web/confirm", json=body, headers=headers
        )
    finally:
        daemon.server.stop()
    assert answer.status_code == status
    assert reconciler.vault.read(reconciler.state_key("web")) == before
    assert sorted(world.live()) == sorted([old, new])


def test_replayed_signed_confirmation_is_refused(world):
    """A signed confirmation works once; the same bytes again are a replay (401)."""
    bootstrap(world)
    world.clock.advance(days=31)
    reconciler = world.reconciler()
    reconciler.reconcile_all()
    new = world.consumer()["intercom_id"]
    body = f'{{"secret_id": "{new}"}}'.encode()
    headers = {
        **signature_headers(HMAC_KEY, body, world.clock().timestamp()),
        "Content-Type": "application/json",
    }
    daemon = world.daemon(reconciler)
    daemon.server.start()
    try:
        first = httpx.post(
            f"{daemon.server.url}/v1/targets/web/confirm", content=body, headers=headers
        )
        state = reconciler.vault.read(reconciler.state_key("web"))
        again = httpx.post(
            f"{daemon.server.url}/v1/targets/web/confirm", content=body, headers=headers
        )
    finally:
        daemon.server.stop()
    assert first.status_code == 200
    assert again.status_code == 401
    assert reconciler.vault.read(reconciler.state_key("web")) == state


# --- consumers never notice ---------------------------------------------------------------------


def test_a_consumer_never_fails_across_five_rotations(world):
    """A consumer re-reading Vault for every signature verifies at Intercom throughout."""
    bootstrap(world)
    stop = threading.Event()
    stats = {"checks": 0, "failures": 0}
    address = f"{world.openbao.address}/v1/secret/data/{world.target.vault_path}"
    headers = {"X-Vault-Token": world.environ["VAULT_TOKEN"]}

    def consume() -> None:
        with httpx.Client() as http:
            while not stop.is_set():
                secret = http.get(address, headers=headers).json()["data"]["data"]["secret"]
                user = f"user-{stats['checks']}"
                valid = http.get(
                    f"{world.emulator.url}/__verify",
                    params={"user_id": user, "user_hash": user_hash(secret, user)},
                ).json()["valid"]
                stats["checks"] += 1
                stats["failures"] += 0 if valid else 1

    consumer = threading.Thread(target=consume)
    consumer.start()
    reconciler = world.reconciler()
    try:
        for _ in range(5):
            world.clock.advance(days=31)
            reconciler.reconcile_all()
            checks = stats["checks"]
            _wait(lambda c=checks: stats["checks"] > c + 5)  # the consumer has seen the new one
            world.clock.advance(days=2)
            assert reconciler.reconcile_all()[0].phase == "idle"
            checks = stats["checks"]
            _wait(lambda c=checks: stats["checks"] > c + 5)
    finally:
        stop.set()
        consumer.join(timeout=10)
    assert world.record().generation == 6
    assert stats["failures"] == 0
    assert stats["checks"] > 50


def test_workspace_isolation_is_respected(world):
    """A target never deletes a secret of another workspace, even under its own name."""
    world.emulator.emulator.add_token(Token.parse("other-ws-token:read,write:other"))
    other = IntercomClient("other-ws-token", base_url=world.emulator.url)
    foreign = other.create_secret(
        "Production Web · rotator g1 abcdef", Platforms.from_names(world.target.platforms)
    )
    other.close()
    bootstrap(world)
    world.reconciler().reconcile_target("web", RotateNow(emergency=True))
    assert world.emulator.store.get(foreign.info.id).deleted_at is None


def _wait(condition, timeout: float = 20.0) -> None:
    """Wait for something a real server (or the daemon's thread) does; fails after timeout."""
    done = threading.Event()
    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while not condition():
        if datetime.now(UTC) > deadline:
            raise AssertionError("condition not met in time")
        done.wait(0.02)


def test_an_existing_secret_is_adopted_then_retired_by_the_first_rotation(world):
    """A consumers' path already holding an intercom_id is taken as the current secret."""
    legacy_id = world.hand_made_secret()
    reconciler = world.reconciler()
    assert reconciler.reconcile_all()[0].phase == "idle"
    assert world.record().current_id == legacy_id
    assert world.live() == [legacy_id], "adoption alone creates nothing"
    world.clock.advance(days=31)
    reconciler.reconcile_all()
    world.clock.advance(days=2)
    reconciler.reconcile_all()
    assert world.emulator.store.get(legacy_id).deleted_at is not None
    assert world.live() == [world.consumer()["intercom_id"]]


def test_the_intercom_token_can_come_from_vault(world, openbao, emulator, vault_settings):
    """token_vault = "path#key" reads the Intercom token from Vault instead of the environment."""
    token_path = vault_settings.state_path.replace("/state", "/intercom-api")
    vault = Vault(world.settings.vault, environ=world.environ)
    vault.write(token_path, {"token": INTERCOM_EMULATOR_TOKEN}, cas=0)
    vault.close()
    world.settings = make_settings(
        openbao, emulator, vault_settings, token_env=None, token_vault=f"{token_path}#token"
    )
    del world.environ["INTERCOM_TOKEN"]
    assert world.reconciler().reconcile_all()[0].phase == "idle"
    assert len(world.live()) == 1


def test_each_transition_is_logged_once_as_a_canonical_event(world, log_output):
    """rotation.transition carries target, rotation_id, from, to and reason, once per change."""
    bootstrap(world)
    world.clock.advance(days=31)
    reconciler = world.reconciler()
    reconciler.reconcile_all()
    world.clock.advance(days=2)
    reconciler.reconcile_all()
    rotation_id = world.record().history[-1].rotation_id
    events = [json.loads(line) for line in log_output.getvalue().splitlines()]
    moves = [
        (e["from"], e["to"])
        for e in events
        if e.get("event") == "rotation.transition" and e.get("rotation_id") == rotation_id
    ]
    assert moves == [
        ("idle", "creating"),
        ("creating", "awaiting_rollout"),
        ("awaiting_rollout", "retiring"),
        ("retiring", "idle"),
    ]
    for e in events:
        if e.get("event") == "rotation.transition":
            assert {"target", "rotation_id", "from", "to", "reason", "timestamp", "level"} <= set(e)
            assert e["target"] == "web"


def test_a_crashed_holders_lease_is_taken_over_after_its_ttl(
    world, openbao, emulator, vault_settings
):
    """A process dies mid-rotation holding the lease: a one-shot run waits out the ttl (by its
    own clock) and finishes the job; nothing is created twice."""
    world.settings = make_settings(openbao, emulator, vault_settings)
    world.settings = world.settings.model_copy(
        update={"daemon": world.settings.daemon.model_copy(update={"lease_ttl": 2.0})}
    )
    bootstrap(world)
    failpoints.reset_for_tests("intercom.before_create=raise")
    try:
        with pytest.raises(failpoints.FailpointError):
            world.reconciler(me="doomed").reconcile_target("web", RotateNow())
    finally:
        failpoints.reset_for_tests()
    assert world.record().lease.holder == "doomed"
    assert world.record().phase is Phase.CREATING
    ticks = iter(range(10_000))
    survivor = world.reconciler(me="survivor", monotonic=lambda: float(next(ticks)))
    assert survivor.reconcile_target("web").held_off
    report = survivor.reconcile_target("web", RotateNow(), wait_for_lease=True)
    assert report.phase == "awaiting_rollout"
    assert not report.held_off
    assert len(world.emulator.store.all()) == 2


def test_an_idle_pass_costs_one_vault_read_and_no_intercom_call(world):
    """A target that is idle and not due is settled from its record alone."""
    bootstrap(world)
    calls: list[tuple[str, str]] = []
    requests_seen: list[str] = []
    vault = Vault(
        world.settings.vault,
        environ=world.environ,
        observe=lambda op, status, _s: calls.append((op, status)),
    )
    reconciler = Reconciler(
        world.settings,
        vault,
        environ=world.environ,
        clock=world.clock,
        client_factory=lambda target, token: IntercomClient(
            token,
            base_url=target.base_url,
            observe=lambda op, _status, _s: requests_seen.append(op),
        ),
    )
    world.reconcilers.append(reconciler)
    reconciler.reconcile_all()  # logs in, checks the mount
    calls.clear()
    [report] = reconciler.reconcile_all()
    assert report.reason == "not due"
    assert [op for op, _ in calls] == ["read"]
    assert requests_seen == []


def test_a_token_replaced_in_vault_is_picked_up_without_a_restart(
    world, openbao, emulator, vault_settings
):
    """After Intercom refuses the token, the long-lived reconciler (a daemon) reads it again:
    replacing it in Vault and running rotate-now is enough, no restart."""
    token_path = vault_settings.state_path.replace("/state", "/intercom-api")
    vault = Vault(world.settings.vault, environ=world.environ)
    version = vault.write(token_path, {"token": "revoked-token-0123456789"}, cas=0)
    world.settings = make_settings(
        openbao, emulator, vault_settings, token_env=None, token_vault=f"{token_path}#token"
    )
    daemon_like = world.reconciler()
    assert daemon_like.reconcile_all()[0].phase == "blocked"
    vault.write(token_path, {"token": INTERCOM_EMULATOR_TOKEN}, cas=version)
    vault.close()
    assert daemon_like.reconcile_target("web", RotateNow()).phase == "idle"
    assert len(world.live()) == 1


def test_the_daemon_starts_while_vault_is_away_and_loads_hook_credentials_later(
    world, openbao, emulator, vault_settings, monkeypatch
):
    """With the hook token in Vault and Vault away at start, the daemon serves (not ready, hook
    503) instead of crash-looping, and takes the token once Vault answers."""
    token_path = vault_settings.state_path.replace("/state", "/hook")
    vault = Vault(world.settings.vault, environ=world.environ)
    vault.write(token_path, {"token": HOOK_TOKEN}, cas=0)
    vault.close()
    settings = make_settings(openbao, emulator, vault_settings)
    world.settings = settings.model_copy(
        update={
            "server": settings.server.model_copy(
                update={
                    "hook_token_env": None,
                    "hook_token_vault": token_path,
                    "hook_hmac_key_env": None,
                }
            )
        }
    )
    reconciler = world.reconciler()
    away = {"times": 2}
    real_read_value = reconciler.vault.read_value

    def read_value(path: str, key: str):
        if away["times"]:
            away["times"] -= 1
            raise VaultUnavailable("Vault is restarting (injected)")
        return real_read_value(path, key)

    monkeypatch.setattr(reconciler.vault, "read_value", read_value)
    monkeypatch.setattr(Daemon, "credentials_retry", 0.05)
    daemon = Daemon(world.settings, reconciler, reconciler.vault, environ=world.environ)
    daemon.start()
    try:
        url = f"{daemon.server.url}/v1/targets/web/confirm"
        headers = {"Authorization": f"Bearer {HOOK_TOKEN}"}
        _wait(lambda: httpx.post(url, json={"secret_id": "1"}, headers=headers).status_code != 503)
        assert httpx.post(url, json={"secret_id": "1"}, headers=headers).status_code == 409
        assert httpx.get(f"{daemon.server.url}/readyz").status_code == 200
    finally:
        daemon.stop()


def test_a_process_without_its_token_fails_alone_and_writes_nothing(world):
    """A process missing its Intercom token variable fails its own pass (an error, exit 1) and
    leaves the shared record as it was: the healthy processes carry on."""
    bootstrap(world)
    before = state_version(world)
    world.clock.advance(days=31)
    broken = dict(world.environ)
    del broken["INTERCOM_TOKEN"]
    vault = Vault(world.settings.vault, environ=broken)
    lonely = Reconciler(world.settings, vault, environ=broken, clock=world.clock)
    try:
        [report] = lonely.reconcile_all()
    finally:
        lonely.close()
        vault.close()
    assert report.error is not None
    assert "INTERCOM_TOKEN" in report.error
    assert state_version(world) == before
    assert world.reconciler().reconcile_all()[0].phase == "awaiting_rollout"


def state_version(world: World) -> int:
    vault = Vault(world.settings.vault, environ=world.environ)
    try:
        return vault.read(f"{world.settings.vault.state_path}/web").version
    finally:
        vault.close()
