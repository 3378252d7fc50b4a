"""The named consumers' instances (``World.fleet``): how they move, and how a process probes them.

Two probed consumers, as a cluster would run them: ``web-backend`` behind three listed URLs (an
instance not running refuses its URL), ``mobile-api`` behind a DNS name (a headless Service:
only running instances are listed, and none at all is the round's error). Beside them, when
the policy hears from hooks, two hook consumers (``billing``, ``ledger``) that confirm through
the hook with their name.

What an instance signs with is the ground truth I10 judges at every DELETE (``signs_with``), not
what a probe said. Instances only ever load what the consumers' path holds, when they start and
when they reload (their poll, as time passes, or an operator's rolling restart): an instance
goes back to an older secret only when the path does (a restored backup), which the rotation
under way sees. A probe round is a point-in-time observation; a consumer that went back on its
own after the last round (a deploy rolled back to a build with the old secret baked in) is
outside what any prober can promise, and is not modelled (see ``invariants``).

Everything random here draws on the world's seeded ``rng``: Hypothesis replays it exactly.
"""

from __future__ import annotations

from collections.abc import Callable

from simulation.stats import COUNTS
from simulation.world import SimInstance, World

from rotator.config import TargetSettings
from rotator.core.observation import ConsumerProbe, InstanceAnswer
from rotator.signing import probe_fingerprint

WEB_BACKEND, MOBILE_API = "web-backend", "mobile-api"
HOOK_CONSUMERS = ("billing", "ledger")
PROBE_PATH = "/.well-known/intercom-secret"
WEB_ADDRESSES = ("10.0.0.7:8080", "10.0.0.8:8080", "10.0.0.9:8080")
MOBILE_ADDRESSES = tuple(f"10.1.0.{i}:8080" for i in range(1, 5))
MOBILE_DNS = "mobile-api-headless.sim:8080"
#: What may happen to one instance (or, for one pick in eight, to all seven at once).
ACTIONS = ("reload", "appear", "disappear", "down", "up", "garbage", "stuck", "wrong-fp")
#: What a probe of an instance whose endpoint fails gets (``rotator.probe``'s wording).
PROBE_ERRORS = {"down": "connection refused", "slow": "timed out", "garbage": "not JSON"}


def new_fleet(mobile: int) -> dict[str, list[SimInstance]]:
    """Three web-backend instances, and ``mobile`` of four mobile-api ones running; none has
    loaded anything yet (``heal`` or time loads them)."""
    return {
        WEB_BACKEND: [SimInstance(a) for a in WEB_ADDRESSES],
        MOBILE_API: [SimInstance(a, present=i < mobile) for i, a in enumerate(MOBILE_ADDRESSES)],
    }


def reload(world: World, instance: SimInstance) -> None:
    """A running instance reads the consumers' path again (a stuck one does not; a broken
    reload, ``wrong-fp``, takes the id and keeps the key it had)."""
    data = world.consumers()
    if not instance.present or instance.mode == "stuck" or data is None:
        return
    instance.holds = data["intercom_id"]
    if instance.mode != "wrong-fp" or instance.material is None:
        instance.material = data["secret"]


def appear(world: World, instance: SimInstance) -> None:
    """An instance starts (or restarts): a fresh process loads what the path holds now."""
    instance.present, instance.mode = True, "ok"
    instance.holds = instance.material = None
    reload(world, instance)


def miskey(instance: SimInstance) -> None:
    """From now on the instance's reloads move only its id and keep the key it has
    (``reload``): probes then see another secret's fingerprint beside the new id.

    The key it signs with now is left alone. Changing it here would send an instance back to an
    older secret on its own, after a probe round may have seen it on the right one: a deploy
    rolled back to a build with an old key baked in, which no prober can see coming and which
    I10 does not model (``simulation.invariants``). A seeded run found exactly that: an instance
    seen on the new secret, switched back to the old key before the old secret's DELETE."""
    instance.mode = "wrong-fp"


def signs_with(world: World, instance: SimInstance, secret_id: str) -> bool:
    """Ground truth: deleting ``secret_id`` now would break this instance."""
    secret = world.secrets.get(secret_id)
    return instance.present and (
        instance.holds == secret_id or (secret is not None and instance.material == secret.material)
    )


def answer(world: World, instance: SimInstance) -> InstanceAnswer:
    """What a probe of the instance gets: its id, with its key's fingerprint half the time
    (always when its key is not its id's: without one nothing could tell, which is what
    ``require_fingerprint`` is for); an error when it is not running or its endpoint fails."""
    if not instance.present:
        return InstanceAnswer(instance.address, error="connection refused")
    if instance.mode in PROBE_ERRORS:
        return InstanceAnswer(instance.address, error=PROBE_ERRORS[instance.mode])
    if instance.holds is None or instance.material is None:
        return InstanceAnswer(instance.address, error="HTTP 503")
    own = world.secrets.get(instance.holds)
    honest = own is not None and own.material == instance.material
    told = not honest or world.rng.random() < 0.5
    fingerprint = probe_fingerprint(instance.material) if told else None
    return InstanceAnswer(instance.address, intercom_id=instance.holds, fingerprint=fingerprint)


def act(world: World, pick: int, action: str) -> None:
    """Something happens to one instance, or to all of them (a rolling restart, an outage)."""
    instances = [i for fleet in world.fleet.values() for i in fleet]
    index = pick % (len(instances) + 1)
    COUNTS["fleet"] += 1
    for instance in instances if index == len(instances) else [instances[index]]:
        if action == "reload":
            reload(world, instance)
        elif action == "appear":
            appear(world, instance)
        elif action == "disappear":
            instance.present = False
        elif action == "down":
            instance.mode = "slow" if pick // 16 % 2 else "down"
        elif action == "up":
            instance.mode = "ok"
        elif action == "wrong-fp":
            miskey(instance)
        else:  # "garbage", "stuck"
            instance.mode = action


def poll(world: World, seconds: float) -> None:
    """Time passes: running instances poll the path (within a minute every one has)."""
    for fleet in world.fleet.values():
        for instance in fleet:
            if seconds >= 60 or world.rng.random() < 0.5:
                reload(world, instance)


def heal(world: World) -> None:
    """An operator fixes the fleet: every URL's instance runs, at least one behind the DNS name,
    each answering properly and reloaded from the path."""
    for name, fleet in world.fleet.items():
        for i, instance in enumerate(fleet):
            if instance.present or name == WEB_BACKEND or i == 0:
                appear(world, instance)


class ProcessProber:
    """One process's prober (``rotator.reconciler.ports.Prober``), as ``rotator.probe`` behaves
    from the outside: one round per call, after a checkpoint (a crash or another process may
    come first); the answers are the fleet as it is at that moment."""

    def __init__(self, world: World, checkpoint: Callable[[str], None]) -> None:
        self._world = world
        self._checkpoint = checkpoint

    def probe(self, target: TargetSettings) -> tuple[ConsumerProbe, ...]:
        self._checkpoint(f"probe {target.name}")
        COUNTS["probes"] += 1
        rounds = []
        for consumer in target.consumers:
            fleet = self._world.fleet.get(consumer.name, [])
            if consumer.probe_urls:
                answers = tuple(answer(self._world, i) for i in fleet)
                rounds.append(ConsumerProbe(consumer.name, answers))
            elif consumer.probe_dns:
                running = tuple(answer(self._world, i) for i in fleet if i.present)
                error = None if running else "resolves to no address"
                rounds.append(ConsumerProbe(consumer.name, running, error=error))
        return tuple(rounds)
