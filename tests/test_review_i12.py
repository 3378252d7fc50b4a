"""Adversarial review of verified rollout (issue 12): each test names a finding, a way the
feature could be broken by an odd but legal fleet, a second process with another config, a
prober that fails or a round that went stale, or a careless config; it fails on the code before
its fix.

The pure core is driven with the helpers of ``test_rollout_core``; the reconcile pass with
OpenBao and the emulator (``test_rotation.World``) and a scripted ``Prober`` (the pass's port:
it answers what the story says the fleet answered).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from test_machine import NOW, POLICY, in_flight
from test_rollout_core import (
    ALL_NEW,
    BILLING,
    SPACING,
    WEB,
    awaiting,
    policy,
    probe,
    step,
    view,
)
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here

from rotator.core import machine, rollout
from rotator.core.confirmation import ConfirmStatus, confirm
from rotator.core.observation import ConsumerProbe, Delete, InstanceAnswer, LiveSecret
from rotator.core.record import ROLLOUT_SCHEMA_VERSION, Phase, Record
from rotator.notify import notifications

# --- the record: writes and schema ----------------------------------------------------------


def test_a_confirmed_probed_consumer_costs_no_write_while_others_wait():
    """Finding 1 (Vault churn): once a probed consumer was confirmed, every later all-switched
    round still bumped its streak and streak_at, so the record changed, and was written to
    Vault, on every pass for as long as a hook consumer kept the rollout waiting (days)."""
    pol = policy(WEB, BILLING)
    record = awaiting(pol)
    for i in range(2):
        record = step(record, pol, NOW + i * SPACING, probe(*ALL_NEW)).record
    assert rollout.confirmed(record, "web-backend")
    for i in range(2, 6):
        decision = step(record, pol, NOW + i * SPACING, probe(*ALL_NEW))
        assert decision.action is None
        assert decision.record == record, f"round {i} changed the record: a write per pass"


def test_who_is_behind_counts_every_instance_not_the_stored_sample():
    """Finding 2: the reason said "; 13 more" for 20 instances behind (the record keeps 16
    of them): the count must come from found - switched, not from the bounded sample."""
    pol = policy(WEB)
    record = awaiting(pol)
    answers = tuple((f"10.0.1.{i}:80", "100") for i in range(20))
    decision = step(record, pol, NOW, probe(*answers))
    assert "0/20 switched" in decision.reason
    assert "; 17 more" in decision.reason


@pytest.mark.parametrize(
    "rules",
    [(BILLING,), (WEB,), (WEB, BILLING)],
    ids=["hook-only", "probed", "both"],
)
def test_a_consumers_rollout_is_schema_3_from_its_store(rules):
    """Finding 3: a rollout verified per consumer was written as schema 2 until a probe round
    or a confirmation added progress (for hook-only consumers: the whole grace period and
    more), so an older rotator with its older config read it and retired the old secret on
    its grace alone: what schema 3 exists to prevent (design section 2)."""
    pol = policy(*rules)
    record = awaiting(pol)
    assert record.to_storage()["schema_version"] == ROLLOUT_SCHEMA_VERSION
    assert Record.from_storage(record.to_storage()) == record
    assert rollout.unconfirmed(record, pol) == tuple(r.name for r in rules)


def test_a_seeded_rollout_still_reads_not_probed_yet():
    """Finding 3, a guard for its fix: a consumer with no round yet still reads "not probed
    yet" in reasons and states (not "0/0 switched") once every consumer is owed from the
    store."""
    pol = policy(WEB, BILLING)
    record = awaiting(pol)
    text = rollout.behind_text(record, pol)
    assert "web-backend not probed yet" in text
    [web, _billing] = rollout.states(record, pol.consumers)
    assert (web.found, web.switched, web.streak) == (None, None, None)


def test_an_adoption_under_consumers_is_verified_too():
    """Finding 3, adoptions: a secret adopted from the consumers' path while the target names
    consumers is a consumers rollout from its first write (schema 3, every consumer owed)."""
    pol = policy(WEB, BILLING)
    record = Record(target="web", current_id="100", last_rotation_at=NOW, known_ids=("100",))
    obs = replace(
        in_flight(record),
        policy=replace(pol, adopt=("101",)),
        consumer=replace(view(record), intercom_id="101"),
        intercom=(LiveSecret("100", "Web"), LiveSecret("101", "Made by hand")),
    )
    decision = machine.step(record, obs, NOW)
    assert decision.record.phase is Phase.AWAITING_ROLLOUT
    assert decision.record.adoption
    assert decision.record.to_storage()["schema_version"] == ROLLOUT_SCHEMA_VERSION


# --- two processes, two configs --------------------------------------------------------------


def _stalled_consumers_rollout():
    """A consumers rollout (hook-or-grace, web-backend probed) stalled past its grace: a probe
    sees 10.0.0.9 still on the old secret 100."""
    pol = policy(WEB, BILLING, confirmation="hook-or-grace")
    record = awaiting(pol)
    late = record.deadline + timedelta(minutes=1)
    stuck = step(record, pol, late, probe(("10.0.0.9:80", "100")))
    assert stuck.action is None
    assert stuck.record.stalled_at is not None
    return stuck.record, late


def test_a_process_whose_config_names_no_consumers_does_not_retire_a_verified_rollout():
    """Finding 4 (two configs): a process still running the config from before consumers were
    named (hook-or-grace, no [[targets.consumers]]) read the stalled record (schema 3, which
    it reads fine) and retired the old secret on its grace while a probe saw it in use."""
    record, late = _stalled_consumers_rollout()
    obs = replace(in_flight(record), policy=POLICY, consumer=view(record), probes=None)
    decision = machine.step(record, obs, late + SPACING)
    assert decision.action is None, decision.reason
    assert "consumers" in decision.reason


def test_a_process_without_consumers_refuses_an_anonymous_hook_confirmation_of_them():
    """Finding 4, its hook: the same stale process accepted an anonymous hook call as the
    confirmation of a rollout that is verified per consumer: one replica's call retired the
    secret for every consumer, the very thing issue 12 ends. An operator's CLI still may."""
    record, late = _stalled_consumers_rollout()

    def call(via):
        return confirm(
            record, POLICY, view(record), secret_id="101", rotation_id=None, via=via, now=late
        )

    updated, status, message = call("hook:bearer")
    assert (updated, status) == (None, ConfirmStatus.POLICY_REFUSES)
    assert "consumer" in message
    assert call("cli")[1] is ConfirmStatus.CONFIRMED


# --- no round, no retirement on what probes said ---------------------------------------------


def _probe_confirmed_then_hook_confirmed():
    pol = policy(WEB, BILLING)
    record = awaiting(pol)
    for i in range(2):
        record = step(record, pol, NOW + i * SPACING, probe(*ALL_NEW)).record
    record, status, _ = confirm(
        record, pol, view(record), secret_id="101", rotation_id=None, via="hook:bearer",
        now=NOW + SPACING, consumer_name="billing",
    )  # fmt: skip
    assert status is ConfirmStatus.CONFIRMED
    return pol, record


@pytest.mark.parametrize(
    "probes",
    [None, (), (ConsumerProbe("other", ()),)],
    ids=["no-round", "empty-round", "round-without-it"],
)
def test_probe_confirmations_do_not_retire_without_a_round_of_them_in_this_pass(probes):
    """Finding 5: a pass with no probe round (the prober crashed in ``Pass._probes``, or a
    rotate-now during a backoff skips probing) retired the old secret on a probe confirmation
    from an earlier pass: not sticky, the design says, yet nothing re-checked it and
    ``seen_in_use`` had no round to look at. It now waits for a pass with a round."""
    pol, record = _probe_confirmed_then_hook_confirmed()
    obs = replace(in_flight(record), policy=pol, consumer=view(record), probes=probes)
    decision = machine.step(record, obs, NOW + 2 * SPACING)
    assert decision.action is None, decision.reason
    assert "probe round" in decision.reason
    fresh = step(record, pol, NOW + 2 * SPACING, probe(*ALL_NEW))
    assert fresh.action == Delete("100")  # the next pass with a round retires it


def test_a_round_that_sees_the_old_secret_again_still_blocks_after_the_hook_confirms():
    """Finding 5, a guard (an attack that held): when the retiring pass does have a round and
    it sees an instance back on the old secret, the probe confirmation is voided and nothing is
    deleted."""
    pol, record = _probe_confirmed_then_hook_confirmed()
    decision = step(record, pol, NOW + 2 * SPACING, probe(*ALL_NEW[:2], ("10.0.0.3:80", "100")))
    assert decision.action is None
    assert not rollout.confirmed(decision.record, "web-backend")


# --- stalls under hook-or-grace --------------------------------------------------------------


def test_a_hook_consumer_the_grace_covers_is_not_named_as_holding_a_stall():
    """Finding 6: under hook-or-grace past the grace a hook consumer no longer holds anything
    (the grace stands in for it), yet the stalled reason said "billing has not confirmed" and
    status, metrics and the stalled notification showed billing as stalled: an operator sent
    chasing the wrong team. Only the probed consumers a probe sees behind hold the stall."""
    record, late = _stalled_consumers_rollout()
    pol = policy(WEB, BILLING, confirmation="hook-or-grace")
    decision = step(record, pol, late + SPACING, probe(("10.0.0.9:80", "100")))
    assert "web-backend" in decision.reason
    assert "billing" not in decision.reason
    shown = {s.name: s.state for s in rollout.states(record, pol.consumers, pol.confirmation)}
    assert shown == {"web-backend": "stalled", "billing": "waiting"}
    # Under "consumers" a silent hook consumer does hold it, and says so.
    strict = policy(WEB, BILLING)
    shown = {s.name: s.state for s in rollout.states(record, strict.consumers)}
    assert shown == {"web-backend": "stalled", "billing": "stalled"}
    # The stalled notification names who holds it.
    before = replace(record, stalled_at=None)
    [told] = [
        n
        for n in notifications(
            before, record, "r", late, pol.consumers, confirmation=pol.confirmation
        )
        if n.event == "stalled"
    ]
    assert [c["consumer"] for c in told.behind] == ["web-backend"]


def test_an_instance_answering_the_new_id_with_a_round_error_is_still_behind():
    """A guard (an attack that held): an answer carrying both the new id and an error (a
    custom prober's) is behind, however many rounds."""
    pol = policy(WEB)
    record = awaiting(pol)
    odd = ConsumerProbe(
        "web-backend", (InstanceAnswer("a:1", intercom_id="101", error="timed out"),)
    )
    for i in range(3):
        record = step(record, pol, NOW + i * SPACING, odd).record
    assert not rollout.confirmed(record, "web-backend")


# --- the reconcile pass: a prober that fails, a round that went stale -------------------------

URL = "http://127.0.0.2:9/.well-known/intercom-secret"  # never asked: the prober is scripted


class Scripted:
    """The pass's ``Prober`` port, answering what the story says the fleet answers: ``ids``
    (one id per instance; ``None``: the round crashes), and ``then`` run once, after the round
    was taken and before the pass writes anything (another process moving the target)."""

    def __init__(self) -> None:
        self.ids: list[str] | None = []
        self.then: list = []
        self.rounds = 0

    def probe(self, target):
        self.rounds += 1
        if self.ids is None:
            raise RuntimeError("a prober bug")
        answers = tuple(
            InstanceAnswer(f"127.0.0.{2 + i}:9", intercom_id=x) for i, x in enumerate(self.ids)
        )
        round_ = tuple(ConsumerProbe(c.name, answers) for c in target.consumers if c.probed)
        while self.then:
            self.then[0]()  # an assertion failing here is logged as probe.crashed: see above
            self.then.pop(0)
        return round_


def _rotated(world, prober):
    """Provision, then start a rotation: (old id, new id, the old secret's path data)."""
    world.reconciler(prober=prober).reconcile_all()
    before = world.consumer()
    world.clock.advance(days=31)
    world.reconciler(prober=prober).reconcile_all()
    assert world.record().phase is Phase.AWAITING_ROLLOUT
    return before["intercom_id"], world.consumer()["intercom_id"], before


def _pass(world, prober):
    world.clock.advance(seconds=11)
    [report] = world.reconciler(prober=prober).reconcile_all()
    return report


@pytest.mark.target(
    confirmation="consumers",
    consumers=[{"name": "web-backend", "probe_urls": [URL]}, {"name": "billing"}],
)
def test_a_pass_whose_prober_crashed_does_not_retire_on_earlier_rounds(world):
    """Finding 5, end to end: web-backend confirmed by two rounds, billing then confirms through
    the hook; the next pass's prober crashes (``probe.crashed``): the old secret stays live
    until a pass with a round, which retires it."""
    prober = Scripted()
    old, new, _ = _rotated(world, prober)
    prober.ids = [new, new]
    _pass(world, prober)
    _pass(world, prober)
    assert rollout.confirmed(world.record(), "web-backend")
    result = world.reconciler().confirm(
        "web", secret_id=new, rotation_id=None, via="hook:bearer", consumer="billing"
    )
    assert result.status is ConfirmStatus.CONFIRMED
    prober.ids = None
    report = _pass(world, prober)
    assert old in world.live(), report.reason
    assert report.phase == "awaiting_rollout"
    prober.ids = [new, new]
    _pass(world, prober)
    assert old not in world.live()


@pytest.mark.target(
    confirmation="consumers",
    consumers=[{"name": "web-backend", "probe_urls": [URL], "stable_probes": 1}],
)
def test_a_round_from_before_a_restore_is_not_counted_after_a_check_and_set_restart(world):
    """Finding 7: a pass took its round (every instance on the new secret), then, before it
    wrote, someone put the OLD secret back at the consumers' path, the instances reloaded it,
    another process blocked, an operator resumed and the new secret was stored again. The
    pass lost its check-and-set, re-read the record, and counted its stale round for the new
    store: with stable_probes = 1 it deleted the old secret every instance now used."""
    prober = Scripted()
    old, new, before = _rotated(world, prober)
    fleet_now = Scripted()
    fleet_now.ids = [old, old]  # what the instances answer once they reloaded the rollback

    def roll_back_then_store_again():
        vault = world.reconciler().vault
        vault.write(
            world.target.vault_path, before, cas=vault.read(world.target.vault_path).version
        )
        other = world.reconciler(prober=fleet_now)
        [blocked] = other.reconcile_all()
        assert blocked.phase == "blocked"
        other.resume("web")
        other.reconcile_all()
        assert world.consumer()["intercom_id"] == new  # stored again, awaiting its rollout
        assert world.record().phase is Phase.AWAITING_ROLLOUT

    prober.ids = [new, new]
    prober.then = [roll_back_then_store_again]
    _pass(world, prober)
    assert not prober.then, "the story ran"
    assert old in world.live(), "the old secret was deleted on a round from before the store"
    assert not rollout.confirmed(world.record(), "web-backend")


# --- config: what a careless or hostile config slips past validation ---------------------------


@pytest.mark.parametrize(
    ("consumer", "message"),
    [
        ({"probe_urls": ["http://10.0.0.7 /x"]}, "neither an IP address nor a host name"),
        ({"probe_urls": ["http://a b/x"]}, "neither an IP address nor a host name"),
        ({"probe_urls": ["http://10.0.0.7:0/x"]}, "port"),
        ({"probe_urls": ["http://10.0.0.7:8080/x\r\nX-Evil: 1"]}, "control character"),
        ({"probe_urls": ["http://10.0.0.7:8080/x y"]}, "control character or space"),
        (
            {"probe_urls": ["http://10.0.0.7/x", "HTTP://10.0.0.7:80/x"], "min_instances": 2},
            "the same instance",
        ),
        ({"probe_dns": "host:8080", "probe_path": "/x\ty"}, 'must be a URL path starting with "/"'),
        ({"probe_dns": "host:8080", "probe_path": "/x\r"}, 'must be a URL path starting with "/"'),
        ({"probe_dns": "host:\u0668\u0660"}, "must be HOST:PORT"),
        ({"probe_dns": "::1:8080"}, "[::1]:8080"),
    ],
)
def test_probe_addresses_that_could_never_be_probed_are_refused_at_load(consumer, message):
    """Finding 8: these loaded without a word and failed at every round instead ("bad request",
    "refused or unreachable"), or, for the same instance spelt twice, counted one instance as
    two towards min_instances; an unbracketed IPv6 probe_dns ("::1:8080") is itself an IPv6
    address, so which port was meant is a guess. Each is now refused with its reason."""
    from pydantic import ValidationError

    from rotator.config.consumers import ConsumerSettings

    with pytest.raises(ValidationError) as refused:
        ConsumerSettings(name="web-backend", **consumer)
    assert message in str(refused.value)


# --- the prober: the largest round the config allows -----------------------------------------


def test_the_largest_round_the_config_allows_stops_at_its_deadline():
    """Finding 9: a target may name 32 consumers and each may resolve to 4,096 addresses (both
    limits of the config). The prober made one task per instance, all queued on one
    semaphore; at the deadline cancelling them cost O(n^2) in the semaphore's waiter queue:
    16 x 4,096 instances and a 1 s deadline took about 20 s here (32 x 4,096 at 2 s: 70 to 160
    s), holding up the pass that probes never should. Every instance nobody was asked is
    "no answer in the round", and the round ends near its deadline."""
    import time

    from _instances import probe_target

    from rotator.config.consumers import ProbeSettings
    from rotator.probe import HttpProber, StaticResolver

    # Loopback addresses with nothing listening: each refuses at once, so the round's cost is
    # the prober's own, and most instances are still waiting their turn at the deadline.
    addresses = [f"127.2.{i // 256}.{i % 256}" for i in range(4096)]
    names = {f"c{n}.test": addresses for n in range(16)}
    target = probe_target(*({"name": f"c{n}", "probe_dns": f"c{n}.test:9"} for n in range(16)))
    prober = HttpProber(ProbeSettings(timeout=0.5, deadline=1.0), resolver=StaticResolver(names))
    started = time.monotonic()
    probes = prober.probe(target)
    took = time.monotonic() - started
    assert [len(p.instances) for p in probes] == [4096] * 16
    # A behaviour bound, not a speed target: the quadratic cancel took ~20 s; a round that ends
    # near its deadline takes 1.5-2.5 s on a loaded 2-CPU machine, so 8 s cannot flake.
    assert took < 8.0, f"a 1 s round took {took:.1f} s"


def test_the_worst_record_the_config_allows_stays_small():
    """A guard (an attack that held): 32 consumers of 63-character names, 4,096 instances each,
    every one behind on a 128-character id or an error, on the longest IPv6 addresses: the
    record (written to Vault on every change) stays near 110 KB, and nothing an instance
    answered but its id (of a fixed alphabet) reaches it."""
    import json

    from rotator.core.observation import ConsumerRule

    rules = tuple(ConsumerRule(f"c{i:02d}-" + "x" * 59, probed=True) for i in range(32))
    pol = policy(*rules)
    record = awaiting(pol)

    def answer(j: int) -> InstanceAnswer:
        address = f"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:{j:04x}]:65535"
        if j % 2:
            return InstanceAnswer(address, intercom_id=f"{'i' * 120}{j:08d}")
        return InstanceAnswer(address, error="closed without answering")

    answers = tuple(answer(j) for j in range(4096))
    decision = step(record, pol, NOW, *(ConsumerProbe(r.name, answers) for r in rules))
    size = len(json.dumps(decision.record.to_storage()))
    assert size < 128 * 1024, size
    assert all(len(p.in_use) <= 8 and len(p.behind) <= 16 for p in decision.record.rollout)


def test_two_hundred_rounds_leave_no_thread_or_file_descriptor_behind():
    """A guard (an attack that held): 200 rounds over live, refusing and resolved instances
    (each round its own event loop and executor) leave the process's threads and open files
    as they were, give or take the test servers' own connections still closing."""
    import threading
    from pathlib import Path

    from _instances import Answer, Servers, probe_target

    from rotator.config.consumers import ProbeSettings
    from rotator.probe import HttpProber, StaticResolver

    servers = Servers()
    try:
        a = servers.http("127.0.0.2", answer=Answer.of({"intercom_id": "101"}))
        target = probe_target(
            {"name": "urls", "probe_urls": [a.url(), "http://127.0.0.9:9/x"]},
            {"name": "dns", "probe_dns": f"web.test:{a.port}"},
        )
        resolver = StaticResolver({"web.test": ["127.0.0.2", "127.0.0.3"]})
        prober = HttpProber(ProbeSettings(timeout=0.5, deadline=1.0), resolver=resolver)

        def mine() -> int:  # the servers' per-request threads come and go by themselves
            return sum("process_request" not in t.name for t in threading.enumerate())

        prober.probe(target)
        threads, files = mine(), sum(1 for _ in Path("/proc/self/fd").iterdir())
        for _ in range(200):
            [urls, dns] = prober.probe(target)
            assert urls.instances[0].intercom_id == "101"
            assert dns.instances[0].intercom_id == "101"
        assert mine() == threads
        assert sum(1 for _ in Path("/proc/self/fd").iterdir()) < files + 10
    finally:
        servers.stop()
