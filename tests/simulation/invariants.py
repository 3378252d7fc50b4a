"""The invariants of PRODUCT.md, judged from what the simulated world saw (never from rotator's
own account of it), after every step of the simulation and at every DELETE Intercom applies.

    I1  the consumers' secret is live at Intercom, with the material Intercom issued for it
    I2  no secret is deleted while the consumers' path holds it
    I3  once settled, no secret this target named is live besides the current one
    I4  generations only grow; one secret per generation is ever stored at the consumers' path
    I5  settling takes a bounded number of passes
    I6  no secret material in anything rotator logged
    I7  no DELETE of a secret consumers may hold until a secret stored at their path after it
        was confirmed after that store, or has been stored for the grace period on the server's
        clock (then every consumer moved past it); or, for the secret that was current when an
        operator recorded an emergency rotate-now, once something else is stored
    I8  every secret a record says it retired is really gone at Intercom
    I9  an emergency rotate-now that returned (whatever its exit code) is served once Intercom
        answers again: the secret current when it was typed is gone within two hours, before
        any schedule is due
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from simulation.actors import GRACE
from simulation.stats import COUNTS
from simulation.world import World

from rotator.core.record import Record

GENERATION = re.compile(r"· rotator g(\d+) ")


@dataclass
class Watch:
    """What the world saw happen, and the violations found so far."""

    world: World
    violations: list[str] = field(default_factory=list)
    #: Every write of the consumers' path: (id, server time).
    writes: list[tuple[str, float]] = field(default_factory=list)
    #: every id the consumers' path ever held: deleting one needs I7.
    held: set[str] = field(default_factory=set)
    #: id -> server time of the latest state write that recorded a confirmation of it.
    confirmed_at: dict[str, float] = field(default_factory=dict)
    #: secrets current when an operator's emergency rotate-now recorded itself (I7).
    leaked: set[str] = field(default_factory=set)
    #: secrets an emergency rotate-now that returned must have retired (I9).
    owed: set[str] = field(default_factory=set)
    #: generation -> the id its rotation stored at the consumers' path (I4).
    generations: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.world.on_consumers.append(self._stored)
        self.world.on_state.append(self._state)
        self.world.on_delete.append(self._deleting)

    def violate(self, text: str) -> None:
        self.violations.append(f"t+{self.world.now - 1_790_000_000:.3f}s {text}")

    # --- what the world tells -------------------------------------------------------------

    def _stored(self, data: dict[str, Any]) -> None:
        secret_id = data["intercom_id"]
        self.writes.append((secret_id, self.world.now))
        self.held.add(secret_id)
        match = GENERATION.search(str(data.get("name") or ""))
        if match:
            generation = int(match.group(1))
            earlier = self.generations.setdefault(generation, secret_id)
            if earlier != secret_id:
                self.violate(f"I4: generation {generation} stored {earlier}, then {secret_id}")

    def _state(self, before: Record | None, after: Record, writer: str) -> None:
        request = after.request
        asked = after.emergency or (
            request is not None and request.emergency and request.leaked == after.current_id
        )
        if asked and writer.endswith(":emergency") and after.current_id:
            # An operator's emergency rotate-now recorded itself (on the rotation under way, or
            # as a request the next rotation serves): the current secret leaked.
            self.leaked.add(after.current_id)
        if before is not None and len(after.history) > len(before.history):
            COUNTS["rotations"] += 1
            COUNTS["emergencies"] += after.history[-1].emergency
        if after.phase.value == "blocked" and (before is None or before.phase != after.phase):
            COUNTS["blocks"] += 1
        fresh = before is None or (before.confirmed_at, before.pending_id) != (
            after.confirmed_at,
            after.pending_id,
        )
        if (
            after.confirmed_at is not None
            and after.pending_id
            and fresh
            and (after.confirmed_by != "grace")
        ):
            COUNTS["confirmations"] += 1
            self.confirmed_at[after.pending_id] = self.world.now

    def _deleting(self, secret_id: str) -> None:
        COUNTS["deletes"] += 1
        data = self.world.consumers()
        holder = data["intercom_id"] if data else None
        if holder == secret_id:
            self.violate(f"I2: deleted {secret_id} while the consumers' path held it")
            return
        if secret_id not in self.held or holder is None:
            return
        last = max(i for i, (held, _) in enumerate(self.writes) if held == secret_id)
        moved_past = any(
            self.confirmed_at.get(held, float("-inf")) > at
            or self.world.now - at >= GRACE.total_seconds()
            for held, at in self.writes[last + 1 :]
        )
        record = self.world.state_record()
        emergency = (
            record is not None
            and record.emergency
            and secret_id == record.current_id
            and secret_id in self.leaked
        )
        if not (moved_past or emergency):
            later = [held for held, _ in self.writes[last + 1 :]]
            self.violate(
                f"I7: deleted {secret_id}, which consumers held, though none of the secrets "
                f"stored after it ({later}) was confirmed or past its grace, and no emergency"
            )

    # --- checked after every step -----------------------------------------------------------

    def check(self) -> None:
        data = self.world.consumers()
        if data is not None:
            secret = self.world.secrets.get(data["intercom_id"])
            if secret is None or secret.died is not None:
                self.violate(f"I1: consumers hold {data['intercom_id']}, not live at Intercom")
            elif secret.material != data["secret"]:
                self.violate("I1: consumers hold other material than Intercom issued")
        record = self.world.state_record()
        if record is not None:
            claimed = set(record.retired_ids)
            for entry in record.history:
                claimed |= set(entry.retired_ids)
            for secret_id in sorted(claimed):
                if self.world.live(secret_id):
                    self.violate(f"I8: {secret_id} is said retired but is live at Intercom")
        assert not self.violations, "\n".join(self.violations)

    def served(self) -> None:
        """I9, once Intercom answers again and passes have run."""
        live = sorted(i for i in self.owed if self.world.live(i))
        assert live == [], f"I9: an emergency rotate-now returned, yet {live} is still live"

    def settled(self, record: Record) -> None:
        """I3 and I4 once the target has come to rest."""
        data = self.world.consumers()
        assert data is not None, "I5: nothing at the consumers' path after settling"
        assert record.current_id == data["intercom_id"], (record.current_id, data["intercom_id"])
        owned = set(record.owned_names)
        strays = [
            s.id
            for s in self.world.secrets.values()
            if s.died is None and s.name in owned and s.id != record.current_id
        ]
        assert strays == [], f"I3: live secrets it named besides the current one: {strays}"
        generations = [h.generation for h in record.history]
        assert generations == sorted(set(generations)), f"I4: history generations {generations}"
        assert len({h.new_id for h in record.history}) == len(record.history), "I4: new ids repeat"
