"""``rotator pause`` and ``rotator resume`` across processes, on OpenBao and the emulator: a
pause written by the CLI holds a running daemon and a CronJob-style ``rotator reconcile``; a
rotation paused past its grace keeps both secrets live until resumed; ``rotate-now`` (and
``--emergency``) on a paused target exits 2 and writes nothing; status, plan and metrics say
who paused and why; a rotator that reads only schema 2 refuses a paused record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_adopt_doctor import legacy
from test_notify import notifier
from test_notify import receiver as receiver  # noqa: PLC0414 - the fixture, re-exported here
from test_rotation import World, _wait, bootstrap, state_version
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here

from rotator.cli.adopt import adopt_secret
from rotator.cli.context import UsageError
from rotator.cli.status import render_table, target_status
from rotator.config import TargetSettings
from rotator.core import record as record_module
from rotator.core.observation import RotateNow
from rotator.core.record import NewerRecordError, Phase, Record
from rotator.daemon.metrics import Metrics
from rotator.reconciler import TargetPaused
from rotator.vault import Vault

ROTATOR = [sys.executable, "-m", "rotator"]


def _cli(world: World, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A real ``rotator`` process on the world's OpenBao and emulator (a config file)."""
    config = tmp_path / "rotator.toml"
    if not config.exists():
        target, vault = world.target, world.settings.vault
        config.write_text(
            f"""\
[vault]
address = "{vault.address}"
mount = "secret"
state_path = "{vault.state_path}"
[[targets]]
name = "web"
base_url = "{target.base_url}"
token_env = "INTERCOM_TOKEN"
secret_name = "Production Web"
platforms = ["web"]
vault_path = "{target.vault_path}"
schedule = "30d"
grace_period = "24h"
"""
        )
    env = {**os.environ, **world.environ, "ROTATOR_CONFIG": str(config)}
    result = subprocess.run(
        [*ROTATOR, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert "Traceback" not in result.stdout + result.stderr
    return result


class Seen:
    """A record listener counting the passes that read the target (``on_seen``)."""

    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def on_record(self, before: Record | None, after: Record, reason: str, target: TargetSettings):
        """Writes are not what this counts."""

    def on_seen(self, record: Record | None, target: TargetSettings, error: str | None) -> None:  # noqa: ARG002
        """One more pass read the target."""
        with self.lock:
            self.count += 1


def test_a_cli_pause_holds_a_cronjob_pass_and_rotate_now_until_resumed(world, tmp_path):
    """A due target paused by the CLI: `rotator reconcile` starts nothing and writes nothing;
    rotate-now and rotate-now --emergency exit 2 naming who paused, why and how to resume, with
    nothing written; status and plan show the pause; `rotator resume` clears it and its pass
    starts the overdue rotation."""
    # The CLI judges time on Vault's clock: the world's starts far enough back to make it due.
    world.clock.now = datetime.now(UTC) - timedelta(days=40)
    old = bootstrap(world)
    paused = _cli(world, tmp_path, "pause", "web", "--reason", "incident 42", "--actor", "alice")
    assert paused.returncode == 0, paused.stderr
    assert "web: paused by alice since " in paused.stdout
    assert "incident 42" in paused.stdout
    again = _cli(world, tmp_path, "pause", "web", "--reason", "other", "--actor", "bob")
    assert again.returncode == 0
    assert "already paused by alice" in again.stdout  # the first pause stands
    version, created = state_version(world), len(world.emulator.store.all())

    cron = _cli(world, tmp_path, "reconcile")
    assert cron.returncode == 0, cron.stderr
    assert "web: idle: paused by alice since " in cron.stdout
    for args in (["rotate-now", "web"], ["rotate-now", "web", "--emergency", "--yes"]):
        refused = _cli(world, tmp_path, *args)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "paused by alice" in refused.stderr
        assert "incident 42" in refused.stderr
        assert "rotator resume web" in refused.stderr
    assert state_version(world) == version
    assert len(world.emulator.store.all()) == created
    assert world.live() == [old]
    assert world.consumer()["intercom_id"] == old

    status = _cli(world, tmp_path, "status", "web", "--json")
    assert status.returncode == 0
    [shown] = json.loads(status.stdout)
    assert (shown["paused"]["by"], shown["paused"]["reason"]) == ("alice", "incident 42")
    plan = _cli(world, tmp_path, "plan", "web", "--json")
    assert plan.returncode == 0, plan.stderr
    assert "nothing until resumed: paused by alice" in plan.stdout
    assert '"action": "none"' in plan.stdout

    resumed = _cli(world, tmp_path, "resume", "web")
    assert resumed.returncode == 0, resumed.stderr
    assert "web: resumed in idle (it was paused by alice since " in resumed.stdout
    assert "web: awaiting_rollout" in resumed.stdout  # its pass starts the overdue rotation
    assert world.record().paused is None
    assert len(world.live()) == 2


def test_a_running_daemon_honours_a_pause_written_by_the_cli(world, tmp_path):
    """The daemon's pass over a due target paused by another process starts nothing (and its
    metrics show the pause); once resumed, its next pass starts the rotation."""
    old = bootstrap(world)
    paused = _cli(world, tmp_path, "pause", "web", "--reason", "freeze", "--actor", "alice")
    assert paused.returncode == 0, paused.stderr
    world.clock.advance(days=31)
    seen = Seen()
    daemon = world.daemon(world.reconciler(listeners=[seen]))
    daemon.start()
    try:
        _wait(lambda: seen.count >= 1)
        # A second pass once the first ended (the scheduler runs one at a time).
        _wait(lambda: _kick(daemon) and seen.count >= 2)
        assert world.record().phase is Phase.IDLE
        assert world.live() == [old]
        gauge = daemon.metrics.registry.get_sample_value("rotator_target_paused", {"target": "web"})
        assert gauge == 1
        world.reconciler().resume("web")  # another process, no pass of its own
        _wait(lambda: _kick(daemon) and world.record().phase is Phase.AWAITING_ROLLOUT)
        assert len(world.live()) == 2
        _wait(
            lambda: (
                daemon.metrics.registry.get_sample_value("rotator_target_paused", {"target": "web"})
                == 0
            )
        )
    finally:
        daemon.stop()


def _kick(daemon) -> bool:
    """Ask the daemon's scheduler for a pass over every target now (skipped while one runs):
    what its sweep does once another process's write is noted (``test_quiet_daemon``)."""
    daemon.watch.wake()
    daemon._scheduler.modify_job("reconcile", next_run_time=datetime.now(UTC))
    return True


def test_a_rotation_paused_past_its_grace_keeps_both_secrets_live(world, monkeypatch):
    """Paused while awaiting rollout, two days past a 24h grace: no DELETE reaches Intercom,
    both secrets stay live, rotate-now refuses; resume, and the next pass retires the old one.
    The paused record is schema 3: a rotator that reads only schema 2 refuses it."""
    old = bootstrap(world)
    world.clock.advance(days=31)
    metrics = Metrics()
    reconciler = world.reconciler(listeners=[metrics])
    assert reconciler.reconcile_all()[0].phase == "awaiting_rollout"
    new = world.consumer()["intercom_id"]
    said = reconciler.pause("web", by="alice", reason="incident 42")
    assert said.startswith("paused by alice since ")
    assert metrics.registry.get_sample_value("rotator_target_paused", {"target": "web"}) == 1
    world.clock.advance(days=2)
    [report] = reconciler.reconcile_all()
    assert report.phase == "awaiting_rollout"
    assert "paused by alice" in report.reason
    assert sorted(world.live()) == sorted([old, new])
    assert world.emulator.store.get(old).deleted_at is None
    version = state_version(world)
    with pytest.raises(TargetPaused, match="rotator resume web"):
        reconciler.reconcile_target("web", RotateNow(emergency=True))
    assert state_version(world) == version

    rec, view = reconciler.record("web")
    assert rec is not None
    assert rec.paused is not None
    table = render_table([target_status(world.target, rec, view, None)])
    assert f"web: PAUSED by alice since {rec.paused.at.isoformat()}: incident 42" in table
    raw = _raw_state(world)
    assert raw["schema_version"] == 3
    monkeypatch.setattr(record_module, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(record_module, "READABLE_SCHEMAS", frozenset({1, 2}))
    with pytest.raises(NewerRecordError):
        Record.from_storage(raw)
    monkeypatch.undo()

    assert "it was paused by alice" in reconciler.resume("web")
    assert metrics.registry.get_sample_value("rotator_target_paused", {"target": "web"}) == 0
    assert _raw_state(world)["schema_version"] == 2  # nothing newer left in the record
    assert reconciler.reconcile_all()[0].phase == "idle"
    assert world.live() == [new]
    assert reconciler.resume("web") == "neither paused nor blocked; nothing to resume"


def _raw_state(world: World) -> dict:
    vault = Vault(world.settings.vault, environ=world.environ)
    try:
        data = vault.read(f"{world.settings.vault.state_path}/web").data
    finally:
        vault.close()
    assert data is not None
    return dict(data)


def test_paused_and_resumed_reach_only_the_webhooks_that_list_them(world, receiver):
    """A webhook with the default events hears nothing of a pause and its resume; one that
    lists them (in any order) hears both, in order, with who paused and why."""
    bootstrap(world)
    quiet = notifier(world, {"url": receiver.url})
    reconciler = world.reconciler(listeners=[quiet])
    reconciler.pause("web", by="alice", reason="INC-42")
    reconciler.resume("web")
    assert quiet.close(timeout=10)
    assert receiver.events() == []
    told = notifier(world, {"url": receiver.url, "events": ["resumed", "paused", "stored"]})
    reconciler = world.reconciler(listeners=[told])
    reconciler.pause("web", by="alice", reason="INC-42")
    reconciler.resume("web")
    assert told.close(timeout=10)
    assert receiver.events() == ["paused", "resumed"]
    paused, resumed = (a.json() for a in receiver.arrivals)
    assert paused["reason"].startswith("paused by alice since ")
    assert paused["reason"].endswith(": INC-42")
    assert resumed["reason"].startswith("it was paused by alice since ")
    assert paused["phase"] == resumed["phase"] == "idle"


def test_pause_refuses_bad_usage_with_exit_2(world, tmp_path):
    """No --reason, or an empty one: exit 2, nothing written; a target not configured too."""
    bootstrap(world)
    version = state_version(world)
    for args, said in (
        (["pause", "web"], "--reason"),
        (["pause", "web", "--reason", "  "], "--reason is empty"),
        (["pause", "api", "--reason", "x"], "api"),
    ):
        result = _cli(world, tmp_path, *args)
        assert result.returncode == 2, result.stdout + result.stderr
        assert said in result.stderr
    assert state_version(world) == version
    assert world.record().paused is None


def test_adopting_a_secret_for_a_paused_target_is_refused(world):
    """An adoption writes the consumers' path: refused while paused, the path untouched."""
    bootstrap(world)
    world.reconciler().pause("web", by="alice", reason="INC-42")
    before, version = world.consumer(), state_version(world)
    secret_id, material = legacy(world)
    with pytest.raises(UsageError, match=r"paused by alice .*rotator resume web"):
        adopt_secret(world.parts(), world.target, secret_id, material, force=True)
    assert world.consumer() == before
    assert state_version(world) == version
