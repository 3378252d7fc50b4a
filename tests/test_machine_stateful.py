"""The pure core under random interleavings (Hypothesis stateful testing).

An in-memory Intercom and an in-memory Vault KV v2 (versions, check-and-set) stand in for the
real ones; several actors run reconcile passes that mirror ``rotator.reconciler`` but stop
between every external operation, so Hypothesis can interleave them, crash any of them between
any two operations, lose the answer of a create or a delete, move the wall clock (both ways)
and send confirmations, right or wrong. After every rule the invariants of the torture suite
are checked on the model; at the end the faults stop and the target must settle.

    I1  the consumers' secret is live at Intercom, with the material Intercom issued for it
    I2  no secret is deleted while the consumers' path holds it, nor (unless in an emergency)
        before its replacement there was confirmed or had been there for the grace period
    I3  once settled, no secret this target named is live besides the current one
    I4  generations advance one per completed rotation; one secret per generation is ever
        adopted by the consumers' path
    I5  settling takes a bounded number of passes
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from rotator.core import machine
from rotator.core.confirmation import confirm
from rotator.core.lease import LeaseWatch
from rotator.core.observation import (
    ConsumerView,
    Create,
    Created,
    CreateUnknown,
    Delete,
    Deleted,
    Failed,
    LiveSecret,
    Observation,
    Policy,
    RotateNow,
    Store,
    Stored,
    absorb,
)
from rotator.core.record import Record
from rotator.redaction import SecretValue

POLICY = Policy(
    target="web",
    secret_name="Web",
    grace_period=timedelta(hours=1),
    confirmation="hook-or-grace",
    lease_ttl=60,
)
INTERVAL = timedelta(days=1)
GENERATION = re.compile(r"· rotator g(\d+) ")


class Conflict(Exception):
    pass


@dataclass
class World:
    """Intercom and Vault, in memory, with the faults the rules arm."""

    wall: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    mono: float = 0.0
    secrets: dict[str, dict] = field(default_factory=dict)  # id -> name, material, live
    ids: itertools.count = field(default_factory=lambda: itertools.count(100))
    kv: dict[str, tuple[object, int]] = field(default_factory=dict)
    lose_next_create: bool = False
    lose_next_delete: bool = False
    violations: list[str] = field(default_factory=list)
    held_since: dict[str, datetime] = field(default_factory=dict)  # id -> first at consumers'
    confirmed: set[str] = field(default_factory=set)
    latest_wall: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    adopted: dict[int, str] = field(default_factory=dict)  # generation -> id at consumers' path
    fresh: itertools.count = field(default_factory=lambda: itertools.count(1))

    # --- Intercom ---
    def create(self, name: str) -> tuple[str, str]:
        secret_id = str(next(self.ids))
        material = f"material-{secret_id}-" + "x" * 30
        self.secrets[secret_id] = {"name": name, "material": material, "live": True}
        return secret_id, material

    def delete(self, secret_id: str) -> bool:
        held = self.read("consumer")[0]
        if held is not None and held["intercom_id"] == secret_id:
            self.violations.append(f"I2: deleted {secret_id} while the consumers' path held it")
        state = self.read("state")[0]
        emergency = isinstance(state, Record) and state.emergency
        if held is not None and secret_id in self.held_since and not emergency:
            replacement = held["intercom_id"]
            since = self.held_since[replacement]
            waited = self.latest_wall >= since + POLICY.grace_period
            if replacement not in self.confirmed and not waited:
                self.violations.append(
                    f"I2: deleted {secret_id}, which consumers used, before its replacement "
                    f"{replacement} was confirmed or past its grace"
                )
        entry = self.secrets.get(secret_id)
        if entry is None or not entry["live"]:
            return True
        entry["live"] = False
        return False

    def listing(self) -> tuple[LiveSecret, ...]:
        return tuple(LiveSecret(i, s["name"]) for i, s in self.secrets.items() if s["live"])

    # --- Vault KV v2 ---
    def read(self, path: str) -> tuple[object, int]:
        return self.kv.get(path, (None, 0))

    def write(self, path: str, value: object, cas: int) -> int:
        version = self.kv.get(path, (None, 0))[1]
        if version != cas:
            raise Conflict(path)
        self.kv[path] = (value, version + 1)
        if path == "consumer":
            self._note_adoption(value)
            assert isinstance(value, dict)
            self.held_since.setdefault(value["intercom_id"], self.wall)
        return version + 1

    def _note_adoption(self, value: object) -> None:
        assert isinstance(value, dict)
        match = GENERATION.search(value["name"])
        if match:
            generation = int(match.group(1))
            earlier = self.adopted.setdefault(generation, value["intercom_id"])
            if earlier != value["intercom_id"]:
                self.violations.append(
                    f"I4: generation {generation} adopted {earlier} and {value['intercom_id']}"
                )

    def consumer_view(self) -> ConsumerView:
        value, version = self.read("consumer")
        if value is None:
            return ConsumerView(version=version)
        assert isinstance(value, dict)
        return ConsumerView(
            intercom_id=value["intercom_id"],
            fingerprint=SecretValue(value["secret"]).fingerprint(),
            version=version,
        )


Step = Generator[str, None, None]


def run_pass(world: World, me: str, leases: LeaseWatch, command: RotateNow | None) -> Step:
    """One reconcile pass, yielding before every external operation (like Reconciler._attempt)."""
    yield "read state"
    stored, version = world.read("state")
    yield "read consumer"
    consumer = world.consumer_view()
    now = world.wall
    if stored is None:
        record = machine.initial_record(POLICY, consumer, now)
        yield "write initial state"
        version = world.write("state", record, version)
    else:
        assert isinstance(stored, Record)
        record = stored
    due = record.phase.value == "idle" and (
        consumer.intercom_id is None
        or record.last_rotation_at is None
        or now >= record.last_rotation_at + INTERVAL
    )
    listed = None
    if machine.needs_intercom(record, due=due, command=command, now=now):
        yield "list"
        listed = world.listing()
    obs = Observation(
        policy=POLICY,
        consumer=consumer,
        intercom=listed,
        due=due,
        me=me,
        fresh=f"{next(world.fresh):024x}",
        command=command,
        lease_free=leases.free("web", record.lease),
    )
    decision = machine.step(record, obs, now)
    for _ in range(40):
        if decision.record != record:
            yield "write state"
            version = world.write("state", decision.record, version)
        record = decision.record
        if decision.action is None:
            return
        result = yield from act(world, record, decision.action)
        if isinstance(result, CreateUnknown):
            yield "list after a lost answer"
            obs = replace(
                obs, intercom=world.listing(), result=None, fresh=f"{next(world.fresh):024x}"
            )
        else:
            obs = replace(absorb(obs, result), fresh=f"{next(world.fresh):024x}")
        decision = machine.step(record, obs, world.wall)
        obs = replace(obs, result=None, command=None)
    raise AssertionError("a pass did not settle in 40 steps")


def act(world: World, record: Record, action: object) -> Generator[str, None, object]:
    if isinstance(action, Create):
        yield "POST"
        secret_id, material = world.create(action.name)
        if world.lose_next_create:
            world.lose_next_create = False
            return CreateUnknown("answer lost")
        return Created(secret_id, action.name, 1, SecretValue(material))
    if isinstance(action, Store):
        assert record.pending_secret is not None
        yield "write consumer"
        world.write(
            "consumer",
            {
                "secret": record.pending_secret.reveal(),
                "intercom_id": record.pending_id,
                "name": record.planned_name,
            },
            action.cas,
        )
        yield "read back consumer"
        return Stored(world.consumer_view())
    assert isinstance(action, Delete)
    yield "DELETE"
    already = world.delete(action.secret_id)
    if world.lose_next_delete:
        world.lose_next_delete = False
        return Failed("delete answer lost", permanent=False)
    return Deleted(action.secret_id, already=already)


ACTORS = ("a", "b", "c")


class RotationModel(RuleBasedStateMachine):
    @initialize(provisioned=st.booleans())
    def setup(self, provisioned: bool) -> None:
        self.world = World()
        self.passes: dict[str, Step | None] = dict.fromkeys(ACTORS)
        self.leases = {a: LeaseWatch(a, lambda: self.world.mono) for a in ACTORS}
        if provisioned:  # most interesting runs start from a target that has its first secret
            for _ in run_pass(self.world, "a", self.leases["a"], None):
                pass

    @rule(actor=st.sampled_from(ACTORS), rotate_now=st.booleans(), emergency=st.booleans())
    def start(self, actor: str, rotate_now: bool, emergency: bool) -> None:
        if self.passes[actor] is None:
            command = RotateNow(emergency=emergency) if rotate_now else None
            self.passes[actor] = run_pass(self.world, actor, self.leases[actor], command)

    @rule(actor=st.sampled_from(ACTORS), steps=st.integers(1, 30))
    def advance(self, actor: str, steps: int) -> None:
        for _ in range(steps):
            current = self.passes[actor]
            if current is None:
                return
            try:
                next(current)
            except (StopIteration, Conflict):
                self.passes[actor] = None

    @rule(actor=st.sampled_from(ACTORS))
    def crash(self, actor: str) -> None:
        """The process dies between two operations: its pass and its memory are gone."""
        self.passes[actor] = None
        self.leases[actor] = LeaseWatch(actor, lambda: self.world.mono)

    @rule()
    def lose_a_create_answer(self) -> None:
        self.world.lose_next_create = True

    @rule()
    def lose_a_delete_answer(self) -> None:
        self.world.lose_next_delete = True

    @rule(hours=st.sampled_from([-3, 1, 2, 25, 30]))
    def wall_clock_jumps(self, hours: int) -> None:
        self.world.wall += timedelta(hours=hours)
        self.world.latest_wall = max(self.world.latest_wall, self.world.wall)

    @rule(seconds=st.sampled_from([1, 30, 61, 120]))
    def time_passes(self, seconds: int) -> None:
        self.world.mono += seconds

    @rule(right=st.booleans())
    def confirm(self, right: bool) -> None:
        stored, version = self.world.read("state")
        if not isinstance(stored, Record):
            return
        named = stored.pending_id if right else (stored.current_id or "nope")
        updated, _, _ = confirm(
            stored, POLICY, secret_id=named, rotation_id=None, via="hook", now=self.world.wall
        )
        if not right:
            assert updated is None or stored.pending_id == named
        if updated is not None:
            self.world.write("state", updated, version)
            self.world.confirmed.add(named)

    @invariant()
    def consumers_hold_a_live_secret_with_its_material(self) -> None:
        value, _ = self.world.read("consumer")
        if value is None:
            return
        assert isinstance(value, dict)
        issued = self.world.secrets[value["intercom_id"]]
        assert issued["live"], f"I1: consumers hold {value['intercom_id']}, deleted at Intercom"
        assert issued["material"] == value["secret"], "I1: consumers hold other material"

    @invariant()
    def no_violation_was_recorded(self) -> None:
        assert self.world.violations == []

    def teardown(self) -> None:
        """Faults stop; one actor passes until the target settles (I3, I4, I5)."""
        world = getattr(self, "world", None)
        if world is None:
            return
        world.lose_next_create = world.lose_next_delete = False
        world.mono += 10_000  # every lease left behind is long abandoned
        world.wall += timedelta(hours=2)  # every grace period has elapsed
        world.latest_wall = max(world.latest_wall, world.wall)
        settler = LeaseWatch("settler", lambda: world.mono)
        for n in range(12):
            record = world.read("state")[0]
            if isinstance(record, Record) and record.phase.value == "idle" and n > 0:
                break
            world.mono += 100
            for _ in run_pass(world, "settler", settler, None):
                pass
            world.mono += 100
            world.wall += timedelta(hours=2)  # lets a grace period started here elapse
            world.latest_wall = max(world.latest_wall, world.wall)
        else:
            raise AssertionError("I5: the target did not settle in 12 passes")
        record = world.read("state")[0]
        assert isinstance(record, Record)
        consumer = world.read("consumer")[0]
        assert isinstance(consumer, dict)
        assert record.current_id == consumer["intercom_id"]
        owned = set(record.owned_names)
        strays = [
            i
            for i, s in world.secrets.items()
            if s["live"] and s["name"] in owned and i != record.current_id
        ]
        assert strays == [], f"I3: live secrets it named besides the current one: {strays}"
        generations = [h.generation for h in record.history]
        assert (
            generations == list(range(generations[0], generations[0] + len(generations)))
            if generations
            else True
        )
        assert len({h.new_id for h in record.history}) == len(record.history)
        assert world.violations == []


RotationModel.TestCase.settings = settings(
    max_examples=400,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRotationModel = RotationModel.TestCase
