"""``rotator plan``: what the next pass would do, from the real decision core on real reads of
OpenBao and the emulator, with no side effect at all.

Each plan is checked against the world before and after: the state record's and the
consumers' path's Vault versions, Intercom's live secrets, and every request the emulator
received (a middleware logs them: a plan sends GETs only). Where it matters, a real pass then
does what the plan said.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from test_commands import on_a_terminal, run
from test_commands import setup as setup  # noqa: PLC0414 - the fixture, re-exported here
from test_rollout_consumers import ADDRESSES, SPACING, rotate, switch
from test_rollout_consumers import fleet as fleet  # noqa: PLC0414 - the fixture, re-exported here
from test_rollout_consumers import make_world as make_world  # noqa: PLC0414 - the fixture
from test_rotation import World, bootstrap
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here

from rotator import failpoints
from rotator.core.observation import RotateNow
from rotator.reconciler import Reconciler
from rotator.reconciler.plans import TargetPlan, plan_target
from rotator.vault import Vault

PLAN_KEYS = {
    "target",
    "phase",
    "action",
    "secret_id",
    "reason",
    "summary",
    "next_rotation_at",
    "deadline",
    "waiting_for",
    "held_off",
    "error",
}


@pytest.fixture
def requests_seen() -> list[tuple[str, str]]:
    """Every request the emulator received in this test: (method, path)."""
    return []


@pytest.fixture
def intercom_emulator_middleware(requests_seen: list[tuple[str, str]]) -> Callable[[Any], Any]:
    """Logs each request before the emulator answers it."""

    def wrap(app: Any) -> Any:
        def logged(environ: dict[str, Any], start_response: Any) -> Any:
            requests_seen.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
            return app(environ, start_response)

        return logged

    return wrap


def versions(world: World) -> tuple[int, int]:
    """The Vault versions of the target's state record and of its consumers' path."""
    vault = Vault(world.settings.vault, environ=world.environ)
    try:
        state = vault.read(f"{world.settings.vault.state_path}/web").version
        return state, vault.read(world.target.vault_path).version
    finally:
        vault.close()


def planned(world: World, reconciler: Reconciler | None = None) -> TargetPlan:
    """The target's plan, asked of a fresh process (a CLI run) unless one is given."""
    return plan_target((reconciler or world.reconciler()).ports, world.target)


def test_an_idle_target_not_due_plans_nothing_until_its_next_rotation(world, requests_seen):
    """Right after a rotation, the plan is nothing, naming the next rotation's time, and asks
    Intercom nothing."""
    bootstrap(world)
    requests_seen.clear()
    plan = planned(world)
    record = world.record()
    upcoming = world.target.schedule.next_after(record.last_rotation_at)
    assert (plan.action, plan.phase, plan.secret_id) == ("none", "idle", None)
    assert plan.summary == f"nothing: next rotation at {upcoming.isoformat()}"
    assert plan.next_rotation_at == upcoming
    assert requests_seen == []


def test_a_due_target_plans_a_create_and_changes_nothing(world, requests_seen):
    """Due: the plan is to start a rotation (due since when), and Vault's versions, Intercom's
    secrets and the record's lease are as they were; only Intercom's list was asked. A real
    pass then does start that rotation."""
    old = bootstrap(world)
    due_since = world.target.schedule.next_after(world.record().last_rotation_at)
    world.clock.advance(days=31)
    before = versions(world), sorted(world.live())
    requests_seen.clear()
    plan = planned(world)
    assert plan.action == "create"
    assert plan.phase == "idle"
    assert plan.summary == f"start a rotation: due since {due_since.isoformat()}"
    assert "started (schedule due)" in plan.reason
    assert (versions(world), sorted(world.live())) == before
    assert requests_seen
    assert {method for method, _ in requests_seen} == {"GET"}
    assert world.record().lease is None
    [report] = world.reconciler().reconcile_all()
    assert report.phase == "awaiting_rollout"
    assert old in world.live()
    assert len(world.live()) == 2


def test_a_rollout_waits_until_its_deadline_then_plans_to_retire_the_old_secret(world):
    """Awaiting rollout: before the grace the plan waits until the deadline; past it, the plan
    is the DELETE of the old id, which is still live until a real pass retires it."""
    old = bootstrap(world)
    world.clock.advance(days=31)
    reconciler = world.reconciler()
    reconciler.reconcile_all()
    new = world.consumer()["intercom_id"]
    deadline = world.record().deadline
    waiting = planned(world)
    assert (waiting.action, waiting.phase) == ("none", "awaiting_rollout")
    assert waiting.summary.startswith(f"wait for rollout until {deadline.isoformat()}")
    assert waiting.deadline == deadline
    world.clock.advance(hours=25)
    before = versions(world), sorted(world.live())
    plan = planned(world)
    assert (plan.action, plan.secret_id) == ("delete", old)
    assert plan.summary.startswith(f"retire secret {old}")
    assert (versions(world), sorted(world.live())) == before
    assert reconciler.reconcile_all()[0].phase == "idle"
    assert world.live() == [new]


def test_a_blocked_target_plans_nothing_and_says_why(world):
    """Blocked (a revoked token): the plan says blocked, with the record's reason."""
    token = world.environ["INTERCOM_TOKEN"]
    world.environ["INTERCOM_TOKEN"] = "revoked-token-0123456789"
    assert world.reconciler().reconcile_all()[0].phase == "blocked"
    world.environ["INTERCOM_TOKEN"] = token
    before = versions(world)
    plan = planned(world)
    assert (plan.action, plan.phase) == ("none", "blocked")
    assert plan.summary.startswith("blocked: ")
    assert "rejected the access token" in plan.summary
    assert versions(world) == before


def test_another_processs_lease_is_named_as_the_one_acting(world):
    """A record leased by another process: the plan says that process is acting."""
    bootstrap(world)
    failpoints.reset_for_tests("intercom.before_create=raise")
    try:
        with pytest.raises(failpoints.FailpointError):
            world.reconciler(me="doomed").reconcile_target("web", RotateNow())
    finally:
        failpoints.reset_for_tests()
    before = versions(world)
    plan = planned(world)
    assert plan.held_off
    assert plan.action == "none"
    assert plan.summary.startswith("another process (doomed) is acting")
    assert versions(world) == before
    assert world.record().lease.holder == "doomed"


def test_a_missing_intercom_token_is_said_per_target(world):
    """Without its Intercom token a due target's plan says which variable is missing (and
    writes nothing); a resting one needs no token to be planned."""
    bootstrap(world)
    del world.environ["INTERCOM_TOKEN"]
    assert planned(world).summary.startswith("nothing: next rotation at")
    world.clock.advance(days=31)
    before = versions(world)
    plan = planned(world)
    assert plan.error is not None
    assert "INTERCOM_TOKEN" in plan.error
    assert plan.summary.startswith("cannot plan: ")
    assert versions(world) == before


# --- the command, as users run it -------------------------------------------------------------


def test_the_command_plans_a_first_secret_as_json_and_changes_nothing(
    setup, emulator, vault_settings, vault_env, requests_seen
):
    """A fresh target: `rotator plan --json` plans to create its first secret, in the
    documented shape, exit 0; Vault still holds no record and no secret, Intercom none, and
    Intercom was only listed."""
    _, env, _ = setup
    result = run(env, "plan", "--json")
    assert result.returncode == 0, result.stderr
    [shown] = json.loads(result.stdout)
    assert set(shown) == PLAN_KEYS
    assert (shown["target"], shown["phase"], shown["action"]) == ("web", "new", "create")
    assert shown["summary"] == "start a rotation: the consumers' Vault path holds no secret yet"
    assert emulator.store.all() == []
    assert requests_seen
    assert {method for method, _ in requests_seen} == {"GET"}
    vault = Vault(vault_settings, environ=vault_env)
    try:
        for path in ("state/web", "web"):
            entry = vault.read(vault_settings.state_path.replace("state", path))
            assert (entry.data, entry.version) == (None, 0)
    finally:
        vault.close()


def test_the_command_after_a_rotation_plans_nothing_and_shows_a_table(setup, emulator):
    """After a reconcile, `rotator plan web` on a terminal is a table saying nothing is to do
    until the next rotation; exit 0; the secret's material is in neither output."""
    _, env, _ = setup
    assert run(env, "reconcile").returncode == 0
    result = run(env, "plan", "web")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)  # JSON off a terminal
    assert shown[0]["action"] == "none"
    table = on_a_terminal(env, "plan", "web")
    [secret] = emulator.store.all()
    assert secret.secret not in result.stdout + result.stderr + table
    assert table.splitlines()[0].split() == ["TARGET", "PHASE", "ACTION", "SECRET", "PLAN"]
    assert "nothing: next rotation at" in table


def test_an_unknown_target_is_a_usage_error(setup):
    """`rotator plan nope`: exit 2, the unknown name said, no traceback."""
    _, env, _ = setup
    result = run(env, "plan", "nope")
    assert result.returncode == 2
    assert "nope" in result.stderr


def test_a_rollout_with_probed_consumers_names_who_is_behind(fleet, make_world):
    """Two probed instances, one switched: the plan takes a real probe round (GETs) and says
    the rollout waits for web-backend, 1 of 2 switched, naming the instance still on the old
    secret; the record (its probe progress included) and Vault's versions are untouched."""
    instances = [fleet.start(address) for address in ADDRESSES[:2]]
    urls = [i.probe_url for i in instances]
    world = make_world([{"name": "web-backend", "probe_urls": urls}], confirmation="consumers")
    old, new = rotate(world, instances)
    switch(instances[0], new)
    world.clock.advance(**SPACING)
    before = versions(world), world.record()
    plan = planned(world, world.reconciler(prober=world.prober))
    assert (plan.action, plan.phase) == ("none", "awaiting_rollout")
    [waiting] = plan.waiting_for
    assert waiting.startswith("web-backend (1/2 switched; ")
    assert f"{ADDRESSES[1]}:" in waiting
    assert f"on {old}" in waiting
    assert "waiting for web-backend (1/2 switched" in plan.summary
    assert (versions(world), world.record()) == before


def test_plan_is_listed_and_explains_itself(setup):
    """`rotator --help` lists plan; `rotator plan --help` says that it only reads, and its
    exit codes."""
    _, env, _ = setup
    listed = run(env, "--help")
    assert any(line.split()[:1] == ["plan"] for line in listed.stdout.splitlines())
    helped = run(env, "plan", "--help")
    assert helped.returncode == 0
    assert helped.stdout.startswith("usage: rotator plan")
    assert "it only reads" in helped.stdout
    assert "Exit 0 planned, 1" in helped.stdout
