"""The ``adopt`` and ``doctor`` verbs: adoption of an existing secret, and drift.

``adopt`` takes over a secret created before rotator (in the dashboard, by hand): it reads the
material from stdin, checks the id is live at Intercom, writes the consumers' path with
check-and-set, reads it back, and only then records the adoption in the target's state record
(``Reconciler.amend``, the same check-and-set persistence a pass uses). That order matters: a
crash between the two writes leaves the consumers' path naming a secret the record does not
know, which the next pass refuses with an explanation (run adopt again); the other order would
leave a record whose current secret consumers never received. The material is never printed:
output names the id and its fingerprint.

``doctor`` prints ``rotator.cli.doctor_checks``'s findings and exits 1 when any is an error.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TextIO

from rotator.cli.verbs import (
    EXIT_NEEDS_OPERATOR,
    EXIT_OK,
    Context,
    UsageError,
    close_reconciler,
)
from rotator.config import TargetSettings
from rotator.core.adoption import (
    AdoptionRefused,
    adopted,
    in_progress,
    material_warning,
    valid_secret_id,
)
from rotator.core.record import Record
from rotator.errors import TemporaryError
from rotator.intercom import SecretInfo
from rotator.logs import get_logger
from rotator.reconciler import Reconciler, consumer_view
from rotator.redaction import SecretValue
from rotator.vault import CasConflict

log = get_logger()


def adopt(
    ctx: Context, name: str, *, secret_id: str, force: bool, stdin: TextIO | None = None
) -> int:
    settings = ctx.settings()
    target = settings.target(name)
    secret_id = secret_id.strip()
    if not valid_secret_id(secret_id):
        raise UsageError(
            "--secret-id: an Intercom secret id is 1-128 letters, digits, '.', '_', ':' or '-' "
            "(see rotator doctor, or the secrets list in Intercom's dashboard)"
        )
    secret = read_material(sys.stdin if stdin is None else stdin)
    warning = material_warning(secret.reveal())
    if warning:
        print(f"{name}: warning: {warning}", file=sys.stderr)
    reconciler = ctx.reconciler(settings)
    try:
        for line in adopt_secret(reconciler, target, secret_id, secret, force=force):
            print(line)
    finally:
        close_reconciler(reconciler)
    return EXIT_OK


def read_material(stream: TextIO) -> SecretValue:
    """One line of secret material from ``stream`` (a pipe or file, never a terminal)."""
    if stream.isatty():
        raise UsageError(
            "adopt reads the secret's material from stdin and will not take it from a "
            "terminal: pipe it in, e.g. `vault kv get -field=secret PATH | rotator adopt ...`"
        )
    material = stream.readline().strip()
    if not material:
        raise UsageError(
            "no secret material on stdin: pipe the secret's value (one line) into rotator adopt"
        )
    return SecretValue(material)


def adopt_secret(
    reconciler: Reconciler,
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
    name, when = target.name, now or datetime.now(UTC)
    where = f"{reconciler.vault.settings.mount}/{target.vault_path}"
    record, consumer = reconciler.record(name)
    problem = in_progress(record)
    if problem:
        raise UsageError(problem)
    live = {s.id: s for s in reconciler.client(target).list_secrets()}
    info = live.get(secret_id)
    if info is None:
        shown = ", ".join(sorted(live)[:10]) or "none"
        raise UsageError(
            f"secret {secret_id} is not live at Intercom in target {name}'s workspace "
            f"(live: {shown}): check the id (rotator doctor lists secrets rotator does not know)"
        )
    _refuse_other_targets(reconciler, target, secret_id)
    held, lines = consumer.intercom_id, []
    same = held == secret_id and consumer.fingerprint == secret.fingerprint()
    if held is not None and held != secret_id and not force:
        ours = record is not None and held in {record.current_id, *record.known_ids}
        raise UsageError(
            f"the consumers' path {where} holds secret {held}"
            + (" (this target's current secret)" if ours else "")
            + f"; adopting {secret_id} replaces it for every consumer. Add --force to do so"
            + ("; it is then retired after the grace period" if ours and held in live else "")
        )
    if held == secret_id and not same and consumer.fingerprint and not force:
        raise UsageError(
            f"the consumers' path {where} holds secret {secret_id} with other material "
            f"({consumer.fingerprint}; stdin has {secret.fingerprint()}): one of them is not "
            "Intercom's. Check which, then add --force to store the one from stdin"
        )
    if not same:
        # cas = the version checked above: whatever changed it since is not overwritten.
        version = _store(reconciler, target, info, secret, when, cas=consumer.version)
        lines.append(f"{name}: stored secret {secret_id} at {where} (version {version})")
    changed = _record(
        reconciler, target, secret_id=secret_id, live=frozenset(live), now=when, fresh=fresh
    )
    before, after, retires = changed
    lines.append(
        f"{name}: adopted secret {secret_id} ({info.name!r}, {secret.fingerprint()})"
        + ("; already adopted" if same and before == after else "")
    )
    if retires:
        lines.append(
            f"{name}: secret {retires} is retired after the grace period ("
            f"{after.deadline.isoformat() if after.deadline else '?'}) or on "
            f"`rotator confirm {name}`"
        )
    if (
        held in live
        and held not in {secret_id, retires}
        and (record is None or held not in record.known_ids)
    ):
        lines.append(
            f"{name}: secret {held} stays live at Intercom (not this target's): delete it in "
            "the Intercom dashboard once nothing uses it"
        )
    upcoming = reconciler.next_rotation_at(target, after)
    if upcoming is not None and not retires:
        lines.append(f"{name}: next rotation at {upcoming.isoformat()}")
    log.info(
        "adoption.recorded", target=name, intercom_id=secret_id, fingerprint=secret.fingerprint()
    )
    return lines


def _refuse_other_targets(reconciler: Reconciler, target: TargetSettings, secret_id: str) -> None:
    """Two targets owning one secret would each retire it under the other (rule 2)."""
    workspace = (target.endpoint, target.token_env or target.token_vault)
    for other in reconciler.settings.targets:
        if (
            other.name == target.name
            or (other.endpoint, other.token_env or other.token_vault) != workspace
        ):
            continue
        record, consumer = reconciler.record(other.name)
        held = {*other.adopt, consumer.intercom_id}
        if record is not None:
            held |= {record.current_id, record.pending_id, *record.known_ids}
        if secret_id in held:
            raise UsageError(
                f"secret {secret_id} belongs to target {other.name}; a secret has one owner"
            )


def _store(
    reconciler: Reconciler,
    target: TargetSettings,
    info: SecretInfo,
    secret: SecretValue,
    now: datetime,
    *,
    cas: int,
) -> int:
    data = {
        "secret": secret.reveal(),
        "intercom_id": info.id,
        "name": info.name,
        "created_at": info.created_at if info.created_at is not None else int(now.timestamp()),
        "rotation_id": None,
    }
    try:
        version = reconciler.vault.write(target.vault_path, data, cas=cas)
    except CasConflict:
        raise TemporaryError(
            f"{target.vault_path} changed while adopting (a rotation, another adopt?); nothing "
            "was written: run rotator adopt again"
        ) from None
    back = consumer_view(reconciler.vault.read(target.vault_path))
    if back.intercom_id != info.id or back.fingerprint != secret.fingerprint():
        raise TemporaryError(
            f"read-back of {target.vault_path} does not hold what was written (another writer?): "
            "check rotator status, then adopt again"
        )
    return version


def _record(
    reconciler: Reconciler,
    target: TargetSettings,
    *,
    secret_id: str,
    live: frozenset[str],
    now: datetime,
    fresh: Callable[[], str],
) -> tuple[Record | None, Record, str | None]:
    retires: list[str | None] = [None]

    def change(before: Record | None) -> Record:
        adoption = adopted(
            before,
            target=target.name,
            secret_id=secret_id,
            live=live,
            grace_period=timedelta(seconds=target.grace_period),
            now=now,
            fresh=fresh(),
        )
        retires[0] = adoption.retires
        return adoption.record

    try:
        before, after = reconciler.amend(target.name, change, reason=f"adopted secret {secret_id}")
    except AdoptionRefused as e:
        # A rotation started between our first read and the record write.
        raise UsageError(
            f"{e}; the consumers' path was written and that rotation replaces it"
        ) from None
    return before, after, retires[0]


def doctor(ctx: Context, name: str | None, *, as_json: bool) -> int:
    from rotator.cli import doctor_checks as checks

    settings = ctx.settings()
    names = [settings.target(name).name] if name else [t.name for t in settings.targets]
    reconciler = ctx.reconciler(settings)
    try:
        findings = checks.examine(reconciler, names, now=datetime.now(UTC))
    finally:
        close_reconciler(reconciler)
    print(checks.render_json(findings) if as_json else checks.render_text(findings))
    return EXIT_NEEDS_OPERATOR if checks.worst(findings) == "error" else EXIT_OK
