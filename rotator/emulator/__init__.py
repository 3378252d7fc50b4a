"""A local, stateful Intercom for rotator's tests and yours (like moto for AWS).

    from rotator.emulator import Emulator, Token
    with Emulator(tokens=[Token.parse("t:read,write")]).serve() as running:
        ...  # point a client at running.url

Or from the command line: ``rotator emulate-intercom --port 4010``. For pytest, enable the plugin
with ``pytest_plugins = ["rotator.emulator.pytest_plugin"]`` and use the ``intercom_emulator``
fixture.

Names are loaded on first use: ``rotator --help`` reads the fault syntax from this package and
must not pay for starting an HTTP server stack it will not run.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rotator.emulator.faults import Faults, FaultSpec, FaultSpecError
    from rotator.emulator.limits import RateLimit
    from rotator.emulator.server import DEFAULT_TOKEN, Emulator, RunningEmulator
    from rotator.emulator.state import Store, StoredSecret, Token, messenger_jwt, user_hash

_WHERE = {
    "Faults": "faults",
    "FaultSpec": "faults",
    "FaultSpecError": "faults",
    "RateLimit": "limits",
    "DEFAULT_TOKEN": "server",
    "Emulator": "server",
    "RunningEmulator": "server",
    "StoredSecret": "state",
    "Store": "state",
    "Token": "state",
    "user_hash": "state",
    "messenger_jwt": "state",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"rotator.emulator.{module}"), name)


__all__ = [
    "DEFAULT_TOKEN",
    "Emulator",
    "FaultSpec",
    "FaultSpecError",
    "Faults",
    "RateLimit",
    "RunningEmulator",
    "Store",
    "StoredSecret",
    "Token",
    "messenger_jwt",
    "user_hash",
]
