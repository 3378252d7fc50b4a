"""The reconciler: gather -> decide -> persist -> act, per target, until nothing is left to do.

One pass over a target reads its record and the consumers' path from Vault, lists Intercom when
the decision needs it, and then loops: ``machine.step`` decides; the new record is written with
check-and-set *before* the action it announces; the action runs; its result is folded into the
observation and the machine decides again. A lost check-and-set means another process moved the
target: the pass gathers again from scratch (a few times at most) instead of guessing.

Everything that talks to the outside is injected (Vault, the Intercom client factory, clocks,
randomness), so tests drive real servers with a controlled clock.
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
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from rotator.config import Settings, TargetSettings
from rotator.core import machine
from rotator.core.confirmation import confirm as confirm_rollout
from rotator.core.lease import LeaseWatch
from rotator.core.observation import (
    Action,
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
)
from rotator.core.record import Phase, Record
from rotator.errors import PermanentError, RotatorError, TemporaryError
from rotator.failpoints import FailpointError, failpoint
from rotator.intercom.errors import CreateOutcomeUnknown
from rotator.intercom.models import Platforms
from rotator.logs import bind_context, clear_context, get_logger
from rotator.redaction import SecretValue
from rotator.vault import CasConflict, KVEntry, Vault

if TYPE_CHECKING:
    from rotator.intercom.client import IntercomClient

log = get_logger()

ClientFactory = Callable[[TargetSettings, SecretValue], "IntercomClient"]


class RecordListener(Protocol):
    """Told of every record the reconciler persisted (metrics, notifications).

    Called synchronously after the write succeeded; must be quick and must not raise (anything
    raised is logged and dropped). ``before`` is None for a target's first record.
    """

    def on_record(
        self, before: Record | None, after: Record, reason: str, target: TargetSettings
    ) -> None: ...


Sleep = Callable[[float], object]
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

    @property
    def needs_operator(self) -> bool:
        return self.phase == Phase.BLOCKED.value or self.error is not None


@dataclass(slots=True)
class Ask:
    """An operator's command for one target, across the re-reads of one invocation.

    If the target's generation moves on between our first read and a re-read (we lost a
    check-and-set, or waited out a lease), someone else rotated meanwhile: the command has
    been served by that rotation and is dropped, so two rotate-nows never make two rotations.
    """

    command: RotateNow
    seen_generation: int | None = None
    joined: bool = False

    def command_for(self, record: Record) -> RotateNow | None:
        if self.seen_generation is None:
            self.seen_generation = record.generation
            self.joined = record.phase not in {Phase.IDLE, Phase.BLOCKED}
            return self.command
        if record.generation != self.seen_generation:
            in_progress = record.phase not in {Phase.IDLE, Phase.BLOCKED}
            # A leak still wants the rotation under way to retire the old secret at once.
            return self.command if self.command.emergency and in_progress else None
        return self.command


@dataclass(frozen=True, slots=True)
class ConfirmResult:
    status: str  # rotator.core.confirmation's statuses
    message: str
    rotation_id: str | None = None
    secret_id: str | None = None


def client_factory_with(
    sleep: Sleep, observe: Callable[[str, str, float], None] | None = None
) -> ClientFactory:
    """Real Intercom clients whose retry waits use ``sleep`` (the daemon's is interruptible) and
    which report every request to ``observe`` (metrics)."""

    def wait(seconds: float) -> None:
        sleep(seconds)

    def make(target: TargetSettings, token: SecretValue) -> IntercomClient:
        from rotator.intercom.client import IntercomClient

        return IntercomClient(
            token,
            region=target.region,
            base_url=target.base_url,
            version=target.intercom_version,
            sleep=wait,
            observe=observe,
        )

    return make


class Reconciler:
    """Drives every configured target through its rotations."""

    def __init__(
        self,
        settings: Settings,
        vault: Vault,
        *,
        environ: Mapping[str, str] | None = None,
        client_factory: ClientFactory | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        fresh: Callable[[], str] = lambda: secrets.token_hex(12),
        me: str | None = None,
        listeners: Sequence[RecordListener] = (),
    ) -> None:
        self.settings = settings
        self.listeners = list(listeners)
        self.vault = vault
        self._environ = os.environ if environ is None else environ
        self._client_factory = client_factory or client_factory_with(time.sleep)
        self._clock = clock
        self._fresh = fresh
        self.me = me or f"{socket.gethostname()}:{os.getpid()}:{fresh()[:6]}"
        self._clients: dict[str, IntercomClient] = {}
        self._clients_lock = threading.Lock()
        self.leases = LeaseWatch(self.me, monotonic)
        self._monotonic_now = monotonic
        # One pass per target at a time within this process (scheduled pass vs. hook-triggered).
        self._target_locks = {t.name: threading.Lock() for t in settings.targets}
        self._by_name = {t.name: t for t in settings.targets}

    def close(self) -> None:
        with self._clients_lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()

    # --- passes ------------------------------------------------------------------------------

    def reconcile_all(
        self, stop: threading.Event | None = None, *, wait_for_leases: bool = False
    ) -> list[TargetReport]:
        """One pass over every target, ``daemon.concurrency`` at a time.

        ``wait_for_leases`` is for one-shot runs (a CronJob): a target held off by another
        process's lease is tried again once that lease has sat unchanged for its ttl of our
        time, instead of being left to a next run that would start counting from zero.
        """
        names = [t.name for t in self.settings.targets]
        reports = {r.target: r for r in self._many(names, None, stop)}
        if wait_for_leases:
            self._retry_held(reports, {}, stop)
        return [reports[name] for name in names]

    def reconcile_target(
        self, name: str, command: RotateNow | None = None, *, wait_for_lease: bool = False
    ) -> TargetReport:
        """One pass over one target (``command`` from rotate-now)."""
        self.target(name)  # UnknownTargetError before anything else
        ask = Ask(command) if command is not None else None
        reports = {name: self._guarded(name, ask, None)}
        if wait_for_lease:
            self._retry_held(reports, {name: ask} if ask else {}, None)
        if ask is not None and ask.joined:
            return replace(reports[name], joined=True)
        return reports[name]

    def _many(
        self,
        names: list[str],
        asks: Mapping[str, Ask | None] | None,
        stop: threading.Event | None,
    ) -> list[TargetReport]:
        asked = asks or {}
        workers = min(self.settings.daemon.concurrency, len(names))
        if workers <= 1:
            return [self._guarded(name, asked.get(name), stop) for name in names]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reconcile") as pool:
            return list(pool.map(lambda n: self._guarded(n, asked.get(n), stop), names))

    def _retry_held(
        self,
        reports: dict[str, TargetReport],
        asks: Mapping[str, Ask | None],
        stop: threading.Event | None,
    ) -> None:
        """Try held-off targets again every second until their holder lets go or its lease has
        sat unchanged for a whole ttl of our time (then it is abandoned and we take over)."""
        ttl = self.settings.daemon.lease_ttl
        deadline = self._monotonic_now() + ttl + 2.0
        pause = stop or threading.Event()
        held = [name for name, r in reports.items() if r.held_off]
        if held:
            log.info("reconcile.waiting_for_lease", targets=held, ttl_s=ttl)
        for _ in range(int(ttl) + 3):  # bounded even if a clock misbehaves
            if not held or self._monotonic_now() >= deadline or pause.wait(1.0):
                break
            for report in self._many(held, asks, stop):
                reports[report.target] = report
            held = [name for name in held if reports[name].held_off]

    def _guarded(self, name: str, ask: Ask | None, stop: threading.Event | None) -> TargetReport:
        if stop is not None and stop.is_set():
            return TargetReport(name, "unknown", "skipped: stopping")
        bind_context(target=name)
        try:
            with self._target_locks[name]:
                return self._pass(self.target(name), ask, stop)
        except RotatorError as e:
            # Vault itself failing (we could not even persist a backoff): report and move on.
            log.error("reconcile.failed", error=str(e), kind=type(e).__name__)
            self._tell_seen(None, self.target(name), str(e))
            return TargetReport(name, "unknown", "pass failed", error=str(e))
        except FailpointError:
            raise
        except Exception as e:  # a bug: one target's crash must not stop the others' passes
            log.exception("reconcile.crashed", error_type=type(e).__name__)
            return TargetReport(
                name, "unknown", "pass crashed", error=f"internal error ({type(e).__name__})"
            )
        finally:
            clear_context()

    def _pass(
        self, target: TargetSettings, ask: Ask | None, stop: threading.Event | None
    ) -> TargetReport:
        report: TargetReport | None = None
        for _ in range(_RESTARTS):
            try:
                report = self._attempt(target, ask, stop)
            except CasConflict:
                log.info(
                    "reconcile.cas_conflict", note="another process moved the target; re-reading"
                )
                continue
            return report
        return TargetReport(target.name, "unknown", "lost check-and-set repeatedly; next pass")

    def _attempt(
        self, target: TargetSettings, ask: Ask | None, stop: threading.Event | None
    ) -> TargetReport:
        gathered = self._gather(target, ask)
        if isinstance(gathered, TargetReport):
            return gathered
        record, version, obs = gathered
        return self._drive(target, record, version, obs, stop)

    def _gather(
        self, target: TargetSettings, ask: Ask | None
    ) -> TargetReport | tuple[Record, int, Observation]:
        """Read the world into one observation (or settle a resting target from its record)."""
        state_key = self.state_key(target.name)
        entry = self.vault.read(state_key)
        version = entry.version
        now = self._clock()
        stored = Record.from_storage(entry.data) if entry.data is not None else None
        if stored is not None:
            self._tell_seen(stored, target, None)
        command = ask.command_for(stored) if ask is not None and stored is not None else None
        if stored is not None and command is None and self._resting(target, stored, now):
            # The common case of every pass: nothing to do, known from the record alone (one
            # Vault read per idle target instead of two).
            return TargetReport(target.name, stored.phase.value, "idle: not due")
        consumer = self._consumer(target)
        policy = self.policy(target)
        if stored is None:
            record = machine.initial_record(policy, consumer, now)
            version = self._persist(
                state_key, None, record, version, reason="first seen", target=target
            )
            command = ask.command_for(record) if ask is not None else None
        else:
            record = stored
        due = self.is_due(target, record, consumer, now)
        listed, failure = None, None
        # rotate_on_drift: an idle target lists Intercom on every pass, so that consumers holding
        # a secret deleted there get a new one now, not at the next scheduled rotation.
        watch = target.rotate_on_drift and record.phase is Phase.IDLE
        if machine.needs_intercom(record, due=due or watch, command=command, now=now):
            listed, failure = self._list(target)
            held = consumer.intercom_id
            if watch and listed is not None and held and held not in {s.id for s in listed}:
                log.warning("drift.consumer_secret_deleted", intercom_id=held)
                due = True
        obs = Observation(
            policy=policy,
            consumer=consumer,
            intercom=listed,
            due=due,
            me=self.me,
            fresh=self._fresh(),
            command=command,
            result=failure,
            lease_free=self.leases.free(target.name, record.lease),
        )
        return record, version, obs

    def _drive(
        self,
        target: TargetSettings,
        record: Record,
        version: int,
        obs: Observation,
        stop: threading.Event | None,
    ) -> TargetReport:
        """Decide, persist, act, absorb the result; again until a decision has no action."""
        state_key = self.state_key(target.name)
        decision = machine.step(record, obs, self._clock())
        unknown_creates = 0
        for _ in range(_MAX_STEPS):
            if decision.action is not None and stop is not None and stop.is_set():
                # Stopping: persist what was decided, but neither act nor keep the lease.
                decision = replace(decision, record=decision.record.evolve(lease=None), action=None)
            version = self._persist(
                state_key, record, decision.record, version, reason=decision.reason, target=target
            )
            record = decision.record
            if decision.action is None:
                break
            result = self._act(target, record, decision.action)
            if isinstance(result, CreateUnknown):
                # The answer was lost: look at Intercom before deciding anything (the orphan,
                # if it exists, is found by its recorded name). Twice in one pass: back off.
                unknown_creates += 1
                log.warning("rotation.create_unknown", detail=result.message)
                listed, failure = self._list(target)
                if failure is None and unknown_creates >= 2:
                    failure = Failed(
                        f"create answers lost twice: {result.message}", permanent=False
                    )
                obs = replace(obs, intercom=listed, result=failure, fresh=self._fresh())
            else:
                obs = replace(absorb(obs, result), fresh=self._fresh())
            decision = machine.step(record, obs, self._clock())
            obs = replace(obs, result=None, command=None)
        return TargetReport(
            target.name,
            record.phase.value,
            decision.reason,
            rotation_id=record.rotation_id,
            held_off=decision.held_off,
        )

    # --- gathering ---------------------------------------------------------------------------

    def _consumer(self, target: TargetSettings) -> ConsumerView:
        entry = self.vault.read(target.vault_path)
        return consumer_view(entry)

    def _list(self, target: TargetSettings) -> tuple[tuple[LiveSecret, ...] | None, Failed | None]:
        try:
            listed = self.client(target).list_secrets()
            return tuple(LiveSecret(s.id, s.name) for s in listed), None
        except RotatorError as e:
            self._forget_client_after(target, e)
            return None, _failure(e)

    def policy(self, target: TargetSettings) -> Policy:
        return Policy(
            target=target.name,
            secret_name=target.secret_name,
            grace_period=timedelta(seconds=target.grace_period),
            confirmation=target.confirmation,
            adopt=target.adopt,
            lease_ttl=self.settings.daemon.lease_ttl,
        )

    def is_due(
        self, target: TargetSettings, record: Record, consumer: ConsumerView, now: datetime
    ) -> bool:
        if record.phase is not Phase.IDLE:
            return False
        if consumer.intercom_id is None:  # nothing for consumers to read: provision one
            return True
        upcoming = self.next_rotation_at(target, record)
        return upcoming is None or now >= upcoming

    def _resting(self, target: TargetSettings, record: Record, now: datetime) -> bool:
        """Idle, holding a secret, not due, not watched for drift: nothing to look at."""
        if record.phase is not Phase.IDLE or record.current_id is None or record.lease:
            return False
        if target.rotate_on_drift:
            return False
        upcoming = self.next_rotation_at(target, record)
        return upcoming is not None and now < upcoming

    @staticmethod
    def next_rotation_at(target: TargetSettings, record: Record) -> datetime | None:
        if record.last_rotation_at is None:
            return None
        return target.schedule.next_after(record.last_rotation_at)

    # --- acting ------------------------------------------------------------------------------

    def _act(self, target: TargetSettings, record: Record, action: Action) -> Result:
        try:
            if isinstance(action, Create):
                failpoint("intercom.before_create")
                created = self.client(target).create_secret(
                    action.name, Platforms.from_names(target.platforms)
                )
                failpoint("intercom.after_create")
                return Created(
                    secret_id=created.info.id,
                    name=action.name,
                    created_at=created.info.created_at,
                    secret=created.secret,
                )
            if isinstance(action, Store):
                return self._store(target, record, action.cas)
            assert isinstance(action, Delete)  # noqa: S101 - Action is a closed union
            failpoint("intercom.before_delete")
            outcome = self.client(target).delete_secret(action.secret_id)
            failpoint("intercom.after_delete")
            return Deleted(action.secret_id, already=outcome.value == "already_deleted")
        except CreateOutcomeUnknown as e:
            return CreateUnknown(str(e))
        except CasConflict:
            raise
        except RotatorError as e:
            self._forget_client_after(target, e)
            return _failure(e)

    def _store(self, target: TargetSettings, record: Record, cas: int) -> Stored:
        secret = record.pending_secret
        if secret is None or record.pending_id is None:  # pragma: no cover - machine guarantees
            raise RotatorError("store requested without a pending secret")
        data = {
            "secret": secret.reveal(),
            "intercom_id": record.pending_id,
            "name": record.planned_name,
            "created_at": record.pending_created_at,
            "rotation_id": record.rotation_id,
        }
        failpoint("vault.before_store")
        self.vault.write(target.vault_path, data, cas=cas)
        failpoint("vault.after_store")
        return Stored(self._consumer(target))

    def _persist(
        self,
        key: str,
        before: Record | None,
        after: Record,
        version: int,
        *,
        reason: str,
        target: TargetSettings,
    ) -> int:
        if before is not None and after == before:
            return version
        if version == 0:
            # Before the first write, so the key is never writable without check-and-set.
            self.vault.require_cas(key)
        failpoint("state.before_write")
        new_version = self.vault.write(key, after.to_storage(), cas=version)
        failpoint("state.after_write")
        if before is None or before.phase is not after.phase:
            log.info(
                "rotation.transition",
                rotation_id=after.rotation_id,
                **{"from": before.phase.value if before else None, "to": after.phase.value},
                reason=reason,
                generation=after.generation,
            )
        else:
            log.debug("rotation.step", rotation_id=after.rotation_id, reason=reason)
        self._tell(before, after, reason, target)
        return new_version

    def _tell(
        self, before: Record | None, after: Record, reason: str, target: TargetSettings
    ) -> None:
        """Every listener hears of every persisted record; none can fail or slow a rotation."""
        for listener in self.listeners:
            try:
                listener.on_record(before, after, reason, target)
            except Exception:  # a listener's bug must never cost a rotation
                log.exception("listener.failed", listener=type(listener).__name__)

    def _tell_seen(self, record: Record | None, target: TargetSettings, error: str | None) -> None:
        """Listeners that want it also hear what each pass found, whoever wrote it (another
        process's rotation, a CLI confirm), and when a pass could not even read or write."""
        for listener in self.listeners:
            seen = getattr(listener, "on_seen", None)
            if seen is None:
                continue
            try:
                seen(record, target, error)
            except Exception:
                log.exception("listener.failed", listener=type(listener).__name__)

    def _forget_client_after(self, target: TargetSettings, error: RotatorError) -> None:
        """After Intercom refused the token (401/403), drop the client: the next pass reads the
        token again, so one replaced in Vault is picked up without restarting the daemon."""
        if error.status not in {401, 403}:
            return
        with self._clients_lock:
            client = self._clients.pop(target.name, None)
        if client is not None:
            client.close()

    def client(self, target: TargetSettings) -> IntercomClient:
        with self._clients_lock:
            client = self._clients.get(target.name)
            if client is None:
                client = self._client_factory(target, self.intercom_token(target))
                self._clients[target.name] = client
            return client

    def intercom_token(self, target: TargetSettings) -> SecretValue:
        if target.token_env:
            value = self._environ.get(target.token_env)
            if not value:
                raise PermanentError(
                    f"target {target.name}: environment variable {target.token_env} "
                    "(token_env) is not set"
                )
            return SecretValue(value)
        assert target.token_vault is not None  # noqa: S101 - config guarantees one of the two
        path, _, key = target.token_vault.partition("#")
        return self.vault.read_value(path, key or "token")

    # --- confirmations and status ----------------------------------------------------------------

    def confirm(
        self, name: str, *, secret_id: str | None, rotation_id: str | None, via: str
    ) -> ConfirmResult:
        """Record a rollout confirmation (check-and-set, retried on conflict)."""
        target = self.target(name)
        key = self.state_key(name)
        for _ in range(_RESTARTS + 2):
            entry = self.vault.read(key)
            if entry.data is None:
                return ConfirmResult("not_awaiting", f"target {name} has no rotation yet")
            record = Record.from_storage(entry.data)
            updated, status, message = confirm_rollout(
                record,
                self.policy(target),
                secret_id=secret_id,
                rotation_id=rotation_id,
                via=via,
                now=self._clock(),
            )
            if updated is not None:
                try:
                    failpoint("confirm.before_write")
                    self.vault.write(key, updated.to_storage(), cas=entry.version)
                    failpoint("confirm.after_write")
                except CasConflict:
                    continue
                self._tell(record, updated, message, target)
                log.info(
                    "rotation.confirmed",
                    target=name,
                    rotation_id=record.rotation_id,
                    intercom_id=record.pending_id,
                    via=via,
                )
            else:
                log.info("rotation.confirm_refused", target=name, status=status, reason=message)
            return ConfirmResult(status, message, record.rotation_id, record.pending_id)
        raise TemporaryError(f"target {name}: the record kept changing; confirm again")

    def amend(
        self, name: str, change: Callable[[Record | None], Record], *, reason: str
    ) -> tuple[Record | None, Record]:
        """Persist an operator's ``change`` to a record (``rotator adopt``), as passes persist
        theirs: check-and-set, listeners told; on a conflict ``change`` sees the fresh record.
        Returns (before, after); ``change`` may raise to refuse."""
        target = self.target(name)
        key = self.state_key(name)
        for _ in range(_RESTARTS):
            entry = self.vault.read(key)
            before = Record.from_storage(entry.data) if entry.data else None
            after = change(before)
            try:
                self._persist(key, before, after, entry.version, reason=reason, target=target)
            except CasConflict:
                continue
            return before, after
        raise TemporaryError(f"target {name}: the record kept changing; try again")

    def record(self, name: str) -> tuple[Record | None, ConsumerView]:
        """The stored record (``None`` before the first pass) and the consumers' view."""
        target = self.target(name)
        entry = self.vault.read(self.state_key(name))
        consumer = self._consumer(target)
        return (Record.from_storage(entry.data) if entry.data else None), consumer

    def target(self, name: str) -> TargetSettings:
        """The target's settings by name (a dict lookup: passes ask per target, 1,000s of them)."""
        found = self._by_name.get(name)
        return found if found is not None else self.settings.target(name)  # raises with the list

    def state_key(self, name: str) -> str:
        return f"{self.settings.vault.state_path}/{name}"


def consumer_view(entry: KVEntry) -> ConsumerView:
    data = entry.data or {}
    secret = data.get("secret")
    created = data.get("created_at")
    return ConsumerView(
        intercom_id=str(data["intercom_id"]) if data.get("intercom_id") else None,
        rotation_id=data.get("rotation_id"),
        fingerprint=SecretValue(secret).fingerprint()
        if isinstance(secret, str) and secret
        else None,
        # Unix seconds only: a value in milliseconds (or nonsense) is ignored, not believed.
        created_at=created
        if isinstance(created, int) and not isinstance(created, bool) and 0 < created < 10**10
        else None,
        version=entry.version,
    )


def _failure(error: RotatorError) -> Failed:
    delay = error.delay if isinstance(error, TemporaryError) else None
    return Failed(str(error), permanent=isinstance(error, PermanentError), delay=delay)
