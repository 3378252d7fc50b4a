"""The rules that guard every delete (PRODUCT.md rules 1 and 2), as pure functions.

``rotator.core.machine`` asks ``unsafe_to_delete`` before each ``Delete`` it decides, and only ever
puts on ``old_ids`` what ``owned`` accepts. Orphans are the narrowest class of all: a secret
under a name this target recorded before a create, whose material never reached Vault.
"""

from __future__ import annotations

from rotator.core.observation import Observation
from rotator.core.record import Record


def live_ids(obs: Observation) -> set[str]:
    return {s.id for s in obs.intercom or ()}


def orphans(record: Record, obs: Observation) -> tuple[str, ...]:
    """Live secrets under a name this target recorded, whose material never reached Vault."""
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
    return any(s.id == secret_id and s.name in names for s in obs.intercom or ())


def reached_consumers(record: Record, obs: Observation, secret_id: str) -> bool:
    """Whether consumers may have used ``secret_id`` (so it needs a confirmation or a grace)."""
    return (
        secret_id == record.current_id
        or secret_id in record.known_ids
        or secret_id in obs.policy.adopt
    )


def unsafe_to_delete(record: Record, obs: Observation, secret_id: str) -> str | None:
    """Why deleting ``secret_id`` now could break rule 1 or 2; ``None`` when it is safe."""
    consumer = obs.consumer
    live = live_ids(obs)
    if secret_id == consumer.intercom_id:
        return "the consumers' Vault path holds it"
    keeper = record.pending_id or record.current_id
    if keeper is None or keeper == secret_id:
        return "it would leave the target without a live secret"
    if keeper not in live:
        return f"the secret that replaces it ({keeper}) is not live at Intercom"
    if consumer.intercom_id != keeper:
        return f"the consumers' Vault path does not hold its replacement {keeper}"
    secret = record.pending_secret
    if secret is not None and consumer.fingerprint != secret.fingerprint():
        return "the consumers' copy of the new secret does not match what Intercom issued"
    if (
        record.pending_id is not None
        and reached_consumers(record, obs, secret_id)
        and not (record.emergency or record.confirmed_by or record.confirmed_at)
    ):
        return "the new secret was neither confirmed nor past its grace period"
    if not owned(record, obs, secret_id):
        return "this target did not create or adopt it"
    return None
