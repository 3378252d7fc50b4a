"""Regressions: concrete ways an adversarial review found to break a rule of PRODUCT.md.

Each test's first sentence states the behaviour it proves; the rest of its docstring is the
scenario that used to break it. They run on the real OpenBao dev server and the Intercom
emulator (``world`` from test_rotation).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
from test_rotation import START, World, bootstrap, make_settings
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here

from rotator.config import ConfigError
from rotator.core import machine
from rotator.core.observation import ConsumerView, Failed, Observation, Policy, RotateNow
from rotator.core.record import Phase, Record
from rotator.emulator.server import INTERCOM_EMULATOR_TOKEN
from rotator.intercom import IntercomClient, IntercomUnavailable, Platforms, RetryPolicy
from rotator.reconciler import Reconciler
from rotator.vault import Vault


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class GatedClient(IntercomClient):
    """A real client whose first list and/or create waits for the test to let it go.

    ``entered_*`` is set when the call is reached (after the reconciler persisted the decision
    that announced it); the call proceeds once ``release_*`` is set. Only the first call waits.
    """

    def __init__(self, *args: Any, gates: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gates = gates

    def _gate(self, op: str) -> None:
        entered, release = self._gates.get(f"entered_{op}"), self._gates.get(f"release_{op}")
        if release is None or self._gates.get(f"used_{op}"):
            return
        self._gates[f"used_{op}"] = True
        entered.set()
        assert release.wait(30), f"{op} gate never released"

    def list_secrets(self):  # type: ignore[no-untyped-def]
        if self._gates.get("list_fails"):
            raise IntercomUnavailable("Intercom failed to list secrets (503: injected).")
        self._gate("list")
        return super().list_secrets()

    def create_secret(self, name, platforms):  # type: ignore[no-untyped-def]
        self._gate("create")
        return super().create_secret(name, platforms)


def gated_reconciler(world: World, me: str, gates: dict[str, Any], **kwargs: Any) -> Reconciler:
    return world.reconciler(
        me=me,
        client_factory=lambda target, token: GatedClient(
            token,
            base_url=target.base_url,
            retry=RetryPolicy(attempts=2),
            sleep=lambda _s: None,
            gates=gates,
        ),
        **kwargs,
    )


def state_entry(world: World):
    vault = Vault(world.settings.vault, environ=world.environ)
    try:
        return vault.read(f"{world.settings.vault.state_path}/{world.target.name}")
    finally:
        vault.close()


# --- 1. rule 4: a rotate-now that loses a check-and-set re-applies itself to a NEWER state ------


def test_concurrent_emergency_rotate_nows_make_one_rotation(world):
    """Two concurrent rotate-now calls make one rotation, not two. Scenario: Two operators run ``rotate-now web --emergency`` at the same time (a leaked key).

    R2 reads the idle record, then is slow (its list waits); R1 does the whole emergency rotation
    (S0 -> S1, S0 deleted) and rests. R2 decides to create from its stale idle read, loses the
    check-and-set, and ``Reconciler._pass`` restarts ``_attempt`` with the SAME RotateNow on the
    new idle record: a second rotation (S1 -> S2) starts and, being an emergency, deletes S1 at
    once, the secret consumers were just given. Rule 4: "A rotate-now during a rotation joins it
    (or says so); it never starts a second one."
    """
    bootstrap(world)
    gates = {"entered_list": threading.Event(), "release_list": threading.Event()}
    slow = gated_reconciler(world, "slow-operator", gates)
    fast = world.reconciler(me="fast-operator")
    reports: list[Any] = []
    thread = threading.Thread(
        target=lambda: reports.append(slow.reconcile_target("web", RotateNow(emergency=True)))
    )
    thread.start()
    assert gates["entered_list"].wait(30)
    first = fast.reconcile_target("web", RotateNow(emergency=True))
    assert first.phase == "idle"
    gates["release_list"].set()
    thread.join(60)
    assert reports, "the slow rotate-now never returned"
    assert world.record().generation == 2, "a second rotation was started by the joiner"
    assert len(world.emulator.store.all()) == 2


# --- 2. an orphan sweep swallows the rotation that was asked for --------------------------------


def _plant_orphan(world: World) -> str:
    """The state a stale process leaves: it persisted planned_name N, another process moved on,
    then its POST of N finally landed. N is in owned_names; the secret is live; nothing uses it."""
    name = "Production Web · rotator g1 0ff1ce"
    client = IntercomClient(INTERCOM_EMULATOR_TOKEN, base_url=world.emulator.url)
    orphan = client.create_secret(name, Platforms.from_names(world.target.platforms))
    client.close()
    vault = Vault(world.settings.vault, environ=world.environ)
    key = f"{world.settings.vault.state_path}/{world.target.name}"
    entry = vault.read(key)
    record = Record.from_storage(entry.data)
    vault.write(
        key, replace(record, owned_names=record.remember_name(name)).to_storage(), cas=entry.version
    )
    vault.close()
    return orphan.info.id


def test_emergency_rotate_now_still_rotates_after_an_orphan_sweep(world):
    """An emergency rotate-now still rotates when an orphan is swept first. Scenario: ``rotate-now --emergency`` (the current secret leaked) on an idle target that has an orphan:
    the pass deletes the orphan, ``_complete`` rests with "orphans swept", and the command is
    dropped (the reconciler clears it after the first step). Exit 0, the leaked secret stays live.
    """
    leaked = bootstrap(world)
    orphan = _plant_orphan(world)
    report = world.reconciler().reconcile_target("web", RotateNow(emergency=True))
    assert orphan not in world.live()
    assert leaked not in world.live(), f"emergency rotation did not happen: {report.reason!r}"
    assert world.record().generation == 2


# --- 3. rule 1: adoption retires the previous current secret with no grace ---------------------


def test_a_foreign_consumer_secret_blocks_instead_of_deleting_the_previous(world):
    """A secret put at the consumers' path by hand blocks the target; nothing is deleted. Scenario: An operator puts a secret they made by hand into the consumers' path (documented: the path's
    intercom_id is the current secret). On the next due pass ``_idle`` adopts it, the previous
    rotator-made secret becomes an 'orphan' (owned name, not current/consumer) and is deleted in
    the same pass: no confirmation, no grace, while services still sign with it."""
    previous = bootstrap(world)
    client = IntercomClient(INTERCOM_EMULATOR_TOKEN, base_url=world.emulator.url)
    manual = client.create_secret("Hand made", Platforms.from_names(world.target.platforms))
    client.close()
    vault = Vault(world.settings.vault, environ=world.environ)
    current = vault.read(world.target.vault_path)
    vault.write(
        world.target.vault_path,
        {
            "secret": manual.secret.reveal(),
            "intercom_id": manual.info.id,
            "name": "Hand made",
            "created_at": int(world.clock().timestamp()),
            "rotation_id": None,
        },
        cas=current.version,
    )
    vault.close()
    world.clock.advance(days=31)
    world.reconciler().reconcile_all()
    assert previous in world.live(), "deleted with neither confirmation nor grace"


# --- 4. a process that may not act still writes: a failed gather tramples the holder's lease ----


def test_a_failed_list_in_a_non_holder_leaves_the_holders_record_alone(world):
    """A process without the lease writes nothing, even when its list fails. Scenario: A holds the lease and its POST is in flight. B (say a CronJob) runs a pass; its list fails
    transiently. ``step`` sends gather failures through ``_apply_result`` -> ``_fail`` ->
    ``_settle`` before any lease check, so B writes the record: clears A's lease, sets a backoff.
    A's Created can then not be persisted: the new secret becomes an orphan and the rotation is
    parked in B's backoff."""
    bootstrap(world)
    gates_a = {"entered_create": threading.Event(), "release_create": threading.Event()}
    a = gated_reconciler(world, "holder-A", gates_a)
    b = gated_reconciler(world, "cronjob-B", {"list_fails": True})
    done: list[Any] = []
    thread = threading.Thread(target=lambda: done.append(a.reconcile_target("web", RotateNow())))
    thread.start()
    try:
        assert gates_a["entered_create"].wait(30)
        before = state_entry(world).version
        b.reconcile_all()
        after_entry = state_entry(world)
        after, holder = after_entry.version, (after_entry.data["lease"] or {}).get("holder")
    finally:
        gates_a["release_create"].set()
        thread.join(60)
    assert after == before, "B, which may not act, wrote the record"
    assert holder == "holder-A"


# --- 5. rule 6 / robustness: a huge rate-limit delay crashes the pass with a traceback ----------


def test_a_rate_limit_reset_in_milliseconds_is_capped(world):
    """An absurd server-requested delay is capped, not a crash. Scenario: X-RateLimit-Reset given in epoch *milliseconds* (or any Retry-After above ~2.5e11 s): the
    client returns it as ``delay``; ``rotator.core.failure.failed`` computes ``now + timedelta(seconds=delay)``
    -> OverflowError, which is not a RotatorError: ``_guarded`` lets it out, ``reconcile_all``
    aborts for every target, the CLI prints 'internal error' with a traceback in the log."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429,
            json={"type": "error.list", "errors": [{"code": "rate_limit_exceeded"}]},
            headers={"X-RateLimit-Reset": str(int(time.time() * 1000))},
        )

    reconciler = world.reconciler(
        client_factory=lambda target, token: IntercomClient(
            token,
            base_url=target.base_url,
            transport=httpx.MockTransport(handler),
            retry=RetryPolicy(attempts=1),
            sleep=lambda _s: None,
        ),
    )
    [report] = reconciler.reconcile_all()
    assert report.phase == "idle"


def test_the_machine_caps_a_huge_server_delay():
    """The core caps a huge delay instead of overflowing. Scenario: The same at the pure core: ``step`` raises instead of capping the wait."""
    policy = Policy("web", "W", timedelta(hours=1), "hook-or-grace")
    record = Record(target="web", phase=Phase.CREATING, generation=1)
    obs = Observation(
        policy=policy,
        consumer=ConsumerView(),
        intercom=None,
        due=False,
        me="me",
        fresh="0123456789abcdef0123",
        result=Failed("rate limited", permanent=False, delay=1.0e12),
    )
    decision = machine.step(record, obs, START)
    assert decision.record.retry_at is not None


# --- 6. rule 6: a consumers' path with created_at in milliseconds gives a traceback ------------


def test_a_created_at_in_milliseconds_is_ignored(world):
    """A created_at in milliseconds at the consumers' path is ignored, not a crash. Scenario: The documented consumer shape has ``created_at``; a user pre-populating it (adoption) with
    JavaScript's Date.now() (ms) makes ``machine.initial_record`` call
    ``datetime.fromtimestamp(1.7e12)`` -> ValueError 'year ... out of range' on every pass."""
    world.hand_made_secret(created_at=int(world.clock().timestamp() * 1000))
    [report] = world.reconciler().reconcile_all()
    assert report.error is None or "created_at" in report.error


# --- 7. rule 6: a vault_path that is a state record is accepted --------------------------------


def test_config_refuses_a_vault_path_under_the_state_path(openbao, emulator, vault_settings):
    """A vault_path under vault.state_path is a configuration error. Scenario: ``vault_path = "<state_path>/<name>"`` makes the consumers' secret and the state record the
    same KV entry: every Store loses its check-and-set against the record write just before it,
    the target never leaves 'creating' ("lost check-and-set repeatedly"), needs_operator is False.
    (Pointing it at ANOTHER target's record overwrites that record.) Config should refuse it."""
    with pytest.raises(ConfigError, match=r"lies under vault\.state_path"):
        make_settings(
            openbao, emulator, vault_settings, vault_path=f"{vault_settings.state_path}/web"
        )


# --- 8. a confirmation for the right secret, sent as soon as consumers have it, is lost ---------


def test_a_confirmation_right_after_the_store_is_kept(world, monkeypatch):
    """A confirmation that arrives before "awaiting_rollout" is persisted still counts. Scenario: The process dies right after writing the consumers' path (failpoint vault.after_store).
    Consumers (Vault Agent) already render the new secret and their deploy hook confirms it by id:
    the record is still 'creating', so the confirmation is 'not_awaiting' and dropped. The next
    pass moves to awaiting_rollout and, with confirmation = "hook", waits for a confirmation that
    was already sent."""
    world.settings = make_settings(
        world.openbao,
        world.emulator,
        world.settings.vault,
        confirmation="hook",
        vault_path=world.target.vault_path,
    )
    bootstrap(world)
    import rotator.reconciler.store as reconciler_module

    def crash_after_store(name: str) -> None:
        if name == "vault.after_store":
            raise KeyboardInterrupt  # stands for SIGKILL: nothing after this line runs

    monkeypatch.setattr(reconciler_module, "failpoint", crash_after_store)
    with pytest.raises(KeyboardInterrupt):
        world.reconciler().reconcile_target("web", RotateNow())
    monkeypatch.undo()
    stored = world.consumer()["intercom_id"]
    result = world.reconciler().confirm("web", secret_id=stored, rotation_id=None, via="hook:t")
    assert result.status == "confirmed", result


# --- 9. rule 5: KVEntry's dataclass repr carries the material ------------------------------------


def test_kventry_repr_hides_secret_material(world):
    """A KVEntry's repr never shows the data it holds. Scenario: ``Vault.read`` returns ``KVEntry(data=..., version=...)`` with the default dataclass repr:
    for the consumers' path that is the material under 'secret', for the state record under
    'pending_secret'. Python's repr uses single quotes, which the JSON-shaped redaction pattern
    does not match; only the by-value registry stands between it and a log line."""
    bootstrap(world)
    vault = Vault(world.settings.vault, environ=world.environ)
    try:
        entry = vault.read(world.target.vault_path)
    finally:
        vault.close()
    leaked = entry.data["secret"] in repr(entry)  # not asserted directly: pytest would print it
    assert not leaked, "repr(KVEntry) contains the consumers' secret material"


# --- 10. rule 6: ``confirm --secret-id ""`` confirms whatever is pending -------------------------


def test_confirm_with_an_empty_secret_id_is_refused(world, monkeypatch, capsys):
    """confirm --secret-id "" is a usage error that changes nothing. Scenario: A deploy script runs ``rotator confirm web --secret-id "$NEW_ID"`` with $NEW_ID unset.
    ``commands.confirm`` does ``secret_id or record.pending_id``: the empty id silently becomes
    "whatever is pending now", the rotation is confirmed and the old secret deleted at once."""
    from rotator.cli import context, rotate

    old = bootstrap(world)
    world.clock.advance(days=31)
    world.reconciler().reconcile_all()
    assert world.record().phase is Phase.AWAITING_ROLLOUT
    monkeypatch.setattr(context.Context, "settings", lambda _self: world.settings)
    with pytest.raises(context.UsageError, match="--secret-id is empty"):
        rotate.confirm(context.Context(None, world.environ), "web", secret_id="")
    assert world.record().confirmed_at is None
    assert old in world.live()


# --- 11. blocked/resume: a rotation blocked in awaiting_rollout can never be resumed ---------------


def test_blocked_awaiting_rollout_resumes_on_rotate_now(world):
    """A rotation blocked while awaiting rollout resumes on rotate-now. Scenario: During awaiting_rollout a pipeline rewrites the consumers' path with the OLD secret. The
    target blocks with "Check it, then run rotate-now to resume". rotate-now restores
    resume_phase=awaiting_rollout, ``_awaiting`` sees the same mismatch, and blocks again: the
    advice cannot work, and the record (which still holds the new material) is stuck for good."""
    old = bootstrap(world)
    old_material = world.emulator.store.get(old).secret
    world.clock.advance(days=31)
    world.reconciler().reconcile_all()
    vault = Vault(world.settings.vault, environ=world.environ)
    entry = vault.read(world.target.vault_path)
    vault.write(
        world.target.vault_path,
        {**entry.data, "secret": old_material, "intercom_id": old},
        cas=entry.version,
    )
    vault.close()
    assert world.reconciler().reconcile_all()[0].phase == "blocked"
    report = world.reconciler().reconcile_target("web", RotateNow())
    assert report.phase != "blocked", report.reason


# --- 12. first provisioning + a late orphan: permanently blocked ---------------------------------


def test_first_provisioning_with_a_late_orphan_completes(world, monkeypatch):
    """First provisioning completes, and the late orphan is deleted. Scenario: Fresh target (empty consumers' path, current_id None).
    A persists CREATING (name N1) and pauses before its POST. B takes over after the ttl, creates
    S2 (N2), persists it, and dies before storing it. A wakes: its POST of N1 lands (S1, an orphan
    by name) and its persist loses. C takes over: pending S2 -> Store -> ``_stored`` with
    current_id None -> ``_retire`` folds the orphan S1 into old_ids -> ``_unsafe_to_delete``
    refuses ("neither confirmed nor past its grace period", which can never become true in
    retiring) -> blocked; rotate-now resumes 'retiring' and blocks again. S1 never reached Vault
    and is safe to delete (rule 3 says: delete it)."""
    import rotator.reconciler.store as reconciler_module

    gates_a = {"entered_create": threading.Event(), "release_create": threading.Event()}
    a = gated_reconciler(world, "paused-A", gates_a)
    clock_b, clock_c = FakeMonotonic(), FakeMonotonic()
    b = gated_reconciler(world, "crashing-B", {}, monotonic=clock_b)
    c = gated_reconciler(world, "C", {}, monotonic=clock_c)
    done: list[Any] = []
    thread = threading.Thread(target=lambda: done.append(a.reconcile_all()))
    thread.start()
    try:
        assert gates_a["entered_create"].wait(30)
        assert b.reconcile_all()[0].held_off
        clock_b.now += 31  # A's lease sat unchanged for its ttl (30 s) of B's time

        def crash_before_store(name: str) -> None:
            if name == "vault.before_store":
                raise KeyboardInterrupt  # stands for SIGKILL

        monkeypatch.setattr(reconciler_module, "failpoint", crash_before_store)
        with pytest.raises(KeyboardInterrupt):
            b.reconcile_all()
        monkeypatch.undo()
    finally:
        gates_a["release_create"].set()
        thread.join(60)
    assert len(world.live()) == 2  # S1 (A's late POST) and S2 (B's, material in the record)
    assert c.reconcile_all()[0].held_off
    clock_c.now += 31
    report = c.reconcile_all()[0]
    assert report.phase != "blocked", report.reason
    assert c.reconcile_target("web", RotateNow()).phase != "blocked"
