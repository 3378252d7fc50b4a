"""One reconcile pass over one target: gather -> decide -> persist -> act, until nothing is left.

A pass reads the target's record and the consumers' path from Vault, lists Intercom when the
decision needs it (or to prove the record's workspace is this process's, ``core.binding``), and
then loops: ``machine.step`` decides; the new record is written with check-and-set *before* the
action it announces; the action runs; its result is folded into the observation and the machine
decides again. A lost check-and-set means another process moved the target: the pass gathers
again from scratch (a few times at most) instead of guessing.

Everything it touches comes through ``Ports``: the Vault KV, the Intercom clients, the clock every
process shares (Vault's), fresh randomness, and this process's memory of leases. Production wires
the real adapters; the simulation wires in-memory ones and drives this very code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from rotator.config import Settings, TargetSettings
from rotator.config.consumers import consumer_rules
from rotator.config.windows import window_state
from rotator.core import machine, windows
from rotator.core.binding import binding_problem, needs_evidence
from rotator.core.lease import LeaseWatch
from rotator.core.observation import (
    Action,
    ConsumerProbe,
    ConsumerView,
    Create,
    Created,
    CreateUnknown,
    Delete,
    Deleted,
    Failed,
    LiveSecret,
    Observation,
    Policy,
    Result,
    RotateNow,
    Store,
    Stored,
    absorb,
    initial_record,
    needs_history,
    needs_intercom,
    needs_probes,
)
from rotator.core.record import Phase, Record
from rotator.errors import LocalError, PermanentError, RotatorError, TemporaryError
from rotator.failpoints import failpoint
from rotator.intercom.errors import (
    CreateOutcomeUnknown,
    IntercomAuthError,
    IntercomPermissionError,
)
from rotator.intercom.models import DeleteOutcome, Platforms
from rotator.logs import get_logger
from rotator.reconciler.clients import IntercomClients
from rotator.reconciler.ports import Prober
from rotator.reconciler.store import Loaded, RecordStore
from rotator.vault import CasConflict

log = get_logger()

_RESTARTS = 3  # lost check-and-sets in one pass before leaving the target to the next pass
_MAX_STEPS = 50  # a pass never loops forever, whatever the machine says


@dataclass(frozen=True, slots=True)
class TargetReport:
    """How one target ended a pass."""

    target: str
    phase: str
    reason: str
    rotation_id: str | None = None
    error: str | None = None
    #: Another process's live lease kept this pass from acting.
    held_off: bool = False
    #: A rotate-now found a rotation under way and joined it instead of starting one.
    joined: bool = False
    #: The target's last attempt failed; it retries by itself after a backoff.
    failing: bool = False

    @property
    def needs_operator(self) -> bool:
        """Blocked, or this pass failed: exit 1 for the command that ran it."""
        return self.phase == Phase.BLOCKED.value or self.error is not None

    @property
    def ok(self) -> bool:
        """Nothing blocked, failed or backing off."""
        return not (self.needs_operator or self.failing)


@dataclass
class Ports:
    """What a pass may touch, shared by every pass of one process."""

    settings: Settings
    store: RecordStore
    clients: IntercomClients
    #: Vault's time (``rotator.vault.clock``): every decision is judged on it.
    clock: Callable[[], datetime]
    fresh: Callable[[], str]
    leases: LeaseWatch
    me: str
    #: Probes named consumers while a rollout waits; None: this process does not probe.
    prober: Prober | None = None

    def policy(self, target: TargetSettings) -> Policy:
        return Policy(
            target=target.name,
            secret_name=target.secret_name,
            grace_period=timedelta(seconds=target.grace_period),
            confirmation=target.confirmation,
            adopt=target.adopt,
            lease_ttl=self.settings.daemon.lease_ttl,
            watch_drift=target.rotate_on_drift,
            consumers=consumer_rules(target.consumers),
            probe_spacing=timedelta(seconds=self.settings.probes.spacing),
        )


def next_rotation_at(target: TargetSettings, record: Record) -> datetime | None:
    if record.last_rotation_at is None:
        return None
    return target.schedule.next_after(record.last_rotation_at)


def is_due(target: TargetSettings, record: Record, consumer: ConsumerView, now: datetime) -> bool:
    if record.phase is not Phase.IDLE:
        return False
    if consumer.intercom_id is None:  # nothing for consumers to read: provision one
        return True
    upcoming = next_rotation_at(target, record)
    return upcoming is None or now >= upcoming


def resting(target: TargetSettings, record: Record, now: datetime) -> bool:
    """Idle, holding a secret, not due, nothing asked, not watched: nothing to look at."""
    if record.phase is not Phase.IDLE or record.current_id is None or record.lease:
        return False
    if target.rotate_on_drift or record.request is not None or record.paused is not None:
        return False  # (a paused target's pass says so: the decision core names the pause)
    upcoming = next_rotation_at(target, record)
    return upcoming is not None and now < upcoming


@dataclass
class _Gathered:
    stored: Record | None  # as read (None: nothing stored yet)
    record: Record  # what the machine starts from
    version: int
    obs: Observation


class Pass:
    """One pass over ``target``; ``run`` returns how it ended."""

    def __init__(
        self,
        ports: Ports,
        target: TargetSettings,
        command: Callable[[Record], RotateNow | None] | None,
        stop: threading.Event | None,
        known: Loaded | None = None,
    ) -> None:
        self.ports = ports
        self.target = target
        self._command = command
        self._stop = stop
        #: The record as this process has just written it (an operator's request): the first
        #: gather starts from it rather than reading it back. Every write is check-and-set on
        #: its version, so a record changed since is found there and the pass starts over from
        #: a fresh read, exactly as when another process writes between a read and a write.
        self._known = known
        #: Set once gathered: whether the record was bound to another token than this
        #: process's (``_local_refusal``).
        self._bound_elsewhere = False
        #: This pass's probe round, once taken, and the store it was taken for (pending id,
        #: stored version): a check-and-set restart re-reads Vault but does not probe again
        #: (one round per pass; a CronJob run probes once and exits).
        self._probed: tuple[ConsumerProbe, ...] | None = None
        self._probed_for: tuple[str | None, int | None] | None = None

    def run(self) -> TargetReport:
        for _ in range(_RESTARTS):
            try:
                gathered = self._gather()
                if isinstance(gathered, TargetReport):
                    return gathered
                return self._drive(gathered)
            except CasConflict:
                log.info("reconcile.cas_conflict", note="another process moved the target")
        return TargetReport(self.target.name, "unknown", "lost check-and-set repeatedly; next pass")

    # --- gather ------------------------------------------------------------------------------

    def _gather(self) -> TargetReport | _Gathered:
        """Read the world into one observation (or settle a resting target from its record)."""
        ports, target = self.ports, self.target
        loaded = self._known if self._known is not None else ports.store.load(target.name)
        self._known = None
        stored = loaded.record
        now = ports.clock()
        ports.store.tell_seen(stored, target, None)
        command = self._command(stored) if self._command is not None and stored else None
        if stored is not None and command is None and resting(target, stored, now):
            # The common case of every pass: nothing to do, known from the record alone.
            return TargetReport(target.name, stored.phase.value, "not due")
        consumer = ports.store.consumer(target)
        policy = ports.policy(target)
        mine = ports.clients.binding(target)  # LocalError when this process lacks its token
        record = stored or initial_record(policy, consumer, now)
        if stored is None and self._command is not None:
            command = self._command(record)
        bound = record.binding
        self._bound_elsewhere = bound is not None and (bound.endpoint, bound.workspace) != (
            mine.endpoint,
            mine.workspace,
        )
        due = is_due(target, record, consumer, now)
        window = window_state(target.windows, now)
        # A scheduled start outside every window waits for one: nothing to list Intercom for.
        held = consumer.intercom_id is not None and windows.outside(window) is not None
        listed, failure = None, None
        wanted = needs_intercom(
            record,
            due=(due and not held) or target.rotate_on_drift,
            command=command,
            now=now,
            consumers=bool(target.consumers),
        )
        if wanted or needs_evidence(record, mine):
            listed, failure = self._list()
        problem = binding_problem(record, mine, listed)
        if problem is not None:
            raise LocalError(problem)
        lease_free = ports.leases.free(target.name, record.lease)
        wanted = lease_free and needs_probes(record, policy, now=now)
        probes = self._probes(record) if wanted else None
        below = needs_history(record) if lease_free else None
        history = (
            None
            if below is None
            else ports.store.history(target, record.current_id, below, record.pending_id)
        )
        obs = Observation(
            policy=policy,
            consumer=consumer,
            intercom=listed,
            due=due,
            me=ports.me,
            fresh=ports.fresh(),
            command=command,
            result=failure,
            lease_free=lease_free,
            binding=mine,
            probes=probes,
            window=window,
            history=history,
        )
        return _Gathered(stored, record, loaded.version, obs)

    def _probes(self, record: Record) -> tuple[ConsumerProbe, ...] | None:
        """This pass's probe round of the target's consumers (taken once, before any lease).
        A prober that fails is logged and the pass goes on without probes: nothing is
        confirmed by a round that did not happen. After a check-and-set restart that finds
        the secret stored again, the round is of an earlier store: it says nothing about who
        reloaded this one (the path may have held something else in between), so this pass
        goes on without one."""
        store = (record.pending_id, record.stored_version)
        prober = self.ports.prober
        if self._probed_for is None and prober is not None:
            self._probed_for = store
            try:
                self._probed = prober.probe(self.target)
            except Exception as e:  # noqa: BLE001 - a probe bug must not stop rotations
                log.error("probe.crashed", error=f"{type(e).__name__}: {e}")
        return self._probed if self._probed_for == store else None

    def _list(self) -> tuple[tuple[LiveSecret, ...] | None, Failed | None]:
        try:
            listed = self.ports.clients.client(self.target).list_secrets()
        except LocalError:
            raise
        except RotatorError as e:
            self.ports.clients.forget_after(self.target, e)
            self._local_refusal(e)
            return None, failure_of(e)
        return tuple(LiveSecret(s.id, s.name) for s in listed), None

    def _local_refusal(self, error: RotatorError) -> None:
        """Intercom refusing this process's token (401, or 403 for a scope) while the record
        is bound to another token is this process's problem, not the target's: the token that
        works (the daemon's, say) must not find the target blocked by an operator's shell with
        a read-only token. ``LocalError``: this process fails, the record is not blocked."""
        if isinstance(error, IntercomAuthError | IntercomPermissionError) and (
            self._bound_elsewhere
        ):
            raise LocalError(
                f"target {self.target.name}: Intercom refused this process's token "
                f"({error}); the target's record was written by a process with "
                "another token, so it is given back as it was: use that token, or one with the "
                "scopes named here"
            )

    # --- decide, persist, act ------------------------------------------------------------------

    def _drive(self, gathered: _Gathered) -> TargetReport:
        """Decide, persist, act, absorb the result; again until a decision has no action."""
        ports, target = self.ports, self.target
        stored, record, version, obs = (
            gathered.stored,
            gathered.record,
            gathered.version,
            gathered.obs,
        )
        decision = machine.step(record, obs, ports.clock())
        unknown_creates = 0
        found = gathered.stored  # what this pass may put back if it must give up (_let_go)
        for _ in range(_MAX_STEPS):
            if decision.action is not None and self._stop is not None and self._stop.is_set():
                # Stopping: persist what was decided, but neither act nor keep the lease.
                decision = replace(
                    decision, record=replace(decision.record, lease=None), action=None
                )
            version = ports.store.write(
                target, stored, decision.record, version, reason=decision.reason
            )
            stored = record = decision.record
            if decision.action is None:
                break
            try:
                result = self._act(record, decision.action)
            except LocalError:
                self._let_go(record, version, found)
                raise
            if not isinstance(result, Failed):
                found = None  # something happened at Intercom or in Vault: keep every record
            if isinstance(result, CreateUnknown):
                # The answer was lost: look at Intercom before deciding anything (the orphan,
                # if the list shows it yet, is found by its recorded name). Twice in one
                # pass: back off.
                unknown_creates += 1
                log.warning("rotation.create_unknown", detail=result.message)
                listed, failure = self._list()
                if failure is None and unknown_creates >= 2:
                    failure = Failed(
                        f"create answers lost twice: {result.message}", permanent=False
                    )
                obs = replace(obs, intercom=listed, result=failure, fresh=ports.fresh())
            else:
                obs = replace(absorb(obs, result), fresh=ports.fresh())
            decision = machine.step(record, obs, ports.clock())
            obs = replace(obs, result=None, command=None)
        return TargetReport(
            target.name,
            record.phase.value,
            decision.reason,
            rotation_id=record.rotation_id,
            held_off=decision.held_off,
            failing=record.attempts > 0 and record.retry_at is not None,
        )

    def _let_go(self, record: Record, version: int, found: Record | None) -> None:
        """Give the target back when this process cannot act on it: the record as the pass
        found it (``found``), if no action of this pass took effect, so that neither its
        binding nor a step decided with a token that cannot carry it out stays; else the
        record as it is. Either way without our lease: another process (with a token that
        works) must not wait a whole lease_ttl for it."""
        back = replace(found if found is not None else record, lease=None)
        if back == record:
            return
        try:
            self.ports.store.write(
                self.target,
                record,
                back,
                version,
                reason="this process cannot act on the target: given back",
            )
        except RotatorError as e:  # the lease lapses after its ttl anyway
            log.warning("lease.release_failed", target=self.target.name, error=str(e))

    def _act(self, record: Record, action: Action) -> Result:
        target = self.target
        clients = self.ports.clients
        try:
            if isinstance(action, Create):
                failpoint("intercom.before_create")
                platforms = Platforms.from_names(target.platforms)
                created = clients.client(target).create_secret(action.name, platforms)
                failpoint("intercom.after_create")
                return Created(
                    secret_id=created.info.id,
                    name=action.name,
                    created_at=created.info.created_at,
                    secret=created.secret,
                )
            if isinstance(action, Store):
                return Stored(self.ports.store.store_consumer(target, record, action.cas))
            if not isinstance(action, Delete):  # pragma: no cover - Action is a closed union
                raise TypeError(f"unknown action {type(action).__name__}")
            failpoint("intercom.before_delete")
            outcome = clients.client(target).delete_secret(action.secret_id)
            failpoint("intercom.after_delete")
            return Deleted(action.secret_id, already=outcome is DeleteOutcome.ALREADY_DELETED)
        except CreateOutcomeUnknown as e:
            return CreateUnknown(str(e))
        except (CasConflict, LocalError):
            raise
        except RotatorError as e:
            clients.forget_after(target, e)
            self._local_refusal(e)
            return failure_of(e)


def failure_of(error: RotatorError) -> Failed:
    delay = error.delay if isinstance(error, TemporaryError) else None
    scope = error.scope if isinstance(error, IntercomPermissionError) else None
    return Failed(
        str(error), permanent=isinstance(error, PermanentError), delay=delay, missing_scope=scope
    )
