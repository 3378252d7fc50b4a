"""The audit trail, end to end on OpenBao and the emulator: every transition and operator action
lands in the record's bounded trail with who and why (the CLI's --actor or user@host, the hook's
authentication and client address, the daemon's schedule or grace), ``status --history`` shows
it, every entry is one ``audit.<event>`` JSON log line, and the opt-in notifications ``started``,
``confirmed`` and ``aborted`` carry who did it. Plus the pure rules of ``rotator.core.audit``."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
from test_machine import NOW, awaiting, idle, observe
from test_pause import _cli
from test_rotation import HOOK_TOKEN, _wait, bootstrap
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here

from rotator.cli.status import render_table, target_status
from rotator.core import audit, machine
from rotator.core.observation import RotateNow
from rotator.core.record import Phase, Record
from rotator.notify import notifications


def _events(record: Record) -> list[tuple[str, str]]:
    return [(a.event, a.by) for a in record.audit]


def test_a_cli_rotation_and_a_hook_confirmation_name_who_did_what(world, tmp_path, log_output):
    """rotate-now --actor alice: requested and started by alice; the hook's confirmation names
    bearer auth and the client address; the daemon's retirement follows; status --history
    shows the trail; each entry is an audit.* JSON log line."""
    world.clock.now = datetime.now(UTC) - timedelta(days=5)
    bootstrap(world)
    world.clock.now = datetime.now(UTC)
    asked = _cli(world, tmp_path, "rotate-now", "web", "--actor", "alice")
    assert asked.returncode == 0, asked.stdout + asked.stderr
    record = world.record()
    events = _events(record)
    assert ("rotate_now_requested", "alice") in events
    assert ("started", "alice") in events
    assert [e for e, _ in events][-3:] == ["started", "created", "stored"]
    new = record.pending_id

    daemon = world.daemon(world.reconciler())
    daemon.start()
    try:
        answer = httpx.post(
            f"{daemon.server.url}/v1/targets/web/confirm",
            json={"secret_id": new},
            headers={"Authorization": f"Bearer {HOOK_TOKEN}"},
        )
        assert answer.status_code == 200, answer.text
        _wait(lambda: world.record().phase is Phase.IDLE)
    finally:
        daemon.stop()
    record = world.record()
    confirmed = [a for a in record.audit if a.event == "confirmed"]
    assert [a.by for a in confirmed] == ["hook:bearer, from 127.0.0.1"]
    assert confirmed[0].secret_id == new
    assert [a.event for a in record.audit][-3:] == ["retiring", "retired", "completed"]
    assert all(a.via for a in record.audit)

    rec, view = world.reconciler().record("web")
    table = render_table([target_status(world.target, rec, view, None, history=True)])
    assert "started by alice" in table
    assert f"confirmed by hook:bearer, from 127.0.0.1 [{new}]" in table
    as_json = json.loads(_cli(world, tmp_path, "status", "web", "--history", "--json").stdout)
    assert [a["event"] for a in as_json[0]["audit"]] == [a.event for a in record.audit]
    lines = [json.loads(x) for x in log_output.getvalue().splitlines() if '"audit.' in x]
    logged = {line["event"] for line in lines}
    assert {"audit.confirmed", "audit.retired", "audit.completed"} <= logged


def test_a_scheduled_rotation_and_its_grace_are_the_daemon_s(world):
    """No operator: started by the schedule, the old secret retired on the grace."""
    bootstrap(world)
    world.clock.advance(days=31)
    reconciler = world.reconciler()
    reconciler.reconcile_all()
    world.clock.advance(hours=25)
    reconciler.reconcile_all()
    events = _events(world.record())
    assert ("started", "schedule") in events
    assert ("retiring", "grace") in events
    assert events[-1][0] == "completed"


def test_pause_resume_and_abort_are_recorded_with_their_actor_and_reason(world, tmp_path):
    """Operator controls through real processes, each with who and why."""
    world.clock.now = datetime.now(UTC) - timedelta(days=40)
    bootstrap(world)
    world.clock.now = datetime.now(UTC)
    world.reconciler().reconcile_target("web", RotateNow(by="carol@laptop"))
    paused = _cli(world, tmp_path, "pause", "web", "--reason", "incident 7", "--actor", "bob")
    assert paused.returncode == 0
    assert _cli(world, tmp_path, "resume", "web", "--actor", "dave").returncode == 0
    done = _cli(world, tmp_path, "abort", "web", "--reason", "bad build", "--actor", "erin")
    assert done.returncode == 0, done.stdout + done.stderr
    trail = world.record().audit
    said = [(a.event, a.by, a.why) for a in trail]
    assert [by for e, by, _ in said if e == "started"][-1] == "carol@laptop"
    assert ("paused", "bob", "incident 7") in said
    assert any(e == "resumed" and by == "dave" for e, by, _ in said)
    assert ("abort_requested", "erin", "bad build") in said
    assert ("aborted", "erin", "bad build") in said


def test_the_trail_is_bounded_and_older_entries_fall_off():
    """Many rotations: the record keeps the last AUDIT_LIMIT entries, newest last."""
    rec = idle()
    for i in range(40):
        later = NOW + timedelta(days=31 * i)
        rec = audit.noted(
            rec,
            Record(target="web", current_id=str(i), audit=rec.audit),
            at=later,
            why="w",
            via="p",
            by="op",
        )
    assert len(rec.audit) == audit.AUDIT_LIMIT
    assert rec.audit[-1].secret_id == "39"
    assert rec.audit[0].secret_id == str(40 - audit.AUDIT_LIMIT)


def test_a_decision_that_changes_nothing_adds_no_entry_and_a_start_names_the_schedule():
    """A resting step leaves the trail alone; a due start is noted once, by the schedule."""
    rec = idle()
    assert machine.step(rec, observe(rec), NOW).record.audit == ()
    started = machine.step(rec, observe(rec, due=True), NOW).record
    assert [(a.event, a.by, a.via) for a in started.audit] == [("started", "schedule", "me")]


def test_the_started_confirmed_and_aborted_notifications_carry_who():
    """The opt-in events come from the write's new audit entries."""
    before = awaiting()
    after = audit.noted(
        before,
        replace(before, confirmed_at=NOW, confirmed_by="cli"),
        at=NOW,
        why="rollout confirmed",
        via="p",
        by="cli:alice@ops",
    )
    found = notifications(before, after, "rollout confirmed", NOW)
    confirmed = [n for n in found if n.event == "confirmed"]
    assert len(confirmed) == 1
    assert "cli:alice@ops" in confirmed[0].reason


def test_no_material_in_the_trail(world):
    """A whole rotation's trail and its log lines name ids, never the material."""
    world.clock.now = datetime.now(UTC)
    bootstrap(world)
    world.reconciler().reconcile_target("web", RotateNow(emergency=True, by="x"))
    record = world.record()
    material = world.consumer()["secret"]
    assert material not in json.dumps(record.to_storage()["audit"])


def test_the_hook_actor_survives_log_redaction():
    """The audit line of a hook confirmation keeps who confirmed: the consumer and the client
    address are not taken for a bearer token by the log redaction."""
    from rotator.hook.app import ConfirmRequest
    from rotator.redaction import redact_text

    for consumer in ("billing", None):
        actor = ConfirmRequest("101", None, via="bearer", consumer=consumer, client="10.0.3.7")
        said = actor.actor()
        assert redact_text(said) == said
        assert "10.0.3.7" in said
