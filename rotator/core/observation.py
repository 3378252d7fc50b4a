"""What the rotation machine is told (``Observation``) and what it answers (``Decision``).

Plain frozen values; ``needs_intercom`` says what a pass must gather, ``initial_record`` what a
target seen for the first time starts from, and ``absorb`` folds an action's result into the
observation so the next step sees the world as it now is. See ``rotator.core.machine`` for the
rules.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from rotator.core.record import Binding, Phase, Record
from rotator.core.windows import WindowState
from rotator.redaction import SecretValue

#: How a target's rollout is confirmed before the old secret is retired.
Confirmation = Literal["hook-or-grace", "hook", "grace", "consumers"]

#: Lists may lag behind creates and deletes: a secret missing from Intercom's lists for less
#: than this long is not taken to be gone (and even then only blocks or rotates; deleting
#: always asks Intercom about that one id).
LIST_LAG_TOLERANCE = timedelta(minutes=5)

# --- what the machine is told ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiveSecret:
    """A secret an Intercom list answer showed: its id and name, all a decision needs."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ConsumerRule:
    """One named consumer of the target's secret, as far as decisions go: ``probed`` ones are
    asked which secret they sign with (``rotator.probe``), the others confirm by the hook."""

    name: str
    probed: bool
    #: Consecutive all-switched probe rounds (at least ``Policy.probe_spacing`` apart) needed.
    stable_probes: int = 2
    #: Fewer instances answering than this never confirms (a scaled-to-zero consumer).
    min_instances: int = 1
    #: An instance that answers without a fingerprint counts as not switched.
    require_fingerprint: bool = False


@dataclass(frozen=True, slots=True)
class InstanceAnswer:
    """What one instance of a probed consumer answered; ``address`` is ``host:port`` only (never
    a URL path or credentials), ``error`` a kind ("timed out", "HTTP 503"), never its body."""

    address: str
    intercom_id: str | None = None
    fingerprint: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ConsumerProbe:
    """One probe round of one consumer: every instance found; ``error`` when its name did not
    resolve (no instance then: it counts as not switched)."""

    consumer: str
    instances: tuple[InstanceAnswer, ...]
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """The target's configuration, as far as decisions go."""

    target: str
    secret_name: str
    grace_period: timedelta
    confirmation: Confirmation
    adopt: tuple[str, ...] = ()
    lease_ttl: float = 60.0
    #: ``rotate_on_drift``: rotate at once when the consumers' secret is gone at Intercom.
    watch_drift: bool = False
    #: Named consumers (``[[targets.consumers]]``); none: a target behaves as before them.
    consumers: tuple[ConsumerRule, ...] = ()
    #: Least time between two probe rounds counted in one streak (processes probing a second
    #: apart are not two observations).
    probe_spacing: timedelta = timedelta(seconds=10)


@dataclass(frozen=True, slots=True)
class ConsumerView:
    """What the consumers' Vault path holds (never the material itself: its fingerprint)."""

    intercom_id: str | None = None
    rotation_id: str | None = None
    fingerprint: str | None = None
    created_at: int | None = None
    version: int = 0
    #: ``rotator.signing.probe_fingerprint`` of the material: what a switched consumer answers.
    probe_fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class PreviousSecret:
    """A version of the consumers' path from before the rotation's store that holds the secret
    then current: what an abort writes back (``rotator.core.abort``). Its material stays a
    ``SecretValue``; the fingerprint is what the record's ``current_fingerprint`` is checked
    against."""

    version: int
    intercom_id: str
    secret: SecretValue
    fingerprint: str | None
    name: str | None = None
    created_at: int | None = None


@dataclass(frozen=True, slots=True)
class KVHistory:
    """What a pass found looking back through the consumers' path's versions below ``below``:
    the newest holding the wanted secret (``None``: none left, deleted or destroyed)."""

    below: int
    found: PreviousSecret | None
    #: Whether one of the path's recent versions held the new secret of the rotation aborted
    #: (stored, then undone before the record knew it: consumers may have read it).
    pending_seen: bool = False


@dataclass(frozen=True, slots=True)
class RotateNow:
    """An operator asked *this* process for a rotation just now (it was also persisted as the
    record's ``request``); unlike a request found in the record, it does not wait out a backoff."""

    emergency: bool = False
    #: Who asked (the CLI's OS user@host, or ``--actor``); ``None``: this process.
    by: str | None = None


@dataclass(frozen=True, slots=True)
class Created:
    secret_id: str
    name: str
    created_at: int | None
    secret: SecretValue


@dataclass(frozen=True, slots=True)
class CreateUnknown:
    message: str


@dataclass(frozen=True, slots=True)
class Stored:
    """The consumers' path was written and read back; ``consumer`` is what was read."""

    consumer: ConsumerView


@dataclass(frozen=True, slots=True)
class Deleted:
    """Intercom said the secret is gone: DELETE answered 204, or its own 404 (``already``)."""

    secret_id: str
    already: bool = False


@dataclass(frozen=True, slots=True)
class Failed:
    """An action (or gathering) failed; ``permanent`` ones block the target."""

    message: str
    permanent: bool
    delay: float | None = None
    #: An Intercom scope the token lacks (a 403), kept in the record for ``doctor``.
    missing_scope: str | None = None


Result = Created | CreateUnknown | Stored | Deleted | Failed


@dataclass(frozen=True, slots=True)
class Observation:
    policy: Policy
    consumer: ConsumerView
    #: Intercom's live secrets as one list answer showed them (lists may lag); ``None`` when
    #: not gathered (see ``needs_intercom``).
    intercom: tuple[LiveSecret, ...] | None
    due: bool
    me: str
    #: Fresh random hex (>= 16 chars) for ids and name suffixes; the machine stays deterministic.
    fresh: str
    command: RotateNow | None = None
    result: Result | None = None
    #: True when nobody else holds a live lease (the reconciler judges by its monotonic clock).
    lease_free: bool = True
    #: The workspace this process acts for, once the reconciler checked the record may be acted
    #: on by it (``rotator.core.binding``); stamped on every record written.
    binding: Binding | None = None
    #: This pass's probe round of the target's probed consumers; ``None`` when not gathered
    #: (see ``needs_probes``).
    probes: tuple[ConsumerProbe, ...] | None = None
    #: The target's rotation windows now (``rotator.core.windows``); ``None``: it has none.
    window: WindowState | None = None
    #: The consumers' path's history, read only while an abort waits (``needs_history``).
    history: KVHistory | None = None


#: Plausible Unix seconds for a secret's created_at (milliseconds are refused, not believed).
_TIMESTAMPS = range(1_000_000_000, 10_000_000_000)


def needs_history(record: Record | None) -> int | None:
    """The version below which a pass must look for the secret an abort restores (``None``:
    none wanted): while an abort of a rotation whose new secret may have reached the consumers'
    path waits, every version from before its store."""
    if record is None or record.abort is None or record.pending_id is None:
        return None
    if record.stored_version is not None:
        return record.stored_version
    return 0  # not stored yet as far as the record knows: below the path's latest version


def needs_probes(record: Record | None, policy: Policy, *, now: datetime) -> bool:
    """Whether a pass must probe the target's consumers before deciding: only while a rotation
    awaits its rollout (not backing off, not an emergency, not paused) and some consumer has a
    probe."""
    return (
        record is not None
        and record.paused is None
        and record.phase is Phase.AWAITING_ROLLOUT
        and not record.emergency
        and (record.retry_at is None or now >= record.retry_at)
        and any(rule.probed for rule in policy.consumers)
    )


def needs_intercom(
    record: Record | None, *, due: bool, command: object, now: datetime, consumers: bool = False
) -> bool:
    """Whether a pass must list Intercom's secrets before deciding (idle targets need not).
    ``consumers``: the target names consumers, whose confirmations may end a rollout in any
    pass (a list then finds the strays to retire with the old secret). A paused target decides
    nothing, whatever was asked."""
    if record is not None and record.paused is not None:
        return False
    if command is not None or record is None:
        return True
    if record.abort is not None:
        return True  # a restore writes back only a secret Intercom still lists
    if record.retry_at is not None and now < record.retry_at:
        return False
    if record.phase is Phase.BLOCKED:
        # A request that had its go at the block (``Request.resumed``) rests with it.
        return record.request is not None and not record.request.resumed
    if record.request is not None:
        return True
    if record.phase is Phase.IDLE:
        return due
    if record.phase is Phase.CREATING:
        return record.pending_id is None  # orphans of a lost answer are found by their name
    if record.phase is Phase.AWAITING_ROLLOUT:
        # About to retire: a list finds the strays to retire with the old secret.
        return (
            consumers
            or record.emergency
            or record.confirmed_at is not None
            or (record.deadline is not None and now >= record.deadline)
        )
    return False  # retiring: every old secret gets its DELETE, whatever a list shows


def initial_record(policy: Policy, consumer: ConsumerView, now: datetime) -> Record:
    """A target seen for the first time adopts whatever secret its consumers' path holds."""
    created = consumer.created_at
    if created is not None and created in _TIMESTAMPS:
        last: datetime | None = datetime.fromtimestamp(created, tz=now.tzinfo)
    else:
        last = now if consumer.intercom_id else None
    held = (consumer.intercom_id,) if consumer.intercom_id else ()
    return Record(
        target=policy.target, current_id=consumer.intercom_id, last_rotation_at=last, known_ids=held
    )


# --- what the machine answers -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Create:
    name: str


@dataclass(frozen=True, slots=True)
class Store:
    """Project ``record.pending_*`` to the consumers' path (cas = observed version), read back."""

    cas: int


@dataclass(frozen=True, slots=True)
class Delete:
    secret_id: str


Action = Create | Store | Delete


@dataclass(frozen=True, slots=True)
class Decision:
    record: Record
    action: Action | None
    reason: str
    #: True when the decision was to act but another process's live lease held it off.
    held_off: bool = False


def absorb(obs: Observation, result: Result) -> Observation:
    """Fold an action's result into the observation, so the next step sees the world as it is
    now (a created secret is live, a deleted one is gone, the consumers' path was rewritten)."""
    if isinstance(result, Created):
        info = LiveSecret(id=result.secret_id, name=result.name)
        listed = None if obs.intercom is None else (*obs.intercom, info)
        return replace(obs, intercom=listed, result=result)
    if isinstance(result, Deleted):
        listed = (
            None
            if obs.intercom is None
            else tuple(s for s in obs.intercom if s.id != result.secret_id)
        )
        return replace(obs, intercom=listed, result=result)
    if isinstance(result, Stored):
        # A probe round taken before this store says nothing about who reloaded it.
        return replace(obs, consumer=result.consumer, probes=None, result=result)
    return replace(obs, result=result)
