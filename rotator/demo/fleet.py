"""The demo's named consumers, and the lines that show a rollout advance consumer by consumer.

Two probed consumers are real processes (``rotator.demo.consumer``: each reads the secret from
Vault, reloads it a few seconds late, signs a ``user_hash`` and a Messenger JWT and has the
emulator verify both, and answers rotator's probe); ``billing`` is a thread in the demo that
confirms through the hook with its name. ``RolloutPrinter`` listens to the records the daemon
writes and says who moved: the old secret goes only once all three are on the new one.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rotator.config import TargetSettings
from rotator.core.record import Record
from rotator.demo.consumer_process import ConsumerProcess
from rotator.demo.openbao import OpenBaoDevServer

#: The probed consumers: (name, seconds each takes to reload a new secret).
PROBED = (("web-backend", 1.0), ("mobile-api", 9.0))
#: The hook consumer, and how long after its reload it confirms.
HOOK_CONSUMER, HOOK_DELAY = "billing", 5.0


@dataclass
class Checks:
    """Signatures verified at the emulator, per signing method, and how many failed."""

    by_method: dict[str, list[int]] = field(
        default_factory=lambda: {"user_hash": [0, 0], "jwt": [0, 0]}
    )

    def add(self, method: str, ok: int, failed: int) -> None:
        counts = self.by_method.setdefault(method, [0, 0])
        counts[0] += ok
        counts[1] += failed

    @property
    def total(self) -> int:
        return sum(ok + failed for ok, failed in self.by_method.values())

    @property
    def failures(self) -> int:
        return sum(failed for _, failed in self.by_method.values())

    def describe(self) -> str:
        return ", ".join(
            f"{method} {ok + failed} ({failed} failed)"
            for method, (ok, failed) in self.by_method.items()
        )


@contextlib.contextmanager
def probed_consumers(
    bao: OpenBaoDevServer, intercom_url: str, path: str
) -> Iterator[list[tuple[str, ConsumerProcess]]]:
    """The probed consumers, listening on loopback; stopped (SIGTERM) on the way out."""
    started: list[tuple[str, ConsumerProcess]] = []
    try:
        for name, delay in PROBED:
            process = ConsumerProcess(
                vault_addr=bao.address,
                vault_token=bao.root_token,
                path=path,
                emulator_url=intercom_url,
                reload_delay=delay,
                control=True,  # the summary reads each one's signature counts
            )
            started.append((name, process.start()))
        yield started
    finally:
        for _, process in started:
            process.stop()


def collect_checks(consumers: list[tuple[str, ConsumerProcess]], checks: Checks) -> None:
    """Add each probed consumer's verified signatures to ``checks`` (while they still run)."""
    for _, process in consumers:
        try:
            counts = process.state()["checks"]
        except Exception:  # noqa: BLE001 - a consumer that died: its counts are lost, say so
            checks.add("unreported", 0, 0)
            continue
        for method, outcome in counts.items():
            checks.add(method, int(outcome.get("ok", 0)), int(outcome.get("failed", 0)))


class RolloutPrinter:
    """A ``RecordListener`` that prints a line each time a named consumer confirms the new
    secret, and when the old one is retired."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def on_record(
        self, before: Record | None, after: Record, reason: str, target: TargetSettings
    ) -> None:
        del reason
        with self._lock:
            was = {p.name: p for p in before.rollout} if before is not None else {}
            for entry in after.rollout:
                old = was.get(entry.name)
                if entry.confirmed_at is None or (old is not None and old.confirmed_at):
                    continue
                how = (
                    f"switched ({entry.switched}/{entry.found} instance(s) on it, "
                    f"{entry.streak} stable probe round(s))"
                    if entry.confirmed_by == "probes"
                    else f"confirmed ({entry.confirmed_by})"
                )
                say(f"rollout of {entry.secret_id}: {entry.name} {how}")
            if before is not None and before.stored_at != after.stored_at and after.pending_id:
                waiting = ", ".join(c.name for c in target.consumers)
                say(f"stored {after.pending_id} in Vault; waiting for {waiting}")
            if after.history and (before is None or before.history[-1:] != after.history[-1:]):
                done = after.history[-1]
                if done.retired_ids:
                    say(
                        f"retired {', '.join(done.retired_ids)}: every consumer is on "
                        f"{done.new_id} ({done.confirmed_by})"
                    )

    def on_seen(self, record: Record | None, target: TargetSettings, error: str | None) -> None:
        """Only persisted transitions are printed."""


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def hook_body(secret_id: str) -> dict[str, Any]:
    return {"secret_id": secret_id, "consumer": HOOK_CONSUMER}
