"""Outbound notifications on transitions: signed JSON webhooks and Slack incoming webhooks.

Theory of operation
-------------------
``Notifier`` is a ``RecordListener``. From each persisted (before, after) pair it derives at
most a few events, the moments an operator or a consumer wants to hear about:

* ``stored``: the new secret is in Vault: roll it out now. The record newly holds a stored
  pending secret (the phase becomes ``awaiting_rollout``, or ``retiring`` at once for an
  emergency or a first secret, where there is nothing to wait for).
* ``retired``: a rotation completed (a history entry was appended); the old secrets are gone.
* ``blocked``: the target needs an operator.
* ``stalled``: a grace deadline passed while named consumers were still behind.
* ``paused`` and ``resumed`` (opt-in: not in a webhook's default ``events``): an operator's
  ``rotator pause`` and ``rotator resume``, with who paused and why.
* ``started``, ``confirmed`` and ``aborted`` (opt-in): the audit trail's entries of the same
  names (``rotator.core.audit``): a rotation started (by its schedule or whom), its rollout
  confirmed (by whom), a rotation aborted (by whom, why).

Each event, for each webhook that wants it, goes into a bounded queue that one background
thread drains. A rotation never waits for a delivery and never fails because of one: a full
queue drops the event (``notify.dropped``), and a delivery that still fails after a few
attempts with backoff (transport errors, 429 and 5xx are retried; other answers are final) is
logged as ``notify.failed``. One-shot commands ``flush`` with a bounded wait before exiting.

The payload carries the event, target, rotation id, phase, Intercom secret ids (new and old),
the reason and a timestamp: never material. JSON bodies may be signed exactly as the confirm
hook checks them (``rotator.signing``): HMAC-SHA256 over ``f"{timestamp}."`` + body in
``X-Rotator-Timestamp`` and ``X-Rotator-Signature: sha256=<hex>``. A URL from a variable is
treated as a secret (Slack's are): it is registered for redaction and logs name the variable.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import tenacity

import rotator
from rotator.backoff import full_jitter
from rotator.config import NotifyEvent, NotifySettings, TargetSettings, WebhookSettings
from rotator.config.consumers import consumer_rules
from rotator.core import audit, pause, rollout
from rotator.core.observation import ConsumerRule
from rotator.core.record import Phase, Record
from rotator.logs import get_logger
from rotator.redaction import SecretValue, redact_text, scrub, truncate
from rotator.signing import signature_headers

#: Notifications waiting for delivery; past that, new ones are dropped (and logged).
QUEUE_SIZE = 256
EVENT_HEADER = "X-Rotator-Event"

ReadSecret = Callable[[str, str], SecretValue]

log = get_logger()


@dataclass(frozen=True, slots=True)
class Notification:
    """One event about one target: ids, phase and reason only."""

    event: NotifyEvent
    target: str
    rotation_id: str | None
    phase: str
    new_secret_id: str | None
    old_secret_ids: tuple[str, ...]
    reason: str
    timestamp: datetime
    deadline: datetime | None = None
    #: ``stalled``: who is behind, per named consumer (names, counts and ids only).
    behind: tuple[dict[str, Any], ...] = ()

    def payload(self) -> dict[str, Any]:
        extra = {"behind": list(self.behind)} if self.event == "stalled" else {}
        return extra | {
            "event": self.event,
            "target": self.target,
            "rotation_id": self.rotation_id,
            "phase": self.phase,
            "new_secret_id": self.new_secret_id,
            "old_secret_ids": list(self.old_secret_ids),
            "reason": self.reason,
            "timestamp": self.timestamp.isoformat(),
            "deadline": self.deadline.isoformat() if self.deadline else None,
        }

    def text(self) -> str:
        """One line for a chat channel."""
        old = ", ".join(self.old_secret_ids)
        plural = "s" if len(self.old_secret_ids) > 1 else ""
        if self.event == "stored":
            until = f" until {self.deadline.isoformat()}" if self.deadline else ""
            stays = (
                f"The old secret{plural} {old} {'stay' if plural else 'stays'} live{until}."
                if old
                else "There is no old secret to retire."
            )
            return (
                f"rotator: {self.target}: new secret {self.new_secret_id} is in Vault "
                f"(rotation {self.rotation_id}): roll it out now. {stays}"
            )
        if self.event == "retired":
            retired = f"retired {old}" if old else "there was no old secret to retire"
            return (
                f"rotator: {self.target}: rotation {self.rotation_id} complete: "
                f"{self.new_secret_id} is current; {retired}."
            )
        if self.event == "stalled":
            return (
                f"rotator: {self.target}: rollout of {self.new_secret_id} stalled past its grace; "
                f"the old secret stays live: {self.reason}"
            )
        if self.event == "paused":
            return (
                f"rotator: {self.target} is PAUSED ({self.reason}): nothing is created, stored "
                "or deleted until 'rotator resume'."
            )
        if self.event in {"started", "confirmed", "aborted"}:
            return (
                f"rotator: {self.target}: rotation {self.rotation_id} {self.event}: {self.reason}"
            )
        if self.event == "resumed":
            return f"rotator: {self.target} resumed in {self.phase} ({self.reason})."
        return f"rotator: {self.target} is BLOCKED and needs an operator: {self.reason}"


def notifications(
    before: Record | None,
    after: Record,
    reason: str,
    now: datetime,
    rules: tuple[ConsumerRule, ...] = (),
    *,
    confirmation: str = "consumers",
) -> list[Notification]:
    """The events that the change from ``before`` to ``after`` amounts to (``rules`` and
    ``confirmation``: the target's named consumers and policy, for who holds a stalled
    rollout)."""
    found: list[Notification] = []
    said = truncate(redact_text(reason), 300)

    def add(event: NotifyEvent, **fields: Any) -> None:
        values: dict[str, Any] = {
            "target": after.target,
            "rotation_id": after.rotation_id,
            "phase": after.phase.value,
            "new_secret_id": after.pending_id,
            "old_secret_ids": _old_ids(after),
            "reason": said,
            "timestamp": now,
        }
        found.append(Notification(event, **(values | fields)))

    entry = after.history[-1] if after.history else None
    if entry is not None and before is not None and before.history[-1:] == (entry,):
        entry = None  # told already
    completed: dict[str, Any] = {}
    if entry is not None:
        completed = {
            "rotation_id": entry.rotation_id,
            "new_secret_id": entry.new_id,
            "old_secret_ids": entry.retired_ids,
        }
    # stored_at is set once per rotation, when the material reached the consumers' path.
    if after.stored_at is not None and (before is None or before.stored_at != after.stored_at):
        if after.pending_id is not None:
            add("stored", deadline=None if after.emergency else after.deadline)
        elif entry is not None:  # a first secret: stored and complete in one step
            add("stored", **completed)
    if entry is not None and (entry.outcome != "aborted" or entry.retired_ids):
        add("retired", **completed)
    if after.phase is Phase.BLOCKED and (before is None or before.phase is not Phase.BLOCKED):
        add("blocked", reason=truncate(redact_text(after.blocked_reason or reason), 300))
    if after.stalled_at is not None and (before is None or before.stalled_at != after.stalled_at):
        add("stalled", behind=_behind(after, rules, confirmation))
    _held(before, after, add)
    _audited(before, after, add)
    return found


#: The audit trail's events that notifications carry (opt-in per webhook).
_AUDITED: dict[str, NotifyEvent] = {
    "started": "started",
    "confirmed": "confirmed",
    "aborted": "aborted",
}


def _audited(before: Record | None, after: Record, add: Callable[..., None]) -> None:
    """The write's audit entries a webhook may ask for: who started, confirmed or aborted."""
    for line in audit.new_entries(before, after):
        event = _AUDITED.get(line.event)
        if event is not None:
            told = truncate(redact_text(f"{line.why} (by {line.by})"), 300)
            add(event, rotation_id=line.rotation_id or after.rotation_id, reason=told)


def _behind(
    after: Record, rules: tuple[ConsumerRule, ...], confirmation: str
) -> tuple[dict[str, Any], ...]:
    """Who holds a stalled rollout: names, counts and ids only."""
    return tuple(
        {
            "consumer": c.name,
            "kind": c.kind,
            "switched": c.switched,
            "found": c.found,
            "in_use": list(c.in_use),
        }
        for c in rollout.states(after, rules, confirmation)
        if c.state == "stalled"
    )


def _held(before: Record | None, after: Record, add: Callable[..., None]) -> None:
    """An operator's pause (a new one) or resume (of a pause), with who paused and why."""
    if after.paused is not None and (before is None or before.paused != after.paused):
        add("paused", reason=truncate(redact_text(pause.reason(after.paused)), 300))
    elif before is not None and before.paused is not None and after.paused is None:
        was = f"it was {pause.reason(before.paused)}"
        add("resumed", reason=truncate(redact_text(was), 300))


def _old_ids(record: Record) -> tuple[str, ...]:
    ids = (record.current_id, *record.old_ids)
    return tuple(dict.fromkeys(i for i in ids if i and i != record.pending_id))


@dataclass(frozen=True, slots=True)
class _Delivery:
    index: int
    notification: Notification


class _Retry(Exception):
    """An attempt failed in a way worth repeating (no answer, 429, 5xx)."""


class Notifier:
    """Sends notifications to the configured webhooks from a background thread."""

    def __init__(
        self,
        settings: NotifySettings,
        *,
        environ: Mapping[str, str],
        read_secret: ReadSecret | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.settings = settings
        self._environ = environ
        self._read_secret = read_secret
        self._clock = clock
        self._sleep = sleep
        self._transport = transport
        self._queue: queue.Queue[_Delivery | None] = queue.Queue(maxsize=queue_size)
        # Queued or in delivery: what ``flush`` waits for.
        self._pending = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self._http: httpx.Client | None = None
        # Per webhook: (url, key) once resolved; secrets are read at first use, not at start,
        # so a command that sends nothing never reads them.
        self._resolved: dict[int, tuple[str, SecretValue | None]] = {}

    # --- the listener ---------------------------------------------------------------------------

    def on_record(
        self, before: Record | None, after: Record, reason: str, target: TargetSettings
    ) -> None:
        rules = consumer_rules(target.consumers)
        told = notifications(
            before, after, reason, self._clock(), rules, confirmation=target.confirmation
        )
        for notification in told:
            for index, hook in enumerate(self.settings.webhooks):
                if notification.event in hook.events:
                    self._enqueue(_Delivery(index, notification))

    def on_seen(self, record: Record | None, target: TargetSettings, error: str | None) -> None:
        """What passes read tells nothing new: notifications follow persisted transitions."""

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued was delivered or given up; False if time ran out."""
        wait = self.settings.flush_timeout if timeout is None else timeout
        with self._idle:
            done = self._idle.wait_for(lambda: self._pending == 0, timeout=wait)
            if not done:
                log.warning("notify.flush_timeout", undelivered=self._pending, timeout_s=wait)
            return done

    def close(self, timeout: float | None = None) -> bool:
        """``flush``, then stop the worker; notifications after this are dropped."""
        done = self.flush(timeout)
        thread = self._thread
        if thread is not None and done:
            self._queue.put(None)
            thread.join(timeout=1.0)
        return done

    # --- the worker -----------------------------------------------------------------------------

    def _enqueue(self, delivery: _Delivery) -> None:
        with self._idle:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="notify", daemon=True)
                self._thread.start()
            try:
                self._queue.put_nowait(delivery)
            except queue.Full:
                log.warning(
                    "notify.dropped",
                    reason="queue full",
                    notify_event=delivery.notification.event,
                    target=delivery.notification.target,
                )
                return
            self._pending += 1

    def _work(self) -> None:
        while (delivery := self._queue.get()) is not None:
            try:
                self._deliver(delivery)
            except Exception:  # a bug here must not stop later deliveries
                log.exception("notify.crashed")
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()
        if self._http is not None:
            self._http.close()

    def _deliver(self, delivery: _Delivery) -> None:
        hook = self.settings.webhooks[delivery.index]
        notification = delivery.notification
        where = {
            "notify_event": notification.event,
            "target": notification.target,
            "rotation_id": notification.rotation_id,
            "webhook": hook.label,
        }
        try:
            url, key = self._secrets(delivery.index, hook)
        except ValueError as e:
            log.error("notify.failed", error=str(e), attempts=0, **where)
            return
        if hook.format == "slack":
            body = json.dumps({"text": notification.text()}).encode()
        else:
            body = json.dumps(notification.payload(), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"rotator/{rotator.__version__}",
            EVENT_HEADER: notification.event,
        }
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.settings.attempts),
            wait=lambda state: full_jitter(state.attempt_number, base=0.5, cap=5.0),
            retry=tenacity.retry_if_exception_type(_Retry),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    # Signed afresh for every attempt: a receiver that refuses replays (as
                    # rotator's own hook does) must accept a retry after its own 5xx.
                    sent = dict(headers)
                    if key is not None:
                        sent |= signature_headers(key.reveal(), body, self._clock().timestamp())
                    status = self._post(url, body, sent)
        except (_Retry, ValueError) as e:
            log.error("notify.failed", error=str(e), attempts=self._attempts(retrying), **where)
            return
        log.info("notify.sent", status=status, **where)

    def _post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        if self._http is None:
            self._http = httpx.Client(
                timeout=self.settings.timeout, transport=self._transport, follow_redirects=False
            )
        try:
            response = self._http.post(url, content=body, headers=headers)
        except httpx.HTTPError as e:
            # httpx names the URL in some messages: scrub, and the URL is registered if secret.
            detail = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            raise _Retry(scrub(detail)) from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retry(f"answered {status}")
        if not 200 <= status < 300:
            raise ValueError(f"answered {status}; not retried")
        return status

    @staticmethod
    def _attempts(retrying: tenacity.Retrying) -> int:
        return int(retrying.statistics.get("attempt_number", 1))

    def _secrets(self, index: int, hook: WebhookSettings) -> tuple[str, SecretValue | None]:
        """The webhook's URL and HMAC key; ``ValueError`` says which one is missing."""
        if index not in self._resolved:
            url = str(hook.url)
            if hook.url_env:
                url = self._variable(hook.url_env, "url_env")
                SecretValue(url)  # registers it: logs and errors never show it
            key = None
            if hook.hmac_key_env:
                key = SecretValue(self._variable(hook.hmac_key_env, "hmac_key_env"))
            elif hook.hmac_key_vault:
                if self._read_secret is None:
                    raise ValueError("hmac_key_vault is set but no Vault is at hand")
                path, _, name = hook.hmac_key_vault.partition("#")
                try:
                    key = self._read_secret(path, name or "key")
                except Exception as e:  # noqa: BLE001 - any failure is reported, never raised
                    raise ValueError(f"hmac_key_vault could not be read: {e}") from None
            self._resolved[index] = (url, key)
        return self._resolved[index]

    def _variable(self, name: str, key: str) -> str:
        value = self._environ.get(name, "").strip()
        if not value:
            raise ValueError(f"{key}: the environment variable ${name} is not set")
        return value
