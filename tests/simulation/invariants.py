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
    I10 with named consumers, no DELETE of a secret consumers held (an emergency's leaked
        secret excepted, as in I7) while
        (a) a running instance of a probed consumer signs with it (its id or its material, as
            the fleet really is at that DELETE, not as a probe said), unless an operator
            confirmed that consumer (``confirm --consumer``) after the latest store;
        (b) under ``consumers``, some hook consumer has not confirmed (by the hook or an
            operator) the secret consumers hold now, after its latest store.
        I7's grace clause thus also needs (a) once consumers are named.
    I11 an operator's abort backs out to the very secret consumers held before the rotation:
        a restore stores back the secret that was current, with the material Intercom issued
        for it, and a back-out ends with that secret current. The rest of an abort's safety is
        judged by the invariants above, on every DELETE: the restored secret is at the
        consumers' path, so deleting it breaks I2; the abandoned one was held, so I7 (and I10
        with named consumers) lets it go only once the restore, the latest store, is confirmed
        after it or past its grace on the server's clock, and, named, rolled out to the fleet.

What I10 can promise, and why it is judged on the fleet as it is at the DELETE. A probe round is
a point-in-time observation, taken before the pass's lease, and a DELETE may come many steps
later (other processes, fleet changes and time in between) or in a later pass that probes
nothing (a retirement resumed after a crash). That is sound only because instances move the way
consumers do: they load what the consumers' path holds (when they start and when they reload,
``simulation.fleet``), so one goes back to an older secret only when the path does (a restored
backup), and the rotation under way sees that (it blocks, or stores again, voiding progress).
An instance going back on its own after the last round (a deploy rolled back to a build with
the old secret baked in) could be deleted from under whatever rotator does: no prober can see
the future, so it is not modelled, and I10 would be no promise of the product if it were.
What the simulation does model between a round and the DELETE: instances starting (they load
the new secret), stopping, reloading, getting stuck, failing their probe, and reloading only
the id but not the key (``wrong-fp``: probes then see another secret's fingerprint, always,
since an instance that told none could not be told apart: ``require_fingerprint`` exists for
that).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from simulation.actors import GRACE
from simulation.fleet import signs_with
from simulation.stats import COUNTS
from simulation.windows import Window, is_open
from simulation.world import World

from rotator.core.record import ConsumerProgress, Record

GENERATION = re.compile(r"· rotator g(\d+) ")


@dataclass
class Watch:
    """What the world saw happen, and the violations found so far."""

    world: World
    #: The target's confirmation policy, and its hook consumers (I10).
    policy: str = "hook-or-grace"
    hooks: tuple[str, ...] = ()
    #: The target's rotation windows (they hold no safety rule: only counted, at deletes).
    windows: tuple[Window, ...] = ()
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
    #: (consumer, id) -> server time of the latest state write that newly recorded that named
    #: consumer's confirmation of that id by the hook or an operator (I10), and by an operator.
    vouched: dict[tuple[str, str], float] = field(default_factory=dict)
    by_operator: dict[tuple[str, str], float] = field(default_factory=dict)
    #: secrets an operator's abort abandoned (a restore put the previous one back).
    abandoned: set[str] = field(default_factory=set)

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
        # During a back-out an emergency is about the secret being restored (the one consumers
        # move back to), which the rotation after the back-out retires at once.
        about = after.pending_id if after.restoring is not None else after.current_id
        asked = after.emergency or (
            request is not None and request.emergency and request.leaked == about
        )
        if asked and writer.endswith(":emergency") and about:
            # An operator's emergency rotate-now recorded itself (on the rotation under way, or
            # as a request the next rotation serves): the current secret leaked.
            self.leaked.add(about)
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
        self._consumers_confirmed(before, after)
        self._aborting(before, after)
        self._backed_out(before, after)
        if after.stalled_at is not None and (before is None or before.stalled_at is None):
            COUNTS["stalls"] += 1

    def _aborting(self, before: Record | None, after: Record) -> None:
        """Count what the operator's aborts did, and judge I11 on what Intercom issued."""
        if after.abort is not None and (before is None or before.abort is None):
            COUNTS["aborts recorded"] += 1
        if before is None or before.abort is None or after.abort is not None:
            return
        back = after.restoring
        if back is not None and before.restoring is None:
            COUNTS["aborts served (restore)"] += 1
            self.abandoned.add(back.abandoned_id or "")
            restored = self.world.secrets.get(after.pending_id or "")
            if after.pending_id != before.current_id:
                self.violate(
                    f"I11: abort restores {after.pending_id}, not {before.current_id}, the "
                    "secret consumers held before the rotation"
                )
            elif (
                restored is None
                or after.pending_secret is None
                or after.pending_secret.reveal() != restored.material
            ):
                self.violate(f"I11: abort restores {after.pending_id} with other material")
        elif len(after.history) > len(before.history) and after.history[-1].outcome == "aborted":
            COUNTS["aborts served (creating)"] += 1
        else:
            COUNTS["aborts refused when served"] += 1

    def _backed_out(self, before: Record | None, after: Record) -> None:
        """I11 at the end of a back-out: the secret restored is current."""
        if before is None or before.restoring is None or after.restoring is not None:
            return
        if len(after.history) > len(before.history) and after.history[-1].outcome == "aborted":
            COUNTS["back-outs completed"] += 1
            if after.current_id != before.pending_id:
                self.violate(
                    f"I11: back-out ended with {after.current_id} current, not the restored "
                    f"{before.pending_id}"
                )

    def _consumers_confirmed(self, before: Record | None, after: Record) -> None:
        """Named consumers whose confirmation of the secret as stored now this write records
        (an entry bound to another store is void: it is not counted)."""

        def confirmation(p: ConsumerProgress) -> tuple[object, ...]:
            return (p.secret_id, p.stored_version, p.confirmed_at, p.confirmed_by)

        was = {p.name: confirmation(p) for p in before.rollout} if before is not None else {}
        for entry in after.rollout:
            by = entry.confirmed_by or ""
            if (
                entry.confirmed_at is None
                or not (by == "cli" or by.startswith("hook"))
                or (entry.secret_id, entry.stored_version)
                != (after.pending_id, after.stored_version)
                or was.get(entry.name) == confirmation(entry)
            ):
                continue
            COUNTS["consumer confirmations"] += 1
            self.vouched[entry.name, entry.secret_id] = self.world.now
            if by == "cli":
                self.by_operator[entry.name, entry.secret_id] = self.world.now

    def _deleting(self, secret_id: str) -> None:
        COUNTS["deletes"] += 1
        COUNTS["abandoned deletes"] += secret_id in self.abandoned
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
        if emergency and not is_open(self.windows, self.world.now):
            COUNTS["emergency deletes outside a window"] += 1
        if not emergency:
            self._rolled_out(secret_id, holder)

    def _rolled_out(self, secret_id: str, holder: str) -> None:
        """I10 at the DELETE of ``secret_id``, a secret consumers held, while they hold
        ``holder``: judged on the fleet as it is now, and on confirmations since the store."""
        if not self.world.fleet:
            return
        COUNTS["named deletes"] += 1
        stored_at = self.writes[-1][1]  # the latest write of the consumers' path

        def since_store(confirmations: dict[tuple[str, str], float], name: str) -> bool:
            return confirmations.get((name, holder), float("-inf")) > stored_at

        for name, fleet in self.world.fleet.items():
            users = [i.address for i in fleet if signs_with(self.world, i, secret_id)]
            if users and not since_store(self.by_operator, name):
                self.violate(
                    f"I10: deleted {secret_id} while {name} at {', '.join(users)} signs with it "
                    f"(consumers hold {holder}; no operator confirmed {name} since its store)"
                )
        if self.policy == "consumers":
            silent = [name for name in self.hooks if not since_store(self.vouched, name)]
            if silent:
                self.violate(
                    f"I10: deleted {secret_id} under 'consumers' though {', '.join(silent)} "
                    f"did not confirm {holder} since its latest store"
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
        # A back-out's entry names the secret it restored (or none): not a new one.
        made = [h.new_id for h in record.history if h.outcome != "aborted"]
        assert len(set(made)) == len(made), f"I4: new ids repeat: {made}"
