"""The clock every process shares (Vault's) and the workspace a record belongs to: the pure
rules, and Vault's answers telling its time (a real OpenBao dev server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rotator.core.binding import binding_for, binding_problem, needs_evidence
from rotator.core.observation import LiveSecret
from rotator.core.record import Binding, Record
from rotator.redaction import SecretValue
from rotator.vault import Vault
from rotator.vault.clock import ClockUnknown, SharedClock

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class Monotonic:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def test_the_shared_clock_is_never_ahead_of_the_server():
    """Each observation is a lower bound; the clock keeps the best one and runs on with the
    monotonic clock, so it never reads later than the server did."""
    mono = Monotonic()
    clock = SharedClock(mono)
    with pytest.raises(ClockUnknown):
        clock.now()
    clock.observe(T0, received=mono.now + 0.4)  # the answer took 0.4 s to reach us
    assert clock.now() == T0 - timedelta(seconds=0.4)
    clock.observe(T0 + timedelta(seconds=0.3), received=mono.now + 0.35)  # a tighter bound
    assert clock.now() == T0 - timedelta(seconds=0.05)
    mono.now += 3600
    assert clock.now() == T0 + timedelta(hours=1) - timedelta(seconds=0.05)


def test_the_shared_clock_ignores_the_wall_clock_and_tells_its_skew():
    """How far a process's wall clock is off changes nothing but the skew it reports."""
    mono = Monotonic()
    clock = SharedClock(mono)
    clock.observe(T0, received=mono.now)
    assert clock.skew(T0 + timedelta(days=2)) == pytest.approx(2 * 86400)
    assert clock.now() == T0


def test_vault_answers_tell_its_time(openbao, vault_settings, vault_env):
    """Reads and writes of a real OpenBao feed the clock: after a write it reads no earlier than
    the version's created_time, and it is within a second or two of the server's time."""
    vault = Vault(vault_settings, environ=vault_env)
    try:
        path = f"{vault_settings.state_path}/clock"
        vault.write(path, {"a": 1}, cas=0)
        entry = vault.read(path)
        assert entry.created_time is not None
        assert vault.clock.now() >= entry.created_time
        assert abs((vault.clock.now() - datetime.now(UTC)).total_seconds()) < 5
    finally:
        vault.close()


MINE = binding_for("https://api.intercom.io", SecretValue("token-of-production-0123"))


def test_a_binding_never_carries_the_token():
    """The workspace is a digest of the token: equal for equal tokens, never the token."""
    assert binding_for("https://api.intercom.io", SecretValue("token-of-production-0123")) == MINE
    assert "token-of-production" not in repr(MINE)
    other = binding_for("https://api.intercom.io", SecretValue("token-of-staging-000123"))
    assert other.workspace != MINE.workspace


def test_a_record_takes_its_own_binding_and_refuses_another_without_evidence():
    """Same binding: act. Another workspace: act only if its list shows the target's secret."""
    record = Record(target="web", current_id="103", binding=MINE)
    staging = Binding("https://api.intercom.io", "token:ffff")
    assert not needs_evidence(record, MINE)
    assert binding_problem(record, MINE, None) is None
    assert needs_evidence(record, staging)
    problem = binding_problem(record, staging, [LiveSecret("7", "Staging Web")])
    assert problem is not None
    assert "belongs to Intercom at https://api.intercom.io" in problem
    assert binding_problem(record, staging, [LiveSecret("103", "Web")]) is None, "a new token"


def test_a_moved_endpoint_needs_a_secret_it_named():
    """Behind another endpoint, the listed secret must also carry a name this target gave it
    (two endpoints may number their secrets alike)."""
    name = "Web · rotator g3 abcdef"
    record = Record(target="web", current_id="103", owned_names=(name,), binding=MINE)
    proxy = Binding("https://intercom-proxy.internal", MINE.workspace)
    assert binding_problem(record, proxy, [LiveSecret("103", "Other")]) is not None
    assert binding_problem(record, proxy, [LiveSecret("103", name)]) is None


def test_an_unbound_record_with_a_secret_needs_evidence_and_a_new_one_does_not():
    """A record written before bindings existed is bound on evidence; one with no secret yet is
    bound by the first process that acts on it."""
    assert needs_evidence(Record(target="web", current_id="103"), MINE)
    assert not needs_evidence(Record(target="web"), MINE)
    assert not needs_evidence(None, MINE)


def test_the_shared_clock_follows_vault_stepped_back():
    """Vault's clock stepped back (NTP): answers from a few seconds on carry the new time, and
    the older, later readings stop counting, so a deadline is not judged on the old time."""
    mono = Monotonic()
    clock = SharedClock(mono)
    clock.observe(T0 + timedelta(days=2), received=mono.now)
    mono.now += 60
    clock.observe(T0 + timedelta(seconds=60), received=mono.now)
    assert clock.now() == T0 + timedelta(seconds=60)
