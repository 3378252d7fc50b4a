"""``rotator check-config``: the configuration, and what this process needs to act on it.

``missing_environment`` lists each variable or file the configuration names that this process
does not have (a variable holding only whitespace is as good as unset), or whose hook
credential is too weak to use, by TOML key; ``check-config`` prints it, and every verb that acts
refuses to start without what it needs (``preflight``, exit 2) rather than fail half-way, after
it wrote to a record other processes share. Warnings (``rotator.config.advice``: accepted, but
probably not meant) are printed too, and leave the exit code at 0.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rotator.cli.context import EXIT_OK, EXIT_USAGE, Context, Parts
from rotator.cli.process import started
from rotator.config import (
    ConfigError,
    Settings,
    TargetSettings,
    config_path,
    config_warnings,
    load_settings,
)
from rotator.config.bounds import credential_problem
from rotator.durations import format_duration
from rotator.errors import LocalError, TemporaryError
from rotator.redaction import hide_userinfo


def check_config(ctx: Context) -> int:
    path = config_path(ctx.config, dict(ctx.environ))
    settings = load_settings(path)
    started()  # start-up is over (rotator.cli.process): the checks below run collected
    problems = missing_environment(settings, ctx.environ)
    print(f"{path}: {len(settings.targets)} target(s)")
    for t in settings.targets:
        source = f"${t.token_env}" if t.token_env else f"vault:{t.token_vault}"
        print(
            f"  {t.name}: {hide_userinfo(t.endpoint)} secret {t.secret_name!r} -> "
            f"{settings.vault.mount}/{t.vault_path}; {t.schedule.describe()}, "
            f"grace {format_duration(t.grace_period)}, confirmation {t.confirmation}, "
            f"token {source}"
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


@contextmanager
def acting(
    ctx: Context,
    settings: Settings,
    names: Sequence[str] | None = None,
    *,
    server: bool = False,
    **parts: Any,
) -> Iterator[Parts]:
    """The parts of a verb that acts on ``names`` (every target when None), once
    ``preflight`` found all it needs."""
    targets = settings.targets if names is None else [settings.target(n) for n in names]
    with ctx.open(settings, **parts) as opened:
        preflight(opened, ctx.environ, targets, server=server)
        yield opened


@contextmanager
def reading(ctx: Context, settings: Settings) -> Iterator[Parts]:
    """The parts of a verb that reads (``status``, ``doctor``), once the Vault credentials the
    configuration names are there: without them it is a configuration error (exit 2), as for
    the verbs that act, not a Vault failure (exit 1). What Intercom needs is not required: a
    finding or a status line says what is missing there."""
    problems = _missing_for_vault(settings, ctx.environ)
    if problems:
        raise ConfigError("environment", problems)
    with ctx.open(settings) as opened:
        yield opened


def preflight(
    parts: Parts,
    environ: Mapping[str, str],
    targets: Sequence[TargetSettings],
    *,
    server: bool = False,
) -> None:
    """Refuse to act (``ConfigError``, exit 2) without what the configuration names for
    ``targets``: its variables and files, then each target's Intercom token from Vault. A Vault
    that does not answer fails a one-shot command later (exit 1); the daemon (``server``)
    starts anyway and is not ready until Vault answers."""
    problems = missing_environment(parts.settings, environ, server=server, targets=targets)
    if problems:
        raise ConfigError("environment", problems)
    for target in targets:
        try:
            parts.clients.binding(target)  # reads a token_vault once; it is kept
        except LocalError as e:
            problems.append(str(e))
        except TemporaryError:
            if not server:
                raise
    if problems:
        raise ConfigError("environment", problems)


def missing_environment(
    settings: Settings,
    environ: Mapping[str, str],
    *,
    server: bool = True,
    targets: Sequence[TargetSettings] | None = None,
) -> list[str]:
    problems = _missing_for_vault(settings, environ)
    # By name: comparing whole settings models, target by target, was quadratic (minutes at
    # 10,000 targets).
    chosen = None if targets is None else {t.name for t in targets}
    for i, t in enumerate(settings.targets):
        if chosen is not None and t.name not in chosen:
            continue
        if t.token_env and not _is_set(environ, t.token_env):
            problems.append(f"targets[{i}] ({t.name}).token_env: {_unset(environ, t.token_env)}")
    if server:
        for key, what in (("hook_token_env", "hook token"), ("hook_hmac_key_env", "HMAC key")):
            name = getattr(settings.server, key)
            value = environ.get(name) if name else None
            if name and not value:  # a blank one is refused below, by the credential rules
                problems.append(f"server.{key}: ${name} is not set")
            elif value and (problem := credential_problem(value, what)):
                problems.append(f"server.{key}: ${name}: {problem}")
    return problems + _missing_for_notify(settings, environ)


def _missing_for_vault(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    problems = []
    auth = settings.vault.auth
    if auth.method == "token" and not auth.token_file and not _is_set(environ, auth.token_env):
        problems.append(f"vault.auth.token_env: {_unset(environ, auth.token_env)}")
    for name in (auth.role_id_env, auth.secret_id_env):
        if auth.method == "approle" and name and not _is_set(environ, name):
            problems.append(f"vault.auth: {_unset(environ, name)}")
    for path in (auth.token_file, auth.role_id_file, auth.secret_id_file):
        if path and not Path(path).is_file():
            problems.append(f"vault.auth: file {path} does not exist")
    return problems


def _missing_for_notify(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    problems = []
    for i, hook in enumerate(settings.notify.webhooks):
        for key in ("url_env", "hmac_key_env"):
            name = getattr(hook, key)
            if name and not _is_set(environ, name):
                problems.append(f"notify.webhooks[{i}].{key}: {_unset(environ, name)}")
    return problems


def _is_set(environ: Mapping[str, str], name: str) -> bool:
    """Whether ``$name`` holds a value: blank (``VAULT_TOKEN=" "``) is unset, as the adapters,
    which strip what they read, would find it."""
    return bool(environ.get(name, "").strip())


def _unset(environ: Mapping[str, str], name: str) -> str:
    if environ.get(name):
        return f"${name} holds only whitespace"
    return f"${name} is not set"
