"""The narrow ports through which a reconcile pass touches the world.

Production plugs in the Vault adapter (``rotator.vault.Vault``) and Intercom clients
(``rotator.intercom.IntercomClient``); the simulation in ``tests/simulation`` plugs in an
in-memory Vault KV v2 (check-and-set, one server clock, answers lost after the write applied)
and an Intercom whose lists lag, so that it drives the very pass that runs in production.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from rotator.config import TargetSettings
from rotator.core.observation import ConsumerProbe
from rotator.core.record import Record
from rotator.redaction import SecretValue

if TYPE_CHECKING:
    from rotator.intercom.models import CreatedSecret, DeleteOutcome, Platforms, SecretInfo
    from rotator.vault import KVEntry


class Clock(Protocol):
    """The clock every process shares (Vault's): ``now()`` never runs ahead of it."""

    def now(self) -> datetime: ...


class KV(Protocol):
    """Vault KV v2 on one mount: versions, and writes fenced by check-and-set.

    ``write`` raises ``rotator.vault.CasConflict`` when ``cas`` is not the latest version, and a
    ``TemporaryError`` when its outcome is unknown (re-read before deciding again).
    """

    @property
    def clock(self) -> Clock: ...

    def read(self, path: str, version: int | None = None) -> KVEntry: ...
    def write(self, path: str, data: Mapping[str, Any], *, cas: int) -> int: ...
    def require_cas(self, path: str) -> None: ...
    def read_value(self, path: str, key: str) -> SecretValue: ...


class Intercom(Protocol):
    """One workspace's identity-verification secrets. Raises ``rotator.errors`` exceptions only;
    a create whose answer was lost raises ``CreateOutcomeUnknown`` and is never repeated."""

    def list_secrets(self) -> Sequence[SecretInfo]: ...
    def create_secret(self, name: str, platforms: Platforms) -> CreatedSecret: ...
    def delete_secret(self, secret_id: str) -> DeleteOutcome: ...
    def close(self) -> None: ...


ClientFactory = Callable[[TargetSettings, SecretValue], Intercom]


class Prober(Protocol):
    """Asks every instance of a target's probed consumers which secret it signs with
    (``rotator.probe.HttpProber``): one round, bounded by ``[probes] deadline``, one
    ``ConsumerProbe`` per probed consumer. Never raises for what an instance answers."""

    def probe(self, target: TargetSettings) -> tuple[ConsumerProbe, ...]: ...


class RecordListener(Protocol):
    """Told of every record persisted (metrics, notifications), and of what each pass saw.

    Called synchronously; must be quick and must not raise (anything raised is logged and
    dropped). ``before`` is None for a target's first record. ``on_seen`` hears each record a
    pass read, whoever wrote it, or the error that kept the pass from reading or deciding.
    """

    def on_record(
        self, before: Record | None, after: Record, reason: str, target: TargetSettings
    ) -> None: ...

    def on_seen(self, record: Record | None, target: TargetSettings, error: str | None) -> None: ...
