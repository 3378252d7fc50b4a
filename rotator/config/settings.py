"""rotator's configuration: frozen, validated settings (``rotator.config.loading`` reads them).

Validation (pydantic) reports every error at once, each with the TOML key that caused it;
unknown keys are errors, so a typo never silently falls back to a default. Secrets never sit in
the file: Intercom tokens come from an environment variable (``token_env``) or a Vault path
(``token_vault = "path#key"`` on the configured KV v2 mount).

Durations are written as in ``rotator.durations`` (``30d``, ``24h``, ``90s``) and held as
seconds, each within the range ``rotator.config.bounds`` gives; schedules as an interval or a
5-field cron line (``rotator.config.schedule``). What is accepted but probably not meant is
listed by ``rotator.config.advice``.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from rotator.config import bounds
from rotator.config.bounds import within
from rotator.config.common import Model as _Model
from rotator.config.common import checked_name, listen_host_ok
from rotator.config.consumers import ConsumerSettings, ProbeSettings, consumer_problems
from rotator.config.pacing import IntercomSettings
from rotator.config.schedule import Schedule
from rotator.config.windows import WindowSettings, window_problems
from rotator.core.endpoints import PLATFORM_NAMES, REGION_BASE_URLS, resolve_base_url
from rotator.errors import PermanentError


class ConfigError(PermanentError):
    """The configuration cannot be used; ``problems`` lists every reason, each with its key."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the configuration:\n{listing}")


def _lowercase(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _schedule(value: Any) -> Any:
    if isinstance(value, str):
        return Schedule.parse(value)
    if not isinstance(value, Schedule):
        raise ValueError(
            f'must be an interval such as "30d" or a 5-field cron line in quotes, not {value!r}'
        )
    return value


class VaultAuthSettings(_Model):
    """How rotator logs in to Vault."""

    method: Literal["token", "approle", "kubernetes"] = "token"
    #: token: the variable holding the token (``VAULT_TOKEN``), or a file holding it.
    token_env: str = "VAULT_TOKEN"  # noqa: S105 - the name of a variable, not a token
    token_file: str | None = None
    #: approle: the role id (not secret) inline, from a variable or a file; the secret id from a
    #: variable or a file, re-read at each login.
    role_id: str | None = None
    role_id_env: str | None = None
    role_id_file: str | None = None
    secret_id_env: str | None = None
    secret_id_file: str | None = None
    #: kubernetes: the Vault role, and the service-account token file, re-read at each login.
    role: str | None = None
    jwt_path: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    #: Where the auth method is mounted (default: ``approle`` / ``kubernetes``).
    mount_point: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.method == "approle":
            if not (self.role_id or self.role_id_env or self.role_id_file):
                raise ValueError("approle needs role_id, role_id_env or role_id_file")
            if not (self.secret_id_env or self.secret_id_file):
                raise ValueError("approle needs secret_id_env or secret_id_file")
        if self.method == "kubernetes" and not self.role:
            raise ValueError("kubernetes needs role (the Vault role bound to the service account)")
        return self


class VaultSettings(_Model):
    """Where state and secrets live."""

    model_config = ConfigDict(validate_default=True)

    address: str = Field(default_factory=lambda: os.environ.get("VAULT_ADDR", ""))
    #: The KV v2 mount holding rotator's state and the consumers' secrets.
    mount: str = "secret"
    #: Prefix (on ``mount``) of the per-target state records.
    state_path: str = "rotator/state"
    namespace: str | None = None
    #: CA bundle (PEM) to verify Vault's certificate; ``tls_verify = false`` only for labs.
    ca_cert: str | None = None
    tls_verify: bool = True
    #: Seconds to wait for one Vault request.
    timeout: Annotated[float, within(bounds.VAULT_TIMEOUT)] = 10.0
    auth: VaultAuthSettings = VaultAuthSettings()

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not value:
            raise ValueError("set [vault] address or the VAULT_ADDR environment variable")
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, not {value!r}")
        return value.rstrip("/")

    @field_validator("mount", "state_path")
    @classmethod
    def _path(cls, value: str) -> str:
        value = value.strip("/")
        if not value:
            raise ValueError("must not be empty")
        return value


class ServerSettings(_Model):
    """The daemon's HTTP server: confirmation hook, health and metrics."""

    listen: str = "0.0.0.0:8080"
    #: Bearer token for the hook: from this variable, or ``path#key`` in Vault (key: token).
    hook_token_env: str | None = None
    hook_token_vault: str | None = None
    #: HMAC-SHA256 key for signed hook calls (timestamp + body): a variable, or ``path#key``
    #: in Vault (key: ``key`` by default, as in [notify], never the bearer token's ``token``).
    hook_hmac_key_env: str | None = None
    hook_hmac_key_vault: str | None = None
    #: Seconds a signed call stays valid.
    signature_window: Annotated[float, within(bounds.SIGNATURE_WINDOW)] = 300.0
    #: Largest request body accepted, in bytes.
    max_body_bytes: Annotated[int, BeforeValidator(bounds.not_boolean)] = Field(
        default=64 * 1024, gt=0, le=1024 * 1024
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"must be HOST:PORT, e.g. 0.0.0.0:8080, not {value!r}")
        if not listen_host_ok(host.strip("[]")):
            raise ValueError(
                f"{host!r} is neither an IP address nor a host name; use e.g. 0.0.0.0:8080"
            )
        return value

    @model_validator(mode="after")
    def _one_source_each(self) -> Self:
        both = [
            f"give at most one of {what}_env or {what}_vault"
            for what in ("hook_token", "hook_hmac_key")
            if getattr(self, f"{what}_env") and getattr(self, f"{what}_vault")
        ]
        if both:
            raise ValueError("; ".join(both))
        return self

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class DaemonSettings(_Model):
    """How ``rotator run`` paces itself."""

    #: Seconds before a target that waits on something no record announces (a probe round, a
    #: lagging list, a failed pass, drift) is passed again (``rotator.core.wakeups``).
    reconcile_interval: Annotated[float, within(bounds.RECONCILE_INTERVAL)] = 60.0
    #: Seconds between two looks at what other processes wrote (``rotator.reconciler.changes``).
    sweep_interval: Annotated[float, within(bounds.SWEEP_INTERVAL)] = 600.0
    #: Targets reconciled at the same time in one pass.
    concurrency: Annotated[int, BeforeValidator(bounds.not_boolean)] = Field(
        default=8, ge=1, le=256
    )
    #: Seconds another process waits, by its own clock, before taking over a silent holder.
    lease_ttl: Annotated[float, within(bounds.LEASE_TTL)] = 60.0


NotifyEvent = Literal[
    "stored",
    "retired",
    "blocked",
    "stalled",
    "paused",
    "resumed",
    "started",
    "confirmed",
    "aborted",
]
#: Every event, in the order a webhook's ``events`` is kept; the default is ``NOTIFY_EVENTS``:
#: operator controls and the audit trail's (``paused``, ``resumed``, ``started``,
#: ``confirmed``, ``aborted``) are opt-in, so existing webhooks hear the same.
ALL_NOTIFY_EVENTS: tuple[NotifyEvent, ...] = get_args(NotifyEvent)
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = ("stored", "retired", "blocked", "stalled")


class WebhookSettings(_Model):
    """One receiver of transition notifications (``rotator.notify``)."""

    #: Where to POST: inline, or from a variable (a Slack incoming-webhook URL is a secret).
    url: str | None = None
    url_env: str | None = None
    #: HMAC-SHA256 key signing each body (as the confirm hook checks): a variable or Vault.
    hmac_key_env: str | None = None
    hmac_key_vault: str | None = None
    #: ``json``: the event object; ``slack``: ``{"text": ...}`` for an incoming webhook.
    format: Literal["json", "slack"] = "json"
    events: tuple[NotifyEvent, ...] = NOTIFY_EVENTS

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: tuple[NotifyEvent, ...]) -> tuple[NotifyEvent, ...]:
        if not value:
            raise ValueError(f"name at least one of {', '.join(ALL_NOTIFY_EVENTS)}")
        return tuple(e for e in ALL_NOTIFY_EVENTS if e in value)

    @model_validator(mode="after")
    def _sources(self) -> Self:
        if bool(self.url) == bool(self.url_env):
            raise ValueError("give exactly one of url or url_env")
        if self.hmac_key_env and self.hmac_key_vault:
            raise ValueError("give at most one of hmac_key_env or hmac_key_vault")
        return self

    @property
    def label(self) -> str:
        """How logs name this webhook: never a URL that came from a secret variable."""
        return self.url or f"${self.url_env}"


class NotifySettings(_Model):
    """Outbound notifications on transitions; none unless webhooks are listed."""

    webhooks: tuple[WebhookSettings, ...] = ()
    #: Seconds to wait for one delivery attempt.
    timeout: Annotated[float, within(bounds.NOTIFY_TIMEOUT)] = 5.0
    #: Delivery attempts per notification and webhook, the first included.
    attempts: Annotated[int, BeforeValidator(bounds.not_boolean)] = Field(default=3, ge=1, le=10)
    #: Seconds a one-shot command waits for queued notifications before it exits.
    flush_timeout: Annotated[float, within(bounds.FLUSH_TIMEOUT)] = 10.0


class TargetSettings(_Model):
    """One Intercom secret lineage and the Vault path its consumers read."""

    name: str
    #: Any case (``EU`` is ``eu``).
    region: Annotated[Literal["us", "eu", "au"], BeforeValidator(_lowercase)] = "us"
    #: Overrides ``region`` (e.g. the emulator, or a proxy); both set is a warning (advice).
    base_url: str | None = None
    token_env: str | None = None
    #: ``path#key`` on the Vault KV v2 mount (key defaults to ``token``).
    token_vault: str | None = None
    secret_name: str = Field(min_length=1, max_length=200)
    platforms: tuple[str, ...] = ("web",)
    vault_path: str
    schedule: Annotated[Schedule, BeforeValidator(_schedule)] = Schedule.parse("30d")
    grace_period: Annotated[float, within(bounds.GRACE_PERIOD)] = 24 * 3600.0
    confirmation: Literal["hook-or-grace", "hook", "grace", "consumers"] = "hook-or-grace"
    #: Ids of existing Intercom secrets this target owns and may retire.
    adopt: tuple[str, ...] = ()
    #: Rotate at once when the consumers' secret is found deleted at Intercom, instead of at the
    #: next scheduled rotation. Costs one Intercom list per pass of an idle target; ``rotator
    #: doctor`` then rotates such a target too. A real TOML boolean (``true``), nothing else.
    rotate_on_drift: StrictBool = False
    intercom_version: str = "Preview"
    #: Who reads the secret (``[[targets.consumers]]``): with them, the old secret is retired only
    #: once each is seen on the new one (``rotator.core.rollout``).
    consumers: tuple[ConsumerSettings, ...] = ()
    #: When scheduled rotations start and old secrets retire (``rotator.config.windows``).
    windows: tuple[WindowSettings, ...] = ()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return checked_name(value, "URLs and metric labels")

    @field_validator("platforms")
    @classmethod
    def _platforms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(PLATFORM_NAMES))
        if unknown:
            raise ValueError(f"unknown platform(s) {unknown}; choose from {list(PLATFORM_NAMES)}")
        if not value:
            raise ValueError("at least one platform (web, ios, android) must be enabled")
        return tuple(p for p in PLATFORM_NAMES if p in value)

    @field_validator("vault_path")
    @classmethod
    def _vault_path(cls, value: str) -> str:
        value = value.strip("/")
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return None if value is None else resolve_base_url("us", value)

    @model_validator(mode="after")
    def _token_source(self) -> Self:
        if bool(self.token_env) == bool(self.token_vault):
            raise ValueError(
                "give exactly one of token_env (an environment variable) or token_vault "
                "(path#key in Vault); tokens are never written in the file"
            )
        problems = consumer_problems(self.confirmation, self.consumers)
        problems += window_problems(self.schedule, self.windows)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def endpoint(self) -> str:
        return self.base_url or REGION_BASE_URLS[self.region]


class Settings(_Model):
    """Everything rotator needs, validated."""

    vault: VaultSettings
    server: ServerSettings = ServerSettings()
    daemon: DaemonSettings = DaemonSettings()
    notify: NotifySettings = NotifySettings()
    probes: ProbeSettings = ProbeSettings()
    intercom: IntercomSettings = IntercomSettings()
    targets: tuple[TargetSettings, ...] = Field(default=(), validate_default=True)

    @field_validator("targets", mode="before")
    @classmethod
    def _some_targets(cls, value: Any) -> Any:
        if not value:
            raise ValueError("add at least one [[targets]] table")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        problems = [
            *_duplicates(self.targets),
            *_paths_that_collide(self),
            *_hook_only_without_hook(self),
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def target(self, name: str) -> TargetSettings:
        for target in self.targets:
            if target.name == name:
                return target
        known = ", ".join(t.name for t in self.targets)
        raise UnknownTargetError(f"no target named {name!r} in the configuration (known: {known})")


class UnknownTargetError(PermanentError):
    """A command named a target the configuration does not have."""


def _duplicates(targets: tuple[TargetSettings, ...]) -> list[str]:
    problems = []
    for name, count in Counter(t.name for t in targets).items():
        if count > 1:
            problems.append(f"target name {name!r} is used {count} times")
    for path, count in Counter(t.vault_path for t in targets).items():
        if count > 1:
            problems.append(f"vault_path {path!r} is used by {count} targets")
    lineages = Counter((t.endpoint, t.token_env or t.token_vault, t.secret_name) for t in targets)
    for (_, _, secret_name), count in lineages.items():
        if count > 1:
            problems.append(
                f"{count} targets share secret_name {secret_name!r} in one workspace: "
                "each would take the other's secrets for its own"
            )
    return problems


def _paths_that_collide(settings: Settings) -> list[str]:
    """A consumers' path must not be one of rotator's own records, nor a token."""
    state = settings.vault.state_path
    tokens = {t.token_vault.partition("#")[0].strip("/") for t in settings.targets if t.token_vault}
    problems = []
    for t in settings.targets:
        if t.vault_path == state or t.vault_path.startswith(f"{state}/"):
            problems.append(
                f"target {t.name}: vault_path {t.vault_path!r} lies under vault.state_path "
                f"{state!r}, where rotator keeps its own records"
            )
        if t.vault_path in tokens:
            problems.append(f"target {t.name}: vault_path {t.vault_path!r} holds a token")
    return problems


def _hook_only_without_hook(settings: Settings) -> list[str]:
    """A target that waits only for confirmations needs the hook they arrive by: without a
    credential the daemon answers every confirmation 503, and the old secret lives forever."""
    server = settings.server
    if any((server.hook_token_env, server.hook_token_vault)) or any(
        (server.hook_hmac_key_env, server.hook_hmac_key_vault)
    ):
        return []
    return [
        f'target {t.name}: confirmation = "hook" waits for confirmations, but [server] has no '
        "hook credential (hook_token_env, hook_token_vault, hook_hmac_key_env or "
        'hook_hmac_key_vault): set one, or use confirmation = "hook-or-grace"'
        for t in settings.targets
        if t.confirmation == "hook"
    ] + [
        f"target {t.name}: consumer {c.name} confirms through the hook, but [server] has no "
        "hook credential (hook_token_env, hook_token_vault, hook_hmac_key_env or "
        "hook_hmac_key_vault): set one, or give the consumer a probe"
        for t in settings.targets
        if t.confirmation == "consumers"
        for c in t.consumers
        if not c.probed
    ]
