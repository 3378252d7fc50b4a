"""Named fault points, for proving crash safety by crashing the real process (FoundationDB and
etcd test this way). Inert, and one dictionary lookup cheap, unless ``ROTATOR_FAILPOINTS`` is set.

    ROTATOR_FAILPOINTS="intercom.after_create=kill;state.after_write=raise@2;vault.before_store=pause"

Each entry is ``NAME=ACTION[@N]``: on the N-th time (default: the first) the process passes
NAME, it performs ACTION:

    kill    SIGKILL itself: no cleanup, no flush, exactly like a node dying
    raise   raise ``FailpointError`` (an unexpected exception unwinding the stack)
    pause   SIGSTOP itself; the harness sends SIGCONT (a process frozen mid-step, e.g. a GC
            pause or a VM migration, whose lease expires while it sleeps)

Before acting it appends ``NAME ACTION pid`` to ``$ROTATOR_FAILPOINT_MARKERS`` (a file), so the
harness can prove the crash fired. ``$ROTATOR_FAILPOINT_TRACE`` (a file) records every point
passed, which is how the harness enumerates them.

The points (where they are, what a crash there leaves behind):

    state.before_write      a state record is about to be written (check-and-set) to Vault
    state.after_write       ...it was written; the side effect it announces has not happened
    intercom.before_create  the intent (rotation id, exact name) is persisted; POST not sent
    intercom.after_create   POST answered: the material is only in memory (an orphan if lost)
    vault.before_store      material committed in the state; the consumers' path not written
    vault.after_store       the consumers' path written; the state does not know it yet
    intercom.before_delete  the delete is persisted as intent; DELETE not sent
    intercom.after_delete   DELETE answered; the state still lists the secret as to retire
    confirm.before_write    a confirmation is about to be written
    confirm.after_write     ...written; the retirement pass has not run
    daemon.after_listen     ``rotator run``: the HTTP server listens; the scheduler has not started
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "ROTATOR_FAILPOINTS"
MARKERS_ENV = "ROTATOR_FAILPOINT_MARKERS"
TRACE_ENV = "ROTATOR_FAILPOINT_TRACE"
ACTIONS = ("kill", "raise", "pause")

NAMES = (
    "state.before_write",
    "state.after_write",
    "intercom.before_create",
    "intercom.after_create",
    "vault.before_store",
    "vault.after_store",
    "intercom.before_delete",
    "intercom.after_delete",
    "confirm.before_write",
    "confirm.after_write",
    "daemon.after_listen",
)


class FailpointError(RuntimeError):
    """Raised by a failpoint set to ``raise``: an unexpected crash, on purpose."""


def _parse(text: str) -> dict[str, tuple[str, int]]:
    points: dict[str, tuple[str, int]] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, _, rest = item.partition("=")
        action, _, nth = rest.partition("@")
        if name not in NAMES or action not in ACTIONS or (nth and not nth.isdigit()):
            raise ValueError(
                f"bad {ENV} entry {item!r}: NAME=ACTION[@N], NAME one of {', '.join(NAMES)}, "
                f"ACTION one of {', '.join(ACTIONS)}"
            )
        points[name] = (action, int(nth or 1))
    return points


_armed = _parse(os.environ.get(ENV, ""))
_trace = os.environ.get(TRACE_ENV)
_hits: dict[str, int] = {}
_lock = threading.Lock()


def failpoint(name: str) -> None:
    """Pass the point ``name``; does nothing unless armed by ``ROTATOR_FAILPOINTS``."""
    if not _armed and _trace is None:
        return
    with _lock:
        _hits[name] = count = _hits.get(name, 0) + 1
        if _trace:
            _append(_trace, f"{name} {count}\n")
    armed = _armed.get(name)
    if armed is None or armed[1] != count:
        return
    action = armed[0]
    markers = os.environ.get(MARKERS_ENV)
    if markers:
        _append(markers, f"{name} {action} {os.getpid()}\n")
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "pause":
        os.kill(os.getpid(), signal.SIGSTOP)
    else:
        raise FailpointError(f"failpoint {name} fired")


def _append(path: str, line: str) -> None:
    # O_APPEND and one write: lines from concurrent processes do not interleave.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def reset_for_tests(spec: str = "", trace: str | None = None) -> None:
    """Re-arm in-process (tests that do not start a subprocess)."""
    global _armed, _trace  # noqa: PLW0603 - module state is the point of this module
    with _lock:
        _armed = _parse(spec)
        _trace = trace
        _hits.clear()


__all__ = ["ACTIONS", "NAMES", "FailpointError", "failpoint", "reset_for_tests"]
