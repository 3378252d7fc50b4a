"""pytest fixtures for an in-process Intercom emulator.

Enable with ``pytest_plugins = ["rotator.emulator.pytest_plugin"]`` in a ``conftest.py``.

* ``intercom_emulator``: a running emulator on a free loopback port, one per test, accepting
  ``INTERCOM_EMULATOR_TOKEN`` with both scopes. Its ``url`` is the client's ``base_url``; its
  ``store`` shows every secret created, deleted ones included; ``set_faults("429=0.5")`` injects
  faults.
* ``intercom_emulator_middleware``: override it to wrap the WSGI app (e.g. to check every answer
  against the OpenAPI contract, as rotator's own tests do).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rotator.emulator.server import (
    INTERCOM_EMULATOR_TOKEN,
    Emulator,
    RunningEmulator,
    WSGIMiddleware,
)
from rotator.emulator.state import Token

__all__ = ["INTERCOM_EMULATOR_TOKEN", "intercom_emulator", "intercom_emulator_middleware"]


@pytest.fixture
def intercom_emulator_middleware() -> WSGIMiddleware | None:
    """No middleware by default."""
    return None


@pytest.fixture
def intercom_emulator(
    intercom_emulator_middleware: WSGIMiddleware | None,
) -> Iterator[RunningEmulator]:
    """A running emulator on a free port, stopped after the test."""
    emulator = Emulator(tokens=[Token.parse(f"{INTERCOM_EMULATOR_TOKEN}:read,write")])
    with emulator.serve(middleware=intercom_emulator_middleware) as running:
        yield running
