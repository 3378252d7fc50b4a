"""A local, stateful Intercom for rotator's tests and yours (like moto for AWS).

    from rotator.emulator import Emulator, Token
    with Emulator(tokens=[Token.parse("t:read,write")]).serve() as running:
        ...  # point a client at running.url

Or from the command line: ``rotator emulate-intercom --port 4010``. For pytest, enable the plugin
with ``pytest_plugins = ["rotator.emulator.pytest_plugin"]`` and use the ``intercom_emulator``
fixture.
"""

from rotator.emulator.faults import Faults, FaultSpec, FaultSpecError
from rotator.emulator.server import DEFAULT_TOKEN, Emulator, RunningEmulator
from rotator.emulator.state import Store, StoredSecret, Token, user_hash

__all__ = [
    "DEFAULT_TOKEN",
    "Emulator",
    "FaultSpec",
    "FaultSpecError",
    "Faults",
    "RunningEmulator",
    "Store",
    "StoredSecret",
    "Token",
    "user_hash",
]
