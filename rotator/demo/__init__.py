"""``rotator demo``: the real daemon rotating against a local OpenBao dev server and the
Intercom emulator, with consumers that sign and confirm throughout.

Names are loaded on first use: ``python -m rotator.demo.consumer``, started once per consumer
instance, must not pay for importing the daemon it does not run.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rotator.demo.scenario import DemoSetupError, run_demo


def __getattr__(name: str) -> Any:
    if name not in {"DemoSetupError", "run_demo"}:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module("rotator.demo.scenario"), name)


__all__ = ["DemoSetupError", "run_demo"]
