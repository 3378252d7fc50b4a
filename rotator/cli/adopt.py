"""``rotator adopt``: take over a secret created before rotator (in the dashboard, by hand).

It reads the material from stdin and checks it has the shape Intercom issues (before anything
else: a wrong value would reach every consumer), checks the id is live at Intercom, writes the
consumers' path with check-and-set, reads it back, and only then records the adoption in the
target's state record (the record store's check-and-set, as every write). That order matters: a
crash between the two writes leaves the consumers' path naming a secret the record does not
know, which the next pass refuses with an explanation (run adopt again); the other order would
leave a record whose current secret consumers never received. The material is never printed:
output names the id and its fingerprint.

Adopting also binds the record to this process's Intercom workspace: the adopted secret is live
in it. A record bound to another workspace is taken over only with ``--force``.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import BinaryIO

from rotator.cli.check import acting
from rotator.cli.context import EXIT_OK, Context, Parts, UsageError
from rotator.cli.rotate import operator
from rotator.config import TargetSettings
from rotator.core.adoption import (
    AdoptionRefused,
    adopted,
    in_progress,
    material_problem,
)
from rotator.core.binding import binding_problem
from rotator.core.names import valid_secret_id
from rotator.core.observation import ConsumerView, LiveSecret
from rotator.core.record import Binding, Record
from rotator.core.safety import retired
from rotator.errors import TemporaryError
from rotator.intercom import SecretInfo
from rotator.logs import get_logger
from rotator.reconciler.store import consumer_payload_for
from rotator.redaction import SecretValue
from rotator.vault import CasConflict

log = get_logger()


def adopt(
    ctx: Context, name: str, *, secret_id: str, force: bool, stdin: BinaryIO | None = None
) -> int:
    settings = ctx.settings()
    target = settings.target(name)
    secret_id = secret_id.strip()
    if not valid_secret_id(secret_id):
        raise UsageError(
            "--secret-id: an Intercom secret id is 1-128 letters, digits, '.', '_', ':' or '-' "
            "(see rotator doctor, or the secrets list in Intercom's dashboard)"
        )
    secret = read_material(sys.stdin.buffer if stdin is None else stdin)
    with acting(ctx, settings, [name]) as parts:
        for line in adopt_secret(parts, target, secret_id, secret, force=force):
            print(line)
    return EXIT_OK


def read_material(stream: BinaryIO) -> SecretValue:
    """One line of secret material from ``stream`` (a pipe or file, never a terminal),
    refused unless it has the shape of a secret Intercom issues."""
    if stream.isatty():
        raise UsageError(
            "adopt reads the secret's material from stdin and will not take it from a "
            "terminal: pipe it in, e.g. `vault kv get -field=secret PATH | rotator adopt ...`"
        )
    raw = stream.readline(4096).strip()
    if not raw:
        raise UsageError(
            "no secret material on stdin: pipe the secret's value (one line) into rotator adopt"
        )
    problem = material_problem(raw)
    if problem is not None:
        raise UsageError(f"refusing the material on stdin: {problem}; nothing was written")
    return SecretValue(raw.decode("ascii"))


def adopt_secret(
    parts: Parts,
    target: TargetSettings,
    secret_id: str,
    secret: SecretValue,
    *,
    force: bool,
    now: datetime | None = None,
    fresh: Callable[[], str] = lambda: secrets.token_hex(8),
) -> list[str]:
    """Adopt ``secret_id`` into ``target``; the lines to print. Raises ``UsageError`` when the
    operator must change something, ``RotatorError`` when Vault or Intercom fail."""
    seen = _look(parts, target, secret_id, secret, force=force)
    name, where = target.name, f"{parts.settings.vault.mount}/{target.vault_path}"
    lines = []
    version = seen.consumer.version
    if not seen.same:
        # cas = the version checked above: whatever changed it since is not overwritten.
        version = _store(parts, target, seen.info, secret, cas=seen.consumer.version)
        lines.append(f"{name}: stored secret {secret_id} at {where} (version {version})")
    # Vault's time after the store (its answer told the clock): the grace starts no earlier.
    when = now or parts.reconciler.clock()
    before, after, retires = _record(
        parts,
        target,
        secret_id=secret_id,
        now=when,
        fresh=fresh,
        binding=seen.mine,
        stored=(version, secret.fingerprint()),
        foreign=seen.foreign,
    )
    lines.append(
        f"{name}: adopted secret {secret_id} ({seen.info.name!r}, {secret.fingerprint()})"
        + ("; already adopted" if seen.same and before == after else "")
    )
    lines += _aftermath(parts, target, seen, after, retires)
    log.info(
        "adoption.recorded", target=name, intercom_id=secret_id, fingerprint=secret.fingerprint()
    )
    return lines


@dataclass(frozen=True, slots=True)
class _Seen:
    """What adopt found before writing anything."""

    record: Record | None
    consumer: ConsumerView
    mine: Binding
    info: SecretInfo
    live: frozenset[str]
    #: The record's secrets live in another workspace (a forced takeover leaves them).
    foreign: bool
    #: The consumers' path already holds this secret with this material.
    same: bool


def _look(
    parts: Parts, target: TargetSettings, secret_id: str, secret: SecretValue, *, force: bool
) -> _Seen:
    """Read everything adopt needs, and refuse (``UsageError``) before anything is written."""
    name, where = target.name, f"{parts.settings.vault.mount}/{target.vault_path}"
    record = parts.store.load(name).record
    consumer = parts.store.consumer(target)
    problem = in_progress(record)
    if problem:
        raise UsageError(problem)
    mine = parts.clients.binding(target)
    if record is not None and record.binding not in {None, mine} and not force:
        raise UsageError(
            f"target {name}'s record belongs to another Intercom workspace, endpoint or "
            "consumers' path than this process's configuration; check the token, base_url and "
            "vault_path, then add --force to take the record over for this one"
        )
    listed = parts.clients.client(target).list_secrets()
    live = {s.id: s for s in listed}
    info = live.get(secret_id)
    if info is None or (record is not None and secret_id in retired(record)):
        shown = ", ".join(sorted(live)[:10]) or "none"
        raise UsageError(
            f"secret {secret_id} is not live at Intercom in target {name}'s workspace "
            f"(live: {shown}; a secret this target retired stays gone, even while a list still "
            "shows it): check the id (rotator doctor lists secrets rotator does not know)"
        )
    _refuse_other_targets(parts, target, secret_id)
    held = consumer.intercom_id
    same = held == secret_id and consumer.fingerprint == secret.fingerprint()
    if held is not None and held != secret_id and not force:
        ours = record is not None and held in {record.current_id, *record.known_ids}
        raise UsageError(
            f"the consumers' path {where} holds secret {held}"
            + (" (this target's current secret)" if ours else "")
            + f"; adopting {secret_id} replaces it for every consumer. Add --force to do so"
            + (f"; it is then retired {_retired_when(target)}" if ours else "")
        )
    if held == secret_id and not same and consumer.fingerprint and not force:
        raise UsageError(
            f"the consumers' path {where} holds secret {secret_id} with other material "
            f"({consumer.fingerprint}; stdin has {secret.fingerprint()}): one of them is not "
            "Intercom's. Check which, then add --force to store the one from stdin"
        )
    # A record bound elsewhere whose secrets this token's list does not show: they live in
    # another workspace, and this (forced) adoption takes the record over without them.
    secrets_listed = [LiveSecret(s.id, s.name) for s in listed]
    foreign = (
        record is not None
        and record.binding is not None
        and binding_problem(record, mine, secrets_listed) is not None
    )
    return _Seen(record, consumer, mine, info, frozenset(live), foreign, same)


def _aftermath(
    parts: Parts, target: TargetSettings, seen: _Seen, after: Record, retires: str | None
) -> list[str]:
    """What becomes of the secrets the adoption displaced, and what comes next."""
    name, record, held = target.name, seen.record, seen.consumer.intercom_id
    lines = []
    if retires:
        lines.append(_retirement(target, after, retires))
    if seen.foreign and record is not None and record.current_id:
        lines.append(
            f"{name}: the record belonged to another Intercom workspace; its secret "
            f"{record.current_id} lives there and is no longer tracked: delete it there by hand "
            "once nothing uses it"
        )
    if (
        held in seen.live
        and held not in {after.pending_id or after.current_id, retires}
        and (record is None or held not in record.known_ids)
    ):
        lines.append(
            f"{name}: secret {held} stays live at Intercom (not this target's): delete it in "
            "the Intercom dashboard once nothing uses it"
        )
    upcoming = parts.reconciler.next_rotation_at(target, after)
    if upcoming is not None and not retires:
        lines.append(f"{name}: next rotation at {upcoming.isoformat()}")
    return lines


def _retirement(target: TargetSettings, after: Record, retires: str) -> str:
    """What the policy will really do with the secret the adoption displaces."""
    deadline = after.deadline.isoformat() if after.deadline else None
    return f"{target.name}: secret {retires} is retired {_retired_when(target, deadline)}"


def _retired_when(target: TargetSettings, deadline: str | None = None) -> str:
    """When the target's confirmation policy retires a displaced secret, in words."""
    confirm = f"`rotator confirm {target.name}`"
    grace = f"after the grace period ({deadline})" if deadline else "after the grace period"
    if target.consumers:
        # Named consumers: a grace never retires past a probed consumer still seen behind.
        every = (
            "once every named consumer is on the new one (its probes see it, it confirms "
            f"through the hook, or `rotator confirm {target.name} --consumer NAME`)"
        )
        seen = "unless a probe still sees an instance on it"
        return {
            "consumers": every,
            "grace": f"{grace}, {seen}",
            "hook-or-grace": f"{every}, or {grace} {seen}",
        }[target.confirmation]
    return {
        "hook": f"once a confirmation arrives ({confirm} or the hook); no grace period applies",
        "grace": grace,
        "hook-or-grace": f"{grace} or on {confirm}",
    }[target.confirmation]


def _refuse_other_targets(parts: Parts, target: TargetSettings, secret_id: str) -> None:
    """Two targets owning one secret would each retire it under the other (rule 2)."""
    workspace = (target.endpoint, target.token_env or target.token_vault)
    for other in parts.settings.targets:
        if (
            other.name == target.name
            or (other.endpoint, other.token_env or other.token_vault) != workspace
        ):
            continue
        record = parts.store.load(other.name).record
        held = {*other.adopt, parts.store.consumer(other).intercom_id}
        if record is not None:
            held |= {record.current_id, record.pending_id, *record.known_ids}
        if secret_id in held:
            raise UsageError(
                f"secret {secret_id} belongs to target {other.name}; a secret has one owner"
            )


def _store(
    parts: Parts,
    target: TargetSettings,
    info: SecretInfo,
    secret: SecretValue,
    *,
    cas: int,
) -> int:
    created = info.created_at
    payload = consumer_payload_for(
        secret,
        intercom_id=info.id,
        name=info.name,
        created_at=created if created is not None else int(parts.reconciler.clock().timestamp()),
        rotation_id=None,
    )
    try:
        back = parts.store.put_consumer(target, payload, cas=cas)
    except CasConflict:
        raise TemporaryError(
            f"{target.vault_path} changed while adopting (a rotation, another adopt?); nothing "
            "was written: run rotator adopt again"
        ) from None
    if back.intercom_id != info.id or back.fingerprint != secret.fingerprint():
        raise TemporaryError(
            f"read-back of {target.vault_path} does not hold what was written (another writer?): "
            "check rotator status, then adopt again"
        )
    return back.version


def _record(
    parts: Parts,
    target: TargetSettings,
    *,
    secret_id: str,
    now: datetime,
    fresh: Callable[[], str],
    binding: Binding,
    stored: tuple[int, str],
    foreign: bool,
) -> tuple[Record | None, Record, str | None]:
    retires: list[str | None] = [None]

    def change(before: Record | None) -> Record:
        adoption = adopted(
            before,
            target=target.name,
            secret_id=secret_id,
            grace_period=timedelta(seconds=target.grace_period),
            now=now,
            fresh=fresh(),
            version=stored[0],
            fingerprint=stored[1],
            foreign=foreign,
        )
        retires[0] = adoption.retires
        return replace(adoption.record, binding=binding)

    try:
        before, after = parts.store.update(
            target, change, reason=f"adopted secret {secret_id}", by=f"cli:{operator()}"
        )
    except AdoptionRefused as e:
        # A rotation started between our first read and the record write.
        raise UsageError(
            f"{e}; the consumers' path was written and that rotation replaces it"
        ) from None
    if after is None:  # pragma: no cover - change always returns a record
        raise TemporaryError("the adoption was not recorded; run rotator adopt again")
    return before, after, retires[0]
