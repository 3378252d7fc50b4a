"""The probe adapter (``rotator.probe``) against real loopback servers: what instances answer.

Issue 12's acceptance, as far as probing goes (design §9.1): several instances answering
different ids; a DNS name with several addresses, IPv4 and IPv6 (an injected resolver) and
``localhost`` through the system's resolver; instances appearing and disappearing between rounds;
garbage and silent instances, each a clear error kind. Slow instances, the deadline, TLS and
containment are in ``test_probe_limits.py``.
"""

from __future__ import annotations

import gzip
import socket
from collections import Counter
from collections.abc import Iterator

import pytest
from _instances import MARKER, Answer, Servers, ipv6_loopback, probe_target

from rotator.config.consumers import ProbeSettings
from rotator.core.observation import ConsumerProbe, InstanceAnswer
from rotator.probe import HttpProber, StaticResolver
from rotator.signing import probe_fingerprint

FINGERPRINT = probe_fingerprint("s3cret-material-for-the-probe-tests-0123456789")


@pytest.fixture
def serve() -> Iterator[Servers]:
    servers = Servers()
    yield servers
    servers.stop()


def test_each_instance_answers_its_own_id_in_config_order(serve):
    """Three instances on three loopback addresses are each reported with the id they answered,
    in the order of probe_urls; hook-only consumers are not probed at all."""
    a, b, c = (
        serve.http(f"127.0.0.{n}", answer=Answer.of({"intercom_id": id_}))
        for n, id_ in ((2, "101"), (3, "102"), (4, "103"))
    )
    rounds: list[tuple[str, float, Counter[str]]] = []
    prober = HttpProber(ProbeSettings(), observe=lambda *args: rounds.append(args))
    probes = prober.probe(
        probe_target(
            {"name": "billing"}, {"name": "web-backend", "probe_urls": [c.url(), a.url(), b.url()]}
        )
    )
    assert probes == (
        ConsumerProbe(
            "web-backend",
            (
                InstanceAnswer(c.address, intercom_id="103"),
                InstanceAnswer(a.address, intercom_id="101"),
                InstanceAnswer(b.address, intercom_id="102"),
            ),
        ),
    )
    assert [(name, outcomes) for name, _, outcomes in rounds] == [("web", Counter(ok=3))]
    assert HttpProber(ProbeSettings()).probe(probe_target({"name": "billing"})) == ()


def test_fingerprint_and_extra_keys(serve):
    """A fingerprint of the right shape is passed on for the core to check; other keys are
    ignored; a null fingerprint is no fingerprint."""
    with_fp = serve.http(
        "127.0.0.2",
        answer=Answer.of({"intercom_id": "103", "fingerprint": FINGERPRINT, "build": "x"}),
    )
    null_fp = serve.http("127.0.0.3", answer=Answer.of({"intercom_id": "103", "fingerprint": None}))
    (probe,) = HttpProber(ProbeSettings()).probe(
        probe_target({"name": "web", "probe_urls": [with_fp.url(), null_fp.url()]})
    )
    assert probe.instances == (
        InstanceAnswer(with_fp.address, intercom_id="103", fingerprint=FINGERPRINT),
        InstanceAnswer(null_fp.address, intercom_id="103"),
    )


def test_dns_probes_every_address_ipv4_and_ipv6(serve):
    """Every address a name resolves to is one instance, IPv4 and IPv6 alike, asked with the
    name (and port) as Host."""
    if not ipv6_loopback():
        pytest.skip("::1 cannot be bound here (no IPv6 loopback)")
    v4, v6 = serve.same_port(["127.0.0.1", "::1"], answer=Answer.of({"intercom_id": "104"}))
    v6.answer = Answer.of({"intercom_id": "103"})
    resolver = StaticResolver({"mobile.test": ["::1", "127.0.0.1", "::1"]})
    (probe,) = HttpProber(ProbeSettings(), resolver=resolver).probe(
        probe_target({"name": "mobile-api", "probe_dns": f"mobile.test:{v4.port}"})
    )
    assert probe == ConsumerProbe(
        "mobile-api",
        (
            InstanceAnswer(f"127.0.0.1:{v4.port}", intercom_id="104"),
            InstanceAnswer(f"[::1]:{v4.port}", intercom_id="103"),
        ),
    )
    assert v4.hosts == v6.hosts == [f"mobile.test:{v4.port}"]


def test_system_resolver_localhost(serve):
    """With the system's resolver, every address ``localhost`` has here is probed (on this
    machine 127.0.0.1 alone; ::1 too where /etc/hosts lists it)."""
    found = socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)
    hosts = sorted({str(sockaddr[0]) for *_, sockaddr in found}, key=lambda h: (":" in h, h))
    assert hosts
    instances = serve.same_port(hosts)
    (probe,) = HttpProber(ProbeSettings()).probe(
        probe_target({"name": "local", "probe_dns": f"localhost:{instances[0].port}"})
    )
    assert probe.error is None
    assert probe.instances == tuple(InstanceAnswer(i.address, intercom_id="103") for i in instances)
    assert all(i.hosts == [f"localhost:{i.port}"] for i in instances)


def test_names_that_resolve_to_nothing():
    """A name the resolver does not know, or that resolves to no address, is the consumer's
    error, with no instance (it counts as not switched)."""
    prober = HttpProber(ProbeSettings(), resolver=StaticResolver({"empty.test": []}))
    assert prober.probe(
        probe_target(
            {"name": "gone", "probe_dns": "gone.test:8080"},
            {"name": "empty", "probe_dns": "empty.test:8080"},
        )
    ) == (
        ConsumerProbe("gone", (), error="DNS: no such name"),
        ConsumerProbe("empty", (), error="resolves to no address"),
    )
    (system,) = HttpProber(ProbeSettings()).probe(
        probe_target({"name": "nowhere", "probe_dns": "no-such-host.invalid:8080"})
    )
    assert system.instances == ()
    assert system.error in {"DNS: no such name", "DNS: temporary failure", "DNS: failed"}


def test_instances_come_and_go_between_rounds(serve):
    """The resolver's answer is read every round: an instance appears, another disappears, and
    finally none is left."""
    two, three = serve.same_port(["127.0.0.2", "127.0.0.3"])
    three.answer = Answer.of({"intercom_id": "104"})
    mapping = {"api.test": ["127.0.0.2"]}
    prober = HttpProber(ProbeSettings(), resolver=StaticResolver(mapping))
    consumers = probe_target({"name": "api", "probe_dns": f"api.test:{two.port}"})

    def seen() -> tuple[tuple[str, str | None], ...] | str | None:
        (probe,) = prober.probe(consumers)
        return probe.error or tuple((a.address, a.intercom_id) for a in probe.instances)

    assert seen() == ((two.address, "103"),)
    mapping["api.test"] = ["127.0.0.3", "127.0.0.2"]
    assert seen() == ((two.address, "103"), (three.address, "104"))
    mapping["api.test"] = ["127.0.0.3"]
    assert seen() == ((three.address, "104"),)
    mapping["api.test"] = []
    assert seen() == "resolves to no address"
    assert len(two.hosts) == 2
    assert len(three.hosts) == 2


TWO_MB = {"intercom_id": "103", "padding": MARKER * (2_000_000 // len(MARKER))}
GARBAGE = {
    "not JSON": (Answer(body=f"intercom_id=103 {MARKER}".encode()), "not JSON"),
    "JSON list": (Answer.of(["103", MARKER]), "not a JSON object"),
    "JSON string": (Answer.of(MARKER), "not a JSON object"),
    "deeply nested": (Answer(body=b"[" * 3000), "not JSON"),
    "not UTF-8": (Answer(body=b'{"intercom_id": "\xff\xfe"}'), "not JSON"),
    "no id": (Answer.of({"id": "103", "note": MARKER}), "no intercom_id"),
    "id not a string": (Answer.of({"intercom_id": 103, "note": MARKER}), "malformed intercom_id"),
    "bad id chars": (Answer.of({"intercom_id": f"103/{MARKER} x"}), "malformed intercom_id"),
    "2 MB body": (Answer.of(TWO_MB), "too large"),
    "2 MB body, no length": (Answer.of(TWO_MB, length=False), "too large"),
    "malformed fingerprint": (
        Answer.of({"intercom_id": "103", "fingerprint": FINGERPRINT.upper()}),
        "malformed fingerprint",
    ),
    "fingerprint not a string": (
        Answer.of({"intercom_id": "103", "fingerprint": 12345}),
        "malformed fingerprint",
    ),
    "gzip": (
        Answer(body=gzip.compress(b'{"intercom_id": "103"}'), headers={"Content-Encoding": "gzip"}),
        "encoded answer",
    ),
    "HTTP 500": (Answer(status=500, body=MARKER.encode()), "HTTP 500"),
    "HTTP 204": (Answer(status=204), "HTTP 204"),
}


@pytest.mark.parametrize(("answer", "kind"), GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_answers(serve, answer, kind):
    """An answer outside the protocol is the instance's error, named by kind, and counts as no
    id at all."""
    instance = serve.http("127.0.0.2", answer=answer)
    (probe,) = HttpProber(ProbeSettings()).probe(
        probe_target({"name": "web", "probe_urls": [instance.url()]})
    )
    assert probe.instances == (InstanceAnswer(instance.address, error=kind),)


def test_redirects_are_not_followed(serve):
    """A 302 is an error ("HTTP 302"), and the place it points to is never asked."""
    elsewhere = serve.http("127.0.0.3")
    redirecting = serve.http(
        "127.0.0.2", answer=Answer(status=302, headers={"Location": elsewhere.url()})
    )
    (probe,) = HttpProber(ProbeSettings()).probe(
        probe_target({"name": "web", "probe_urls": [redirecting.url()]})
    )
    assert probe.instances == (InstanceAnswer(redirecting.address, error="HTTP 302"),)
    assert elsewhere.hosts == []


@pytest.mark.parametrize(
    ("behaviour", "kind"),
    [
        ("close", "closed without answering"),
        ("garbage", "not HTTP"),
        (None, "refused or unreachable"),
    ],
)
def test_instances_that_never_answer_http(serve, behaviour, kind):
    """A server that hangs up, one that speaks another protocol, and a port nobody listens on
    are each a named error."""
    if behaviour is None:
        with socket.socket() as unused:
            unused.bind(("127.0.0.2", 0))
            address = f"127.0.0.2:{unused.getsockname()[1]}"
    else:
        raw = serve.raw("127.0.0.2", behaviour)
        address = raw.address
    (probe,) = HttpProber(ProbeSettings()).probe(
        probe_target(
            {"name": "web", "probe_urls": [f"http://{address}/.well-known/intercom-secret"]}
        )
    )
    assert probe.instances == (InstanceAnswer(address, error=kind),)
