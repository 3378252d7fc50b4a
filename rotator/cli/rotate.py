"""The verbs that move rotations: ``reconcile``, ``rotate-now``, ``confirm``, ``pause``,
``resume`` and ``run``.

Each loads what it needs (``rotator.cli.context``), does its job through the reconciler, prints
one line per target it touched, and returns the exit code: 0 ok, 1 a target needs an operator
or an attempt failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import sys
import threading
from collections.abc import Sequence

from rotator.cli.check import acting
from rotator.cli.context import (
    EXIT_NEEDS_OPERATOR,
    EXIT_OK,
    EXIT_USAGE,
    Context,
    Parts,
    UsageError,
)
from rotator.core.observation import RotateNow
from rotator.core.record import Record
from rotator.errors import RotatorError
from rotator.reconciler import AbortRefused, TargetPaused, TargetReport
from rotator.reconciler.store import Loaded
from rotator.redaction import redact_text


def reconcile(ctx: Context) -> int:
    with acting(ctx, ctx.settings()) as parts:
        reports = parts.reconciler.reconcile_all(wait_for_leases=True)
    for report in reports:
        print(line(report))
    return exit_code(reports)


def rotate_now(
    ctx: Context, target: str, *, emergency: bool, yes: bool, actor: str | None = None
) -> int:
    who = _who(actor)
    _plain(who)
    settings = ctx.settings()
    settings.target(target)
    if emergency and not yes and (sys.stdin is None or not sys.stdin.isatty()):
        # No stdin at all (fd 0 closed) is as unable to answer as a pipe.
        raise UsageError("--emergency retires the current secret at once: add --yes to confirm")
    with acting(ctx, settings, [target]) as parts:
        if emergency and not yes and not _confirmed_emergency(target):
            print("aborted; nothing changed")
            return EXIT_USAGE
        read = _unquoted(parts, target, who)
        try:
            report = parts.reconciler.reconcile_target(
                target,
                RotateNow(emergency=emergency, by=who),
                wait_for_lease=True,
                read=read,  # the request starts from it: no second read of the record
            )
        except TargetPaused as e:
            raise UsageError(str(e)) from None
    if report.joined:
        print(f"{target}: rotation {report.rotation_id} was already under way; joined it")
    print(line(report))
    return exit_code([report])


def _confirmed_emergency(target: str) -> bool:
    try:
        answer = input(
            f"Emergency rotation of {target}: the current secret will be DELETED at Intercom as "
            "soon as its replacement is in Vault, even if your services have not reloaded. "
            "Type 'yes' to go on: "
        )
    except (EOFError, OSError):  # Ctrl-D, or the terminal went away: that is not a yes
        print()
        return False
    return answer.strip().lower() == "yes"


def confirm(
    ctx: Context,
    target: str,
    *,
    secret_id: str | None,
    consumers: Sequence[str] = (),
    actor: str | None = None,
) -> int:
    """Confirm the rollout (per named consumer, when the target names them), then one pass."""
    if secret_id is not None and not secret_id.strip():
        raise UsageError("--secret-id is empty: name the secret your services now use")
    who = f"cli:{_who(actor)}"
    _plain(who)
    settings = ctx.settings()
    named = settings.target(target).consumers
    if named and not consumers:
        raise UsageError(
            f"{target} names its consumers; confirm one with --consumer NAME "
            f"(consumers: {', '.join(c.name for c in named)}; 'rotator status {target}' shows "
            "who is behind)"
        )
    with acting(ctx, settings, [target]) as parts:
        _unquoted(parts, target, who)
        record, _ = parts.reconciler.record(target)
        wanted = secret_id if secret_id is not None else (record.pending_id if record else None)
        if wanted is None:
            raise UsageError(f"{target}: no rotation is awaiting rollout; nothing to confirm")
        if secret_id is None and record is not None:
            print(f"{target}: confirming secret {wanted} (rotation {record.rotation_id})")
        refused = False
        for consumer in dict.fromkeys(consumers) or [None]:
            result = parts.reconciler.confirm(
                target,
                secret_id=wanted,
                rotation_id=None,
                via="cli",
                consumer=consumer,
                by=who,
            )
            print(f"{target}: {result.status}: {result.message}")
            refused = refused or not result.status.accepted
        if refused:
            return EXIT_USAGE
        # Retire now; if a crashed process left its lease, wait it out rather than give up.
        report = parts.reconciler.reconcile_target(target, wait_for_lease=True)
    print(line(report))
    return exit_code([report])


def pause(ctx: Context, target: str, *, reason: str, actor: str | None) -> int:
    """Pause the target (no pass: a paused target has nothing to do)."""
    if not reason.strip():
        raise UsageError("--reason is empty: say why the target is paused")
    who = _who(actor)
    _plain(who, reason.strip())
    with acting(ctx, ctx.settings(), [target]) as parts:
        _unquoted(parts, target, who, reason)
        print(f"{target}: {parts.reconciler.pause(target, by=who, reason=reason)}")
    return EXIT_OK


def operator() -> str:
    """Who runs this command: the OS user at this host (``--actor`` names someone else)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def _who(actor: str | None) -> str:
    """``--actor``, or the OS user at this host: who the audit trail names."""
    return (actor or "").strip() or operator()


#: Longest ``--actor`` and ``--reason`` taken: each is kept in the record (the pause, the
#: request, every audit entry of the write) and sent with notifications.
ACTOR_LIMIT = 120
REASON_LIMIT = 500


def _plain(actor: str, reason: str = "") -> None:
    """Refuse an actor or reason that is not one short line of printable text: both are kept in
    the record and printed by every process that shows it (a terminal escape there would be
    replayed to each operator's terminal), and sent with notifications."""
    if not (actor + reason).isprintable():
        raise UsageError("--reason and --actor must be one line of printable text")
    if len(actor) > ACTOR_LIMIT or len(reason) > REASON_LIMIT:
        raise UsageError(
            f"--actor is limited to {ACTOR_LIMIT} characters and --reason to {REASON_LIMIT}: "
            "name who and say why in a line (a ticket's id and title, say)"
        )


def _unquoted(parts: Parts, target: str, *said: str) -> Loaded | None:
    """Refuse words that quote the target's secret material (a wrong paste): read first, so
    the material of the record and the consumers' path is known to redaction, and nothing is
    written or printed with it. The record as read, if it could be."""
    read = None
    with contextlib.suppress(RotatorError):  # a record that does not read: said elsewhere
        read, _ = parts.reconciler.read(target)
    text = "\n".join(said)
    if redact_text(text) != text:
        raise UsageError(
            f"cannot act on {target}: the reason or actor holds secret material or a token; "
            "nothing was written"
        )
    return read


def resume(ctx: Context, target: str, *, actor: str | None = None) -> int:
    """Clear a pause and a block without asking for a rotation, then run one pass."""
    who = _who(actor)
    _plain(who)
    with acting(ctx, ctx.settings(), [target]) as parts:
        _unquoted(parts, target, who)
        print(f"{target}: {parts.reconciler.resume(target, by=who)}")
        report = parts.reconciler.reconcile_target(target, wait_for_lease=True)
    print(line(report))
    return exit_code([report])


def abort(ctx: Context, target: str, *, reason: str | None, actor: str | None) -> int:
    """Record an abort of the rotation under way, then run one pass to serve it."""
    who = _who(actor)
    why = (reason or "").strip() or "no reason given"
    _plain(who, why)
    with acting(ctx, ctx.settings(), [target]) as parts:
        try:
            said = parts.reconciler.abort(target, by=who, reason=why)
        except AbortRefused as e:
            raise UsageError(str(e)) from None
        print(f"{target}: {said}")
        before, _ = parts.reconciler.record(target)
        report = parts.reconciler.reconcile_target(target, wait_for_lease=True)
        after, _ = parts.reconciler.record(target)
    print(line(report))
    if before is None or before.abort is None or before.paused is not None:
        return EXIT_OK  # nothing recorded this time, or served once the target is resumed
    if after is not None and not _backed_out(after, before.abort.rotation_id):
        return EXIT_NEEDS_OPERATOR  # refused when served: the line above says why
    if after is not None and after.restoring is not None:
        print(
            f"{target}: backing out of rotation {after.restoring.rotation_id}: secret "
            f"{after.pending_id} is back at the consumers' path; {after.current_id} is deleted "
            "once that is rolled out ('rotator status' shows how far)"
        )
    elif after is not None and after.history and after.history[-1].outcome == "aborted":
        last = after.history[-1]
        print(f"{target}: rotation {last.rotation_id} aborted by {last.by}: {last.reason}")
    return exit_code([report])


def _backed_out(record: Record, rotation_id: str) -> bool:
    """The abort of ``rotation_id`` was served: it is being backed out, or it ended aborted."""
    if record.abort is not None:
        return True  # still waiting (another process holds the lease): it will be served
    if record.restoring is not None:
        return record.restoring.rotation_id == rotation_id
    return any(h.rotation_id == rotation_id and h.outcome == "aborted" for h in record.history)


def run(ctx: Context) -> int:
    from rotator.daemon import Daemon
    from rotator.daemon.metrics import Metrics

    settings = ctx.settings()
    stopping = threading.Event()
    metrics = Metrics()
    # Retry waits inside Intercom calls end at once when a signal asks the daemon to stop.
    with acting(
        ctx,
        settings,
        server=True,
        sleep=stopping.wait,
        listeners=[metrics],
        observe=metrics,
        long_running=True,
    ) as parts:
        daemon = Daemon(
            settings,
            parts.reconciler,
            parts.vault,
            environ=ctx.environ,
            stopping=stopping,
            metrics=metrics,
            config_check=lambda: config_problems(ctx),
        )
        code = daemon.run_until_signalled()
    if daemon.abandoned:
        # The abandoned pass's thread would hold the interpreter's exit until Vault answers
        # (it is a pool thread Python joins at exit). Every step it took is persisted: leave
        # now, as a crash would, rather than overrun the orchestrator's grace period.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def exit_code(reports: list[TargetReport]) -> int:
    """1 when a target is blocked, its pass failed, or its last attempt failed and it backs
    off (nothing rotated, whatever a retry may do later); else 0."""
    return EXIT_OK if all(r.ok for r in reports) else EXIT_NEEDS_OPERATOR


def line(report: TargetReport) -> str:
    """How a report reads on the terminal: ``web: awaiting_rollout r1a2b: <reason>``."""
    rotation = f" {report.rotation_id}" if report.rotation_id and report.phase != "idle" else ""
    if report.error:
        return redact_text(f"{report.target}: ERROR: {report.error}")
    return redact_text(f"{report.target}: {report.phase}{rotation}: {report.reason}")


def config_problems(ctx: Context) -> list[str]:
    """What is wrong with the configuration file as it is on disk now (nothing: it loads)."""
    from rotator.config import ConfigError

    try:
        ctx.settings()
    except ConfigError as e:
        return e.problems
    return []
