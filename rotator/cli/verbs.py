"""The verbs behind the CLI: each loads what it needs, does its job, returns an exit code.

Exit codes: 0 ok; 1 a target needs an operator (blocked, or Vault/Intercom failing); 2 bad
usage or configuration. Errors a user can fix are raised as ``rotator.errors`` exceptions and
printed by ``rotator.cli`` without a traceback.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from rotator.config import Settings, config_path, load_settings
from rotator.core.observation import RotateNow
from rotator.errors import PermanentError
from rotator.reconciler import (
    Reconciler,
    RecordListener,
    Sleep,
    TargetReport,
    client_factory_with,
)

EXIT_OK, EXIT_NEEDS_OPERATOR, EXIT_USAGE = 0, 1, 2


class UsageError(PermanentError):
    """The command asked for something that cannot be done as asked (exit 2)."""


class Observers(Protocol):
    """What the daemon's metrics hear from the adapters (``rotator.daemon.metrics.Metrics``); named
    here structurally so that the one-shot commands never import prometheus_client."""

    def intercom_request(self, operation: str, status: str, seconds: float) -> None: ...
    def vault_request(self, operation: str, status: str, seconds: float) -> None: ...
    def vault_auth_failed(self) -> None: ...


@runtime_checkable
class _Flushed(Protocol):
    """A listener with deliveries in flight (``rotator.notify.Notifier``)."""

    def close(self, timeout: float | None = None) -> bool: ...


@dataclass(frozen=True)
class Context:
    config: str | None
    environ: Mapping[str, str]

    def settings(self) -> Settings:
        return load_settings(config_path(self.config, dict(self.environ)))

    def reconciler(
        self,
        settings: Settings | None = None,
        *,
        sleep: Sleep = time.sleep,
        listeners: Sequence[RecordListener] = (),
        observe: Observers | None = None,
        long_running: bool = False,
    ) -> Reconciler:
        """A reconciler for this configuration; with notifications whenever [notify] lists
        webhooks (close it with ``close_reconciler``, which flushes them)."""
        from rotator.vault import Vault

        settings = settings or self.settings()
        vault = Vault(
            settings.vault,
            environ=self.environ,
            observe=observe.vault_request if observe else None,
            auth_failed=observe.vault_auth_failed if observe else None,
            # A one-shot command outlives no token: asking Vault for its TTL is a wasted call.
            renew=long_running,
        )
        told = list(listeners)
        if settings.notify.webhooks:
            from rotator.notify import Notifier

            notifier = Notifier(settings.notify, environ=self.environ, read_secret=vault.read_value)
            told.append(notifier)
        clients = client_factory_with(sleep, observe.intercom_request if observe else None)
        return Reconciler(
            settings, vault, environ=self.environ, client_factory=clients, listeners=told
        )


def close_reconciler(reconciler: Reconciler) -> None:
    """Give queued notifications their bounded time to go out, then close the clients."""
    for listener in reconciler.listeners:
        if isinstance(listener, _Flushed):
            listener.close()
    reconciler.close()


def check_config(ctx: Context) -> int:
    path = config_path(ctx.config, dict(ctx.environ))
    settings = load_settings(path)
    problems = _missing_environment(settings, ctx.environ)
    print(f"{path}: {len(settings.targets)} target(s)")
    for t in settings.targets:
        source = f"${t.token_env}" if t.token_env else f"vault:{t.token_vault}"
        print(
            f"  {t.name}: {t.endpoint} secret {t.secret_name!r} -> "
            f"{settings.vault.mount}/{t.vault_path}; {t.schedule.describe()}, "
            f"grace {t.grace_period:g}s, confirmation {t.confirmation}, token {source}"
        )
    if problems:
        print(f"{len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return EXIT_USAGE
    print("configuration OK")
    return EXIT_OK


def _missing_environment(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    problems = []
    auth = settings.vault.auth
    if auth.method == "token" and not auth.token_file and not environ.get(auth.token_env):
        problems.append(f"vault.auth.token_env: ${auth.token_env} is not set")
    for name in (auth.role_id_env, auth.secret_id_env):
        if auth.method == "approle" and name and not environ.get(name):
            problems.append(f"vault.auth: ${name} is not set")
    for path in (auth.token_file, auth.role_id_file, auth.secret_id_file):
        if path and not Path(path).is_file():
            problems.append(f"vault.auth: file {path} does not exist")
    for i, t in enumerate(settings.targets):
        if t.token_env and not environ.get(t.token_env):
            problems.append(f"targets[{i}] ({t.name}).token_env: ${t.token_env} is not set")
    server = settings.server
    for key in ("hook_token_env", "hook_hmac_key_env"):
        name = getattr(server, key)
        if name and not environ.get(name):
            problems.append(f"server.{key}: ${name} is not set")
    return problems + _missing_for_notify(settings, environ)


def _missing_for_notify(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    problems = []
    for i, hook in enumerate(settings.notify.webhooks):
        for key in ("url_env", "hmac_key_env"):
            name = getattr(hook, key)
            if name and not environ.get(name):
                problems.append(f"notify.webhooks[{i}].{key}: ${name} is not set")
    return problems


def reconcile(ctx: Context) -> int:
    reconciler = ctx.reconciler()
    try:
        reports = reconciler.reconcile_all(wait_for_leases=True)
    finally:
        close_reconciler(reconciler)
    for report in reports:
        print(_line(report))
    return EXIT_NEEDS_OPERATOR if any(r.needs_operator for r in reports) else EXIT_OK


def rotate_now(ctx: Context, target: str, *, emergency: bool, yes: bool) -> int:
    settings = ctx.settings()
    settings.target(target)
    if emergency and not yes:
        if not sys.stdin.isatty():
            raise UsageError("--emergency retires the current secret at once: add --yes to confirm")
        answer = input(
            f"Emergency rotation of {target}: the current secret will be DELETED at Intercom as "
            "soon as its replacement is in Vault, even if your services have not reloaded. "
            "Type 'yes' to go on: "
        )
        if answer.strip().lower() != "yes":
            print("aborted; nothing changed")
            return EXIT_USAGE
    reconciler = ctx.reconciler(settings)
    try:
        report = reconciler.reconcile_target(
            target, RotateNow(emergency=emergency), wait_for_lease=True
        )
        if report.joined:
            print(f"{target}: rotation {report.rotation_id} was already under way; joined it")
    finally:
        close_reconciler(reconciler)
    print(_line(report))
    return EXIT_NEEDS_OPERATOR if report.needs_operator else EXIT_OK


def confirm(ctx: Context, target: str, *, secret_id: str | None) -> int:
    reconciler = ctx.reconciler()
    try:
        record, _ = reconciler.record(target)
        if secret_id is not None and not secret_id.strip():
            raise UsageError("--secret-id is empty: name the secret your services now use")
        wanted = secret_id if secret_id is not None else (record.pending_id if record else None)
        if wanted is None:
            raise UsageError(f"{target}: no rotation is awaiting rollout; nothing to confirm")
        if secret_id is None and record is not None:
            print(f"{target}: confirming secret {wanted} (rotation {record.rotation_id})")
        result = reconciler.confirm(target, secret_id=wanted, rotation_id=None, via="cli")
        print(f"{target}: {result.status}: {result.message}")
        if result.status not in {"confirmed", "already_confirmed"}:
            return EXIT_USAGE
        # Retire now; if a crashed process left its lease, wait it out rather than give up.
        report = reconciler.reconcile_target(target, wait_for_lease=True)
    finally:
        close_reconciler(reconciler)
    print(_line(report))
    return EXIT_NEEDS_OPERATOR if report.needs_operator else EXIT_OK


def status(ctx: Context, target: str | None, *, as_json: bool, history: bool) -> int:
    from rotator.cli.status import render_json, render_table, target_status

    settings = ctx.settings()
    names = [target] if target else [t.name for t in settings.targets]
    reconciler = ctx.reconciler(settings)
    try:
        statuses = []
        for name in names:
            spec = settings.target(name)
            record, consumer = reconciler.record(name)
            upcoming = reconciler.next_rotation_at(spec, record) if record else None
            statuses.append(target_status(spec, record, consumer, upcoming, history=history))
    finally:
        close_reconciler(reconciler)
    use_json = as_json or not sys.stdout.isatty()
    print(render_json(statuses) if use_json else render_table(statuses))
    return EXIT_NEEDS_OPERATOR if any(s.phase == "blocked" for s in statuses) else EXIT_OK


def run(ctx: Context) -> int:
    from rotator.daemon import Daemon
    from rotator.daemon.metrics import Metrics

    settings = ctx.settings()
    stopping = threading.Event()
    metrics = Metrics()
    # Retry waits inside Intercom calls end at once when a signal asks the daemon to stop.
    reconciler = ctx.reconciler(
        settings, sleep=stopping.wait, listeners=[metrics], observe=metrics, long_running=True
    )
    try:
        daemon = Daemon(
            settings, reconciler, environ=ctx.environ, stopping=stopping, metrics=metrics
        )
        return daemon.run_until_signalled()
    finally:
        close_reconciler(reconciler)


def _line(report: TargetReport) -> str:
    rotation = f" {report.rotation_id}" if report.rotation_id and report.phase != "idle" else ""
    if report.error:
        return f"{report.target}: ERROR: {report.error}"
    return f"{report.target}: {report.phase}{rotation}: {report.reason}"


def context(config: str | None) -> Context:
    return Context(config=config, environ=os.environ)
