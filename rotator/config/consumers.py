"""Named consumers of a target's secret (``[[targets.consumers]]``) and how they are probed.

A consumer is **probed** (``probe_urls``, or ``probe_dns`` + ``probe_path``: every address a name
resolves to, such as a Kubernetes headless Service) or **hook-only** (it confirms itself through
the hook with its name). ``rotator.core.rollout`` decides from what they answer; the probe
protocol consumers implement is in ``docs/probe-protocol.md``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, StrictBool, field_validator, model_validator

from rotator.config import bounds
from rotator.config.bounds import within
from rotator.config.common import Model, checked_name, listen_host_ok
from rotator.core.observation import ConsumerRule

#: A target names at most this many consumers, a consumer at most this many URLs: the record
#: carries a summary of each, and a pass probes them all within one deadline.
MAX_CONSUMERS = 32
MAX_INSTANCES = 4096
DEFAULT_PROBE_PATH = "/.well-known/intercom-secret"


class ProbeSettings(Model):
    """How probe rounds run (``[probes]``); the defaults suit a cluster's network."""

    #: One instance's answer, connect and read.
    timeout: Annotated[float, within(bounds.PROBE_TIMEOUT)] = 1.0
    #: A target's whole round, name resolution included: a pass never waits longer on probes.
    deadline: Annotated[float, within(bounds.PROBE_DEADLINE)] = 2.0
    #: Requests in flight at once in one round.
    concurrency: Annotated[int, BeforeValidator(bounds.not_boolean)] = Field(
        default=256, ge=1, le=1024
    )
    #: Least time (on the shared clock) between two rounds counted in one streak.
    spacing: Annotated[float, within(bounds.PROBE_SPACING)] = 10.0
    #: https probes: verify certificates (``ca_cert``: a PEM bundle); false only for labs.
    tls_verify: StrictBool = True
    ca_cert: str | None = None
    #: A larger answer is "too large" (an answer is one short JSON object).
    max_body_bytes: Annotated[int, BeforeValidator(bounds.not_boolean)] = Field(
        default=4096, ge=256, le=65536
    )

    @model_validator(mode="after")
    def _deadline_covers_timeout(self) -> Self:
        if self.deadline < self.timeout:
            raise ValueError(
                f"deadline ({self.deadline:g}s) is shorter than timeout ({self.timeout:g}s): "
                "no instance could ever answer in time"
            )
        return self


class ConsumerSettings(Model):
    """One service that reads the target's secret."""

    name: str
    probe_urls: tuple[str, ...] = ()
    #: ``HOST:PORT``; every address it resolves to (IPv4 and IPv6) is one instance.
    probe_dns: str | None = None
    probe_path: str | None = None
    #: https: certificates are checked against the ``probe_dns`` name.
    probe_scheme: Literal["http", "https"] = "http"
    stable_probes: Annotated[int, BeforeValidator(bounds.not_boolean)] = Field(
        default=2, ge=1, le=20
    )
    min_instances: Annotated[int, BeforeValidator(bounds.not_boolean)] = Field(
        default=1, ge=1, le=MAX_INSTANCES
    )
    require_fingerprint: StrictBool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return checked_name(value, "hook calls and metric labels")

    @field_validator("probe_urls")
    @classmethod
    def _urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        problems = [p for i, url in enumerate(value) if (p := _url_problem(i, url))]
        problems += [f"{url!r} is listed {n} times" for url, n in Counter(value).items() if n > 1]
        if not problems:
            problems += _same_instances(value)
        if len(value) > MAX_INSTANCES:
            problems.append(f"{len(value)} URLs; at most {MAX_INSTANCES}")
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("probe_dns")
    @classmethod
    def _dns(cls, value: str | None) -> str | None:
        if value is None:
            return None
        written, sep, port = value.rpartition(":")
        host = written.strip("[]")
        digits = port.isascii() and port.isdigit()  # "٨٠" is digits to str.isdigit and int()
        if not sep or not host or not digits or not 0 < int(port) <= 65535:
            raise ValueError(f"must be HOST:PORT, e.g. api-headless.api.svc:8080, not {value!r}")
        if ":" in host and written != f"[{host}]":
            # "::1:8080" is itself an IPv6 address: which part is the port is a guess.
            raise ValueError(f"an IPv6 address goes in brackets: [{host}]:{port}, not {value!r}")
        if not listen_host_ok(host):
            raise ValueError(f"{host!r} is neither an IP address nor a host name")
        return value

    @field_validator("probe_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or any(map(_unsafe, value))):
            raise ValueError(f'must be a URL path starting with "/", not {value!r}')
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if self.probe_urls and self.probe_dns:
            raise ValueError("give probe_urls or probe_dns, not both")
        if self.probe_path is not None and not self.probe_dns:
            raise ValueError("probe_path goes with probe_dns (probe_urls carry their own paths)")
        if not self.probed:
            wrong = sorted(
                {"stable_probes", "min_instances", "require_fingerprint", "probe_scheme"}
                & self.model_fields_set
            )
            if wrong:
                raise ValueError(
                    f"{', '.join(wrong)} applies to probed consumers; {self.name} has no probe "
                    "(give probe_urls or probe_dns, or remove it)"
                )
        if self.probe_urls and self.min_instances > len(self.probe_urls):
            raise ValueError(
                f"min_instances {self.min_instances} could never be met by "
                f"{len(self.probe_urls)} probe_urls"
            )
        return self

    @property
    def probed(self) -> bool:
        return bool(self.probe_urls or self.probe_dns)

    @property
    def dns_host_port(self) -> tuple[str, int]:
        """``probe_dns`` split on its last ``:`` (``[::1]:8080`` works)."""
        if self.probe_dns is None:
            raise ValueError(f"consumer {self.name} has no probe_dns")
        host, _, port = self.probe_dns.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def path(self) -> str:
        return self.probe_path or DEFAULT_PROBE_PATH


def _unsafe(character: str) -> bool:
    """Not for a URL as written: a space, a control character, or a fragment's ``#``."""
    return character == "#" or character.isspace() or not character.isprintable()


def _url_problem(index: int, url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number
    except ValueError:
        return f"probe_urls[{index}]: {url!r} is not a URL"
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        return f"probe_urls[{index}]: must be an http(s) URL with a host, not {url!r}"
    if parts.username is not None or parts.password is not None:
        # Not quoted: a password in a probe URL would reach logs and status.
        return f"probe_urls[{index}]: must not carry credentials (user:password@)"
    if not listen_host_ok(parts.hostname):
        return f"probe_urls[{index}]: {parts.hostname!r} is neither an IP address nor a host name"
    if port == 0:
        return f"probe_urls[{index}]: port 0 is no port an instance listens on"
    if any(c.isspace() or not c.isprintable() for c in url):
        # urlsplit drops tabs and newlines silently; an instance would be asked another URL.
        return f"probe_urls[{index}]: {url!r} has a control character or space"
    return None


def _same_instances(urls: Sequence[str]) -> list[str]:
    """URLs that differ only in how they are written (scheme or host case, a default port):
    one instance, which would count twice towards min_instances."""
    seen: dict[tuple[str, str, int, str, str], str] = {}
    problems = []
    for url in dict.fromkeys(urls):
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        port = parts.port or (443 if scheme == "https" else 80)
        key = (scheme, (parts.hostname or "").lower(), port, parts.path or "/", parts.query)
        if key in seen:
            problems.append(f"{seen[key]!r} and {url!r} are the same instance")
        seen.setdefault(key, url)
    return problems


def consumer_problems(confirmation: str, consumers: Sequence[ConsumerSettings]) -> list[str]:
    """What is wrong with a target's consumers under its confirmation policy."""
    problems = [
        f"consumer name {name!r} is used {n} times"
        for name, n in Counter(c.name for c in consumers).items()
        if n > 1
    ]
    if len(consumers) > MAX_CONSUMERS:
        problems.append(f"{len(consumers)} consumers; at most {MAX_CONSUMERS}")
    if confirmation == "consumers" and not consumers:
        problems.append('confirmation = "consumers" needs at least one [[targets.consumers]]')
    if confirmation == "hook" and consumers:
        problems.append(
            'confirmation = "hook" with named consumers: use confirmation = "consumers" '
            "(each consumer then confirms by its probe or by the hook with its name)"
        )
    if confirmation == "grace":
        problems += [
            f"grace never hears from hook consumer {c.name}: give it a probe, or use "
            'confirmation = "hook-or-grace" or "consumers"'
            for c in consumers
            if not c.probed
        ]
    return problems


def consumer_rules(consumers: Sequence[ConsumerSettings]) -> tuple[ConsumerRule, ...]:
    """The decision core's view of a target's consumers."""
    return tuple(
        ConsumerRule(
            name=c.name,
            probed=c.probed,
            stable_probes=c.stable_probes,
            min_instances=c.min_instances,
            require_fingerprint=c.require_fingerprint,
        )
        for c in consumers
    )
