"""Signals for the verbs that read the configuration: SIGINT (Ctrl-C), SIGTERM (a CronJob's pod
deleted) and SIGHUP (the terminal went away).

Python's defaults raise ``KeyboardInterrupt`` on SIGINT and let SIGTERM and SIGHUP kill the
process outright: either way a command stopped mid-pass left its lease in the target's record,
and every other process waited a whole ``lease_ttl`` before taking over.

The first signal sets ``stop`` (passes running in other threads end between two steps, and
Intercom retry waits return at once) and raises ``Interrupted`` in the main thread, which
abandons the call it is blocked in, Vault and Intercom alike. Abandoning an action loses
nothing: each transition was persisted before its action, so the record tells the next pass
where to resume, exactly as after a crash. ``rotator.cli.context.Parts`` then releases the
leases this process holds (``rotator.reconciler.release``, bounded in time because Vault may be
what hangs), and ``rotator.cli.main`` says what was done and exits 128 + the signal's number
(130 for Ctrl-C). Later signals are only acknowledged: the release is already bounded, and
cutting it short is exactly what leaves a lease behind.

A signal that was ignored when the process started (``nohup``, a background job) stays ignored.
``rotator run`` is interruptible while it starts; a SIGHUP never stops it (the daemon logs it).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

#: Seconds a stopping command gives Vault to take its leases back (``Parts`` waits this long).
RELEASE_TIMEOUT = 5.0


class Interrupted(BaseException):
    """A signal asked a command to stop. A ``BaseException``, so that no ``except Exception``
    on its way up takes it for a failure of the step it interrupted."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        #: What was done about it (the leases released or kept), for the operator.
        self.outcome: str | None = None

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a command a signal ended."""
        return 128 + self.signum


@contextmanager
def interruptible(stop: threading.Event, *, hangup: bool = True) -> Iterator[None]:
    """Turn SIGINT, SIGTERM (and SIGHUP, with ``hangup``) into ``Interrupted`` and ``stop``;
    without ``hangup`` a SIGHUP is ignored meanwhile. The previous handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may handle signals (an in-process test, say)
        return
    wanted = [signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if hangup else [])]
    previous: dict[signal.Signals, signal._HANDLER] = {}

    def again(signum: int, _frame: FrameType | None) -> None:
        # os.write: no lock taken, whatever the main thread was in the middle of printing.
        os.write(
            2,
            f"rotator: {signal.Signals(signum).name} while stopping: still releasing this "
            f"process's leases (it gives up within {RELEASE_TIMEOUT:g}s)\n".encode(),
        )

    def first(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        for number in previous:
            signal.signal(number, again)
        raise Interrupted(signum)

    for number in wanted:
        handler = signal.getsignal(number)
        if handler is signal.SIG_IGN:
            continue  # nohup, or a background job: the parent asked for it to be ignored
        previous[number] = handler
        signal.signal(number, first)
    if not hangup:
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
