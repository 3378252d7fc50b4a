"""Named consumers and probes in the configuration (issue 12): the issue's example loads as
written, and every misuse is refused at load time with its key and a fix, never later."""

from __future__ import annotations

import tomllib

import pytest

from rotator.config import ConfigError, parse_settings
from rotator.config.consumers import DEFAULT_PROBE_PATH

ISSUE_EXAMPLE = """
[vault]
address = "http://127.0.0.1:8200"
[server]
hook_token_env = "ROTATOR_HOOK_TOKEN"

[[targets]]
name = "web"
token_env = "INTERCOM_TOKEN"
secret_name = "Production Web"
vault_path = "intercom/web"
confirmation = "consumers"          # new policy; the others keep their meaning

[[targets.consumers]]
name = "web-backend"                # probed: rotator asks every instance which secret it uses
probe_urls = ["http://10.0.0.7:8080/.well-known/intercom-secret", "http://10.0.0.8:8080/.well-known/intercom-secret"]

[[targets.consumers]]
name = "mobile-api"                 # probed: every address a DNS name resolves to (a headless Service)
probe_dns = "mobile-api-headless.api.svc.cluster.local:8080"
probe_path = "/.well-known/intercom-secret"

[[targets.consumers]]
name = "billing"                    # no probe: confirms itself through the hook
"""


def load(text: str = ISSUE_EXAMPLE, **target):
    raw = tomllib.loads(text)
    raw["targets"][0].update(target)
    return parse_settings(raw, "rotator.toml")


def refused(**target) -> str:
    with pytest.raises(ConfigError) as caught:
        load(**target)
    return "\n".join(caught.value.problems)


def consumers(*changes: dict) -> list[dict]:
    base = tomllib.loads(ISSUE_EXAMPLE)["targets"][0]["consumers"]
    return [c | ch for c, ch in zip(base, changes, strict=False)] + base[len(changes) :]


def test_the_issues_example_loads_as_written_with_sensible_defaults():
    """Three consumers (URLs, DNS, hook-only); probes default to 1 s, 2 s, 256, 10 s."""
    settings = load()
    web, mobile, billing = settings.targets[0].consumers
    assert (web.probed, mobile.probed, billing.probed) == (True, True, False)
    assert mobile.dns_host_port == ("mobile-api-headless.api.svc.cluster.local", 8080)
    assert mobile.path == DEFAULT_PROBE_PATH
    assert (web.stable_probes, web.min_instances, web.require_fingerprint) == (2, 1, False)
    probes = settings.probes
    assert (probes.timeout, probes.deadline, probes.concurrency, probes.spacing) == (
        1.0,
        2.0,
        256,
        10.0,
    )


def test_an_ipv6_probe_dns_splits_on_its_last_colon():
    """``[::1]:8080`` is host ::1, port 8080."""
    settings = load(consumers=[{"name": "v6", "probe_dns": "[::1]:8080"}])
    assert settings.targets[0].consumers[0].dns_host_port == ("::1", 8080)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            {"consumers": consumers({"probe_dns": "x:1"})},
            "consumers[0] (web-backend): give probe_urls or probe_dns, not both",
        ),
        (
            {"consumers": consumers({}, {}, {"stable_probes": 3})},
            "stable_probes applies to probed consumers; billing has no probe",
        ),
        (
            {"consumers": consumers({"probe_urls": ["http://u:p@10.0.0.1/x"]})},
            "must not carry credentials",
        ),
        (
            {"consumers": consumers({"probe_urls": ["ftp://10.0.0.1/x"]})},
            "must be an http(s) URL with a host",
        ),
        (
            {"consumers": consumers({"probe_urls": ["http://a/x", "http://a/x"]})},
            "is listed 2 times",
        ),
        ({"consumers": consumers({"min_instances": 3})}, "could never be met by 2 probe_urls"),
        ({"consumers": consumers({"stable_probes": 0})}, "stable_probes"),
        ({"consumers": consumers({"min_instances": True})}, "must be a whole number, not true"),
        ({"consumers": consumers({}, {"probe_dns": "no-port"})}, "must be HOST:PORT"),
        ({"consumers": consumers({}, {"probe_dns": "bad_host!:80"})}, "neither an IP address"),
        ({"consumers": consumers({}, {"probe_path": "x"})}, 'starting with "/"'),
        (
            {"consumers": consumers({}, {}, {"probe_path": "/x"})},
            "probe_path goes with probe_dns",
        ),
        ({"consumers": consumers({}, {}, {"name": "Billing Team"})}, "use lowercase letters"),
        ({"consumers": consumers({}, {}, {"name": "web-backend"})}, "is used 2 times"),
        ({"consumers": []}, 'confirmation = "consumers" needs at least one'),
        ({"confirmation": "hook"}, 'use confirmation = "consumers"'),
        ({"confirmation": "grace"}, "grace never hears from hook consumer billing"),
        ({"consumers": consumers({"colour": "red"})}, "colour"),
    ],
)
def test_consumer_mistakes_are_refused_with_their_key(target, message):
    """Each mistake names its key and says what to do."""
    assert message in refused(**target)


def test_a_hook_consumer_needs_a_hook_credential():
    """A hook-only consumer under "consumers" with no hook credential could never confirm."""
    text = ISSUE_EXAMPLE.replace('hook_token_env = "ROTATOR_HOOK_TOKEN"', "")
    with pytest.raises(ConfigError) as caught:
        load(text)
    assert "consumer billing confirms through the hook, but [server] has no hook credential" in (
        "\n".join(caught.value.problems)
    )


@pytest.mark.parametrize(
    ("probes", "message"),
    [
        ({"timeout": "0s"}, "timeout: must be from 100ms to 30s"),
        ({"deadline": "2m"}, "deadline: must be from 200ms to 1m"),
        ({"timeout": "5s", "deadline": "2s"}, "deadline (2s) is shorter than timeout (5s)"),
        ({"concurrency": 0}, "concurrency"),
        ({"spacing": "2h"}, "spacing: must be from 0s to 1h"),
        ({"max_body_bytes": 10}, "max_body_bytes"),
        ({"tls_verify": "no"}, "tls_verify"),
    ],
)
def test_probe_settings_are_bounded(probes, message):
    """[probes] values outside their ranges are refused at load time."""
    raw = tomllib.loads(ISSUE_EXAMPLE)
    raw["probes"] = probes
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, "rotator.toml")
    assert message in "\n".join(caught.value.problems)


def test_a_single_stable_probe_is_a_warning_not_an_error():
    """stable_probes = 1 works as written; check-config warns about flapping replicas."""
    from rotator.config import config_warnings

    settings = load(consumers=consumers({"stable_probes": 1}))
    assert any("stable_probes 1 counts a single answer" in w for w in config_warnings(settings))
