"""Interleavings of the simulation (``tests/test_simulation.py``) replayed step by step: one it
found in the product (a second adoption undoing an emergency retirement), and the boundary of
I10 (``tests/simulation/invariants.py``): it judges what instances really sign with at a DELETE,
so an instance that goes back to the old secret by itself after the last probe round is
reported, which is why the simulation's instances never do that.
"""

from __future__ import annotations

import logging

import structlog
from simulation import fleet
from simulation.actors import Commands, Plan
from test_simulation import Simulation


def test_a_second_adoption_does_not_undo_an_emergency_retirement():
    """The interleaving the simulation found, replayed: `adopt`, then an emergency that starts
    retiring the leaked secret, then another process's `adopt`; the second adoption is refused,
    so the leaked secret is retired as the emergency said and no invariant breaks. Break: the
    second adoption replaced the retiring one, and the pending DELETE then struck a secret the
    record had made current again, with no emergency and no rollout (I7)."""
    state = Simulation()
    state.setup(
        seed=0,
        skews=[0.0, 0.0, 0.0],
        provisioned=False,
        commands=["pass", "adopt", "emergency"],
        disruptions=["crash"],
    )
    for _ in range(11):
        state.start(actor="a", pick=0, right=False, steps=0)
    for actor, pick, right, steps in [
        ("a", 0, False, 10),  # the first secret, 100
        ("a", 1, True, 7),  # adopt 101
        ("a", 14, False, 6),  # emergency: retiring 100, its DELETE not sent yet
        ("b", 1, True, 7),  # another adopt
        ("a", 0, False, 1),  # the DELETE of 100
    ]:
        state.start(actor=actor, pick=pick, right=right, steps=steps)
        state.nothing_broke()
    state.teardown()
    assert not state.watch.violations
    assert not state.world.live("100")


def test_i10_judges_what_instances_sign_with_not_what_the_probes_said():
    """I10 is judged on the fleet as it is at the DELETE: an instance that goes back to the old
    secret by itself after the probe round that let the grace retire it (a rollback no prober
    can foresee, so the simulation never does it) is reported, though every probe was right.
    Break: I10 judged from the probe answers, or from the record's confirmations."""
    state = Simulation()
    try:
        plan = Plan(policy="hook-or-grace", named=True, stable_probes=(1, 1), spacing=0.0)
        state.setup(
            seed=0,
            skews=[0.0, 0.0, 0.0],
            provisioned=True,
            commands=["pass", "rotate-now"],
            disruptions=["crash"],
            plan=plan,
            mobile=1,
        )
        state.start(actor="a", pick=1, right=True, steps=40)  # rotate-now: 101 stored, 100 current
        state.time_passes(3600.0)  # the grace, and every instance reloads 101
        state.time_passes(11.0)  # past the grace on every clock estimate
        daemon = state.processes["a"]
        daemon.start(state.main, Commands(daemon).daemon_pass, "pass")
        while daemon.busy and daemon.doing != "probe web":
            daemon.step()
        daemon.step()  # the round answers: every instance on 101
        old = state.world.secrets["100"]
        rolled_back = state.world.fleet[fleet.WEB_BACKEND][0]
        rolled_back.holds, rolled_back.material = old.id, old.material
        state.advance("a", 40)
        assert not state.world.live("100")
        reported = (
            "I10: deleted 100 while web-backend at 10.0.0.7:8080 signs with it (consumers hold 101; "
            "no operator confirmed web-backend since its store)"
        )
        assert [v.split(" ", 1)[1] for v in state.watch.violations] == [reported]
    finally:  # what teardown does; it would settle, and judge, too
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()


def test_an_emergency_during_an_aborts_cleanup_is_recorded_not_lost():
    """The interleaving the simulation found, replayed: an abort in creating leaves a retiring
    record that deletes the abandoned secret (no new secret under way); an emergency rotate-now
    then joined it by flagging the record, its own pass failed, and the cleanup ended idle with
    the leaked secret 100 live (I9). The request is now recorded and starts its rotation once
    the cleanup ends (``operator_requests.joinable``)."""
    state = Simulation()
    plan = Plan(policy="hook-or-grace", named=True, stable_probes=(1, 1), spacing=0.0)
    state.setup(
        seed=49,
        skews=[0.0, 0.0, 0.0],
        provisioned=True,
        commands=[
            "rotate-now",
            "confirm-cli",
            "pass",
            "confirm-hook",
            "abort",
            "resume",
            "adopt",
            "emergency",
        ],
        disruptions=[
            "weather@vault.write",
            "crash@intercom create",
            "crash@vault write intercom/web",
            "crash@intercom delete",
            "crash@vault write rotator/state",
            "crash",
            "weather@intercom.delete",
        ],
        plan=plan,
        mobile=0,
    )
    steps = [
        ("advance", "a", 1),
        ("advance", "b", 1),
        ("disrupt", "a", (0, False, 2)),
        ("start", "c", (0, False, 10)),
        ("disrupt", "a", (0, False, 46)),
        ("disrupt", "a", (3, False, 0)),
        ("start", "c", (0, False, 0)),
        *[("advance", "a", 1)] * 4,
        ("advance", "c", 6),
        ("start", "a", (4, False, 3)),  # abort, recorded
        ("start", "a", (0, False, 8)),
        ("advance", "a", 2),
        ("start", "c", (0, False, 8)),  # served: retiring the abandoned 101
        ("start", "c", (7, False, 8)),  # emergency during that cleanup; its pass fails
    ]
    for kind, actor, args in steps:
        if kind == "advance":
            state.advance(actor=actor, steps=args)
        elif kind == "disrupt":
            amount, applied, pick = args
            state.disrupt(actor=actor, amount=amount, applied=applied, pick=pick)
        else:
            pick, right, count = args
            state.start(actor=actor, pick=pick, right=right, steps=count)
        state.nothing_broke()
    state.teardown()
    assert not state.watch.violations
    assert not state.world.live("100")


def test_an_abort_never_deletes_a_new_secret_a_vault_restore_took_off_the_path():
    """The interleaving the simulation found, replayed: the new secret 101 is stored, then a
    Vault restore from backup puts 100 back at the consumers' path before the record knew of
    the store; an abort then took 101 for never seen by consumers and deleted it at once (I7).
    The path's recent versions show 101 was held: it is backed out after a rollout instead."""
    state = Simulation()
    plan = Plan(policy="hook-or-grace", named=False, stable_probes=(2, 2), spacing=1.0)
    state.setup(
        seed=0,
        skews=[0.0, 0.0, 0.0],
        provisioned=True,
        commands=["abort", "pass"],
        disruptions=["restore"],
        plan=plan,
        mobile=0,
    )
    state.interleave(order=["a"])
    state.time_passes(seconds=90000.0)
    state.start(actor="b", pick=1, right=False, steps=5)
    state.interleave(order=["b", "b"])
    state.disrupt(actor="a", amount=0, applied=False, pick=0)
    state.start(actor="a", pick=0, right=False, steps=3)
    state.start(actor="b", pick=1, right=False, steps=8)
    state.nothing_broke()
    state.teardown()
    assert not state.watch.violations


def test_a_miskeyed_instance_keeps_the_key_it_has_until_its_next_reload():
    """A seeded run's interleaving, replayed: a rotation's probe rounds see every instance on the
    new secret, then one instance turns ``wrong-fp``, then the old secret's DELETE. The harness
    used to switch that instance's key back to the old secret on the spot: going back on its
    own after a round saw it right, which no prober can foresee and I10 does not model, so
    the run reported an I10 break of the harness's making. Now its key stays until its next
    reload, which moves only the id (probes then see another secret's fingerprint)."""
    state = Simulation()
    plan = Plan(policy="hook-or-grace", named=True, stable_probes=(1, 1), spacing=0.0)
    state.setup(
        seed=0,
        skews=[0.0, 0.0, 0.0],
        provisioned=False,
        commands=["rotate-now"],
        disruptions=["crash"],
        plan=plan,
        mobile=0,
    )
    state.interleave(order=["a"])
    state.start(actor="a", pick=0, right=False, steps=13)
    state.interleave(order=["a"])
    state.fleet_changes(action="appear", pick=3)
    state.interleave(order=["a"])
    state.start(actor="a", pick=0, right=False, steps=13)
    state.time_passes(seconds=90000.0)
    state.start(actor="a", pick=0, right=False, steps=0)
    state.interleave(order=["a"] * 8)
    instance = state.world.fleet[fleet.WEB_BACKEND][0]
    before = (instance.holds, instance.material)
    state.fleet_changes(action="wrong-fp", pick=0)
    assert (instance.holds, instance.material) == before
    state.interleave(order=["a"])
    state.nothing_broke()
    assert not state.watch.violations
    fleet.reload(state.world, instance)  # the next reload moves only the id
    assert instance.material == before[1]
    assert instance.holds == state.world.consumers()["intercom_id"]
    state.teardown()
    assert not state.watch.violations
