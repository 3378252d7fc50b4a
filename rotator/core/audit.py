"""The audit trail: what happened to a target, who did it and why, derived from each write.

Every record rotator writes goes through ``noted``: the entries are computed from what changed
between the record as read and the record written, so no transition and no operator action can
be written without its line. The decision core notes its own writes (``machine.step``); the
writes an operator's command or the hook makes (``RecordStore.update``) are noted there, with
the actor that made them. The record keeps the last ``AUDIT_LIMIT`` entries (``status
--history`` shows them); the whole trail goes to logs as one ``audit.<event>`` JSON line per
entry, which a SIEM ingests.

Who (``by``):
* an operator: the OS user@host, or ``--actor`` (recorded with a request: rotate-now, pause,
  abort; or the actor of the write: resume, confirm, adopt);
* the hook: ``hook:bearer`` or ``hook:hmac``, the consumer named, and the client's address;
* the daemon or a CronJob pass: ``schedule`` for a rotation its schedule started, ``grace`` (or
  ``probes``, ``consumers``) for a rollout judged done without a confirmation, ``rotator`` for
  the steps that follow; ``via`` names the process that wrote the entry. A process taking over
  the expired lease of another (which died mid-step) notes ``lease_taken_over``, naming both.

Ids, names, times and reasons only: never material (reasons pass through redaction when
logged, as every log line does).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Protocol

from rotator.core.record import AuditEntry, Phase, Record, Request
from rotator.redaction import truncate

#: Entries kept in the record: enough for an incident's story; the full trail is in logs.
AUDIT_LIMIT = 32
#: Longest reason kept in an entry (a block's reason may be long; logs keep the whole).
WHY_LIMIT = 240
#: Longest ``by`` kept in an entry: a hook's actor fits; a longer one (a request written by
#: hand, an older CLI's ``--actor``) would be copied whole into each of ``AUDIT_LIMIT`` entries.
WHO_LIMIT = 160


class _Add(Protocol):
    """How the helpers of ``changes`` append an entry."""

    def __call__(
        self,
        event: str,
        who: str,
        text: str = ...,
        secret: str | None = ...,
        rotation: str | None = ...,
    ) -> None: ...


def noted(
    before: Record | None, after: Record, *, at: datetime, why: str, via: str, by: str | None
) -> Record:
    """``after`` with the entries its change from ``before`` amounts to appended (bounded).
    ``by``: who made this write (an operator, the hook); ``None`` for the decision core,
    whose entries name their own cause."""
    entries = changes(before, after, at=at, why=why, via=via, by=by)
    if not entries:
        return after
    return replace(after, audit=(*after.audit, *entries)[-AUDIT_LIMIT:])


def new_entries(before: Record | None, after: Record) -> tuple[AuditEntry, ...]:
    """The entries ``after`` carries that ``before`` did not: what a write added."""
    known = set(before.audit) if before is not None else set()
    return tuple(e for e in after.audit if e not in known)


def since(
    trail: tuple[AuditEntry, ...], seen: int, after: datetime | None = None
) -> tuple[AuditEntry, ...]:
    """The entries of ``trail`` after the one whose ``hash`` is ``seen`` (the newest entry a
    process already saw). Found by identity, not by time: processes stamp entries with their
    own view of Vault's clock, so another's entry may carry an earlier time than one seen
    before it. ``seen`` gone from the trail (more entries were added than the record keeps,
    or the record was put back to an older version: ``vault kv rollback``, a Vault restore
    from backup): the entries stamped later than ``after``, the time of the one seen (all
    when it is not known). A trail put back holds entries already logged; by identity alone
    they were all new again, every target's whole trail relayed a second time."""
    for i in range(len(trail) - 1, -1, -1):
        if hash(trail[i]) == seen:
            return trail[i + 1 :]
    return trail if after is None else tuple(e for e in trail if e.at > after)


def changes(
    before: Record | None, after: Record, *, at: datetime, why: str, via: str, by: str | None
) -> tuple[AuditEntry, ...]:
    """Every event in the change from ``before`` to ``after``, in the order they happened."""
    was = before if before is not None else Record(target=after.target)
    found: list[AuditEntry] = []
    cause = truncate(why, WHY_LIMIT)
    # An idle record keeps the id of its last rotation, which is over: an entry about the idle
    # target (a pause, a request) is about no rotation.
    under_way = after.rotation_id if after.rotating or was.rotating else None

    def add(
        event: str,
        who: str,
        text: str = cause,
        secret: str | None = None,
        rotation: str | None = under_way,
    ) -> None:
        said = truncate(text, WHY_LIMIT)
        found.append(AuditEntry(at, event, truncate(who, WHO_LIMIT), said, rotation, secret, via))

    actor = by or "rotator"
    if by is None and was.lease is not None and was.lease.holder != via:
        # The decision core decides only with the lease free: another's lease in the record
        # had expired (its holder died mid-step), and this process takes the target over.
        add("lease_taken_over", via, f"the lease of {was.lease.holder} had expired")
    _operator(was, after, add, actor)
    if was.phase is Phase.BLOCKED and after.phase is not Phase.BLOCKED:
        add("unblocked", actor)  # before whatever the write did once unblocked
    _rotation(was, after, add, actor, by)
    _rollout(was, after, add, actor, by)
    _ending(was, after, add, actor)
    return tuple(found)


def _unmarked(record: Record) -> Request | None:
    """The record's request as the operator asked it (without the machine's mark)."""
    return None if record.request is None else replace(record.request, resumed=False)


def _operator(was: Record, after: Record, add: _Add, actor: str) -> None:
    """Requests and holds an operator recorded, with the who and why they carry."""
    request = after.request
    # Marking a waiting request as having had its go (``Request.resumed``) is no new request.
    if request is not None and replace(request, resumed=False) != _unmarked(was):
        what = "rotate-now --emergency" if request.emergency else "rotate-now"
        add(
            "emergency_requested" if request.emergency else "rotate_now_requested", request.by, what
        )
    if after.abort is not None and after.abort != was.abort:
        add("abort_requested", after.abort.by, after.abort.reason, rotation=after.abort.rotation_id)
    if after.paused is not None and after.paused != was.paused:
        add("paused", after.paused.by, after.paused.reason)
    elif was.paused is not None and after.paused is None:
        add("resumed", actor, f"it was paused by {was.paused.by}: {was.paused.reason}")


def _rotation(was: Record, after: Record, add: _Add, actor: str, by: str | None) -> None:
    """A rotation's steps: started, created, stored, confirmed, retiring."""
    fresh = after.rotation_id != was.rotation_id and after.rotation_id is not None
    if fresh and after.restoring is None:
        if after.adoption:
            add("adoption_started", actor, secret=after.pending_id)
        else:
            starter = was.request.by if was.request is not None else by or "schedule"
            add("started", starter)
    elif after.emergency and not was.emergency and after.rotating:
        add("emergency", actor, "rotate-now --emergency joined the rotation under way")
    if after.restoring is not None and after.restoring != was.restoring:
        back = after.restoring
        add("aborted", back.by, back.reason, after.pending_id, back.rotation_id)
    elif (
        after.pending_id is not None
        and after.pending_id != was.pending_id
        and after.pending_secret is not None
    ):
        add("created", actor, secret=after.pending_id)
    if after.stored_version is not None and after.stored_version != was.stored_version:
        add("stored", actor, secret=after.pending_id)


def _rollout(was: Record, after: Record, add: _Add, actor: str, by: str | None) -> None:
    """A rollout judged done (confirmed, by a consumer or for all) and the retirement it starts."""
    if after.confirmed_at is not None and after.confirmed_at != was.confirmed_at:
        add("confirmed", by or after.confirmed_by or actor, secret=after.pending_id)
    before_rollout = {(p.name, p.confirmed_at) for p in was.rollout}
    for progress in after.rollout:
        if progress.confirmed_at is not None and (
            (progress.name, progress.confirmed_at) not in before_rollout
        ):
            who = by or progress.confirmed_by or actor
            add("consumer_confirmed", who, f"consumer {progress.name}", progress.secret_id)
    if after.phase is Phase.RETIRING and was.phase is not Phase.RETIRING and after.old_ids:
        ids = ", ".join(after.old_ids)
        add("retiring", after.confirmed_by or actor, f"{ids}: {add_cause(after)}")


def _ending(was: Record, after: Record, add: _Add, actor: str) -> None:
    """Deletes, the end of a rotation (completed, aborted, backed out), blocks and adoptions."""
    appended = (
        after.history[-1] if after.history and after.history[-1:] != was.history[-1:] else None
    )
    gone = list(after.retired_ids)
    if appended is not None:
        gone += appended.retired_ids
    for secret in dict.fromkeys(gone):
        if secret not in was.retired_ids:
            add("retired", actor, secret=secret)
    if appended is not None:
        rotation = appended.rotation_id
        if appended.outcome == "aborted" and was.restoring is not None:
            add("restored", actor, secret=appended.new_id, rotation=rotation)
        elif appended.outcome == "aborted":
            add("aborted", appended.by or actor, appended.reason or "", rotation=rotation)
        else:
            add("completed", actor, secret=appended.new_id, rotation=rotation)
    aborted = appended is not None and appended.outcome == "aborted"
    if was.abort is not None and after.abort is None and after.restoring is None and not aborted:
        add("abort_refused", was.abort.by, rotation=was.abort.rotation_id)
    _state(was, after, add, actor, ended=appended is not None)


def _state(was: Record, after: Record, add: _Add, actor: str, *, ended: bool) -> None:
    """Blocks (their release is noted first, in ``changes``), and a current secret adopted
    outside a rotation."""
    if after.phase is Phase.BLOCKED and was.phase is not Phase.BLOCKED:
        add("blocked", actor, after.blocked_reason or "blocked")
    if (
        after.current_id != was.current_id
        and after.current_id is not None
        and not ended
        and after.restoring is None
        and was.restoring is None
    ):
        add("adopted", actor, secret=after.current_id)


def add_cause(record: Record) -> str:
    """Why a rotation retires its old secrets, in a few words."""
    if record.emergency:
        return "emergency"
    if record.confirmed_by:
        return f"rollout confirmed ({record.confirmed_by})"
    return "orphans"
