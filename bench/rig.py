"""What bench/run.py and bench/scale.py both hand the ``rotator`` they start: the command, its
environment, and the TOML of its configuration (one ``[[targets]]`` table per target).

Each benchmark keeps its own servers and counters; only the way it talks to rotator is shared,
so that both measure rotator started and configured the same way.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

#: The user install's CLI (``scripts/bench`` runs from .venv-bench, outside the checkout).
ROTATOR = [sys.executable, "-m", "rotator"]


def rotator_env(tokens: Mapping[str, str], vault_token: str, config: str) -> dict[str, str]:
    """The environment of a rotator process: the Intercom tokens its targets name, the Vault
    token, the configuration; warnings only (a pass's info lines are noise here)."""
    return {
        **os.environ,
        **tokens,
        "VAULT_TOKEN": vault_token,
        "ROTATOR_CONFIG": config,
        "ROTATOR_LOG_LEVEL": "warning",
    }


def head(vault: str, state_path: str, *, listen: int, concurrency: int) -> list[str]:
    """The configuration's sections before its targets."""
    return [
        "[vault]",
        f'address = "{vault}"',
        f'state_path = "{state_path}"',
        "[server]",
        f'listen = "127.0.0.1:{listen}"',
        "[daemon]",
        f"concurrency = {concurrency}",
        'reconcile_interval = "60s"',
    ]


def target(
    name: str, url: str, token_env: str, vault_path: str, *, number: int, schedule: str, grace: str
) -> list[str]:
    """One ``[[targets]]`` table."""
    return [
        "[[targets]]",
        f'name = "{name}"',
        f'base_url = "{url}"',
        f'token_env = "{token_env}"',
        f'secret_name = "Bench {number}"',
        f'vault_path = "{vault_path}"',
        f'schedule = "{schedule}"',
        f'grace_period = "{grace}"',
    ]
