"""Review of the audit trail and the operator controls as users meet them: the breaks found, each
a test on OpenBao and the emulator (real ``rotator`` processes where a user would run one) or on
the pure core. What the audit trail must hold: who and why for every write, one line of printable
text each, bounded, never material, each log line a SIEM can attribute to its target."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from test_adopt_doctor import legacy
from test_machine import NOW, idle, observe
from test_pause import ROTATOR, _cli
from test_rotation import HOOK_TOKEN, _wait, bootstrap
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here

from rotator.cli.adopt import adopt_secret
from rotator.core import audit, machine
from rotator.core.observation import RotateNow
from rotator.core.record import AuditEntry, Lease, Pause, Phase, Record, Request

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "operator-guide.md"


def _rotating(world) -> None:
    """A bootstrapped target with a rotation awaiting its rollout (started in-process)."""
    world.clock.now = datetime.now(UTC) - timedelta(days=40)
    bootstrap(world)
    world.clock.now = datetime.now(UTC)
    world.reconciler().reconcile_target("web", RotateNow(by="setup"))
    assert world.record().phase is Phase.AWAITING_ROLLOUT


def _said(record: Record) -> str:
    """Everything of the record an operator's words may reach: the trail, the pause, the request."""
    words = [f"{a.by}|{a.why}" for a in record.audit]
    if record.paused is not None:
        words.append(f"{record.paused.by}|{record.paused.reason}")
    if record.request is not None:
        words.append(record.request.by)
    return "\n".join(words)


_ESCAPE = "\x1b]0;owned\x07\x1b[2J"


@pytest.mark.parametrize(
    "args",
    [
        ("pause", "web", "--reason", f"freeze{_ESCAPE}"),
        ("pause", "web", "--reason", "freeze", "--actor", f"alice{_ESCAPE}"),
        ("pause", "web", "--reason", "freeze\nfake: resumed by root"),
        ("confirm", "web", "--actor", f"alice{_ESCAPE}"),
        ("rotate-now", "web", "--emergency", "--yes", "--actor", f"alice{_ESCAPE}"),
        ("pause", "web", "--reason", "freeze", "--actor", "a" * 5000),
        ("pause", "web", "--reason", "x" * 100_000),
    ],
    ids=[
        "pause-reason-escape",
        "pause-actor-escape",
        "pause-reason-newline",
        "confirm-actor",
        "rotate-now-actor",
        "pause-actor-huge",
        "pause-reason-huge",
    ],
)
def test_an_actor_or_reason_that_is_not_one_short_printable_line_is_refused(world, tmp_path, args):
    """``abort`` refuses a --reason or --actor with control characters (they are kept in the
    record and replayed to every terminal that runs ``status --history``); pause, confirm and
    rotate-now must refuse them too, and an actor or reason so long that the record's 32-entry
    trail (and every notification) would carry it: exit 2, nothing written."""
    _rotating(world)
    before = world.record()
    done = _cli(world, tmp_path, *args)
    assert done.returncode == 2, (done.stdout + done.stderr)[:600]
    assert "Traceback" not in done.stderr
    after = world.record()
    assert after.audit == before.audit
    assert after.paused is None
    assert "\x1b" not in _said(after)


def test_resume_refuses_an_actor_with_control_characters(world, tmp_path):
    """``resume --actor`` lands in the trail ("resumed by ..."): the same rule as abort."""
    _rotating(world)
    world.reconciler().pause("web", by="bob", reason="incident")
    done = _cli(world, tmp_path, "resume", "web", "--actor", f"dave{_ESCAPE}")
    assert done.returncode == 2, (done.stdout + done.stderr)[:600]
    after = world.record()
    assert after.paused is not None
    assert "\x1b" not in _said(after)


def test_a_pause_reason_quoting_the_current_secret_is_refused(world, tmp_path):
    """An operator pasting the consumers' secret into ``pause --reason`` (a wrong clipboard):
    ``abort`` refuses that, with nothing written; ``pause`` stored it in the record, where
    ``status`` prints it and the ``paused`` notification sends it."""
    _rotating(world)
    material = world.consumer()["secret"]
    done = _cli(world, tmp_path, "pause", "web", "--reason", f"leak? {material}")
    assert done.returncode == 2, (done.stdout + done.stderr)[:600]
    assert material not in done.stdout + done.stderr
    after = world.record()
    assert after.paused is None
    assert material not in _said(after)


def test_the_trail_stays_small_whatever_the_actor():
    """The record keeps 32 entries, each reason cut at 240 characters, but ``by`` was kept
    whole: an actor of 10 kB (a script's --actor, a Request written by hand) made every entry
    10 kB, and the record's trail 32 times that."""
    rec = idle()
    huge = "x" * 10_000
    for i in range(40):
        rec = audit.noted(
            rec,
            Record(target="web", current_id=str(i), audit=rec.audit),
            at=NOW + timedelta(days=i),
            why="w",
            via="p",
            by=huge,
        )
    assert len(rec.audit) == audit.AUDIT_LIMIT
    assert all(len(a.by) <= audit.WHY_LIMIT for a in rec.audit)


def test_every_audit_log_line_names_its_target(world, log_output):
    """A SIEM reads the audit.* JSON lines alone: each must say which target it is about,
    whichever process or command wrote it."""
    _rotating(world)
    reconciler = world.reconciler()
    reconciler.pause("web", by="bob", reason="incident 7")
    reconciler.resume("web", by="dave")
    lines = [json.loads(x) for x in log_output.getvalue().splitlines() if '"audit.' in x]
    events = {line["event"] for line in lines}
    assert {"audit.paused", "audit.resumed", "audit.rotate_now_requested"} <= events
    assert [line["event"] for line in lines if line.get("target") != "web"] == []


def test_status_history_json_has_the_same_keys_for_every_target(world, tmp_path):
    """``status --history --json`` promises an ``audit`` array (operator guide 8.7): a target
    without entries yet had no ``audit`` (nor ``history``) key at all, so ``jq '.[].audit[]'``
    failed on it rather than listing nothing."""
    done = _cli(world, tmp_path, "status", "web", "--history", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    [shown] = json.loads(done.stdout)
    assert shown["audit"] == []
    assert shown["history"] == []


def test_the_hook_s_client_address_is_the_socket_s_never_a_forwarded_header(world):
    """A caller with the hook's token cannot put another address in the trail with
    X-Forwarded-For, X-Real-IP or Forwarded: the trail names the peer of the socket."""
    _rotating(world)
    new = world.record().pending_id
    daemon = world.daemon(world.reconciler())
    daemon.start()
    try:
        answer = httpx.post(
            f"{daemon.server.url}/v1/targets/web/confirm",
            json={"secret_id": new},
            headers={
                "Authorization": f"Bearer {HOOK_TOKEN}",
                "X-Forwarded-For": "203.0.113.9",
                "X-Real-IP": "203.0.113.9",
                "Forwarded": "for=203.0.113.9",
            },
        )
        assert answer.status_code == 200, answer.text
        _wait(lambda: any(a.event == "confirmed" for a in world.record().audit))
    finally:
        daemon.stop()
    [confirmed] = [a for a in world.record().audit if a.event == "confirmed"]
    assert confirmed.by == "hook:bearer, from 127.0.0.1"


def test_a_lease_taken_over_from_a_crashed_process_is_in_the_trail():
    """A process that died holding the lease: the one that takes the target over after the
    ttl (the lease free again) must say so in the trail, naming whom it took over from, or an
    incident's story has a gap between the dead process's last step and the next."""
    rec = Record(
        target="web",
        current_id="100",
        last_rotation_at=NOW - timedelta(days=1),
        lease=Lease(holder="doomed", nonce="n1", ttl=30.0),
    )
    decision = machine.step(rec, observe(rec, me="survivor"), NOW)
    taken = [a for a in decision.record.audit if a.event == "lease_taken_over"]
    assert [(a.by, a.via) for a in taken] == [("survivor", "survivor")]
    assert "doomed" in taken[0].why


def _actor_commands() -> list[str]:
    """The commands the operator guide (8.7) says take ``--actor``."""
    text = GUIDE.read_text()
    section = text[text.index("### 8.7") :]
    row = next(line for line in section.splitlines() if "`--actor`" in line)
    claimed = row.split("|")[1]
    return re.findall(r"`([a-z-]+)`", claimed)


def test_every_command_the_guide_says_takes_actor_does():
    """Operator guide 8.7 listed ``adopt`` among the commands that take ``--actor``; ``rotator
    adopt --actor bob`` was a usage error (adopt records ``cli:`` + the OS user@host only)."""
    commands = _actor_commands()
    assert "rotate-now" in commands
    for command in commands:
        done = subprocess.run(
            [*ROTATOR, command, "--help"], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        assert "--actor" in done.stdout, f"rotator {command} has no --actor"


def test_an_entry_about_an_idle_target_names_no_finished_rotation():
    """An idle record still carries the id of its last rotation, which is over: a pause or a
    rotate-now request on the idle target was filed under that finished rotation's id, so a
    SIEM joining entries on rotation_id put them in the wrong story."""
    rec = replace(idle(), rotation_id="rold")
    paused = audit.noted(
        rec,
        replace(rec, paused=Pause(by="bob", at=NOW, reason="freeze")),
        at=NOW,
        why="paused by an operator",
        via="p",
        by="bob",
    )
    asked = audit.noted(
        rec,
        replace(rec, request=Request(emergency=False, by="alice", at=NOW)),
        at=NOW,
        why="rotate-now requested",
        via="p",
        by="alice",
    )
    assert [(a.event, a.rotation_id) for a in (*paused.audit, *asked.audit)] == [
        ("paused", None),
        ("rotate_now_requested", None),
    ]


def test_an_unblock_is_noted_before_the_rotation_it_lets_start():
    """``changes`` lists the events "in the order they happened": a blocked target that a
    rotate-now unblocks and starts had ``started`` before ``unblocked``."""
    blocked = replace(idle(), phase=Phase.BLOCKED, resume_phase=Phase.IDLE, blocked_reason="401")
    started = replace(idle(), phase=Phase.CREATING, rotation_id="rnew", generation=1)
    found = audit.changes(blocked, started, at=NOW, why="rotate-now", via="p", by=None)
    assert [a.event for a in found] == ["unblocked", "started"]


def test_an_adopt_names_the_operator_and_the_secret_it_adopted(world):
    """``rotator adopt`` after the first pass: the trail says ``adopted`` (or the adoption
    started), by ``cli:`` + the OS user@host, with the adopted id; no entry names another."""
    bootstrap(world)
    secret_id, material = legacy(world)
    adopt_secret(world.parts(), world.target, secret_id, material, force=True, now=world.clock())
    trail = world.record().audit
    mine = [a for a in trail if a.secret_id == secret_id]
    assert mine[0].event in {"adopted", "adoption_started"}, [(a.event, a.by) for a in mine]
    assert {a.by for a in mine} == {mine[0].by}, [(a.event, a.by) for a in mine]
    assert mine[0].by.startswith("cli:")
    assert "@" in mine[0].by


def test_an_operator_s_cli_entry_reaches_the_daemon_s_log(world, tmp_path, log_output):
    """The guide: "the full trail goes to the logs ... ship rotator's stderr". The daemon's
    stderr is what is shipped; an operator's pause made in another process while the daemon
    runs reaches it (relayed, once), at the daemon's next read of the record."""
    bootstrap(world)
    daemon = world.reconciler()
    daemon.reconcile_all()  # the daemon has read the record: it relays what others write next
    paused = _cli(world, tmp_path, "pause", "web", "--reason", "INC-42", "--actor", "alice")
    assert paused.returncode == 0, paused.stderr[-500:]
    daemon.reconcile_all()
    daemon.reconcile_all()
    lines = [json.loads(x) for x in log_output.getvalue().splitlines() if '"audit.' in x]
    assert [(x["event"], x["by"], x["relayed"]) for x in lines if x["event"] == "audit.paused"] == [
        ("audit.paused", "alice", True)
    ]


def test_another_process_s_entry_stamped_before_the_daemon_s_newest_is_still_relayed(
    world, log_output
):
    """Processes stamp entries with their own estimate of Vault's clock, which may run behind
    another's: an operator's resume stamped 5 s before the daemon's own newest entry is new to
    the daemon all the same, and reaches its shipped log (once)."""
    bootstrap(world)
    daemon = world.reconciler(me="daemon")
    operator = world.reconciler(me="operator")
    operator.clock = operator.store.clock = lambda: world.clock() - timedelta(seconds=5)
    daemon.reconcile_all()  # the daemon has read the record: the relay's mark is set
    daemon.pause("web", by="bob", reason="INC-7")  # the daemon's own entry, at world time
    operator.resume("web", by="alice")  # stamped 5 s earlier than bob's pause
    record, _ = daemon.record("web")  # reading it relays what others added
    assert record is not None
    trail = record.audit
    assert [(a.event, a.by) for a in trail[-2:]] == [("paused", "bob"), ("resumed", "alice")]
    assert trail[-1].at < trail[-2].at  # the skew this test is about
    daemon.reconcile_all()
    lines = [json.loads(x) for x in log_output.getvalue().splitlines() if '"audit.' in x]
    relayed = [(x["event"], x["by"]) for x in lines if x["relayed"]]
    assert relayed == [("audit.resumed", "alice")]


def test_since_finds_the_entries_after_the_one_seen_by_identity_not_time():
    """``audit.since``: entries after the one seen, whatever their times; all of them when the
    one seen left the trail (more were added than the record keeps)."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    a, b, c = (
        AuditEntry(at + timedelta(seconds=s), event, "x", "why")
        for s, event in ((0, "paused"), (-9, "resumed"), (-20, "started"))
    )
    assert audit.since((a, b, c), hash(a)) == (b, c)
    assert audit.since((a, b, c), hash(c)) == ()
    gone = AuditEntry(at, "completed", "y", "why")
    assert audit.since((a, b, c), hash(gone)) == (a, b, c)


def test_a_record_put_back_to_an_older_version_is_not_relayed_again(world, log_output):
    """``vault kv rollback`` of a record (the runbook's fix for a hand edit) or a Vault restore
    from backup puts back a trail the daemon already relayed: its newest entry seen is gone
    from it, and by identity alone every entry of the old trail was relayed again (a SIEM
    flooded with old pauses, at 10,000 targets 32 lines each). Only what is newer is relayed."""
    bootstrap(world)
    daemon = world.reconciler(me="daemon")
    operator = world.reconciler(me="operator")
    daemon.reconcile_all()  # the relay's mark is set
    operator.pause("web", by="alice", reason="INC-7")
    daemon.record("web")  # relays the pause
    key = daemon.store.key("web")
    paused = daemon.vault.read(key)
    operator.resume("web", by="alice")
    daemon.record("web")  # relays the resume
    latest = daemon.vault.read(key)
    assert paused.data is not None
    daemon.vault.write(key, paused.data, cas=latest.version)  # what `vault kv rollback` does
    record, _ = daemon.record("web")
    assert record is not None
    assert record.paused is not None  # the old version is back
    operator.resume("web", by="bob")
    daemon.record("web")
    lines = [json.loads(x) for x in log_output.getvalue().splitlines() if '"audit.' in x]
    relayed = [(x["event"], x["by"]) for x in lines if x["relayed"]]
    assert relayed == [
        ("audit.paused", "alice"),
        ("audit.resumed", "alice"),
        ("audit.resumed", "bob"),
    ]


def test_since_falls_back_to_time_only_when_the_entry_seen_is_gone():
    """``audit.since`` with the time of the entry seen: found, it is identity as before (an
    earlier-stamped entry after it still counts); gone, only entries stamped later count."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    a, b, c = (AuditEntry(at + timedelta(seconds=s), "paused", "x", "why") for s in (0, -9, 20))
    assert audit.since((a, b, c), hash(a), a.at) == (b, c)
    gone = AuditEntry(at + timedelta(seconds=5), "completed", "y", "why")
    assert audit.since((a, b, c), hash(gone), gone.at) == (c,)
    assert audit.since((a, b, c), hash(gone)) == (a, b, c)
