"""The ``rotator`` process's entry point (the console script and ``python -m rotator``): ``main``,
with the cyclic garbage collector set for a command line.

A command makes a few hundred thousand objects while it imports its libraries and builds its
configuration, nearly all of them alive until it exits (modules, classes, functions, models).
The cyclic collector walks them again and again while they are made, and once more, every one of
them, when the interpreter finalizes; it finds almost nothing either time. Measured with the
libraries of a ``rotate-now`` (bench/RESULTS.md): about 17 ms of collections while importing and
about 45 ms at exit, a fifth of a one-shot command's wall time.

So ``run`` turns the collector off while the process starts (the parser, imported with this
module, is already loaded: a few milliseconds); ``started``, called once the configuration is
read (``rotator.cli.context``) or before a verb that reads none, moves what start-up made to the
generation the collector never walks (``gc.freeze``) and turns it back on, so the command's own
work (a 10,000-target reconcile, the daemon: each makes cyclic garbage) is collected as usual.
At exit everything is frozen once more before the interpreter finalizes: exit still runs the
``atexit`` handlers, flushes the logs and the standard streams, and frees what reference
counting frees; only garbage held in reference cycles is left to the OS, as the process ends.

``main`` alone never touches the collector: tests call it in-process.

``run`` also defers asyncio (``_defer_asyncio``): structlog imports it for logging methods
rotator never calls, about 12 ms of every command's start.
"""

from __future__ import annotations

import gc
import importlib.util
import sys
import threading
import types
from collections.abc import Sequence
from typing import Any

#: Set between ``run`` turning the collector off and ``started`` turning it back on.
_starting = threading.Event()


def run(argv: Sequence[str] | None = None) -> int:
    """``rotator ARGS`` as a process: ``main`` between the two collector settings above."""
    from rotator.cli.main import main

    _defer_asyncio()
    gc.disable()
    _starting.set()
    try:
        return main(argv)
    finally:
        started()  # a command that ended before reading its configuration (usage, --help)
        gc.freeze()  # nothing left for the exit's collection to walk


def started() -> None:
    """Start-up is over: keep what it made out of the collector's walks, and collect again.
    Does nothing unless ``run`` turned the collector off (and only the first time)."""
    if _starting.is_set():
        _starting.clear()
        gc.freeze()
        gc.enable()
        _undefer_asyncio()


def _defer_asyncio() -> None:
    """Bind ``asyncio`` to a stand-in that imports the real module on first use.

    structlog imports asyncio for its ``a*`` logging methods; rotator calls none of them, and
    asyncio is the largest module a one-shot command would import and never use. The stand-in
    has the real module's spec (so ``import asyncio`` takes it as loaded); its first attribute
    read, from ``asyncio.run`` to ``from asyncio import x`` or a submodule's import, replaces it
    in ``sys.modules`` with the real asyncio and answers from that. (``importlib.util.LazyLoader``
    cannot do this: ``import`` itself reads the module's ``__spec__``, which loads it.)"""
    if "asyncio" in sys.modules:
        return
    spec = importlib.util.find_spec("asyncio")
    if spec is None:  # pragma: no cover - part of the standard library
        return
    stand_in = _OnFirstUse(spec.name)
    stand_in.__spec__ = spec
    sys.modules[spec.name] = stand_in


def _undefer_asyncio() -> None:
    """Start-up is over: take the stand-in out of ``sys.modules`` (unloaded), so that whatever
    imports asyncio from now on gets the real module the usual way. The stand-in is not a
    package to the import system: ``import asyncio.subprocess`` through it runs that submodule
    twice (two ``Process`` classes), an attribute set on it is lost, and a thread importing a
    submodule while another first uses it would wait on each other for ever. Start-up's own
    imports are single-threaded and known (tests/test_startup.py); a verb's work, the daemon's
    threads and the libraries they load are not. Modules that bound the stand-in (structlog)
    keep it: it forwards to the real asyncio, loaded when first used."""
    with _loading:
        stand_in = sys.modules.get("asyncio")
        if isinstance(stand_in, _OnFirstUse):
            del sys.modules["asyncio"]


class _OnFirstUse(types.ModuleType):
    """A module that imports the real one, in its place, when an attribute is first read."""

    def __getattr__(self, name: str) -> Any:
        with _loading:  # only the swap: the import system locks the import itself
            if sys.modules.get(self.__name__) is self:
                del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), name)


_loading = threading.Lock()
