"""The rules that guard every delete (PRODUCT.md rules 1 and 2), as pure functions.

``rotator.core.machine`` asks ``unsafe_to_delete`` before each ``Delete`` it decides, whether it
retires a rotation's old secret or sweeps an orphan, and only ever puts on ``old_ids`` what
``owned`` accepts. Three kinds of evidence, and what each is worth:

* Intercom's answer about one id (DELETE: 204, or its own 404) is the only proof a secret is gone.
* A list answer may lag behind creates and deletes: a secret it shows existed (in this
  workspace, under that name) not long ago; one it omits may exist all the same. Lists are used
  to *find* secrets (orphans under a recorded name), never to conclude one is gone.
* The record: an id whose material reached Vault is ``known`` at the commit point, so it is never
  an orphan, and deleting it needs the rollout of its replacement to be done.
"""

from __future__ import annotations

from datetime import datetime

from rotator.core import rollout
from rotator.core.observation import ConsumerView, Observation, Policy
from rotator.core.record import Record


def holds_pending(record: Record, consumer: ConsumerView) -> bool:
    """The consumers' path holds the record's new secret, with the material Intercom issued (or,
    for an adoption, the material adopted)."""
    secret = record.pending_secret
    expected = secret.fingerprint() if secret is not None else record.pending_fingerprint
    return (
        record.pending_id is not None
        and consumer.intercom_id == record.pending_id
        and (expected is None or consumer.fingerprint == expected)
    )


def as_stored(record: Record, consumer: ConsumerView) -> bool:
    """The consumers' path holds the new secret, untouched since it was stored (a path
    rewritten since, even with the same secret, may have handed consumers another value)."""
    return holds_pending(record, consumer) and record.stored_version == consumer.version


def retired(record: Record) -> set[str]:
    """Secrets Intercom told this target are gone (its DELETE answered 204 or 404)."""
    gone = set(record.retired_ids)
    for entry in record.history:
        gone.update(entry.retired_ids)
    return gone


def live_ids(obs: Observation) -> set[str]:
    """The ids the list answer showed (it may lag: see the module's docstring)."""
    return {s.id for s in obs.intercom or ()}


def orphans(record: Record, obs: Observation) -> tuple[str, ...]:
    """Listed secrets under a name this target recorded, whose material never reached Vault."""
    keep = {record.current_id, record.pending_id, obs.consumer.intercom_id, *record.known_ids}
    names = set(record.owned_names)
    return tuple(s.id for s in obs.intercom or () if s.name in names and s.id not in keep)


def owned(record: Record, obs: Observation, secret_id: str) -> bool:
    """Created (under a recorded name) or adopted by this target, or its current secret."""
    if secret_id in obs.policy.adopt or secret_id == record.current_id:
        return True
    if secret_id in record.known_ids:
        return True
    names = set(record.owned_names)
    listed = [s.name for s in obs.intercom or () if s.id == secret_id]
    if listed:
        return any(name in names for name in listed)
    # Not listed (gone, or a lagging list): an orphan judged ours by its name when it was put on
    # old_ids stays ours; its DELETE will say whether it is still there.
    return secret_id in record.old_ids


def reached_consumers(record: Record, obs: Observation, secret_id: str) -> bool:
    """Whether consumers may have used ``secret_id`` (so it needs a confirmation or a grace)."""
    return (
        secret_id == record.current_id
        or secret_id in record.known_ids
        or secret_id in obs.policy.adopt
    )


def rollout_done(record: Record, policy: Policy, now: datetime) -> str | None:
    """Why the old secret may now be retired; ``None`` while consumers may still use it. An
    emergency retires the leaked (current) secret at once; see ``rolled_out`` for the rest."""
    if record.emergency:
        return "emergency: retiring the old secret now"
    return rolled_out(record, policy, now)


def rolled_out(record: Record, policy: Policy, now: datetime) -> str | None:
    """Why consumers are all on the secret at their path now; ``None`` while some may not be.
    ``now`` is on Vault's clock, like the deadline.

    A confirmation in the record always concerns the secret as stored now: storing it again
    clears it (``transitions.stored``). A grace that elapsed is recorded as a confirmation
    ``by="grace"`` when retirement starts, so a process whose clock estimate is a moment behind
    does not undo it.

    With named consumers, a rollout is done when each one confirmed the secret as stored now
    (``rotator.core.rollout``); a grace deadline (``hook-or-grace``, ``grace``) stands in for
    hook consumers only, never for a probed consumer a probe still sees behind; and not at all
    in a process whose config names no consumers while the record says some process verifies
    this rollout per consumer (``rollout.verified``): that config is out of date.
    """
    if record.confirmed_at is not None:
        return f"rollout confirmed ({record.confirmed_by})"
    if not policy.consumers and rollout.verified(record):
        return None  # a config from before its consumers were named: no grace stands in
    if policy.consumers:
        past = record.deadline is not None and now >= record.deadline
        if not rollout.unconfirmed(record, policy) and (policy.confirmation != "grace" or past):
            return "every consumer confirmed"
        if (
            policy.confirmation in {"hook-or-grace", "grace"}
            and past
            and not rollout.probed_unconfirmed(record, policy)
        ):
            return "grace period elapsed; every probed consumer is on the new secret"
        return None
    if policy.confirmation != "hook" and record.deadline is not None and now >= record.deadline:
        return "grace period elapsed"
    return None


def unsafe_to_delete(record: Record, obs: Observation, secret_id: str, now: datetime) -> str | None:
    """Why deleting ``secret_id`` now could break rule 1 or 2; ``None`` when it is safe."""
    consumer = obs.consumer
    if secret_id == consumer.intercom_id:
        return "the consumers' Vault path holds it"
    if not owned(record, obs, secret_id):
        return "this target did not create or adopt it"
    if not reached_consumers(record, obs, secret_id):
        # An orphan: its material never reached Vault, so no consumer can hold it.
        return None
    keeper = record.pending_id or record.current_id
    if keeper is None or keeper == secret_id:
        return "it would leave the target without a live secret"
    if consumer.intercom_id != keeper:
        return f"the consumers' Vault path does not hold its replacement {keeper}"
    if record.pending_id is not None and not holds_pending(record, consumer):
        return "the consumers' copy of the new secret does not match what Intercom issued"
    if record.pending_id is None:
        return "consumers may still use it; the next rotation retires it after its rollout"
    if record.emergency and secret_id == record.current_id:
        return None  # the leaked secret: an operator asked for it to go at once
    if rolled_out(record, obs.policy, now) is None:
        return "the new secret was neither confirmed nor past its grace period"
    return rollout.seen_in_use(record, obs, secret_id)
