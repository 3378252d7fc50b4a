"""``HttpProber``: one probe round of a target's probed consumers, every instance at once.

Theory of operation
-------------------
``probe(target)`` is synchronous: a reconcile pass calls it from its own worker thread, and it
runs one event loop for the round (``asyncio.run``; threads never share a loop). The round:

1. starts one task per probed consumer, concurrently: a ``probe_urls`` consumer's instances are
   its URLs; a ``probe_dns`` consumer's are the addresses its name resolves to (the resolver's
   answer, each address asked with the name as ``Host`` and TLS server name);
2. asks every instance under one semaphore of ``[probes] concurrency``, each within ``timeout``,
   each through its own ``httpx.AsyncClient`` (see ``_ask`` for why): no redirects, no proxies
   from the environment, no keep-alive, TLS checked against ``ca_cert`` (or the system's
   bundle, loaded once per prober) unless ``tls_verify = false``;
3. stops the whole round at ``deadline`` (resolution included): an instance, or a name, still
   pending then is answered ``"no answer in the round"``.

A request in flight costs the loop about 0.6 ms of CPU here, so with 256 in flight an instance
waits its turn for up to about 0.15 s: ``timeout`` should stay well above that (1 s default).

What comes back is one ``ConsumerProbe`` per probed consumer, in config order (hook-only
consumers have nothing to probe). Nothing raises out of ``probe``: every failure is an answer's
``error`` kind (``rotator.probe.protocol``), and a bug in the round itself gives every consumer
``"probe failed"`` and a ``probe.crashed`` log: a probe that did not happen confirms nothing.
Answer bodies are never logged or kept: only the fields the protocol defines survive parsing.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

import httpx

import rotator
from rotator.config.consumers import ConsumerSettings, ProbeSettings
from rotator.config.settings import TargetSettings
from rotator.core.observation import ConsumerProbe, InstanceAnswer
from rotator.logs import get_logger
from rotator.probe import protocol
from rotator.probe.resolve import ResolveError, Resolver, SystemResolver, normalize

#: What an instance (or a name) still pending at the round's deadline answers.
ROUND_OVER: Final = "no answer in the round"
#: Every consumer's error when the round itself crashed (a bug, logged as ``probe.crashed``).
ROUND_FAILED: Final = "probe failed"
CA_CERT_UNUSABLE: Final = "TLS: ca_cert unusable"
OK: Final = "ok"

#: ``observe(target, seconds, outcomes)`` after every round, for metrics: the round's wall time
#: and how many answers of each kind it got: ``"ok"`` for an answer carrying an id, else the
#: error kind (instances' and consumers' alike: "timed out", "DNS: no such name"). The kinds are
#: a fixed set of short phrases, fit for a metric label. An exception it raises is logged and
#: otherwise ignored.
Observe = Callable[[str, float, Counter[str]], None]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_ONE_CONNECTION: Final = httpx.Limits(max_connections=1, max_keepalive_connections=0)
_HEADERS: Final = {**protocol.REQUEST_HEADERS, "User-Agent": f"rotator/{rotator.__version__} probe"}

log = get_logger()


@dataclass(frozen=True, slots=True)
class _Request:
    """How to ask one instance: ``address`` is what status shows (``10.0.0.7:8080``)."""

    address: str
    url: str
    https: bool
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Round:
    """What every request of one round shares: TLS (and why it is unusable) and the limit on
    requests in flight."""

    tls: ssl.SSLContext
    tls_error: str | None
    gate: asyncio.Semaphore


def _no_instance(index: int) -> _Request:
    raise IndexError(f"no instance {index}: the consumer has none")


@dataclass(slots=True)
class _Slot:
    """One consumer's round, filled in as it goes, so a deadline leaves what was learned."""

    consumer: ConsumerSettings
    resolved: bool = False
    error: str | None = None
    #: Each instance found as status shows it ("10.0.0.7:8080"), and how to ask the i-th one:
    #: built when a worker takes it (4,096 built up front cost a round 40 ms per name).
    addresses: Sequence[str] = ()
    request: Callable[[int], _Request] = field(default=_no_instance)
    answers: dict[int, InstanceAnswer] = field(default_factory=dict)

    def result(self) -> ConsumerProbe:
        if not self.resolved:
            return ConsumerProbe(self.consumer.name, (), error=self.error or ROUND_OVER)
        instances = tuple(
            self.answers.get(i) or InstanceAnswer(address, error=ROUND_OVER)
            for i, address in enumerate(self.addresses)
        )
        return ConsumerProbe(self.consumer.name, instances, error=self.error)


class HttpProber:
    """Probes a target's consumers over HTTP(S); ``resolver`` resolves ``probe_dns`` names
    (the system's by default), ``observe`` hears about every round (see ``Observe``)."""

    def __init__(
        self,
        settings: ProbeSettings,
        resolver: Resolver | None = None,
        observe: Observe | None = None,
    ) -> None:
        self.settings = settings
        self.resolver: Resolver = resolver or SystemResolver()
        self.observe = observe
        self._tls_lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None

    def probe(self, target: TargetSettings) -> tuple[ConsumerProbe, ...]:
        """One round over ``target``'s probed consumers, within ``deadline``; never raises."""
        probed = [c for c in target.consumers if c.probed]
        if not probed:
            return ()
        started = time.monotonic()
        round_ = self._round(probed, started)
        try:
            probes = asyncio.run(round_)
        except Exception as e:  # noqa: BLE001 - a bug must not cost the pass
            round_.close()  # never started when asyncio.run refused it (inside a running loop)
            log.error("probe.crashed", target=target.name, error=type(e).__name__)
            probes = tuple(ConsumerProbe(c.name, (), error=ROUND_FAILED) for c in probed)
        seconds = time.monotonic() - started
        self._report(target.name, probes, seconds)
        return probes

    # --- the round -----------------------------------------------------------------------------

    async def _round(
        self, consumers: Sequence[ConsumerSettings], started: float
    ) -> tuple[ConsumerProbe, ...]:
        # getaddrinfo cannot be cancelled; asyncio.run would wait for its thread at the end.
        asyncio.get_running_loop().set_default_executor(_Unjoined())
        slots = [_Slot(c) for c in consumers]
        tls, tls_error = self._tls_context()
        round_ = _Round(tls, tls_error, asyncio.Semaphore(self.settings.concurrency))
        try:
            async with asyncio.timeout(self.settings.deadline - (time.monotonic() - started)):
                async with asyncio.TaskGroup() as group:
                    for slot in slots:
                        group.create_task(self._consumer(slot, round_))
        except TimeoutError:
            pass  # what is still pending answers ROUND_OVER
        return tuple(slot.result() for slot in slots)

    async def _consumer(self, slot: _Slot, round_: _Round) -> None:
        await self._instances(slot)
        slot.resolved = True
        # At most ``concurrency`` workers per consumer take its instances in turn, rather than
        # a task per instance: 32 consumers of 4,096 instances made 131,072 tasks queued on the
        # gate, and cancelling them at the deadline (each one removed from the semaphore's
        # queue) took over a minute.
        pending = iter(range(len(slot.addresses)))
        async with asyncio.TaskGroup() as group:
            for _ in range(min(self.settings.concurrency, len(slot.addresses))):
                group.create_task(self._worker(slot, pending, round_))

    async def _worker(self, slot: _Slot, pending: Iterator[int], round_: _Round) -> None:
        """Asks the consumer's next instance until none is left (one event loop: no lock)."""
        for index in pending:
            request = slot.request(index)
            if request.https and round_.tls_error:
                slot.answers[index] = InstanceAnswer(request.address, error=round_.tls_error)
            else:
                await self._instance(slot, index, request, round_)

    async def _instances(self, slot: _Slot) -> None:
        """The consumer's instances (``addresses`` and ``request``), or why there are none."""
        consumer = slot.consumer
        if consumer.probe_urls:
            requests = [_url_request(url) for url in consumer.probe_urls]
            slot.addresses, slot.request = [r.address for r in requests], requests.__getitem__
            return
        host, port = consumer.dns_host_port
        try:
            found = normalize(await self.resolver(host, port))
        except ResolveError as e:
            slot.error = f"DNS: {e.kind}"
            return
        except Exception as e:  # noqa: BLE001 - a resolver's bug fails its consumer, not the round
            log.warning("probe.resolver_failed", consumer=consumer.name, error=type(e).__name__)
            slot.error = "DNS: failed"
            return
        if not found:
            slot.error = "resolves to no address"
            return
        slot.addresses = [_hostport(address, port) for address in found]
        slot.request = lambda i: _dns_request(consumer, host, port, found[i])

    async def _instance(self, slot: _Slot, index: int, request: _Request, round_: _Round) -> None:
        async with round_.gate:
            try:
                async with asyncio.timeout(self.settings.timeout):
                    answer = await self._ask(request, round_.tls)
            except Exception as e:  # noqa: BLE001 - every failure is an answer's error kind
                kind = protocol.failure_kind(e)
                if kind == "probe failed":
                    log.warning("probe.instance_failed", error=type(e).__name__)
                answer = InstanceAnswer(request.address, error=kind)
        slot.answers[index] = answer

    async def _ask(self, request: _Request, tls: ssl.SSLContext) -> InstanceAnswer:
        # A client per instance, not one per round: httpcore's pool matches every queued request
        # against every connection whenever one leaves it, so with hundreds in flight a deadline
        # cancelling them all took over a second past it. A client costs about 50 µs.
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.settings.timeout),
            limits=_ONE_CONNECTION,
            follow_redirects=False,
            trust_env=False,  # in-cluster probes never go through HTTPS_PROXY
            verify=tls,
            headers=_HEADERS,
        )
        async with client:
            sent = client.build_request(
                "GET", request.url, headers=request.headers, extensions=request.extensions
            )
            response = await client.send(sent, stream=True)
            try:
                return await protocol.read_answer(
                    response, request.address, self.settings.max_body_bytes
                )
            finally:
                await response.aclose()

    # --- around the round ----------------------------------------------------------------------

    def _tls_context(self) -> tuple[ssl.SSLContext, str | None]:
        """The TLS context for https probes, built once (loading a CA bundle takes tens of ms);
        when ``ca_cert`` cannot be loaded, one that trusts nothing and the error kind every
        https instance then answers (retried next round: the file may be mounted late)."""
        with self._tls_lock:
            if self._tls is not None:
                return self._tls, None
            s = self.settings
            try:
                if s.ca_cert is not None:
                    context = ssl.create_default_context(cafile=s.ca_cert)
                else:
                    context = httpx.create_ssl_context(verify=s.tls_verify)
            except (OSError, ssl.SSLError, ValueError) as e:
                log.warning(
                    "probe.ca_cert_unusable",
                    ca_cert=s.ca_cert,
                    reason=getattr(e, "strerror", None) or type(e).__name__,
                )
                return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), CA_CERT_UNUSABLE
            self._tls = context
            return context, None

    def _report(self, target: str, probes: Sequence[ConsumerProbe], seconds: float) -> None:
        outcomes: Counter[str] = Counter()
        for probe in probes:
            if probe.error is not None:
                outcomes[probe.error] += 1
            outcomes.update(a.error or OK for a in probe.instances)
        log.debug(
            "probe.round",
            target=target,
            consumers=len(probes),
            found=sum(len(p.instances) for p in probes),
            answered=outcomes[OK],
            seconds=round(seconds, 3),
        )
        if self.observe is not None:
            try:
                self.observe(target, seconds, outcomes)
            except Exception:  # a metrics bug must never cost a round
                log.exception("probe.observe_failed", target=target)


class _Unjoined(ThreadPoolExecutor):
    """The round's default executor (``loop.getaddrinfo`` runs there): shutting it down does
    not wait, so a lookup the deadline gave up on cannot hold ``asyncio.run`` past it. Its
    thread finishes the lookup on its own and exits."""

    def shutdown(  # ThreadPoolExecutor's signature
        self,
        wait: bool = True,  # noqa: ARG002, FBT001, FBT002 - never waits: that is the point
        *,
        cancel_futures: bool = False,  # noqa: ARG002 - always cancels what has not started
    ) -> None:
        super().shutdown(wait=False, cancel_futures=True)


def _hostport(host: str, port: int) -> str:
    """``host:port``, an IPv6 literal in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _url_request(url: str) -> _Request:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or _DEFAULT_PORTS[parts.scheme]
    return _Request(_hostport(host, port), url, https=parts.scheme == "https")


def _dns_request(consumer: ConsumerSettings, host: str, port: int, address: str) -> _Request:
    https = consumer.probe_scheme == "https"
    where = _hostport(address, port)
    return _Request(
        where,
        f"{consumer.probe_scheme}://{where}{consumer.path}",
        https=https,
        headers={"Host": _hostport(host, port)},
        # httpcore sends it as the TLS server name and checks the certificate against it.
        extensions={"sni_hostname": host} if https else {},
    )
