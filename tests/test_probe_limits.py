"""The probe adapter's limits, against real loopback servers: a round bounded by its timeout
and deadline whatever instances and resolvers do; TLS checked against the DNS name; no exception
escaping ``probe`` (an unusable ca_cert, a broken resolver, every httpx exception, a round that
cannot start); nothing of an answer's body in logs or results (issue 12, design §9.1).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from _instances import MARKER, Answer, Servers, probe_target

from rotator.config.consumers import ProbeSettings
from rotator.core.observation import ConsumerProbe, InstanceAnswer
from rotator.probe import HttpProber, StaticResolver
from rotator.probe.protocol import failure_kind


@pytest.fixture
def serve() -> Iterator[Servers]:
    servers = Servers()
    yield servers
    servers.stop()


# --- time: the round is bounded -----------------------------------------------------------------

#: Slack for a loaded 2-CPU machine: the bounds below are behaviour (the round stops), not speed.
MARGIN = 1.5


def test_slow_instance_bounded_by_timeout(serve):
    """An instance that holds the connection without answering times out while the others are
    answered, and the round does not wait for it."""
    fast = serve.http("127.0.0.2")
    slow = serve.raw("127.0.0.3", "hold")
    settings = ProbeSettings(timeout=0.5, deadline=1.0)
    started = time.monotonic()
    (probe,) = HttpProber(settings).probe(
        probe_target({"name": "web", "probe_urls": [slow.url(), fast.url()]})
    )
    elapsed = time.monotonic() - started
    assert probe.instances == (
        InstanceAnswer(slow.address, error="timed out"),
        InstanceAnswer(fast.address, intercom_id="103"),
    )
    assert slow.accepted == 1
    assert elapsed <= settings.deadline + MARGIN


def test_round_stops_at_its_deadline(serve):
    """What is still pending at the deadline (an instance waiting its turn, or a name whose
    lookup hangs in a thread) is "no answer in the round", and probe returns at the deadline."""
    fast = serve.http("127.0.0.2")
    first, second = serve.raw("127.0.0.3", "hold"), serve.raw("127.0.0.4", "hold")
    release = threading.Event()

    async def hung_lookup(host: str, port: int) -> list[str]:
        # As a real getaddrinfo does: blocked in a thread, which cannot be cancelled.
        await asyncio.get_running_loop().run_in_executor(None, release.wait)
        return ["127.0.0.2"]

    # One request at a time: one holding instance uses the whole timeout, the other is cut
    # by the deadline (which of the two goes first does not matter).
    settings = ProbeSettings(timeout=1.0, deadline=1.5, concurrency=1)
    started = time.monotonic()
    try:
        web, dns = HttpProber(settings, resolver=hung_lookup).probe(
            probe_target(
                {"name": "web", "probe_urls": [fast.url(), first.url(), second.url()]},
                {"name": "mobile", "probe_dns": "mobile.test:8080"},
            )
        )
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert web.instances[0] == InstanceAnswer(fast.address, intercom_id="103")
    assert {a.address for a in web.instances[1:]} == {first.address, second.address}
    assert sorted(a.error or "" for a in web.instances[1:]) == [
        "no answer in the round",
        "timed out",
    ]
    assert dns == ConsumerProbe("mobile", (), error="no answer in the round")
    assert elapsed <= settings.deadline + MARGIN


def test_every_request_in_flight_stops_at_the_deadline(serve):
    """Hundreds of requests in flight when the deadline passes (instances that accept and never
    answer) are all cut there, and probe returns at the deadline."""
    silent = serve.raw("127.0.0.2", "hold")
    urls = [f"{silent.url()}?n={n}" for n in range(300)]
    settings = ProbeSettings(timeout=1.0, deadline=1.0, concurrency=256)
    started = time.monotonic()
    (probe,) = HttpProber(settings).probe(probe_target({"name": "web", "probe_urls": urls}))
    elapsed = time.monotonic() - started
    assert len(probe.instances) == 300
    assert {a.error for a in probe.instances} <= {"no answer in the round", "timed out"}
    assert elapsed <= settings.deadline + MARGIN


# --- TLS: the certificate is checked against the DNS name ----------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for ``mobile.test`` (openssl's command line)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    command = [shutil.which("openssl") or "openssl", "req", "-x509", "-nodes", "-days", "2"]
    command += ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-subj", "/CN=mobile.test"]
    command += ["-addext", "subjectAltName=DNS:mobile.test", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(command, check=True, capture_output=True)
    return cert, key


def test_https_dns_probe_checks_the_certificate_against_the_name(serve, certificate):
    """Over https a DNS instance is asked at its address with the name as TLS server name: the
    name on the certificate is accepted, another name or an untrusted certificate is not."""
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    instance = serve.http("127.0.0.2", tls=context)
    resolver = StaticResolver({"mobile.test": ["127.0.0.2"], "other.test": ["127.0.0.2"]})
    consumers = probe_target(
        *(
            {
                "name": name.split(".")[0],
                "probe_dns": f"{name}:{instance.port}",
                "probe_scheme": "https",
            }
            for name in ("mobile.test", "other.test")
        )
    )
    trusting = HttpProber(ProbeSettings(ca_cert=str(cert)), resolver=resolver)
    mobile, other = trusting.probe(consumers)
    assert mobile.instances == (InstanceAnswer(instance.address, intercom_id="103"),)
    assert other.instances == (
        InstanceAnswer(instance.address, error="TLS: certificate not trusted"),
    )
    assert sorted(instance.server_names) == ["mobile.test", "other.test"]
    assert instance.hosts == [f"mobile.test:{instance.port}"]
    (untrusted, _) = HttpProber(ProbeSettings(), resolver=resolver).probe(consumers)
    assert untrusted.instances == (
        InstanceAnswer(instance.address, error="TLS: certificate not trusted"),
    )


# --- nothing escapes ----------------------------------------------------------------------------


@pytest.mark.parametrize("ca_cert", ["missing.pem", "not-pem.txt", "."])
def test_unusable_ca_cert_is_an_error_kind_not_a_traceback(serve, tmp_path, ca_cert, log_output):
    """A ca_cert that cannot be loaded fails the https instances with a clear kind (and one
    warning naming the file); http instances are still probed; nothing is raised."""
    (tmp_path / "not-pem.txt").write_text("not a certificate\n")
    plain = serve.http("127.0.0.2")
    path = str(tmp_path / ca_cert)
    prober = HttpProber(ProbeSettings(ca_cert=path))
    (probe,) = prober.probe(
        probe_target({"name": "web", "probe_urls": [plain.url(), "https://127.0.0.3:8443/x"]})
    )
    assert probe.instances == (
        InstanceAnswer(plain.address, intercom_id="103"),
        InstanceAnswer("127.0.0.3:8443", error="TLS: ca_cert unusable"),
    )
    warnings = [json.loads(line) for line in log_output.getvalue().splitlines()]
    assert [(w["event"], w["ca_cert"]) for w in warnings if w["level"] == "warning"] == [
        ("probe.ca_cert_unusable", path)
    ]


HTTPX_EXCEPTIONS = sorted(
    (
        cls
        for _, cls in inspect.getmembers(httpx, inspect.isclass)
        if issubclass(cls, Exception) and cls.__module__.startswith("httpx")
    ),
    key=lambda cls: cls.__name__,
)


@pytest.mark.parametrize("exception_class", HTTPX_EXCEPTIONS, ids=lambda c: c.__name__)
def test_every_httpx_exception_has_a_kind(exception_class):
    """Whatever httpx raises while an instance is asked becomes one of the protocol's fixed
    kinds (the catch-all "probe failed" is kept for bugs of our own), never its text."""
    request = httpx.Request("GET", "http://127.0.0.2:8080/")
    attempts: list[Callable[[], Exception]] = [
        lambda: exception_class(MARKER),
        exception_class,
        lambda: exception_class(
            MARKER, request=request, response=httpx.Response(500, request=request)
        ),
    ]
    for attempt in attempts:
        try:
            error = attempt()
            break
        except TypeError:
            continue
    kind = failure_kind(error)
    assert kind != "probe failed"
    assert MARKER not in kind
    assert len(HTTPX_EXCEPTIONS) >= 25  # httpx's whole tree, so a new class cannot slip by


def test_resolver_failures_are_the_consumers_errors():
    """A resolver that raises, answers something that is no address, or too many addresses
    fails its consumer only, with a kind."""

    async def broken(host: str, port: int) -> list[str]:
        raise RuntimeError(MARKER)

    async def odd(host: str, port: int) -> list[str]:
        return {
            "odd.test": ["not-an-address"],
            "many.test": [f"10.0.{i // 250}.{i % 250}" for i in range(5000)],
        }[host]

    consumers = probe_target(
        {"name": "a", "probe_dns": "odd.test:80"}, {"name": "b", "probe_dns": "many.test:80"}
    )
    assert HttpProber(ProbeSettings(), resolver=odd).probe(consumers) == (
        ConsumerProbe("a", (), error="DNS: not an address"),
        ConsumerProbe("b", (), error="DNS: more than 4096 addresses"),
    )
    assert HttpProber(ProbeSettings(), resolver=broken).probe(consumers) == (
        ConsumerProbe("a", (), error="DNS: failed"),
        ConsumerProbe("b", (), error="DNS: failed"),
    )


def test_a_crashed_round_is_an_answer_too(serve):
    """Even when the round cannot run at all (here: called inside a running event loop) probe
    returns, every consumer failed, and an observer that raises changes nothing."""
    instance = serve.http("127.0.0.2")
    consumers = probe_target({"name": "web", "probe_urls": [instance.url()]}, {"name": "billing"})

    def broken_observer(*_args: object) -> None:
        raise RuntimeError("metrics bug")

    prober = HttpProber(ProbeSettings(), observe=broken_observer)

    async def inside_a_loop() -> tuple[ConsumerProbe, ...]:
        return prober.probe(consumers)

    assert asyncio.run(inside_a_loop()) == (ConsumerProbe("web", (), error="probe failed"),)
    assert prober.probe(consumers) == (
        ConsumerProbe("web", (InstanceAnswer(instance.address, intercom_id="103"),)),
    )


def test_answer_bodies_never_reach_logs_or_results(serve, log_output, capsys):
    """Whatever instances answer (a valid answer's extra keys, garbage, an error page), none of
    it appears in a log line, on stdout/stderr, or in what probe returns."""
    answers = [
        Answer.of({"intercom_id": "103", "note": MARKER}),
        Answer(body=MARKER.encode()),
        Answer(status=503, body=MARKER.encode()),
        Answer.of({"intercom_id": MARKER + "/"}),
        Answer.of({"intercom_id": "103", "fingerprint": MARKER}),
    ]
    instances = [serve.http(f"127.0.0.{n + 2}", answer=a) for n, a in enumerate(answers)]
    (probe,) = HttpProber(ProbeSettings()).probe(
        probe_target({"name": "web", "probe_urls": [i.url() for i in instances]})
    )
    assert [a.intercom_id or a.error for a in probe.instances] == [
        "103", "not JSON", "HTTP 503", "malformed intercom_id", "malformed fingerprint",
    ]  # fmt: skip
    logged = log_output.getvalue()
    assert '"event": "probe.round"' in logged  # the round was logged: the scan can fail
    captured = capsys.readouterr()
    assert MARKER not in logged + captured.out + captured.err + repr(probe)


def test_importing_the_package_does_not_load_httpx():
    """``rotator.probe`` can be imported by every pass for free: httpx is loaded only when a
    prober is asked for (the cold start budget has no room for it)."""
    code = (
        "import sys, rotator.probe\n"
        "assert 'httpx' not in sys.modules\n"
        "rotator.probe.HttpProber\n"
        "assert 'httpx' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
