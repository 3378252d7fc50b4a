"""Verified rollout: which named consumers are on the secret as stored now (pure).

A target may name the services that read its secret (``Policy.consumers``). A **probed** one is
asked by every instance which secret it signs with (``rotator.probe`` gathers the answers into
``Observation.probes``); it is confirmed once every instance found answered the new id (and the
stored material's fingerprint, when given) on ``stable_probes`` rounds in a row, at least
``probe_spacing`` apart on the shared clock, with at least ``min_instances`` found. A probe
confirmation is not sticky: the next round that sees an instance off the new secret voids it.
A **hook** consumer confirms itself with its name; an operator may confirm any consumer
(``rotator confirm --consumer``), which stands until the next store.

Progress lives in the record, bound to ``(pending_id, stored_version)``: anything else reads as
unconfirmed, whatever a stale write left. ``rotator.core.safety.rolled_out`` decides from it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from rotator.core import transitions as t
from rotator.core.observation import ConsumerProbe, ConsumerRule, Observation, Policy
from rotator.core.record import BEHIND_LIMIT, IN_USE_LIMIT, ConsumerProgress, Record

#: How ``status`` and the machine's reasons list who is behind: at most this many addresses.
BEHIND_SHOWN = 3


@dataclass(frozen=True, slots=True)
class Summary:
    """What one probe round says of one consumer."""

    found: int
    switched: int
    in_use: tuple[str, ...]
    behind: tuple[str, ...]
    problem: str | None
    #: Every instance found answered the new secret, and enough of them were found.
    ok: bool


def classify(
    probe: ConsumerProbe, *, pending_id: str, expected: str | None, rule: ConsumerRule
) -> Summary:
    """Sort a round's answers: an instance is switched iff it answered the new id without an
    error and with the stored material's fingerprint (or none, unless one is required). No
    answer, an error, another id or another fingerprint: not switched."""
    switched = 0
    in_use: list[str] = []
    behind: list[str] = []
    for answer in probe.instances:
        if answer.error is not None:
            behind.append(f"{answer.address}: {answer.error}")
        elif answer.intercom_id != pending_id:
            other = answer.intercom_id or "?"
            if other not in in_use:
                in_use.append(other)
            behind.append(f"{answer.address} on {other}")
        elif answer.fingerprint is None and rule.require_fingerprint:
            behind.append(f"{answer.address}: no fingerprint (required)")
        elif answer.fingerprint is not None and answer.fingerprint != expected:
            behind.append(f"{answer.address}: fingerprint does not match the stored secret")
        else:
            switched += 1
    found = len(probe.instances)
    problem = probe.error
    if problem is None and found < rule.min_instances:
        problem = f"{found} instance(s) found, at least {rule.min_instances} needed"
    ok = probe.error is None and found > 0 and switched == found and found >= rule.min_instances
    return Summary(
        found=found,
        switched=switched,
        in_use=tuple(in_use[:IN_USE_LIMIT]),
        behind=tuple(behind[:BEHIND_LIMIT]),
        problem=problem,
        ok=ok,
    )


def progress(record: Record, name: str) -> ConsumerProgress | None:
    """``name``'s progress on the secret as stored now; ``None`` when it has none for it."""
    for entry in record.rollout:
        if (
            entry.name == name
            and entry.secret_id == record.pending_id
            and entry.stored_version == record.stored_version
        ):
            return entry
    return None


def entry_for(record: Record, name: str) -> ConsumerProgress:
    """``name``'s progress on this store, or a fresh one bound to it."""
    found = progress(record, name)
    if found is not None:
        return found
    return ConsumerProgress(
        name=name, secret_id=record.pending_id or "", stored_version=record.stored_version or 0
    )


def verified(record: Record) -> bool:
    """The rollout of the secret as stored now is verified per named consumer: some process
    configured with them recorded progress for this store (``owed`` does, from the store on).
    A process whose own config names none must neither retire it on a grace nor take an
    anonymous hook call for it: it cannot see who is behind."""
    return any(progress(record, entry.name) is entry for entry in record.rollout)


def unnamed(record: Record) -> str:
    """Why a process whose config names no consumers leaves a verified rollout alone."""
    names = ", ".join(sorted({p.name for p in record.rollout}))
    return (
        f"awaiting rollout of {record.pending_id}, verified per consumer ({names}) by a "
        "rotator configured with them; this configuration names no consumers: update it, or "
        "confirm with the CLI"
    )


def confirmed(record: Record, name: str) -> bool:
    entry = progress(record, name)
    return entry is not None and entry.confirmed_at is not None


def owed(record: Record, policy: Policy) -> Record:
    """Every named consumer has an entry for the secret as stored now, unconfirmed until it
    confirms: the record carries the rollout (schema 3) from the store on, so an older rotator
    refuses it rather than retiring it on its grace before a round or a confirmation came."""
    if record.pending_id is None or record.stored_version is None:
        return record
    for rule in policy.consumers:
        if progress(record, rule.name) is None:
            record = t.consumer_probed(record, entry_for(record, rule.name))
    return record


def observe(record: Record, obs: Observation, now: datetime) -> Record:
    """Fold this pass's probe round into the record's progress (without a round, only what
    ``owed`` adds)."""
    record = owed(record, obs.policy)
    if obs.probes is None or record.pending_id is None or record.stored_version is None:
        return record
    rounds = {probe.consumer: probe for probe in obs.probes}
    expected = obs.consumer.probe_fingerprint
    for rule in obs.policy.consumers:
        probe = rounds.get(rule.name)
        if not rule.probed or probe is None:
            continue
        summary = classify(probe, pending_id=record.pending_id, expected=expected, rule=rule)
        before = entry_for(record, rule.name)
        after = _counted(before, summary, rule, obs.policy, now)
        if after != before:
            record = t.consumer_probed(record, after)
    return record


def _counted(
    entry: ConsumerProgress, summary: Summary, rule: ConsumerRule, policy: Policy, now: datetime
) -> ConsumerProgress:
    if summary.ok:
        spaced = entry.streak_at is None or now - entry.streak_at >= policy.probe_spacing
        # Counted up to stable_probes only: a streak that kept growing would change the record,
        # so write it to Vault, on every pass while other consumers keep the rollout waiting.
        if spaced and entry.streak < rule.stable_probes:
            # Two processes probing a second apart are not two observations.
            entry = replace(entry, streak=entry.streak + 1, streak_at=now)
        if entry.streak >= rule.stable_probes and entry.confirmed_at is None:
            entry = replace(entry, confirmed_at=now, confirmed_by=t.BY_PROBES)
    else:
        entry = replace(entry, streak=0, streak_at=None)
        if entry.confirmed_by == t.BY_PROBES:  # an instance left the new secret: void
            entry = replace(entry, confirmed_at=None, confirmed_by=None)
    shown = (summary.found, summary.switched, summary.in_use, summary.behind, summary.problem)
    if shown != (entry.found, entry.switched, entry.in_use, entry.behind, entry.problem):
        entry = replace(
            entry,
            found=summary.found,
            switched=summary.switched,
            in_use=summary.in_use,
            behind=summary.behind,
            problem=summary.problem,
            since=now,
        )
    return entry


def unconfirmed(record: Record, policy: Policy) -> tuple[str, ...]:
    """Named consumers not (or no longer) confirmed for the secret as stored now."""
    return tuple(r.name for r in policy.consumers if not confirmed(record, r.name))


def probed_unconfirmed(record: Record, policy: Policy) -> tuple[str, ...]:
    """Probed consumers not confirmed: a grace deadline does not retire past them."""
    return tuple(r.name for r in policy.consumers if r.probed and not confirmed(record, r.name))


def unseen(record: Record, obs: Observation) -> tuple[str, ...]:
    """Consumers confirmed by their probes that this pass has no round of (the prober failed,
    or a rotate-now during a backoff skipped probing): a probe confirmation is not sticky, so
    it retires nothing until a round that still agrees (or one that voids it)."""
    rounds = {probe.consumer for probe in obs.probes or ()}
    return tuple(
        rule.name
        for rule in obs.policy.consumers
        if rule.probed
        and rule.name not in rounds
        and (entry := progress(record, rule.name)) is not None
        and entry.confirmed_by == t.BY_PROBES
    )


def retired_by(record: Record, policy: Policy) -> str:
    """Who the rollout that is done now is recorded as confirmed by (the history keeps it)."""
    if policy.consumers and not unconfirmed(record, policy):
        return t.BY_CONSUMERS
    return t.BY_GRACE


def waiting(record: Record, policy: Policy, now: datetime) -> tuple[Record, str]:
    """Named consumers are behind: past the grace deadline the rollout is **stalled** (a probe
    still sees the old secret in use, or hook consumers under ``consumers``); the reason says
    who (past a hook-or-grace deadline, the probed consumers only: the grace stands in for the
    hook ones)."""
    if record.deadline is not None and now >= record.deadline:
        if record.stalled_at is None:
            record = t.stalled(record, at=now)
        holding = None if policy.confirmation == "consumers" else probed_unconfirmed(record, policy)
        behind = behind_text(record, policy, holding)
        return record, f"rollout of {record.pending_id} stalled past its grace: {behind}"
    return (
        record,
        f"awaiting rollout of {record.pending_id}: waiting for {behind_text(record, policy)}",
    )


def behind_text(record: Record, policy: Policy, names: tuple[str, ...] | None = None) -> str:
    """Who is behind, for reasons, status and notifications: "mobile-api 1/2 switched
    (10.0.0.9:8080 on 101); billing has not confirmed"."""
    rules = {r.name: r for r in policy.consumers}
    parts = []
    for name in names if names is not None else unconfirmed(record, policy):
        entry = progress(record, name)
        if not rules[name].probed:
            parts.append(f"{name} has not confirmed")
        elif entry is None or entry.since is None:  # ``owed``, no round yet
            parts.append(f"{name} not probed yet")
        else:
            detail = entry.problem or "; ".join(entry.behind[:BEHIND_SHOWN])
            # Every instance not switched is behind; the record keeps only a sample of them.
            more = entry.found - entry.switched - len(entry.behind[:BEHIND_SHOWN])
            if entry.problem is None and more > 0:
                detail += f"; {more} more"
            text = f"{name} {entry.switched}/{entry.found} switched"
            parts.append(f"{text} ({detail})" if detail else text)
    return "; ".join(parts) or "nobody"


@dataclass(frozen=True, slots=True)
class ConsumerState:
    """One named consumer as ``status``, metrics and notifications show it."""

    name: str
    kind: str  # "probed" or "hook"
    #: "confirmed", "waiting", or "stalled" (behind past the grace deadline).
    state: str
    confirmed_by: str | None
    confirmed_at: datetime | None
    switched: int | None
    found: int | None
    in_use: tuple[str, ...]
    behind: tuple[str, ...]
    problem: str | None
    streak: int | None
    stable_probes: int | None
    since: datetime | None


def states(
    record: Record, rules: tuple[ConsumerRule, ...], confirmation: str = "consumers"
) -> list[ConsumerState]:
    """Each named consumer's standing on the secret awaiting rollout (empty otherwise). A
    stall is held by who is behind, and only under ``consumers`` by a hook consumer: under
    ``hook-or-grace`` the grace stands in for it (it shows "waiting")."""
    if record.pending_id is None or not rules:
        return []
    shown = []
    for rule in rules:
        entry = progress(record, rule.name)
        done = entry is not None and entry.confirmed_at is not None
        holds = rule.probed or confirmation == "consumers"
        state = "confirmed" if done else "stalled" if record.stalled_at and holds else "waiting"
        # A round sets ``since``; an entry without one was only ``owed``: not probed yet.
        probed = rule.probed and entry is not None and entry.since is not None
        shown.append(
            ConsumerState(
                name=rule.name,
                kind="probed" if rule.probed else "hook",
                state=state,
                confirmed_by=entry.confirmed_by if entry else None,
                confirmed_at=entry.confirmed_at if entry else None,
                switched=entry.switched if probed and entry else None,
                found=entry.found if probed and entry else None,
                in_use=entry.in_use if entry else (),
                behind=entry.behind if entry else (),
                problem=entry.problem if entry else None,
                streak=entry.streak if probed and entry else None,
                stable_probes=rule.stable_probes if rule.probed else None,
                since=entry.since if entry else None,
            )
        )
    return shown


def seen_in_use(record: Record, obs: Observation, secret_id: str) -> str | None:
    """A probe round of this pass shows an instance still answering ``secret_id`` for a
    consumer no operator confirmed: deleting it now would break that instance."""
    for probe in obs.probes or ():
        entry = progress(record, probe.consumer)
        if entry is not None and entry.confirmed_by == "cli":
            continue  # an operator confirmed it in spite of its probes
        for answer in probe.instances:
            if answer.error is None and answer.intercom_id == secret_id:
                return f"a probe sees {probe.consumer} at {answer.address} still using it"
    return None
