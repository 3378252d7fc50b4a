"""Simulated rotator processes, each running the real code, interleaved at every call it makes.

A ``Process`` is one rotator process: its own monotonic clock (and a wall clock skewed by up
to days), its own memory (a ``Reconciler`` with its lease watch and clients), and at most one
command under way: the daemon's pass, a CronJob's ``reconcile``, ``rotate-now`` (emergency or
not), ``confirm`` by the CLI or by the hook, ``adopt``, ``abort``. A command runs in a greenlet; every Vault
or Intercom call it makes first switches back to the scheduler (``checkpoint``), so the test
decides who runs next, and may crash a process between any two calls (``Crash`` unwinds it like
SIGKILL: nothing it holds in memory survives, only what it wrote).

A run's ``Plan`` says what its target names: the confirmation policy and, when consumers are
named, the probed ones (``simulation.fleet``, probed by each process's ``ProcessProber``) and
the hook ones, which confirm with their name; and its rotation windows, if any
(``simulation.windows`` tells the harness when they are open, without rotator's code).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from greenlet import greenlet
from simulation.fleet import (
    HOOK_CONSUMERS,
    MOBILE_API,
    MOBILE_DNS,
    PROBE_PATH,
    WEB_ADDRESSES,
    WEB_BACKEND,
    ProcessProber,
)
from simulation.stats import COUNTS
from simulation.world import CONSUMERS, World, moment

from rotator.cli import rotate
from rotator.cli.adopt import adopt_secret
from rotator.cli.context import Context, Parts, UsageError
from rotator.config import Settings, parse_settings
from rotator.errors import RotatorError
from rotator.reconciler import AbortRefused, Reconciler
from rotator.redaction import SecretValue

GRACE = timedelta(hours=1)
TOKEN = "sim-intercom-token-0123456789"
HOOK_TOKEN = "sim-hook-token-0123456789abcdef"


@dataclass(frozen=True)
class Plan:
    """What the target names: its policy, and whether it names consumers (then the probed
    ones' ``stable_probes`` and the spacing between counted rounds)."""

    policy: str = "hook-or-grace"
    named: bool = False
    stable_probes: tuple[int, int] = (2, 2)  # web-backend, mobile-api
    spacing: float = 1.0
    #: Rotation windows, each (cron, duration, timezone) (``simulation.windows.WINDOWS``).
    windows: tuple[tuple[str, str, str], ...] = ()

    @property
    def probed(self) -> tuple[str, ...]:
        return (WEB_BACKEND, MOBILE_API) if self.named else ()

    @property
    def hooks(self) -> tuple[str, ...]:
        """Hook consumers: none under "grace" (the config refuses them, nobody would hear)."""
        return HOOK_CONSUMERS if self.named and self.policy != "grace" else ()


class Crash(BaseException):
    """The process dies where it stands (a BaseException: no ``except Exception`` stops it)."""


@functools.cache
def settings(plan: Plan = Plan()) -> Settings:
    target: dict[str, Any] = {
        "name": "web",
        "base_url": "https://intercom.sim",
        "token_env": "INTERCOM_TOKEN",
        "secret_name": "Web",
        "vault_path": CONSUMERS,
        "schedule": "1d",
        "grace_period": "1h",
        "confirmation": plan.policy,
    }
    document: dict[str, Any] = {
        "vault": {"address": "http://vault.sim", "mount": "secret", "state_path": "rotator/state"},
        "daemon": {"concurrency": 1, "lease_ttl": "60s"},
        "targets": [target],
    }
    if plan.windows:
        target["windows"] = [{"cron": c, "duration": d, "timezone": z} for c, d, z in plan.windows]
    if plan.named:
        web, mobile = plan.stable_probes
        target["consumers"] = [
            {
                "name": WEB_BACKEND,
                "probe_urls": [f"http://{a}{PROBE_PATH}" for a in WEB_ADDRESSES],
                "stable_probes": web,
            },
            {"name": MOBILE_API, "probe_dns": MOBILE_DNS, "stable_probes": mobile},
            *({"name": name} for name in plan.hooks),
        ]
        document["probes"] = {"spacing": plan.spacing}
        document["server"] = {"hook_token_env": "ROTATOR_HOOK_TOKEN"}
    return parse_settings(document)


@dataclass
class Process:
    """One rotator process of the simulation."""

    world: World
    name: str
    mono_offset: float
    skew: float
    #: The clock decisions are judged on: Vault's (the product) or, for a mutation check that
    #: reverts that fix, the process's own wall clock.
    decide_on_wall: bool = False
    plan: Plan = Plan()
    main: greenlet | None = None
    glet: greenlet | None = None
    doing: str = ""
    #: The command under way ("" when idle): the watch learns who wrote what.
    command: str = ""
    #: It crashed at an armed point: it restarts with an empty memory before its next command.
    dead: bool = False
    reconciler: Reconciler | None = None
    kv: Any = None

    def monotonic(self) -> float:
        return self.world.now + self.mono_offset

    def wall(self) -> datetime:
        return moment(self.world.now + self.skew)

    @property
    def busy(self) -> bool:
        return self.glet is not None and not self.glet.dead

    def checkpoint(self, label: str) -> None:
        """Before every call to Vault or Intercom: the scheduler decides what happens next (or
        a crash armed for this kind of call fires here, as a failpoint would)."""
        COUNTS["calls"] += 1
        self.doing = label
        if self.main is None or greenlet.getcurrent() is not self.glet:
            return
        for armed in self.world.crash_at:
            if label.startswith(armed):
                self.world.crash_at.remove(armed)
                COUNTS["crashes"] += 1
                self.dead = True
                raise Crash(label)
        self.main.switch()

    def sleep(self, seconds: float) -> None:
        """A process waiting (for a lease) lets time pass for everyone."""
        self.world.tick(seconds)
        self.checkpoint(f"sleep {seconds:g}s")

    def boot(self) -> None:
        """Start with an empty memory (a new process, or one restarted after a crash)."""
        from simulation.world import ProcessIntercom, ProcessKV

        self.dead = False
        self.kv = ProcessKV(
            self.world, self.checkpoint, self.monotonic, lambda: f"{self.name}:{self.command}"
        )
        self.reconciler = Reconciler(
            settings(self.plan),
            self.kv,
            environ={"INTERCOM_TOKEN": TOKEN},
            client_factory=lambda _t, _token: ProcessIntercom(self.world, self.checkpoint),
            clock=self.wall if self.decide_on_wall else None,
            monotonic=self.monotonic,
            fresh=self.world.fresh,
            me=self.name,
            sleep=self.sleep,
            prober=ProcessProber(self.world, self.checkpoint) if self.plan.named else None,
        )

    def parts(self) -> Parts:
        assert self.reconciler is not None
        return Parts(self.reconciler.settings, self.kv, self.reconciler)

    def start(self, main: greenlet, command: Callable[[], object], label: str) -> None:
        """Run ``command`` until its first call (or its end)."""
        if self.reconciler is None or self.dead:
            self.boot()

        def body() -> None:
            # What rotator's main() turns into an exit code; a bug (anything else) fails the test.
            try:
                with contextlib.suppress(Crash, RotatorError):
                    command()
            finally:
                self.command = ""

        self.main = main
        self.doing = self.command = label
        self.glet = greenlet(body, parent=main)
        self.glet.switch()

    def step(self) -> None:
        """Let the command run until its next call."""
        if self.busy and self.glet is not None:
            self.glet.switch()

    def crash(self) -> None:
        """SIGKILL: the command stops where it is; the process restarts with no memory."""
        if self.busy and self.glet is not None:
            COUNTS["crashes"] += 1
            self.glet.throw(Crash)
        self.glet = None
        self.boot()


class Commands:
    """What operators and schedulers run, each the real code of the verb."""

    def __init__(self, process: Process) -> None:
        self.p = process

    def ctx(self) -> Context:
        process = self.p

        class SimContext(Context):
            def settings(self) -> Settings:
                return process.reconciler.settings  # type: ignore[union-attr]

            def open(self, *_args: Any, **_kwargs: Any) -> Parts:  # type: ignore[override]
                return process.parts()

        # What the configuration names: verbs refuse to act without it (``preflight``).
        environ = {"VAULT_TOKEN": "simulated", "INTERCOM_TOKEN": TOKEN}
        return SimContext(None, {**environ, "ROTATOR_HOOK_TOKEN": HOOK_TOKEN})

    def daemon_pass(self) -> None:
        assert self.p.reconciler is not None
        self.p.reconciler.reconcile_all()

    def cronjob(self) -> None:
        rotate.reconcile(self.ctx())

    def rotate_now(self, *, emergency: bool) -> None:
        rotate.rotate_now(self.ctx(), "web", emergency=emergency, yes=True)

    def confirm_cli(self, consumer: str | None = None) -> None:
        """`rotator confirm web [--consumer NAME]`: an operator confirms (one consumer)."""
        consumers = () if consumer is None else (consumer,)
        rotate.confirm(self.ctx(), "web", secret_id=None, consumers=consumers)

    def resume(self) -> None:
        """`rotator resume web`: clear a block without asking for a rotation, then a pass."""
        rotate.resume(self.ctx(), "web")

    def confirm_hook(self, secret_id: str | None, consumer: str | None = None) -> None:
        """What the daemon's hook does with an authenticated call (naming the consumer that
        sends it, or none): record, then pass."""
        assert self.p.reconciler is not None
        result = self.p.reconciler.confirm(
            "web", secret_id=secret_id, rotation_id=None, via="hook:bearer", consumer=consumer
        )
        if result.status.value == "confirmed":
            self.p.reconciler.reconcile_target("web")

    def abort(self, *, served_here: bool) -> None:
        """An operator's ``rotator abort web``: the CLI's verb (record, then one pass to serve
        it), or only the record through the reconciler's controls, for whichever process holds
        the lease next to serve. A refusal (nothing written) is counted."""
        try:
            if served_here:
                rotate.abort(self.ctx(), "web", reason="bad deploy", actor="operator")
            else:
                assert self.p.reconciler is not None
                self.p.reconciler.abort("web", by="operator", reason="bad deploy")
        except (UsageError, AbortRefused):
            COUNTS["abort refusals"] += 1

    def adopt(self, secret_id: str, material: str, *, force: bool) -> None:
        parts = self.p.parts()
        target = parts.settings.target("web")
        adopt_secret(parts, target, secret_id, SecretValue(material), force=force)
