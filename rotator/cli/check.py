"""``rotator check-config``: the configuration, and what this process needs to act on it.

``missing_environment`` lists each variable or file the configuration names that this process
does not have (or whose hook credential is too weak to use), by TOML key; ``check-config`` prints
it, and every verb that acts refuses to start without what it needs (``require_environment``)
rather than fail half-way. Warnings (``rotator.config.advice``: accepted, but probably not
meant) are printed too, and leave the exit code at 0.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from rotator.cli.context import EXIT_OK, EXIT_USAGE, Context
from rotator.config import ConfigError, Settings, config_path, config_warnings, load_settings
from rotator.config.bounds import credential_problem


def check_config(ctx: Context) -> int:
    path = config_path(ctx.config, dict(ctx.environ))
    settings = load_settings(path)
    problems = missing_environment(settings, ctx.environ)
    print(f"{path}: {len(settings.targets)} target(s)")
    for t in settings.targets:
        source = f"${t.token_env}" if t.token_env else f"vault:{t.token_vault}"
        print(
            f"  {t.name}: {t.endpoint} secret {t.secret_name!r} -> "
            f"{settings.vault.mount}/{t.vault_path}; {t.schedule.describe()}, "
            f"grace {t.grace_period:g}s, confirmation {t.confirmation}, token {source}"
        )
    warnings = config_warnings(settings)
    if warnings:
        print(f"{len(warnings)} warning(s):", file=sys.stderr)
        for w in warnings:
            print(f"  - {w}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return EXIT_USAGE
    print("configuration OK")
    return EXIT_OK


def require_environment(
    settings: Settings, environ: Mapping[str, str], *, server: bool = False
) -> None:
    """Refuse to start (``ConfigError``, exit 2) without what the configuration names."""
    problems = missing_environment(settings, environ, server=server)
    if problems:
        raise ConfigError("environment", problems)


def missing_environment(
    settings: Settings, environ: Mapping[str, str], *, server: bool = True
) -> list[str]:
    problems = _missing_for_vault(settings, environ)
    for i, t in enumerate(settings.targets):
        if t.token_env and not (environ.get(t.token_env) or "").strip():
            problems.append(f"targets[{i}] ({t.name}).token_env: ${t.token_env} is not set")
    if server:
        for key, what in (("hook_token_env", "hook token"), ("hook_hmac_key_env", "HMAC key")):
            name = getattr(settings.server, key)
            value = environ.get(name) if name else None
            if name and not value:
                problems.append(f"server.{key}: ${name} is not set")
            elif value and (problem := credential_problem(value, what)):
                problems.append(f"server.{key}: ${name}: {problem}")
    return problems + _missing_for_notify(settings, environ)


def _missing_for_vault(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    problems = []
    auth = settings.vault.auth
    if auth.method == "token" and not auth.token_file and not environ.get(auth.token_env):
        problems.append(f"vault.auth.token_env: ${auth.token_env} is not set")
    for name in (auth.role_id_env, auth.secret_id_env):
        if auth.method == "approle" and name and not environ.get(name):
            problems.append(f"vault.auth: ${name} is not set")
    for path in (auth.token_file, auth.role_id_file, auth.secret_id_file):
        if path and not Path(path).is_file():
            problems.append(f"vault.auth: file {path} does not exist")
    return problems


def _missing_for_notify(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    problems = []
    for i, hook in enumerate(settings.notify.webhooks):
        for key in ("url_env", "hmac_key_env"):
            name = getattr(hook, key)
            if name and not environ.get(name):
                problems.append(f"notify.webhooks[{i}].{key}: ${name} is not set")
    return problems
