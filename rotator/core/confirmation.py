"""Rollout confirmations: the pure rule for whether one counts (hook and CLI alike).

A confirmation counts only for the secret *already stored at the consumers' path and read back*,
named by its id (or its rotation's): anything else changes nothing, so a stale, replayed or
misdirected call is harmless, and one sent before the store is refused rather than kept for
later. Storing the secret again voids it (``transitions.stored`` clears it).

One case looks early but is not: a process wrote the consumers' path and died before recording
that in the state. The confirming process then reads the path back itself; if it holds the new
secret, it records the store first and the confirmation with it, in one check-and-set write.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from rotator.core import rollout, transitions
from rotator.core.observation import ConsumerView, Policy
from rotator.core.record import Phase, Record
from rotator.core.safety import holds_pending
from rotator.durations import shifted

#: How far before the store a signed confirmation may be dated (the sender's clock may be a
#: little behind Vault's); anything older was signed for an earlier store: a replay.
SIGNED_EARLY = timedelta(seconds=5)


class ConfirmStatus(enum.StrEnum):
    """What became of a confirmation: the hook's answer, the CLI's line, the log's field."""

    CONFIRMED = "confirmed"
    ALREADY_CONFIRMED = "already_confirmed"
    UNKNOWN_TARGET = "unknown_target"
    NOT_AWAITING = "not_awaiting"
    WRONG_SECRET = "wrong_secret"  # noqa: S105 - a status name, not a password
    STALE = "stale"
    POLICY_REFUSES = "policy_refuses"
    CONSUMER_REQUIRED = "consumer_required"
    UNKNOWN_CONSUMER = "unknown_consumer"
    PROBED_CONSUMER = "probed_consumer"

    @property
    def accepted(self) -> bool:
        return self in {ConfirmStatus.CONFIRMED, ConfirmStatus.ALREADY_CONFIRMED}


def confirm(
    record: Record,
    policy: Policy,
    consumer: ConsumerView,
    *,
    secret_id: str | None,
    rotation_id: str | None,
    via: str,
    now: datetime,
    signed_at: datetime | None = None,
    consumer_name: str | None = None,
) -> tuple[Record | None, ConfirmStatus, str]:
    """``(record to persist or None, status, message)``. ``signed_at`` is a signed call's
    timestamp: one signed before the secret's latest store (a replay) is refused.
    ``consumer_name``: the named consumer confirming (a target that names its consumers
    accepts nothing else; see ``_by_consumer``)."""
    names_it = (secret_id is not None and secret_id == record.pending_id) or (
        secret_id is None and rotation_id is not None and rotation_id == record.rotation_id
    )
    if rotation_id is not None and rotation_id != record.rotation_id:
        names_it = False
    restored = (record.phase is Phase.CREATING and record.pending_secret is not None) or (
        record.phase is Phase.AWAITING_ROLLOUT and record.stored_version != consumer.version
    )
    if names_it and restored and holds_pending(record, consumer):
        # Stored (or stored again) and read back, by us just now, though not yet recorded:
        # record that store first, as of now (Vault's time, which the read-back told us is
        # past it); this confirmation is of that store.
        record = transitions.stored(
            record, at=now, grace=policy.grace_period, version=consumer.version
        )
    if record.phase is not Phase.AWAITING_ROLLOUT:
        return None, *_not_awaiting(
            record, names_it=names_it, secret_id=secret_id, rotation_id=rotation_id
        )
    if not names_it:
        return (
            None,
            ConfirmStatus.WRONG_SECRET,
            f"the secret awaiting rollout is {record.pending_id} (rotation {record.rotation_id})",
        )
    stored_at = record.stored_at
    if (
        signed_at is not None
        and stored_at is not None
        and signed_at < shifted(stored_at, -SIGNED_EARLY)  # a damaged year-1 stored_at: no error
    ):
        message = (
            f"signed at {signed_at.isoformat()}, before secret {record.pending_id} was stored "
            f"as it is now ({stored_at.isoformat()}): a replay, or a clock far behind. Sign a "
            "new confirmation once your services read the secret"
        )
        return None, ConfirmStatus.STALE, message
    if policy.consumers or consumer_name is not None:
        return _by_consumer(record, policy, consumer_name, via=via, now=now)
    if rollout.verified(record) and via != "cli":
        # This config predates the consumers another process verifies: one anonymous call
        # must not confirm for all of them. An operator (the CLI) still may.
        return None, ConfirmStatus.POLICY_REFUSES, rollout.unnamed(record)
    if policy.confirmation == "grace":
        return (
            None,
            ConfirmStatus.POLICY_REFUSES,
            f"target {record.target} waits for its grace period only",
        )
    if record.confirmed_at is not None:
        return None, ConfirmStatus.ALREADY_CONFIRMED, f"already confirmed ({record.confirmed_by})"
    done = transitions.confirmed(record, at=now, by=via)
    return done, ConfirmStatus.CONFIRMED, f"rollout of {record.pending_id} confirmed"


def _by_consumer(
    record: Record, policy: Policy, name: str | None, *, via: str, now: datetime
) -> tuple[Record | None, ConfirmStatus, str]:
    """One named consumer confirms the secret as stored now. A probed consumer is confirmed by
    its probes, or by an operator (``via="cli"``: the way out of a stall, under any policy)."""
    rules = {rule.name: rule for rule in policy.consumers}
    hook_names = ", ".join(r.name for r in policy.consumers if not r.probed) or "none"
    if name is None:
        message = (
            f'target {record.target} names its consumers: send {{"consumer": ...}} with the '
            f"name of the one confirming (hook consumers: {hook_names})"
        )
        return None, ConfirmStatus.CONSUMER_REQUIRED, message
    rule = rules.get(name)
    if rule is None:
        known = ", ".join(rules) or "none: it names no consumers"
        return None, ConfirmStatus.UNKNOWN_CONSUMER, f"no consumer {name!r} (known: {known})"
    operator = via == "cli"
    if rule.probed and not operator:
        message = (
            f"consumer {name} is probed: its probes decide. An operator may confirm it: "
            f"rotator confirm {record.target} --consumer {name}"
        )
        return None, ConfirmStatus.PROBED_CONSUMER, message
    if policy.confirmation == "grace" and not operator:
        message = f"target {record.target} waits for its grace period and its probes only"
        return None, ConfirmStatus.POLICY_REFUSES, message
    entry = rollout.entry_for(record, name)
    if entry.confirmed_at is not None and (entry.confirmed_by != "probes" or not operator):
        return (
            None,
            ConfirmStatus.ALREADY_CONFIRMED,
            f"{name} already confirmed ({entry.confirmed_by})",
        )
    done = transitions.consumer_confirmed(record, entry, at=now, by=via)
    return done, ConfirmStatus.CONFIRMED, f"{name} confirmed the rollout of {record.pending_id}"


def _not_awaiting(
    record: Record, *, names_it: bool, secret_id: str | None, rotation_id: str | None
) -> tuple[ConfirmStatus, str]:
    last = record.history[-1] if record.history else None
    if record.phase is Phase.RETIRING and names_it:
        return ConfirmStatus.ALREADY_CONFIRMED, "the rotation is already retiring the old secret"
    if last is not None and (secret_id == last.new_id or rotation_id == last.rotation_id):
        return ConfirmStatus.ALREADY_CONFIRMED, f"rotation {last.rotation_id} already completed"
    if record.phase is Phase.CREATING and names_it:
        message = (
            f"secret {record.pending_id} is not at the consumers' Vault path yet (rotation "
            f"{record.rotation_id} is storing it): confirm once your services read it there"
        )
        return ConfirmStatus.NOT_AWAITING, message
    return (
        ConfirmStatus.NOT_AWAITING,
        f"target {record.target} is {record.phase.value}, not awaiting rollout",
    )
