"""Named consumers confirming through the hook and the CLI (issue 12), against OpenBao and the
emulator: two hook consumers where one confirmation is not enough; an unknown consumer, a
missing name, or a probed consumer through the hook refused with nothing changed; the CLI's
``confirm --consumer`` (an operator's override of a probed consumer) and its refusals; status
shows each consumer; a target without consumers still takes an anonymous confirmation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import httpx
import pytest
from test_rotation import HOOK_TOKEN, _wait, bootstrap
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here

from rotator.core.record import Phase

PROBED = {"name": "web-backend", "probe_urls": ["http://127.0.0.1:9/.well-known/intercom-secret"]}
CONSUMERS = [{"name": "billing"}, {"name": "ledger"}, PROBED]


def _post(daemon, body):
    return httpx.post(
        f"{daemon.server.url}/v1/targets/web/confirm",
        json=body,
        headers={"Authorization": f"Bearer {HOOK_TOKEN}"},
    )


def _rotating(world):
    """The world with a rotation awaiting its rollout: (old id, new id, reconciler)."""
    old = bootstrap(world)
    world.clock.advance(days=31)
    reconciler = world.reconciler()
    reconciler.reconcile_all()
    assert world.record().phase is Phase.AWAITING_ROLLOUT
    return old, world.consumer()["intercom_id"], reconciler


@pytest.mark.target(confirmation="consumers", consumers=[{"name": "billing"}, {"name": "ledger"}])
def test_two_hook_consumers_need_both_confirmations(world):
    """billing's confirmation alone retires nothing; ledger's too, and the old secret goes."""
    old, new, reconciler = _rotating(world)
    daemon = world.daemon(reconciler)
    daemon.start()
    try:
        first = _post(daemon, {"secret_id": new, "consumer": "billing"})
        assert first.status_code == 200, first.text
        assert first.json() | {"consumer": "billing"} == first.json()
        reconciler.reconcile_target("web")  # what the hook's follow-up pass does
        assert sorted(world.live()) == sorted([old, new])
        progress = {p.name: p.confirmed_by for p in world.record().rollout}
        assert progress == {"billing": "hook:bearer", "ledger": None}  # ledger still owed
        again = _post(daemon, {"secret_id": new, "consumer": "billing"})
        assert again.json()["status"] == "already_confirmed"
        second = _post(daemon, {"secret_id": new, "consumer": "ledger"})
        assert second.status_code == 200, second.text
        _wait(lambda: world.record().phase is Phase.IDLE)
    finally:
        daemon.stop()
    assert world.live() == [new]
    assert world.record().history[-1].confirmed_by == "consumers"


@pytest.mark.target(confirmation="consumers", consumers=CONSUMERS)
@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"consumer": "nope"}, 422, "unknown_consumer"),
        ({}, 422, "consumer_required"),
        ({"consumer": "web-backend"}, 409, "probed_consumer"),
        ({"consumer": 7}, 400, "invalid_field"),
        ({"consumer": "Not A Name"}, 400, "invalid_field"),
    ],
)
def test_bad_consumer_confirmations_change_nothing(world, body, status, code):
    """Unknown, missing, probed or malformed consumer names: a 4xx, the record untouched."""
    old, new, reconciler = _rotating(world)
    before = reconciler.vault.read(reconciler.state_key("web"))
    daemon = world.daemon(reconciler)
    daemon.server.start()
    try:
        answer = _post(daemon, {"secret_id": new, **body})
    finally:
        daemon.server.stop()
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code
    assert reconciler.vault.read(reconciler.state_key("web")) == before
    assert sorted(world.live()) == sorted([old, new])


@pytest.mark.target(confirmation="hook-or-grace")
def test_a_target_without_consumers_refuses_a_consumer_name_and_takes_an_anonymous_one(world):
    """Old configs behave as before; naming a consumer they do not have is refused."""
    _, new, reconciler = _rotating(world)
    daemon = world.daemon(reconciler)
    daemon.server.start()
    try:
        named = _post(daemon, {"secret_id": new, "consumer": "billing"})
        anonymous = _post(daemon, {"secret_id": new})
    finally:
        daemon.server.stop()
    assert named.status_code == 422
    assert anonymous.status_code == 200, anonymous.text
    assert world.record().confirmed_by == "hook:bearer"


@pytest.mark.target(confirmation="consumers", consumers=CONSUMERS)
def test_the_cli_confirms_per_consumer_and_overrides_a_probe(world, tmp_path):
    """`rotator confirm web` without --consumer is a usage error naming them; an unknown name
    exits 2; the three names (the probed one as an operator's override) retire the old secret,
    and status showed each consumer on the way."""
    old, new, _ = _rotating(world)
    config = tmp_path / "rotator.toml"
    config.write_text(_toml(world))
    env = {**os.environ, **world.environ, "ROTATOR_CONFIG": str(config)}

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "rotator", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    bare = cli("confirm", "web")
    assert bare.returncode == 2
    assert "--consumer" in bare.stderr
    assert "billing, ledger, web-backend" in bare.stderr
    unknown = cli("confirm", "web", "--consumer", "nope")
    assert unknown.returncode == 2
    assert "unknown_consumer" in unknown.stdout
    shown = json.loads(cli("status", "web", "--json").stdout)[0]
    assert [c["name"] for c in shown["consumers"]] == ["billing", "ledger", "web-backend"]
    assert {c["state"] for c in shown["consumers"]} == {"waiting"}
    partial = cli("confirm", "web", "--consumer", "billing", "--consumer", "ledger")
    assert partial.returncode == 0, partial.stderr
    assert sorted(world.live()) == sorted([old, new])
    table = cli("status", "web", "--json")
    by = {
        c["name"]: (c["state"], c["confirmed_by"]) for c in json.loads(table.stdout)[0]["consumers"]
    }
    assert by == {
        "billing": ("confirmed", "cli"),
        "ledger": ("confirmed", "cli"),
        "web-backend": ("waiting", None),
    }
    done = cli("confirm", "web", "--consumer", "web-backend")
    assert done.returncode == 0, done.stderr
    assert world.live() == [new]
    materials = [s.secret for s in world.emulator.store.all()]
    for result in (bare, unknown, partial, done, table):
        assert "Traceback" not in result.stderr
        for material in materials:
            assert material not in result.stdout + result.stderr


def _toml(world) -> str:
    """The world's settings as a config file (the CLI reads a file)."""
    s, t = world.settings, world.target
    consumers = "".join(
        f'\n[[targets.consumers]]\nname = "{c.name}"\n'
        + (f"probe_urls = {json.dumps(list(c.probe_urls))}\n" if c.probe_urls else "")
        for c in t.consumers
    )
    return f"""
[vault]
address = "{s.vault.address}"
state_path = "{s.vault.state_path}"
[server]
hook_token_env = "ROTATOR_HOOK_TOKEN"
[[targets]]
name = "web"
base_url = "{t.base_url}"
token_env = "INTERCOM_TOKEN"
secret_name = "{t.secret_name}"
vault_path = "{t.vault_path}"
confirmation = "{t.confirmation}"
{consumers}"""


def test_the_status_table_says_who_is_behind_and_that_the_rollout_stalled():
    """The table form: a line per consumer with n/m switched and who is behind, a STALLED line
    with the way out."""
    from rotator.cli.status import TargetStatus, render_table

    consumer = {
        "name": "mobile-api", "kind": "probed", "state": "stalled", "confirmed_by": None,
        "confirmed_at": None, "switched": 1, "found": 2, "in_use": ["101"],
        "behind": ["10.0.0.9:8080 on 101"], "problem": None, "streak": 0, "stable_probes": 2,
        "since": "2026-11-30T10:04:05+00:00",
    }  # fmt: skip
    hook = consumer | {"name": "billing", "kind": "hook", "found": None, "switched": None}
    shown = TargetStatus(
        name="web", phase="awaiting_rollout", current_secret_id="101", pending_secret_id="103",
        rotation_id="r1", generation=3, next_rotation_at=None, deadline=None, confirmed_at=None,
        last_rotation_at=None, last_error=None, blocked_reason=None, attempts=0, retry_at=None,
        consumer_secret_id="103", schedule="every 30d", confirmation="hook-or-grace", history=[],
        consumers=[consumer, hook], stalled=True, stalled_since="2026-11-30T10:00:00+00:00",
    )  # fmt: skip
    table = render_table([shown])
    assert "web: STALLED since 2026-11-30T10:00:00+00:00" in table
    assert "rotator confirm web --consumer NAME" in table
    assert (
        "web:   mobile-api  1/2 switched; 10.0.0.9:8080 on 101 (since 2026-11-30T10:04:05+00:00)"
        in table
    )
    assert "web:   billing  waiting for its confirmation" in table


@pytest.mark.target(confirmation="consumers", consumers=[{"name": "billing"}], grace_period="1h")
def test_a_stalled_rollout_is_shown_counted_and_told_once(world, tmp_path):
    """Past its grace with billing silent: status exits 1 and says stalled; the gauges show
    billing stalled (and go when the rotation ends); the stalled notification is produced by
    the write that stalled it and by no later one."""
    from rotator.daemon.metrics import Metrics
    from rotator.notify import notifications

    _, new, reconciler = _rotating(world)
    before = world.record()
    world.clock.advance(hours=2)
    reconciler.reconcile_all()
    stalled = world.record()
    assert stalled.stalled_at is not None
    config = tmp_path / "rotator.toml"
    config.write_text(_toml(world))
    env = {**os.environ, **world.environ, "ROTATOR_CONFIG": str(config)}
    status = subprocess.run(
        [sys.executable, "-m", "rotator", "status", "web", "--json"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert status.returncode == 1, status.stderr
    [shown] = json.loads(status.stdout)
    assert shown["stalled"] is True
    assert [(c["name"], c["state"]) for c in shown["consumers"]] == [("billing", "stalled")]
    told = [n.event for n in notifications(before, stalled, "x", world.clock())]
    assert told.count("stalled") == 1
    later = replace(stalled, last_error="x")
    assert "stalled" not in [n.event for n in notifications(stalled, later, "x", world.clock())]
    metrics = Metrics()
    metrics.on_record(before, stalled, "x", world.target)
    sample = metrics.registry.get_sample_value
    labels = {"target": "web", "consumer": "billing"}
    assert sample("rotator_rollout_consumers", labels | {"state": "stalled"}) == 1
    assert sample("rotator_rollout_consumers", labels | {"state": "waiting"}) == 0
    reconciler.confirm("web", secret_id=new, rotation_id=None, via="cli", consumer="billing")
    reconciler.reconcile_all()
    done = world.record()
    assert done.phase is Phase.IDLE
    metrics.on_record(stalled, done, "x", world.target)
    assert sample("rotator_rollout_consumers", labels | {"state": "stalled"}) is None
