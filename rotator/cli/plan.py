"""``rotator plan``: what the next pass would do for each target now, and why, as JSON or a table.

Each plan is the real decision core's (``rotator.reconciler.plans``) on a real read of Vault,
of Intercom's list when the decision needs it, and of the probed consumers while a rollout
waits: reads only. Nothing is written, leased, created, stored, deleted or notified. It needs
the Vault credentials ``status`` needs, and an Intercom token with the read scope for the
targets whose decision lists Intercom; a target whose token this process lacks says so.

Exit 0 once every target is planned (whatever the plans say); 1 when a record does not read
or Vault fails; 2 for bad usage or an unknown target.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import datetime
from typing import Any

from rotator.cli.check import reading
from rotator.cli.context import EXIT_NEEDS_OPERATOR, EXIT_OK, Context, Parts
from rotator.cli.status import UNREADABLE, damaged_record_fix
from rotator.core.record import RecordError
from rotator.errors import RotatorError
from rotator.reconciler.plans import TargetPlan, plan_target
from rotator.redaction import hide_userinfo
from rotator.vault import VaultUnavailable, deadline

#: Seconds of Vault work one target's plan may take (the probes have their own deadline).
PLAN_TIMEOUT = 15.0


def plan(ctx: Context, target: str | None, *, as_json: bool) -> int:
    settings = ctx.settings()
    # An unknown name is a usage error (exit 2) before anything is opened.
    names = [settings.target(target).name] if target else [t.name for t in settings.targets]
    plans: list[TargetPlan] = []
    failed = False
    with reading(ctx, settings) as parts:
        for name in names:
            shown, bad = _one(parts, name)
            plans.append(shown)
            failed = failed or bad
    use_json = as_json or not sys.stdout.isatty()
    # A record written before URLs lost their passwords may still quote one in a reason.
    print(hide_userinfo(render_json(plans) if use_json else render_table(plans)))
    return EXIT_NEEDS_OPERATOR if failed else EXIT_OK


def _one(parts: Parts, name: str) -> tuple[TargetPlan, bool]:
    """The target's plan, and whether reading it failed (exit 1)."""
    spec = parts.settings.target(name)
    try:
        with deadline.within(PLAN_TIMEOUT):
            return plan_target(parts.reconciler.ports, spec), False
    except RecordError as e:
        fix = damaged_record_fix(parts, name, e)
        why = f"{e.message.rstrip('.')}; {fix}" if fix else e.message
        return _failed(name, UNREADABLE, why), True
    except VaultUnavailable as e:
        why = f"Vault at {parts.settings.vault.address} is unreachable. {e.message}"
        return _failed(name, UNREADABLE, why), True
    except RotatorError as e:
        return _failed(name, UNREADABLE, str(e)), True


def _failed(name: str, phase: str, why: str) -> TargetPlan:
    return TargetPlan(
        target=name,
        phase=phase,
        action="none",
        secret_id=None,
        reason=why,
        summary=f"cannot plan: {why}",
        error=why,
    )


def render_json(plans: list[TargetPlan]) -> str:
    return json.dumps([_public(p) for p in plans], indent=2)


def render_table(plans: list[TargetPlan]) -> str:
    headers = ("TARGET", "PHASE", "ACTION", "SECRET", "PLAN")
    rows = [[p.target, p.phase, p.action, p.secret_id or "-", p.summary] for p in plans]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers[:-1])]
    lines = [
        "  ".join([*(v.ljust(w) for v, w in zip(r[:-1], widths, strict=True)), r[-1]])
        for r in [list(headers), *rows]
    ]
    return "\n".join(lines)


def _public(plan: TargetPlan) -> dict[str, Any]:
    data = asdict(plan)
    data["waiting_for"] = list(plan.waiting_for)
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in data.items()}
