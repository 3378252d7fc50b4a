"""``rotator run``: the long-running daemon. APScheduler triggers reconcile passes; waitress
(``rotator.hook.server``) serves the rollout-confirmation hook, ``/healthz``, ``/readyz`` and
``/metrics``. Each scheduled run passes only over the targets something can happen to, and
sweeps for other processes' writes every ``sweep_interval`` (``rotator.daemon.watch``): an idle
target is not read from Vault between sweeps.

The scheduler holds nothing that matters: every decision is made from Vault state by the
reconciler, so a restart loses nothing. It runs in UTC with ``coalesce=True`` (a backlog of
missed runs becomes one), ``max_instances=1`` (passes never overlap) and a real
``misfire_grace_time``. Only target names travel as job arguments, never secrets.

SIGTERM or SIGINT: the pass in progress finishes its current step and persists (each Intercom
client's retry sleep wakes up at once), the server stops, and the process exits 0. SIGHUP does
not reload: it is logged (``daemon.sighup_ignored``, with whether the file on disk would load)
and the daemon goes on with the configuration it started with; a restart applies changes. A
reload would have to swap the server, the Vault login and every target under a running pass,
while a restart is already safe at any instant. Any failure while starting (after the server
listens included) stops what did start and leaves the process to exit non-zero, rather than
leave a server answering ``/healthz`` for a daemon that is not there.

Nothing a probe or a hook caller waits for may wait on Vault unbounded: ``/readyz`` reads a
state a background thread keeps checking (``rotator.daemon.readiness``), and a confirmation's
Vault work runs within ``hook_timeout`` seconds (``rotator.vault.deadline``), past which the
caller gets 503 with Retry-After and calls again.

Metrics (``rotator.daemon.metrics``) hear of every persisted record as a listener of the reconciler;
the first scheduled job's pass reads every target (``rotator.daemon.watch``), and each record a
pass reads is shown (``Metrics.on_seen``), so ``/metrics`` tells each target's state before its
next transition, from the one read the start needs anyway. ``commands.run`` also hands their
request hooks to the Vault adapter and the Intercom clients.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType

from apscheduler.triggers.interval import IntervalTrigger

from rotator.config import ConfigError, Settings
from rotator.config.bounds import credential_problem
from rotator.core.confirmation import ConfirmStatus
from rotator.daemon.metrics import Metrics
from rotator.daemon.readiness import Readiness
from rotator.daemon.scheduling import SkippedRuns, make_scheduler
from rotator.daemon.watch import Watch
from rotator.errors import RotatorError, TemporaryError
from rotator.failpoints import failpoint
from rotator.hook.app import ConfirmOutcome, ConfirmRequest, make_app
from rotator.hook.auth import HookCredentials
from rotator.hook.server import HttpServer
from rotator.logs import get_logger
from rotator.reconciler import Reconciler
from rotator.reconciler.changes import ChangeLog
from rotator.redaction import SecretValue
from rotator.vault import Vault, deadline
from rotator.vault.reasons import because

log = get_logger()

STOP_TIMEOUT = 8.0  # seconds: the whole shutdown fits in Kubernetes' and our 10 s promise
HANGUP_CHECK = 0.25  # seconds between looks at SIGHUPs received (and at `stopping`)
#: Seconds a hook call's Vault work may take: well inside a sender's usual 10-30 s client
#: timeout, long enough for a few healthy round trips (a read, a check-and-set write, a retry).
HOOK_TIMEOUT = 5.0


class Daemon:
    """The scheduler, the reconciler and the HTTP server, started and stopped together."""

    #: Seconds a confirmation may spend on Vault before it is answered 503 (retry later).
    hook_timeout: float = HOOK_TIMEOUT

    def __init__(
        self,
        settings: Settings,
        reconciler: Reconciler,
        vault: Vault,
        *,
        environ: Mapping[str, str],
        clock: Callable[[], float] | None = None,
        listen: tuple[str, int] | None = None,
        stopping: threading.Event | None = None,
        metrics: Metrics | None = None,
        config_check: Callable[[], list[str]] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``metrics`` already listening to ``reconciler``; without, one is made and added.
        ``clock`` (unix seconds) judges signed hook calls: Vault's time unless a test moves it,
        so a sender's clock is compared with the one every process shares, not ours.
        ``config_check`` lists the problems of the configuration file as it is now on disk
        (told on SIGHUP, which does not reload it). ``monotonic`` measures elapsed time for the
        timetable (a test moves it with its clock)."""
        self.settings = settings
        self.config_check = config_check
        self.reconciler = reconciler
        self.vault = vault
        clock = clock or self._vault_time
        if metrics is None:
            metrics = Metrics(clock=lambda: datetime.fromtimestamp(clock(), UTC))
            reconciler.listeners.append(metrics)
        self.metrics = metrics
        self.stopping = stopping or threading.Event()
        self._environ = environ
        self._clock = clock
        self._scheduler = make_scheduler(SkippedRuns(metrics.scheduler_run_skipped, clock))
        changes = next((x for x in reconciler.listeners if isinstance(x, ChangeLog)), None)
        if changes is None:  # the CLI adds one to every process; a test's reconciler may not
            changes = ChangeLog(vault, settings.vault.state_path, by=reconciler.me)
            reconciler.listeners.append(changes)
        self.watch = Watch(
            settings,
            reconciler,
            changes,
            stopping=self.stopping,
            keep_token=vault.keep_token,
            monotonic=monotonic,
        )
        reconciler.listeners.append(self.watch)
        host, port = listen or (settings.server.host, settings.server.port)
        self._hook_credentials = self._first_credentials()
        app = make_app(
            confirm=self._confirm,
            credentials=lambda: self._hook_credentials,
            settings=settings.server,
            ready=self._ready,
            metrics_app=metrics.wsgi_app(),
            clock=clock,
        )
        self.server = HttpServer(app, host, port)
        # Not ``healthy``: its token lookup every two seconds was an audited request each time.
        self.readiness = Readiness(vault.reachable, stopping=self.stopping)
        #: Set by ``stop`` when a pass was still running at its deadline: the process must
        #: then exit without waiting for that pass's thread (``rotator.cli.rotate.run``).
        self.abandoned = False
        self._stopped = False
        self._lifecycle = threading.Lock()
        self._jobs = 0
        self._jobs_idle = threading.Condition()

    def _vault_time(self) -> float:
        """Vault's time once an answer told it; this process's clock until then."""
        if self.vault.clock.known():
            return self.vault.clock.now().timestamp()
        return time.time()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Listen, then schedule passes. If anything fails on the way, what started is stopped
        before the error goes up: a listening server must not outlive a daemon that failed."""
        self.readiness.start()
        self.server.start()
        try:
            failpoint("daemon.after_listen")
            self._scheduler.add_job(
                self.run_once,
                IntervalTrigger(seconds=self.settings.daemon.reconcile_interval, timezone=UTC),
                id="reconcile",
                name="reconcile all targets",
                next_run_time=datetime.now(UTC),
            )
            self._scheduler.start()
        except BaseException as e:
            log.error(
                "daemon.start_failed",
                error=str(e) or type(e).__name__,
                error_type=type(e).__name__,
                detail="the HTTP server is stopped and the process exits",
            )
            self.stop()
            raise
        log.info(
            "daemon.started",
            targets=len(self.settings.targets),
            interval_s=self.settings.daemon.reconcile_interval,
            sweep_s=self.settings.daemon.sweep_interval,
            url=self.server.url,
        )

    def stop(self) -> None:
        """Stop within ``STOP_TIMEOUT``: the pass in progress gets until then to reach its next
        persisted step; past it, it is abandoned (``abandoned``), as a crash would abandon it.
        Calling it again does nothing."""
        with self._lifecycle:
            if self._stopped:
                return
            self._stopped = True
        self.stopping.set()
        started = time.monotonic()
        if self._scheduler.running:  # not yet, when starting failed
            # Not wait=True: a pass stuck on a hung Vault would hold the stop for the Vault
            # client's timeouts and retries (41 s with the defaults), past Kubernetes' grace.
            self._scheduler.shutdown(wait=False)
        # The pass checks `stopping` between steps, and its clients stop sleeping between
        # retries: a pass that is not stuck ends well within the budget.
        with self._jobs_idle:
            idle = self._jobs_idle.wait_for(lambda: self._jobs == 0, timeout=STOP_TIMEOUT - 1.0)
        if not idle:
            self.abandoned = True
            log.warning(
                "daemon.pass_abandoned",
                detail="the pass in progress did not reach a persisted step in time; like a "
                "crash, it resumes from its last persisted step at the next start (its lease "
                f"lapses after lease_ttl, {self.settings.daemon.lease_ttl:g}s)",
            )
        self.server.stop(timeout=max(0.5, STOP_TIMEOUT - (time.monotonic() - started)))
        log.info("daemon.stopped", seconds=round(time.monotonic() - started, 2))

    @contextmanager
    def _job(self) -> Iterator[None]:
        """Count a scheduled job while it runs, so that ``stop`` knows when none is left."""
        with self._jobs_idle:
            self._jobs += 1
        try:
            yield
        finally:
            with self._jobs_idle:
                self._jobs -= 1
                self._jobs_idle.notify_all()

    def run_until_signalled(self) -> int:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("daemon.signal", signal=signal.Signals(signum).name)
            self.stopping.set()

        def on_hangup(_signum: int, _frame: FrameType | None) -> None:
            # Counted here, told by the loop below: a storm of SIGHUPs makes a few lines, and
            # the handler never runs the configuration check inside whatever it interrupted.
            self._hangups += 1

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGHUP, on_hangup)
        self.start()
        try:
            while not self.stopping.wait(timeout=HANGUP_CHECK):
                self._tell_hangups()
        finally:
            self._tell_hangups()  # those that came with the stop are told too
            self.stop()
        return 0

    #: SIGHUPs received and not yet logged.
    _hangups = 0

    def _tell_hangups(self) -> None:
        count, self._hangups = self._hangups, 0
        if not count:
            return
        on_disk = "unchecked"
        if self.config_check is not None:
            try:
                problems = self.config_check()
            except Exception as e:  # noqa: BLE001 - a check must never take the daemon down
                problems = [f"could not check it ({type(e).__name__})"]
            on_disk = "valid" if not problems else "invalid: " + "; ".join(problems)
        log.warning(
            "daemon.sighup_ignored",
            signals=count,
            detail="the configuration is not reloaded: restart rotator to apply config changes",
            config_on_disk=on_disk,
        )

    # --- jobs --------------------------------------------------------------------------------

    def run_once(self) -> None:
        """The scheduled job: the targets whose wakeup has come, and the sweep when it is time
        (``rotator.daemon.watch``); nothing is read from Vault for the others. A test calls it
        after moving its clock, instead of starting the scheduler."""
        if self.stopping.is_set():
            return
        with self._job():
            reports = self.watch.tick()
        if reports:
            blocked = [r.target for r in reports if r.needs_operator]
            log.debug("daemon.pass", targets=len(reports), needs_operator=blocked)

    def _reconcile_one(self, name: str) -> None:
        if not self.stopping.is_set():
            with self._job(), because("hook"):
                self.reconciler.reconcile_target(name)

    def _confirm(self, name: str, request: ConfirmRequest) -> ConfirmOutcome:
        if name not in {t.name for t in self.settings.targets}:
            return ConfirmOutcome(ConfirmStatus.UNKNOWN_TARGET, f"no target named {name!r}")
        signed = request.signed_at
        # The caller waits for this answer: a Vault that hangs costs it hook_timeout, then a
        # 503 with Retry-After (VaultUnavailable), never Vault's own timeouts and retries.
        with deadline.within(self.hook_timeout), because("hook"):
            result = self.reconciler.confirm(
                name,
                secret_id=request.secret_id,
                rotation_id=request.rotation_id,
                via=f"hook:{request.via}",
                signed_at=None if signed is None else datetime.fromtimestamp(signed, UTC),
                consumer=request.consumer,
                by=request.actor(),
            )
        if result.status is ConfirmStatus.CONFIRMED and not self.stopping.is_set():
            # Retire now rather than at the next interval; the job carries only the name.
            self._scheduler.add_job(
                self._reconcile_one, args=[name], id=f"confirmed:{name}", replace_existing=True
            )
        return ConfirmOutcome(result.status, result.message, result.rotation_id, result.secret_id)

    def _ready(self) -> tuple[bool, str]:
        if not self._scheduler.running:
            return False, "scheduler not running"
        if self._credentials_pending:
            return False, "hook credentials not loaded from Vault yet"
        refused = dict(self.reconciler.refused)
        if refused:
            name, why = next(iter(sorted(refused.items())))
            return False, f"this process cannot act on target {name}: {why}"
        return self.readiness.state()

    def _first_credentials(self) -> HookCredentials:
        """The hook's credentials now; if Vault is away at start, none for the moment and a
        background retry, rather than a crash loop while Vault restarts."""
        self._credentials_pending = False
        try:
            return self._credentials()
        except TemporaryError as e:
            log.warning("daemon.hook_credentials_pending", error=str(e))
            self._credentials_pending = True
            threading.Thread(
                target=self._load_credentials, daemon=True, name="hook-credentials"
            ).start()
            return HookCredentials(bearer_token=None, hmac_key=None)

    #: Seconds between attempts to load the hook's credentials when Vault was away at start.
    credentials_retry = 5.0

    def _load_credentials(self) -> None:
        while not self.stopping.wait(self.credentials_retry):
            try:
                self._hook_credentials = self._credentials()
            except TemporaryError:
                continue
            except RotatorError as e:  # a permission or a missing key: say so, keep trying
                log.error("daemon.hook_credentials_failed", error=str(e))
                continue
            self._credentials_pending = False
            log.info("daemon.hook_credentials_loaded")
            return

    def _credentials(self) -> HookCredentials:
        server = self.settings.server
        return HookCredentials(
            bearer_token=self._secret(
                server.hook_token_env, server.hook_token_vault, "hook token", "token"
            ),
            hmac_key=self._secret(
                server.hook_hmac_key_env, server.hook_hmac_key_vault, "HMAC key", "key"
            ),
        )

    def _secret(
        self, env: str | None, vault_ref: str | None, what: str, default_key: str
    ) -> SecretValue | None:
        if env:
            value = self._environ.get(env)
            if not value:
                raise ConfigError("environment", [f"server: the {what} variable ${env} is not set"])
            secret, source = SecretValue(value), f"${env}"
        elif vault_ref:
            path, _, key = vault_ref.partition("#")
            secret, source = self.vault.read_value(path, key or default_key), f"vault:{vault_ref}"
        else:
            return None
        # Only now is a Vault-held value known: a weak one is refused like a missing one.
        problem = credential_problem(secret.reveal(), what)
        if problem:
            raise ConfigError("hook credentials", [f"server: {problem} (from {source})"])
        return secret
