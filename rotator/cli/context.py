"""The wiring behind every verb: the configuration, and the parts made from it.

``Context`` knows where the configuration is and the process environment; ``Context.open``
makes the parts a verb needs (the Vault adapter, the record store, the Intercom clients, the
reconciler, and a notifier when ``[notify]`` lists webhooks), and ``Parts.close`` gives queued
notifications their bounded time and closes the connections. Exit codes and ``UsageError`` live
live in ``rotator.cli.exits``, re-exported here for the verb modules.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Self, runtime_checkable

from rotator.cli.exits import EXIT_NEEDS_OPERATOR, EXIT_OK, EXIT_USAGE, UsageError
from rotator.cli.interrupt import RELEASE_TIMEOUT, Interrupted
from rotator.cli.process import started
from rotator.config import Settings, config_path, config_warnings, load_settings
from rotator.reconciler import (
    IntercomClients,
    Reconciler,
    RecordListener,
    RecordStore,
    Sleep,
    client_factory_with,
)
from rotator.reconciler.release import release_leases

if TYPE_CHECKING:
    from rotator.vault import Vault

__all__ = ["EXIT_NEEDS_OPERATOR", "EXIT_OK", "EXIT_USAGE", "Context", "Parts", "UsageError"]


class Observers(Protocol):
    """What the daemon's metrics hear from the adapters (``rotator.daemon.metrics.Metrics``);
    named here structurally so that the one-shot commands never import prometheus_client."""

    def intercom_request(self, operation: str, status: str, seconds: float) -> None: ...
    def vault_request(self, operation: str, status: str, seconds: float) -> None: ...
    def vault_auth_failed(self) -> None: ...
    def probe_round(self, target: str, seconds: float, outcomes: Mapping[str, int]) -> None: ...


@runtime_checkable
class _Flushed(Protocol):
    """A listener with deliveries in flight (``rotator.notify.Notifier``)."""

    def close(self, timeout: float | None = None) -> bool: ...


@dataclass
class Parts:
    """What a verb works with, made from one configuration; close it when done."""

    settings: Settings
    vault: Vault
    reconciler: Reconciler
    flushed: list[_Flushed] = field(default_factory=list)

    @property
    def store(self) -> RecordStore:
        return self.reconciler.store

    @property
    def clients(self) -> IntercomClients:
        return self.reconciler.clients

    def close(self) -> None:
        """Give queued notifications their bounded time to go out, then close connections."""
        for listener in self.flushed:
            listener.close()
        self.reconciler.close()
        self.vault.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, _type: object, error: BaseException | None, _tb: object) -> None:
        try:
            if isinstance(error, Interrupted):
                # A signal stopped the verb: let go of our leases before closing anything.
                released = release_leases(self.reconciler, timeout=RELEASE_TIMEOUT)
                error.outcome = released.describe(self.settings.daemon.lease_ttl)
        finally:
            self.close()


@dataclass(frozen=True)
class Context:
    config: str | None
    environ: Mapping[str, str]
    #: Set when a signal asks this process to stop (``rotator.cli.interrupt``): passes end
    #: between two steps and Intercom retry waits return.
    stop: threading.Event = field(default_factory=threading.Event)

    def settings(self) -> Settings:
        settings = load_settings(config_path(self.config, dict(self.environ)))
        # check-config prints them; every other verb logs them.
        warnings = config_warnings(settings)
        if warnings:
            from rotator.logs import get_logger  # only when there is something to say

            for warning in warnings:
                get_logger().warning("config.warning", warning=warning)
        started()  # start-up is over (rotator.cli.process)
        return settings

    def open(
        self,
        settings: Settings | None = None,
        *,
        sleep: Sleep | None = None,
        listeners: Sequence[RecordListener] = (),
        observe: Observers | None = None,
        long_running: bool = False,
    ) -> Parts:
        """The parts for this configuration; with notifications whenever [notify] lists
        webhooks."""
        from rotator.reconciler.changes import ChangeLog
        from rotator.vault import Vault

        settings = settings or self.settings()
        vault = Vault(
            settings.vault,
            environ=self.environ,
            observe=observe.vault_request if observe else None,
            auth_failed=observe.vault_auth_failed if observe else None,
            # A one-shot command outlives no token: asking Vault for its TTL is a wasted call.
            renew=long_running,
        )
        # Every write that is news is noted for the daemons' sweeps (rotator.reconciler.changes).
        told = [*listeners, ChangeLog(vault, settings.vault.state_path)]
        flushed: list[_Flushed] = []
        if settings.notify.webhooks:
            from rotator.notify import Notifier

            notifier = Notifier(settings.notify, environ=self.environ, read_secret=vault.read_value)
            told.append(notifier)
            flushed.append(notifier)
        clients = client_factory_with(
            sleep or self.stop.wait,
            observe.intercom_request if observe else None,
            pacing=settings.intercom,
        )
        prober = None
        if any(c.probed for t in settings.targets for c in t.consumers):
            from rotator.probe import HttpProber  # only where a target has probed consumers

            prober = HttpProber(settings.probes, observe=observe.probe_round if observe else None)
        reconciler = Reconciler(
            settings,
            vault,
            environ=self.environ,
            client_factory=clients,
            listeners=told,
            stopping=self.stop,
            prober=prober,
        )
        return Parts(settings, vault, reconciler, flushed)


def context(config: str | None) -> Context:
    return Context(config=config, environ=os.environ)
