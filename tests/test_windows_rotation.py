"""Rotation windows end to end, on OpenBao and the Intercom emulator with the injected clock:
a due target waits for its window (plan and status say until when), rotates inside it, and
retires the old secret only inside a window, even once its grace has elapsed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from test_rotation import World, bootstrap
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here

from rotator.cli.status import TargetStatus, render_table
from rotator.cli.status import _one as status_one
from rotator.core.observation import RotateNow
from rotator.intercom import IntercomClient
from rotator.reconciler.plans import plan_target

#: 02:00 to 04:00 in Berlin (CET in December): 01:00 to 03:00 UTC.
NIGHTLY = {"cron": "0 2 * * *", "duration": "2h", "timezone": "Europe/Berlin"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.target(windows=[NIGHTLY])
def test_a_due_target_waits_for_its_window_and_retires_only_inside_one(world: World):
    """Bootstrap provisions at once (consumers had nothing); due at noon, outside the window:
    nothing changes at Intercom or Vault, and plan/status say until when; at 01:30 UTC the
    rotation starts; past its 24h grace at 03:30 UTC the old secret still lives; in the next
    window it is retired."""
    old = bootstrap(world)
    reconciler = world.reconciler()
    world.clock.now = at("2026-12-25T12:00")  # 31 days on: due
    plan = plan_target(world.reconciler().ports, world.target)
    assert (plan.action, plan.summary) == (
        "none",
        "nothing: due, but outside its window until 2026-12-26T01:00:00+00:00",
    )
    [report] = reconciler.reconcile_all()
    assert report.phase == "idle"
    assert report.reason == "outside its window until 2026-12-26T01:00:00+00:00"
    assert world.live() == [old]
    assert world.consumer()["intercom_id"] == old
    shown = status_of(world)
    assert shown.window == {
        "open": False,
        "opens_at": "2026-12-26T01:00:00+00:00",
        "closes_at": None,
    }
    assert "web: outside its window until 2026-12-26T01:00:00+00:00" in render_table([shown])

    world.clock.now = at("2026-12-26T01:30")  # inside the window
    [report] = reconciler.reconcile_all()
    assert report.phase == "awaiting_rollout"
    new = world.consumer()["intercom_id"]
    assert new != old
    assert sorted(world.live()) == sorted([old, new])

    world.clock.now = at("2026-12-27T03:30")  # grace (24h) elapsed, window closed at 03:00
    [report] = reconciler.reconcile_all()
    assert report.phase == "awaiting_rollout"
    assert "outside its window until 2026-12-28T01:00:00+00:00" in report.reason
    assert sorted(world.live()) == sorted([old, new])
    plan = plan_target(world.reconciler().ports, world.target)
    assert plan.summary.startswith(
        "wait to retire: rollout done, but outside its window until 2026-12-28T01:00:00+00:00"
    )

    world.clock.now = at("2026-12-28T01:05")  # the next window
    [report] = reconciler.reconcile_all()
    assert report.phase == "idle"
    assert world.live() == [new]
    record = world.record()
    assert (record.current_id, record.generation) == (new, 2)
    assert status_of(world).window == {
        "open": True,
        "opens_at": None,
        "closes_at": "2026-12-28T03:00:00+00:00",
    }


@pytest.mark.target(windows=[NIGHTLY])
def test_rotate_now_starts_outside_a_window_and_an_emergency_also_retires(world: World):
    """At noon (window closed): rotate-now creates and stores at once, but after its grace
    the old secret still lives until the window; an emergency rotate-now then retires it at
    once, window or not."""
    old = bootstrap(world)
    reconciler = world.reconciler()
    report = reconciler.reconcile_target("web", RotateNow())
    assert report.phase == "awaiting_rollout"
    new = world.consumer()["intercom_id"]
    world.clock.now = at("2026-11-25T12:30")  # grace elapsed, window closed (01:00-03:00 UTC)
    [report] = reconciler.reconcile_all()
    assert report.phase == "awaiting_rollout"
    assert sorted(world.live()) == sorted([old, new])
    urgent = reconciler.reconcile_target("web", RotateNow(emergency=True))
    assert urgent.phase == "idle"
    assert world.live() == [new]


def status_of(world: World) -> TargetStatus:
    """What ``rotator status`` shows for the target, on the world's clock."""
    return status_one(world.parts(), world.settings, world.target.name, history=False)


@pytest.mark.target(windows=[NIGHTLY])
def test_a_due_target_outside_its_window_does_not_list_intercom(world: World):
    """Due at noon, outside the window: each pass rests on the window's reason without a single
    call to Intercom (it would list every pass until the window opens otherwise)."""
    bootstrap(world)
    seen: list[str] = []
    reconciler = world.reconciler(
        client_factory=lambda target, token: IntercomClient(
            token, base_url=target.base_url, observe=lambda op, _s, _t: seen.append(op)
        )
    )
    world.clock.now = at("2026-12-25T12:00")
    for _ in range(3):
        [report] = reconciler.reconcile_all()
        assert report.reason == "outside its window until 2026-12-26T01:00:00+00:00"
    assert seen == []
    world.clock.now = at("2026-12-26T01:30")
    assert reconciler.reconcile_all()[0].phase == "awaiting_rollout"
    assert seen[:1] == ["list"]  # inside the window it lists (orphans), then creates
