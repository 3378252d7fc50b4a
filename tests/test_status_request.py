"""``rotator status`` shows an operator's rotate-now that is recorded and not yet served, and
what it waits for: the next pass, the pause, the back-out under way, or (having resumed a
blocked back-out once) an operator. Before, status showed nothing of it: an operator could not
tell a lost request from one waiting."""

from __future__ import annotations

import json
from dataclasses import replace

from test_machine import NOW
from test_review_resumed import _blocked_back_out
from test_rotation import bootstrap
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here

from rotator.cli.status import render_json, render_table, target_status
from rotator.core.observation import RotateNow
from rotator.core.record import Pause, Request, Restoring


def test_a_recorded_rotate_now_shows_until_a_pass_serves_it(world):
    """A rotate-now recorded by a process that stopped before its pass (a CLI killed, a
    CronJob's next run to come) shows in the table and the JSON; the pass that serves it
    clears it."""
    bootstrap(world)
    reconciler = world.reconciler()
    reconciler._request(reconciler.target("web"), RotateNow(emergency=True, by="alice"))
    rec, view = reconciler.record("web")
    shown = target_status(world.target, rec, view, None)
    assert rec is not None
    assert rec.request is not None
    at = rec.request.at.isoformat()
    line = f"web: EMERGENCY ROTATE-NOW requested by alice at {at}: the next pass serves it"
    assert line in render_table([shown])
    [public] = json.loads(render_json([shown]))
    assert public["requested"] == {
        "kind": "emergency rotate-now",
        "by": "alice",
        "at": at,
        "waits": "the next pass serves it",
    }
    reconciler.reconcile_all()
    rec, view = reconciler.record("web")
    served = target_status(world.target, rec, view, None)
    assert served.requested is None
    assert "ROTATE-NOW" not in render_table([served])


def test_what_a_waiting_request_waits_for():
    """Behind a back-out it waits for its end; on a paused target for the resume; on a
    blocked back-out the next pass resumes the block, unless this request did so once already
    and the block came back: then it waits for an operator's resume."""
    request = Request(emergency=False, by="bob", at=NOW)
    blocked = _blocked_back_out(request)
    backing_out = replace(blocked, phase=blocked.resume_phase, blocked_reason=None)
    assert isinstance(backing_out.restoring, Restoring)
    assert _requested(backing_out) == (
        "rotate-now by bob: its rotation starts once the back-out or sweep under way ends"
    )
    paused = replace(backing_out, paused=Pause(by="carol", at=NOW, reason="freeze"))
    assert "the pause holds it; 'rotator resume web'" in _requested(paused)
    assert _requested(blocked) == (
        "rotate-now by bob: the next pass resumes the block; its rotation starts once the "
        "back-out or sweep under way ends"
    )
    spent = _blocked_back_out(replace(request, resumed=True))
    assert "resumed the block once and it blocked again" in _requested(spent)
    assert "'rotator resume web'" in _requested(spent)


def _requested(record) -> str:
    from rotator.cli.status import _requested as requested

    shown = requested(record)
    assert shown is not None
    return f"{shown['kind']} by {shown['by']}: {shown['waits']}"
