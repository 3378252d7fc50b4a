"""rotator's configuration: the TOML file, its validated settings, and schedules.

``settings`` holds the frozen models with their rules, ``bounds`` the ranges of durations and
hook credentials, ``advice`` the warnings, ``loading`` finds and reads the file, ``schedule``
computes due times.
"""

from rotator.config.advice import config_warnings
from rotator.config.consumers import ConsumerSettings, ProbeSettings
from rotator.config.loading import (
    CONFIG_ENV,
    DEFAULT_PATH,
    config_path,
    load_settings,
    parse_settings,
)
from rotator.config.pacing import IntercomSettings
from rotator.config.settings import (
    ALL_NOTIFY_EVENTS,
    NOTIFY_EVENTS,
    ConfigError,
    DaemonSettings,
    NotifyEvent,
    NotifySettings,
    ServerSettings,
    Settings,
    TargetSettings,
    UnknownTargetError,
    VaultAuthSettings,
    VaultSettings,
    WebhookSettings,
)

__all__ = [
    "ALL_NOTIFY_EVENTS",
    "CONFIG_ENV",
    "DEFAULT_PATH",
    "NOTIFY_EVENTS",
    "ConfigError",
    "ConsumerSettings",
    "DaemonSettings",
    "IntercomSettings",
    "NotifyEvent",
    "NotifySettings",
    "ProbeSettings",
    "ServerSettings",
    "Settings",
    "TargetSettings",
    "UnknownTargetError",
    "VaultAuthSettings",
    "VaultSettings",
    "WebhookSettings",
    "config_path",
    "config_warnings",
    "load_settings",
    "parse_settings",
]
