"""A state record always fits what Vault and OpenBao accept: their listeners refuse a request
holding 1,000 JSON strings or more ("refused JSON input due to high complexity"), and a target
whose record cannot be written is stuck. The audit trail is stored as one string; a record still
past the budget (many consumers, long histories) is written packed (schema 5), which rotators
before it refuse rather than misread. Proved on a real OpenBao and by 60 real rotations."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from test_rotation import World, bootstrap
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here

from rotator.core import record as record_module
from rotator.core.audit import AUDIT_LIMIT
from rotator.core.observation import RotateNow
from rotator.core.record import (
    HISTORY_LIMIT,
    KNOWN_IDS_LIMIT,
    OWNED_NAMES_LIMIT,
    PACKED_SCHEMA_VERSION,
    STRING_BUDGET,
    AuditEntry,
    ConsumerProgress,
    HistoryEntry,
    NewerRecordError,
    Record,
)
from rotator.core.record_parts import BEHIND_LIMIT, IN_USE_LIMIT
from rotator.core.record_storage import count_strings
from rotator.vault import Vault

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _history(i: int) -> HistoryEntry:
    return HistoryEntry(
        rotation_id=f"r{i:012d}",
        generation=i,
        new_id=str(1000 + i),
        retired_ids=(str(900 + i), str(800 + i)),
        started_at=NOW,
        stored_at=NOW,
        confirmed_at=NOW,
        confirmed_by="hook:bearer",
        finished_at=NOW,
        outcome="aborted",
        by="alice@ops",
        reason="x" * 100,
    )


def _audit(i: int) -> AuditEntry:
    who = "hook:hmac consumer=billing from 10.0.0.1"
    return AuditEntry(NOW, "confirmed", who, "w" * 200, f"r{i}", "1", "host:1:abc")


def _consumer(i: int) -> ConsumerProgress:
    return ConsumerProgress(
        name=f"consumer-{i}",
        secret_id="101",
        stored_version=4,
        confirmed_at=NOW,
        confirmed_by="probes",
        streak=2,
        streak_at=NOW,
        found=40,
        switched=20,
        in_use=tuple(str(i) for i in range(IN_USE_LIMIT)),
        behind=tuple(f"10.0.{i}.{j}:8080 on 100" for j in range(BEHIND_LIMIT)),
        problem="p",
        since=NOW,
    )


def biggest(consumers: int = 0) -> Record:
    """A record with every bounded list at its limit, and ``consumers`` named consumers."""
    return Record(
        target="web",
        current_id="100",
        owned_names=tuple(
            f"Production Web · rotator g{i} abcdef" for i in range(OWNED_NAMES_LIMIT)
        ),
        known_ids=tuple(str(i) for i in range(KNOWN_IDS_LIMIT)),
        history=tuple(_history(i) for i in range(HISTORY_LIMIT)),
        audit=tuple(_audit(i) for i in range(AUDIT_LIMIT)),
        rollout=tuple(_consumer(i) for i in range(consumers)),
        last_rotation_at=NOW,
    )


def test_a_full_record_without_consumers_stays_unpacked_and_readable_by_older_rotators():
    """Every list at its limit, the audit trail full: under the budget, in the schema an
    older rotator reads (the trail is one string it ignores)."""
    data = biggest().to_storage()
    assert data["schema_version"] == 2
    assert count_strings(data) <= STRING_BUDGET
    assert isinstance(data["audit"], str)
    assert Record.from_storage(data) == biggest()


def test_a_record_past_the_budget_is_packed_and_round_trips(monkeypatch):
    """Twenty named consumers with every list full: packed into one string, read back equal;
    a rotator that reads up to schema 4 refuses it (NewerRecordError), never misreads it."""
    big = biggest(consumers=20)
    data = big.to_storage()
    assert data["schema_version"] == PACKED_SCHEMA_VERSION
    assert count_strings(data) == 5  # three keys, the target, the packed record
    assert Record.from_storage(data) == big
    monkeypatch.setattr(record_module, "READABLE_SCHEMAS", frozenset({1, 2, 3, 4}))
    with pytest.raises(NewerRecordError):
        Record.from_storage(data)


@pytest.mark.parametrize("consumers", [0, 5, 40])
def test_openbao_accepts_the_largest_records(world: World, consumers: int):
    """The real server takes the record as written, whatever its lists hold."""
    vault = Vault(world.settings.vault, environ=world.environ)
    try:
        key = f"{world.settings.vault.state_path}/big-{consumers}"
        record = replace(biggest(consumers), target=f"big-{consumers}")
        vault.write(key, record.to_storage(), cas=0)
        assert Record.from_storage(vault.read(key).data or {}) == record
    finally:
        vault.close()


def test_sixty_emergency_rotations_keep_the_record_writable(world: World):
    """What broke: after about 51 rotations the record held ~1,000 strings and OpenBao refused
    every write of it. Sixty rotations later the target still rotates."""
    bootstrap(world)
    reconciler = world.reconciler()
    for _ in range(60):
        world.clock.advance(minutes=1)
        report = reconciler.reconcile_target("web", RotateNow(emergency=True))
        assert report.error is None, report.error
        assert report.phase == "idle", report.reason
    record = world.record()
    assert record.generation == 61
    assert len(world.live()) == 1
    assert world.clock.now - record.last_rotation_at < timedelta(minutes=2)
