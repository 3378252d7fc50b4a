"""``rotator doctor``'s findings: pure functions from the ``Facts`` gathered about one target to
``Finding``s (ok, warning or error, what was found, the fix to apply), and their rendering.

Nothing here performs I/O, prints, or sees material: only ids, names, paths and the messages the
adapters already wrote for operators. ``rotator.cli.doctor`` gathers the facts and acts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from rotator.cli.leases import LeaseView
from rotator.config import TargetSettings
from rotator.core.observation import LIST_LAG_TOLERANCE, ConsumerView
from rotator.core.record import Phase, Record
from rotator.durations import shifted
from rotator.errors import RotatorError, TemporaryError
from rotator.intercom import IntercomAuthError, IntercomPermissionError, SecretInfo
from rotator.intercom.models import READ_SCOPE, WRITE_SCOPE
from rotator.reconciler import TargetReport
from rotator.vault import VaultMountError, VaultPermissionError

Severity = Literal["ok", "warning", "error"]
_RANK: Mapping[str, int] = {"ok": 0, "warning": 1, "error": 2}
#: How long past its deadline a rollout waiting for the hook may sit before doctor mentions it.
OVERDUE = timedelta(hours=1)
#: What rotator does on each path (see deploy/vault/rotator-policy.hcl).
_DATA_NEEDS = ("create", "read", "update")
_METADATA_NEEDS = ("create", "update")


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing doctor checked; ``target`` is None for what all targets share (Vault)."""

    target: str | None
    check: str
    severity: Severity
    message: str
    fix: str | None = None


@dataclass(frozen=True, slots=True)
class Facts:
    """What ``gather`` saw of one target; an ``*_error`` stands in for what it could not see."""

    target: TargetSettings
    mount: str
    state_key: str
    record: Record | None = None
    record_error: RotatorError | None = None
    #: For a record that does not read: how to repair it (``rotator.cli.status``).
    record_fix: str | None = None
    consumer: ConsumerView | None = None
    consumer_error: RotatorError | None = None
    capabilities: Mapping[str, Sequence[str]] | None = None
    capabilities_error: RotatorError | None = None
    live: tuple[SecretInfo, ...] | None = None
    intercom_error: RotatorError | None = None
    #: The record's lease with its age, when one is held.
    lease: LeaseView | None = None

    def api_path(self, path: str, kind: str = "data") -> str:
        return f"{self.mount}/{kind}/{path}"


# --- the checks (pure) -----------------------------------------------------------------------


def target_findings(facts: Facts, now: datetime) -> list[Finding]:
    return [
        *vault_findings(facts),
        *intercom_findings(facts),
        *drift_findings(facts),
        *record_findings(facts, now),
        *lease_findings(facts),
    ]


def lease_findings(facts: Facts) -> list[Finding]:
    """A held lease is normal while a process acts; one left longer than its ttl is not."""
    lease, name = facts.lease, facts.target.name
    if lease is None:
        return []
    if not lease.abandoned:
        return [Finding(name, "record.lease", "ok", lease.sentence())]
    return [
        Finding(
            name,
            "record.lease",
            "warning",
            lease.sentence(),
            f"nothing to do if a process is running: it takes over; else run rotator reconcile "
            f"(it waits out the lease, at most {lease.ttl_s:g}s)",
        )
    ]


def vault_findings(facts: Facts) -> list[Finding]:
    name = facts.target.name
    found = [
        Finding(
            name,
            "vault.kv_v2" if isinstance(error, VaultMountError) else "vault.read",
            "error",
            f"cannot read the {what}: {error}",
            fix or _vault_fix(error),
        )
        for what, error, fix in (
            ("state record", facts.record_error, facts.record_fix),
            ("consumers' path", facts.consumer_error, None),
        )
        if error is not None
    ]
    if not found:
        # The adapter checks the mount's type before its first read and refuses anything else.
        message = f"the state record and consumers' path are readable on KV v2 {facts.mount}/"
        found = [Finding(name, "vault.read", "ok", message)]
    if facts.capabilities_error is not None:
        message = f"cannot ask Vault what our token may do: {facts.capabilities_error}"
        fix = "allow update on sys/capabilities-self (Vault's default policy does)"
        return [*found, Finding(name, "vault.capabilities", "error", message, fix)]
    missing = []
    for path, caps in (facts.capabilities or {}).items():
        needs = _METADATA_NEEDS if "/metadata/" in path else _DATA_NEEDS
        lacking = [] if "root" in caps else [c for c in needs if c not in caps or "deny" in caps]
        if lacking:
            message = (
                f"the Vault token lacks {', '.join(lacking)} on {path} (it has: "
                f"{', '.join(caps) or 'nothing'}); rotator writes there with check-and-set"
            )
            fix = (
                f'grant it in rotator\'s Vault policy: path "{path}" {{ capabilities = '
                f"{json.dumps(list(needs))} }} (see deploy/vault/rotator-policy.hcl)"
            )
            missing.append(Finding(name, "vault.capabilities", "error", message, fix))
    fine = Finding(name, "vault.capabilities", "ok", "the token may read and write both paths")
    return found + (missing or [fine])


def intercom_findings(facts: Facts) -> list[Finding]:
    name, target, error = facts.target.name, facts.target, facts.intercom_error
    source = f"${target.token_env}" if target.token_env else f"Vault {target.token_vault}"
    if error is None:
        count = len(facts.live or ())
        found = [Finding(name, "intercom.read", "ok", f"the token lists secrets ({count} live)")]
    else:
        if isinstance(error, IntercomAuthError):
            message = f"token rejected: {error}"
            fix = (
                f"token rejected: issue a new one (Developer Hub, your app's Authentication), "
                f"store it in {source}, then rotator rotate-now {name} if the target is blocked"
            )
        elif isinstance(error, IntercomPermissionError):
            message = f"the token lacks the read scope {READ_SCOPE}: {error}"
            fix = f"grant {READ_SCOPE} and {WRITE_SCOPE} (Developer Hub); refresh {source}"
        elif isinstance(error, TemporaryError):
            message = f"cannot list secrets: {error}"
            fix = "run doctor again later; check Intercom's status page"
        else:
            message = f"cannot list secrets: {error}"
            fix = f"fix the cause named here (base_url or region, the token in {source})"
        found = [Finding(name, "intercom.read", "error", message, fix)]
    record = facts.record
    if record is not None and record.missing_scope == WRITE_SCOPE:
        message = (
            f"not verifiable without a create; rotator needs {WRITE_SCOPE}, and Intercom "
            "refused the last create or delete for lack of it (403)"
        )
        fix = f"grant {WRITE_SCOPE} (Developer Hub), refresh {source}, rotator rotate-now {name}"
        return [*found, Finding(name, "intercom.write_scope", "error", message, fix)]
    assumed = f"{WRITE_SCOPE} assumed (not verifiable without a create)"
    return [*found, Finding(name, "intercom.write_scope", "ok", assumed)]


def consumer_secret_deleted(facts: Facts) -> bool:
    """The consumers' path holds an id Intercom's list did not show: deleted (every session
    fails), or not listed yet (lists lag behind creates)."""
    held = facts.consumer.intercom_id if facts.consumer else None
    return held is not None and facts.live is not None and held not in {s.id for s in facts.live}


def drift_findings(facts: Facts) -> list[Finding]:
    if facts.live is None or facts.consumer is None:
        return []  # the read findings already say why
    name, record = facts.target.name, facts.record
    found = []
    if consumer_secret_deleted(facts):
        found.append(
            Finding(
                name,
                "drift.consumer_deleted",
                "error",
                f"consumers hold a secret Intercom did not list: {facts.consumer.intercom_id} "
                f"at {facts.mount}/{facts.target.vault_path}. If it was deleted, every "
                "signature made with it fails (a secret created moments ago may just not be "
                "listed yet: lists lag behind changes)",
                f"run rotator rotate-now {name} --emergency --yes (or rotate-now) now",
            )
        )
    elif facts.consumer.intercom_id is None:
        found.append(
            Finding(
                name,
                "drift.consumer_empty",
                "warning",
                f"the consumers' path {facts.mount}/{facts.target.vault_path} holds no secret",
                f"rotator rotate-now {name} provisions one (or rotator adopt {name} --secret-id "
                "ID); a pass does so by itself only when the rotation is due",
            )
        )
    ours = {*facts.target.adopt}
    names: set[str] = set()
    if record is not None:
        held = (record.current_id, record.pending_id)
        ours |= {*record.known_ids, *record.old_ids, *filter(None, held)}
        names = set(record.owned_names)
    elif facts.consumer.intercom_id:
        ours.add(facts.consumer.intercom_id)  # the first pass adopts it
    held_by_consumers = facts.consumer.intercom_id
    if (
        record is not None
        and held_by_consumers
        and held_by_consumers not in {record.current_id, record.pending_id, *ours}
        and not consumer_secret_deleted(facts)
    ):
        found.append(
            Finding(
                name,
                "drift.consumer_foreign",
                "error",
                f"the consumers' path holds secret {held_by_consumers}, which this target neither "
                f"created nor adopted (its current secret is {record.current_id}); the next "
                "rotation blocks on it",
                f"restore {record.current_id} at {facts.mount}/{facts.target.vault_path}, or take "
                f"the new one over: rotator adopt {name} --secret-id {held_by_consumers} --force",
            )
        )
    for secret in facts.live:
        if secret.name.startswith(facts.target.secret_name) and not (
            secret.id in ours or secret.name in names
        ):
            found.append(
                Finding(
                    name,
                    "drift.unknown",
                    "warning",
                    f"unknown secret {secret.id} ({secret.name!r}): live at Intercom under this "
                    "target's secret_name, but neither created nor adopted by it",
                    f"adopt it (rotator adopt {name} --secret-id {secret.id} / add it to adopt) "
                    "or delete it in the Intercom dashboard",
                )
            )
    return found or [Finding(name, "drift", "ok", "no drift between Vault and Intercom")]


def record_findings(facts: Facts, now: datetime) -> list[Finding]:
    name, record = facts.target.name, facts.record
    if record is None:
        if facts.record_error is not None:
            return []
        return [Finding(name, "record", "ok", "no state record yet: the next pass writes one")]
    if record.phase is Phase.BLOCKED:
        return [
            Finding(
                name,
                "record.blocked",
                "error",
                f"blocked: {record.blocked_reason}",
                f"fix the cause, then rotator rotate-now {name}",
            )
        ]
    found = []
    if record.retry_at is not None and now < record.retry_at:
        found.append(
            Finding(
                name,
                "record.backoff",
                "warning",
                f"backing off after {record.attempts} failed attempt(s) until "
                f"{record.retry_at.isoformat()}: {record.last_error}",
                "transient errors retry by themselves; if this one persists, fix its cause",
            )
        )
    deadline = record.deadline
    if (
        record.phase is Phase.AWAITING_ROLLOUT
        and facts.target.confirmation == "hook"
        and record.confirmed_at is None
        and deadline is not None
        and now > shifted(deadline, OVERDUE)
    ):
        found.append(
            Finding(
                name,
                "record.awaiting_hook",
                "warning",
                f"secret {record.pending_id} has awaited its rollout confirmation since "
                f"{deadline.isoformat()} (confirmation = hook: no grace period retires the "
                "old one)",
                f"once your services use it, confirm it: rotator confirm {name}",
            )
        )
    if record.phase is Phase.AWAITING_ROLLOUT and deadline is not None:
        summary = f"awaiting rollout of {record.pending_id}; deadline {deadline.isoformat()}"
    else:
        summary = f"{record.phase.value}, generation {record.generation}"
    return found or [Finding(name, "record", "ok", summary)]


def remedied(finding: Finding, report: TargetReport) -> Finding:
    """The consumer-deleted finding after rotate_on_drift passed over it."""
    outcome = report.error or report.reason
    if report.needs_operator:
        return replace(finding, message=f"{finding.message}; rotate_on_drift tried: {outcome}")
    if report.phase == Phase.IDLE.value:
        return replace(
            finding,
            message=f"{finding.message}; rotate_on_drift rotates it once it has stayed unlisted "
            f"for {int(LIST_LAG_TOLERANCE.total_seconds() // 60)} minutes ({outcome})",
        )
    return replace(
        finding,
        severity="warning",
        message=f"{finding.message}; rotate_on_drift rotated it: {report.phase} "
        f"{report.rotation_id or ''}: {outcome}",
        fix="services pick up the new secret from Vault; check them with rotator status",
    )


# --- output -----------------------------------------------------------------------------------


def worst(findings: Sequence[Finding]) -> Severity:
    return max((f.severity for f in findings), key=_RANK.__getitem__, default="ok")


def render_json(findings: Sequence[Finding]) -> str:
    payload: dict[str, Any] = {
        "severity": worst(findings),
        "errors": sum(f.severity == "error" for f in findings),
        "warnings": sum(f.severity == "warning" for f in findings),
        "findings": [asdict(f) for f in findings],
    }
    return json.dumps(payload, indent=2)


def render_text(findings: Sequence[Finding]) -> str:
    width = max((len(f.target or "vault") for f in findings), default=5)
    lines = []
    for f in findings:
        lines.append(
            f"{(f.target or 'vault').ljust(width)}  {f.severity.upper():7}  {f.check}: {f.message}"
        )
        if f.fix and f.severity != "ok":
            lines.append(f"{' ' * width}  {'':7}  fix: {f.fix}")
    errors = sum(f.severity == "error" for f in findings)
    warnings = sum(f.severity == "warning" for f in findings)
    lines.append(f"{errors} error(s), {warnings} warning(s)")
    return "\n".join(lines)


def _vault_fix(error: RotatorError) -> str:
    if isinstance(error, VaultMountError):
        return "point [vault] mount at a KV version 2 engine (vault secrets enable -version=2 kv)"
    if isinstance(error, VaultPermissionError):
        return "grant the capability named here in rotator's Vault policy"
    return "fix the cause named here, then run doctor again"
