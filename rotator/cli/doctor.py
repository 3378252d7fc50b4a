"""``rotator doctor``: a read-only health check of every target, finding by finding.

``gather`` reads one target's world through the adapters, each part on its own so one failure
does not hide the others: the state record and the consumers' path (two KV reads), what our
Vault token may do on them (``sys/capabilities-self``: write access is checked without writing,
because a no-op write would still bump versions that consumers and fences rely on), and
Intercom's live secrets (one list). ``rotator.cli.findings`` turns those facts into findings
without I/O. ``examine`` runs the lot, and is the one place that may act: a target configured
with ``rotate_on_drift`` whose consumers hold a secret deleted at Intercom is rotated at once
(a rotate-now through the reconciler), and the finding says what came of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from rotator.cli.check import reading
from rotator.cli.context import EXIT_NEEDS_OPERATOR, EXIT_OK, Context, Parts
from rotator.cli.findings import (
    Facts,
    Finding,
    consumer_secret_deleted,
    remedied,
    render_json,
    render_text,
    target_findings,
    worst,
)
from rotator.cli.leases import read_lease
from rotator.cli.status import damaged_record_fix
from rotator.config import TargetSettings
from rotator.core.record import RecordError
from rotator.errors import RotatorError
from rotator.redaction import hide_userinfo


def doctor(ctx: Context, name: str | None, *, as_json: bool) -> int:
    settings = ctx.settings()
    names = [settings.target(name).name] if name else [t.name for t in settings.targets]
    with reading(ctx, settings) as parts:
        findings = examine(parts, names)
    print(hide_userinfo(render_json(findings) if as_json else render_text(findings)))
    return EXIT_NEEDS_OPERATOR if worst(findings) == "error" else EXIT_OK


def gather(parts: Parts, target: TargetSettings) -> Facts:
    vault, store = parts.vault, parts.store
    facts = Facts(target, parts.settings.vault.mount, store.key(target.name))
    try:
        facts = replace(facts, record=store.load(target.name).record)
        if facts.record is not None and facts.record.lease is not None:
            facts = replace(facts, lease=read_lease(parts, target.name))
    except RecordError as e:
        # A newer schema's message says to upgrade; the fix line says it too.
        fix = damaged_record_fix(parts, target.name, e) or "upgrade rotator where it runs"
        facts = replace(facts, record_error=e, record_fix=fix)
    except RotatorError as e:
        facts = replace(facts, record_error=e)
    try:
        facts = replace(facts, consumer=store.consumer(target))
    except RotatorError as e:
        facts = replace(facts, consumer_error=e)
    try:
        facts = replace(facts, capabilities=vault.capabilities(_needs(facts)))
    except RotatorError as e:
        facts = replace(facts, capabilities_error=e)
    try:
        facts = replace(facts, live=tuple(parts.clients.client(target).list_secrets()))
    except RotatorError as e:
        facts = replace(facts, intercom_error=e)
    return facts


def examine(parts: Parts, names: Sequence[str], *, act: bool = True) -> list[Finding]:
    """Every finding for ``names``. With ``act``, a rotate_on_drift target whose consumers'
    secret a list omits gets a pass at once: the pass rotates it if the secret has stayed
    unlisted longer than lists lag (one list proves nothing), and the finding says so."""
    healthy, detail = parts.vault.healthy()
    address = parts.settings.vault.address
    if not healthy:
        return [
            Finding(
                None,
                "vault.health",
                "error",
                detail,
                f"make Vault at {address} reachable and unsealed, and give rotator a valid "
                "token ([vault.auth]); every other check needs it",
            )
        ]
    findings = [
        Finding(
            None, "vault.health", "ok", f"Vault at {address} is reachable and unsealed; token valid"
        )
    ]
    now = parts.reconciler.clock()
    for name in names:
        target = parts.settings.target(name)
        facts = gather(parts, target)
        found = target_findings(facts, now)
        if act and target.rotate_on_drift and consumer_secret_deleted(facts):
            report = parts.reconciler.reconcile_target(name)
            found = [
                remedied(f, report) if f.check == "drift.consumer_deleted" else f for f in found
            ]
        findings += found
    return findings


def _needs(facts: Facts) -> list[str]:
    paths = [facts.api_path(facts.state_key), facts.api_path(facts.target.vault_path)]
    if facts.record is None and facts.record_error is None:
        paths.append(facts.api_path(facts.state_key, "metadata"))  # require_cas, first write
    return paths
