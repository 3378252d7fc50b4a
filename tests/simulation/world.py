"""The simulated world: one Vault KV v2 server, one Intercom workspace, and the ports through which
each simulated rotator process reaches them.

The servers are plain objects with a single clock (``World.now``, seconds): Vault stamps every
version with it (``created_time``) and every answer with it (a ``Date`` to the second), and
Intercom lists the workspace as it was a random moment ago (lists lag behind creates and
deletes). Each process reaches them through ``ProcessKV`` and ``ProcessIntercom``, which implement
the reconciler's ports (``rotator.reconciler.ports``) exactly as the real adapters behave from the
outside, and stop at a ``checkpoint`` before every call so the scheduler (``actors``) can
interleave processes, crash one between any two calls, or lose a call's answer after its effect.

When a run names consumers, ``World.fleet`` holds the instances of each probed one, as they
really are: the ground truth I10 judges (``simulation.fleet`` moves them and probes them).

Nothing here decides anything for rotator: the real reconciler, CLI verbs and core run on top.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rotator.core.record import Record
from rotator.errors import TemporaryError
from rotator.intercom import CreateOutcomeUnknown, IntercomPermissionError, IntercomUnavailable
from rotator.intercom.models import CreatedSecret, DeleteOutcome, Platforms, SecretInfo
from rotator.redaction import SecretValue
from rotator.vault import CasConflict, KVEntry, VaultRequestError, VaultUnavailable
from rotator.vault.clock import SharedClock

EPOCH = 1_790_000_000.0  # 2026-09-21: the server clock starts here
STATE = "rotator/state/web"
CONSUMERS = "intercom/web"


def moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass
class Version:
    data: dict[str, Any] | None
    created: float


@dataclass
class SimSecret:
    id: str
    name: str
    material: str
    born: float
    died: float | None = None

    def live_at(self, instant: float) -> bool:
        return self.born <= instant and (self.died is None or self.died > instant)


@dataclass
class SimInstance:
    """One instance of a probed consumer, as it really is (what I10 judges, not what it says).

    It only ever loads what the consumers' path holds (when it starts, and when it reloads):
    ``stuck`` never reloads; ``wrong-fp`` reloads the id but not the key (it signs with another
    secret's material); ``down``, ``slow`` and ``garbage`` answer probes with an error and
    otherwise work as ``ok`` does."""

    address: str
    #: The id it answers, and the material it signs with (None until it first loads the path).
    holds: str | None = None
    material: str | None = None
    mode: str = "ok"
    #: Running: its URL answers, and DNS lists its address.
    present: bool = True


@dataclass
class Fault:
    """One armed fault: the next call of ``kind`` fails; ``applied`` says whether its effect
    happened first (an answer lost on the way back) or not (a request lost on the way)."""

    kind: str
    applied: bool
    permanent: bool = False
    #: A list answer that shows nothing at all (an eventually consistent list can).
    empty: bool = False


@dataclass
class World:
    """Both servers, the shared clock, the faults armed, and what the invariants need to know."""

    rng: random.Random
    now: float = EPOCH
    versions: dict[str, list[Version]] = field(default_factory=dict)
    secrets: dict[str, SimSecret] = field(default_factory=dict)
    next_id: int = 100
    lag: float = 0.0
    faults: list[Fault] = field(default_factory=list)
    #: ``kind[:variant]`` -> the share of such calls a fault strikes (variants: refused, empty).
    weather: dict[str, float] = field(default_factory=dict)
    #: Calls (by the start of their label) at which the next process to reach one dies.
    crash_at: list[str] = field(default_factory=list)
    #: Adoptions started so far (an emergency asked across one is ambiguous: I9 leaves it).
    adoptions: int = 0
    fresh_count: int = 0
    #: Told of every state write and consumers' path write, and of every DELETE that Intercom
    #: applied (``invariants.Watch``).
    on_state: list[Callable[[Record | None, Record, str], None]] = field(default_factory=list)
    on_consumers: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    on_delete: list[Callable[[str], None]] = field(default_factory=list)
    #: Probed consumer -> its instances (``simulation.fleet``; empty unless consumers are named).
    fleet: dict[str, list[SimInstance]] = field(default_factory=dict)

    def tick(self, seconds: float = 0.001) -> None:
        self.now += seconds

    def fresh(self) -> str:
        self.fresh_count += 1
        return f"{self.rng.getrandbits(40):010x}{self.fresh_count:014x}"

    def take_fault(self, kind: str, path: str | None = None) -> Fault | None:
        """The fault this call of ``kind`` meets: one armed for it (or for it on ``path``:
        ``vault.write@intercom/web`` waits for the consumers' store, however many state writes
        come first), or one the weather draws."""
        for fault in self.faults:
            if fault.kind in {kind, f"{kind}@{path}"}:
                self.faults.remove(fault)
                return fault
        for what, rate in self.weather.items():
            name, _, variant = what.partition(":")
            if name == kind and rate and self.rng.random() < rate:
                applied = self.rng.random() < 0.5
                return Fault(
                    kind, applied, permanent=variant == "refused", empty=variant == "empty"
                )
        return None

    # --- Vault KV v2 ---------------------------------------------------------------------------

    def latest(self, path: str) -> tuple[Version | None, int]:
        versions = self.versions.get(path, [])
        return (versions[-1] if versions else None), len(versions)

    def kv_read(self, path: str, version: int | None = None) -> KVEntry:
        latest, number = self.latest(path)
        if version is not None and 0 < version < number:
            latest, number = self.versions[path][version - 1], version
        if latest is None:
            return KVEntry(None, 0)
        return KVEntry(_copy(latest.data), number, moment(latest.created))

    def kv_write(
        self, path: str, data: Mapping[str, Any], cas: int, writer: str = ""
    ) -> tuple[int, float]:
        """Write with check-and-set; ``writer`` names the command that wrote (for the watch)."""
        _, number = self.latest(path)
        if number != cas:
            raise CasConflict(f"{path} is at version {number}, not {cas}", path=path)
        self.tick()
        before = self.state_record() if path == STATE else None
        self.versions.setdefault(path, []).append(Version(_copy(dict(data)), self.now))
        if path == STATE:
            after = Record.from_storage(data)
            for listener in self.on_state:
                listener(before, after, writer)
        elif path == CONSUMERS:
            for listener in self.on_consumers:
                listener(dict(data))
        return number + 1, self.now

    def state_record(self) -> Record | None:
        latest, _ = self.latest(STATE)
        if latest is None or latest.data is None:
            return None
        return Record.from_storage(latest.data)

    def consumers(self) -> dict[str, Any] | None:
        latest, _ = self.latest(CONSUMERS)
        return None if latest is None else latest.data

    # --- Intercom --------------------------------------------------------------------------------

    def create(self, name: str) -> SimSecret:
        self.tick()
        material = base64.urlsafe_b64encode(self.rng.randbytes(32)).rstrip(b"=").decode()
        secret = SimSecret(str(self.next_id), name, material, self.now)
        self.next_id += 1
        self.secrets[secret.id] = secret
        return secret

    def delete(self, secret_id: str) -> bool:
        """Soft delete; False when there was no such live secret (Intercom's 404)."""
        secret = self.secrets.get(secret_id)
        if secret is None or secret.died is not None:
            return False
        for listener in self.on_delete:
            listener(secret_id)
        self.tick()
        secret.died = self.now
        return True

    def listing(self) -> list[SimSecret]:
        """What one list answer shows: the workspace as it was up to ``lag`` seconds ago."""
        instant = self.now - self.rng.uniform(0, self.lag) if self.lag else self.now
        return [s for s in self.secrets.values() if s.live_at(instant)]

    def live(self, secret_id: str) -> bool:
        secret = self.secrets.get(secret_id)
        return secret is not None and secret.died is None


class ProcessKV:
    """One process's Vault adapter, as it behaves from the outside (``rotator.reconciler.ports``):
    check-and-set, answers lost after the write applied, Vault's time told by every answer."""

    def __init__(
        self,
        world: World,
        checkpoint: Callable[[str], None],
        monotonic: Callable[[], float],
        command: Callable[[], str] = str,
    ) -> None:
        self._world = world
        self._checkpoint = checkpoint
        self._monotonic = monotonic
        self._command = command
        self.clock = SharedClock(monotonic)

    def _answer(self, created: float | None = None) -> None:
        """Every answer carries a Date (whole seconds); KV answers a version's created_time."""
        received = self._monotonic()
        self.clock.observe(moment(float(int(self._world.now))), received)
        if created is not None:
            self.clock.observe(moment(created), received)

    def read(self, path: str, version: int | None = None) -> KVEntry:
        self._checkpoint(f"vault read {path}")
        fault = self._world.take_fault("vault.read")
        if fault is not None:
            raise VaultUnavailable(f"simulated: Vault did not answer the read of {path}")
        entry = self._world.kv_read(path, version)
        self._answer(entry.created_time.timestamp() if entry.created_time else None)
        return entry

    def write(self, path: str, data: Mapping[str, Any], *, cas: int) -> int:
        self._checkpoint(f"vault write {path} cas={cas}")
        fault = self._world.take_fault("vault.write", path)
        if fault is not None and not fault.applied:
            raise VaultUnavailable(f"simulated: the write to {path} never reached Vault")
        version, created = self._world.kv_write(path, data, cas, self._command())
        if fault is not None:
            # What the real adapter raises when the answer and its read-back were both lost.
            raise VaultUnavailable(f"simulated: the write to {path} may or may not have happened")
        self._answer(created)
        return version

    def require_cas(self, path: str) -> None:
        self._checkpoint(f"vault require_cas {path}")
        self._answer()

    def read_value(self, path: str, key: str) -> SecretValue:
        raise VaultRequestError(f"simulated: nothing at {path}#{key}")

    def capabilities(self, paths: list[str]) -> dict[str, list[str]]:
        return {p: ["root"] for p in paths}

    def healthy(self) -> tuple[bool, str]:
        return True, "ok"

    def close(self) -> None:
        pass


class ProcessIntercom:
    """One process's Intercom client, as it behaves from the outside: typed answers, a lost
    create answer is ``CreateOutcomeUnknown`` (never retried), errors are rotator's own."""

    def __init__(self, world: World, checkpoint: Callable[[str], None]) -> None:
        self._world = world
        self._checkpoint = checkpoint

    def _fault(self, kind: str) -> Fault | None:
        fault = self._world.take_fault(kind)
        if fault is not None and fault.permanent:
            raise IntercomPermissionError(
                f"simulated: Intercom refused the {kind} (403)", scope="write_secure_mode_secret"
            )
        return fault

    def list_secrets(self) -> list[SecretInfo]:
        self._checkpoint("intercom list")
        fault = self._fault("intercom.list")
        if fault is not None and fault.empty:
            return []  # an eventually consistent list may answer with nothing at all
        if fault is not None:
            raise IntercomUnavailable("simulated: Intercom did not answer the list (503)")
        return [
            SecretInfo(s.id, s.name, True, False, False, int(s.born)) for s in self._world.listing()
        ]

    def create_secret(self, name: str, platforms: Platforms) -> CreatedSecret:
        del platforms
        self._checkpoint(f"intercom create {name}")
        fault = self._fault("intercom.create")
        if fault is not None and not fault.applied:
            raise IntercomUnavailable("simulated: the create never reached Intercom")
        secret = self._world.create(name)
        if fault is not None:
            raise CreateOutcomeUnknown("simulated: the create's answer was lost")
        info = SecretInfo(secret.id, name, True, False, False, int(secret.born))
        return CreatedSecret(info=info, secret=SecretValue(secret.material))

    def delete_secret(self, secret_id: str) -> DeleteOutcome:
        self._checkpoint(f"intercom delete {secret_id}")
        fault = self._fault("intercom.delete")
        if fault is not None and not fault.applied:
            raise IntercomUnavailable("simulated: the delete never reached Intercom")
        existed = self._world.delete(secret_id)
        if fault is not None:
            raise IntercomUnavailable("simulated: the delete's answer was lost")
        return DeleteOutcome.DELETED if existed else DeleteOutcome.ALREADY_DELETED

    def close(self) -> None:
        pass


def _copy(data: dict[str, Any] | None) -> dict[str, Any] | None:
    import json

    return None if data is None else json.loads(json.dumps(data))


__all__ = ["TemporaryError"]
