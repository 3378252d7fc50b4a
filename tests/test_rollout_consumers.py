"""Verified rollout against real consumer processes (issue 12): OpenBao, the emulator, the real
reconciler with its HTTP prober, and ``rotator.demo.consumer`` processes on loopback addresses
(127.0.0.2-4) that read the secret from Vault and answer the probe.

Proves: the old secret is retired only after the last of three instances switched (status says
1/3, 2/3 on the way, the old secret live at Intercom throughout); an instance that never switches
keeps the old secret live past the grace period, status says **stalled** and who, exit 1, and an
operator's ``confirm --consumer`` ends it; instances of a DNS consumer disappearing and appearing
mid-rollout (an injected resolver) are counted as found; an instance answering garbage, slowly
or the old id is not switched. Decisions run on the test's clock (probe spacing and grace), so
nothing sleeps; waits are for the consumer processes only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from test_rotation import Clock, World, _wait, make_settings

from rotator.cli.status import render_table, target_status
from rotator.core.record import Phase
from rotator.demo.consumer_process import ConsumerProcess
from rotator.demo.openbao import free_port
from rotator.emulator.server import INTERCOM_EMULATOR_TOKEN
from rotator.probe import HttpProber, StaticResolver

ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
SPACING = {"seconds": 11}  # more than [probes] spacing (10s): each pass counts in the streak
PROBES = {"timeout": "2s", "deadline": "4s"}  # generous: a loaded CI machine is slow


class Fleet:
    """Consumer processes reading the target's path; each starts holding whatever is there."""

    def __init__(self, stack: ExitStack, openbao, emulator, path: str) -> None:
        self._stack, self._openbao, self._emulator, self.path = stack, openbao, emulator, path
        self.port = free_port(ADDRESSES[0])

    def start(self, address: str, *, port: int | None = None) -> ConsumerProcess:
        process = ConsumerProcess(
            vault_addr=self._openbao.address,
            vault_token=self._openbao.root_token,
            path=self.path,
            emulator_url=self._emulator.url,
            reload_delay=0.1,
            listen=f"{address}:{port if port is not None else 0}",
            poll=0.05,
            control=True,
        )
        return self._stack.enter_context(process)


@pytest.fixture
def fleet(openbao, emulator, vault_settings) -> Iterator[Fleet]:
    with ExitStack() as stack:
        yield Fleet(stack, openbao, emulator, vault_settings.state_path.replace("/state", "/web"))


@pytest.fixture
def make_world(openbao, emulator, vault_settings, vault_env, log_output):
    """A World (see test_rotation) whose target names the given consumers and probes them."""
    made: list[World] = []

    def build(consumers: list[dict[str, Any]], resolver=None, **target: Any) -> World:
        settings = make_settings(openbao, emulator, vault_settings, consumers=consumers, **target)
        settings = settings.model_copy(update={"probes": type(settings.probes)(**PROBES)})
        environ = {**vault_env, "INTERCOM_TOKEN": INTERCOM_EMULATOR_TOKEN}
        environ |= {"ROTATOR_HOOK_TOKEN": "hook-token-for-tests-0123456789"}
        environ |= {"ROTATOR_HOOK_HMAC": "hmac-key-for-tests-0123456789abc"}
        world = World(settings, environ, Clock(), emulator, openbao)
        world.prober = HttpProber(settings.probes, resolver=resolver)  # type: ignore[attr-defined]
        made.append(world)
        return world

    yield build
    for world in made:
        world.close()
    output = log_output.getvalue()
    for secret in emulator.store.all():
        assert secret.secret not in output, "secret material reached the log"


def rotate(world: World, instances: list[ConsumerProcess]) -> tuple[str, str]:
    """Provision, let every instance load the first secret, freeze them, then start a
    rotation: (old id, new id), the new one stored and awaiting rollout."""
    world.reconciler(prober=world.prober).reconcile_all()
    old = world.consumer()["intercom_id"]
    for instance in instances:
        _wait(lambda i=instance: i.state()["holds"] == old)
        instance.control(reload=False)
    world.clock.advance(days=31)
    world.reconciler(prober=world.prober).reconcile_all()
    assert world.record().phase is Phase.AWAITING_ROLLOUT
    return old, world.consumer()["intercom_id"]


def step(world: World) -> Any:
    """One pass a probe spacing later (a daemon's next interval)."""
    world.clock.advance(**SPACING)
    [report] = world.reconciler(prober=world.prober).reconcile_all()
    return report


def switch(instance: ConsumerProcess, new: str) -> None:
    instance.control(reload=True)
    _wait(lambda: instance.state()["holds"] == new)


def shown(world: World) -> dict[str, Any]:
    status = target_status(
        world.target, world.record(), world.reconciler().store.consumer(world.target), None
    )
    return {
        "status": status,
        "json": json.loads(json.dumps(status.consumers)),
        "table": render_table([status]),
    }


def test_old_secret_retired_only_after_the_last_of_three_instances_switched(fleet, make_world):
    """Three instances switch one by one: status shows 1/3, 2/3, 3/3; the old secret stays live
    at Intercom until every instance answered the new id on two spaced probe rounds."""
    instances = [fleet.start(address) for address in ADDRESSES]
    urls = [i.probe_url for i in instances]
    world = make_world([{"name": "web-backend", "probe_urls": urls}], confirmation="consumers")
    old, new = rotate(world, instances)
    for switched, instance in enumerate(instances, start=1):
        switch(instance, new)
        report = step(world)
        [consumer] = shown(world)["json"]
        assert (consumer["switched"], consumer["found"]) == (switched, 3), report.reason
        assert old in world.live()
        if switched < 3:
            assert consumer["in_use"] == [old]
            assert f"{ADDRESSES[switched]}:" in " ".join(consumer["behind"])
    assert world.record().phase is Phase.AWAITING_ROLLOUT  # one stable round is not enough
    step(world)
    assert world.live() == [new]
    assert world.record().history[-1].confirmed_by == "consumers"


def test_an_instance_that_never_switches_stalls_the_rollout_past_its_grace(fleet, make_world):
    """hook-or-grace with a stuck instance: past the grace the old secret is still live, status
    says STALLED and names 127.0.0.4, then an operator's confirmation of the consumer retires it."""
    instances = [fleet.start(address) for address in ADDRESSES]
    urls = [i.probe_url for i in instances]
    world = make_world(
        [{"name": "web-backend", "probe_urls": urls}],
        confirmation="hook-or-grace",
        grace_period="1h",
    )
    old, new = rotate(world, instances)
    for instance in instances[:2]:
        switch(instance, new)
    step(world)
    world.clock.advance(hours=2)
    report = step(world)
    assert "stalled" in report.reason
    assert old in world.live()
    view = shown(world)
    assert view["status"].stalled
    assert "STALLED since" in view["table"]
    assert f"{ADDRESSES[2]}:{fleet_port(instances[2])} on {old}" in view["table"]
    step(world)
    assert old in world.live()
    result = world.reconciler(prober=world.prober).confirm(
        "web", secret_id=new, rotation_id=None, via="cli", consumer="web-backend"
    )
    assert result.status == "confirmed"
    step(world)
    assert world.live() == [new]


def test_dns_instances_disappearing_and_appearing_mid_rollout(fleet, make_world):
    """A DNS consumer (injected resolver, one port on three loopback addresses): an instance
    stuck on the old secret goes away, so the two left confirm; before they do, a new instance
    appears answering 503 and resets the streak until it answers the new secret."""
    port = fleet.port
    instances = [fleet.start(address, port=port) for address in ADDRESSES]
    mapping = {"web.test": list(ADDRESSES)}
    world = make_world(
        [{"name": "web-backend", "probe_dns": f"web.test:{port}"}],
        resolver=StaticResolver(mapping),
        confirmation="consumers",
    )
    old, new = rotate(world, instances)
    for instance in instances[:2]:
        switch(instance, new)
    step(world)
    assert shown(world)["json"][0]["switched"] == 2
    instances[2].stop()
    mapping["web.test"] = list(ADDRESSES[:2])
    step(world)  # found 2, switched 2: one stable round
    assert shown(world)["json"][0]["found"] == 2
    newcomer = fleet.start("127.0.0.5", port=port)
    _wait(lambda: newcomer.state()["holds"] == new)  # it loads the path as it starts
    newcomer.control(mode="down")
    mapping["web.test"] = [*ADDRESSES[:2], "127.0.0.5"]
    step(world)
    consumer = shown(world)["json"][0]
    assert (consumer["found"], consumer["switched"], consumer["streak"]) == (3, 2, 0)
    assert old in world.live()
    newcomer.control(mode="ok")
    step(world)
    assert old in world.live()
    report = step(world)
    assert world.live() == [new], (report.reason, shown(world)["json"], newcomer.state())


@pytest.mark.parametrize(
    ("mode", "why"), [("garbage", "not JSON"), ("slow", "timed out"), ("old", "on {old}")]
)
def test_an_instance_answering_garbage_slowly_or_the_old_id_is_not_switched(
    fleet, make_world, mode, why
):
    """An instance that holds the new secret but answers garbage, too slowly or the old id
    counts as not switched, past the grace too; once it answers right, the rollout ends."""
    instances = [fleet.start(address) for address in ADDRESSES[:2]]
    urls = [i.probe_url for i in instances]
    world = make_world(
        [{"name": "web-backend", "probe_urls": urls}], confirmation="grace", grace_period="1m"
    )
    old, new = rotate(world, instances)
    for instance in instances:
        switch(instance, new)
    instances[1].control(mode=mode)
    world.clock.advance(hours=1)
    for _ in range(3):
        step(world)
    assert old in world.live()
    [consumer] = shown(world)["json"]
    assert why.format(old=old) in " ".join(consumer["behind"])
    instances[1].control(mode="ok")
    step(world)
    step(world)
    assert world.live() == [new]


def fleet_port(instance: ConsumerProcess) -> str:
    return instance.address.rpartition(":")[2]
