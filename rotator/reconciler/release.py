"""Letting go of this process's leases when it is told to stop in the middle of a pass.

A lease only keeps other processes from contending (the check-and-set version fences every
write), so dropping it is always safe: the record keeps the step last persisted, and the next
pass of any process resumes from there. Left in place, it would hold every other process off
for a whole ``lease_ttl`` of their own clocks, which during an emergency keeps a leaked secret
live that much longer.

Only records this process wrote a lease into are looked at (``RecordStore.leased``), and only a
lease whose holder is this process is dropped, with check-and-set like every write. It all runs
in a thread the caller waits for at most ``timeout``: Vault may be what is hanging, and a
command that was asked to stop must stop.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from rotator.errors import RotatorError, TemporaryError
from rotator.logs import get_logger
from rotator.vault import CasConflict

if TYPE_CHECKING:
    from rotator.reconciler.reconciler import Reconciler

log = get_logger()

_ATTEMPTS = 3  # lost check-and-sets on one record before giving up on it


@dataclass(frozen=True, slots=True)
class Released:
    """What became of the leases this process held."""

    released: tuple[str, ...] = ()
    #: Targets whose lease is still ours, and why (an error, or no answer in time).
    kept: dict[str, str] = field(default_factory=dict)

    def describe(self, lease_ttl: float) -> str:
        """One sentence for the operator."""
        parts = []
        if self.released:
            parts.append(
                f"lease released on {', '.join(self.released)}; the rotation resumes at the "
                "next pass"
            )
        for name, why in self.kept.items():
            parts.append(
                f"could not release the lease on {name} ({why}): another process takes over "
                f"once it has sat unchanged for lease_ttl ({lease_ttl:g}s)"
            )
        return "; ".join(parts) or ("this process held no lease: nothing to release")


def release_leases(reconciler: Reconciler, *, timeout: float) -> Released:
    """Drop this process's lease from every record it holds one in, within ``timeout``."""
    names = sorted(reconciler.store.leased)
    if not names:
        return Released()
    log.info("lease.releasing", targets=names, timeout_s=timeout)
    done: dict[str, str | None] = {}  # target -> None (released or not ours) or why not

    def work() -> None:
        for name in names:
            try:
                done[name] = None if _release(reconciler, name) else "not ours"
            except RotatorError as e:
                done[name] = str(e)
            except Exception as e:  # noqa: BLE001 - a thread's last word: reported, not raised
                done[name] = f"internal error ({type(e).__name__})"

    worker = threading.Thread(target=work, name="release-leases", daemon=True)
    worker.start()
    worker.join(timeout)
    outcome = dict(done)  # the worker may still be writing to `done`: one consistent copy
    released = tuple(n for n in names if n in outcome and outcome[n] is None)
    kept = {
        n: outcome[n] or "" for n in names if n in outcome and outcome[n] not in {None, "not ours"}
    }
    kept |= {n: f"Vault did not answer within {timeout:g}s" for n in names if n not in outcome}
    result = Released(released, kept)
    if kept:  # other processes wait a whole lease_ttl: operators should see it
        log.warning("lease.release_failed", released=released, kept=kept)
    else:
        log.info("lease.released", released=released)
    return result


def _release(reconciler: Reconciler, name: str) -> bool:
    """True once the record carries no lease of ours (dropped now); False if it never did."""
    store, target = reconciler.store, reconciler.target(name)
    for _ in range(_ATTEMPTS):
        loaded = store.load(name)
        record = loaded.record
        if record is None or record.lease is None or record.lease.holder != reconciler.me:
            return False
        try:
            store.write(
                target,
                record,
                replace(record, lease=None),
                loaded.version,
                reason="interrupted: lease released",
            )
        except CasConflict:
            continue
        return True
    raise TemporaryError("its record kept changing")
