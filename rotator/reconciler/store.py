"""The two things rotator keeps in Vault for a target, and every read and write of them.

* The **state record** at ``<state_path>/<target>``: loaded and parsed here, written only with
  check-and-set (``write``; ``update`` is the retry loop around it, written once), and every
  record persisted is told to the listeners (metrics, notifications), whoever persisted it.
* The **consumers' path** (``vault_path``): what services read, ``{"secret", "intercom_id",
  "name", "created_at", "rotation_id"}``. Built (``consumer_payload``) and parsed
  (``consumer_view``) in this one place; the material is revealed only on its way into Vault.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rotator import redaction
from rotator.config import TargetSettings
from rotator.core import audit
from rotator.core.names import valid_secret_id
from rotator.core.observation import ConsumerView, KVHistory, PreviousSecret
from rotator.core.record import AuditEntry, Record, RecordError
from rotator.errors import TemporaryError
from rotator.failpoints import failpoint
from rotator.logs import get_logger
from rotator.reconciler import record_log
from rotator.reconciler.ports import KV, RecordListener
from rotator.redaction import SecretValue
from rotator.signing import probe_fingerprint
from rotator.vault import CasConflict, KVEntry

log = get_logger()

#: Lost check-and-sets before ``update`` gives up (another writer keeps moving the record).
UPDATE_ATTEMPTS = 5
#: Intercom's secret ids are short numbers; an id this long is treated as if it were material.
_LONGEST_PLAIN_ID = 24


@dataclass(frozen=True, slots=True)
class Loaded:
    """A record as read (``None`` before the target's first pass) and its KV version."""

    record: Record | None
    version: int


class RecordStore:
    """A target's state record and consumers' path, on one KV v2 mount."""

    def __init__(self, kv: KV, state_path: str, listeners: Sequence[RecordListener] = ()) -> None:
        self.kv = kv
        self.state_path = state_path
        self.listeners = list(listeners)
        #: Targets whose record this store last wrote with a lease in it (perhaps not quite
        #: written): what a stopping command may have to release (``reconciler.release``).
        self.leased: set[str] = set()
        #: Per target, the hash and the time of the newest audit entry this process logged or
        #: saw (``_relay``, ``audit.since``).
        self._relayed: dict[str, tuple[int, datetime]] = {}
        #: The process that writes through this store (``via`` of its audit entries), and the
        #: clock its entries are stamped with (the reconciler's: Vault's, or a test's).
        self.me = "rotator"
        self.clock: Callable[[], datetime] = kv.clock.now

    def key(self, name: str) -> str:
        return f"{self.state_path}/{name}"

    # --- the state record --------------------------------------------------------------------

    def load(self, name: str) -> Loaded:
        entry = self.kv.read(self.key(name))
        try:
            record = Record.from_storage(entry.data) if entry.data is not None else None
        except RecordError as e:
            raise type(e)(f"{self.key(name)}: {e.message}", version=entry.version) from None
        if record is not None and record.audit:
            self._relay(name, record)
        return Loaded(record, entry.version)

    def _relay(self, name: str, record: Record) -> None:
        """Log the audit entries other processes wrote since this one last read the record
        (an operator's ``kubectl exec ... rotator pause`` logs to a session nobody ships; the
        daemon's log is shipped). The first read only sets the mark: what was there before
        this process ran was logged by its writer, or is in ``status --history``."""
        seen = self._relayed.get(name)
        self._relayed[name] = _mark(record.audit[-1])
        if seen is None:
            return
        for entry in audit.since(record.audit, *seen):
            if entry.via != self.me:
                record_log.audit_line(name, entry, relayed=True)

    def last_good_version(self, name: str, below: int, *, looked: int = 20) -> int | None:
        """The newest version of ``name``'s record under ``below`` that reads as a record (a
        hand edit may have been made in several steps); ``None`` if none of the last
        ``looked`` does."""
        for version in range(below - 1, max(0, below - 1 - looked), -1):
            data = self.kv.read(self.key(name), version=version).data
            if data is None:  # deleted or destroyed: not one to roll back to
                continue
            try:
                Record.from_storage(data)
            except RecordError:
                continue
            return version
        return None

    def write(
        self,
        target: TargetSettings,
        before: Record | None,
        after: Record,
        version: int,
        *,
        reason: str,
    ) -> int:
        """Persist ``after`` if the record is still at ``version`` (``CasConflict`` otherwise);
        the new version. ``before`` is what was read (``None``: nothing stored yet)."""
        if before is not None and after == before:
            return version
        key = self.key(target.name)
        if version == 0:
            # Before the first write, so the key is never writable without check-and-set.
            self.kv.require_cas(key)
        if after.lease is not None:  # noted before the write: it may land, answer lost
            self.leased.add(target.name)
        failpoint("state.before_write")
        new_version = self.kv.write(key, after.to_storage(), cas=version)
        if after.lease is None:
            self.leased.discard(target.name)
        failpoint("state.after_write")
        record_log.written(target.name, before, after, reason)
        if after.audit:
            self._relayed[target.name] = _mark(after.audit[-1])
        self.tell(before, after, reason, target)
        return new_version

    def update(
        self,
        target: TargetSettings,
        change: Callable[[Record | None], Record | None],
        *,
        reason: str,
        by: str | None = None,
    ) -> tuple[Record | None, Record | None]:
        """Apply ``change`` to the latest record and persist what it returns (``None``: write
        nothing), check-and-set; on a conflict ``change`` sees the fresh record. Returns
        ``(before, after)``, ``after`` with the audit entries of the change made ``by`` (an
        operator, the hook). ``change`` may raise to refuse."""
        before, after, _ = self.updated(target, change, reason=reason, by=by)
        return before, after

    def updated(
        self,
        target: TargetSettings,
        change: Callable[[Record | None], Record | None],
        *,
        reason: str,
        by: str | None = None,
        start: Loaded | None = None,
    ) -> tuple[Record | None, Record | None, Loaded]:
        """``update``, and the record as it now stands in Vault with its version (as written,
        or as read when ``change`` wrote nothing). ``start``: the record as this process has
        just read it, for the first attempt (its write is check-and-set on that version).
        A ``change`` that writes nothing on ``start`` is decided again on a fresh read: no
        check-and-set ever vouched for ``start``, and a decision that writes nothing (a join,
        a request already waiting) must not rest on a record another process moved since."""
        for _ in range(UPDATE_ATTEMPTS):
            given, start = start, None
            loaded = given if given is not None else self.load(target.name)
            after = change(loaded.record)
            if after is None and given is not None:
                continue
            if after is None:
                return loaded.record, None, loaded
            after = audit.noted(
                loaded.record, after, at=self.clock(), why=reason, via=self.me, by=by
            )
            try:
                version = self.write(target, loaded.record, after, loaded.version, reason=reason)
            except CasConflict:
                continue
            return loaded.record, after, Loaded(after, version)
        raise TemporaryError(f"target {target.name}: its record kept changing; try again")

    def tell(
        self, before: Record | None, after: Record, reason: str, target: TargetSettings
    ) -> None:
        """Every listener hears of every persisted record; none can fail or slow a rotation."""
        for listener in self.listeners:
            try:
                listener.on_record(before, after, reason, target)
            except Exception:  # a listener's bug must never cost a rotation
                log.exception("listener.failed", listener=type(listener).__name__)

    def tell_seen(self, record: Record | None, target: TargetSettings, error: str | None) -> None:
        """Listeners also hear what each pass found, whoever wrote it, or why it could not."""
        for listener in self.listeners:
            try:
                listener.on_seen(record, target, error)
            except Exception:
                log.exception("listener.failed", listener=type(listener).__name__)

    # --- the consumers' path -----------------------------------------------------------------

    def consumer(self, target: TargetSettings) -> ConsumerView:
        return consumer_view(self.kv.read(target.vault_path))

    def store_consumer(self, target: TargetSettings, record: Record, cas: int) -> ConsumerView:
        """Write the record's new secret at the consumers' path (check-and-set), read it back."""
        failpoint("vault.before_store")
        self.kv.write(target.vault_path, consumer_payload(record), cas=cas)
        failpoint("vault.after_store")
        return self.consumer(target)

    def history(
        self, target: TargetSettings, wanted: str | None, below: int, pending: str | None = None
    ) -> KVHistory:
        """Look back through the consumers' path's versions below ``below`` (0: below the latest)
        for the newest that holds secret ``wanted``, as far as ``HISTORY_LOOKBACK`` versions: the
        secret an abort writes back. With ``pending``, also whether any of the last
        ``HISTORY_LOOKBACK`` versions held it (a store that landed and was undone before the
        record knew: consumers may have read it). Deleted and destroyed versions hold nothing."""
        latest = self.kv.read(target.vault_path).version
        below = below if below > 0 else latest
        seen = False
        if pending is not None:
            for version in range(latest, max(0, latest - HISTORY_LOOKBACK), -1):
                if consumer_view(self.kv.read(target.vault_path, version)).intercom_id == pending:
                    seen = True
                    break
        for version in range(below - 1, max(0, below - 1 - HISTORY_LOOKBACK), -1):
            entry = self.kv.read(target.vault_path, version)
            view = consumer_view(entry)
            secret = (entry.data or {}).get("secret")
            if wanted is None or view.intercom_id != wanted or not isinstance(secret, str):
                continue
            data = entry.data or {}
            name = data.get("name")
            found = PreviousSecret(
                version=version,
                intercom_id=wanted,
                secret=SecretValue(secret),
                fingerprint=view.fingerprint,
                name=name if isinstance(name, str) else None,
                created_at=view.created_at,
            )
            return KVHistory(below=below, found=found, pending_seen=seen)
        return KVHistory(below=below, found=None, pending_seen=seen)

    def put_consumer(
        self,
        target: TargetSettings,
        payload: dict[str, Any],
        cas: int,
    ) -> ConsumerView:
        """Write ``payload`` (``consumer_payload_for``) at the consumers' path, read it back."""
        self.kv.write(target.vault_path, payload, cas=cas)
        return self.consumer(target)


#: How many versions of the consumers' path an abort looks back through for the one to restore
#: (a rotation writes one or two; an operator's hand edits a few more).
HISTORY_LOOKBACK = 20


def consumer_payload(record: Record) -> dict[str, Any]:
    """What consumers read for the record's new secret. The material is revealed here only."""
    secret = record.pending_secret
    if secret is None or record.pending_id is None:
        raise ValueError("the record holds no new secret to store")
    return consumer_payload_for(
        secret,
        intercom_id=record.pending_id,
        name=record.planned_name,
        created_at=record.pending_created_at,
        rotation_id=record.rotation_id,
    )


def consumer_payload_for(
    secret: SecretValue,
    *,
    intercom_id: str,
    name: str | None,
    created_at: int | None,
    rotation_id: str | None,
) -> dict[str, Any]:
    """The documented shape of the consumers' path (PRODUCT.md, "What consumers read")."""
    return {
        "secret": secret.reveal(),
        "intercom_id": intercom_id,
        "name": name,
        "created_at": created_at,
        "rotation_id": rotation_id,
    }


def consumer_view(entry: KVEntry) -> ConsumerView:
    """What a consumers' path version holds, without its material (only a fingerprint)."""
    data = entry.data or {}
    secret = data.get("secret")
    created = data.get("created_at")
    held = str(data["intercom_id"]) if data.get("intercom_id") else None
    if held is not None and (len(held) >= _LONGEST_PLAIN_ID or not valid_secret_id(held)):
        # Not an id Intercom gives (its ids are short): material written in the wrong field by
        # hand, say. It is not taken for a secret (the path reads as holding none), and stays out
        # of every log line and message, as material does.
        redaction.register(held)
        held = None
    return ConsumerView(
        intercom_id=held,
        rotation_id=data.get("rotation_id") if isinstance(data.get("rotation_id"), str) else None,
        fingerprint=_fingerprint(secret),
        probe_fingerprint=_probe_fingerprint(secret),
        # Unix seconds only: a value in milliseconds (or nonsense) is ignored, not believed.
        created_at=created
        if isinstance(created, int) and not isinstance(created, bool) and 0 < created < 10**10
        else None,
        version=entry.version,
    )


def _fingerprint(secret: object) -> str | None:
    if not isinstance(secret, str) or not secret:
        return None
    try:
        return SecretValue(secret).fingerprint()
    except UnicodeEncodeError:  # a lone surrogate written by hand: not material Intercom issued
        return "unreadable"


def _probe_fingerprint(secret: object) -> str | None:
    """What a consumer signing with this material answers to a probe (``rotator.signing``)."""
    if not isinstance(secret, str) or not secret:
        return None
    try:
        return probe_fingerprint(secret)
    except UnicodeEncodeError:
        return "unreadable"


def _mark(entry: AuditEntry) -> tuple[int, datetime]:
    """What ``_relay`` keeps of the newest entry seen (``audit.since``): its identity, and its
    time for a trail that no longer holds it."""
    return hash(entry), entry.at
