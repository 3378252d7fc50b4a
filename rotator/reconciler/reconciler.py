"""The reconciler: every target's passes, and the operator requests that feed them.

``reconcile_all`` and ``reconcile_target`` run ``rotator.reconciler.passes.Pass`` over targets
(``daemon.concurrency`` at a time), waiting out another process's abandoned lease when asked.
``rotate-now`` is first *recorded* in the target's record (``request``), before any call that
can fail, so that whichever process passes next serves it even if this one dies or Intercom is
down; ``confirm`` records a confirmation of the stored secret; ``pause`` and ``resume``
(``rotator.reconciler.controls``) hold and release a target, and a paused target refuses
``rotate-now``. All go through the record store's check-and-set, like every write.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime

from rotator.config import Settings, TargetSettings
from rotator.core import confirmation
from rotator.core.binding import binding_problem, needs_evidence
from rotator.core.lease import LeaseWatch
from rotator.core.observation import ConsumerView, LiveSecret, Policy, RotateNow
from rotator.core.record import Binding, Record
from rotator.errors import LocalError, RotatorError
from rotator.failpoints import FailpointError, failpoint
from rotator.logs import bind_context, clear_context, get_logger
from rotator.reconciler import controls
from rotator.reconciler.clients import IntercomClients
from rotator.reconciler.controls import Ask
from rotator.reconciler.passes import Pass, Ports, TargetReport, next_rotation_at
from rotator.reconciler.ports import KV, ClientFactory, Prober, RecordListener
from rotator.reconciler.store import Loaded, RecordStore

log = get_logger()


@dataclass(frozen=True, slots=True)
class ConfirmResult:
    status: confirmation.ConfirmStatus
    message: str
    rotation_id: str | None = None
    secret_id: str | None = None


class Reconciler:
    """Drives every configured target through its rotations."""

    def __init__(
        self,
        settings: Settings,
        vault: KV,
        *,
        environ: Mapping[str, str] | None = None,
        client_factory: ClientFactory | None = None,
        clock: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        fresh: Callable[[], str] = lambda: secrets.token_hex(12),
        me: str | None = None,
        listeners: Sequence[RecordListener] = (),
        sleep: Callable[[float], object] | None = None,
        stopping: threading.Event | None = None,
        prober: Prober | None = None,
    ) -> None:
        """``clock`` is the clock decisions are judged on: Vault's (``vault.clock``) unless a
        test moves time itself; ``sleep`` waits between lease checks (default: ``stop``).
        ``stopping``, once set, ends every pass between two steps when no other ``stop`` is
        given (a one-shot command's signal)."""
        self.stopping = stopping if stopping is not None else threading.Event()
        self.settings = settings
        self.vault = vault
        self.store = RecordStore(vault, settings.vault.state_path, listeners)
        self.clients = IntercomClients(
            settings,
            vault,
            environ=os.environ if environ is None else environ,
            factory=client_factory,
        )
        self.me = me or f"{socket.gethostname()}:{os.getpid()}:{fresh()[:6]}"
        self.clock = clock or vault.clock.now
        self.store.me, self.store.clock = self.me, self.clock
        self._monotonic = monotonic
        self._sleep = sleep
        self.ports = Ports(
            settings=settings,
            store=self.store,
            clients=self.clients,
            clock=self.clock,
            fresh=fresh,
            leases=LeaseWatch(self.me, monotonic),
            me=self.me,
            prober=prober if prober is not None else _default_prober(settings),
        )
        # One pass per target at a time within this process (scheduled pass vs. hook-triggered).
        self._target_locks = {t.name: threading.Lock() for t in settings.targets}
        self._by_name = {t.name: t for t in settings.targets}
        #: Targets this process refused to act on, and why (a ``LocalError``): the daemon is
        #: not ready while any is, since it is this process that needs fixing.
        self.refused: dict[str, str] = {}

    @property
    def listeners(self) -> list[RecordListener]:
        return self.store.listeners

    def close(self) -> None:
        self.clients.close()

    # --- passes ------------------------------------------------------------------------------

    def reconcile_all(
        self,
        stop: threading.Event | None = None,
        *,
        wait_for_leases: bool = False,
        names: Sequence[str] | None = None,
    ) -> list[TargetReport]:
        """One pass over every target (or those ``names``), ``daemon.concurrency`` at a time.

        ``wait_for_leases`` is for one-shot runs (a CronJob): a target held off by another
        process's lease is tried again once that lease has sat unchanged for its ttl of our
        time, instead of being left to a next run that would start counting from zero.
        """
        names = [t.name for t in self.settings.targets] if names is None else list(names)
        stop = stop if stop is not None else self.stopping
        reports = {r.target: r for r in self._many(names, {}, stop)}
        if wait_for_leases:
            self._retry_held(reports, {}, stop)
        return [reports[name] for name in names]

    def reconcile_target(
        self,
        name: str,
        command: RotateNow | None = None,
        *,
        wait_for_lease: bool = False,
        read: Loaded | None = None,
    ) -> TargetReport:
        """One pass over one target; a ``command`` (rotate-now) is recorded first, starting
        from ``read`` when the caller has just read the record (``Reconciler.read``)."""
        target = self.target(name)  # UnknownTargetError before anything else
        if read is not None and read.record is not None and read.record.target != name:
            read = None  # another target's record is no starting point for this one
        ask, known = self._request(target, command, read) if command is not None else (None, None)
        asks = {name: ask} if ask else {}
        reports = {name: self._guarded(name, ask, self.stopping, known)}
        if wait_for_lease:
            self._retry_held(reports, asks, self.stopping)
        if ask is not None and ask.joined:
            return replace(reports[name], joined=True)
        return reports[name]

    def _many(
        self, names: list[str], asks: Mapping[str, Ask | None], stop: threading.Event | None
    ) -> list[TargetReport]:
        workers = min(self.settings.daemon.concurrency, len(names))
        if workers <= 1:
            return [self._guarded(name, asks.get(name), stop) for name in names]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reconcile") as pool:
            return list(pool.map(lambda n: self._guarded(n, asks.get(n), stop), names))

    def _retry_held(
        self,
        reports: dict[str, TargetReport],
        asks: Mapping[str, Ask | None],
        stop: threading.Event | None,
    ) -> None:
        """Try held-off targets again every second until their holder lets go or its lease has
        sat unchanged for a whole ttl of our time (then it is abandoned and we take over)."""
        ttl = self.settings.daemon.lease_ttl
        deadline = self._monotonic() + ttl + 2.0
        held = [name for name, r in reports.items() if r.held_off]
        if held:
            log.info("reconcile.waiting_for_lease", targets=held, ttl_s=ttl)
        for _ in range(int(ttl) + 3):  # bounded even if a clock misbehaves
            if not held or self._monotonic() >= deadline or self._pause(stop, 1.0):
                break
            for report in self._many(held, asks, stop):
                reports[report.target] = report
            held = [name for name in held if reports[name].held_off]

    def _pause(self, stop: threading.Event | None, seconds: float) -> bool:
        """Wait ``seconds``; True when asked to stop."""
        if self._sleep is not None:
            self._sleep(seconds)
            return stop is not None and stop.is_set()
        return (stop or threading.Event()).wait(seconds)

    def _guarded(
        self,
        name: str,
        ask: Ask | None,
        stop: threading.Event | None,
        known: Loaded | None = None,
    ) -> TargetReport:
        """One pass over ``name``, its failures reported; ``known``: the record as this process
        just wrote it, which the pass starts from instead of reading it back (``Pass``)."""
        if stop is not None and stop.is_set():
            return TargetReport(name, "unknown", "skipped: stopping")
        target = self.target(name)
        bind_context(target=name)
        try:
            with self._target_locks[name]:
                command = ask.command_for if ask is not None else None
                report = Pass(self.ports, target, command, stop, known).run()
        except LocalError as e:
            log.error("reconcile.refused", error=str(e), note="nothing was written")
            self.refused[name] = str(e)
            self.store.tell_seen(None, target, str(e))
            return TargetReport(name, "unknown", "refused", error=str(e))
        except RotatorError as e:
            # Vault itself failing (we could not even persist a backoff): report and move on.
            log.error("reconcile.failed", error=str(e), kind=type(e).__name__)
            self.store.tell_seen(None, target, str(e))
            return TargetReport(name, "unknown", "pass failed", error=str(e))
        except FailpointError:
            raise
        except Exception as e:  # a bug: one target's crash must not stop the others' passes
            log.exception("reconcile.crashed", error_type=type(e).__name__)
            return TargetReport(
                name, "unknown", "pass crashed", error=f"internal error ({type(e).__name__})"
            )
        else:
            self.refused.pop(name, None)
            return report
        finally:
            clear_context()

    # --- operator requests -------------------------------------------------------------------

    def _request(
        self, target: TargetSettings, command: RotateNow, read: Loaded | None = None
    ) -> tuple[Ask, Loaded]:
        """Record a rotate-now (``rotator.reconciler.controls.request``)."""
        return controls.request(self, target, command, read)

    def check_binding(self, target: TargetSettings, record: Record, mine: Binding) -> None:
        """A record bound to another workspace takes a request only with evidence."""
        if not needs_evidence(record, mine):
            return
        listed = tuple(LiveSecret(s.id, s.name) for s in self.clients.client(target).list_secrets())
        problem = binding_problem(record, mine, listed)
        if problem is not None:
            raise LocalError(problem)

    def confirm(
        self,
        name: str,
        *,
        secret_id: str | None,
        rotation_id: str | None,
        via: str,
        signed_at: datetime | None = None,
        consumer: str | None = None,
        by: str | None = None,
    ) -> ConfirmResult:
        """Record a rollout confirmation of the stored secret (check-and-set, retried);
        ``signed_at`` is a signed call's timestamp (a replay from before the store is refused),
        ``consumer`` the named consumer confirming (``rotator.core.rollout``), ``by`` who
        (the audit trail: an operator, or the hook's authentication, consumer and client)."""
        target = self.target(name)
        policy = self.ports.policy(target)
        mine = self.clients.binding(target)  # LocalError before anything is written
        outcome: list[ConfirmResult] = []

        def change(record: Record | None) -> Record | None:
            if record is not None:
                # Another workspace's process (a staging config) must not confirm this one's.
                self.check_binding(target, record, mine)
            if record is None:
                result = ConfirmResult(
                    confirmation.ConfirmStatus.NOT_AWAITING, f"target {name} has no rotation yet"
                )
                outcome[:] = [result]
                return None
            view = self.store.consumer(target)
            updated, status, message = confirmation.confirm(
                record,
                policy,
                view,
                secret_id=secret_id,
                rotation_id=rotation_id,
                via=via,
                now=self.clock(),
                signed_at=signed_at,
                consumer_name=consumer,
            )
            outcome[:] = [ConfirmResult(status, message, record.rotation_id, record.pending_id)]
            if updated is not None:
                failpoint("confirm.before_write")
            return updated

        _, after = self.store.update(target, change, reason="rollout confirmed", by=by or via)
        result = outcome[0]
        if after is not None:
            failpoint("confirm.after_write")
            log.info(
                "rotation.confirmed",
                target=name,
                rotation_id=result.rotation_id,
                intercom_id=result.secret_id,
                via=via,
                consumer=consumer,
            )
        else:
            log.info(
                "rotation.confirm_refused",
                target=name,
                consumer=consumer,
                status=result.status,
                reason=result.message,
            )
        return result

    def pause(self, name: str, *, by: str, reason: str) -> str:
        """Pause the target (``rotator.reconciler.controls``); what happened, in words."""
        return controls.pause(self, name, by=by, reason=reason)

    def resume(self, name: str, *, by: str | None = None) -> str:
        """Clear the target's pause and block in one write, asking for no rotation."""
        return controls.resume(self, name, by=by)

    def abort(self, name: str, *, by: str, reason: str) -> str:
        """Record an abort of the rotation under way (``rotator.reconciler.controls``)."""
        return controls.abort(self, name, by=by, reason=reason)

    # --- reading -----------------------------------------------------------------------------

    def record(self, name: str) -> tuple[Record | None, ConsumerView]:
        """The stored record (``None`` before the first pass) and the consumers' view."""
        loaded, consumer = self.read(name)
        return loaded.record, consumer

    def read(self, name: str) -> tuple[Loaded, ConsumerView]:
        """``record``, with the record's version."""
        target = self.target(name)
        return self.store.load(name), self.store.consumer(target)

    def policy(self, target: TargetSettings) -> Policy:
        return self.ports.policy(target)

    @staticmethod
    def next_rotation_at(target: TargetSettings, record: Record) -> datetime | None:
        return next_rotation_at(target, record)

    def target(self, name: str) -> TargetSettings:
        """The target's settings by name (a dict lookup: passes ask per target, 1,000s of them)."""
        found = self._by_name.get(name)
        return found if found is not None else self.settings.target(name)  # raises with the list

    def state_key(self, name: str) -> str:
        return self.store.key(name)


def _default_prober(settings: Settings) -> Prober | None:
    """Probes over HTTP when some target has probed consumers (``rotator.probe``); none else."""
    if not any(c.probed for t in settings.targets for c in t.consumers):
        return None
    from rotator.probe import HttpProber

    return HttpProber(settings.probes)
