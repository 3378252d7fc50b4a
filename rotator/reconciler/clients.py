"""The Intercom clients of every target: one per target, its token read when it is made.

Clients of targets that share an Intercom app share one pacing budget (``[intercom]``,
``rotator.intercom.pacing``): the app's rate limit is the app's, however many targets use it.

A token comes from an environment variable (``token_env``) or a Vault path (``token_vault``),
the whitespace around it stripped. Not finding it, or finding one that no HTTP header can carry,
is a problem of this process (``LocalError``): it fails the process and never
reaches the shared record, where it would stop the healthy daemon too. After Intercom refuses a
token (401/403) the client is dropped, so the next pass reads the token again: one replaced in
Vault is picked up without a restart.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from rotator.config import IntercomSettings, Settings, TargetSettings
from rotator.core.binding import binding_for
from rotator.core.endpoints import resolve_base_url
from rotator.core.record import Binding
from rotator.errors import LocalError, RotatorError, TemporaryError
from rotator.reconciler.ports import KV, ClientFactory, Intercom
from rotator.redaction import SecretValue

if TYPE_CHECKING:
    from rotator.intercom.pacing import Budgets
    from rotator.intercom.sessions import Sessions

Sleep = Callable[[float], object]


def client_factory_with(
    sleep: Sleep,
    observe: Callable[[str, str, float], None] | None = None,
    pacing: IntercomSettings | None = None,
) -> ClientFactory:
    """Real Intercom clients whose retry and pacing waits use ``sleep`` (the daemon's is
    interruptible), which report every request to ``observe`` (metrics), share a budget per app
    under ``pacing`` (its defaults when not given) and one connection pool per base URL."""
    return _Clients(sleep, observe, pacing or IntercomSettings())


class _Clients:
    """The production ``ClientFactory``: owns the budgets and sessions its clients share;
    ``close`` ends the sessions' connections (``IntercomClients.close`` calls it). Both are
    made with the first client: a pass that calls no Intercom (a reconcile with nothing due)
    does not import the HTTP client at all (its start-up has a budget, bench/RESULTS.md)."""

    def __init__(
        self,
        sleep: Sleep,
        observe: Callable[[str, str, float], None] | None,
        pacing: IntercomSettings,
    ) -> None:
        self._sleep = sleep
        self._observe = observe
        self._pacing = pacing
        self._lock = threading.Lock()
        self._shared: tuple[Budgets, Sessions] | None = None

    def _wait(self, seconds: float) -> None:
        self._sleep(seconds)

    def shared(self) -> tuple[Budgets, Sessions]:
        """The budgets and sessions every client of this factory shares (made once)."""
        from rotator.intercom.client import DEFAULT_TIMEOUT
        from rotator.intercom.pacing import Budget, Budgets
        from rotator.intercom.sessions import Sessions

        with self._lock:
            if self._shared is None:
                budgets = Budgets(
                    self._pacing.max_calls_per_minute,
                    self._pacing.rate_limit_scope,
                    factory=lambda per_minute: Budget(per_minute, sleep=self._wait),
                )
                self._shared = budgets, Sessions(DEFAULT_TIMEOUT)
            return self._shared

    def __call__(self, target: TargetSettings, token: SecretValue) -> Intercom:
        from rotator.intercom.client import IntercomClient

        budgets, sessions = self.shared()
        endpoint = resolve_base_url(target.region, target.base_url)
        return IntercomClient(
            token,
            base_url=endpoint,
            version=target.intercom_version,
            sleep=self._wait,
            observe=self._observe,
            budget=budgets.get(endpoint, token.reveal()),
            session=functools.partial(sessions.get, endpoint),
        )

    def close(self) -> None:
        with self._lock:
            shared, self._shared = self._shared, None
        if shared is not None:
            shared[1].close()


class IntercomClients:
    """One client per target, made on first use; threads may share it. Its token (read once,
    from the environment or Vault) and the binding it gives are kept apart from the client."""

    def __init__(
        self,
        settings: Settings,
        kv: KV,
        *,
        environ: Mapping[str, str],
        factory: ClientFactory | None = None,
    ) -> None:
        self._settings = settings
        self._kv = kv
        self._environ = environ
        self._factory = factory or client_factory_with(time.sleep, pacing=settings.intercom)
        self._clients: dict[str, Intercom] = {}
        self._tokens: dict[str, SecretValue] = {}
        self._bindings: dict[str, Binding] = {}
        self._lock = threading.Lock()

    def client(self, target: TargetSettings) -> Intercom:
        with self._lock:
            client = self._clients.get(target.name)
            if client is None:
                client = self._factory(target, self._token_locked(target))
                self._clients[target.name] = client
            return client

    def binding(self, target: TargetSettings) -> Binding:
        """The workspace this process acts for on ``target`` (``rotator.core.binding``), from
        its token alone: no HTTP client is made for it (a pass that calls no Intercom, or a
        preflight, imports none). ``LocalError`` when this process lacks the token."""
        with self._lock:
            self._token_locked(target)
            return self._bindings[target.name]

    def _token_locked(self, target: TargetSettings) -> SecretValue:
        """The token this process keeps for ``target`` (read once, until ``forget_after``)."""
        token = self._tokens.get(target.name)
        if token is None:
            token = self.token(target)
            self._tokens[target.name] = token
            self._bindings[target.name] = binding_for(target.endpoint, token, target.vault_path)
        return token

    def token(self, target: TargetSettings) -> SecretValue:
        """The target's Intercom token, without the whitespace around it; ``LocalError`` when
        this process cannot find it, or it cannot be sent."""
        if target.token_env:
            value = self._environ.get(target.token_env)
            if not value or not value.strip():
                raise LocalError(
                    f"target {target.name}: environment variable {target.token_env} "
                    "(token_env) is not set in this process"
                )
            return _sendable(value.strip(), target, f"${target.token_env} (token_env)")
        if target.token_vault is None:  # pragma: no cover - the config requires one of the two
            raise LocalError(f"target {target.name}: no token_env or token_vault")
        path, _, key = target.token_vault.partition("#")
        source = f"token_vault {path}#{key or 'token'}"
        try:
            value = self._kv.read_value(path, key or "token").reveal()
        except TemporaryError:
            raise
        except RotatorError as e:
            raise LocalError(f"target {target.name}: cannot read its token_vault: {e}") from e
        # `echo $TOKEN | vault kv put … token=-` stores a trailing newline: stripped, as the
        # same value in $INTERCOM_TOKEN is, it is the token; kept, no request could carry it.
        if not value.strip():
            raise LocalError(
                f"target {target.name}: {source} holds only whitespace: store the token there"
            )
        return _sendable(value.strip(), target, source)

    def forget_after(self, target: TargetSettings, error: RotatorError) -> None:
        """After Intercom refused the token (401/403), drop the client: the next pass reads the
        token again."""
        if error.status not in {401, 403}:
            return
        with self._lock:
            client = self._clients.pop(target.name, None)
            self._tokens.pop(target.name, None)
            self._bindings.pop(target.name, None)
        if client is not None:
            client.close()

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
            self._tokens.clear()
            self._bindings.clear()
        for client in clients:
            client.close()
        closing = getattr(self._factory, "close", None)
        if callable(closing):
            closing()  # the connection pools the clients shared


def _sendable(token: str, target: TargetSettings, source: str) -> SecretValue:
    """``token``, unless a character in it cannot travel in an HTTP header (a control character
    such as a newline inside it, or a non-ASCII letter): every request would fail before it
    reached Intercom, which is this process's problem, never a reason to block the record."""
    if any(not " " <= ch <= "~" for ch in token):
        raise LocalError(
            f"target {target.name}: {source} holds a token with a control or non-ASCII "
            "character in it, which an HTTP header cannot carry: store the token alone, as "
            "Intercom gave it"
        )
    return SecretValue(token)
